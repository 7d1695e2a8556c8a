package commitlog

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transactions in a log
//
// A transactional producer's first batch in the log opens its transaction
// there (AppendTransactional); the coordinator closes it with a control
// batch, the commit or abort marker (AppendMarker). The last stable offset
// is the first offset of the earliest transaction still open, or the high
// watermark: read_committed consumers read below it only
// (FetchCommitted). The open transactions are part of the producer state,
// and survive restarts in its snapshots.
//
// The cleaner of a compacted log cleans only below the last stable
// offset, and maps no key to a record of an aborted transaction, so that
// such a record never takes the place of the key's committed one.
//
// Each segment keeps the aborted transactions whose abort marker it holds,
// in memory and in its .txnindex file, in Kafka's format: 34-byte entries
// of a version (0), the producer id, the first offset of the transaction,
// the offset of its marker and the last stable offset after it. The file
// is written whole, fsynced, when the segment is rolled and when the log
// is closed. Open takes the entries of the segments its producer state
// replay does not read from their files, and rebuilds the others from the
// batches it reads; a missing or torn file of a segment that was rolled
// or closed makes it replay the whole log, rebuilding every index.

const (
	txnIndexSuffix    = ".txnindex"
	txnIndexEntrySize = 34
)

// AbortedTxn is an aborted transaction of a log, as a Fetch response lists
// it for read_committed consumers.
type AbortedTxn struct {
	// ProducerID is the producer of the transaction.
	ProducerID int64
	// FirstOffset is the offset of its first batch in the log.
	FirstOffset int64
	// LastOffset is the offset of its abort marker.
	LastOffset int64
	// LastStableOffset is the last stable offset once the marker was
	// written.
	LastStableOffset int64
}

// errTxnIndex reports a .txnindex file that does not describe its segment.
var errTxnIndex = errors.New("malformed transaction index")

func encodeTxnIndex(entries []AbortedTxn) []byte {
	b := make([]byte, 0, len(entries)*txnIndexEntrySize)
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, 0)
		b = binary.BigEndian.AppendUint64(b, uint64(e.ProducerID))
		b = binary.BigEndian.AppendUint64(b, uint64(e.FirstOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(e.LastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(e.LastStableOffset))
	}
	return b
}

// decodeTxnIndex decodes the index of the segment [base, next): entries
// of version 0, markers in the segment in increasing order, each after
// its transaction's first offset.
func decodeTxnIndex(b []byte, base, next int64) ([]AbortedTxn, error) {
	if len(b)%txnIndexEntrySize != 0 {
		return nil, fmt.Errorf("%w: %d bytes", errTxnIndex, len(b))
	}
	be := binary.BigEndian
	var out []AbortedTxn
	for ; len(b) > 0; b = b[txnIndexEntrySize:] {
		e := AbortedTxn{int64(be.Uint64(b[2:])), int64(be.Uint64(b[10:])), int64(be.Uint64(b[18:])), int64(be.Uint64(b[26:]))}
		switch {
		case be.Uint16(b) != 0:
			return nil, fmt.Errorf("%w: entry version %d", errTxnIndex, be.Uint16(b))
		case e.LastOffset < base || e.LastOffset >= next || e.FirstOffset < 0 || e.FirstOffset > e.LastOffset:
			return nil, fmt.Errorf("%w: entry [%d, %d] in segment [%d, %d)", errTxnIndex, e.FirstOffset, e.LastOffset, base, next)
		case len(out) > 0 && e.LastOffset <= out[len(out)-1].LastOffset:
			return nil, fmt.Errorf("%w: entries out of order", errTxnIndex)
		}
		out = append(out, e)
	}
	return out, nil
}

// writeTxnIndex writes the segment's aborted transactions to its
// .txnindex file, fsynced.
func (s *segment) writeTxnIndex() error {
	if err := writeFileAtomic(s.fs, s.path(txnIndexSuffix), encodeTxnIndex(s.aborted), true); err != nil {
		return fmt.Errorf("write transaction index of segment %s: %w", s.name(), err)
	}
	return nil
}

// readTxnIndex reads the segment's .txnindex file.
func (s *segment) readTxnIndex() ([]AbortedTxn, error) {
	b, err := readFile(s.fs, s.path(txnIndexSuffix))
	if err != nil {
		return nil, err
	}
	return decodeTxnIndex(b, s.base, s.next)
}

