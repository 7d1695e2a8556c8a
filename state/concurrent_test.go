package state_test

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// TestMemoryStoreConcurrentReads writes a MemoryStore on one goroutine
// (puts of new and existing keys, deletes) while others read it, as
// interactive queries do: under -race nothing races, scans yield keys in
// order, and every value read is one written for its key.
func TestMemoryStoreConcurrentReads(t *testing.T) {
	concurrentReads(t, state.NewMemoryStore("m"))
}

// TestPebbleStoreConcurrentReads is TestMemoryStoreConcurrentReads on a
// Pebble store, whose row cache the reads and writes share.
func TestPebbleStoreConcurrentReads(t *testing.T) {
	db, err := state.OpenPebble(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	concurrentReads(t, db.Store("p"))
}

// concurrentReads writes and deletes keys of s on this goroutine while
// others scan it and get one key: under -race nothing races, and every
// value read is one written for its key.
func concurrentReads(t *testing.T, s state.RawStore) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	check := func(k, v []byte) error {
		if len(v) < len(k) || string(v[:len(k)]) != string(k) {
			return fmt.Errorf("key %q holds %q, not a value written for it", k, v)
		}
		return nil
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				var last string
				err := s.Scan(nil, nil, func(k, v []byte) bool {
					if last != "" && string(k) <= last {
						t.Errorf("scan: %q after %q", k, last)
						return false
					}
					last = string(k)
					if err := check(k, v); err != nil {
						t.Error(err)
						return false
					}
					return true
				})
				if err != nil {
					t.Error(err)
				}
				if v, err := s.Get([]byte("k0042")); err != nil || v != nil && check([]byte("k0042"), v) != nil {
					t.Errorf("get: %q, %v", v, err)
				}
				if _, err := s.ApproximateNumEntries(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range 20000 {
		k := []byte(fmt.Sprintf("k%04d", i%500))
		var err error
		if i%7 == 0 {
			err = s.Delete(k)
		} else {
			err = s.Put(k, append(k, strconv.Itoa(i)...))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestWindowStoreConcurrentReads writes windows of a segmented in-memory
// window store on one goroutine, expiring old segments as stream time
// advances, while others fetch and scan it: under -race nothing races and
// every window read lies within the retention of the writes made so far.
func TestWindowStoreConcurrentReads(t *testing.T) {
	b, err := state.WindowBuilder("w", serde.String(), serde.Int64(),
		state.WindowSpec{Size: time.Second, Retention: 10 * time.Second, SegmentInterval: time.Second}, state.InMemory())
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	engine := cfg.WrapEngine(state.NewMemoryStore("w"))
	writer := b.Build(engine, "w-changelog").(state.WindowStore[string, int64])
	var written atomic.Int64 // start (ms) of the latest window being written
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reader := b.Build(engine, "w-changelog").(state.WindowStore[string, int64])
			for !stop.Load() {
				for kv, err := range reader.All() {
					if err != nil {
						t.Error(err)
						return
					}
					if start := kv.Key.Window.StartMs(); start != kv.Value || start > written.Load() {
						t.Errorf("window %v = %d read, latest written %d", kv.Key, kv.Value, written.Load())
						return
					}
				}
				for kv, err := range reader.FetchRange("a", time.UnixMilli(0), time.UnixMilli(written.Load())) {
					if err != nil || kv.Key.Window.StartMs() != kv.Value {
						t.Errorf("fetch: %v = %d, %v", kv.Key, kv.Value, err)
						return
					}
				}
			}
		}()
	}
	for i := range int64(5000) {
		start := i * 100
		written.Store(start)
		for _, k := range []string{"a", "b", "c"} {
			if err := writer.Put(k, start, time.UnixMilli(start)); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	n := 0
	for _, err := range writer.All() {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 || n > 3*(10000/100+1000/100) {
		t.Fatalf("%d windows left after expiry, want about 3 per 100 ms of retention", n)
	}
}
