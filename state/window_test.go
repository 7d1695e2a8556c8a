package state_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

func ms(n int64) time.Time { return time.UnixMilli(n).UTC() }

// windows renders entries as "key@start=value".
func windows[K, V any](t *testing.T, seq func(func(state.KeyValue[serde.Windowed[K], V], error) bool)) []string {
	t.Helper()
	var out []string
	for kv, err := range seq {
		if err != nil {
			t.Fatalf("iterate: %v", err)
		}
		out = append(out, fmt.Sprintf("%v@%d-%d=%v", kv.Key.Key, kv.Key.Window.StartMs(), kv.Key.Window.EndMs(), kv.Value))
	}
	return out
}

func windowStore(t *testing.T, raw state.RawStore, spec state.WindowSpec, opts ...state.Opt) (state.WindowStore[string, int64], state.Config) {
	t.Helper()
	b, err := state.WindowBuilder("w", serde.String(), serde.Int64(), spec, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	return b.Build(cfg.WrapEngine(raw), "w-changelog").(state.WindowStore[string, int64]), cfg
}

func TestWindowStore(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			s, _ := windowStore(t, open("w"), state.WindowSpec{Size: 10 * time.Millisecond, Retention: time.Hour})
			for _, p := range []struct {
				k     string
				start int64
				v     int64
			}{{"a", 0, 1}, {"ab", 0, 2}, {"a", 10, 3}, {"b", 20, 4}, {"a", 20, 5}, {"a", 10, 6}} {
				if err := s.Put(p.k, p.v, ms(p.start)); err != nil {
					t.Fatal(err)
				}
			}
			if v, ok, err := s.Fetch("a", ms(10)); err != nil || !ok || v != 6 {
				t.Fatalf("Fetch(a, 10) = %v %v %v, want the replaced value 6", v, ok, err)
			}
			if _, ok, _ := s.Fetch("a", ms(30)); ok {
				t.Fatal("Fetch(a, 30) found a window never written")
			}
			if got, want := windows(t, s.FetchRange("a", ms(0), ms(10))), []string{"a@0-10=1", "a@10-20=6"}; !slices.Equal(got, want) {
				t.Fatalf("FetchRange(a, 0, 10) = %v, want %v (a's windows only, not ab's)", got, want)
			}
			if got, want := windows(t, s.FetchAll(ms(10), ms(20))), []string{"a@10-20=6", "a@20-30=5", "b@20-30=4"}; !slices.Equal(got, want) {
				t.Fatalf("FetchAll(10, 20) = %v, want %v", got, want)
			}
			if err := s.Delete("a", ms(10)); err != nil {
				t.Fatal(err)
			}
			if got, want := windows(t, s.All()), []string{"a@0-10=1", "a@20-30=5", "ab@0-10=2", "b@20-30=4"}; !slices.Equal(got, want) {
				t.Fatalf("All after Delete = %v, want %v", got, want)
			}
		})
	}
}

