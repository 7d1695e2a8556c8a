package state_test

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/state"
)

// FuzzWindowStore runs a sequence of puts, deletes and fetches decoded
// from the input against a Pebble and a memory window store and a model of
// Kafka's segmented store: writes to a segment older than that of
// observed - retention are dropped, and only windows starting after
// observed - retention are visible, observed being the latest start
// written.
func FuzzWindowStore(f *testing.F) {
	f.Add([]byte{0, 1, 10, 0, 2, 200, 1, 1, 10, 2, 1, 0, 0, 3, 255, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 90, 0, 1, 5, 3, 0, 0, 2, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const retention, interval, size = 30, 10, 5 // milliseconds
		spec := state.WindowSpec{Size: size * time.Millisecond, Retention: retention * time.Millisecond, SegmentInterval: interval * time.Millisecond}
		db, err := state.OpenPebble(t.TempDir(), slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		stores := map[string]state.WindowStore[string, int64]{}
		stores["pebble"], _ = windowStore(t, db.Store("w"), spec)
		stores["memory"], _ = windowStore(t, state.NewMemoryStore("w"), spec)
		type wk struct {
			key   string
			start int64
		}
		model := map[wk]int64{}
		observed := int64(-1)
		visible := func(start int64) bool { return observed < 0 || start > observed-retention }
		for i := 0; i+2 < len(ops); i += 3 {
			op, key, start := ops[i]%4, fmt.Sprintf("k%d", ops[i+1]%3), int64(ops[i+2])
			for name, s := range stores {
				var err error
				switch op {
				case 0:
					err = s.Put(key, int64(i), ms(start))
				case 1:
					err = s.Delete(key, ms(start))
				}
				if err != nil {
					t.Fatalf("%s: op %d: %v", name, op, err)
				}
			}
			switch op {
			case 0:
				observed = max(observed, start)
				minLive := max(observed-retention, 0) / interval
				if start/interval >= minLive {
					model[wk{key, start}] = int64(i)
				}
			case 1:
				delete(model, wk{key, start})
			}
			var want []string
			for k, v := range model {
				if visible(k.start) && (op != 2 || k.key == key && k.start >= start-20 && k.start <= start) {
					want = append(want, fmt.Sprintf("%s@%d-%d=%d", k.key, k.start, k.start+size, v))
				}
			}
			slices.Sort(want)
			for name, s := range stores {
				seq := s.All()
				if op == 2 {
					seq = s.FetchRange(key, ms(start-20), ms(start))
				}
				got := windows(t, seq)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("%s after op %d (%d %s %d): got %v, want %v", name, i/3, op, key, start, got, want)
				}
				if op == 3 {
					v, ok, err := s.Fetch(key, ms(start))
					m, mok := model[wk{key, start}]
					mok = mok && visible(start)
					if err != nil || ok != mok || ok && v != m {
						t.Fatalf("%s: Fetch(%s, %d) = %d %v %v, want %d %v", name, key, start, v, ok, err, m, mok)
					}
				}
			}
		}
	})
}
