package state

import (
	"bytes"
	"slices"
	"sync"
)

// MemoryStore is an in-memory RawStore (Kafka Streams' in-memory key-value
// store). Its contents live only as long as the process; with logging
// enabled it is rebuilt from the changelog on assignment.
//
// Unlike other RawStores it is safe for concurrent use, so that
// interactive queries can read it while its task writes. A Scan goes over
// the keys present when it starts, in order, and reads each value as it
// reaches it: a key deleted meanwhile is skipped, one added meanwhile is
// not seen (as Kafka's InMemoryKeyValueStore iterates a copy of its key
// set).
type MemoryStore struct {
	name string

	mu sync.RWMutex
	m  map[string][]byte
	// sorted holds the keys in order; nil when stale. A slice once built
	// is never changed, only replaced, so scans keep reading it unlocked.
	sorted []string
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore(name string) *MemoryStore {
	return &MemoryStore{name: name, m: make(map[string][]byte)}
}

// Name implements RawStore.
func (s *MemoryStore) Name() string { return s.name }

// Get implements RawStore.
func (s *MemoryStore) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return bytes.Clone(s.m[string(key)]), nil
}

// Put implements RawStore.
func (s *MemoryStore) Put(key, value []byte) error {
	k, v := string(key), bytes.Clone(value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok {
		s.sorted = nil
	}
	s.m[k] = v
	return nil
}

// Delete implements RawStore.
func (s *MemoryStore) Delete(key []byte) error {
	k := string(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; ok {
		delete(s.m, k)
		s.sorted = nil
	}
	return nil
}

// keys returns the keys in order, sorting them if they changed.
func (s *MemoryStore) keys() []string {
	s.mu.RLock()
	sorted := s.sorted
	s.mu.RUnlock()
	if sorted != nil {
		return sorted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sorted == nil {
		s.sorted = make([]string, 0, len(s.m))
		for k := range s.m {
			s.sorted = append(s.sorted, k)
		}
		slices.Sort(s.sorted)
	}
	return s.sorted
}

// value returns a copy of the value of k and whether k is present.
func (s *MemoryStore) value(k string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.m[k]
	return bytes.Clone(v), ok
}

// Scan implements RawStore. It holds no lock while yield runs, so yield
// may write to the store.
func (s *MemoryStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	keys := s.keys()
	i, _ := slices.BinarySearch(keys, string(from))
	for _, k := range keys[i:] {
		if to != nil && k >= string(to) {
			break
		}
		v, ok := s.value(k)
		if !ok {
			continue
		}
		if !yield([]byte(k), v) {
			break
		}
	}
	return nil
}

// ApproximateNumEntries implements RawStore; the count is exact.
func (s *MemoryStore) ApproximateNumEntries() (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(len(s.m)), nil
}

// Flush implements RawStore; it has nothing to do.
func (s *MemoryStore) Flush() error { return nil }

func (s *MemoryStore) deleteRange(from, to []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if k >= string(from) && k < string(to) {
			delete(s.m, k)
			s.sorted = nil
		}
	}
	return nil
}
