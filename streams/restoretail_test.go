package streams

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/riffle-stream/riffle/broker"
)

// startHeld is a RestoreListener that holds every restore at its start,
// after its end offset was read and before its first fetch, until
// release is closed.
type startHeld struct {
	release chan struct{}
	once    sync.Once

	mu       sync.Mutex
	started  map[StoreRestore][2]int64
	restored map[StoreRestore]int64
	ended    map[StoreRestore]bool
}

func newStartHeld() *startHeld {
	return &startHeld{release: make(chan struct{}), started: make(map[StoreRestore][2]int64),
		restored: make(map[StoreRestore]int64), ended: make(map[StoreRestore]bool)}
}

func (l *startHeld) OnRestoreStart(r StoreRestore, start, end int64) {
	l.mu.Lock()
	l.started[r] = [2]int64{start, end}
	l.mu.Unlock()
	<-l.release
}

// let releases the restores; it may be called more than once.
func (l *startHeld) let() { l.once.Do(func() { close(l.release) }) }

// startHeldApp starts word count with l holding its restores; l lets
// them go at the latest when the test ends, before the app is stopped.
func startHeldApp(t *testing.T, brokers []string, l *startHeld) *runningApp {
	t.Helper()
	r := startApp(t, brokers, t.TempDir(), OnRestore(l))
	t.Cleanup(l.let)
	return r
}

func (l *startHeld) OnBatchRestored(StoreRestore, int64, int) {}

func (l *startHeld) OnRestoreEnd(r StoreRestore, restored int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ended[r], l.restored[r] = true, restored
}

func (l *startHeld) OnRestoreSuspended(StoreRestore, int64) {}

func (l *startHeld) startedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.started)
}

// deleteChangelog deletes every record of the counts changelog, which it
// makes compact,delete first (DeleteRecords is refused on a topic only
// compacted).
func deleteChangelog(t *testing.T, adm *kadm.Client) {
	t.Helper()
	alter, err := adm.AlterTopicConfigs(context.Background(),
		[]kadm.AlterConfig{{Name: "cleanup.policy", Value: kadm.StringPtr("compact,delete")}}, countsChangelog)
	if err == nil {
		_, err = alter.On(countsChangelog, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	deleteTo := make(kadm.Offsets)
	for p, end := range partitionEnds(t, adm, countsChangelog) {
		deleteTo.AddOffset(countsChangelog, p, end, -1)
	}
	resp, err := adm.DeleteRecords(context.Background(), deleteTo)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestRestoreWhileChangelogDeleted deletes every record of the changelog
// while restores are under way, between reading the end offset they
// restore to and their first fetch: they end, with the stores as empty as
// the changelog, where they used to wait forever for the end (the
// consumer, reset to the new log start, which is the end, gets nothing).
func TestRestoreWhileChangelogDeleted(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		a := startApp(t, brokers, t.TempDir())
		if n := nextCount(t, brokers, "apple apple apple", "apple"); n < 1 {
			t.Fatalf("count %d", n)
		}
		a.stop(t)
		l := newStartHeld()
		b := startHeldApp(t, brokers, l)
		waitFor(t, "a restore to start", 30*time.Second, func() bool { return l.startedCount() > 0 })
		deleteChangelog(t, admin(t, brokers))
		l.let()
		waitRestored(t, b)
		if n := nextCount(t, brokers, "apple", "apple"); n != 1 {
			t.Fatalf("count after restoring a changelog deleted under the restore = %d, want 1", n)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for r, se := range l.started {
			if !l.ended[r] || l.restored[r] != 0 {
				t.Fatalf("%v: restore of [%d, %d) ended %v with %d records, want 0", r, se[0], se[1], l.ended[r], l.restored[r])
			}
		}
	})
}

// TestRestoreWhileChangelogCompacted has Riffle's cleaner compact the
// changelog while restores are held at their start: the offsets they
// restore up to are partly gone (superseded updates), and they end with
// every word's latest count.
func TestRestoreWhileChangelogCompacted(t *testing.T) {
	t.Parallel()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Sync(broker.SyncNone),
		broker.CleanerBackoff(20*time.Millisecond), broker.RetentionCheckInterval(100*time.Millisecond),
		broker.Logger(testLogger(t).With("component", "broker")))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	brokers := []string{b.Addr()}
	adm := admin(t, brokers)
	for _, topic := range []string{inputTopic, outputTopic} {
		if _, err := adm.CreateTopic(context.Background(), partitions, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	// Five rounds of lines, each counted (its counts committed to the
	// changelog) before the next: the common words are updated in each
	// round, so that the cleaner has superseded updates to remove.
	truth := make(map[string]int64)
	first := startApp(t, brokers, t.TempDir(), CommitInterval(50*time.Millisecond))
	for range 5 {
		for w, n := range produceLines(t, brokers, 400, 3) {
			truth[w] += n
		}
		latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
	}
	first.stop(t)
	before := len(readAll(t, brokers, countsChangelog))

	l := newStartHeld()
	second := startHeldApp(t, brokers, l)
	waitFor(t, "the restores to start", 30*time.Second, func() bool { return l.startedCount() == partitions })
	alter, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{
		{Name: "segment.ms", Value: kadm.StringPtr("100")},
		{Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")},
	}, countsChangelog)
	if err == nil {
		_, err = alter.On(countsChangelog, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	var after int
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("changelog of %d records, %d last read", before, after)
		}
	})
	waitFor(t, "the cleaner to compact the changelog", 60*time.Second, func() bool {
		after = len(readAll(t, brokers, countsChangelog))
		return after < before
	})
	l.let()
	waitRestored(t, second)
	l.mu.Lock()
	var restored int64
	for r := range l.started {
		if !l.ended[r] {
			t.Fatalf("%v: restore did not end", r)
		}
		restored += l.restored[r]
	}
	l.mu.Unlock()
	if restored >= int64(before) || restored > int64(after) {
		t.Fatalf("restored %d records of a changelog of %d, %d after compaction", restored, before, after)
	}
	t.Logf("changelog of %d records compacted to %d under the restores, which replayed %d", before, after, restored)
	for _, w := range []string{"word0", "word1", "word7"} {
		if truth[w] == 0 {
			t.Fatalf("%s never counted", w)
		}
		if n := nextCount(t, brokers, w, w); n != truth[w]+1 {
			t.Fatalf("%s: count %d after the restore, want %d", w, n, truth[w]+1)
		}
	}
}
