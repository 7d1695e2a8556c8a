package commitlog

import (
	"bytes"
	"testing"
)

// FuzzDecodeTxnIndex feeds arbitrary bytes to the .txnindex decoder, as a
// torn or damaged file would be: it never panics, and what it accepts
// lies in its segment and encodes back to the same bytes.
func FuzzDecodeTxnIndex(f *testing.F) {
	f.Add(encodeTxnIndex([]AbortedTxn{{1, 0, 3, 4}, {2, 5, 9, 10}}), int64(0), int64(20))
	f.Add(encodeTxnIndex([]AbortedTxn{{1, 0, 3, 4}})[:20], int64(0), int64(20))
	f.Add([]byte{}, int64(5), int64(5))
	f.Fuzz(func(t *testing.T, b []byte, base, next int64) {
		entries, err := decodeTxnIndex(b, base, next)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.LastOffset < base || e.LastOffset >= next || e.FirstOffset > e.LastOffset {
				t.Fatalf("accepted %+v outside the segment [%d, %d)", e, base, next)
			}
		}
		if b2 := encodeTxnIndex(entries); !bytes.Equal(b2, b) {
			t.Fatalf("%x decoded as %+v, which encodes as %x", b, entries, b2)
		}
	})
}

// FuzzDecodeSnapshot feeds arbitrary bytes to the producer snapshot
// decoder: it never panics, and a snapshot it accepts re-encodes to one
// that decodes to the same state.
func FuzzDecodeSnapshot(f *testing.F) {
	s := make(producerState)
	s.apply(7, 1, batchMeta{0, 4, 10, 14}, true, 1000)
	s.applyMarker(8, 2, 20, 2000)
	f.Add(s.encode())
	f.Add([]byte("RPF1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		again, err := decodeSnapshot(got.encode())
		if err != nil || len(again) != len(got) {
			t.Fatalf("re-encoded snapshot: %d entries of %d, %v", len(again), len(got), err)
		}
		for pid, e := range got {
			if *again[pid] != *e {
				t.Fatalf("producer %d: %+v, after a round trip %+v", pid, e, again[pid])
			}
		}
	})
}
