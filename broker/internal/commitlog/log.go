// Package commitlog stores the records of one topic partition on disk in
// Kafka's format, for the broker's Produce, Fetch, ListOffsets and
// DeleteRecords handlers.
//
// A Log is a directory of segments. Each segment is a .log file of v2
// record batches stored exactly as producers sent them (only the base
// offset, the partition leader epoch and, for LogAppendTime topics, the
// timestamp fields are rewritten), a sparse .index from offsets to file
// positions and a .timeindex from timestamps to offsets, all named by the
// segment's 20-digit base offset. The log deduplicates and orders the
// batches of idempotent producers and keeps that state across restarts in
// .snapshot files. Beside them, log-start-offset holds the start offset
// DeleteRecords set and recovery-point the recovery point. Every file
// operation goes through a pebble vfs.FS (Config.FS).
//
// # Durability
//
// Under SyncGroupCommit, the default, appenders write to the page cache
// and a flusher goroutine fsyncs the active segment on behalf of every
// waiter at once, after every append, so that records no one waits for
// (acks=0) are flushed too. The high watermark is the fsynced offset:
// Fetch, the timestamp lookups and Changed see nothing beyond it, so no
// consumer reads, or commits the offset of, a record a power loss could
// take back. A roll fsyncs the old segment and its indexes and moves the
// recovery point to the new segment before the new one takes writes.
// Appends never wait for an fsync in progress: they take only the log's
// lock, which the flusher does not hold while it syncs, and the next
// group commit covers what they wrote meanwhile. While group commits
// are small (see smallCommit), in the operating system's files the
// flusher keeps up to 256 KiB of zeros written ahead of the active
// segment's records, so that a group commit is an fdatasync of data
// blocks the file already has, with no file size or block allocation to
// commit to the file system's journal, and each append starts its
// writeback at once; a roll, Close and Open cut the zeros off.
// Under SyncNone nothing waits for an fsync and the high watermark is the
// end offset: records survive the process being killed, not a power
// loss; rolled segments are still fsynced, by the flusher in the
// background, and the recovery point moved past them. In both, a new
// start offset is fsynced before DeleteRecords returns, and the directory
// after segment files are unlinked, by DeleteRecords or retention; Close
// fsyncs everything and moves the recovery point to the end.
//
// A failed write or fsync, a full disk included, takes the log offline
// (ErrStorage) until it is opened again: nothing more is acknowledged or
// served, and nothing acknowledged is touched.
//
// # Recovery
//
// Open trusts the segments that end at or below the recovery point, as
// Kafka does: it checks their index files against them and rebuilds the
// ones that do not match. From the segment holding the recovery point on,
// it reads every batch, checking framing, CRC and offsets; it truncates a
// segment at its first bad batch, drops the segments after a tear or a gap
// in offsets (they were never durable), and rebuilds the indexes of what
// it keeps, which it fsyncs before moving the recovery point to the end.
// It removes temp files, index files without a segment, empty trailing
// segments and segments wholly below the start offset, and no file it does
// not know. A torn write never keeps a log from opening; damage to a
// segment below the recovery point, records that were fsynced, does:
// Open returns ErrStorage and leaves the segments as they are, and
// removing the recovery-point file lets the next Open repair the whole log
// by truncation. A log with no recovery-point file, as one written before
// it existed, is scanned whole.
//
// Indexes are kept in memory too (8 bytes per offset index entry and 12
// per time index entry, a few MiB per GiB of log at the default interval);
// the index files are read only when the log is opened. A rolled segment
// keeps one open file, the active one three, and each FileSpan that
// FetchTo returned one more until it is closed.
//
// # Compaction
//
// Clean compacts a log with Config.Compact set, keeping the latest
// record of each key in its rolled segments without renumbering offsets;
// cleaner.go describes how, and how a crash during a pass is recovered.
package commitlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// SyncPolicy says when appended records reach stable storage.
type SyncPolicy int

const (
	// SyncGroupCommit makes WaitDurable return, and the high watermark
	// advance, once the records are fsynced; concurrent waiters share one
	// fsync. It is the default.
	SyncGroupCommit SyncPolicy = iota
	// SyncNone leaves records in the page cache, where they survive the
	// broker process being killed but not the machine losing power;
	// WaitDurable returns at once and records are readable at once.
	SyncNone
)

// Defaults of the Config fields, which are Kafka's topic config defaults.
const (
	// DefaultSegmentBytes is the default segment.bytes: 1 GiB.
	DefaultSegmentBytes = 1 << 30
	// DefaultSegmentAge is the default segment.ms: 7 days.
	DefaultSegmentAge = 7 * 24 * time.Hour
	// DefaultIndexIntervalBytes is the default index.interval.bytes.
	DefaultIndexIntervalBytes = 4096
	// DefaultMaxBatchBytes is the default max.message.bytes: 1 MiB plus
	// the 12-byte log overhead.
	DefaultMaxBatchBytes = 1048588
	// DefaultDeleteRetention is the default delete.retention.ms: 1 day.
	DefaultDeleteRetention = 24 * time.Hour
)

// Config holds one log's settings; the broker fills it from topic configs.
type Config struct {
	// SegmentBytes is the size at which the active segment is rolled
	// (segment.bytes); 0 means DefaultSegmentBytes. It is capped at
	// math.MaxInt32, as index positions are 32 bits.
	SegmentBytes int64
	// SegmentAge is the age at which a non-empty active segment is
	// rolled (segment.ms); 0 means DefaultSegmentAge.
	SegmentAge time.Duration
	// RetentionBytes bounds the size of the log, active segment aside
	// (retention.bytes); negative means unlimited. Note that the zero
	// value is a limit of 0 bytes, as in Kafka.
	RetentionBytes int64
	// RetentionAge is how long a segment is kept after its newest
	// timestamp (retention.ms); negative means unlimited, and 0 deletes
	// every rolled segment, as in Kafka.
	RetentionAge time.Duration
	// IndexIntervalBytes is how many bytes of batches separate two
	// offset index entries (index.interval.bytes); 0 means
	// DefaultIndexIntervalBytes.
	IndexIntervalBytes int32
	// MaxBatchBytes is the largest record batch Append accepts
	// (max.message.bytes); 0 means DefaultMaxBatchBytes.
	MaxBatchBytes int32
	// LogAppendTime stamps every batch with the append time
	// (message.timestamp.type=LogAppendTime) instead of keeping the
	// producer's CreateTime.
	LogAppendTime bool
	// TimestampBeforeMax bounds how far before the append time a
	// CreateTime record's timestamp may lie
	// (message.timestamp.before.max.ms); 0 means no bound.
	TimestampBeforeMax time.Duration
	// TimestampAfterMax bounds how far after the append time a CreateTime
	// record's timestamp may lie (message.timestamp.after.max.ms); 0
	// means no bound.
	TimestampAfterMax time.Duration
	// KeyRequired refuses records without a key, as Kafka does for
	// compacted topics (cleanup.policy=compact).
	KeyRequired bool
	// Compact makes Clean compact the log (cleanup.policy=compact); see
	// cleaner.go. A compacted log may have gaps in its offsets, which
	// recovery then accepts.
	Compact bool
	// DeleteRetention is how long Clean keeps a tombstone (a record with
	// a null value) after the segment holding it was cleaned
	// (delete.retention.ms); 0 means DefaultDeleteRetention.
	DeleteRetention time.Duration
	// MinCleanableDirtyRatio is the CleanState.Ratio at or above which
	// the broker's cleaner picks the log (min.cleanable.dirty.ratio).
	MinCleanableDirtyRatio float64
	// MinCompactionLag is how long a record stays uncompacted after it
	// is written (min.compaction.lag.ms): Clean skips the segments whose
	// newest timestamp is more recent. 0 means none.
	MinCompactionLag time.Duration
	// MaxCompactionLag is how long a record may stay uncompacted
	// (max.compaction.lag.ms): a log whose oldest uncleaned record is
	// older is cleanable whatever its dirty ratio (see CleanState). 0
	// means no bound, Kafka's default of Long.MAX_VALUE.
	MaxCompactionLag time.Duration
	// Sync is the durability policy. It is fixed when the log is opened.
	Sync SyncPolicy
	// Logger receives recovery, retention and storage error messages;
	// nil means slog.Default(). It is fixed when the log is opened.
	Logger *slog.Logger
	// FS is the file system holding the log; nil means vfs.Default, the
	// operating system's. Tests use vfs.NewStrictMem to simulate power
	// loss and vfs/errorfs to inject I/O errors. It is fixed when the
	// log is opened.
	FS vfs.FS
	// OnFsync, if set, is called after each fsync of appended records (a
	// group commit, the old segment at a roll, or rolled segments under
	// SyncNone) with how long it took, failed ones included. It runs on
	// the goroutine that fsynced and must be quick. It is fixed when the
	// log is opened.
	OnFsync func(time.Duration)
}

