package commitlog

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Sentinel errors of batch validation, wrapped with context; test them
// with errors.Is.
var (
	// ErrInvalidRecord (INVALID_RECORD) reports a batch refused by the
	// checks of Kafka's LogValidator: records that do not parse or do not
	// match the header's count and offset deltas, a control batch, an
	// unknown codec, a sequence missing from a batch with a producer id,
	// a record without a key for a compacted topic, or a records field
	// that is not exactly one batch.
	ErrInvalidRecord = errors.New("invalid record")
	// ErrInvalidTimestamp (INVALID_TIMESTAMP) reports a CreateTime
	// timestamp outside the window of Config.TimestampBeforeMax and
	// Config.TimestampAfterMax, or a producer batch claiming
	// LogAppendTime.
	ErrInvalidTimestamp = errors.New("invalid timestamp")
	// ErrInvalidTxnState (INVALID_TXN_STATE) reports a transactional
	// batch given to Append rather than AppendTransactional (the
	// coordinator did not verify its transaction), which is Kafka's answer
	// to a batch outside a transaction, or a non-transactional batch from
	// a producer whose transaction is open in the log.
	ErrInvalidTxnState = errors.New("invalid transaction state")
)

// maxRecordErrors bounds the records a RecordError lists.
const maxRecordErrors = 100

// RecordError reports a batch refused because of some of its records,
// for the RecordErrors of a Produce response (KIP-467). It wraps
// ErrInvalidRecord or ErrInvalidTimestamp.
type RecordError struct {
	// Err is ErrInvalidRecord or ErrInvalidTimestamp.
	Err error
	// Records lists the refused records in order, at most 100 of them.
	Records []BadRecord
	// Count is the number of refused records, listed or not.
	Count int
}

// BadRecord is one refused record of a batch.
type BadRecord struct {
	// Index is the record's position in its batch, from 0.
	Index int32
	// Message says why it was refused.
	Message string
}

func (e *RecordError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %d of the batch's records refused", e.Err, e.Count)
	for i, r := range e.Records[:min(len(e.Records), 3)] {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%srecord %d: %s", sep, r.Index, r.Message)
	}
	return b.String()
}

func (e *RecordError) Unwrap() error { return e.Err }

func (e *RecordError) add(i int32, format string, args ...any) {
	e.Count++
	if len(e.Records) < maxRecordErrors {
		e.Records = append(e.Records, BadRecord{i, fmt.Sprintf(format, args...)})
	}
}

// validator checks producer batches against one log's settings.
type validator struct {
	maxBatchBytes int
	logAppendTime bool
	keyRequired   bool
	// txn accepts transactional batches, of a producer whose transaction
	// the coordinator verified.
	txn bool
	// Timestamps of CreateTime records must lie in [minTs, maxTs].
	minTs, maxTs int64
}

// newValidator returns the validator of cfg at time now.
func newValidator(cfg *Config, now time.Time) validator {
	v := validator{maxBatchBytes: int(cfg.MaxBatchBytes), logAppendTime: cfg.LogAppendTime, keyRequired: cfg.KeyRequired, minTs: math.MinInt64, maxTs: math.MaxInt64}
	ms := now.UnixMilli()
	if d := cfg.TimestampBeforeMax; d > 0 {
		v.minTs = ms - d.Milliseconds()
	}
	if d := cfg.TimestampAfterMax; d > 0 {
		v.maxTs = ms + d.Milliseconds()
	}
	return v
}