// removeTxnIndex deletes the segment's .txnindex file, if any.
func (s *segment) removeTxnIndex() error {
	if err := s.fs.Remove(s.path(txnIndexSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// controlBatch encodes the marker ending producer pid's transaction, at
// offset 0: one control record, whose key is the control type (commit or
// abort) and whose value the coordinator epoch.
func controlBatch(pid int64, epoch int16, commit bool, coordinatorEpoch int32, now time.Time) []byte {
	key := kmsg.ControlRecordKey{Type: kmsg.ControlRecordKeyTypeAbort}
	if commit {
		key.Type = kmsg.ControlRecordKeyTypeCommit
	}
	value := kmsg.EndTxnMarker{CoordinatorEpoch: coordinatorEpoch}
	rec := kmsg.Record{Key: key.AppendTo(nil), Value: value.AppendTo(nil)}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // the zero length took one byte
	records := rec.AppendTo(nil)
	ms := now.UnixMilli()
	batch := kmsg.RecordBatch{
		Length:         int32(batchHeaderSize - lengthPrefix + len(records)),
		Magic:          2,
		Attributes:     attrTransactional | attrControl,
		FirstTimestamp: ms,
		MaxTimestamp:   ms,
		ProducerID:     pid,
		ProducerEpoch:  epoch,
		FirstSequence:  -1,
		NumRecords:     1,
		Records:        records,
	}
	b := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

// markerCommits decodes the control batch b and reports whether it
// commits, for the producer state replay of Open.
func markerCommits(b []byte) (bool, error) {
	var batch kmsg.RecordBatch
	if err := batch.ReadFrom(b); err != nil {
		return false, fmt.Errorf("decode control batch: %w", err)
	}
	if batch.Attributes&attrCompression != 0 {
		return false, errors.New("compressed control batch")
	}
	var rec kmsg.Record
	if err := rec.ReadFrom(batch.Records); err != nil {
		return false, fmt.Errorf("decode control record: %w", err)
	}
	var key kmsg.ControlRecordKey
	if err := key.ReadFrom(rec.Key); err != nil {
		return false, fmt.Errorf("decode control record key: %w", err)
	}
	switch key.Type {
	case kmsg.ControlRecordKeyTypeCommit:
		return true, nil
	case kmsg.ControlRecordKeyTypeAbort:
		return false, nil
	}
	return false, fmt.Errorf("control record type %d is no transaction marker", key.Type)
}

// AppendMarker ends producer pid's transaction in the log with a commit
// or abort marker written at epoch, and returns the marker's offset;
// WaitDurable with offset+1 waits for it to be durable. An abort lists
// the transaction among the aborted ones of the active segment. A marker
// of an epoch older than the producer's in the log is
// ErrInvalidProducerEpoch; a marker for a producer with no open
// transaction in the log is written all the same, as Kafka writes one to
// every partition of the transaction.
func (l *Log) AppendMarker(pid int64, epoch int16, commit bool, coordinatorEpoch int32, now time.Time) (int64, error) {
	batch := controlBatch(pid, epoch, commit, coordinatorEpoch, now)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.failed != nil {
		return 0, l.failed
	}
	if e := l.producers[pid]; e != nil && epoch < e.epoch {
		return 0, fmt.Errorf("%w: marker of producer %d at epoch %d, older than %d", ErrInvalidProducerEpoch, pid, epoch, e.epoch)
	}
	off := l.end
	if err := l.maybeRoll(int64(len(batch)), off+1, now); err != nil {
		return 0, l.failLocked(fmt.Errorf("roll segment: %w", err))
	}
	stampBatch(batch, len(batch), off, now.UnixMilli(), l.cfg.LogAppendTime)
	if err := l.writeLocked(batch, off+1, now); err != nil {
		return 0, err
	}
	l.closeTxnLocked(l.segs[len(l.segs)-1], pid, epoch, off, now.UnixMilli(), commit)
	return off, nil
}

// closeTxnLocked applies the marker of pid at offset, written at time ts,
// in segment s, to the producer state and the aborted transactions.
func (l *Log) closeTxnLocked(s *segment, pid int64, epoch int16, offset, ts int64, commit bool) {
	start := l.producers.applyMarker(pid, epoch, offset, ts)
	if commit || start < 0 {
		return
	}
	lso := offset + 1
	if first, ok := l.firstOpenLocked(); ok {
		lso = first
	}
	s.aborted = append(s.aborted, AbortedTxn{ProducerID: pid, FirstOffset: start, LastOffset: offset, LastStableOffset: lso})
}

// firstOpenLocked returns the first offset of the earliest open
// transaction.
func (l *Log) firstOpenLocked() (int64, bool) {
	first, ok := int64(0), false
	for _, e := range l.producers {
		if e.txnStart >= 0 && (!ok || e.txnStart < first) {
			first, ok = e.txnStart, true
		}
	}
	return first, ok
}

// boundsLocked returns the log's bounds.
func (l *Log) boundsLocked() Bounds {
	b := Bounds{StartOffset: l.start, HighWatermark: l.hwmLocked()}
	b.LastStableOffset = b.HighWatermark
	if first, ok := l.firstOpenLocked(); ok {
		b.LastStableOffset = min(max(first, l.start), b.LastStableOffset)
	}
	return b
}

// LastStableOffset returns the first offset of the earliest open
// transaction, or the high watermark if it is lower: the latest offset
// of ListOffsets for read_committed consumers.
func (l *Log) LastStableOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.boundsLocked().LastStableOffset
}

// FetchCommitted is Fetch for read_committed consumers: it returns only
// batches below the last stable offset, and the aborted transactions with
// records among them, which the consumer drops: those whose marker is at
// or after offset and whose first offset is below the end of what it
// returns.
func (l *Log) FetchCommitted(offset int64, maxBytes int32, dst []byte) ([]byte, Bounds, []AbortedTxn, error) {
	f, err := l.FetchTo(offset, maxBytes, dst, FetchOptions{Committed: true})
	return f.Records, f.Bounds, f.Aborted, err
}

// abortedBetween lists the aborted transactions whose marker is at or
// after offset and whose first offset is below upper, from the segments
// up to lso.
func (l *Log) abortedBetween(offset, upper, lso int64) []AbortedTxn {
	l.mu.Lock()
	defer l.mu.Unlock()
	var aborted []AbortedTxn
	for _, s := range l.segs[max(0, l.segmentFor(offset)):] {
		if s.base > lso {
			break
		}
		i := sort.Search(len(s.aborted), func(i int) bool { return s.aborted[i].LastOffset >= offset })
		for _, a := range s.aborted[i:] {
			if a.FirstOffset < upper {
				aborted = append(aborted, a)
			}
		}
	}
	return aborted
}

// lastBatchEnd returns the offset after the last batch of b, whole
// batches as Fetch returns them.
func lastBatchEnd(b []byte) int64 {
	var end int64
	for len(b) >= batchHeaderSize {
		h := parseHeader(b)
		end = h.lastOffset() + 1
		b = b[h.size:]
	}
	return end
}

// loadTxnIndexes reads the aborted transactions of the segments below
// from, the offset the producer state replay starts at, from their files,
// keeping the entries below from: the replay rebuilds the others. It
// reports false if a file it needs is missing or torn.
func (l *Log) loadTxnIndexes(from int64) bool {
	for _, s := range l.segs {
		s.aborted = nil
		if s.base >= from {
			continue
		}
		entries, err := s.readTxnIndex()
		if err != nil {
			l.log.Warn("rebuilding the transaction indexes", "dir", l.dir, "segment", s.name(), "err", err)
			return false
		}
		for _, e := range entries {
			if e.LastOffset < from {
				s.aborted = append(s.aborted, e)
			}
		}
	}
	return true
}

// replayBatch applies a batch of segment s at byte pos, read back at Open,
// to the producer state and the aborted transactions.
func (l *Log) replayBatch(s *segment, h *batchHeader, pos int64) error {
	if h.attributes&attrControl == 0 {
		l.producers.applyHeader(h)
		return nil
	}
	if h.producerID < 0 {
		return nil
	}
	b := make([]byte, h.size)
	if _, err := s.log.ReadAt(b, pos); err != nil {
		return fmt.Errorf("read control batch at byte %d: %w", pos, err)
	}
	commit, err := markerCommits(b)
	if err != nil {
		l.log.Warn("skipping an unreadable control batch", "dir", l.dir, "segment", s.name(), "offset", h.baseOffset, "err", err)
		return nil
	}
	l.closeTxnLocked(s, h.producerID, h.producerEpoch, h.baseOffset, h.maxTimestamp, commit)
	return nil
}

// ProducerState is what a log knows of one producer, for
// DescribeProducers.
type ProducerState struct {
	ProducerID int64
	Epoch      int16
	// LastSequence is the sequence of its last batch in its epoch, -1
	// if it has none.
	LastSequence int32
	// LastTimestamp is the max timestamp of its last batch or the time
	// of its last marker, in ms.
	LastTimestamp int64
	// TxnStartOffset is the first offset of its open transaction, -1 if
	// none is open.
	TxnStartOffset int64
}

// Producers returns the state of every producer the log remembers, by id.
func (l *Log) Producers() []ProducerState {
	l.mu.Lock()
	out := make([]ProducerState, 0, len(l.producers))
	for pid, e := range l.producers {
		out = append(out, ProducerState{ProducerID: pid, Epoch: e.epoch, LastSequence: e.lastSeq(), LastTimestamp: e.lastTimestamp, TxnStartOffset: e.txnStart})
	}
	l.mu.Unlock()
	slices.SortFunc(out, func(a, b ProducerState) int { return cmp.Compare(a.ProducerID, b.ProducerID) })
	return out
}

// BatchProducer returns the producer id and epoch in the header of the
// first batch of records, (-1, -1) if records is too short to hold one.
func BatchProducer(records []byte) (int64, int16) {
	if len(records) < batchHeaderSize {
		return -1, -1
	}
	h := parseHeader(records)
	return h.producerID, h.producerEpoch
}

// abortedLocked returns the aborted transactions of every segment, for
// the cleaner: the records of an aborted transaction never replace a
// key's committed record.
func (l *Log) abortedLocked() []AbortedTxn {
	var out []AbortedTxn
	for _, s := range l.segs {
		out = append(out, s.aborted...)
	}
	return out
}

// batchAborted reports whether the data batch h heads belongs to one of
// the aborted transactions: it is transactional, of their producer, at
// or after the transaction's first offset and before its abort marker.
func batchAborted(h *batchHeader, aborted []AbortedTxn) bool {
	if h.attributes&attrTransactional == 0 {
		return false
	}
	for _, a := range aborted {
		if a.ProducerID == h.producerID && a.FirstOffset <= h.baseOffset && h.baseOffset < a.LastOffset {
			return true
		}
	}
	return false
}
