package state

import (
	"bytes"
	"slices"
)

// ChangeLogger receives every write that reaches a logged store. A nil
// value is a deletion (a tombstone in the compacted changelog).
type ChangeLogger interface {
	Log(key, value []byte)
}

// ChangeLoggerFunc adapts a function to ChangeLogger.
type ChangeLoggerFunc func(key, value []byte)

// Log implements ChangeLogger.
func (f ChangeLoggerFunc) Log(key, value []byte) { f(key, value) }

type loggedStore struct {
	RawStore
	log ChangeLogger
}

// NewLoggedStore returns a RawStore that writes to inner and sends every
// put and delete to log.
func NewLoggedStore(inner RawStore, log ChangeLogger) RawStore {
	return &loggedStore{RawStore: inner, log: log}
}

func (s *loggedStore) Put(key, value []byte) error {
	if err := s.RawStore.Put(key, value); err != nil {
		return err
	}
	s.log.Log(key, value)
	return nil
}

func (s *loggedStore) Delete(key []byte) error {
	if err := s.RawStore.Delete(key); err != nil {
		return err
	}
	s.log.Log(key, nil)
	return nil
}

type cacheEntry struct {
	value   []byte
	deleted bool
}

// CachingStore is a write-back cache over a RawStore: writes stay in memory
// until Flush, or until the cache holds more than its byte limit, so a key
// updated many times between commits reaches the layers below (and the
// changelog) once. Kafka Streams calls this the record cache.
type CachingStore struct {
	inner    RawStore
	maxBytes int
	size     int
	dirty    map[string]cacheEntry
}

// NewCachingStore returns a CachingStore over inner that flushes when its
// dirty entries exceed maxBytes.
func NewCachingStore(inner RawStore, maxBytes int) *CachingStore {
	return &CachingStore{inner: inner, maxBytes: maxBytes, dirty: make(map[string]cacheEntry)}
}

// Name implements RawStore.
func (c *CachingStore) Name() string { return c.inner.Name() }

// Get implements RawStore.
func (c *CachingStore) Get(key []byte) ([]byte, error) {
	if e, ok := c.dirty[string(key)]; ok {
		return bytes.Clone(e.value), nil
	}
	return c.inner.Get(key)
}

func (c *CachingStore) set(key []byte, e cacheEntry) error {
	k := string(key)
	if old, ok := c.dirty[k]; ok {
		c.size -= len(k) + len(old.value)
	}
	c.dirty[k] = e
	c.size += len(k) + len(e.value)
	if c.size > c.maxBytes {
		return c.evict()
	}
	return nil
}

// Put implements RawStore.
func (c *CachingStore) Put(key, value []byte) error {
	return c.set(key, cacheEntry{value: bytes.Clone(value)})
}

// Delete implements RawStore.
func (c *CachingStore) Delete(key []byte) error { return c.set(key, cacheEntry{deleted: true}) }

// evict writes every dirty entry to the store below, in key order.
func (c *CachingStore) evict() error {
	keys := make([]string, 0, len(c.dirty))
	for k := range c.dirty {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e := c.dirty[k]
		var err error
		if e.deleted {
			err = c.inner.Delete([]byte(k))
		} else {
			err = c.inner.Put([]byte(k), e.value)
		}
		if err != nil {
			return err
		}
		delete(c.dirty, k)
	}
	c.size = 0
	return nil
}

// Scan implements RawStore. It first writes the dirty entries down so the
// store below sees a complete picture.
func (c *CachingStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	if err := c.evict(); err != nil {
		return err
	}
	return c.inner.Scan(from, to, yield)
}

// ApproximateNumEntries implements RawStore.
func (c *CachingStore) ApproximateNumEntries() (int64, error) {
	n, err := c.inner.ApproximateNumEntries()
	return n + int64(len(c.dirty)), err
}

// Flush implements RawStore: it writes the dirty entries down, then flushes
// the store below.
func (c *CachingStore) Flush() error {
	if err := c.evict(); err != nil {
		return err
	}
	return c.inner.Flush()
}
