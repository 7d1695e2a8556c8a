package commitlog

// The log cleaner compacts a log as Kafka's does (cleanup.policy=compact):
// it keeps only the latest record of each key in the rolled segments.
//
// A pass maps the dirty part of the log, from where the previous pass
// stopped (cleanedTo) to the first segment it may not clean, key hash to
// latest offset, in a map of at most CleanOptions.MaxKeys entries; then it
// rewrites every segment from the start of the log to the end of what it
// mapped, keeping a record if no later record has its key. Adjacent
// segments whose sizes add up to at most SegmentBytes, and whose offsets
// one index can address, are written as one new segment, as Kafka's
// groupSegmentsBySize does, so that cleaned segments do not stay many and
// small. Offsets are never renumbered: a filtered batch keeps its base
// offset, attributes, producer id, epoch, base sequence and last offset
// delta, so producer state read from headers is unchanged, with fewer
// records and a new CRC; compressed batches are decompressed, filtered
// and recompressed with their codec. Records are read with recordWalker,
// as a stream, and the ones kept are copied into the compressor as they
// stream by, so that neither a huge batch nor a huge record costs memory.
// A batch left with no record is dropped, except the last batch of each
// producer the log knows, which is kept whole so that the producer's
// state survives (Kafka keeps it as an empty batch; this log's framing
// requires at least one record). The active segment is never cleaned, nor
// a segment whose newest timestamp is within MinCompactionLag, nor one
// not yet fsynced. CleanOptions.Throttle is told of every batch read and
// written, which is how the broker rate-limits its cleaner.
//
// A tombstone, a record with a null value, is removed once the segment
// holding it was already clean before the pass and its newest timestamp
// is older than DeleteRetention: Kafka's rule before KIP-534, by the
// segment's largest timestamp instead of its file's modification time.
//
// The new segments are written beside the old as <base>.log.cleaned,
// .index.cleaned and .timeindex.cleaned, named by the base offset of the
// first old segment each replaces, and fsynced. Then, holding swapMu,
// which keeps retention and DeleteRecords from removing segments, the
// pass renames them to .swap and fsyncs the directory: the swap is
// decided. Holding the log's other locks only for this, it renames the
// old segments merged into a new one beyond the first to .deleted and
// each .swap over the first's files; then it unlinks the .deleted files
// and fsyncs the directory again. Open deletes .cleaned and .deleted
// files and completes the swap of .swap files the same way: a
// <base>.log.swap replaces the segments whose base offsets lie from base
// to its last offset. So a
// crash at any point leaves either the old or the new version of each
// group of segments, both holding every key's latest record (an old
// segment none of whose records stayed may remain after a crash: what it
// holds, later records supersede, and the next pass removes it).
// Produce and Fetch go on during a pass: the cleaner reads the old
// segments through its own file handles and takes the log's locks only
// for the renames.
//
// The dirty offset lives in memory only: after a restart the first pass
// maps the whole log again, which costs time, not correctness.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/maphash"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Suffixes of the files of a cleaning pass.
const (
	cleanedSuffix = ".cleaned"
	swapSuffix    = ".swap"
	deletedSuffix = ".deleted" // old segments merged away, to be unlinked
)

// DefaultCleanerMaxKeys is the default CleanOptions.MaxKeys: 128 MiB of
// offset map, Kafka's log.cleaner.dedupe.buffer.size, at 24 bytes a key.
const DefaultCleanerMaxKeys = 128 << 20 / 24

// CleanOptions bound one cleaning pass.
type CleanOptions struct {
	// MaxKeys bounds the offset map (log.cleaner.dedupe.buffer.size);
	// 0 means DefaultCleanerMaxKeys. A dirty part with more keys is
	// cleaned over several passes.
	MaxKeys int
	// Throttle, if set, is called with the size of each batch the pass
	// reads or writes, once it is read or written; the broker sleeps in
	// it to keep the cleaner's I/O under log.cleaner.io.max.bytes.per.second.
	// An error from it ends the pass, which then leaves the log as it
	// was, and Clean returns the error.
	Throttle func(n int) error
}

// CleanResult reports what a pass did.
type CleanResult struct {
	// Segments is how many segments were rewritten.
	Segments int
	// BytesRead is the size of the segments the pass filtered,
	// BytesWritten that of the new segments it swapped in.
	BytesRead, BytesWritten int64
	// RecordsRemoved counts the records dropped.
	RecordsRemoved int64
}

