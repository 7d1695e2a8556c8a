package commitlog

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// spec describes a test batch.
type spec struct {
	n         int   // records
	ts        int64 // first record's timestamp; record i has ts+i
	valueSize int
	pid       int64 // -1 for a non-idempotent batch
	epoch     int16
	seq       int32
	codec     kgo.CompressionCodec // zero value: uncompressed
	txn       bool                 // transactional
}

func plain(n int, ts int64) spec { return spec{n: n, ts: ts, valueSize: 10, pid: -1, seq: -1} }

func idem(pid int64, epoch int16, seq int32, n int) spec {
	return spec{n: n, ts: 1000, valueSize: 10, pid: pid, epoch: epoch, seq: seq}
}

// makeBatch encodes a v2 record batch with kmsg and signs it with CRC-32C.
func makeBatch(t testing.TB, s spec) []byte {
	t.Helper()
	var recs []byte
	for i := range s.n {
		r := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Value: bytes.Repeat([]byte{byte('a' + i%26)}, s.valueSize)}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1) // without the 1-byte varint of Length 0
		recs = r.AppendTo(recs)
	}
	var attrs int16
	if s.codec != (kgo.CompressionCodec{}) {
		c, err := kgo.DefaultCompressor(s.codec)
		if err != nil {
			t.Fatal(err)
		}
		out, codec := c.Compress(new(bytes.Buffer), recs)
		recs, attrs = append([]byte(nil), out...), int16(codec)
	}
	if s.txn {
		attrs |= attrTransactional
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(s.n - 1),
		FirstTimestamp:       s.ts,
		MaxTimestamp:         s.ts + int64(s.n-1),
		ProducerID:           s.pid,
		ProducerEpoch:        s.epoch,
		FirstSequence:        s.seq,
		NumRecords:           int32(s.n),
		Records:              recs,
	}
	b.Length = int32(batchHeaderSize - lengthPrefix + len(recs))
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[offCRC:], crc32.Checksum(raw[offAttributes:], castagnoli))
	return raw
}

// testConfig is a config with small segments and unlimited retention.
func testConfig() Config {
	return Config{
		SegmentBytes:       4096,
		RetentionBytes:     -1,
		RetentionAge:       -1,
		IndexIntervalBytes: 256,
		Logger:             slog.New(slog.DiscardHandler),
	}
}

func openLog(t testing.TB, dir string, cfg Config) *Log {
	t.Helper()
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// readAll reads every batch from offset to the high watermark and
// returns their headers, checking that each is whole and signed.
func readAll(t testing.TB, l *Log, from int64) []batchHeader {
	t.Helper()
	var hs []batchHeader
	for off := from; off < l.HighWatermark(); {
		b, err := l.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if len(b) == 0 {
			t.Fatalf("read at %d returned nothing below the high watermark %d", off, l.HighWatermark())
		}
		for len(b) > 0 {
			h, err := checkBatch(b)
			if err != nil {
				t.Fatalf("read at %d returned a bad batch: %v", off, err)
			}
			hs = append(hs, h)
			off = h.lastOffset() + 1
			b = b[h.size:]
		}
	}
	return hs
}

// checkBatch fully validates the batch at the start of b: framing and
// CRC-32C. It returns the batch's header.
func checkBatch(b []byte) (batchHeader, error) {
	h, err := checkFraming(b, int64(len(b)))
	if err != nil {
		return h, err
	}
	return h, checkCRC(b, &h)
}

// churn appends b to l on a goroutine of wg until deadline (at most 3,000
// times), enforcing retention every 100 appends and deleting all but the
// last 50 records below the high watermark every 250, so that segments
// go under concurrent readers. The first error goes to errs; the channel
// returned is closed when it stops.
func churn(wg *sync.WaitGroup, l *Log, b []byte, deadline time.Time, errs chan<- error) <-chan struct{} {
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
			if _, err := l.Append(b, t0); err != nil {
				errs <- err
				return
			}
			switch {
			case i%100 == 0:
				if err := l.EnforceRetention(t0); err != nil {
					errs <- err
					return
				}
			case i%250 == 0:
				if _, err := l.DeleteRecords(l.HighWatermark() - 50); err != nil {
					errs <- err
					return
				}
			}
		}
	})
	return done
}