func TestWindowStoreRetainsDuplicates(t *testing.T) {
	s, _ := windowStore(t, state.NewMemoryStore("w"), state.WindowSpec{Size: 10 * time.Millisecond, Retention: time.Hour, RetainDuplicates: true})
	for _, v := range []int64{1, 2, 3} {
		if err := s.Put("k", v, ms(5)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := windows(t, s.FetchRange("k", ms(0), ms(10))), []string{"k@5-15=1", "k@5-15=2", "k@5-15=3"}; !slices.Equal(got, want) {
		t.Fatalf("FetchRange = %v, want %v", got, want)
	}
}

func TestWindowBuilderValidatesAndConfiguresChangelog(t *testing.T) {
	if _, err := state.WindowBuilder("w", serde.String(), serde.Int64(), state.WindowSpec{Size: time.Minute, Retention: time.Second}); err == nil {
		t.Fatal("retention below the window size was accepted")
	}
	if _, err := state.WindowBuilder("w", serde.String(), serde.Int64(), state.WindowSpec{}); err == nil {
		t.Fatal("a zero window size was accepted")
	}
	_, cfg := windowStore(t, state.NewMemoryStore("w"), state.WindowSpec{Size: time.Minute, Retention: time.Hour},
		state.WithLogConfig(map[string]string{"segment.ms": "1000"}), state.WithCacheMaxBytes(1<<20))
	want := map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "90000000", "segment.ms": "1000"}
	for k, v := range want {
		if cfg.LogConfig[k] != v {
			t.Errorf("changelog config %s = %q, want %q", k, cfg.LogConfig[k], v)
		}
	}
	if cfg.CacheMaxBytes != 0 || !cfg.Logging || cfg.Segments == nil {
		t.Errorf("config = %+v, want logged, uncached and segmented", cfg)
	}
}

// countEngine counts what the engine below the segments holds.
func countEngine(t *testing.T, raw state.RawStore) int {
	t.Helper()
	n := 0
	if err := raw.Scan(nil, nil, func(_, _ []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWindowStoreDropsExpiredSegments(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			spec := state.WindowSpec{Size: 10 * time.Second, Retention: 30 * time.Second, SegmentInterval: 10 * time.Second}
			engine := open("w")
			s, _ := windowStore(t, engine, spec)
			for _, start := range []int64{0, 5_000, 10_000, 20_000, 30_000} {
				if err := s.Put("k", start, ms(start)); err != nil {
					t.Fatal(err)
				}
			}
			if n := countEngine(t, engine); n != 5 {
				t.Fatalf("engine holds %d records, want 5", n)
			}
			// Stream time 45 s: segments below 45-30 = 15 s, i.e. segment 0
			// (0-10 s), are dropped; the window at 10 s is older than the
			// retention and so invisible, though its segment stays.
			if err := s.Put("k", 45_000, ms(45_000)); err != nil {
				t.Fatal(err)
			}
			if n := countEngine(t, engine); n != 4 {
				t.Fatalf("engine holds %d records after the first segment expired, want 4", n)
			}
			if got, want := windows(t, s.All()), []string{"k@20000-30000=20000", "k@30000-40000=30000", "k@45000-55000=45000"}; !slices.Equal(got, want) {
				t.Fatalf("All = %v, want %v", got, want)
			}
			if _, ok, _ := s.Fetch("k", ms(10_000)); ok {
				t.Fatal("Fetch returned a window older than the retention")
			}
			// A write into an expired segment is dropped, as Kafka does.
			if err := s.Put("late", 1, ms(2_000)); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := s.Fetch("late", ms(2_000)); ok {
				t.Fatal("a write into an expired segment was kept")
			}
			if n := countEngine(t, engine); n != 4 {
				t.Fatalf("engine holds %d records after a late write, want 4", n)
			}
		})
	}
}

func TestWindowStoreRecoversStreamTimeOnReopen(t *testing.T) {
	dir := t.TempDir()
	spec := state.WindowSpec{Size: 10 * time.Second, Retention: 30 * time.Second, SegmentInterval: 10 * time.Second}
	db, err := state.OpenPebble(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	s, _ := windowStore(t, db.Store("w"), spec)
	for _, start := range []int64{20_000, 45_000} {
		if err := s.Put("k", 1, ms(start)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = state.OpenPebble(dir, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, _ = windowStore(t, db.Store("w"), spec)
	if err := s.Put("k", 1, ms(12_000)); err != nil {
		t.Fatal(err)
	}
	if got, want := windows(t, s.All()), []string{"k@20000-30000=1", "k@45000-55000=1"}; !slices.Equal(got, want) {
		t.Fatalf("after reopen All = %v, want %v: stream time 45 s must survive the reopen", got, want)
	}
}

func TestSessionStore(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			b, err := state.SessionBuilder("s", serde.String(), serde.Int64(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			s := b.Build(b.Config().WrapEngine(open("s")), "s-changelog").(state.SessionStore[string, int64])
			put := func(k string, start, end, v int64) {
				t.Helper()
				if err := s.Put(serde.Windowed[string]{Key: k, Window: serde.NewWindow(start, end)}, v); err != nil {
					t.Fatal(err)
				}
			}
			put("a", 0, 10, 1)
			put("a", 30, 40, 2)
			put("ab", 5, 15, 3)
			put("a", 100, 100, 4)
			// Sessions of a overlapping [12, 35]: end >= 12 and start <= 35.
			if got, want := windows(t, s.FindSessions("a", ms(12), ms(35))), []string{"a@30-40=2"}; !slices.Equal(got, want) {
				t.Fatalf("FindSessions(a, 12, 35) = %v, want %v", got, want)
			}
			if got, want := windows(t, s.FindSessions("a", ms(-5), ms(200))), []string{"a@0-10=1", "a@30-40=2", "a@100-100=4"}; !slices.Equal(got, want) {
				t.Fatalf("FindSessions(a, -5, 200) = %v, want %v", got, want)
			}
			if v, ok, err := s.FetchSession("ab", ms(5), ms(15)); err != nil || !ok || v != 3 {
				t.Fatalf("FetchSession(ab) = %v %v %v", v, ok, err)
			}
			if err := s.Remove(serde.Windowed[string]{Key: "a", Window: serde.NewWindow(30, 40)}); err != nil {
				t.Fatal(err)
			}
			if got, want := windows(t, s.All()), []string{"a@0-10=1", "a@100-100=4", "ab@5-15=3"}; !slices.Equal(got, want) {
				t.Fatalf("All after Remove = %v, want %v", got, want)
			}
		})
	}
}

type logged struct{ k, v []byte }

// TestWindowStoreRestoreAfterPowerCut writes a logged window store on
// Pebble, cuts the power after a flush and more writes, and rebuilds the
// store from what the changelog received, as the runtime does on
// assignment when the local state is gone.
func TestWindowStoreRestoreAfterPowerCut(t *testing.T) {
	fs := vfs.NewStrictMem()
	spec := state.WindowSpec{Size: 10 * time.Second, Retention: 30 * time.Second, SegmentInterval: 10 * time.Second}
	db, err := state.OpenPebbleFS(fs, "db")
	if err != nil {
		t.Fatal(err)
	}
	var changelog []logged
	logger := state.ChangeLoggerFunc(func(k, v []byte) { changelog = append(changelog, logged{bytes.Clone(k), bytes.Clone(v)}) })
	b, err := state.WindowBuilder("w", serde.String(), serde.Int64(), spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Config()
	engine := cfg.WrapEngine(db.Store("w"))
	s := b.Build(state.NewLoggedStore(engine, logger), "w-changelog").(state.WindowStore[string, int64])
	want := map[string]int64{}
	put := func(k string, start, v int64) {
		t.Helper()
		if err := s.Put(k, v, ms(start)); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("%s@%d", k, start)] = v
	}
	put("a", 0, 1)
	put("b", 10_000, 2)
	if err := engine.Flush(); err != nil {
		t.Fatal(err)
	}
	put("a", 0, 3)
	put("c", 40_000, 4) // expires the window at 0
	delete(want, "a@0")
	if err := s.Delete("b", ms(10_000)); err != nil {
		t.Fatal(err)
	}
	delete(want, "b@10000")

	// Kafka's changelog key layout: key, 8-byte start, 4-byte sequence.
	first := changelog[0].k
	if !bytes.Equal(first[:1], []byte("a")) || binary.BigEndian.Uint64(first[1:9]) != 0 || len(first) != 1+12 {
		t.Fatalf("changelog key %x is not key + start + seqnum", first)
	}

	fs.SetIgnoreSyncs(true)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
	db, err = state.OpenPebbleFS(fs, "db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	engine = cfg.WrapEngine(db.Store("w"))
	s = b.Build(engine, "w-changelog").(state.WindowStore[string, int64])
	if got, want := windows(t, s.All()), []string{"a@0-10000=1", "b@10000-20000=2"}; !slices.Equal(got, want) {
		t.Fatalf("after the power cut the store holds %v, want only what was flushed: %v", got, want)
	}
	// Without a checkpoint the runtime restores from the changelog start.
	for _, r := range changelog {
		if r.v == nil {
			err = engine.Delete(r.k)
		} else {
			err = engine.Put(r.k, r.v)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int64{}
	for kv, err := range s.All() {
		if err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprintf("%s@%d", kv.Key.Key, kv.Key.Window.StartMs())] = kv.Value
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored %v, want %v", got, want)
	}
}

func TestValueAndTimestampLayout(t *testing.T) {
	s := state.ValueAndTimestampSerde(serde.String())
	b, err := s.Serialize("t", state.ValueAndTimestamp[string]{Value: "v", Timestamp: ms(258)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 0, 0, 0, 0, 0, 1, 2, 'v'}; !bytes.Equal(b, want) {
		t.Fatalf("serialized %x, want %x", b, want)
	}
	v, err := s.Deserialize("t", b)
	if err != nil || v.Value != "v" || !v.Timestamp.Equal(ms(258)) {
		t.Fatalf("round trip = %+v %v", v, err)
	}
	if _, err := s.Deserialize("t", []byte{1, 2}); err == nil {
		t.Fatal("a 2-byte value and timestamp was accepted")
	}
}