// DirtyRatio returns the part of the cleanable bytes of a compacted log,
// its rolled segments, that no pass has cleaned yet, in [0, 1]; 0 for a
// log that is not compacted or has nothing to clean. The broker's cleaner
// weighs CleanState instead, which leaves out the segments a pass may not
// clean yet.
func (l *Log) DirtyRatio() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dirtyRatioLocked()
}

// dirtyRatioLocked is DirtyRatio for a caller holding mu.
func (l *Log) dirtyRatioLocked() float64 {
	if !l.cfg.Compact || l.closed || l.failed != nil {
		return 0
	}
	var clean, dirty int64
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.next <= l.cleanedTo {
			clean += s.size
		} else {
			dirty += s.size
		}
	}
	if dirty == 0 {
		return 0
	}
	return float64(dirty) / float64(clean+dirty)
}

// CleanState is what the broker's cleaner weighs to pick a log, at one
// time.
type CleanState struct {
	// Ratio is the part of the bytes a pass could clean now (the rolled
	// segments not held back by MinCompactionLag) that no pass has
	// cleaned yet, Kafka's cleanable ratio.
	Ratio float64
	// Overdue is how long ago the oldest record not yet cleaned passed
	// MaxCompactionLag: the first batch timestamp of the dirty segments
	// a pass could clean, against now minus the lag; 0 if none has.
	Overdue time.Duration
	// Cleanable reports whether the cleaner should clean the log: it has
	// dirty bytes a pass could clean, and Ratio is at or above
	// MinCleanableDirtyRatio or Overdue is positive, as with Kafka's
	// needCompactionNow.
	Cleanable bool
}

// CleanState returns the log's CleanState at time now.
func (l *Log) CleanState(now time.Time) CleanState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cfg.Compact || l.closed || l.failed != nil {
		return CleanState{}
	}
	var clean, dirty int64
	oldest := int64(math.MaxInt64)
	for _, s := range l.segs[:l.cleanableLocked(now)] {
		if s.next <= l.cleanedTo {
			clean += s.size
			continue
		}
		dirty += s.size
		if s.firstTs >= 0 {
			oldest = min(oldest, s.firstTs)
		}
	}
	if dirty == 0 {
		return CleanState{}
	}
	st := CleanState{Ratio: float64(dirty) / float64(clean+dirty)}
	if lag := l.cfg.MaxCompactionLag; lag > 0 && oldest != math.MaxInt64 {
		if over := now.Add(-lag).UnixMilli() - oldest; over > 0 {
			st.Overdue = time.Duration(over) * time.Millisecond
		}
	}
	st.Cleanable = st.Overdue > 0 || st.Ratio >= l.cfg.MinCleanableDirtyRatio
	return st
}

// cleanableLocked returns how many of the oldest segments a pass at time
// now may clean: rolled, fsynced, and with no record more recent than
// MinCompactionLag. The caller holds mu.
func (l *Log) cleanableLocked(now time.Time) int {
	lagLimit := now.Add(-l.cfg.MinCompactionLag).UnixMilli()
	lso := l.boundsLocked().LastStableOffset
	n := 0
	for _, s := range l.segs[:len(l.segs)-1] {
		// Records of open transactions may yet be aborted (txn.go).
		if (l.cfg.MinCompactionLag > 0 && s.maxTs > lagLimit) || slices.Contains(l.unsynced, s) || s.next > lso {
			break
		}
		n++
	}
	return n
}

// cleanSource is one old segment of a pass, read through its own handle,
// with the fields of seg that mu guards as they were when the pass began.
type cleanSource struct {
	seg   *segment
	next  int64
	size  int64
	maxTs int64
	f     vfs.File
}

// cleanGroup is one new segment of a pass and the adjacent old segments
// it replaces.
type cleanGroup struct {
	out     *segment
	srcs    []*cleanSource
	removed int64 // records dropped
}

// cleanPass is the state of one Clean.
type cleanPass struct {
	l              *Log
	cfg            Config
	throttle       func(n int) error
	m              offsetMap
	firstDirty     int64
	deleteHorizon  int64           // tombstones in segments older than it go
	lastOfProducer map[int64]int64 // producer id -> last offset of its last batch
	keep           []uint64        // which records of a batch stay, a bit each
	built          bytes.Buffer    // a filtered batch
}

