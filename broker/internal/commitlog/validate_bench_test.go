package commitlog

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// realisticRecords encodes n records of about size bytes each: JSON-like
// values with a random hex payload, which compress about 2:1.
func realisticRecords(n, size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	events := []string{"click", "view", "purchase", "signup"}
	var recs []kmsg.Record
	for i := range n {
		v := fmt.Appendf(nil, `{"id":%d,"user":"user-%d","event":%q,"payload":"`, i, rng.IntN(10000), events[rng.IntN(len(events))])
		raw := make([]byte, max(0, size-len(v)-2)/2)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		v = append(hex.AppendEncode(v, raw), `"}`...)
		recs = append(recs, kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Key: fmt.Appendf(nil, "user-%d", i), Value: v})
	}
	return encodeRecords(recs...)
}

// BenchmarkValidate validates a batch of 16 records of 1 KiB, as Append
// does before storing it, for each codec. Throughput counts the records'
// uncompressed bytes. CRCOnly is the framing and CRC check that was all
// Append did before.
func BenchmarkValidate(b *testing.B) {
	section := realisticRecords(16, 1024)
	v := newValidator(&testWindow, testNow)
	b.Run("CRCOnly", func(b *testing.B) {
		batch := batchOf(section, 0, 16, testTs)
		b.SetBytes(int64(len(section)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := checkBatch(batch); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, c := range codecs {
		batch := batchOf(c.enc(b, section), c.codec, 16, testTs)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(section)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.validate(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(batch)), "batch-bytes")
		})
	}
}