func (c Config) normalized() Config {
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	c.SegmentBytes = min(c.SegmentBytes, math.MaxInt32)
	if c.SegmentAge <= 0 {
		c.SegmentAge = DefaultSegmentAge
	}
	if c.IndexIntervalBytes <= 0 {
		c.IndexIntervalBytes = DefaultIndexIntervalBytes
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.DeleteRetention <= 0 {
		c.DeleteRetention = DefaultDeleteRetention
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	return c
}

// Sentinel errors, wrapped with context by the methods that return them;
// test them with errors.Is.
var (
	// ErrCorruptMessage (CORRUPT_MESSAGE) reports a truncated or
	// malformed batch, a bad CRC, a batch length that does not match the
	// data, or a record count of 0.
	ErrCorruptMessage = errors.New("corrupt message")
	// ErrUnsupportedMagic (UNSUPPORTED_FOR_MESSAGE_FORMAT) reports a
	// batch whose magic is not 2.
	ErrUnsupportedMagic = errors.New("unsupported message format")
	// ErrRecordTooLarge (MESSAGE_TOO_LARGE) reports a batch bigger than
	// Config.MaxBatchBytes.
	ErrRecordTooLarge = errors.New("record batch too large")
	// ErrOutOfOrderSequence (OUT_OF_ORDER_SEQUENCE_NUMBER) reports an
	// idempotent batch whose sequence does not follow the producer's
	// last one, or a new epoch not starting at sequence 0.
	ErrOutOfOrderSequence = errors.New("out of order sequence number")
	// ErrInvalidProducerEpoch (INVALID_PRODUCER_EPOCH) reports a batch
	// from an epoch older than the producer's latest.
	ErrInvalidProducerEpoch = errors.New("invalid producer epoch")
	// ErrOffsetOutOfRange (OFFSET_OUT_OF_RANGE) reports an offset outside
	// [StartOffset, EndOffset].
	ErrOffsetOutOfRange = errors.New("offset out of range")
	// ErrClosed reports use of a closed Log.
	ErrClosed = errors.New("log closed")
	// ErrStorage (KAFKA_STORAGE_ERROR) reports a failure of the log's
	// storage; it wraps the cause. Every error Open returns wraps it:
	// the directory could not be read, or holds damage recovery does not
	// repair (see the package documentation); the caller takes that one
	// partition offline. A failed write or fsync (EIO, ENOSPC) takes an
	// open log offline: from then on Append, Fetch, Read, WaitDurable and
	// DeleteRecords return ErrStorage, nothing more is served or
	// acknowledged, and what was acknowledged stays on disk. Opening the
	// log again, once the disk is back, repairs what the failure left
	// half-written.
	ErrStorage = errors.New("storage error")
)

// AppendResult describes where Append stored a batch.
type AppendResult struct {
	// BaseOffset is the offset given to the first record.
	BaseOffset int64
	// LastOffset is the offset given to the last record.
	LastOffset int64
	// LogAppendTime is the append time in ms when the log uses
	// LogAppendTime, -1 otherwise.
	LogAppendTime int64
	// LogStartOffset is the log start offset after the append.
	LogStartOffset int64
	// Duplicate reports a retry of a batch already stored: the offsets
	// are the original ones and nothing was written.
	Duplicate bool
}

// Files of a log beside its segments and producer snapshots, each holding
// one decimal offset.
const (
	// startOffsetFile persists a log start offset raised by DeleteRecords.
	startOffsetFile = "log-start-offset"
	// recoveryPointFile holds the recovery point: every record below it
	// is fsynced, with the indexes of the segments below it, so that
	// Open need only scan the segments from the one holding it on.
	recoveryPointFile = "recovery-point"
)

// Log is one partition's log.
//
// All methods are safe for concurrent use. Appends are serialized
// internally: the appends waiting while one writes are checked in turn
// and then written together with one write (see leadAppends). Read,
// OffsetForTimestamp and MaxTimestamp run concurrently with appends and
// with each other, reading files without the append lock
// and never seeing a partially written batch. WaitDurable blocks only its
// caller: the fsync it waits for runs on the log's flusher goroutine
// while appends proceed. Segment removal (retention, DeleteRecords) and
// Close wait for reads and fsyncs in progress.
type Log struct {
	fs       vfs.FS
	dir      string
	syncMode SyncPolicy
	log      *slog.Logger
	onFsync  func(time.Duration)
	// spannable says whether FetchTo may return FileSpans: the segment
	// files are the operating system's.
	spannable bool

	// segMu is held shared while segment files are read or fsynced
	// outside mu, and exclusively while segments are closed or removed.
	// It is acquired before mu.
	segMu sync.RWMutex

	mu          sync.Mutex
	cfg         Config
	validCfg    atomic.Pointer[Config] // a copy of cfg for validating without mu
	segs        []*segment             // by base offset; the last is the active one
	start, end  int64
	size        int64
	closed      bool // Close has begun
	shut        bool // Close has finished
	changed     chan struct{}
	changedUsed bool // someone holds changed, so the next change must close it
	producers   producerState
	pending     []pendingBatch // scratch for Append

	// queueMu guards the appends waiting for the one that leads (see
	// leadAppends) and spare, the leader's scratch for the next queue.
	// It is acquired before mu.
	queueMu sync.Mutex
	queue   []*appendOp
	spare   []*appendOp
	leading bool

	// swapMu is held while a Clean pass swaps its segments in and by
	// the removers of segments (retention, DeleteRecords), so that none
	// is removed once a swap is decided. It is acquired before segMu.
	swapMu sync.Mutex

	// cleanMu serializes Clean passes; cleanedTo, guarded by mu, is the
	// offset the last pass cleaned up to: the dirty part starts there.
	cleanMu   sync.Mutex
	cleanedTo int64

	// Durability state, guarded by mu.
	durable   int64         // every record below it is fsynced
	durableCh chan struct{} // closed when durable advances or the log fails
	failed    error         // the storage error that took the log offline
	unsynced  []*segment    // SyncNone: rolled segments not yet fsynced
	dirDirty  bool          // segment files were created since the last flush
	zerosNew  bool          // zeros were written ahead since the last flush
	flushedAt int64         // l.size when the last flush began
	// smallCommits says that the last group commit covered fewer than
	// smallCommit bytes: appends then start their writeback and the
	// flusher writes zeros ahead.
	smallCommits bool

	// The flusher goroutine starts at the first flush request, so that
	// a log never written to has none; Close stops it.
	flusherOnce sync.Once
	flushReq    chan struct{}
	stop        chan struct{}
	stopped     chan struct{}
}

// Open opens the log in dir, creating dir if needed, and recovers it as
// the package documentation describes: it checks the segments below the
// recovery point, repairs those from it on, and rebuilds the idempotent
// producer state from the newest usable snapshot plus the batch headers
// after it (all headers if there is none). After a clean Close recovery
// reads the whole active segment, at most SegmentBytes. Every error it
// returns wraps ErrStorage.
func Open(dir string, cfg Config) (*Log, error) {
	cfg = cfg.normalized()
	if _, err := cfg.FS.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// The new directory's entry in its parent must be durable
		// before anything in it is.
		err = cfg.FS.MkdirAll(dir, 0o755)
		if err == nil {
			err = syncDir(cfg.FS, cfg.FS.PathDir(dir))
		}
		if err != nil {
			return nil, fmt.Errorf("%w: create log directory %s: %w", ErrStorage, dir, err)
		}
	}
	l := &Log{
		fs:        cfg.FS,
		spannable: spansSupported && cfg.FS == vfs.Default,
		log:       cfg.Logger,
		dir:       dir,
		syncMode:  cfg.Sync,
		onFsync:   cfg.OnFsync,
		cfg:       cfg,
		changed:   make(chan struct{}),
		producers: make(producerState),
		durableCh: make(chan struct{}),
		flushReq:  make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
	l.validCfg.Store(&cfg)
	if err := l.recover(time.Now()); err != nil {
		for _, s := range l.segs {
			s.close()
		}
		return nil, fmt.Errorf("%w: open log %s: %w", ErrStorage, dir, err)
	}
	return l, nil
}

func (l *Log) recover(now time.Time) error {
	if err := l.finishSwap(); err != nil {
		return err
	}
	names, err := l.fs.List(l.dir)
	if err != nil {
		return err
	}
	logs := make(map[int64]bool)
	for _, name := range names {
		if base, ok := parseBase(name, logSuffix); ok {
			logs[base] = true
		}
	}
	for _, name := range names {
		stale := strings.HasSuffix(name, tmpSuffix)
		for _, suffix := range []string{indexSuffix, timeIndexSuffix, txnIndexSuffix} {
			if base, ok := parseBase(name, suffix); ok && !logs[base] {
				stale = true
			}
		}
		if stale {
			if err := l.fs.Remove(l.fs.PathJoin(l.dir, name)); err != nil {
				return fmt.Errorf("remove leftover %s: %w", name, err)
			}
		}
	}
	bases := slices.Sorted(maps.Keys(logs))
	// An empty active segment holds nothing but its base offset, which
	// is where its predecessor ends. Dropping it makes the predecessor the
	// active segment.
	for len(bases) > 1 {
		last := &segment{fs: l.fs, dir: l.dir, base: bases[len(bases)-1]}
		fi, err := l.fs.Stat(last.path(logSuffix))
		if err != nil {
			return fmt.Errorf("stat segment %s: %w", last.name(), err)
		}
		if fi.Size() > 0 {
			break
		}
		if err := last.remove(); err != nil {
			return err
		}
		bases = bases[:len(bases)-1]
	}
	l.start = l.readOffset(startOffsetFile)
	point := l.readOffset(recoveryPointFile)
	if len(bases) == 0 {
		bases = []int64{l.start}
	}
	interval := int64(l.cfg.IndexIntervalBytes)
	for i, base := range bases {
		s, err := openSegment(l.fs, l.dir, base)
		if err != nil {
			return err
		}
		l.segs = append(l.segs, s)
		last := i == len(bases)-1
		if !last && bases[i+1] <= point {
			if err := s.loadOlder(l.log, bases[i+1], interval); err != nil {
				return fmt.Errorf("%w, below the recovery point %d: remove %s to have the log repaired by truncation", err, point, recoveryPointFile)
			}
			l.size += s.size
			continue
		}
		torn, err := s.repair(l.log, interval, now)
		if err == nil {
			err = s.sync()
		}
		if err != nil {
			return err
		}
		l.size += s.size
		if last {
			break
		}
		if torn || s.next > bases[i+1] || s.next < bases[i+1] && !l.cfg.Compact {
			// The segments after a tear do not follow on from the records
			// kept, and were never durable: the log ends here, and this
			// segment becomes the active one.
			l.log.Warn("dropping the segments after a torn segment", "dir", l.dir, "segment", s.name(), "end_offset", s.next, "dropped_segments", len(bases)-i-1)
			for _, b := range bases[i+1:] {
				if err := (&segment{fs: l.fs, dir: l.dir, base: b}).remove(); err != nil {
					return err
				}
			}
			break
		}
		if err := s.closeIndexes(); err != nil {
			return fmt.Errorf("close indexes of segment %s: %w", s.name(), err)
		}
	}
	l.end = l.segs[len(l.segs)-1].next
	l.start = max(l.start, l.segs[0].base)
	if l.start > l.end {
		// DeleteRecords removed records that a power loss then took
		// back (only SyncNone lets it remove what is not durable). The
		// log starts afresh at the start offset, so that deleted offsets
		// are never given to new records.
		l.log.Warn("the log ends below its start offset; starting it afresh there", "dir", l.dir, "start_offset", l.start, "end_offset", l.end)
		for _, s := range l.segs {
			if err := s.remove(); err != nil {
				return err
			}
		}
		s, err := openSegment(l.fs, l.dir, l.start)
		if err != nil {
			return err
		}
		l.segs, l.size, l.end = []*segment{s}, 0, l.start
	}
	l.durable = l.end
	if l.end < point {
		l.log.Error("the log ends below its recovery point: records that were fsynced are lost", "dir", l.dir, "recovery_point", point, "end_offset", l.end)
	}
	// Segments wholly below the start offset are left over from a
	// DeleteRecords cut short by a crash.
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= l.start {
		n++
	}
	for _, s := range l.segs[:n] {
		l.size -= s.size
		if err := s.remove(); err != nil {
			return err
		}
	}
	l.segs = slices.Delete(l.segs, 0, n)
	if err := syncDir(l.fs, l.dir); err != nil {
		return fmt.Errorf("sync log directory: %w", err)
	}
	if point != l.end {
		if err := l.writeRecoveryPoint(l.end); err != nil {
			return err
		}
	}
	if err := l.recoverProducers(); err != nil {
		return err
	}
	l.producers.evictBefore(l.start)
	return nil
}

// readOffset reads an offset file of the log, or returns 0 if there is
// none or it is unreadable.
func (l *Log) readOffset(name string) int64 {
	b, err := readFile(l.fs, l.fs.PathJoin(l.dir, name))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n < 0 {
		l.log.Warn("ignoring unreadable offset file", "dir", l.dir, "file", name, "err", err)
		return 0
	}
	return n
}

// writeOffset durably replaces an offset file of the log.
func (l *Log) writeOffset(name string, offset int64) error {
	if err := writeFileAtomic(l.fs, l.fs.PathJoin(l.dir, name), []byte(strconv.FormatInt(offset, 10)+"\n"), true); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeRecoveryPoint records that every record below offset, with the
// indexes of the segments below it, is fsynced.
func (l *Log) writeRecoveryPoint(offset int64) error {
	return l.writeOffset(recoveryPointFile, offset)
}

// parseBase parses a segment file name of the form <20 digits><suffix>.
func parseBase(name, suffix string) (int64, bool) {
	digits, ok := strings.CutSuffix(name, suffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil && n >= 0
}

// recoverProducers loads the newest snapshot not beyond the end of the
// log and replays the batch headers after it, rebuilding the aborted
// transactions of the segments it reads (see txn.go).
func (l *Log) recoverProducers() error {
	offs, err := snapshotOffsets(l.fs, l.dir)
	if err != nil {
		return fmt.Errorf("list producer snapshots: %w", err)
	}
	from := l.segs[0].base
	for _, off := range offs {
		if off > l.end {
			// The records it covers were lost with a torn tail; new
			// ones will take their offsets.
			if err := l.fs.Remove(l.fs.PathJoin(l.dir, snapshotName(off))); err != nil {
				return fmt.Errorf("remove stale producer snapshot: %w", err)
			}
			continue
		}
		b, err := readFile(l.fs, l.fs.PathJoin(l.dir, snapshotName(off)))
		if err == nil {
			var s producerState
			if s, err = decodeSnapshot(b); err == nil {
				l.producers, from = s, max(off, from)
				break
			}
		}
		l.log.Warn("ignoring producer snapshot", "dir", l.dir, "snapshot", snapshotName(off), "err", err)
	}
	rebuild := !l.loadTxnIndexes(from)
	if rebuild {
		l.producers, from = make(producerState), l.segs[0].base
	}
	for _, s := range l.segs {
		if s.next <= from {
			continue
		}
		var replayErr error
		err := walkHeaders(s.log, s.lookup(from), s.size, nil, func(h batchHeader, pos int64) bool {
			if h.baseOffset >= from {
				replayErr = l.replayBatch(s, &h, pos)
			}
			return replayErr == nil
		})
		if err = errors.Join(err, replayErr); err != nil {
			return fmt.Errorf("rebuild producer state from segment %s: %w", s.name(), err)
		}
	}
	if rebuild {
		for _, s := range l.segs[:len(l.segs)-1] {
			if err := s.writeTxnIndex(); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetConfig changes the log's settings; they apply from the next append
// or retention pass. The sync policy, the file system and the logger
// cannot change.
func (l *Log) SetConfig(cfg Config) {
	cfg = cfg.normalized()
	l.mu.Lock()
	defer l.mu.Unlock()
	cfg.Sync, cfg.FS, cfg.Logger, cfg.OnFsync = l.syncMode, l.fs, l.log, l.onFsync
	l.cfg = cfg
	l.validCfg.Store(&cfg)
}

// scratch holds the copies Append stamps offsets into before writing.
// They are shared by every log: a buffer per log would keep a batch's
// worth of memory for each of thousands of idle partitions.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// Append validates records, the records field of a Produce request for
// this partition (one or more v2 record batches), as Kafka's broker
// validates a producer's batches (see ErrInvalidRecord), and appends them.
// Either every batch is stored or none is. Batches from idempotent
// producers are checked against the producer's sequence and epoch; a
// retry of one of the producer's last five batches is reported as a
// Duplicate. Concurrent appends are stored in the order they queue for
// the log, each checked against the producer state the ones before it
// left, with one write for all that waited together. Append does not wait
// for durability: call WaitDurable with LastOffset+1. Append does not
// modify or retain records.
func (l *Log) Append(records []byte, now time.Time) (AppendResult, error) {
	return l.append(records, now, false)
}

// AppendTransactional is Append for a producer whose transaction the
// coordinator has verified to include this partition: it accepts
// transactional batches, and the first one opens the producer's
// transaction in this log, holding the last stable offset at its first
// offset until AppendMarker closes it.
func (l *Log) AppendTransactional(records []byte, now time.Time) (AppendResult, error) {
	return l.append(records, now, true)
}

func (l *Log) append(records []byte, now time.Time, txn bool) (AppendResult, error) {
	if len(records) == 0 {
		return AppendResult{}, fmt.Errorf("%w: no record batches", ErrCorruptMessage)
	}
	v := newValidator(l.validCfg.Load(), now)
	v.txn = txn
	for pos := 0; pos < len(records); {
		h, err := v.validate(records[pos:])
		if err != nil {
			return AppendResult{}, fmt.Errorf("batch at byte %d: %w", pos, err)
		}
		pos += h.size
	}

	op := appendOps.Get().(*appendOp)
	op.records, op.now = records, now
	defer func() {
		*op = appendOp{done: op.done}
		appendOps.Put(op)
	}()
	l.queueMu.Lock()
	l.queue = append(l.queue, op)
	lead := !l.leading
	l.leading = true
	l.queueMu.Unlock()
	if !lead {
		lead = <-op.done
	}
	if lead {
		l.leadAppends()
	}
	return op.res, op.err
}

// appendOps recycles the appendOps of finished appends: once one has
// received on done, nothing else refers to it.
var appendOps = sync.Pool{New: func() any { return &appendOp{done: make(chan bool, 1)} }}

// appendOp is one Append waiting in the log's queue.
type appendOp struct {
	records []byte // validated
	now     time.Time
	res     AppendResult
	err     error
	// done receives false once the append is done, or true if its
	// caller is to lead the appends.
	done chan bool
}

// leadAppends appends the queued operations, all that are waiting at once
// with one write, and hands the lead on to the first operation queued
// meanwhile, so that no caller appends for others for long.
func (l *Log) leadAppends() {
	l.queueMu.Lock()
	ops := l.queue
	l.queue = l.spare[:0]
	l.queueMu.Unlock()

	l.mu.Lock()
	l.appendLocked(ops)
	l.mu.Unlock()

	// The first op is the leader's own.
	for _, op := range ops[1:] {
		op.done <- false
	}
	clear(ops)
	l.queueMu.Lock()
	if len(l.queue) > 0 {
		l.queue[0].done <- true
	} else {
		l.leading = false
	}
	l.spare = ops[:0]
	l.queueMu.Unlock()
}

// appendLocked appends ops in order, each checked on its own against the
// idempotent producer state the ones before it left, and writes their
// batches with one write, or one on either side of a roll. The caller
// holds mu.
func (l *Log) appendLocked(ops []*appendOp) {
	wp := scratch.Get().(*[]byte)
	defer scratch.Put(wp)
	wbuf := (*wp)[:0]
	defer func() { *wp = wbuf[:0] }()
	var written []*appendOp // whose batches are in wbuf
	var wnow time.Time      // the time of the first of them
	wend := l.end           // the offset after wbuf's records
	write := func() error {
		if len(written) == 0 {
			return nil
		}
		err := l.writeLocked(wbuf, wend, wnow)
		if err != nil {
			for _, op := range written {
				op.res, op.err = AppendResult{}, err
			}
		}
		wbuf, written = wbuf[:0], written[:0]
		return err
	}
	for _, op := range ops {
		if l.closed {
			op.err = ErrClosed
			continue
		}
		if l.failed != nil {
			op.err = l.failed
			continue
		}
		next := wend
		res, dup, err := l.checkLocked(op.records, next)
		if err != nil || dup {
			op.res, op.err = res, err
			continue
		}
		end := next + res.LastOffset + 1
		n := int64(len(op.records))
		if len(written) > 0 && l.needsRoll(int64(len(wbuf)), n, end, op.now) && write() != nil {
			op.err = l.failed
			continue
		}
		if err := l.maybeRoll(n, end, op.now); err != nil {
			op.err = l.failLocked(fmt.Errorf("roll segment: %w", err))
			continue
		}
		appendTime := int64(-1)
		if l.cfg.LogAppendTime {
			appendTime = op.now.UnixMilli()
		}
		at := len(wbuf)
		wbuf = append(wbuf, op.records...)
		for pos, off := at, next; pos < len(wbuf); {
			h := parseHeader(wbuf[pos:])
			stampBatch(wbuf[pos:], h.size, off, appendTime, l.cfg.LogAppendTime)
			off += int64(h.recordCount)
			pos += h.size
		}
		for _, p := range l.pending {
			l.producers.apply(p.pid, p.epoch, p.meta, p.txn, p.ts)
		}
		if len(written) == 0 {
			wnow = op.now
		}
		written = append(written, op)
		wend = end
		op.res = AppendResult{BaseOffset: next, LastOffset: end - 1, LogAppendTime: appendTime}
	}
	write()
	for _, op := range ops {
		switch {
		case op.err != nil:
		case op.res.Duplicate && op.res.LastOffset >= l.end:
			// A retry of a batch earlier in ops whose write failed.
			op.res, op.err = AppendResult{}, l.failed
		case !op.res.Duplicate:
			op.res.LogStartOffset = l.start
		}
	}
}

// checkLocked checks the idempotent batches of records, to be appended at
// offset next, against the producer state, leaving them in l.pending. It
// returns the records' last offset relative to next in res.LastOffset, or
// the original offsets of a retry with dup set. The caller holds mu.
func (l *Log) checkLocked(records []byte, next int64) (res AppendResult, dup bool, err error) {
	l.pending = l.pending[:0]
	off := next
	for pos := 0; pos < len(records); {
		h := parseHeader(records[pos:])
		if h.idempotent() {
			d, err := l.producers.check(&h, l.pending)
			if err != nil {
				return AppendResult{}, false, err
			}
			if d != nil {
				return AppendResult{BaseOffset: d.baseOffset, LastOffset: d.lastOffset, LogAppendTime: -1, LogStartOffset: l.start, Duplicate: true}, true, nil
			}
			transactional := h.attributes&attrTransactional != 0
			if e := l.producers[h.producerID]; e != nil && e.txnStart >= 0 && !transactional {
				return AppendResult{}, false, fmt.Errorf("%w: non-transactional batch from producer %d, whose transaction is open", ErrInvalidTxnState, h.producerID)
			}
			h.baseOffset = off
			l.pending = append(l.pending, pendingBatch{h.producerID, h.producerEpoch, batchMeta{h.baseSequence, h.lastSequence(), off, h.lastOffset()}, transactional, h.maxTimestamp})
		}
		off += int64(h.recordCount)
		pos += h.size
	}
	return AppendResult{LastOffset: off - next - 1}, false, nil
}

// writeLocked writes wbuf, batches already stamped with their offsets, at
// the end of the active segment, indexes them and moves the end of the
// log to next.
func (l *Log) writeLocked(wbuf []byte, next int64, now time.Time) error {
	s := l.segs[len(l.segs)-1]
	if _, err := s.log.WriteAt(wbuf, s.size); err != nil {
		// Whatever part of the batches reached the file lies past the
		// segment's size, never read, and is cut off by the next Open.
		return l.failLocked(fmt.Errorf("append to segment %s: %w", s.name(), err))
	}
	if l.smallCommits {
		startWriteback(s.log, s.size, int64(len(wbuf)))
	}
	if s.size == 0 {
		s.rollTime = now
	}
	interval := int64(l.cfg.IndexIntervalBytes)
	var indexErr error
	for pos := 0; pos < len(wbuf); {
		h := parseHeader(wbuf[pos:])
		indexed, timeIndexed := s.track(&h, s.size, interval)
		indexErr = errors.Join(indexErr, s.writeEntries(indexed, timeIndexed))
		pos += h.size
	}
	l.size += int64(len(wbuf))
	l.end = next
	if indexErr != nil {
		return l.failLocked(indexErr)
	}
	if l.syncMode == SyncGroupCommit {
		// The records become visible once durable; flush them soon
		// even if no one waits, as for acks=0 produces.
		l.requestFlush()
	} else {
		l.notifyLocked()
	}
	return nil
}

// failLocked takes the log offline after a storage error, logging it
// the first time, wakes the waiters, and returns the ErrStorage error the
// log reports from then on.
func (l *Log) failLocked(err error) error {
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: log %s: %w", ErrStorage, l.dir, err)
		l.log.Error("storage error: the log is offline until it is opened again", "dir", l.dir, "err", err)
		close(l.durableCh)
		l.durableCh = make(chan struct{})
		l.notifyLocked()
	}
	return l.failed
}

// Err returns nil while the log is online, and the ErrStorage error it
// answers everything with once a storage error took it offline.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

// notifyLocked wakes the holders of the Changed channel.
func (l *Log) notifyLocked() {
	if l.changedUsed && !l.closed {
		close(l.changed)
		l.changed = make(chan struct{})
		l.changedUsed = false
	}
}

// maybeRoll starts a new active segment if appending n bytes ending
// before offset next would make the active one too big, too old, or
// unaddressable by its index.
func (l *Log) maybeRoll(n, next int64, now time.Time) error {
	if !l.needsRoll(0, n, next, now) {
		return nil
	}
	return l.rollLocked()
}

// needsRoll reports whether the active segment needs a roll before n
// bytes ending before offset next are appended to it once pending bytes,
// which it does not hold yet, are.
func (l *Log) needsRoll(pending, n, next int64, now time.Time) bool {
	s := l.segs[len(l.segs)-1]
	size := s.size + pending
	if size == 0 {
		return false
	}
	if s.size > 0 && now.Sub(s.rollTime) >= l.cfg.SegmentAge {
		return true
	}
	return size+n > l.cfg.SegmentBytes || next-1-s.base > math.MaxUint32
}

// rollLocked closes the active segment to appends and starts a new one at
// the end of the log, snapshotting the producer state there. Under
// SyncGroupCommit the old segment and its indexes are fsynced, and the
// recovery point moved to the new segment, before it takes writes, so
// that a power loss leaves a prefix of the log whose older segments are
// whole. Under SyncNone the flusher does that in the background.
func (l *Log) rollLocked() error {
	old := l.segs[len(l.segs)-1]
	if err := old.writeTxnIndex(); err != nil {
		return err
	}
	if old.addTimeEntry() {
		if err := old.writeLastTimeEntry(); err != nil {
			return err
		}
	}
	if l.syncMode == SyncGroupCommit {
		if err := l.timeFsync(old.sync); err != nil {
			return err
		}
		if err := l.writeRecoveryPoint(l.end); err != nil {
			return err
		}
		l.advanceDurableLocked(l.end)
	}
	ns, err := openSegment(l.fs, l.dir, l.end)
	if err != nil {
		return err
	}
	l.segs = append(l.segs, ns)
	l.dirDirty = true
	if l.syncMode == SyncNone {
		l.unsynced = append(l.unsynced, old)
		l.requestFlush()
	} else if err := old.closeIndexes(); err != nil {
		l.log.Warn("closing the indexes of a rolled segment", "dir", l.dir, "segment", old.name(), "err", err)
	}
	if err := writeSnapshot(l.fs, l.dir, l.end, l.producers, false); err != nil {
		l.log.Warn("producer snapshot at segment roll failed", "dir", l.dir, "err", err)
	}
	return nil
}

// advanceDurableLocked records that every record below offset is fsynced
// and wakes the WaitDurable callers.
func (l *Log) advanceDurableLocked(offset int64) {
	if offset <= l.durable {
		return
	}
	l.durable = offset
	close(l.durableCh)
	l.durableCh = make(chan struct{})
	l.notifyLocked()
}

// WaitDurable returns once every record below offset is on stable storage
// under the log's sync policy, at once for SyncNone. An offset beyond the
// end of the log waits only for the records already appended. It returns
// the context's error if ctx ends first, and ErrStorage once the log is
// offline: it then reports nothing more as durable.
func (l *Log) WaitDurable(ctx context.Context, offset int64) error {
	if l.syncMode == SyncNone {
		return nil
	}
	for {
		l.mu.Lock()
		offset = min(offset, l.end)
		durable, err, closed, shut, ch := l.durable, l.failed, l.closed, l.shut, l.durableCh
		l.mu.Unlock()
		switch {
		case durable >= offset:
			return nil
		case err != nil:
			return err
		case shut:
			return ErrClosed
		}
		if !closed {
			l.requestFlush() // else Close's final fsync covers offset
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for offset %d to be durable: %w", offset, ctx.Err())
		}
	}
}

func (l *Log) requestFlush() {
	l.flusherOnce.Do(func() { go l.flusher() })
	select {
	case l.flushReq <- struct{}{}:
	default:
	}
}

// flusher runs the log's fsyncs: the group commits of a SyncGroupCommit
// log, the rolled segments of a SyncNone one.
func (l *Log) flusher() {
	defer close(l.stopped)
	for {
		select {
		case <-l.flushReq:
			l.flush()
		case <-l.stop:
			return
		}
	}
}

// flush fsyncs, without holding mu, everything appended so far under
// SyncGroupCommit, or the rolled segments under SyncNone, moving the
// recovery point past them, and then advances durable and wakes the
// waiters.
func (l *Log) flush() {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	l.mu.Lock()
	if l.closed || l.failed != nil {
		l.mu.Unlock()
		return
	}
	target, active, dirDirty := l.end, l.segs[len(l.segs)-1], l.dirDirty
	rolled := slices.Clone(l.unsynced)
	if target <= l.durable && !dirDirty && len(rolled) == 0 && !l.zerosNew {
		l.mu.Unlock()
		return
	}
	l.dirDirty, l.zerosNew = false, false
	l.smallCommits = l.syncMode == SyncGroupCommit && l.size-l.flushedAt < smallCommit
	l.flushedAt = l.size
	l.mu.Unlock()

	var err error
	if l.syncMode == SyncGroupCommit || len(rolled) > 0 {
		err = l.timeFsync(func() error { return l.syncFiles(active, dirDirty, rolled) })
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.unsynced = l.unsynced[len(rolled):]
	if err != nil {
		l.failLocked(fmt.Errorf("fsync: %w", err))
		return
	}
	if l.syncMode == SyncGroupCommit {
		l.advanceDurableLocked(target)
		if l.smallCommits {
			l.zeroAheadLocked()
		}
	}
}

// smallCommit is the size below which a group commit counts as small.
// While they are, the log is paced by the sync's latency rather than by
// writing data: the zeros written ahead make a commit of a few KiB, where
// committing the file's size to the journal is most of the cost, about
// twice as fast, and starting the writeback at each append gives the sync
// a head start. Bigger commits are paced by writing the data, which the
// zeros would double and the writeback split into small writes.
const smallCommit = 32 << 10

// zeroAheadLocked writes zeros ahead of the active segment's records when
// few are left (see segment.zeroAhead) and has the flusher sync them at
// once, so that their size and blocks are committed before an append that
// someone waits for lands in them. A failed write takes the log offline,
// as a failed append does.
func (l *Log) zeroAheadLocked() {
	if l.closed || l.failed != nil {
		return
	}
	wrote, err := l.segs[len(l.segs)-1].zeroAhead(l.cfg.SegmentBytes)
	if err != nil {
		l.failLocked(err)
		return
	}
	if wrote {
		l.zerosNew = true
		l.requestFlush()
	}
}

// syncFiles is flush's fsync: the active segment (and the directory, if
// files were created in it) under SyncGroupCommit; the rolled segments,
// then the recovery point past them, under SyncNone.
func (l *Log) syncFiles(active *segment, dirDirty bool, rolled []*segment) error {
	if l.syncMode == SyncGroupCommit {
		err := active.syncData()
		if err == nil && dirDirty {
			err = syncDir(l.fs, l.dir)
		}
		return err
	}
	for _, s := range rolled {
		if err := s.sync(); err != nil {
			return err
		}
		if err := s.closeIndexes(); err != nil {
			return err
		}
	}
	return l.writeRecoveryPoint(rolled[len(rolled)-1].next)
}

// timeFsync runs sync, an fsync of appended records, and reports its
// duration to the OnFsync hook.
func (l *Log) timeFsync(sync func() error) error {
	if l.onFsync == nil {
		return sync()
	}
	start := time.Now()
	err := sync()
	l.onFsync(time.Since(start))
	return err
}

// Bounds are the offsets that frame what consumers may read of a log.
type Bounds struct {
	// StartOffset is the log start offset, the first offset readable.
	StartOffset int64
	// HighWatermark is the offset of the first record not yet visible.
	HighWatermark int64
	// LastStableOffset is the first offset of the earliest transaction
	// still open, or HighWatermark if it is lower: read_committed
	// consumers read only below it.
	LastStableOffset int64
}

// Fetch appends to dst whole batches starting with the one that contains
// offset, as many as fit in maxBytes, but always at least that first
// batch, as Kafka does so that consumers progress past large batches. It
// reads from one segment only and returns only records below the high
// watermark, which it returns with the start offset as they were when it
// chose the batches. Reading at or past the high watermark returns dst
// unchanged; an offset below StartOffset or beyond EndOffset is
// ErrOffsetOutOfRange, returned with the bounds.
func (l *Log) Fetch(offset int64, maxBytes int32, dst []byte) ([]byte, Bounds, error) {
	f, err := l.fetch(offset, maxBytes, dst, FetchOptions{})
	return f.Records, f.Bounds, err
}

// FetchOptions says how FetchTo reads.
type FetchOptions struct {
	// Committed reads only below the last stable offset and lists the
	// aborted transactions among the batches, for read_committed
	// consumers (see FetchCommitted).
	Committed bool
	// SpanBytes, if positive, is how many bytes of batches make FetchTo
	// return them as a FileSpan of their segment file rather than read
	// them into memory, when the log's files are the operating
	// system's (Config.FS nil or vfs.Default) on a Unix system. 0, the
	// default, always reads.
	SpanBytes int
}

// Fetched is what FetchTo found: whole batches, in Records or in Span.
type Fetched struct {
	// Records is dst with the batches appended, or dst unchanged when
	// they are in Span.
	Records []byte
	// Span, if not nil, holds the batches in their segment file; the
	// caller must close it.
	Span *FileSpan
	// Bounds are the log's bounds as they were when the batches were
	// chosen.
	Bounds Bounds
	// Aborted lists, under FetchOptions.Committed, the aborted
	// transactions with records among the batches.
	Aborted []AbortedTxn
}

// FetchTo is Fetch and FetchCommitted in one, which may leave the batches
// in their segment file, where they can be sent from without being read
// (sendfile(2)): see FetchOptions.SpanBytes. The span holds the file open
// until it is closed, so that retention, compaction or Close may remove
// the segment meanwhile, and covers only whole batches below the high
// watermark (or the last stable offset) that FetchTo computed.
func (l *Log) FetchTo(offset int64, maxBytes int32, dst []byte, opts FetchOptions) (Fetched, error) {
	n := len(dst)
	f, err := l.fetch(offset, maxBytes, dst, opts)
	if err != nil || !opts.Committed || (f.Span == nil && len(f.Records) == n) {
		return f.Fetched, err
	}
	upper := f.upper
	if f.Span == nil {
		upper = lastBatchEnd(f.Records[n:])
	}
	f.Aborted = l.abortedBetween(offset, upper, f.Bounds.LastStableOffset)
	return f.Fetched, nil
}

// fetched is Fetched with the offset after its last batch for a span,
// from which the aborted transactions are listed: it may lie past that
// batch's last offset, when offsets after it were compacted away, and
// then lists a few more transactions than needed, as Kafka's bound from
// its offset index does.
type fetched struct {
	Fetched
	upper int64
}

// fetch is FetchTo without the aborted transactions.
func (l *Log) fetch(offset int64, maxBytes int32, dst []byte, opts FetchOptions) (fetched, error) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return fetched{Fetched: Fetched{Records: dst}}, ErrClosed
	}
	if l.failed != nil {
		l.mu.Unlock()
		return fetched{Fetched: Fetched{Records: dst}}, l.failed
	}
	bounds := l.boundsLocked()
	f := fetched{Fetched: Fetched{Records: dst, Bounds: bounds}}
	visible := bounds.HighWatermark
	if opts.Committed {
		visible = bounds.LastStableOffset
	}
	end := l.end
	if offset < bounds.StartOffset || offset > end {
		l.mu.Unlock()
		return f, fmt.Errorf("%w: offset %d is outside [%d, %d]", ErrOffsetOutOfRange, offset, bounds.StartOffset, end)
	}
	if offset >= visible {
		l.mu.Unlock()
		return f, nil
	}
	i := l.segmentFor(offset)
	s := l.segs[i]
	pos, limit, entries := s.lookup(offset), s.size, s.entries
	l.mu.Unlock()

	// The header scratch is dst's spare room: an array would escape to
	// the heap through the vfs.File interface.
	dst = slices.Grow(dst, batchHeaderSize)
	scratch := dst[len(dst) : len(dst)+batchHeaderSize]
	var first int64 = -1
	var firstEnd int64
	for {
		err := walkHeaders(s.log, pos, limit, scratch, func(h batchHeader, p int64) bool {
			if h.lastOffset() >= offset {
				pos, first, firstEnd = p, int64(h.size), h.lastOffset()+1
				return false
			}
			return true
		})
		if err != nil {
			return f, fmt.Errorf("%w: read segment %s: %w", ErrStorage, s.name(), err)
		}
		if first >= 0 {
			break
		}
		// The cleaner may have removed the segment's last records: read
		// on in the next one. segMu keeps the segments in place.
		l.mu.Lock()
		i++
		if i >= len(l.segs) || l.segs[i].base >= visible {
			l.mu.Unlock()
			return f, nil
		}
		s = l.segs[i]
		pos, limit, entries = 0, s.size, s.entries
		l.mu.Unlock()
	}
	want := max(first, min(int64(maxBytes), limit-pos))
	if opts.SpanBytes > 0 && want >= int64(opts.SpanBytes) && l.spannable {
		return l.span(f, s, entries, pos, pos+first, firstEnd, pos+want, limit, visible, scratch)
	}
	n := len(dst)
	dst = slices.Grow(dst, int(want))[:n+int(want)]
	if _, err := s.log.ReadAt(dst[n:], pos); err != nil {
		return f, fmt.Errorf("%w: read segment %s: %w", ErrStorage, s.name(), err)
	}
	cut := first
	for cut+lengthPrefix <= want {
		b := dst[n+int(cut):]
		size := lengthPrefix + int64(binary.BigEndian.Uint32(b[offLength:]))
		if cut+size > want || int64(binary.BigEndian.Uint64(b[offBaseOffset:])) >= visible {
			break
		}
		cut += size
	}
	f.Records = dst[:n+int(cut)]
	return f, nil
}

// span ends a fetch from segment s that leaves its batches in the file:
// from the batch at pos, which ends at cut and before offset upper, it
// takes the whole batches that end by want and start below visible,
// reading only headers, from the last offset index entry (of entries,
// taken with limit under mu) that qualifies on. The caller holds segMu
// shared, which keeps the file open while its descriptor is duplicated.
func (l *Log) span(f fetched, s *segment, entries []indexEntry, pos, cut, upper, want, limit, visible int64, scratch []byte) (fetched, error) {
	j := sort.Search(len(entries), func(j int) bool {
		return int64(entries[j].pos) > want || s.base+int64(entries[j].rel) >= visible
	}) - 1
	if j >= 0 && int64(entries[j].pos) > cut {
		cut, upper = int64(entries[j].pos), s.base+int64(entries[j].rel)
	}
	err := walkHeaders(s.log, cut, limit, scratch, func(h batchHeader, p int64) bool {
		if p+int64(h.size) > want || h.baseOffset >= visible {
			return false
		}
		cut, upper = p+int64(h.size), h.lastOffset()+1
		return true
	})
	if err != nil {
		return f, fmt.Errorf("%w: read segment %s: %w", ErrStorage, s.name(), err)
	}
	sp, err := newFileSpan(s.log, pos, cut-pos)
	if err != nil {
		return f, fmt.Errorf("%w: hold segment %s: %w", ErrStorage, s.name(), err)
	}
	f.Span, f.upper = sp, upper
	return f, nil
}

// Read is Fetch without the bounds.
func (l *Log) Read(offset int64, maxBytes int32, dst []byte) ([]byte, error) {
	f, err := l.fetch(offset, maxBytes, dst, FetchOptions{})
	return f.Records, err
}

// hwmLocked returns the high watermark: the durable offset under
// SyncGroupCommit, so that consumers never see, and commit offsets of,
// records a power loss could take back; the end offset under SyncNone.
func (l *Log) hwmLocked() int64 {
	if l.syncMode == SyncGroupCommit {
		return l.durable
	}
	return l.end
}

// segmentFor returns the index of the segment holding offset.
func (l *Log) segmentFor(offset int64) int {
	return sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
}

// StartOffset returns the log start offset: the first offset a Read may ask for.
func (l *Log) StartOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.start
}

// EndOffset returns the log end offset, the next offset to be assigned.
// Under SyncGroupCommit the records from HighWatermark to it are not yet
// fsynced, and not yet readable.
func (l *Log) EndOffset() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.end
}

// HighWatermark returns the offset of the first record consumers cannot
// read yet: under SyncGroupCommit every record below it is fsynced, under
// SyncNone it is EndOffset.
func (l *Log) HighWatermark() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hwmLocked()
}

// Changed returns a channel closed when the high watermark next advances,
// at DeleteRecords or at Close, for Fetch long polls.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changedUsed = true
	return l.changed
}

// Size returns the bytes on disk of all segments' .log files.
func (l *Log) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// OffsetForTimestamp returns the offset and timestamp of the earliest
// record from the log start offset to the high watermark whose timestamp
// is at least ts, as ListOffsets by time needs; ok is false when there is
// none. It reads inside the matching batch, decompressing it if needed.
func (l *Log) OffsetForTimestamp(ts int64) (offset, timestamp int64, ok bool) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	l.mu.Lock()
	if l.closed || l.failed != nil {
		l.mu.Unlock()
		return 0, 0, false
	}
	start, hwm := l.start, l.hwmLocked()
	type span struct {
		s          *segment
		pos, limit int64
	}
	var spans []span
	for _, s := range l.segs[max(0, l.segmentFor(start)):] {
		if s.maxTs >= ts {
			from := max(s.timeLookup(ts), start)
			spans = append(spans, span{s, s.lookup(from), s.size})
		}
	}
	l.mu.Unlock()

	for _, sp := range spans {
		var found bool
		err := scanBatches(sp.s.log, sp.pos, sp.limit, func(h *batchHeader, batch []byte) bool {
			if h.baseOffset >= hwm {
				return false
			}
			if h.maxTimestamp < ts || h.lastOffset() < start {
				return true
			}
			off, t, ok, err := findRecord(batch, start, func(t int64) bool { return t >= ts })
			if err != nil {
				l.log.Warn("timestamp lookup", "dir", l.dir, "err", err)
				return true
			}
			offset, timestamp, found = off, t, ok
			return !ok
		})
		if err != nil {
			l.log.Warn("timestamp lookup", "dir", l.dir, "segment", sp.s.name(), "err", err)
		}
		if found {
			return offset, timestamp, true
		}
	}
	return 0, 0, false
}

