// Package raftstore keeps a Raft node's log and stable state in Pebble: it
// implements hashicorp/raft's LogStore and StableStore over one Pebble
// database.
//
// Key layout (all keys share one keyspace, told apart by their first byte):
//
//	'l' + uint64 index (big endian)  ->  log entry
//	's' + key bytes                  ->  stable value (raw bytes)
//
// Big-endian indexes make Pebble's byte order the log order, so the first and
// last entries are the first and last keys under 'l', and DeleteRange is one
// Pebble range deletion.
//
// A log entry value is laid out as (integers big endian):
//
//	version     uint8   entry layout version, currently 0
//	term        uint64
//	type        uint8   raft.LogType
//	appendedAt  int64   Unix nanoseconds; 0 for the zero time
//	dataLen     uint32
//	data        [dataLen]byte
//	extLen      uint32
//	extensions  [extLen]byte
//
// The index is not repeated in the value; it is the key. Every write is
// committed with pebble.Sync, so a write that returned survives a crash.
package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/hashicorp/raft"
	"github.com/riffle-stream/riffle/broker/internal/pebbledb"
)

const (
	logPrefix    = 'l'
	stablePrefix = 's'

	entryVersion = 0
	// entryHeaderLen is version, term, type and appendedAt.
	entryHeaderLen = 1 + 8 + 1 + 8
)

// errKeyNotFound is what StableStore.Get and GetUint64 return for a missing
// key. hashicorp/raft recognises it by its text, so the text must stay
// exactly "not found" and the error must not be wrapped.
var errKeyNotFound = errors.New("not found")

// Store is a raft.LogStore and raft.StableStore backed by a Pebble database.
// It is safe for concurrent use.
type Store struct {
	db *pebble.DB
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// Open opens (creating if needed) the Pebble database in dir. Pebble's own
// log output goes to logger: informational lines at Debug, fatal ones at
// Error before the panic Pebble requires.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	db, err := pebbledb.Open(dir, nil, logger)
	if err != nil {
		return nil, fmt.Errorf("open raft store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close raft store: %w", err)
	}
	return nil
}

func logKey(index uint64) []byte {
	k := make([]byte, 9)
	k[0] = logPrefix
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

func stableKey(key []byte) []byte {
	return append([]byte{stablePrefix}, key...)
}

// logBounds returns the bounds of the whole log keyspace.
func logBounds() *pebble.IterOptions {
	return &pebble.IterOptions{LowerBound: []byte{logPrefix}, UpperBound: []byte{logPrefix + 1}}
}

// FirstIndex returns the index of the first stored log entry, or 0 if the
// log is empty.
func (s *Store) FirstIndex() (uint64, error) {
	return s.edgeIndex(true)
}

// LastIndex returns the index of the last stored log entry, or 0 if the log
// is empty.
func (s *Store) LastIndex() (uint64, error) {
	return s.edgeIndex(false)
}

func (s *Store) edgeIndex(first bool) (idx uint64, err error) {
	it, err := s.db.NewIter(logBounds())
	if err != nil {
		return 0, fmt.Errorf("raft store: open iterator: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("raft store: close iterator: %w", cerr)
		}
	}()
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	if !ok {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("raft store: seek log edge: %w", err)
		}
		return 0, nil
	}
	return binary.BigEndian.Uint64(it.Key()[1:]), nil
}

// GetLog reads the entry at index into log, returning raft.ErrLogNotFound if
// there is none.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	v, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raft store: get log %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeEntry(v, log); err != nil {
		return fmt.Errorf("raft store: decode log %d: %w", index, err)
	}
	log.Index = index
	return nil
}

// StoreLog stores one log entry.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one synced Pebble batch: all or none survive a
// crash.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, l := range logs {
		if err := b.Set(logKey(l.Index), encodeEntry(l), nil); err != nil {
			return fmt.Errorf("raft store: batch log %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raft store: commit %d log entries: %w", len(logs), err)
	}
	return nil
}

// DeleteRange deletes the entries with indexes in [min, max], both
// inclusive, with one Pebble range deletion.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	end := []byte{logPrefix + 1}
	if max < math.MaxUint64 {
		end = logKey(max + 1)
	}
	if err := s.db.DeleteRange(logKey(min), end, pebble.Sync); err != nil {
		return fmt.Errorf("raft store: delete logs [%d, %d]: %w", min, max, err)
	}
	return nil
}

// Set stores a stable key.
func (s *Store) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raft store: set %q: %w", key, err)
	}
	return nil
}

// Get returns the value of a stable key, or an error reading "not found"
// (the text hashicorp/raft looks for) if it was never set.
func (s *Store) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, errKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raft store: get %q: %w", key, err)
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// SetUint64 stores a stable key holding a uint64, as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the uint64 under a stable key, or an error reading "not
// found" if it was never set.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raft store: key %q holds %d bytes, want 8 for a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func encodeEntry(l *raft.Log) []byte {
	b := make([]byte, 0, entryHeaderLen+8+len(l.Data)+len(l.Extensions))
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Extensions)))
	b = append(b, l.Extensions...)
	return b
}

// decodeEntry fills l from v, copying the byte fields out of v (which Pebble
// owns only until its closer is closed).
func decodeEntry(v []byte, l *raft.Log) error {
	if len(v) < entryHeaderLen {
		return fmt.Errorf("entry of %d bytes is shorter than its %d-byte header", len(v), entryHeaderLen)
	}
	if v[0] != entryVersion {
		return fmt.Errorf("entry layout version %d is unknown (want %d)", v[0], entryVersion)
	}
	l.Term = binary.BigEndian.Uint64(v[1:])
	l.Type = raft.LogType(v[9])
	l.AppendedAt = time.Time{}
	if at := int64(binary.BigEndian.Uint64(v[10:])); at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	rest := v[entryHeaderLen:]
	var err error
	if l.Data, rest, err = lenPrefixed(rest); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if l.Extensions, rest, err = lenPrefixed(rest); err != nil {
		return fmt.Errorf("extensions: %w", err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%d trailing bytes", len(rest))
	}
	return nil
}

func lenPrefixed(b []byte) (field, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("length needs 4 bytes, have %d", len(b))
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(len(b)) < uint64(n) {
		return nil, nil, fmt.Errorf("length %d exceeds the %d bytes left", n, len(b))
	}
	if n == 0 {
		return nil, b, nil
	}
	return bytes.Clone(b[:n]), b[n:], nil
}
