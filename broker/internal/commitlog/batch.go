package commitlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Offsets of the fields of a v2 record batch header.
const (
	offBaseOffset      = 0
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offBaseTimestamp   = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offRecordCount     = 57

	// batchHeaderSize is the size of a v2 batch header, records excluded.
	batchHeaderSize = 61
	// lengthPrefix is the part of the header not counted by batchLength.
	lengthPrefix = offLeaderEpoch

	attrCompression   = 0x07
	attrLogAppendTime = 0x08
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// decompressor inflates compressed batches for timestamp lookups, the
// only place the log looks inside a batch.
var decompressor = kgo.DefaultDecompressor()

// batchHeader is the parsed fixed part of a v2 record batch.
type batchHeader struct {
	baseOffset      int64
	size            int // bytes of the whole batch, header included
	attributes      int16
	lastOffsetDelta int32
	baseTimestamp   int64
	maxTimestamp    int64
	producerID      int64
	producerEpoch   int16
	baseSequence    int32
	recordCount     int32
}

func (h *batchHeader) lastOffset() int64 { return h.baseOffset + int64(h.lastOffsetDelta) }

// idempotent reports whether the batch carries producer sequence numbers.
func (h *batchHeader) idempotent() bool { return h.producerID >= 0 && h.baseSequence >= 0 }

// lastSequence is the sequence number of the batch's last record.
func (h *batchHeader) lastSequence() int32 { return incSequence(h.baseSequence, h.lastOffsetDelta) }

// incSequence adds n to seq the way Kafka does: past MaxInt32 it wraps to 0.
func incSequence(seq, n int32) int32 {
	if seq > math.MaxInt32-n {
		return n - (math.MaxInt32 - seq) - 1
	}
	return seq + n
}

// parseHeader reads the header at the start of b, which holds at least
// batchHeaderSize bytes. It checks nothing.
func parseHeader(b []byte) batchHeader {
	be := binary.BigEndian
	return batchHeader{
		baseOffset:      int64(be.Uint64(b[offBaseOffset:])),
		size:            lengthPrefix + int(int32(be.Uint32(b[offLength:]))),
		attributes:      int16(be.Uint16(b[offAttributes:])),
		lastOffsetDelta: int32(be.Uint32(b[offLastOffsetDelta:])),
		baseTimestamp:   int64(be.Uint64(b[offBaseTimestamp:])),
		maxTimestamp:    int64(be.Uint64(b[offMaxTimestamp:])),
		producerID:      int64(be.Uint64(b[offProducerID:])),
		producerEpoch:   int16(be.Uint16(b[offProducerEpoch:])),
		baseSequence:    int32(be.Uint32(b[offBaseSequence:])),
		recordCount:     int32(be.Uint32(b[offRecordCount:])),
	}
}

// checkFraming checks what can be checked from a header alone: a batch
// length that fits in avail bytes, magic 2 and a record count consistent
// with the last offset delta.
func checkFraming(b []byte, avail int64) (batchHeader, error) {
	if len(b) < batchHeaderSize || avail < batchHeaderSize {
		return batchHeader{}, fmt.Errorf("%w: %d bytes cannot hold a batch header", ErrCorruptMessage, min(int64(len(b)), avail))
	}
	if magic := int8(b[offMagic]); magic != 2 {
		return batchHeader{}, fmt.Errorf("%w: magic %d", ErrUnsupportedMagic, magic)
	}
	h := parseHeader(b)
	switch {
	case h.size < batchHeaderSize:
		return h, fmt.Errorf("%w: batch length %d is shorter than a header", ErrCorruptMessage, h.size-lengthPrefix)
	case int64(h.size) > avail:
		return h, fmt.Errorf("%w: batch length %d exceeds the %d bytes left", ErrCorruptMessage, h.size-lengthPrefix, avail-lengthPrefix)
	case h.recordCount <= 0:
		return h, fmt.Errorf("%w: record count %d", ErrCorruptMessage, h.recordCount)
	case h.lastOffsetDelta != h.recordCount-1:
		return h, fmt.Errorf("%w: last offset delta %d does not match record count %d", ErrCorruptMessage, h.lastOffsetDelta, h.recordCount)
	}
	return h, nil
}

// checkBatch fully validates the batch at the start of b: framing and
// CRC-32C. It returns the batch's header.
func checkBatch(b []byte) (batchHeader, error) {
	h, err := checkFraming(b, int64(len(b)))
	if err != nil {
		return h, err
	}
	want := binary.BigEndian.Uint32(b[offCRC:])
	if got := crc32.Checksum(b[offAttributes:h.size], castagnoli); got != want {
		return h, fmt.Errorf("%w: crc %08x, header says %08x", ErrCorruptMessage, got, want)
	}
	return h, nil
}

// stampBatch rewrites the header fields the log owns: the base offset, the
// partition leader epoch and, for LogAppendTime logs, the timestamp type
// and max timestamp, in which case it recomputes the CRC.
func stampBatch(b []byte, size int, base int64, appendTime int64, logAppendTime bool) {
	be := binary.BigEndian
	be.PutUint64(b[offBaseOffset:], uint64(base))
	be.PutUint32(b[offLeaderEpoch:], 0)
	if !logAppendTime {
		return
	}
	be.PutUint16(b[offAttributes:], be.Uint16(b[offAttributes:])|attrLogAppendTime)
	be.PutUint64(b[offMaxTimestamp:], uint64(appendTime))
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:size], castagnoli))
}

// findRecord returns the offset and timestamp of the first record of the
// batch b at or after offset from whose timestamp satisfies match. It
// decompresses the batch if needed; ok is false if no record matches.
func findRecord(b []byte, from int64, match func(ts int64) bool) (offset, ts int64, ok bool, err error) {
	h := parseHeader(b)
	if h.attributes&attrLogAppendTime != 0 {
		if !match(h.maxTimestamp) {
			return 0, 0, false, nil
		}
		return max(from, h.baseOffset), h.maxTimestamp, true, nil
	}
	data := b[batchHeaderSize:h.size]
	if codec := h.attributes & attrCompression; codec != 0 {
		if data, err = decompressor.Decompress(data, kgo.CompressionCodecType(codec)); err != nil {
			return 0, 0, false, fmt.Errorf("decompress batch at offset %d: %w", h.baseOffset, err)
		}
	}
	var rec kmsg.Record
	for i := int32(0); i < h.recordCount && len(data) > 0; i++ {
		n, w := binary.Varint(data)
		if w <= 0 || n < 0 || int64(len(data)-w) < n {
			return 0, 0, false, fmt.Errorf("%w: record %d of batch at offset %d is truncated", ErrCorruptMessage, i, h.baseOffset)
		}
		if err := rec.ReadFrom(data[:w+int(n)]); err != nil {
			return 0, 0, false, fmt.Errorf("%w: record %d of batch at offset %d: %v", ErrCorruptMessage, i, h.baseOffset, err)
		}
		data = data[w+int(n):]
		off, t := h.baseOffset+int64(rec.OffsetDelta), h.baseTimestamp+rec.TimestampDelta64
		if off >= from && match(t) {
			return off, t, true, nil
		}
	}
	return 0, 0, false, nil
}
