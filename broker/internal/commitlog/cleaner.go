package commitlog

// The log cleaner compacts a log as Kafka's does (cleanup.policy=compact):
// it keeps only the latest record of each key in the rolled segments.
//
// A pass maps the dirty part of the log, from where the previous pass
// stopped (cleanedTo) to the first segment it may not clean, key hash to
// latest offset, in a map of at most CleanOptions.MaxKeys entries; then it
// rewrites every segment from the start of the log to the end of what it
// mapped, one new segment per old one, keeping a record if no later
// record has its key. Offsets are never renumbered: a filtered batch
// keeps its base offset, attributes, producer id, epoch, base sequence
// and last offset delta, so producer state read from headers is
// unchanged, with fewer records and a new CRC; compressed batches are
// decompressed, filtered and recompressed with their codec. A batch
// left with no record is dropped, except the last batch of each producer
// the log knows, which is kept whole so that the producer's state
// survives (Kafka keeps it as an empty batch; this log's framing
// requires at least one record). The active segment is never cleaned, nor
// a segment whose newest timestamp is within MinCompactionLag, nor one
// not yet fsynced.
//
// A tombstone, a record with a null value, is removed once the segment
// holding it was already clean before the pass and its newest timestamp
// is older than DeleteRetention: Kafka's rule before KIP-534, by the
// segment's largest timestamp instead of its file's modification time.
//
// The new segments are written beside the old as <base>.log.cleaned,
// .index.cleaned and .timeindex.cleaned, and fsynced. Then, holding the
// log's locks, the pass renames them to .swap, fsyncs the directory (the
// swap is decided), renames each .swap over the old file and fsyncs the
// directory again. Open deletes .cleaned files and completes the renames
// of .swap files, so that a crash at any point leaves either the old or
// the new version of each segment, both holding every key's latest
// record. Produce and Fetch go on during a pass: the cleaner reads the
// old segments through its own file handles and takes the log's locks
// only for the renames.
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
// log that is not compacted or has nothing to clean. The broker cleans
// the log with the highest ratio above min.cleanable.dirty.ratio.
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