// Clean runs one cleaning pass over a compacted log at time now, as the
// cleaner description above says. It does nothing on a log that is not
// compacted, is offline, or has no dirty rolled segment. A failure to
// write the new segments, or an error from opts.Throttle, leaves the log
// as it was; a failure during the renames takes it offline, and the next
// Open completes the swap.
func (l *Log) Clean(now time.Time, opts CleanOptions) (CleanResult, error) {
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	began := time.Now()
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultCleanerMaxKeys
	}
	throttle := opts.Throttle
	if throttle == nil {
		throttle = func(int) error { return nil }
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return CleanResult{}, ErrClosed
	}
	if !l.cfg.Compact || l.failed != nil {
		l.mu.Unlock()
		return CleanResult{}, nil
	}
	p := &cleanPass{
		l:              l,
		cfg:            l.cfg,
		throttle:       throttle,
		m:              offsetMap{seed: maphash.MakeSeed(), offsets: make(map[uint64]int64), aborted: l.abortedLocked()},
		firstDirty:     max(l.cleanedTo, l.start),
		deleteHorizon:  now.Add(-l.cfg.DeleteRetention).UnixMilli(),
		lastOfProducer: make(map[int64]int64, len(l.producers)),
	}
	var srcs []*cleanSource
	for _, s := range l.segs[:l.cleanableLocked(now)] {
		srcs = append(srcs, &cleanSource{seg: s, next: s.next, size: s.size, maxTs: s.maxTs})
	}
	for pid, e := range l.producers {
		if e.n > 0 {
			p.lastOfProducer[pid] = e.last().lastOffset
		}
	}
	l.mu.Unlock()
	if len(srcs) == 0 || srcs[len(srcs)-1].next <= p.firstDirty {
		return CleanResult{}, nil
	}
	defer func() {
		for _, src := range srcs {
			if src.f != nil {
				src.f.Close()
			}
		}
	}()
	for _, src := range srcs {
		f, err := l.fs.Open(src.seg.path(logSuffix))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return CleanResult{}, nil // removed by retention meanwhile
			}
			return CleanResult{}, fmt.Errorf("clean %s: open segment %s: %w", l.dir, src.seg.name(), err)
		}
		src.f = f
	}

	mappedEnd := p.firstDirty
	for _, src := range srcs {
		if src.next <= p.firstDirty {
			continue
		}
		full, err := p.mapSegment(src, maxKeys)
		if err != nil {
			return CleanResult{}, fmt.Errorf("clean %s: map segment %s: %w", l.dir, src.seg.name(), err)
		}
		if full {
			break
		}
		mappedEnd = src.next
	}
	if mappedEnd == p.firstDirty {
		return CleanResult{}, fmt.Errorf("clean %s: the offset map of %d keys cannot hold segment %d", l.dir, maxKeys, srcs[0].seg.base)
	}

	groups, res, err := p.clean(srcs, mappedEnd)
	var held time.Duration
	if err == nil {
		held, err = l.swap(groups, mappedEnd)
	}
	switch {
	case errors.Is(err, errCleanStale):
		discard(groups)
		return CleanResult{}, nil
	case errors.Is(err, ErrStorage):
		return CleanResult{}, err
	case err != nil:
		discard(groups)
		return CleanResult{}, fmt.Errorf("clean %s: %w", l.dir, err)
	}
	l.log.Info("cleaned log", "dir", l.dir, "segments", res.Segments, "bytes_before", res.BytesRead, "bytes_after", res.BytesWritten, "records_removed", res.RecordsRemoved, "cleaned_to", mappedEnd, "duration", time.Since(began), "locked", held)
	return res, nil
}

// errCleanStale reports segments that changed during a pass, which then
// leaves them alone.
var errCleanStale = errors.New("the segments changed during the pass")

// offsetMap maps key hashes to the latest offset of the key.
type offsetMap struct {
	seed    maphash.Seed
	offsets map[uint64]int64
	// aborted are the log's aborted transactions, whose records never
	// count as a key's latest.
	aborted []AbortedTxn
}

