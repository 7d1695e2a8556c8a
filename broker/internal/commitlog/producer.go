package commitlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"

	"github.com/cockroachdb/pebble/vfs"
)

// producerWindow is how many recent batches per producer are kept for
// duplicate detection; it matches the Java producer's
// max.in.flight.requests.per.connection limit for idempotence.
const producerWindow = 5

// batchMeta identifies one stored batch of an idempotent producer.
type batchMeta struct {
	firstSeq, lastSeq      int32
	baseOffset, lastOffset int64
}

// producerEntry is what the log remembers of one producer id.
type producerEntry struct {
	epoch   int16
	n       int // valid entries of batches, oldest first; 0 after a marker bumped the epoch
	batches [producerWindow]batchMeta
	// txnStart is the first offset of the producer's open transaction
	// in this log, -1 when none is open.
	txnStart int64
	// lastOffset is the offset of the producer's last batch or
	// transaction marker; the log forgets the producer once its start
	// offset passes it.
	lastOffset int64
	// lastTimestamp is the max timestamp of that batch, or the time of
	// that marker, in ms.
	lastTimestamp int64
}

// last is the producer's last batch in its epoch; n must be positive.
func (e *producerEntry) last() batchMeta { return e.batches[e.n-1] }

// lastSeq is the sequence of the producer's last batch in its epoch, -1
// if it has none yet, so that the next batch must start at 0.
func (e *producerEntry) lastSeq() int32 {
	if e.n == 0 {
		return -1
	}
	return e.last().lastSeq
}

// push records a stored batch under epoch, forgetting the oldest one
// when the window is full and every batch of an older epoch.
func (e *producerEntry) push(epoch int16, m batchMeta) {
	if epoch != e.epoch {
		e.epoch, e.n = epoch, 0
	}
	if e.n == producerWindow {
		copy(e.batches[:], e.batches[1:])
		e.n--
	}
	e.batches[e.n] = m
	e.n++
	e.lastOffset = m.lastOffset
}

// pendingBatch is an idempotent batch of the append being validated.
type pendingBatch struct {
	pid   int64
	epoch int16
	meta  batchMeta
	txn   bool  // the batch is transactional
	ts    int64 // the batch's max timestamp
}

// producerState maps producer ids to their entries.
type producerState map[int64]*producerEntry

// check validates an idempotent batch against the stored state and the
// batches earlier in the same append (pending). It returns the original
// batch if h is a retry of one already stored.
//
// A producer id the log has no state for may start at any sequence
// number: like Kafka since 2.5 (KIP-360), the log accepts it rather than
// answering UNKNOWN_PRODUCER_ID, since the state may have been lost with
// segments removed by retention or DeleteRecords.
func (s producerState) check(h *batchHeader, pending []pendingBatch) (*batchMeta, error) {
	firstSeq := h.baseSequence
	for i := len(pending) - 1; i >= 0; i-- {
		if p := &pending[i]; p.pid == h.producerID {
			return nil, checkNext(h, p.epoch, p.meta.lastSeq)
		}
	}
	e := s[h.producerID]
	if e == nil {
		return nil, nil
	}
	if h.producerEpoch == e.epoch {
		lastSeq := h.lastSequence()
		for i := range e.n {
			if b := &e.batches[i]; b.firstSeq == firstSeq && b.lastSeq == lastSeq {
				return b, nil
			}
		}
	}
	return nil, checkNext(h, e.epoch, e.lastSeq())
}

// checkNext checks that h follows a batch of epoch ending at lastSeq.
func checkNext(h *batchHeader, epoch int16, lastSeq int32) error {
	switch {
	case h.producerEpoch < epoch:
		return fmt.Errorf("%w: producer %d epoch %d is older than %d", ErrInvalidProducerEpoch, h.producerID, h.producerEpoch, epoch)
	case h.producerEpoch > epoch && h.baseSequence != 0:
		return fmt.Errorf("%w: producer %d new epoch %d starts at sequence %d, not 0", ErrOutOfOrderSequence, h.producerID, h.producerEpoch, h.baseSequence)
	case h.producerEpoch == epoch && h.baseSequence != incSequence(lastSeq, 1):
		return fmt.Errorf("%w: producer %d epoch %d sent sequence %d, expected %d", ErrOutOfOrderSequence, h.producerID, h.producerEpoch, h.baseSequence, incSequence(lastSeq, 1))
	}
	return nil
}

// entry returns the entry of pid, creating it at epoch if there is none.
func (s producerState) entry(pid int64, epoch int16) *producerEntry {
	e := s[pid]
	if e == nil {
		e = &producerEntry{epoch: epoch, txnStart: -1}
		s[pid] = e
	}
	return e
}

// apply records a stored idempotent batch with max timestamp ts; a
// transactional one opens the producer's transaction if none is open.
func (s producerState) apply(pid int64, epoch int16, m batchMeta, txn bool, ts int64) {
	e := s.entry(pid, epoch)
	e.push(epoch, m)
	e.lastTimestamp = ts
	if txn && e.txnStart < 0 {
		e.txnStart = m.baseOffset
	}
}

// applyMarker records a transaction marker of pid at offset, written at
// epoch, and returns the first offset of the transaction it closes, -1 if
// the producer had none open here. A marker of a newer epoch (the
// coordinator fenced the producer, or bumped its epoch at the end of the
// transaction) starts the sequence over.
func (s producerState) applyMarker(pid int64, epoch int16, offset, ts int64) int64 {
	e := s.entry(pid, epoch)
	if epoch != e.epoch {
		e.epoch, e.n = epoch, 0
	}
	start := e.txnStart
	e.txnStart, e.lastOffset, e.lastTimestamp = -1, offset, ts
	return start
}

