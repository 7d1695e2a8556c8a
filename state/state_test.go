package state_test

import (
	"log/slog"
	"slices"
	"testing"

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
			s := state.NewKeyValueStore(open("s"), serde.String(), serde.Int64())
			other := state.NewKeyValueStore(open("s2"), serde.String(), serde.Int64())
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
	s := state.NewKeyValueStore[string, string](cache, serde.String(), serde.String())
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
	s := state.NewKeyValueStore(db.Store("s"), serde.String(), serde.String())
	if err := s.Put("k", ""); err != nil {
		t.Fatal(err)
	}
	if err := db.Store("s").Flush(); err != nil {
		t.Fatal(err)
	}
	if err := state.WriteCheckpoint(dir, map[string]int64{"s": 42}); err != nil {
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
	if _, ok, err := state.NewKeyValueStore(db.Store("s"), serde.String(), serde.String()).Get("k"); !ok || err != nil {
		t.Fatalf("after reopen: present=%v err=%v", ok, err)
	}
	cp, err := state.ReadCheckpoint(dir)
	if err != nil || cp["s"] != 42 {
		t.Fatalf("checkpoint = %v %v", cp, err)
	}
	if err := state.RemoveCheckpoint(dir); err != nil {
		t.Fatal(err)
	}
	if cp, err := state.ReadCheckpoint(dir); cp != nil || err != nil {
		t.Fatalf("after remove: %v %v", cp, err)
	}
}

func TestChangelogTopic(t *testing.T) {
	if got := state.ChangelogTopic("app", "counts"); got != "app-counts-changelog" {
		t.Fatal(got)
	}
}