// mapSegment adds the keys of the records of src at or after the first
// dirty offset to the offset map. It reports whether the map filled up
// before the end of the segment.
func (p *cleanPass) mapSegment(src *cleanSource, maxKeys int) (bool, error) {
	full := false
	err := p.eachBatch(src, func(h *batchHeader, batch []byte) error {
		if h.lastOffset() < p.firstDirty || h.attributes&attrControl != 0 || batchAborted(h, p.m.aborted) {
			return nil
		}
		w := recordWalker{hashKeys: true, seed: p.m.seed}
		defer w.close()
		if err := w.open(h.attributes&attrCompression, batch[batchHeaderSize:h.size]); err != nil {
			return fmt.Errorf("batch at offset %d: %w", h.baseOffset, err)
		}
		for i := range h.recordCount {
			rec, err := w.next()
			if err != nil {
				return fmt.Errorf("%w: record %d of batch at offset %d: %v", ErrCorruptMessage, i, h.baseOffset, err)
			}
			off := h.baseOffset + int64(rec.offsetDelta)
			if off < p.firstDirty || rec.nullKey {
				continue
			}
			if _, ok := p.m.offsets[rec.keyHash]; !ok && len(p.m.offsets) >= maxKeys {
				full = true
				return errMapFull
			}
			p.m.offsets[rec.keyHash] = off
		}
		return nil
	})
	if full {
		return true, nil
	}
	return false, err
}

// errMapFull stops mapping a segment when the offset map is full.
var errMapFull = errors.New("the offset map is full")

// eachBatch calls fn with each batch of src, reporting its bytes to the
// throttle, until fn returns an error, which it returns.
func (p *cleanPass) eachBatch(src *cleanSource, fn func(h *batchHeader, batch []byte) error) error {
	var fnErr error
	err := scanBatches(src.f, 0, src.size, func(h *batchHeader, batch []byte) bool {
		if fnErr = p.throttle(h.size); fnErr == nil {
			fnErr = fn(h, batch)
		}
		return fnErr == nil
	})
	return errors.Join(err, fnErr)
}

// clean writes the cleaned copies of the segments of srcs up to
// mappedEnd as .cleaned files, fsynced, and returns them grouped with
// the old segments each replaces. Adjacent segments go into one new
// segment while their old sizes add up to at most SegmentBytes and their
// offsets fit its index, as Kafka's groupSegmentsBySize does; a segment
// alone in its group with nothing to remove is left as it is.
func (p *cleanPass) clean(srcs []*cleanSource, mappedEnd int64) ([]*cleanGroup, CleanResult, error) {
	var groups []*cleanGroup
	var res CleanResult
	var cur *cleanGroup
	finish := func() error {
		g := cur
		cur = nil
		if g == nil {
			return nil
		}
		if len(g.srcs) == 1 && g.removed == 0 {
			discard([]*cleanGroup{g})
			return nil
		}
		groups = append(groups, g)
		g.out.next = g.srcs[len(g.srcs)-1].next
		g.out.addTimeEntry()
		if err := g.out.writeCleanedIndexes(); err != nil {
			return err
		}
		if err := g.out.log.Sync(); err != nil {
			return fmt.Errorf("sync cleaned segment: %w", err)
		}
		res.Segments += len(g.srcs)
		res.BytesWritten += g.out.size
		res.RecordsRemoved += g.removed
		return nil
	}
	fail := func(err error) ([]*cleanGroup, CleanResult, error) {
		if cur != nil {
			groups = append(groups, cur)
		}
		discard(groups)
		return nil, CleanResult{}, err
	}
	for _, src := range srcs {
		if src.next > mappedEnd {
			break
		}
		if cur != nil && (cur.out.size+src.size > p.cfg.SegmentBytes || src.next-1-cur.out.base > math.MaxUint32) {
			if err := finish(); err != nil {
				return fail(err)
			}
		}
		if cur == nil {
			out := &segment{fs: p.l.fs, dir: p.l.dir, base: src.seg.base, next: src.seg.base, firstTs: -1, maxTs: -1, maxTsOffset: -1, rollTime: src.seg.rollTime}
			f, err := p.l.fs.Create(out.path(logSuffix + cleanedSuffix))
			if err != nil {
				return fail(fmt.Errorf("create cleaned segment: %w", err))
			}
			out.log = f
			cur = &cleanGroup{out: out}
		}
		cur.srcs = append(cur.srcs, src)
		removed, err := p.cleanInto(cur.out, src)
		if err != nil {
			return fail(err)
		}
		cur.removed += removed
		res.BytesRead += src.size
	}
	if err := finish(); err != nil {
		return fail(err)
	}
	return groups, res, nil
}

