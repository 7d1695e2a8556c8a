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
// (a row cache), so that an aggregation's read of the key it just updated
// does not search Pebble. Writes are held in that cache and reach Pebble
// in one batch when half of it holds unwritten rows, at Flush, before a
// Scan, and at Close: a key updated many times between commits is
// written to Pebble once. Pebble's write-ahead log is synced only at
// Flush, so nothing that was not flushed is durable either way.
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

// Close writes every store's held writes to Pebble and closes the
// instance.
func (p *PebbleDB) Close() error {
	p.mu.Lock()
	var errs []error
	for _, s := range p.stores {
		errs = append(errs, s.writeBack())
	}
	p.mu.Unlock()
	if err := errors.Join(append(errs, p.db.Close())...); err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

// pebbleStore is one store's keys in a PebbleDB. Its methods are safe for
// concurrent use (interactive queries read while the task writes): the
// row cache has a lock, which writeBack holds while Pebble applies its
// batch, so that a reader finds each row either in the cache or in Pebble.
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

// Put holds the write in the row cache; an error writing held rows to
// Pebble is returned by the Put (or Flush, Scan) that wrote them.
func (s *pebbleStore) Put(key, value []byte) error {
	if s.rows.write(key, value, false) {
		return s.writeBack()
	}
	return nil
}

func (s *pebbleStore) Delete(key []byte) error {
	if s.rows.write(key, nil, true) {
		return s.writeBack()
	}
	return nil
}

// writeBack writes the rows held in the cache to Pebble in one batch.
func (s *pebbleStore) writeBack() error {
	c := &s.rows
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	var err error
	for _, k := range c.pending {
		r := c.rows[k]
		if r.deleted {
			err = b.Delete(s.key([]byte(k)), nil)
		} else {
			err = b.Set(s.key([]byte(k)), r.value, nil)
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		return fmt.Errorf("pebble write in store %s: %w", s.name, err)
	}
	c.written()
	return nil
}

func (s *pebbleStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	if err := s.writeBack(); err != nil {
		return err
	}
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

// Flush writes the held rows to Pebble and syncs Pebble's write-ahead
// log, so writes survive a crash.
func (s *pebbleStore) Flush() error {
	if err := s.writeBack(); err != nil {
		return err
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("pebble flush for store %s: %w", s.name, err)
	}
	return nil
}

// rowCacheBytes bounds each Pebble store's row cache.
const rowCacheBytes = 1 << 20

// heldBytes is how much of the row cache rows not yet written to Pebble
// may take before a write writes them back.
const heldBytes = rowCacheBytes / 2

// rowOverhead is what a row costs in the cache besides its key and value.
const rowOverhead = 64

// rowCache holds the values of one store's keys last read or written, so
// that the read of a read-modify-write (an aggregation's Get and Put of
// the same key) is a map lookup rather than a search of Pebble's
// memtables and levels, and so that repeated writes of a key between
// write-backs reach Pebble once. A written row is held (its key is in
// pending, and a deleted key's row stays as a tombstone) until the store
// writes it back; held rows are never dropped. A read that missed fills
// the cache with what it found in Pebble only if no write came between
// (version): else an interactive query reading beside the task's writes
// could cache a value the write had replaced. Absent keys are not cached
// once written back. Past rowCacheBytes it drops written-back rows in
// Go's map order, which is random, until a quarter of the budget is free.
// Rows of keys only read cost more than the reads they save when few
// reads hit (a key space much larger than the budget): while under a
// quarter of a window's reads hit, only one such key in admitSample is
// taken in.
type rowCache struct {
	mu    sync.Mutex
	rows  map[string]*row
	bytes int
	// pending lists the held rows' keys, held counts their bytes.
	pending []string
	held    int
	// version counts the writes, for fill.
	version uint64
	// reads and hits count the lookups of the current window; admit says
	// whether the last window's hits earned new keys a row.
	reads, hits int
	admit       bool
	skipped     int
}

// row is one key's value; held says it is not yet written to Pebble, and
// deleted that the key is absent (a held tombstone).
type row struct {
	value         []byte
	held, deleted bool
}

const (
	// rowWindow is how many lookups the hit ratio is measured over.
	rowWindow = 4096
	// admitSample is one in how many new keys gets a row while reads
	// mostly miss.
	admitSample = 16
)

func newRowCache() rowCache { return rowCache{rows: make(map[string]*row), admit: true} }

func rowSize(key string, r *row) int { return len(key) + len(r.value) + rowOverhead }

// get returns a copy of the cached value of key (nil for a held
// tombstone), or on a miss the version to fill the cache at.
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
	if r.deleted {
		return nil, 0, true
	}
	return bytes.Clone(r.value), 0, true
}

// write holds a copy of value (or a tombstone, if deleted) as key's, and
// reports whether the held rows should now be written back.
func (c *rowCache) write(key, value []byte, deleted bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	r, ok := c.rows[string(key)]
	if !ok {
		r = &row{}
		c.rows[string(key)] = r
		c.bytes += len(key) + rowOverhead
	}
	if !r.held {
		r.held = true
		c.pending = append(c.pending, string(key))
		c.held += len(key) + rowOverhead
	}
	c.bytes += len(value) - len(r.value)
	c.held += len(value) - len(r.value)
	r.value = append(r.value[:0], value...)
	r.deleted = deleted
	c.trimLocked()
	return c.held > heldBytes
}

// written marks every held row written back, dropping the tombstones.
func (c *rowCache) written() {
	for _, k := range c.pending {
		r := c.rows[k]
		r.held = false
		if r.deleted {
			delete(c.rows, k)
			c.bytes -= rowSize(k, r)
		}
	}
	clear(c.pending)
	c.pending = c.pending[:0]
	c.held = 0
	c.trimLocked()
}

// fill caches a copy of value, read from Pebble for key after get
// returned version, unless a write came since.
func (c *rowCache) fill(key, value []byte, version uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.version != version {
		return
	}
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
	c.trimLocked()
}

// trimLocked drops written-back rows while the cache is over its budget.
func (c *rowCache) trimLocked() {
	if c.bytes <= rowCacheBytes {
		return
	}
	for k, r := range c.rows {
		if c.bytes <= rowCacheBytes*3/4 {
			break
		}
		if !r.held {
			delete(c.rows, k)
			c.bytes -= rowSize(k, r)
		}
	}
}

// removeAll forgets every row, after the held rows were written back and
// a range of keys was deleted from Pebble.
func (c *rowCache) removeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	clear(c.rows)
	c.bytes = 0
}
