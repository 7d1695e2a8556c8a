package state_test

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

func collect[K, V any](t *testing.T, seq func(func(state.KeyValue[K, V], error) bool)) []state.KeyValue[K, V] {
	t.Helper()
	var out []state.KeyValue[K, V]
	for kv, err := range seq {
		if err != nil {
			t.Fatalf("iterate: %v", err)
		}
		out = append(out, kv)
	}
	return out
}

func keys[V any](kvs []state.KeyValue[string, V]) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func engines(t *testing.T) map[string]func(name string) state.RawStore {
	db, err := state.OpenPebble(t.TempDir(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return map[string]func(string) state.RawStore{
		"memory": func(name string) state.RawStore { return state.NewMemoryStore(name) },
		"pebble": db.Store,
	}
}

func TestKeyValueStore(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			s := state.NewKeyValueStore(open("s"), "s-changelog", serde.String(), serde.Int64())
			other := state.NewKeyValueStore(open("s2"), "s2-changelog", serde.String(), serde.Int64())
			for i, k := range []string{"b", "a", "ab", "c", "abc"} {
				if err := s.Put(k, int64(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := other.Put("a", 100); err != nil {
				t.Fatal(err)
			}
			if v, ok, err := s.Get("ab"); err != nil || !ok || v != 2 {
				t.Fatalf("Get(ab) = %v %v %v", v, ok, err)
			}
			if _, ok, _ := s.Get("zz"); ok {
				t.Fatal("Get(zz) found a value")
			}
			if v, ok, _ := s.PutIfAbsent("a", 9); !ok || v != 1 {
				t.Fatalf("PutIfAbsent(a) = %v %v, want 1 true", v, ok)
			}
			if _, ok, _ := s.PutIfAbsent("d", 9); ok {
				t.Fatal("PutIfAbsent(d) reported a present value")
			}
			if got := keys(collect(t, s.All())); !slices.Equal(got, []string{"a", "ab", "abc", "b", "c", "d"}) {
				t.Fatalf("All = %v", got)
			}
			if got := keys(collect(t, s.Range("ab", "b"))); !slices.Equal(got, []string{"ab", "abc", "b"}) {
				t.Fatalf("Range(ab, b) = %v", got)
			}
			if got := keys(collect(t, s.PrefixScan("ab"))); !slices.Equal(got, []string{"ab", "abc"}) {
				t.Fatalf("PrefixScan(ab) = %v", got)
			}
			if v, ok, _ := s.Delete("b"); !ok || v != 0 {
				t.Fatalf("Delete(b) = %v %v", v, ok)
			}
			if n, err := s.ApproximateNumEntries(); err != nil || n != 5 {
				t.Fatalf("ApproximateNumEntries = %d %v, want 5", n, err)
			}
			for kv, err := range s.All() {
				if err != nil || kv.Key == "b" {
					t.Fatalf("after delete: %v %v", kv, err)
				}
				break
			}
			if got := collect(t, other.All()); len(got) != 1 || got[0].Value != 100 {
				t.Fatalf("second store sees %v", got)
			}
		})
	}
}

func TestCachingCoalescesChangelogWrites(t *testing.T) {
	type rec struct{ k, v string }
	var logged []rec
	inner := state.NewMemoryStore("counts")
	logger := state.ChangeLoggerFunc(func(k, v []byte) { logged = append(logged, rec{string(k), string(v)}) })
	cache := state.NewCachingStore(state.NewLoggedStore(inner, logger), 1<<20)
	s := state.NewKeyValueStore[string, string](cache, "c-changelog", serde.String(), serde.String())
	for _, v := range []string{"1", "2", "3"} {
		if err := s.Put("hot", v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put("gone", "x"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := s.Get("hot"); v != "3" {
		t.Fatalf("cached Get = %q", v)
	}
	if len(logged) != 0 {
		t.Fatalf("logged before flush: %v", logged)
	}
	if err := cache.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []rec{{"gone", ""}, {"hot", "3"}}
	if !slices.Equal(logged, want) {
		t.Fatalf("logged %v, want %v", logged, want)
	}
	if v, _ := inner.Get([]byte("hot")); string(v) != "3" {
		t.Fatalf("inner has %q", v)
	}
}

func TestCacheEvictsAtLimit(t *testing.T) {
	var n int
	cache := state.NewCachingStore(state.NewLoggedStore(state.NewMemoryStore("s"),
		state.ChangeLoggerFunc(func(_, _ []byte) { n++ })), 10)
	for _, k := range []string{"aaaa", "bbbb", "cccc"} {
		if err := cache.Put([]byte(k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if n != 3 {
		t.Fatalf("logged %d writes after exceeding the limit, want 3", n)
	}
}

func TestPebblePersistsAndCheckpoint(t *testing.T) {
	dir := t.TempDir()
	db, err := state.OpenPebble(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	s := state.NewKeyValueStore(db.Store("s"), "s-changelog", serde.String(), serde.String())
	if err := s.Put("k", ""); err != nil {
		t.Fatal(err)
	}
	if err := db.Store("s").Flush(); err != nil {
		t.Fatal(err)
	}
	if err := state.WriteCheckpoint(vfs.Default, dir, map[string]int64{"s": 42}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = state.OpenPebble(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok, err := state.NewKeyValueStore(db.Store("s"), "s-changelog", serde.String(), serde.String()).Get("k"); !ok || err != nil {
		t.Fatalf("after reopen: present=%v err=%v", ok, err)
	}
	cp, err := state.ReadCheckpoint(vfs.Default, dir)
	if err != nil || cp["s"] != 42 {
		t.Fatalf("checkpoint = %v %v", cp, err)
	}
	if err := state.RemoveCheckpoint(vfs.Default, dir); err != nil {
		t.Fatal(err)
	}
	if cp, err := state.ReadCheckpoint(vfs.Default, dir); cp != nil || err != nil {
		t.Fatalf("after remove: %v %v", cp, err)
	}
}

func TestChangelogTopic(t *testing.T) {
	if got := state.ChangelogTopic("app", "counts"); got != "app-counts-changelog" {
		t.Fatal(got)
	}
}

// TestSlicesBelongToTheCaller changes every slice a store hands out and
// every slice handed to it, and checks that the store's contents and the
// values read before stay as they were.
func TestSlicesBelongToTheCaller(t *testing.T) {
	for name, open := range engines(t) {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cached=%v", name, cached), func(t *testing.T) {
				raw := open("own")
				if cached {
					raw = state.NewCachingStore(raw, 1<<20)
				}
				for i := range 100 {
					v := []byte(fmt.Sprintf("value-%03d", i))
					if err := raw.Put([]byte(fmt.Sprintf("key-%03d", i)), v); err != nil {
						t.Fatal(err)
					}
					clear(v)
				}
				got, err := raw.Get([]byte("key-007"))
				if err != nil || string(got) != "value-007" {
					t.Fatalf("Get = %q, %v", got, err)
				}
				clear(got)
				var keys, values [][]byte
				if err := raw.Scan(nil, nil, func(k, v []byte) bool {
					keys, values = append(keys, k), append(values, v)
					return true
				}); err != nil {
					t.Fatal(err)
				}
				if len(values) != 100 {
					t.Fatalf("Scan yielded %d entries", len(values))
				}
				for i := range values {
					if string(keys[i]) != fmt.Sprintf("key-%03d", i) || string(values[i]) != fmt.Sprintf("value-%03d", i) {
						t.Fatalf("entry %d kept after the scan: %q=%q", i, keys[i], values[i])
					}
					clear(values[i])
				}
				if got, _ := raw.Get([]byte("key-007")); string(got) != "value-007" {
					t.Fatalf("store changed by callers' writes to its slices: %q", got)
				}
			})
		}
	}
}

// TestPebbleReadsMatchWrites checks that a Pebble store's reads answer
// what was last written while its row cache fills, evicts and stops
// taking in new keys: 60,000 keys (several times the cache) written,
// overwritten, deleted and read in a random order against a map.
func TestPebbleReadsMatchWrites(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := state.OpenPebble(dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Store("rows")
	model := make(map[string]string)
	// matchesModel checks that a Scan of the store yields the model: a
	// Scan sees the writes the row cache still holds.
	matchesModel := func(when string, s state.RawStore) {
		t.Helper()
		seen := 0
		err := s.Scan(nil, nil, func(k, v []byte) bool {
			if want, ok := model[string(k)]; !ok || want != string(v) {
				t.Fatalf("%s: Scan yields %s = %q, want %q (present %v)", when, k, v, want, ok)
			}
			seen++
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if seen != len(model) {
			t.Fatalf("%s: Scan yields %d keys, want %d", when, seen, len(model))
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 300_000 {
		if i%50_000 == 0 {
			matchesModel(fmt.Sprintf("op %d", i), s)
		}
		// Mostly a small hot set, then a sweep of the whole key space, so
		// that the cache both hits and misses.
		n := rng.IntN(500)
		if i > 150_000 {
			n = rng.IntN(60_000)
		}
		k := fmt.Sprintf("key-%05d", n)
		switch rng.IntN(10) {
		case 0:
			if err := s.Delete([]byte(k)); err != nil {
				t.Fatal(err)
			}
			delete(model, k)
		case 1, 2, 3:
			v := fmt.Sprintf("value-%d", i)
			if err := s.Put([]byte(k), []byte(v)); err != nil {
				t.Fatal(err)
			}
			model[k] = v
		default:
			got, err := s.Get([]byte(k))
			if err != nil {
				t.Fatal(err)
			}
			if want, ok := model[k]; string(got) != want || (got == nil) == ok {
				t.Fatalf("op %d: Get(%s) = %q, want %q (present %v)", i, k, got, want, ok)
			}
		}
	}
	if db.Store("rows") != s {
		t.Fatal("Store returned a second store for the same name: two row caches could disagree")
	}
	// Close writes back what the row cache holds.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = state.OpenPebble(dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	matchesModel("after reopening", db.Store("rows"))
}