// discard closes and removes the .cleaned files of groups.
func discard(groups []*cleanGroup) {
	for _, g := range groups {
		g.out.close()
		for _, suffix := range segmentSuffixes {
			g.out.fs.Remove(g.out.path(suffix + cleanedSuffix))
		}
	}
}

// cleanInto appends the cleaned batches of src to out and returns how
// many records it dropped. Each batch is read twice at most, as a
// stream: once to decide which records stay, and, when some but not all
// do, once more to copy them into the filtered batch.
func (p *cleanPass) cleanInto(out *segment, src *cleanSource) (int64, error) {
	dropTombstones := src.next <= p.firstDirty && src.maxTs >= 0 && src.maxTs < p.deleteHorizon
	interval := int64(p.cfg.IndexIntervalBytes)
	var removed int64
	err := p.eachBatch(src, func(h *batchHeader, batch []byte) error {
		keep := batch
		if h.attributes&attrControl == 0 && !(h.producerID >= 0 && p.lastOfProducer[h.producerID] == h.lastOffset()) {
			n, err := p.decide(h, batch, dropTombstones)
			if err != nil {
				return fmt.Errorf("batch at offset %d: %w", h.baseOffset, err)
			}
			removed += int64(h.recordCount - n)
			switch {
			case n == 0:
				return nil
			case n < h.recordCount:
				if keep, err = p.filter(h, batch, n); err != nil {
					return fmt.Errorf("batch at offset %d: %w", h.baseOffset, err)
				}
			}
		}
		if _, err := out.log.WriteAt(keep, out.size); err != nil {
			return fmt.Errorf("write cleaned segment: %w", err)
		}
		nh := parseHeader(keep)
		out.track(&nh, out.size, interval)
		return p.throttle(len(keep))
	})
	return removed, err
}

// decide sets p.keep to the records of the batch that stay: those whose
// key has no later record in the offset map, but tombstones if
// dropTombstones. It returns how many stay.
func (p *cleanPass) decide(h *batchHeader, batch []byte, dropTombstones bool) (int32, error) {
	w := recordWalker{hashKeys: true, seed: p.m.seed}
	defer w.close()
	if err := w.open(h.attributes&attrCompression, batch[batchHeaderSize:h.size]); err != nil {
		return 0, err
	}
	p.keep = p.keep[:0]
	var n int32
	for i := range h.recordCount {
		rec, err := w.next()
		if err != nil {
			return 0, fmt.Errorf("%w: record %d: %v", ErrCorruptMessage, i, err)
		}
		off := h.baseOffset + int64(rec.offsetDelta)
		live := rec.nullKey
		if !live {
			latest, ok := p.m.offsets[rec.keyHash]
			live = !ok || latest <= off
		}
		if live && rec.nullValue && dropTombstones {
			live = false
		}
		if i%64 == 0 {
			p.keep = append(p.keep, 0)
		}
		if live {
			p.keep[i/64] |= 1 << (i % 64)
			n++
		}
	}
	return n, nil
}

// filter returns the batch with only the n records p.keep marks, its
// records recompressed with its codec as they stream by, and a new CRC;
// every other header field is kept.
func (p *cleanPass) filter(h *batchHeader, batch []byte, n int32) ([]byte, error) {
	codec := h.attributes & attrCompression
	p.built.Reset()
	p.built.Write(batch[:batchHeaderSize])
	cw, err := newRecordsWriter(codec, &p.built)
	if err != nil {
		return nil, err
	}
	w := recordWalker{tee: cw}
	defer w.close()
	if err := w.open(codec, batch[batchHeaderSize:h.size]); err != nil {
		cw.Close()
		return nil, err
	}
	for i := range h.recordCount {
		w.setTee(p.keep[i/64]&(1<<(i%64)) != 0)
		if _, err := w.next(); err != nil {
			cw.Close()
			return nil, fmt.Errorf("%w: record %d: %v", ErrCorruptMessage, i, err)
		}
	}
	w.setTee(false)
	if err := errors.Join(w.teeErr, cw.Close()); err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	b := p.built.Bytes()
	be := binary.BigEndian
	be.PutUint32(b[offLength:], uint32(len(b)-lengthPrefix))
	be.PutUint32(b[offRecordCount:], uint32(n))
	be.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b, nil
}