// Cleanable returns DirtyRatio and whether it is above the log's
// MinCleanableDirtyRatio, as Kafka's cleaner requires of the logs it
// picks.
func (l *Log) Cleanable() (float64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.dirtyRatioLocked()
	return r, r > 0 && r >= l.cfg.MinCleanableDirtyRatio
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

// Clean runs one cleaning pass over a compacted log at time now, as the
// cleaner description above says. It does nothing on a log that is not
// compacted, is offline, or has no dirty rolled segment. A failure to
// write the new segments leaves the log as it was; a failure during the
// renames takes it offline, and the next Open completes the swap.
func (l *Log) Clean(now time.Time, opts CleanOptions) (CleanResult, error) {
	l.cleanMu.Lock()
	defer l.cleanMu.Unlock()
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultCleanerMaxKeys
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return CleanResult{}, ErrClosed
	}
	cfg := l.cfg
	if !cfg.Compact || l.failed != nil {
		l.mu.Unlock()
		return CleanResult{}, nil
	}
	firstDirty := max(l.cleanedTo, l.start)
	lagLimit := now.Add(-cfg.MinCompactionLag).UnixMilli()
	var srcs []*cleanSource
	lso := l.boundsLocked().LastStableOffset
	for _, s := range l.segs[:len(l.segs)-1] {
		// Records of open transactions may yet be aborted (txn.go).
		if (cfg.MinCompactionLag > 0 && s.maxTs > lagLimit) || slices.Contains(l.unsynced, s) || s.next > lso {
			break
		}
		srcs = append(srcs, &cleanSource{seg: s, next: s.next, size: s.size, maxTs: s.maxTs})
	}
	lastOfProducer := make(map[int64]int64, len(l.producers))
	for pid, e := range l.producers {
		if e.n > 0 {
			lastOfProducer[pid] = e.last().lastOffset
		}
	}
	aborted := l.abortedLocked()
	l.mu.Unlock()
	if len(srcs) == 0 || srcs[len(srcs)-1].next <= firstDirty {
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

	m := offsetMap{seed: maphash.MakeSeed(), offsets: make(map[uint64]int64), aborted: aborted}
	mappedEnd := firstDirty
	for _, src := range srcs {
		if src.next <= firstDirty {
			continue
		}
		full, err := m.add(src, firstDirty, maxKeys)
		if err != nil {
			return CleanResult{}, fmt.Errorf("clean %s: map segment %s: %w", l.dir, src.seg.name(), err)
		}
		if full {
			break
		}
		mappedEnd = src.next
	}
	if mappedEnd == firstDirty {
		return CleanResult{}, fmt.Errorf("clean %s: the offset map of %d keys cannot hold segment %d", l.dir, maxKeys, srcs[0].seg.base)
	}

	var res CleanResult
	var outs []*segment
	var swapped []*cleanSource
	abort := func(err error) (CleanResult, error) {
		for _, o := range outs {
			o.close()
			removeCleanedFiles(l.fs, o)
		}
		return CleanResult{}, fmt.Errorf("clean %s: %w", l.dir, err)
	}
	deleteHorizon := now.Add(-cfg.DeleteRetention).UnixMilli()
	interval := int64(cfg.IndexIntervalBytes)
	for _, src := range srcs {
		if src.next > mappedEnd {
			break
		}
		dropTombstones := src.next <= firstDirty && src.maxTs >= 0 && src.maxTs < deleteHorizon
		out, removed, err := l.cleanSegment(src, &m, lastOfProducer, dropTombstones, interval)
		if err != nil {
			if out != nil {
				outs = append(outs, out)
			}
			return abort(err)
		}
		res.BytesRead += src.size
		if removed == 0 {
			// Nothing to remove: the segment stays as it is.
			out.close()
			removeCleanedFiles(l.fs, out)
			continue
		}
		outs = append(outs, out)
		swapped = append(swapped, src)
		res.Segments++
		res.BytesWritten += out.size
		res.RecordsRemoved += removed
	}
	if err := l.swap(swapped, outs, mappedEnd); err != nil {
		if errors.Is(err, errCleanStale) {
			abort(err)
			return CleanResult{}, nil
		}
		return CleanResult{}, err
	}
	l.log.Info("cleaned log", "dir", l.dir, "segments", res.Segments, "bytes_before", res.BytesRead, "bytes_after", res.BytesWritten, "records_removed", res.RecordsRemoved, "cleaned_to", mappedEnd)
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

func (m *offsetMap) hash(key []byte) uint64 { return maphash.Bytes(m.seed, key) }

// add maps the keys of the records of src at or after from. It reports
// whether the map filled up before the end of the segment.
func (m *offsetMap) add(src *cleanSource, from int64, maxKeys int) (bool, error) {
	full := false
	err := eachBatch(src, func(h *batchHeader, batch []byte) (bool, error) {
		if h.lastOffset() < from || h.attributes&attrControl != 0 || batchAborted(h, m.aborted) {
			return true, nil
		}
		err := eachRecord(h, batch, func(rec *recordMeta, raw, key []byte) bool {
			off := h.baseOffset + int64(rec.offsetDelta)
			if off < from || rec.nullKey {
				return true
			}
			k := m.hash(key)
			if _, ok := m.offsets[k]; !ok && len(m.offsets) >= maxKeys {
				full = true
				return false
			}
			m.offsets[k] = off
			return true
		})
		return !full, err
	})
	return full, err
}

// eachBatch calls fn with each batch of src until it returns false.
func eachBatch(src *cleanSource, fn func(h *batchHeader, batch []byte) (bool, error)) error {
	var fnErr error
	err := scanBatches(src.f, 0, src.size, func(h *batchHeader, batch []byte) bool {
		var more bool
		more, fnErr = fn(h, batch)
		return more && fnErr == nil
	})
	return errors.Join(err, fnErr)
}

// eachRecord calls fn with each record of the batch, its encoding and its
// key, until fn returns false. A compressed batch is decompressed whole.
func eachRecord(h *batchHeader, batch []byte, fn func(rec *recordMeta, raw, key []byte) bool) error {
	data := batch[batchHeaderSize:h.size]
	if codec := h.attributes & attrCompression; codec != 0 {
		var err error
		if data, err = inflate(codec, data); err != nil {
			return fmt.Errorf("batch at offset %d: %w", h.baseOffset, err)
		}
	}
	var w recordWalker
	defer w.close()
	if err := w.open(0, data); err != nil {
		return err
	}
	for i := range h.recordCount {
		start := w.consumed
		rec, err := w.next()
		if err != nil {
			return fmt.Errorf("%w: record %d of batch at offset %d: %v", ErrCorruptMessage, i, h.baseOffset, err)
		}
		var key []byte
		if !rec.nullKey {
			key = data[rec.keyEnd-int64(rec.keyLen) : rec.keyEnd]
		}
		if !fn(&rec, data[start:w.consumed], key) {
			return nil
		}
	}
	return nil
}

// inflate decompresses a records section whole, up to maxRecordsBytes.
func inflate(codec int16, data []byte) ([]byte, error) {
	src, release, err := decompress(codec, data)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := io.ReadAll(io.LimitReader(src, maxRecordsBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("decompress: %v", err)
	case len(out) > maxRecordsBytes:
		return nil, errRecordsTooLarge
	}
	return out, nil
}

// cleanSegment writes the cleaned copy of src as .cleaned files, fsynced,
// and returns it as a segment with its log file open, and how many
// records it dropped.
func (l *Log) cleanSegment(src *cleanSource, m *offsetMap, lastOfProducer map[int64]int64, dropTombstones bool, interval int64) (*segment, int64, error) {
	out := &segment{fs: l.fs, dir: l.dir, base: src.seg.base, next: src.next, maxTs: -1, maxTsOffset: -1, rollTime: src.seg.rollTime}
	f, err := l.fs.Create(out.path(logSuffix + cleanedSuffix))
	if err != nil {
		return nil, 0, fmt.Errorf("create cleaned segment: %w", err)
	}
	out.log = f
	var removed int64
	var kept, built []byte
	err = eachBatch(src, func(h *batchHeader, batch []byte) (bool, error) {
		keep := batch
		if h.attributes&attrControl == 0 && !(h.producerID >= 0 && lastOfProducer[h.producerID] == h.lastOffset()) {
			kept = kept[:0]
			var n int32
			err := eachRecord(h, batch, func(rec *recordMeta, raw, key []byte) bool {
				off := h.baseOffset + int64(rec.offsetDelta)
				live := rec.nullKey
				if !live {
					latest, ok := m.offsets[m.hash(key)]
					live = !ok || latest <= off
				}
				if live && rec.nullValue && dropTombstones {
					live = false
				}
				if live {
					kept = append(kept, raw...)
					n++
				}
				return true
			})
			if err != nil {
				return false, err
			}
			removed += int64(h.recordCount - n)
			switch {
			case n == 0:
				return true, nil
			case n < h.recordCount:
				if built, err = rebuildBatch(built[:0], batch[:batchHeaderSize], n, kept); err != nil {
					return false, fmt.Errorf("batch at offset %d: %w", h.baseOffset, err)
				}
				keep = built
			}
		}
		nh := parseHeader(keep)
		if _, err := out.log.WriteAt(keep, out.size); err != nil {
			return false, fmt.Errorf("write cleaned segment: %w", err)
		}
		out.track(&nh, out.size, interval)
		return true, nil
	})
	out.next = src.next
	out.addTimeEntry()
	if err == nil && removed > 0 {
		err = out.writeCleanedIndexes()
		if err == nil {
			err = out.log.Sync()
		}
	}
	return out, removed, err
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

// rebuildBatch appends to dst a batch with the header hdr, n records and
// records, the kept records' encodings, compressed with the header's
// codec; the CRC is recomputed, every other header field kept.
func rebuildBatch(dst, hdr []byte, n int32, records []byte) ([]byte, error) {
	codec := int16(binary.BigEndian.Uint16(hdr[offAttributes:])) & attrCompression
	dst = append(dst, hdr...)
	var err error
	if dst, err = compress(codec, dst, records); err != nil {
		return nil, err
	}
	be := binary.BigEndian
	be.PutUint32(dst[offLength:], uint32(len(dst)-lengthPrefix))
	be.PutUint32(dst[offRecordCount:], uint32(n))
	be.PutUint32(dst[offCRC:], crc32.Checksum(dst[offAttributes:], castagnoli))
	return dst, nil
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
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
	})
)

// compress appends data compressed with codec to dst. Snappy is written
// in the xerial framing the Java client writes, which every client reads.
func compress(codec int16, dst, data []byte) ([]byte, error) {
	switch codec {
	case 0:
		return append(dst, data...), nil
	case 1:
		buf := bytes.NewBuffer(dst)
		w := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(w)
		w.Reset(buf)
		return finish(buf, w, data)
	case 2:
		const block = 32 << 10
		dst = append(dst, xerialMagic...)
		dst = binary.BigEndian.AppendUint32(dst, 1)
		dst = binary.BigEndian.AppendUint32(dst, 1)
		for len(data) > 0 {
			chunk := data[:min(block, len(data))]
			data = data[len(chunk):]
			n := len(dst)
			dst = binary.BigEndian.AppendUint32(dst, 0)
			enc := snappy.Encode(dst[len(dst):cap(dst)], chunk)
			binary.BigEndian.PutUint32(dst[n:], uint32(len(enc)))
			dst = append(dst, enc...)
		}
		return dst, nil
	case 3:
		buf := bytes.NewBuffer(dst)
		w := lz4Writers.Get().(*lz4.Writer)
		defer lz4Writers.Put(w)
		w.Reset(buf)
		return finish(buf, w, data)
	case 4:
		enc, err := zstdEncoder()
		if err != nil {
			return nil, err
		}
		return enc.EncodeAll(data, dst), nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// finish writes data through w, closes it and returns what buf holds.
func finish(buf *bytes.Buffer, w io.WriteCloser, data []byte) ([]byte, error) {
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// swap replaces the old segments srcs by the cleaned ones outs, holding
// the log's locks, as the cleaner description says, and moves cleanedTo.
func (l *Log) swap(srcs []*cleanSource, outs []*segment, cleanedTo int64) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.failed != nil {
		return errCleanStale
	}
	idx := make([]int, len(srcs))
	for i, src := range srcs {
		j := l.segmentFor(src.seg.base)
		if j < 0 || l.segs[j] != src.seg || src.seg.size != src.size || j == len(l.segs)-1 {
			return errCleanStale
		}
		idx[i] = j
	}
	for _, o := range outs {
		for _, suffix := range segmentSuffixes {
			if err := l.fs.Rename(o.path(suffix+cleanedSuffix), o.path(suffix+swapSuffix)); err != nil {
				return l.failLocked(fmt.Errorf("clean: rename to %s: %w", swapSuffix, err))
			}
		}
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return l.failLocked(fmt.Errorf("clean: sync directory: %w", err))
	}
	for i, o := range outs {
		for _, suffix := range segmentSuffixes {
			if err := l.fs.Rename(o.path(suffix+swapSuffix), o.path(suffix)); err != nil {
				return l.failLocked(fmt.Errorf("clean: swap in segment %s: %w", o.name(), err))
			}
		}
		old := l.segs[idx[i]]
		o.aborted = old.aborted // cleaning keeps offsets, and the .txnindex file
		l.size += o.size - old.size
		if err := old.close(); err != nil {
			l.log.Warn("closing a cleaned-away segment", "dir", l.dir, "segment", old.name(), "err", err)
		}
		l.segs[idx[i]] = o
	}
	if err := syncDir(l.fs, l.dir); err != nil {
		return l.failLocked(fmt.Errorf("clean: sync directory: %w", err))
	}
	l.cleanedTo = max(l.cleanedTo, cleanedTo)
	return nil
}

// removeCleanedFiles removes the .cleaned files of segment s.
func removeCleanedFiles(fs vfs.FS, s *segment) {
	for _, suffix := range segmentSuffixes {
		fs.Remove(s.path(suffix + cleanedSuffix))
	}
}

// finishSwap, at Open, deletes the .cleaned files of a pass cut short and
// completes the swap of the .swap files of a pass that decided it.
func (l *Log) finishSwap() error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return err
	}
	renamed := false
	for _, name := range names {
		path := l.fs.PathJoin(l.dir, name)
		switch {
		case strings.HasSuffix(name, cleanedSuffix):
			if err := l.fs.Remove(path); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
		case strings.HasSuffix(name, swapSuffix):
			l.log.Info("completing the swap of a cleaned segment", "dir", l.dir, "file", name)
			if err := l.fs.Rename(path, strings.TrimSuffix(path, swapSuffix)); err != nil {
				return fmt.Errorf("complete swap of %s: %w", name, err)
			}
			renamed = true
		}
	}
	if renamed {
		return syncDir(l.fs, l.dir)
	}
	return nil
}
