package streams

import (
	"sync"
	"testing"
	"time"
)

// blockingListener holds up the first batch restored, of whichever store
// restores first, until release is closed, and records what it is told.
type blockingListener struct {
	release chan struct{}

	mu        sync.Mutex
	blocked   *StoreRestore
	started   map[StoreRestore][2]int64
	batches   map[StoreRestore]int64
	ended     map[StoreRestore]int64
	suspended map[StoreRestore]int64
}

func newBlockingListener() *blockingListener {
	return &blockingListener{release: make(chan struct{}), started: make(map[StoreRestore][2]int64),
		batches: make(map[StoreRestore]int64), ended: make(map[StoreRestore]int64), suspended: make(map[StoreRestore]int64)}
}

func (l *blockingListener) OnRestoreStart(r StoreRestore, start, end int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.started[r] = [2]int64{start, end}
}

func (l *blockingListener) OnBatchRestored(r StoreRestore, _ int64, n int) {
	l.mu.Lock()
	block := l.blocked == nil
	if block {
		l.blocked = &r
	}
	l.batches[r] += int64(n)
	l.mu.Unlock()
	if block || *l.blockedStore() == r {
		<-l.release
	}
}

func (l *blockingListener) blockedStore() *StoreRestore {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.blocked
}

func (l *blockingListener) OnRestoreEnd(r StoreRestore, restored int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended[r] = restored
}

func (l *blockingListener) OnRestoreSuspended(r StoreRestore, restored int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.suspended[r] = restored
}

// TestOtherTasksProcessWhileOneRestores holds up the restore of one task:
// the thread runs every other task meanwhile and processes their records,
// and the held-up task joins once restored, with nothing lost.
func TestOtherTasksProcessWhileOneRestores(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		truth := produceLines(t, brokers, 2000, 5)
		first := startApp(t, brokers, t.TempDir())
		latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		first.stop(t)

		l := newBlockingListener()
		a := startApp(t, brokers, t.TempDir(), OnRestore(l))
		waitFor(t, "a restore to be held up", 30*time.Second, func() bool { return l.blockedStore() != nil })
		waitFor(t, "every other task to run", 30*time.Second, func() bool { return a.app.Metrics().Tasks == 2*partitions-1 })
		for w, n := range produceLines(t, brokers, 500, 5) {
			truth[w] += n
		}
		waitFor(t, "records of the other tasks to be processed", 30*time.Second, func() bool {
			return a.app.Metrics().RecordsProcessed > 0
		})
		held := *l.blockedStore()
		close(l.release)
		got := latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		if d := diff(truth, got); d != "" {
			t.Fatalf("counts differ from the truth: %s", d)
		}
		if a.app.Metrics().Tasks != 2*partitions {
			t.Fatalf("%d tasks running, want %d", a.app.Metrics().Tasks, 2*partitions)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.started) != partitions || len(l.ended) != partitions {
			t.Fatalf("restores started %d, ended %d; want %d each", len(l.started), len(l.ended), partitions)
		}
		for r, se := range l.started {
			if l.ended[r] != l.batches[r] || l.ended[r] == 0 || se[1] <= se[0] {
				t.Fatalf("%v: range %v, batches of %d records, ended with %d", r, se, l.batches[r], l.ended[r])
			}
		}
		if held.Store != "counts" || held.Topic != countsChangelog || held.Partition != held.Task.Partition {
			t.Fatalf("held-up restore %+v", held)
		}
	})
}
