package state

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
)

// PebbleDB is one Pebble instance holding every persistent store of a task.
// Each store's keys live under their own prefix.
type PebbleDB struct {
	db *pebble.DB
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
	return &PebbleDB{db: db}, nil
}

// Store returns the RawStore named name inside the instance.
func (p *PebbleDB) Store(name string) RawStore {
	prefix := append([]byte{byte(len(name))}, name...)
	return &pebbleStore{db: p.db, name: name, prefix: prefix}
}

// Close closes the instance.
func (p *PebbleDB) Close() error {
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("close pebble: %w", err)
	}
	return nil
}

type pebbleStore struct {
	db     *pebble.DB
	name   string
	prefix []byte
}

func (s *pebbleStore) key(k []byte) []byte {
	out := make([]byte, 0, len(s.prefix)+len(k))
	return append(append(out, s.prefix...), k...)
}

func (s *pebbleStore) Name() string { return s.name }

func (s *pebbleStore) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(s.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pebble get in store %s: %w", s.name, err)
	}
	out := make([]byte, len(v))
	copy(out, v)
	return out, closer.Close()
}

func (s *pebbleStore) Put(key, value []byte) error {
	if err := s.db.Set(s.key(key), value, pebble.NoSync); err != nil {
		return fmt.Errorf("pebble put in store %s: %w", s.name, err)
	}
	return nil
}

func (s *pebbleStore) Delete(key []byte) error {
	if err := s.db.Delete(s.key(key), pebble.NoSync); err != nil {
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