// MaxTimestamp returns the offset and timestamp of the earliest record
// with the largest timestamp in the log (ListOffsets with timestamp -3),
// or (-1, -1) when the log has no records with timestamps or that record
// is not below the high watermark yet.
func (l *Log) MaxTimestamp() (offset, timestamp int64) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	l.mu.Lock()
	if l.closed || l.failed != nil || l.start == l.end {
		l.mu.Unlock()
		return -1, -1
	}
	var best *segment
	for _, s := range l.segs[max(0, l.segmentFor(l.start)):] {
		if s.maxTs >= 0 && (best == nil || s.maxTs > best.maxTs) {
			best = s
		}
	}
	if best == nil {
		l.mu.Unlock()
		return -1, -1
	}
	maxTs, batchOff, start := best.maxTs, max(best.maxTsOffset, l.start), l.start
	if batchOff >= l.hwmLocked() {
		l.mu.Unlock()
		return -1, -1
	}
	pos, limit := best.lookup(batchOff), best.size
	l.mu.Unlock()

	offset, timestamp = batchOff, maxTs
	err := scanBatches(best.log, pos, limit, func(h *batchHeader, batch []byte) bool {
		if h.lastOffset() < batchOff {
			return true
		}
		if off, _, ok, err := findRecord(batch, start, func(t int64) bool { return t == maxTs }); err == nil && ok {
			offset = off
		}
		return false
	})
	if err != nil {
		l.log.Warn("max timestamp lookup", "dir", l.dir, "segment", best.name(), "err", err)
	}
	return offset, timestamp
}

