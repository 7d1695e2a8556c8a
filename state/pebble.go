package state

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble"
)

// PebbleDB is one Pebble instance holding every persistent store of a task.
// Each store's keys live under their own prefix, and each store keeps the
// values of up to about 1 MiB of its keys last read or written in memory
// (a row cache, which every write goes through to Pebble), so that an
// aggregation's read of the key it just updated does not search Pebble.
type PebbleDB struct {
	db     *pebble.DB
	mu     sync.Mutex
	stores map[string]*pebbleStore // by name, so that each has one row cache
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Debug(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// OpenPebble opens (creating if needed) the Pebble instance in dir.
func OpenPebble(dir string, logger *slog.Logger) (*PebbleDB, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{logger}})
	if err != nil {
		return nil, fmt.Errorf("open pebble in %s: %w", dir, err)
	}
	return newPebbleDB(db), nil
}

func newPebbleDB(db *pebble.DB) *PebbleDB {
	return &PebbleDB{db: db, stores: make(map[string]*pebbleStore)}
}

// Store returns the RawStore named name inside the instance, the same one
// for every call with that name.
func (p *PebbleDB) Store(name string) RawStore {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.stores[name]; ok {
		return s
	}
	prefix := append([]byte{byte(len(name))}, name...)
	s := &pebbleStore{db: p.db, name: name, prefix: prefix, rows: newRowCache()}
	p.stores[name] = s
	return s
}

// Close closes the instance.
func (p *PebbleDB) Close() error {
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// pebbleStore is one store's keys in a PebbleDB. Its Get, Put and Delete
// are safe for concurrent use (interactive queries read while the task
// writes), as Pebble's are; the row cache has a lock of its own.
type pebbleStore struct {
	db     *pebble.DB
	name   string
	prefix []byte
	rows   rowCache
}

func (s *pebbleStore) key(k []byte) []byte {
	out := make([]byte, 0, len(s.prefix)+len(k))
	return append(append(out, s.prefix...), k...)
}

func (s *pebbleStore) Name() string { return s.name }

func (s *pebbleStore) Get(key []byte) ([]byte, error) {
	v, version, ok := s.rows.get(key)
	if ok {
		return v, nil
	}
	v, closer, err := s.db.Get(s.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pebble get in store %s: %w", s.name, err)
	}
	out := make([]byte, len(v))
	copy(out, v)
	s.rows.fill(key, out, version)
	return out, closer.Close()
}

func (s *pebbleStore) Put(key, value []byte) error {
	if err := s.db.Set(s.key(key), value, pebble.NoSync); err != nil {
		s.rows.remove(key)
		return fmt.Errorf("pebble put in store %s: %w", s.name, err)
	}
	s.rows.put(key, value)
	return nil
}

func (s *pebbleStore) Delete(key []byte) error {
	err := s.db.Delete(s.key(key), pebble.NoSync)
	s.rows.remove(key)
	if err != nil {
		return fmt.Errorf("pebble delete in store %s: %w", s.name, err)
	}
	return nil
}

func (s *pebbleStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	upper := prefixEnd(s.prefix)
	if to != nil {
		upper = s.key(to)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: s.key(from), UpperBound: upper})
	if err != nil {
		return fmt.Errorf("pebble scan in store %s: %w", s.name, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		// The iterator reuses its buffers: hand out copies.
		if !yield(bytes.Clone(it.Key()[len(s.prefix):]), bytes.Clone(it.Value())) {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("pebble scan in store %s: %w", s.name, err)
	}
	return nil
}

func (s *pebbleStore) ApproximateNumEntries() (int64, error) {
	var n int64
	err := s.Scan(nil, nil, func(_, _ []byte) bool { n++; return true })
	return n, err
}

// Flush syncs Pebble's write-ahead log, so writes survive a crash.
func (s *pebbleStore) Flush() error {
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("pebble flush for store %s: %w", s.name, err)
	}
	return nil
}

// rowCacheBytes bounds each Pebble store's row cache.
const rowCacheBytes = 1 << 20

// rowOverhead is what a row costs in the cache besides its key and value.
const rowOverhead = 64

// rowCache holds the values of one store's keys last read or written, so
// that the read of a read-modify-write (an aggregation's Get and Put of
// the same key) is a map lookup rather than a search of Pebble's
// memtables and levels. Every write goes to Pebble first and then to the
// cache, so the cache holds no key Pebble does not have with that value.
// A read that missed fills the cache with what it found in Pebble only if
// no write came between (version): else an interactive query reading
// beside the task's writes could cache a value the write had replaced.
// Absent keys are not cached. Past rowCacheBytes it drops rows in Go's
// map order, which is random, until a quarter of the budget is free.
// Rows of new keys cost more than the reads they save when few reads hit
// (a key space much larger than the budget): while under a quarter of a
// window's reads hit, only one new key in admitSample is taken in.
type rowCache struct {
	mu    sync.Mutex
	rows  map[string]*row
	bytes int
	// version counts the writes, for fill.
	version uint64
	// reads and hits count the lookups of the current window; admit says
	// whether the last window's hits earned new keys a row.
	reads, hits int
	admit       bool
	skipped     int
}

type row struct{ value []byte }

const (
	// rowWindow is how many lookups the hit ratio is measured over.
	rowWindow = 4096
	// admitSample is one in how many new keys gets a row while reads
	// mostly miss.
	admitSample = 16
)

func newRowCache() rowCache { return rowCache{rows: make(map[string]*row), admit: true} }

// get returns a copy of the cached value of key, or on a miss the version
// to fill the cache at.
func (c *rowCache) get(key []byte) ([]byte, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reads++; c.reads == rowWindow {
		c.admit, c.reads, c.hits = 4*c.hits >= rowWindow, 0, 0
	}
	r, ok := c.rows[string(key)]
	if !ok {
		return nil, c.version, false
	}
	c.hits++
	return bytes.Clone(r.value), 0, true
}

// put caches a copy of value, just written to Pebble, as key's.
func (c *rowCache) put(key, value []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	c.setLocked(key, value)
}

// fill caches a copy of value, read from Pebble for key after get
// returned version, unless a write came since.
func (c *rowCache) fill(key, value []byte, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version == version {
		c.setLocked(key, value)
	}
}

func (c *rowCache) setLocked(key, value []byte) {
	if r, ok := c.rows[string(key)]; ok {
		c.bytes += len(value) - len(r.value)
		r.value = append(r.value[:0], value...)
		return
	}
	if !c.admit {
		if c.skipped++; c.skipped%admitSample != 0 {
			return
		}
	}
	c.rows[string(key)] = &row{value: bytes.Clone(value)}
	c.bytes += len(key) + len(value) + rowOverhead
	if c.bytes <= rowCacheBytes {
		return
	}
	for k, r := range c.rows {
		if c.bytes <= rowCacheBytes*3/4 {
			break
		}
		delete(c.rows, k)
		c.bytes -= len(k) + len(r.value) + rowOverhead
	}
}

// remove forgets key, just deleted from Pebble (or not known to hold
// what the cache has).
func (c *rowCache) remove(key []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	if r, ok := c.rows[string(key)]; ok {
		delete(c.rows, string(key))
		c.bytes -= len(key) + len(r.value) + rowOverhead
	}
}

// removeAll forgets every row, after a range of keys was deleted from
// Pebble.
func (c *rowCache) removeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	clear(c.rows)
	c.bytes = 0
}
