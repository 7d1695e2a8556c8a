package commitlog

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzValidateBatch feeds the validator batches whose length and CRC are
// fixed up, so that mutations reach the records. It must never panic, and
// whatever it accepts must parse with franz-go's own decompressors and
// record decoder into exactly the records the header counts, with offset
// deltas 0 to n-1 and nothing left over.
func FuzzValidateBatch(f *testing.F) {
	for _, c := range codecs {
		f.Add(batchOf(c.enc(f, records(3, 20)), c.codec, 3, testTs))
	}
	f.Add(batchOf(encodeRecords(kmsg.Record{}, kmsg.Record{OffsetDelta: 1, Headers: []kmsg.Header{{Key: "k"}}}), 0, 2, testTs))
	decompressor := kgo.DefaultDecompressor()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= batchHeaderSize {
			resign(b)
		}
		v := newValidator(&testWindow, testNow)
		h, err := v.validate(b)
		if err != nil {
			return
		}
		data := b[batchHeaderSize:h.size]
		if codec := h.attributes & attrCompression; codec != 0 {
			if data, err = decompressor.Decompress(data, kgo.CompressionCodecType(codec)); err != nil {
				t.Fatalf("accepted a batch franz-go cannot decompress: %v", err)
			}
		}
		for i := range h.recordCount {
			n, w := binary.Varint(data)
			if w <= 0 || n < 0 || int64(len(data)-w) < n {
				t.Fatalf("accepted a batch whose record %d has a bad length", i)
			}
			var r kmsg.Record
			if err := r.ReadFrom(data[:w+int(n)]); err != nil {
				t.Fatalf("accepted a batch whose record %d franz-go cannot read: %v", i, err)
			}
			if r.OffsetDelta != i {
				t.Fatalf("accepted record %d with offset delta %d", i, r.OffsetDelta)
			}
			data = data[w+int(n):]
		}
		if len(data) != 0 {
			t.Fatalf("accepted a batch with %d bytes after its records", len(data))
		}
	})
}
