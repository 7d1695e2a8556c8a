package state

import (
	"bytes"
	"slices"
)

// MemoryStore is an in-memory RawStore (Kafka Streams' in-memory key-value
// store). Its contents live only as long as the process; with logging
// enabled it is rebuilt from the changelog on assignment.
type MemoryStore struct {
	name   string
	m      map[string][]byte
	sorted []string // keys in order; nil when stale
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore(name string) *MemoryStore {
	return &MemoryStore{name: name, m: make(map[string][]byte)}
}

// Name implements RawStore.
func (s *MemoryStore) Name() string { return s.name }

// Get implements RawStore.
func (s *MemoryStore) Get(key []byte) ([]byte, error) { return bytes.Clone(s.m[string(key)]), nil }

// Put implements RawStore.
func (s *MemoryStore) Put(key, value []byte) error {
	k := string(key)
	if _, ok := s.m[k]; !ok {
		s.sorted = nil
	}
	s.m[k] = bytes.Clone(value)
	return nil
}

// Delete implements RawStore.
func (s *MemoryStore) Delete(key []byte) error {
	k := string(key)
	if _, ok := s.m[k]; ok {
		delete(s.m, k)
		s.sorted = nil
	}
	return nil
}

// Scan implements RawStore.
func (s *MemoryStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	if s.sorted == nil {
		s.sorted = make([]string, 0, len(s.m))
		for k := range s.m {
			s.sorted = append(s.sorted, k)
		}
		slices.Sort(s.sorted)
	}
	i, _ := slices.BinarySearch(s.sorted, string(from))
	for _, k := range s.sorted[i:] {
		if to != nil && k >= string(to) {
			break
		}
		v, ok := s.m[k]
		if !ok {
			continue
		}
		if !yield([]byte(k), bytes.Clone(v)) {
			break
		}
	}
	return nil
}

// ApproximateNumEntries implements RawStore; the count is exact.
func (s *MemoryStore) ApproximateNumEntries() (int64, error) { return int64(len(s.m)), nil }

// Flush implements RawStore; it has nothing to do.
func (s *MemoryStore) Flush() error { return nil }
