package commitlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// File name suffixes of a segment's files.
const (
	logSuffix       = ".log"
	indexSuffix     = ".index"
	timeIndexSuffix = ".timeindex"
	tmpSuffix       = ".tmp"

	indexEntrySize     = 8  // relative offset uint32, position uint32
	timeIndexEntrySize = 12 // timestamp int64, relative offset uint32
)

// segmentSuffixes are the suffixes of the files of one segment.
var segmentSuffixes = [...]string{logSuffix, indexSuffix, timeIndexSuffix}

// indexEntry maps the base offset of a batch to its position in the file.
type indexEntry struct {
	rel uint32
	pos uint32
}

// timeEntry records the largest timestamp seen up to a batch and the
// base offset of the batch that holds it.
type timeEntry struct {
	ts  int64
	rel uint32
}

// segment is one file of batches plus its sparse indexes, kept both on
// disk and in memory. Its fields are guarded by the Log's mu, with two
// exceptions: the bytes of the log file below size never change, and the
// index files of a rolled segment awaiting its fsync belong to the
// flusher, which closes them; the Log's segMu keeps them from being
// closed twice.
type segment struct {
	fs        vfs.FS
	base      int64
	dir       string
	log       vfs.File
	index     vfs.File // nil once the segment is rolled and synced
	timeIndex vfs.File // nil once the segment is rolled and synced

	size     int64 // bytes of whole batches
	fileEnd  int64 // bytes of the log file: zeros from size on, see zeroAhead
	next     int64 // offset after the segment's last record
	entries  []indexEntry
	tentries []timeEntry

	sinceIndex  int64 // bytes written since the last index entry
	firstTs     int64 // max timestamp of the first batch, -1 if none
	maxTs       int64 // largest batch max timestamp, -1 if none
	maxTsOffset int64 // base offset of the batch holding maxTs
	rollTime    time.Time
	scratch     [timeIndexEntrySize]byte
	// aborted lists the aborted transactions whose marker the segment
	// holds, by marker offset; see txn.go.
	aborted []AbortedTxn
}

func (s *segment) path(suffix string) string {
	return s.fs.PathJoin(s.dir, fmt.Sprintf("%020d%s", s.base, suffix))
}

func (s *segment) name() string { return fmt.Sprintf("%020d%s", s.base, logSuffix) }

// openSegment opens (creating if needed) the files of the segment at base.
func openSegment(fs vfs.FS, dir string, base int64) (*segment, error) {
	s := &segment{fs: fs, base: base, dir: dir, next: base, firstTs: -1, maxTs: -1, maxTsOffset: -1}
	var err error
	if s.log, err = fs.OpenReadWrite(s.path(logSuffix)); err != nil {
		return nil, fmt.Errorf("open segment: %w", err)
	}
	if s.index, err = fs.OpenReadWrite(s.path(indexSuffix)); err == nil {
		s.timeIndex, err = fs.OpenReadWrite(s.path(timeIndexSuffix))
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("open segment index: %w", err)
	}
	return s, nil
}

// close closes the segment's open files.
func (s *segment) close() error {
	var errs []error
	for _, f := range []vfs.File{s.log, s.index, s.timeIndex} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	s.index, s.timeIndex = nil, nil
	return errors.Join(errs...)
}

// closeIndexes closes the index files of a rolled segment; its indexes
// live on in memory.
func (s *segment) closeIndexes() error {
	err := errors.Join(s.index.Close(), s.timeIndex.Close())
	s.index, s.timeIndex = nil, nil
	return err
}

