package group

import (
	"bytes"
	"testing"
	"time"
)

// FuzzDecodeStoreRecord feeds arbitrary keys and values to the group
// store's record decoder, as a damaged store would: it never panics, and
// an offset record it accepts encodes back to the same bytes.
func FuzzDecodeStoreRecord(f *testing.F) {
	md := "meta"
	for _, o := range []offset{
		{Offset: 42, LeaderEpoch: 3, Committed: time.UnixMilli(1700000000000), TopicID: [16]byte{1, 2}},
		{Offset: -1, LeaderEpoch: -1, Metadata: &md, Committed: time.UnixMilli(0)},
	} {
		k, err := offsetKey("group", tp{"topic", 7})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(k, encodeOffset(o))
	}
	f.Add(groupKey("g"), []byte(`{"type":"consumer","generation":4,"emptySince":"2024-01-02T03:04:05Z"}`))
	f.Add(groupKey("g"), []byte(`{"type":"classic","protocolType":"consumer","protocol":"range","generation":1}`))
	pk, err := pendingKey("g", 7, tp{"topic", 1})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(pk, encodeOffset(offset{Offset: 9, Committed: time.UnixMilli(0)}))
	f.Add([]byte{pendingKeyTag, 0, 1, 'g', 0xff}, []byte{})
	f.Add([]byte{offsetKeyTag, 0xff, 0xff}, []byte{})
	f.Add([]byte{}, []byte{1})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		c := contents{groups: make(map[string]groupRecord), offsets: make(map[string]map[tp]offset)}
		if err := c.add(k, v); err != nil || k[0] != offsetKeyTag {
			return
		}
		for g, offs := range c.offsets {
			for p, o := range offs {
				k2, err := offsetKey(g, p)
				if err != nil || !bytes.Equal(k2, k) {
					t.Fatalf("key %x decoded as %q %v, which encodes as %x (%v)", k, g, p, k2, err)
				}
				if v2 := encodeOffset(o); !bytes.Equal(v2, v) {
					t.Fatalf("value %x decoded as %+v, which encodes as %x", v, o, v2)
				}
			}
		}
	})
}
