package state_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/riffle-stream/riffle/state"
)

// BenchmarkPebbleReadModifyWrite is an aggregation's work on a Pebble
// store: Get a counter, Put it back raised, over keys drawn uniformly from
// a key space that the row cache holds (1,000 keys) or does not
// (1,000,000):
//
//	go test -run '^$' -bench BenchmarkPebbleReadModifyWrite ./state
func BenchmarkPebbleReadModifyWrite(b *testing.B) {
	for _, keys := range []int{1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			db, err := state.OpenPebble(b.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s := db.Store("counts")
			rng := rand.New(rand.NewPCG(1, 2))
			key := make([]byte, 8)
			for b.Loop() {
				binary.BigEndian.PutUint64(key, rng.Uint64N(uint64(keys)))
				v, err := s.Get(key)
				if err != nil {
					b.Fatal(err)
				}
				var n uint64
				if len(v) == 8 {
					n = binary.BigEndian.Uint64(v)
				}
				if err := s.Put(key, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