// evictBefore forgets the producers whose last batch or marker is below
// offset.
func (s producerState) evictBefore(offset int64) {
	maps.DeleteFunc(s, func(_ int64, e *producerEntry) bool { return e.lastOffset < offset })
}

// applyHeader records a stored data batch read back from the log.
func (s producerState) applyHeader(h *batchHeader) {
	if h.idempotent() {
		s.apply(h.producerID, h.producerEpoch, batchMeta{h.baseSequence, h.lastSequence(), h.baseOffset, h.lastOffset()}, h.attributes&attrTransactional != 0, h.maxTimestamp)
	}
}

// Snapshot files hold the producer state as of the offset in their name:
// a magic number, the entry count, the entries, and a CRC-32C of all that.
// An entry of version 2 is the producer id, its epoch, the first offset of
// its open transaction (-1 for none), its last offset and timestamp, the
// batch count and
// the batches; version 1, written before transactions, has neither offset
// and at least one batch.
const (
	snapshotSuffix  = ".snapshot"
	snapshotMagicV1 = 0x52504631 // "RPF1"
	snapshotMagic   = 0x52504632 // "RPF2"
	snapshotKeep    = 2
)

func snapshotName(offset int64) string { return fmt.Sprintf("%020d%s", offset, snapshotSuffix) }

func (s producerState) encode() []byte {
	b := binary.BigEndian.AppendUint32(nil, snapshotMagic)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	for pid, e := range s {
		b = binary.BigEndian.AppendUint64(b, uint64(pid))
		b = binary.BigEndian.AppendUint16(b, uint16(e.epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.txnStart))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastOffset))
		b = binary.BigEndian.AppendUint64(b, uint64(e.lastTimestamp))
		b = append(b, byte(e.n))
		for _, m := range e.batches[:e.n] {
			b = binary.BigEndian.AppendUint32(b, uint32(m.firstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(m.lastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(m.baseOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(m.lastOffset))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errBadSnapshot = errors.New("malformed producer snapshot")

func decodeSnapshot(b []byte) (producerState, error) {
	be := binary.BigEndian
	if len(b) < 12 || crc32.Checksum(b[:len(b)-4], castagnoli) != be.Uint32(b[len(b)-4:]) {
		return nil, errBadSnapshot
	}
	v1 := be.Uint32(b) == snapshotMagicV1
	if !v1 && be.Uint32(b) != snapshotMagic {
		return nil, errBadSnapshot
	}
	count := be.Uint32(b[4:])
	b = b[8 : len(b)-4]
	s := make(producerState, min(count, 1<<16))
	for range count {
		fixed := 35
		if v1 {
			fixed = 11
		}
		if len(b) < fixed {
			return nil, errBadSnapshot
		}
		pid, e := int64(be.Uint64(b)), &producerEntry{epoch: int16(be.Uint16(b[8:])), txnStart: -1, lastTimestamp: -1}
		if !v1 {
			e.txnStart, e.lastOffset, e.lastTimestamp = int64(be.Uint64(b[10:])), int64(be.Uint64(b[18:])), int64(be.Uint64(b[26:]))
		}
		e.n = int(b[fixed-1])
		b = b[fixed:]
		if e.n < 0 || e.n > producerWindow || v1 && e.n == 0 || len(b) < e.n*24 || e.txnStart < -1 {
			return nil, errBadSnapshot
		}
		for i := range e.n {
			e.batches[i] = batchMeta{int32(be.Uint32(b)), int32(be.Uint32(b[4:])), int64(be.Uint64(b[8:])), int64(be.Uint64(b[16:]))}
			b = b[24:]
		}
		if v1 {
			e.lastOffset = e.batches[e.n-1].lastOffset
		}
		s[pid] = e
	}
	if len(b) != 0 {
		return nil, errBadSnapshot
	}
	return s, nil
}

// snapshotOffsets lists the offsets of the snapshot files in dir, newest first.
func snapshotOffsets(fs vfs.FS, dir string) ([]int64, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, n := range names {
		if off, ok := parseBase(n, snapshotSuffix); ok {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	slices.Reverse(offs)
	return offs, nil
}

// writeSnapshot stores s as of offset, fsynced if durable, and removes
// all but the newest snapshotKeep snapshots.
func writeSnapshot(fs vfs.FS, dir string, offset int64, s producerState, durable bool) error {
	if err := writeFileAtomic(fs, fs.PathJoin(dir, snapshotName(offset)), s.encode(), durable); err != nil {
		return fmt.Errorf("write producer snapshot: %w", err)
	}
	offs, err := snapshotOffsets(fs, dir)
	if err != nil {
		return fmt.Errorf("list producer snapshots: %w", err)
	}
	for _, off := range offs[min(len(offs), snapshotKeep):] {
		if err := fs.Remove(fs.PathJoin(dir, snapshotName(off))); err != nil {
			return fmt.Errorf("remove old producer snapshot: %w", err)
		}
	}
	return nil
}

// writeFileAtomic replaces path with data through a temp file and a
// rename; durable adds the fsyncs that make the new content survive a
// power loss.
func writeFileAtomic(fs vfs.FS, path string, data []byte, durable bool) error {
	tmp := path + tmpSuffix
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, path)
	}
	if err == nil && durable {
		err = syncDir(fs, fs.PathDir(path))
	}
	if err != nil {
		fs.Remove(tmp)
	}
	return err
}

// readFile returns the content of the file at path.
func readFile(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// syncDir fsyncs a directory, making the creations, renames and removals
// of its entries durable.
func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
