package commitlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
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
	attrTransactional = 0x10
	attrControl       = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
// with the last offset delta. A batch the cleaner filtered keeps its last
// offset delta with fewer records, so a stored batch may count fewer
// records than its offset span.
func checkFraming(b []byte, avail int64) (batchHeader, error) {
	h, err := checkLength(b, avail)
	if err != nil {
		return h, err
	}
	if err := checkStoredCount(&h); err != nil {
		return h, fmt.Errorf("%w: %v", ErrCorruptMessage, err)
	}
	return h, nil
}

// checkLength checks that b starts with a magic 2 header whose batch
// length fits in avail bytes.
func checkLength(b []byte, avail int64) (batchHeader, error) {
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
	}
	return h, nil
}

// checkCount checks that the header's record count is positive and
// matches its last offset delta.
func checkCount(h *batchHeader) error {
	switch {
	case h.recordCount <= 0:
		return fmt.Errorf("record count %d", h.recordCount)
	case h.lastOffsetDelta != h.recordCount-1:
		return fmt.Errorf("last offset delta %d does not match record count %d", h.lastOffsetDelta, h.recordCount)
	}
	return nil
}

// checkStoredCount checks that a stored batch's record count is positive
// and fits in its offset span.
func checkStoredCount(h *batchHeader) error {
	switch {
	case h.recordCount <= 0:
		return fmt.Errorf("record count %d", h.recordCount)
	case h.lastOffsetDelta < h.recordCount-1:
		return fmt.Errorf("last offset delta %d is too small for record count %d", h.lastOffsetDelta, h.recordCount)
	}
	return nil
}

// checkCRC checks the CRC-32C of the batch h heads in b.
func checkCRC(b []byte, h *batchHeader) error {
	want := binary.BigEndian.Uint32(b[offCRC:])
	if got := crc32.Checksum(b[offAttributes:h.size], castagnoli); got != want {
		return fmt.Errorf("%w: crc %08x, header says %08x", ErrCorruptMessage, got, want)
	}
	return nil
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
// streams through the batch, decompressing if needed; ok is false if no
// record matches.
func findRecord(b []byte, from int64, match func(ts int64) bool) (offset, ts int64, ok bool, err error) {
	h := parseHeader(b)
	if h.attributes&attrLogAppendTime != 0 {
		if !match(h.maxTimestamp) {
			return 0, 0, false, nil
		}
		return max(from, h.baseOffset), h.maxTimestamp, true, nil
	}
	var w recordWalker
	defer w.close()
	if err := w.open(h.attributes&attrCompression, b[batchHeaderSize:h.size]); err != nil {
		return 0, 0, false, fmt.Errorf("batch at offset %d: %w", h.baseOffset, err)
	}
	for i := range h.recordCount {
		rec, err := w.next()
		if err != nil {
			return 0, 0, false, fmt.Errorf("%w: record %d of batch at offset %d: %v", ErrCorruptMessage, i, h.baseOffset, err)
		}
		off, t := h.baseOffset+int64(rec.offsetDelta), h.baseTimestamp+rec.timestampDelta
		if off >= from && match(t) {
			return off, t, true, nil
		}
	}
	return 0, 0, false, nil
}