// writeCleanedIndexes writes the in-memory indexes of a cleaned segment
// to .cleaned index files and fsyncs them.
func (s *segment) writeCleanedIndexes() error {
	for _, f := range []struct {
		suffix string
		b      []byte
	}{{indexSuffix, s.appendIndex(nil)}, {timeIndexSuffix, s.appendTimeIndex(nil)}} {
		nf, err := s.fs.Create(s.path(f.suffix + cleanedSuffix))
		if err != nil {
			return fmt.Errorf("create cleaned index: %w", err)
		}
		_, err = nf.Write(f.b)
		if err == nil {
			err = nf.Sync()
		}
		if err = errors.Join(err, nf.Close()); err != nil {
			return fmt.Errorf("write cleaned index: %w", err)
		}
	}
	return nil
}

// Pooled compressors of the cleaner: creating one per batch would cost
// more than the batch.
var (
	gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}
	lz4Writers  = sync.Pool{New: func() any {
		w := lz4.NewWriter(nil)
		if err := w.Apply(lz4.BlockSizeOption(lz4.Block64Kb)); err != nil {
			panic(err) // a valid constant option
		}
		return w
	}}
	zstdWriters = sync.Pool{New: func() any {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
		return &zstdWriter{enc: enc, err: err}
	}}
	snappyWriters = sync.Pool{New: func() any { return new(xerialWriter) }}
)

type zstdWriter struct {
	enc *zstd.Encoder
	err error // from creating enc
}

// pooledWriter is a compressor that goes back to its pool when closed.
type pooledWriter struct {
	io.Writer
	close func() error
}

func (w pooledWriter) Close() error { return w.close() }

// newRecordsWriter returns a writer that appends what it is given to dst
// compressed with codec, up to its Close. Snappy is written in the xerial
// framing the Java client writes, which every client reads.
func newRecordsWriter(codec int16, dst *bytes.Buffer) (io.WriteCloser, error) {
	switch codec {
	case 0:
		return pooledWriter{dst, func() error { return nil }}, nil
	case 1:
		w := gzipWriters.Get().(*gzip.Writer)
		w.Reset(dst)
		return pooledWriter{w, func() error { defer gzipWriters.Put(w); return w.Close() }}, nil
	case 2:
		w := snappyWriters.Get().(*xerialWriter)
		w.reset(dst)
		return pooledWriter{w, func() error { defer snappyWriters.Put(w); return w.close() }}, nil
	case 3:
		w := lz4Writers.Get().(*lz4.Writer)
		w.Reset(dst)
		return pooledWriter{w, func() error { defer lz4Writers.Put(w); return w.Close() }}, nil
	case 4:
		w := zstdWriters.Get().(*zstdWriter)
		if w.err != nil {
			return nil, fmt.Errorf("zstd encoder: %v", w.err)
		}
		w.enc.Reset(dst)
		return pooledWriter{w.enc, func() error {
			err := w.enc.Close()
			w.enc.Reset(nil) // drops the reference to dst
			zstdWriters.Put(w)
			return err
		}}, nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// xerialBlock is the size of the snappy blocks xerialWriter writes.
const xerialBlock = 32 << 10

// xerialWriter writes snappy in the xerial framing (see xerialMagic),
// a block of at most xerialBlock bytes at a time.
type xerialWriter struct {
	dst   *bytes.Buffer
	block []byte // data of the block being filled
	enc   []byte
}

func (w *xerialWriter) reset(dst *bytes.Buffer) {
	w.dst, w.block = dst, w.block[:0]
	dst.Write(xerialMagic)
	dst.Write([]byte{0, 0, 0, 1, 0, 0, 0, 1}) // version 1, compatible with 1
}

func (w *xerialWriter) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		k := min(len(b), xerialBlock-len(w.block))
		w.block = append(w.block, b[:k]...)
		b = b[k:]
		if len(w.block) == xerialBlock {
			w.flush()
		}
	}
	return n, nil
}

func (w *xerialWriter) flush() {
	w.enc = snappy.Encode(w.enc[:cap(w.enc)], w.block)
	var size [4]byte
	binary.BigEndian.PutUint32(size[:], uint32(len(w.enc)))
	w.dst.Write(size[:])
	w.dst.Write(w.enc)
	w.block = w.block[:0]
}