// scanBatches calls fn with each whole batch of f from pos to limit until
// fn returns false. For a segment's log file the caller holds segMu shared.
func scanBatches(f vfs.File, pos, limit int64, fn func(h *batchHeader, batch []byte) bool) error {
	var buf []byte
	var readErr error
	err := walkHeaders(f, pos, limit, nil, func(h batchHeader, p int64) bool {
		buf = slices.Grow(buf[:0], h.size)[:h.size]
		if _, err := f.ReadAt(buf, p); err != nil {
			readErr = fmt.Errorf("read batch at byte %d: %w", p, err)
			return false
		}
		return fn(&h, buf)
	})
	return errors.Join(err, readErr)
}

// DeleteRecords raises the log start offset to before (the DeleteRecords
// API; -1 means the high watermark) and deletes the segments wholly below
// it. The new start offset is fsynced before DeleteRecords returns it,
// and the directory after the segments are unlinked, so that deleted
// records never reappear after a power loss. The start offset never moves
// backwards; before beyond the high watermark is ErrOffsetOutOfRange, as
// in Kafka.
func (l *Log) DeleteRecords(before int64) (int64, error) {
	l.swapMu.Lock()
	defer l.swapMu.Unlock()
	l.segMu.Lock()
	defer l.segMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.failed != nil {
		return l.start, l.failed
	}
	hwm := l.hwmLocked()
	if before == -1 {
		before = hwm
	}
	if before < 0 || before > hwm {
		return l.start, fmt.Errorf("%w: cannot delete before %d, the high watermark is %d", ErrOffsetOutOfRange, before, hwm)
	}
	if before <= l.start {
		return l.start, nil
	}
	if err := l.writeOffset(startOffsetFile, before); err != nil {
		return l.start, l.failLocked(err)
	}
	l.start = before
	n := 0
	for n < len(l.segs)-1 && l.segs[n].next <= before {
		n++
	}
	if err := l.removeSegmentsLocked(n); err != nil {
		return l.start, l.failLocked(err)
	}
	l.notifyLocked()
	return l.start, nil
}