// validate checks the batch at the start of b as Kafka's broker checks a
// producer's batch before appending it: framing, size, CRC-32C, a record
// count matching the last offset delta, attributes a producer may set, and
// then every record: it parses completely (decompressed as a stream if the
// batch is compressed), its offset delta is its index, its timestamp is in
// the window, and the records are exactly as many as the header says, with
// nothing after them; last, the header's max timestamp is in the window.
// It returns the batch's header.
func (v *validator) validate(b []byte) (batchHeader, error) {
	h, err := checkLength(b, int64(len(b)))
	if err != nil {
		return h, err
	}
	if h.size > v.maxBatchBytes {
		return h, fmt.Errorf("%w: batch of %d bytes exceeds %d", ErrRecordTooLarge, h.size, v.maxBatchBytes)
	}
	if err := checkCRC(b, &h); err != nil {
		return h, err
	}
	if err := checkCount(&h); err != nil {
		return h, fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	if err := v.checkAttributes(&h); err != nil {
		return h, err
	}
	if err := v.checkRecords(&h, b[batchHeaderSize:h.size]); err != nil {
		return h, err
	}
	// Kafka rewrites the header's max timestamp; Riffle stores it as
	// sent, and retention and time lookups trust it, so it must lie in
	// the window too.
	if !v.timestampOK(h.maxTimestamp) {
		return h, fmt.Errorf("%w: max timestamp %d is outside [%d, %d]", ErrInvalidTimestamp, h.maxTimestamp, v.minTs, v.maxTs)
	}
	return h, nil
}

// checkAttributes checks the header fields a producer sets.
func (v *validator) checkAttributes(h *batchHeader) error {
	switch a := h.attributes; {
	case a&attrControl != 0:
		return fmt.Errorf("%w: control batches are written by the broker only", ErrInvalidRecord)
	case a&attrTransactional != 0 && !v.txn:
		return fmt.Errorf("%w: transactional batch from producer %d, which has no ongoing transaction", ErrInvalidTxnState, h.producerID)
	case a&attrTransactional != 0 && h.producerID < 0:
		return fmt.Errorf("%w: transactional batch without a producer id", ErrInvalidRecord)
	case a&attrCompression > 4:
		return fmt.Errorf("%w: unknown compression codec %d", ErrInvalidRecord, a&attrCompression)
	case a&attrLogAppendTime != 0:
		return fmt.Errorf("%w: producers must not set the LogAppendTime timestamp type", ErrInvalidTimestamp)
	case h.producerID >= 0 && h.baseSequence < 0:
		return fmt.Errorf("%w: batch of producer %d has no sequence number", ErrInvalidRecord, h.producerID)
	}
	return nil
}

// timestampOK reports whether ts, a CreateTime timestamp, is acceptable:
// in the window, or -1 for none. LogAppendTime logs accept any.
func (v *validator) timestampOK(ts int64) bool {
	return v.logAppendTime || ts == -1 || ts >= v.minTs && ts <= v.maxTs
}

// checkRecords walks the records section data of the batch h heads.
func (v *validator) checkRecords(h *batchHeader, data []byte) error {
	var w recordWalker
	defer w.close()
	if err := w.open(h.attributes&attrCompression, data); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRecord, err)
	}
	// Records without a key (for a compacted topic) or with a timestamp
	// out of the window are collected, one error a record as in Kafka, and
	// reported after the walk: as INVALID_TIMESTAMP if any timestamp is.
	var refused *RecordError
	refuse := func(i int32, kind error, format string, args ...any) {
		if refused == nil {
			refused = &RecordError{Err: kind}
		}
		if kind == ErrInvalidTimestamp {
			refused.Err = kind
		}
		refused.add(i, format, args...)
	}
	for i := range h.recordCount {
		start := w.consumed
		rec, err := w.next()
		if errors.Is(err, ErrRecordTooLarge) {
			return err
		}
		if err != nil {
			bad := &RecordError{Err: ErrInvalidRecord}
			if errors.Is(err, errNoMoreData) && w.consumed == start {
				bad.add(i, "the header counts %d records, the batch holds %d", h.recordCount, i)
			} else {
				bad.add(i, "%v", err)
			}
			return bad
		}
		if rec.offsetDelta != i {
			bad := &RecordError{Err: ErrInvalidRecord}
			bad.add(i, "offset delta %d, want %d", rec.offsetDelta, i)
			return bad
		}
		if ts := h.baseTimestamp + rec.timestampDelta; rec.nullKey && v.keyRequired {
			refuse(i, ErrInvalidRecord, "a compacted topic takes only records with a key")
		} else if !v.timestampOK(ts) {
			refuse(i, ErrInvalidTimestamp, "timestamp %d is outside [%d, %d]", ts, v.minTs, v.maxTs)
		}
	}
	switch end, err := w.atEnd(); {
	case errors.Is(err, ErrRecordTooLarge):
		return err
	case err != nil:
		return fmt.Errorf("%w: after the last record: %v", ErrInvalidRecord, err)
	case !end:
		return fmt.Errorf("%w: bytes follow the %d records the header counts", ErrInvalidRecord, h.recordCount)
	}
	if refused != nil {
		return refused
	}
	return nil
}

// CheckSingleBatch checks that records, the records of one partition in a
// Produce request, hold one v2 batch and nothing after it, as Kafka
// requires of Produce v3 and later (ProduceRequest.validateRecords),
// answering ErrInvalidRecord. A batch too short to tell is left to Append.
func CheckSingleBatch(records []byte) error {
	switch {
	case len(records) == 0:
		return fmt.Errorf("%w: no record batch", ErrInvalidRecord)
	case len(records) > offMagic && int8(records[offMagic]) != 2:
		return fmt.Errorf("%w: magic %d, Produce v3+ carries only magic 2 batches", ErrInvalidRecord, int8(records[offMagic]))
	case len(records) < batchHeaderSize:
		return nil
	}
	if h := parseHeader(records); h.size >= batchHeaderSize && h.size < len(records) {
		return fmt.Errorf("%w: more than one record batch; Produce v3+ carries exactly one per partition", ErrInvalidRecord)
	}
	return nil
}

// Transactional reports whether the first batch of records has the
// transactional attribute, which is what Kafka's Produce handler looks at
// to demand a transactional id.
func Transactional(records []byte) bool {
	return len(records) >= batchHeaderSize && records[offMagic] == 2 && parseHeader(records).attributes&attrTransactional != 0
}