func (w *xerialWriter) close() error {
	if len(w.block) > 0 {
		w.flush()
	}
	w.dst = nil
	return nil
}

// swap replaces the old segments of each group by its new one, as the
// cleaner description says, and moves cleanedTo. It holds swapMu
// throughout, which keeps retention and DeleteRecords from removing
// segments meanwhile, and segMu and mu only while it renames the old
// segments' files and updates the segment list: Produce and
// Fetch never wait for its directory fsyncs. It returns how long it held
// segMu and mu.
func (l *Log) swap(groups []*cleanGroup, cleanedTo int64) (time.Duration, error) {
	l.swapMu.Lock()
	defer l.swapMu.Unlock()
	l.mu.Lock()
	stale := l.closed || l.failed != nil || !l.inPlaceLocked(groups)
	l.mu.Unlock()
	if stale {
		return 0, errCleanStale
	}
	// fail takes the log offline, closing the new segments from the
	// i-th group on, which are not in the log.
	fail := func(i int, err error) error {
		for _, g := range groups[i:] {
			g.out.close()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.failLocked(fmt.Errorf("clean: %w", err))
	}
	for _, g := range groups {
		// Cleaning keeps offsets, so a new segment holds the aborted
		// transactions of the old ones it replaces. A merged segment's
		// list is written over its first old segment's .txnindex before
		// the swap is decided: should the swap not happen, that index
		// lists transactions beyond its segment, and Open rebuilds it.
		for _, src := range g.srcs {
			g.out.aborted = append(g.out.aborted, src.seg.aborted...)
		}
		if len(g.srcs) > 1 {
			if err := g.out.writeTxnIndex(); err != nil {
				return 0, fail(0, err)
			}
		}
		for _, suffix := range segmentSuffixes {
			if err := l.fs.Rename(g.out.path(suffix+cleanedSuffix), g.out.path(suffix+swapSuffix)); err != nil {
				return 0, fail(0, fmt.Errorf("rename to %s: %w", swapSuffix, err))
			}
		}
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return 0, fail(0, fmt.Errorf("sync directory: %w", err))
	}
	// The swap is decided: recovery completes it from here on.
	began := time.Now()
	i, aside, err := l.swapIn(groups, cleanedTo)
	held := time.Since(began)
	for _, s := range aside {
		for _, suffix := range segmentSuffixes {
			if err := l.fs.Remove(s.path(suffix + deletedSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
				l.log.Warn("removing a merged-away segment", "dir", l.dir, "segment", s.name(), "err", err)
			}
		}
		if err := s.removeTxnIndex(); err != nil {
			l.log.Warn("removing a merged-away segment's transaction index", "dir", l.dir, "segment", s.name(), "err", err)
		}
	}
	if err != nil {
		return held, fail(i, err)
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return held, fail(len(groups), fmt.Errorf("sync directory: %w", err))
	}
	return held, nil
}

// inPlaceLocked reports whether the old segments of every group are
// still in the log, rolled and unchanged. The caller holds mu.
func (l *Log) inPlaceLocked(groups []*cleanGroup) bool {
	for _, g := range groups {
		first := l.segmentFor(g.srcs[0].seg.base)
		for i, src := range g.srcs {
			j := first + i
			if first < 0 || j >= len(l.segs)-1 || l.segs[j] != src.seg || src.seg.size != src.size {
				return false
			}
		}
	}
	return true
}

// swapIn, holding segMu and mu, puts the new segments of groups, renamed
// to .swap, in the place of the old ones, in the log and on disk, and
// moves cleanedTo. The old segments merged into a new one beyond the
// first are renamed to .deleted, which is quicker than unlinking them;
// it returns them for the caller to remove without the locks. On an
// error it also returns the index of the first group whose new segment
// is not in the log. A log closed meanwhile is left as it is: its next
// Open completes the swap.
func (l *Log) swapIn(groups []*cleanGroup, cleanedTo int64) (int, []*segment, error) {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.failed != nil {
		return 0, nil, errors.New("the log closed during the swap")
	}
	var aside []*segment
	for i, g := range groups {
		// The old segments leave the log before their files change, so
		// that a failure leaves none closed in it. Those merged into the
		// first go before the new one takes its name, as recovery does
		// it (see finishSwap).
		first := l.segmentFor(g.srcs[0].seg.base)
		if err := l.segs[first].close(); err != nil {
			l.log.Warn("closing a cleaned-away segment", "dir", l.dir, "segment", g.out.name(), "err", err)
		}
		var errs []error
		for _, src := range g.srcs[1:] {
			errs = append(errs, src.seg.close())
			for _, suffix := range segmentSuffixes {
				if err := l.fs.Rename(src.seg.path(suffix), src.seg.path(suffix+deletedSuffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("set aside segment %s: %w", src.seg.name(), err))
				}
			}
			aside = append(aside, src.seg)
		}
		for _, src := range g.srcs {
			l.size -= src.size
		}
		l.size += g.out.size
		l.segs = slices.Replace(l.segs, first, first+len(g.srcs), g.out)
		if err := errors.Join(errs...); err != nil {
			return i + 1, aside, err
		}
		for _, suffix := range segmentSuffixes {
			if err := l.fs.Rename(g.out.path(suffix+swapSuffix), g.out.path(suffix)); err != nil {
				return i + 1, aside, fmt.Errorf("swap in segment %s: %w", g.out.name(), err)
			}
		}
	}
	l.cleanedTo = max(l.cleanedTo, cleanedTo)
	return len(groups), aside, nil
}

// finishSwap, at Open, deletes the .cleaned files of a pass cut short,
// the .deleted files of one that completed, and
// completes the swap of the .swap files of a pass that decided it. A new
// segment <base>.log.swap replaces every segment whose base offset lies
// from base up to its last offset, the ones merged into it; an index
// without a .swap version is removed, to be rebuilt.
func (l *Log) finishSwap() error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return err
	}
	logs := make(map[int64]bool)
	var swaps []int64
	for _, name := range names {
		path := l.fs.PathJoin(l.dir, name)
		if strings.HasSuffix(name, cleanedSuffix) || strings.HasSuffix(name, deletedSuffix) {
			if err := l.fs.Remove(path); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
		}
		if base, ok := parseBase(name, logSuffix); ok {
			logs[base] = true
		}
		if base, ok := parseBase(name, logSuffix+swapSuffix); ok {
			swaps = append(swaps, base)
		}
	}
	for _, base := range swaps {
		s := &segment{fs: l.fs, dir: l.dir, base: base}
		end, err := swapEnd(l.fs, s.path(logSuffix+swapSuffix))
		if err != nil {
			return fmt.Errorf("read %s%s: %w", s.name(), swapSuffix, err)
		}
		l.log.Info("completing the swap of a cleaned segment", "dir", l.dir, "segment", s.name(), "end_offset", end)
		for b := range logs {
			if b > base && b < end {
				if err := (&segment{fs: l.fs, dir: l.dir, base: b}).remove(); err != nil {
					return err
				}
			}
		}
		for _, suffix := range []string{indexSuffix, timeIndexSuffix} {
			if _, err := l.fs.Stat(s.path(suffix + swapSuffix)); errors.Is(err, os.ErrNotExist) {
				if err := l.fs.Remove(s.path(suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove index of %s: %w", s.name(), err)
				}
			}
		}
		if err := l.fs.Rename(s.path(logSuffix+swapSuffix), s.path(logSuffix)); err != nil {
			return fmt.Errorf("complete swap of %s: %w", s.name(), err)
		}
	}
	renamed := len(swaps) > 0
	for _, name := range names {
		if !strings.HasSuffix(name, swapSuffix) || strings.HasSuffix(name, logSuffix+swapSuffix) {
			continue
		}
		path := l.fs.PathJoin(l.dir, name)
		if err := l.fs.Rename(path, strings.TrimSuffix(path, swapSuffix)); err != nil {
			return fmt.Errorf("complete swap of %s: %w", name, err)
		}
		renamed = true
	}
	if renamed {
		return syncDir(l.fs, l.dir)
	}
	return nil
}

// swapEnd returns the offset after the last batch of the segment file at
// path, or 0 if it has none.
func swapEnd(fs vfs.FS, path string) (int64, error) {
	f, err := fs.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	var end int64
	err = walkHeaders(f, 0, fi.Size(), nil, func(h batchHeader, _ int64) bool {
		end = h.lastOffset() + 1
		return true
	})
	return end, err
}