// removeSegmentsLocked removes the n oldest segments, which are not the
// active one, syncing the directory after, and forgets the producers with
// no batch left in the log, as Kafka does. The caller holds segMu
// exclusively and mu.
func (l *Log) removeSegmentsLocked(n int) error {
	if n == 0 {
		return nil
	}
	var errs []error
	for _, s := range l.segs[:n] {
		l.size -= s.size
		l.unsynced = slices.DeleteFunc(l.unsynced, func(u *segment) bool { return u == s })
		errs = append(errs, s.remove())
	}
	l.segs = slices.Delete(l.segs, 0, n)
	l.start = max(l.start, l.segs[0].base)
	l.producers.evictBefore(l.start)
	if err := syncDir(l.fs, l.dir); err != nil {
		errs = append(errs, fmt.Errorf("sync log directory: %w", err))
	}
	return errors.Join(errs...)
}

// EnforceRetention deletes the oldest rolled segments whose newest
// timestamp is older than RetentionAge before now, then those beyond
// RetentionBytes, never the active one, and rolls the active segment if
// it is non-empty and older than SegmentAge, so that it can expire in turn.
// It does nothing on a log that is offline.
func (l *Log) EnforceRetention(now time.Time) error {
	l.swapMu.Lock()
	defer l.swapMu.Unlock()
	l.segMu.Lock()
	defer l.segMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.failed != nil {
		return nil
	}
	n := 0
	if age := l.cfg.RetentionAge; age >= 0 {
		for n < len(l.segs)-1 && now.Sub(l.segmentTime(l.segs[n])) > age {
			n++
		}
	}
	if limit := l.cfg.RetentionBytes; limit >= 0 {
		excess := l.size - limit
		for _, s := range l.segs[:n] {
			excess -= s.size
		}
		for n < len(l.segs)-1 && excess-l.segs[n].size >= 0 {
			excess -= l.segs[n].size
			n++
		}
	}
	if n > 0 {
		l.log.Info("deleting segments past retention", "dir", l.dir, "segments", n, "new_start_offset", l.segs[n].base)
		if err := l.removeSegmentsLocked(n); err != nil {
			return l.failLocked(err)
		}
	}
	if active := l.segs[len(l.segs)-1]; active.size > 0 && now.Sub(active.rollTime) >= l.cfg.SegmentAge {
		if err := l.rollLocked(); err != nil {
			return l.failLocked(fmt.Errorf("roll segment: %w", err))
		}
	}
	return nil
}

