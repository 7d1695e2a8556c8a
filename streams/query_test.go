package streams

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/state"
)

// queryCount looks word up on whichever instance hosts it.
func queryCount(t *testing.T, apps []*runningApp, word string) (int64, error) {
	t.Helper()
	var errs []error
	for _, r := range apps {
		counts, err := KeyValueStore[string, int64](r.app, "counts")
		if err != nil {
			t.Fatal(err)
		}
		n, _, err := counts.Get(word)
		if err == nil {
			return n, nil
		}
		errs = append(errs, err)
	}
	return 0, errors.Join(errs...)
}

// TestInteractiveQueriesAcrossInstances queries the word counts of two and
// three instances while they process and rebalance: every read is a count
// some task has written (never above the truth), and once
// the input is processed every word is found on exactly one instance with
// its true count, and All over the instances yields every word once.
func TestInteractiveQueriesAcrossInstances(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		apps := []*runningApp{startApp(t, brokers, t.TempDir()), startApp(t, brokers, t.TempDir())}
		waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
			return apps[0].app.Metrics().Tasks > 0 && apps[1].app.Metrics().Tasks > 0
		})
		truth := produceLines(t, brokers, 3000, 5)
		var wordList []string
		for w := range truth {
			wordList = append(wordList, w)
		}

		var stop atomic.Bool
		var mu sync.Mutex
		running := apps
		var wg sync.WaitGroup
		var reads, misses atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				w := wordList[i%len(wordList)]
				mu.Lock()
				cur := running
				mu.Unlock()
				n, err := queryCount(t, cur, w)
				if err != nil {
					if !errors.Is(err, ErrNotLocal) && !errors.Is(err, ErrRestoring) {
						t.Errorf("query %q: %v", w, err)
						return
					}
					misses.Add(1)
					continue
				}
				reads.Add(1)
				if n > truth[w] {
					t.Errorf("%q read %d, above the truth %d", w, n, truth[w])
					return
				}
			}
		}()
		// A third instance joins while the queries run.
		third := startApp(t, brokers, t.TempDir())
		mu.Lock()
		running = append(append([]*runningApp(nil), apps...), third)
		mu.Unlock()
		apps = running
		latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		waitFor(t, "every word's count to be queryable", 30*time.Second, func() bool {
			for w, want := range truth {
				if n, err := queryCount(t, apps, w); err != nil || n != want {
					return false
				}
			}
			return true
		})
		stop.Store(true)
		wg.Wait()
		if reads.Load() == 0 {
			t.Fatal("no query succeeded during processing")
		}
		all := make(map[string]int64)
		for _, r := range apps {
			counts, err := KeyValueStore[string, int64](r.app, "counts")
			if err != nil {
				t.Fatal(err)
			}
			var last string
			for kv, err := range counts.All() {
				if err != nil {
					t.Fatal(err)
				}
				if _, dup := all[kv.Key]; dup {
					t.Fatalf("%q found on two instances", kv.Key)
				}
				if last != "" && kv.Key <= last {
					t.Fatalf("All out of order: %q after %q", kv.Key, last)
				}
				last = kv.Key
				all[kv.Key] = kv.Value
			}
		}
		if d := diff(truth, all); d != "" || len(all) != len(truth) {
			t.Fatalf("All over the instances: %d words, want %d: %s", len(all), len(truth), d)
		}
		t.Logf("%d reads and %d misses (restoring or moved) during processing and rebalances", reads.Load(), misses.Load())
	})
}

func TestQueryErrors(t *testing.T) {
	brokers := kfakeCluster(t)
	a := startApp(t, brokers, t.TempDir())
	if _, err := KeyValueStore[string, int64](a.app, "nope"); !errors.Is(err, ErrUnknownStore) {
		t.Fatalf("unknown store: %v", err)
	}
	if _, err := KeyValueStore[string, string](a.app, "counts"); !errors.Is(err, ErrUnknownStore) {
		t.Fatalf("wrong types: %v", err)
	}
	counts, err := KeyValueStore[string, int64](a.app, "counts")
	if err != nil {
		t.Fatal(err)
	}
	waitRestored(t, a)
	if err := counts.Put("x", 1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Put: %v", err)
	}
	if _, found, err := counts.Get("never-seen"); found || err != nil {
		t.Fatalf("absent key: found=%v err=%v", found, err)
	}
	var _ state.KeyValueStore[string, int64] = counts
}