// remove closes and deletes the segment's files, the log first so that a
// crash leaves only orphan indexes, which Open removes.
func (s *segment) remove() error {
	var errs []error
	errs = append(errs, s.close())
	for _, suffix := range segmentSuffixes {
		if err := s.fs.Remove(s.path(suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.removeTxnIndex())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove segment %s: %w", s.name(), err)
	}
	return nil
}

// lookup returns the position of the last indexed batch whose base offset
// is at most offset, or 0.
func (s *segment) lookup(offset int64) int64 {
	rel := offset - s.base
	i := sort.Search(len(s.entries), func(i int) bool { return int64(s.entries[i].rel) > rel })
	if i == 0 {
		return 0
	}
	return int64(s.entries[i-1].pos)
}

// timeLookup returns the base offset from which to scan for the first
// record with a timestamp of at least ts: every batch before it has
// smaller timestamps.
func (s *segment) timeLookup(ts int64) int64 {
	i := sort.Search(len(s.tentries), func(i int) bool { return s.tentries[i].ts >= ts })
	if i == 0 {
		return s.base
	}
	return s.base + int64(s.tentries[i-1].rel)
}

// track updates the in-memory indexes for a batch stored at pos. It
// reports whether it added an offset index entry and a time index entry.
func (s *segment) track(h *batchHeader, pos int64, interval int64) (indexed, timeIndexed bool) {
	if pos == 0 {
		s.firstTs = h.maxTimestamp
	}
	if h.maxTimestamp > s.maxTs {
		s.maxTs, s.maxTsOffset = h.maxTimestamp, h.baseOffset
	}
	if s.sinceIndex >= interval {
		s.entries = append(s.entries, indexEntry{uint32(h.baseOffset - s.base), uint32(pos)})
		s.sinceIndex = 0
		indexed, timeIndexed = true, s.addTimeEntry()
	}
	s.sinceIndex += int64(h.size)
	s.next = h.lastOffset() + 1
	s.size = pos + int64(h.size)
	s.fileEnd = max(s.fileEnd, s.size)
	return indexed, timeIndexed
}

// addTimeEntry appends a time index entry if the max timestamp grew.
func (s *segment) addTimeEntry() bool {
	if s.maxTs < 0 || (len(s.tentries) > 0 && s.tentries[len(s.tentries)-1].ts >= s.maxTs) {
		return false
	}
	s.tentries = append(s.tentries, timeEntry{s.maxTs, uint32(s.maxTsOffset - s.base)})
	return true
}

// writeEntries writes the index entries track reported it added.
func (s *segment) writeEntries(indexed, timeIndexed bool) error {
	var err error
	if indexed {
		err = s.writeLastEntry()
	}
	if timeIndexed {
		err = errors.Join(err, s.writeLastTimeEntry())
	}
	return err
}

// writeLastEntry appends the newest offset index entry to its file.
func (s *segment) writeLastEntry() error {
	e := s.entries[len(s.entries)-1]
	binary.BigEndian.PutUint32(s.scratch[0:], e.rel)
	binary.BigEndian.PutUint32(s.scratch[4:], e.pos)
	if _, err := s.index.WriteAt(s.scratch[:indexEntrySize], int64(len(s.entries)-1)*indexEntrySize); err != nil {
		return fmt.Errorf("write index of %s: %w", s.name(), err)
	}
	return nil
}

// writeLastTimeEntry appends the newest time index entry to its file.
func (s *segment) writeLastTimeEntry() error {
	e := s.tentries[len(s.tentries)-1]
	binary.BigEndian.PutUint64(s.scratch[0:], uint64(e.ts))
	binary.BigEndian.PutUint32(s.scratch[8:], e.rel)
	if _, err := s.timeIndex.WriteAt(s.scratch[:timeIndexEntrySize], int64(len(s.tentries)-1)*timeIndexEntrySize); err != nil {
		return fmt.Errorf("write time index of %s: %w", s.name(), err)
	}
	return nil
}

// writeIndexes replaces the index files with the in-memory indexes. The
// files are created anew, as vfs.File cannot be truncated.
func (s *segment) writeIndexes() error {
	b := s.appendIndex(make([]byte, 0, max(len(s.entries)*indexEntrySize, len(s.tentries)*timeIndexEntrySize)))
	var err error
	if s.index, err = s.rewrite(s.index, indexSuffix, b); err != nil {
		return fmt.Errorf("rebuild index of %s: %w", s.name(), err)
	}
	b = s.appendTimeIndex(b[:0])
	if s.timeIndex, err = s.rewrite(s.timeIndex, timeIndexSuffix, b); err != nil {
		return fmt.Errorf("rebuild time index of %s: %w", s.name(), err)
	}
	return nil
}

// appendIndex appends the in-memory offset index to b in its file format.
func (s *segment) appendIndex(b []byte) []byte {
	for _, e := range s.entries {
		b = binary.BigEndian.AppendUint32(b, e.rel)
		b = binary.BigEndian.AppendUint32(b, e.pos)
	}
	return b
}

// appendTimeIndex appends the in-memory time index to b in its file format.
func (s *segment) appendTimeIndex(b []byte) []byte {
	for _, e := range s.tentries {
		b = binary.BigEndian.AppendUint64(b, uint64(e.ts))
		b = binary.BigEndian.AppendUint32(b, e.rel)
	}
	return b
}

// rewrite replaces the segment file with suffix, open as f, by a new one
// holding b, and returns the new one open. A file that holds b already,
// as after a clean Close, is kept.
func (s *segment) rewrite(f vfs.File, suffix string, b []byte) (vfs.File, error) {
	if fi, err := f.Stat(); err == nil && fi.Size() == int64(len(b)) {
		old := make([]byte, len(b))
		if _, err := f.ReadAt(old, 0); (err == nil || err == io.EOF) && bytes.Equal(old, b) {
			return f, nil
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	nf, err := s.fs.Create(s.path(suffix))
	if err != nil {
		return nil, err
	}
	if _, err := nf.Write(b); err != nil {
		nf.Close()
		return nil, err
	}
	return nf, nil
}

// walkHeaders calls fn for each batch header from pos to limit, reading
// headers only, into scratch if it can hold one. It checks framing, not
// CRCs, and returns an error for a batch that does not fit or is
// malformed.
func walkHeaders(f vfs.File, pos, limit int64, scratch []byte, fn func(h batchHeader, pos int64) bool) error {
	if len(scratch) < batchHeaderSize {
		scratch = make([]byte, batchHeaderSize)
	}
	buf := scratch[:batchHeaderSize]
	for pos < limit {
		if _, err := f.ReadAt(buf, pos); err != nil {
			return fmt.Errorf("%w: read batch header at byte %d: %v", ErrCorruptMessage, pos, err)
		}
		h, err := checkFraming(buf, limit-pos)
		if err != nil {
			return fmt.Errorf("batch at byte %d: %w", pos, err)
		}
		if !fn(h, pos) {
			return nil
		}
		pos += int64(h.size)
	}
	return nil
}

// repair scans the whole segment verifying every batch's framing, CRC
// and offset, truncates the file at the first bad batch, and rebuilds the
// indexes from what it read. It reports whether it truncated. A batch
// may start past the end of the one before it: cleaning leaves such gaps
// inside a segment, and a torn write, which only loses a file's tail,
// cannot make one, so they are kept even once the log is no longer
// compacted.
func (s *segment) repair(logger *slog.Logger, interval int64, now time.Time) (bool, error) {
	fi, err := s.log.Stat()
	if err != nil {
		return false, fmt.Errorf("stat segment %s: %w", s.name(), err)
	}
	fileSize := fi.Size()
	buf := make([]byte, 1<<16)
	var pos int64
	var bad error
	for pos < fileSize {
		if fileSize-pos < batchHeaderSize {
			bad = fmt.Errorf("%d trailing bytes", fileSize-pos)
			break
		}
		if _, err := s.log.ReadAt(buf[:batchHeaderSize], pos); err != nil {
			return false, fmt.Errorf("read segment %s: %w", s.name(), err)
		}
		h, err := checkFraming(buf[:batchHeaderSize], fileSize-pos)
		if err == nil && h.baseOffset < s.next {
			err = fmt.Errorf("base offset %d, expected %d", h.baseOffset, s.next)
		}
		if err != nil {
			bad = err
			break
		}
		if h.size > len(buf) {
			buf = make([]byte, h.size)
		}
		if _, err := s.log.ReadAt(buf[:h.size], pos); err != nil {
			return false, fmt.Errorf("read segment %s: %w", s.name(), err)
		}
		if err := checkCRC(buf[:h.size], &h); err != nil {
			bad = err
			break
		}
		if pos == 0 {
			s.rollTime = time.UnixMilli(min(h.maxTimestamp, now.UnixMilli()))
		}
		s.track(&h, pos, interval)
		pos += int64(h.size)
	}
	if bad != nil {
		zeros, err := s.zerosFrom(pos, fileSize, buf)
		if err != nil {
			return false, fmt.Errorf("read segment %s: %w", s.name(), err)
		}
		if zeros {
			logger.Info("cutting zeros past the last batch of segment",
				"dir", s.dir, "segment", s.name(), "at_byte", pos, "at_offset", s.next, "dropped_bytes", fileSize-pos)
		} else {
			logger.Warn("truncating torn or corrupt tail of segment",
				"dir", s.dir, "segment", s.name(), "at_byte", pos, "at_offset", s.next, "dropped_bytes", fileSize-pos, "reason", bad)
		}
		if err := s.truncate(pos); err != nil {
			return false, fmt.Errorf("truncate segment %s: %w", s.name(), err)
		}
	}
	if pos == 0 {
		s.rollTime = time.Time{}
	}
	s.addTimeEntry()
	return bad != nil, s.writeIndexes()
}

// zerosFrom reports whether the log file holds only zero bytes from pos
// to end, reading through buf.
func (s *segment) zerosFrom(pos, end int64, buf []byte) (bool, error) {
	for pos < end {
		n := min(int64(len(buf)), end-pos)
		if _, err := s.log.ReadAt(buf[:n], pos); err != nil {
			return false, err
		}
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		pos += n
	}
	return true, nil
}

// sync fsyncs the segment's files that are open, first cutting off the
// zeros written ahead of the records, if any.
func (s *segment) sync() error {
	if err := s.trimZeros(); err != nil {
		return fmt.Errorf("sync segment %s: %w", s.name(), err)
	}
	err := s.log.Sync()
	if s.index != nil {
		err = errors.Join(err, s.index.Sync(), s.timeIndex.Sync())
	}
	if err != nil {
		return fmt.Errorf("sync segment %s: %w", s.name(), err)
	}
	return nil
}

// loadOlder sets up a rolled segment that ends at next: it loads its
// index files if they are consistent with the log, and rebuilds them from
// the batch headers otherwise. A malformed batch in the segment is an error.
func (s *segment) loadOlder(logger *slog.Logger, next, interval int64) error {
	fi, err := s.log.Stat()
	if err != nil {
		return fmt.Errorf("stat segment %s: %w", s.name(), err)
	}
	s.size, s.fileEnd, s.next = fi.Size(), fi.Size(), next
	if err := s.loadIndexes(interval); err != nil {
		logger.Warn("rebuilding index of segment", "dir", s.dir, "segment", s.name(), "reason", err)
		s.entries, s.tentries, s.sinceIndex, s.maxTs, s.maxTsOffset = nil, nil, 0, -1, -1
		size := s.size
		err := walkHeaders(s.log, 0, size, nil, func(h batchHeader, pos int64) bool {
			s.track(&h, pos, interval)
			return true
		})
		if err != nil {
			return fmt.Errorf("segment %s: %w", s.name(), err)
		}
		s.addTimeEntry()
		s.next = next
		if err := s.writeIndexes(); err != nil {
			return err
		}
	} else if s.size > 0 {
		err := walkHeaders(s.log, 0, s.size, nil, func(h batchHeader, _ int64) bool {
			s.firstTs = h.maxTimestamp
			return false
		})
		if err != nil {
			return fmt.Errorf("segment %s: %w", s.name(), err)
		}
	}
	return s.closeIndexes()
}

// loadIndexes reads the index files and checks them against the log: entries
// in order and inside the file, the last entry pointing at the batch it
// names, and no entry missing after it.
func (s *segment) loadIndexes(interval int64) error {
	ib, err := io.ReadAll(s.index)
	if err != nil {
		return err
	}
	tb, err := io.ReadAll(s.timeIndex)
	if err != nil {
		return err
	}
	if len(ib)%indexEntrySize != 0 || len(tb)%timeIndexEntrySize != 0 {
		return errors.New("index file size is not a whole number of entries")
	}
	span := s.next - s.base
	if span > math.MaxUint32 {
		return errors.New("segment spans more offsets than an index can address")
	}
	be := binary.BigEndian
	for b := ib; len(b) > 0; b = b[indexEntrySize:] {
		e := indexEntry{be.Uint32(b), be.Uint32(b[4:])}
		if n := len(s.entries); n > 0 && (e.rel <= s.entries[n-1].rel || e.pos <= s.entries[n-1].pos) || int64(e.rel) >= span || int64(e.pos) >= s.size {
			return fmt.Errorf("index entry %d is out of order or range", len(s.entries))
		}
		s.entries = append(s.entries, e)
	}
	for b := tb; len(b) > 0; b = b[timeIndexEntrySize:] {
		e := timeEntry{int64(be.Uint64(b)), be.Uint32(b[8:])}
		if n := len(s.tentries); n > 0 && e.ts <= s.tentries[n-1].ts || int64(e.rel) >= span {
			return fmt.Errorf("time index entry %d is out of order or range", len(s.tentries))
		}
		s.tentries = append(s.tentries, e)
	}
	var from int64
	if n := len(s.entries); n > 0 {
		from = int64(s.entries[n-1].pos)
	}
	if n := len(s.tentries); n > 0 {
		s.maxTs, s.maxTsOffset = s.tentries[n-1].ts, s.base+int64(s.tentries[n-1].rel)
	}
	var walkErr error
	first, since, tailMax := true, int64(0), int64(-1)
	err = walkHeaders(s.log, from, s.size, nil, func(h batchHeader, pos int64) bool {
		switch {
		case first && len(s.entries) > 0 && h.baseOffset != s.base+int64(s.entries[len(s.entries)-1].rel):
			walkErr = fmt.Errorf("last index entry names offset %d, the batch there has %d", s.base+int64(s.entries[len(s.entries)-1].rel), h.baseOffset)
		case !first && since >= interval:
			walkErr = fmt.Errorf("index entry missing for the batch at byte %d", pos)
		}
		first = false
		since += int64(h.size)
		tailMax = max(tailMax, h.maxTimestamp)
		return walkErr == nil
	})
	if err != nil {
		return err
	}
	if walkErr != nil {
		return walkErr
	}
	if tailMax > s.maxTs {
		return fmt.Errorf("time index lacks the timestamp %d of its last batches", tailMax)
	}
	return nil
}

// zeroChunk is how many bytes of zeros zeroAhead writes past the end of
// the active segment's records at a time; it writes more once less than
// half of them is left.
const zeroChunk = 256 << 10

// zeros is what zeroAhead writes; nothing writes into it.
var zeros [zeroChunk]byte

// zeroAhead keeps zeros written in the log file ahead of the records, up
// to a chunk of them and never past limit, the segment's size limit, so
// that the appends land in blocks the file already has: the group commit's
// fdatasync then writes only their data, while an append that extends the
// file makes every sync also commit the file's new size and blocks to the
// file system's journal, which on a shared disk waits for everybody's
// metadata. It reports whether it wrote. Only files that can be truncated
// (the operating system's, see truncate) get zeros: a roll, sync and
// Close cut them off with trimZeros, and Open cuts a zero tail off as a
// clean end. The caller holds the Log's mu, so no append writes meanwhile.
func (s *segment) zeroAhead(limit int64) (bool, error) {
	if _, ok := s.log.(truncater); !ok || s.fileEnd-s.size >= zeroChunk/2 {
		return false, nil
	}
	n := min(s.size+zeroChunk, limit) - s.fileEnd
	if n <= 0 {
		return false, nil
	}
	from := s.fileEnd
	// Whatever part of the zeros reached the file, a later trimZeros
	// must cut it off.
	s.fileEnd += n
	if _, err := s.log.WriteAt(zeros[:n], from); err != nil {
		return false, fmt.Errorf("write zeros ahead in segment %s: %w", s.name(), err)
	}
	return true, nil
}

// trimZeros cuts the zeros zeroAhead wrote past the records off the log file.
func (s *segment) trimZeros() error {
	if s.fileEnd <= s.size {
		return nil
	}
	if err := s.truncate(s.size); err != nil {
		return fmt.Errorf("cut the zeros off: %w", err)
	}
	s.fileEnd = s.size
	return nil
}

// syncData makes the records written to the log file durable: with
// fdatasync where zeroAhead writes zeros, which leaves out the
// modification time, the only metadata an append into zeros changes, and
// with fsync elsewhere (the file systems of tests, whose error injection
// sees only fsync).
func (s *segment) syncData() error {
	if _, ok := s.log.(truncater); ok {
		return s.log.SyncData()
	}
	return s.log.Sync()
}

// truncater is a file that can be truncated, as the operating system's are.
type truncater interface{ Truncate(int64) error }

// truncate cuts the segment's log file to size bytes. vfs.File has no
// Truncate: the OS's files have one, and on other file systems the
// prefix is copied to a new file that replaces the log file.
func (s *segment) truncate(size int64) error {
	if t, ok := s.log.(truncater); ok {
		return t.Truncate(size)
	}
	tmp := s.path(logSuffix + tmpSuffix)
	nf, err := s.fs.Create(tmp)
	if err != nil {
		return err
	}
	_, err = io.Copy(nf, io.NewSectionReader(s.log, 0, size))
	if err == nil {
		err = nf.Sync()
	}
	if err == nil {
		err = s.fs.Rename(tmp, s.path(logSuffix))
	}
	if err != nil {
		nf.Close()
		s.fs.Remove(tmp)
		return err
	}
	s.log.Close()
	s.log = nf
	return nil
}