// segmentTime is the time retention measures a segment's age from: its
// newest timestamp, or its file's modification time if it has none.
func (l *Log) segmentTime(s *segment) time.Time {
	if s.maxTs >= 0 {
		return time.UnixMilli(s.maxTs)
	}
	if fi, err := s.log.Stat(); err == nil {
		return fi.ModTime()
	}
	return time.Time{}
}

// Close flushes and fsyncs the log, writes a producer state snapshot so
// that the next Open need not replay batches, moves the recovery point to
// the end, and closes the files. Pending WaitDurable calls return when its
// fsync completes, with its error if it failed. Closing a log that is
// offline only closes its files. Close is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.changed)
	l.mu.Unlock()
	l.flusherOnce.Do(func() { close(l.stopped) })
	close(l.stop)
	<-l.stopped

	l.segMu.Lock()
	defer l.segMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed != nil {
		// Nothing is trusted to reach the disk any more, and nothing
		// may claim it did: the next Open recovers from the files.
		for _, s := range l.segs {
			s.close()
		}
		l.shut = true
		return nil
	}
	var errs []error
	active := l.segs[len(l.segs)-1]
	if active.addTimeEntry() {
		errs = append(errs, active.writeLastTimeEntry())
	}
	for _, s := range l.segs {
		errs = append(errs, s.sync())
	}
	errs = append(errs, active.writeTxnIndex())
	errs = append(errs, writeSnapshot(l.fs, l.dir, l.end, l.producers, true))
	if l.start > l.segs[0].base {
		errs = append(errs, l.writeOffset(startOffsetFile, l.start))
	}
	if err := errors.Join(errs...); err == nil {
		errs = append(errs, l.writeRecoveryPoint(l.end))
	}
	errs = append(errs, syncDir(l.fs, l.dir))
	for _, s := range l.segs {
		errs = append(errs, s.close())
	}
	err := errors.Join(errs...)
	l.shut = true
	if err != nil {
		return l.failLocked(fmt.Errorf("close: %w", err))
	}
	l.durable = max(l.durable, l.end)
	close(l.durableCh)
	l.durableCh = make(chan struct{})
	return nil
}

// Delete closes the log and removes its directory.
func (l *Log) Delete() error {
	if err := l.Close(); err != nil {
		l.log.Warn("closing a log being deleted", "dir", l.dir, "err", err)
	}
	if err := l.fs.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("delete log %s: %w", l.dir, err)
	}
	return nil
}
