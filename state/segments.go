package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// Segments says how a window or session store is cut into time segments
// (Kafka Streams' segmented bytes stores). Records are kept while their
// segment timestamp (a window's start, a session's end) lies within
// Retention of the store's observed stream time, the largest segment
// timestamp it has been given; older records are invisible, and whole
// segments of Interval width are dropped at once when they expire.
type Segments struct {
	// Retention is how long a record is kept.
	Retention time.Duration
	// Interval is the width of one segment.
	Interval time.Duration
	// suffix is the number of bytes after the record key in a store key;
	// the segment timestamp is its first 8 bytes.
	suffix int
}

// Store key suffixes: a window's start and a sequence number (Kafka's
// WindowKeySchema), a session's end and start (SessionKeySchema).
const (
	windowSuffix  = timestampSize + 4
	sessionSuffix = 2 * timestampSize
	timestampSize = 8
)

// defaultSegmentInterval is Kafka Streams' default segment interval for a
// retention period: half of it, but at least a minute.
func defaultSegmentInterval(retention time.Duration) time.Duration {
	return max(retention/2, time.Minute)
}

// WrapEngine returns the bottom layer of the store c describes, over the
// engine the runtime opened for it: the engine itself for a key-value
// store, and for a window or session store a layer that places each key
// into its time segment, drops expired segments and ignores writes to
// them. Both the runtime and restoration from the changelog must write
// through this layer.
func (c Config) WrapEngine(engine RawStore) RawStore {
	if c.Segments == nil {
		return engine
	}
	return newSegmentedStore(engine, *c.Segments)
}

// segmentedStore maps store keys (in the layout of the changelog) to
// engine keys prefixed by their 8-byte big-endian segment id. Its Scan goes
// segment by segment, oldest first, and in key order within a segment, so
// it is not a general RawStore: only the window and session stores of this
// package scan it. Reads may run concurrently with the task's writes (they
// do for interactive queries) when the engine allows it, as Pebble and
// MemoryStore do: mu guards the stream time and live segments, and a scan
// reads them once, as it starts.
type segmentedStore struct {
	engine      RawStore
	retentionMs int64
	intervalMs  int64
	suffix      int

	mu       sync.Mutex
	loaded   bool
	observed int64 // largest segment timestamp written; -1 for none
	liveFrom int64 // segments below were dropped
}

func newSegmentedStore(engine RawStore, s Segments) *segmentedStore {
	return &segmentedStore{engine: engine, retentionMs: s.Retention.Milliseconds(),
		intervalMs: max(s.Interval.Milliseconds(), 1), suffix: s.suffix, observed: -1}
}

func (s *segmentedStore) Name() string { return s.engine.Name() }

// timestamp returns the segment timestamp of a store key.
func (s *segmentedStore) timestamp(key []byte) (int64, error) {
	if len(key) < s.suffix {
		return 0, fmt.Errorf("store %s: key of %d bytes is shorter than its %d-byte window suffix", s.Name(), len(key), s.suffix)
	}
	return int64(binary.BigEndian.Uint64(key[len(key)-s.suffix:])), nil
}

func (s *segmentedStore) segment(ts int64) int64 {
	if ts < 0 {
		return 0
	}
	return ts / s.intervalMs
}

func segmentPrefix(seg int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(seg)) }

func (s *segmentedStore) engineKey(seg int64, key []byte) []byte {
	return append(segmentPrefix(seg), key...)
}

// minLive returns the oldest segment still live for the observed stream
// time.
func (s *segmentedStore) minLive() int64 {
	if s.observed < 0 || s.observed < math.MinInt64+s.retentionMs {
		return 0
	}
	return s.segment(s.observed - s.retentionMs)
}

// visible reports whether a record with segment timestamp ts is within
// retention of the observed stream time observed: Kafka returns only
// records newer than observed - retention.
func (s *segmentedStore) visible(observed, ts int64) bool {
	return observed < 0 || ts > observed-s.retentionMs
}

// load recovers the observed stream time from the engine's newest segment,
// once, and drops the segments it has made expired. The caller holds mu.
func (s *segmentedStore) load() error {
	if s.loaded {
		return nil
	}
	top := int64(-1)
	for {
		seg, ok, err := s.nextSegment(top + 1)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		top = seg
	}
	if top >= 0 {
		var scanErr error
		err := s.engine.Scan(segmentPrefix(top), segmentPrefix(top+1), func(k, _ []byte) bool {
			ts, err := s.timestamp(k[timestampSize:])
			if err != nil {
				scanErr = err
				return false
			}
			s.observed = max(s.observed, ts)
			return true
		})
		if err = errors.Join(err, scanErr); err != nil {
			return err
		}
	}
	s.loaded = true
	return s.dropExpired()
}

