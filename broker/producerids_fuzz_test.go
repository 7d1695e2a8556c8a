package broker

import (
	"encoding/binary"
	"testing"
)

// FuzzDecodeProducerIDBlock feeds arbitrary file contents to the
// producer-id file decoder: it never panics, and what it accepts leaves
// room for a whole block of non-negative ids and encodes back the same.
func FuzzDecodeProducerIDBlock(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(nil, 0))
	f.Add(binary.BigEndian.AppendUint64(nil, 3000))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		end, err := decodeProducerIDBlock(data)
		if err != nil {
			return
		}
		if end < 0 || end+producerIDBlock < end {
			t.Fatalf("accepted block end %d", end)
		}
		if got := binary.BigEndian.AppendUint64(nil, uint64(end)); string(got) != string(data) {
			t.Fatalf("decoded %x as %d, which encodes as %x", data, end, got)
		}
	})
}
