package share

import (
	"slices"
	"testing"
	"time"
)

// FuzzDecodePartition feeds arbitrary keys and values to the share
// store's partition decoder, as a damaged store would: it never panics,
// never builds a window longer than the store allows, and a window it
// accepts survives another encode and decode unchanged.
func FuzzDecodePartition(f *testing.F) {
	now := time.Now()
	w := window{start: 100}
	w.extend(120, "m", now.Add(time.Minute), false)
	w.ack("m", 100, 104, []int8{ackAccept}, 5, now)
	w.ack("m", 105, 106, []int8{ackReject}, 5, now)
	w.ack("m", 107, 107, []int8{ackRelease}, 5, now)
	k := partitionKey("group", topicPartition{"topic", 3})
	f.Add(k, w.marshal(make([]byte, 16)))
	f.Add(k, (&window{start: 7}).marshal(make([]byte, 16)))
	f.Add(k, append(make([]byte, 16), windowFormat, 0, 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Add([]byte{partitionPrefix, 0xff}, []byte{})
	f.Add([]byte("p\x81\x00g\x01t\x00\x00\x00\x00"), (&window{start: 7}).marshal(make([]byte, 16))) // overlong length
	f.Fuzz(func(t *testing.T, k, v []byte) {
		sp, err := decodePartition(k, v)
		if err != nil {
			return
		}
		if len(sp.win.recs) > maxWindowRecords {
			t.Fatalf("decoded a window of %d records", len(sp.win.recs))
		}
		if k2 := partitionKey(sp.group, sp.tp); string(k2) != string(k) {
			t.Fatalf("key %x decoded as %q %v, which encodes as %x", k, sp.group, sp.tp, k2)
		}
		again, err := unmarshalWindow(sp.win.marshal(nil))
		if err != nil {
			t.Fatalf("window %+v does not decode after encoding: %v", sp.win, err)
		}
		if again.start != sp.win.start || !slices.Equal(again.recs, sp.win.recs) {
			t.Fatalf("window changed on a second encode: %+v, then %+v", sp.win, again)
		}
	})
}