// nextSegment returns the first segment id >= from holding a key.
func (s *segmentedStore) nextSegment(from int64) (int64, bool, error) {
	var seg int64
	found := false
	err := s.engine.Scan(segmentPrefix(from), nil, func(k, _ []byte) bool {
		if len(k) >= timestampSize {
			seg, found = int64(binary.BigEndian.Uint64(k)), true
		}
		return false
	})
	return seg, found, err
}

// rangeDeleter is implemented by engines that delete a key range at once.
type rangeDeleter interface {
	deleteRange(from, to []byte) error
}

// dropExpired deletes the segments older than the oldest live one. The
// caller holds mu.
func (s *segmentedStore) dropExpired() error {
	live := s.minLive()
	if live <= s.liveFrom {
		return nil
	}
	from, to := segmentPrefix(s.liveFrom), segmentPrefix(live)
	s.liveFrom = live
	if rd, ok := s.engine.(rangeDeleter); ok {
		return rd.deleteRange(from, to)
	}
	var keys [][]byte
	if err := s.engine.Scan(from, to, func(k, _ []byte) bool {
		keys = append(keys, bytes.Clone(k))
		return true
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.engine.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *segmentedStore) Get(key []byte) ([]byte, error) {
	ts, err := s.timestamp(key)
	if err != nil {
		return nil, err
	}
	observed, _, err := s.position()
	if err != nil || !s.visible(observed, ts) {
		return nil, err
	}
	return s.engine.Get(s.engineKey(s.segment(ts), key))
}

// position returns the observed stream time and the oldest segment not
// dropped, loading them first if need be.
func (s *segmentedStore) position() (observed, liveFrom int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return 0, 0, err
	}
	return s.observed, s.liveFrom, nil
}

// Put stores the record in its segment, unless the segment has expired:
// then the record is dropped, as Kafka Streams drops it ("Skipping record
// for expired segment").
func (s *segmentedStore) Put(key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	ts, err := s.timestamp(key)
	if err != nil {
		return err
	}
	s.observed = max(s.observed, ts)
	seg := s.segment(ts)
	if seg < s.minLive() {
		return nil
	}
	if err := s.engine.Put(s.engineKey(seg, key), value); err != nil {
		return err
	}
	return s.dropExpired()
}

func (s *segmentedStore) Delete(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(); err != nil {
		return err
	}
	ts, err := s.timestamp(key)
	if err != nil {
		return err
	}
	seg := s.segment(ts)
	if seg < s.liveFrom {
		return nil
	}
	return s.engine.Delete(s.engineKey(seg, key))
}

func (s *segmentedStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	return s.scanSegments(math.MinInt64, math.MaxInt64, from, to, yield)
}

// scanSegments scans, in every segment that can hold segment timestamps
// from first to last, the keys from <= key < to; nil bounds are open.
func (s *segmentedStore) scanSegments(first, last int64, from, to []byte, yield func(key, value []byte) bool) error {
	observed, liveFrom, err := s.position()
	if err != nil {
		return err
	}
	lastSeg := s.segment(last)
	for seg := max(liveFrom, s.segment(first)); seg <= lastSeg; seg++ {
		next, ok, err := s.nextSegment(seg)
		if err != nil {
			return err
		}
		if !ok || next > lastSeg {
			return nil
		}
		seg = next
		lower, upper := s.engineKey(seg, from), segmentPrefix(seg+1)
		if to != nil {
			upper = s.engineKey(seg, to)
		}
		stopped := false
		var tsErr error
		err = s.engine.Scan(lower, upper, func(k, v []byte) bool {
			key := k[timestampSize:]
			ts, err := s.timestamp(key)
			if err != nil {
				tsErr = err
				return false
			}
			if !s.visible(observed, ts) {
				return true
			}
			if !yield(key, v) {
				stopped = true
				return false
			}
			return true
		})
		if err = errors.Join(err, tsErr); err != nil || stopped || seg == math.MaxInt64 {
			return err
		}
	}
	return nil
}

// scanTime scans raw like Scan, restricted to the segments that can hold
// segment timestamps from first to last when raw is (a changelogging layer
// over) a segmented store. Callers still filter what they get by time.
func scanTime(raw RawStore, first, last int64, from, to []byte, yield func(key, value []byte) bool) error {
	for {
		switch s := raw.(type) {
		case *segmentedStore:
			return s.scanSegments(first, last, from, to, yield)
		case *loggedStore:
			raw = s.RawStore
		default:
			return raw.Scan(from, to, yield)
		}
	}
}

func (s *segmentedStore) ApproximateNumEntries() (int64, error) {
	return s.engine.ApproximateNumEntries()
}

func (s *segmentedStore) Flush() error { return s.engine.Flush() }

func (s *pebbleStore) deleteRange(from, to []byte) error {
	if err := s.writeBack(); err != nil {
		return err
	}
	err := s.db.DeleteRange(s.key(from), s.key(to), pebble.NoSync)
	s.rows.removeAll()
	if err != nil {
		return fmt.Errorf("pebble delete range in store %s: %w", s.name, err)
	}
	return nil
}
