package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

// VersionedRecord is one version of a key in a VersionedKeyValueStore:
// its value and the timestamp from which it is valid (Kafka Streams'
// VersionedRecord).
type VersionedRecord[V any] struct {
	Value     V
	Timestamp time.Time
}

// VersionedKeyValueStore keeps, per key, the versions of its value over
// time (Kafka Streams' VersionedKeyValueStore, KIP-889). A version written
// at timestamp t is valid from t until the next later version of its key;
// a delete is a version without a value. Versions stay readable for the
// history retention, counted back from the store's observed stream time
// (the largest timestamp written); older ones are dropped, except each
// key's latest.
type VersionedKeyValueStore[K, V any] interface {
	Store
	// Put writes value as the version of key from ts on and reports
	// whether it was written: a write older than the history retention is
	// dropped, as in Kafka.
	Put(key K, value V, ts time.Time) (bool, error)
	// Delete writes a delete of key from ts on and reports whether it was
	// written: like Put, it is dropped when older than the history
	// retention.
	Delete(key K, ts time.Time) (bool, error)
	// Get returns the latest version of key, unless it is a delete.
	Get(key K) (VersionedRecord[V], bool, error)
	// GetAsOf returns the version of key valid at asOf: the latest written
	// at or before asOf, unless it is a delete or asOf is older than the
	// history retention.
	GetAsOf(key K, asOf time.Time) (VersionedRecord[V], bool, error)
}

// VersionedKeyValueBuilder returns a Builder for a VersionedKeyValueStore
// named name keeping history for historyRetention (Kafka Streams'
// Stores.persistentVersionedKeyValueStore). Each version is an entry of
// its own in the engine and the changelog: the key's length (4 bytes), the
// key and the version's timestamp (8 bytes), then a byte marking a delete
// and the value. This layout is Riffle's, not that of Kafka's versioned
// store changelogs (which carry the version's timestamp as the record's).
func VersionedKeyValueBuilder[K, V any](name string, keys serde.Serde[K], values serde.Serde[V], historyRetention time.Duration, opts ...Opt) (Builder, error) {
	if historyRetention < 0 {
		return nil, fmt.Errorf("versioned store %s: negative history retention %v", name, historyRetention)
	}
	cfg := Config{Name: name, Logging: true}
	for _, o := range opts {
		o(&cfg)
	}
	return &versionedBuilder[K, V]{cfg: cfg, keys: keys, values: values, retention: historyRetention.Milliseconds()}, nil
}

type versionedBuilder[K, V any] struct {
	cfg       Config
	keys      serde.Serde[K]
	values    serde.Serde[V]
	retention int64
}

func (b *versionedBuilder[K, V]) Config() Config { return b.cfg }

// SerializeKey implements KeySerializer.
func (b *versionedBuilder[K, V]) SerializeKey(topic string, key K) ([]byte, error) {
	return b.keys.Serialize(topic, key)
}

func (b *versionedBuilder[K, V]) Build(raw RawStore, topic string) Store {
	return &versionedStore[K, V]{raw: raw, topic: topic, keys: b.keys, values: b.values, retention: b.retention, observed: math.MinInt64}
}

// observedKey holds the store's observed stream time: its length prefix
// is longer than any key can be.
var observedKey = []byte{0xff, 0xff, 0xff, 0xff}

// nothingObserved is the observed stream time of a store never written:
// far enough from math.MinInt64 that subtracting a retention cannot wrap.
const nothingObserved = math.MinInt64 / 2

const (
	versionValue  = 0
	versionDelete = 1
)

type versionedStore[K, V any] struct {
	raw       RawStore
	topic     string
	keys      serde.Serde[K]
	values    serde.Serde[V]
	retention int64
	// observed caches the observed stream time; math.MinInt64 until read.
	observed int64
}

func (s *versionedStore[K, V]) Name() string { return s.raw.Name() }

// prefix is the engine-key prefix of key's versions.
func (s *versionedStore[K, V]) prefix(key K) ([]byte, error) {
	kb, err := s.keys.Serialize(s.topic, key)
	if err != nil {
		return nil, fmt.Errorf("store %s: serialize key: %w", s.raw.Name(), err)
	}
	if uint64(len(kb)) >= math.MaxUint32 {
		return nil, fmt.Errorf("store %s: key of %d bytes", s.raw.Name(), len(kb))
	}
	p := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(kb)+8), uint32(len(kb)))
	return append(p, kb...), nil
}

func (s *versionedStore[K, V]) observedTime() (int64, error) {
	if s.observed != math.MinInt64 {
		return s.observed, nil
	}
	b, err := s.raw.Get(observedKey)
	if err != nil {
		return 0, err
	}
	s.observed = nothingObserved
	if len(b) == 8 {
		s.observed = int64(binary.BigEndian.Uint64(b))
	}
	return s.observed, nil
}

// version is one stored version of a key.
type version struct {
	ts      int64
	deleted bool
	value   []byte
}

// versions returns the versions of the key with prefix p, oldest first.
func (s *versionedStore[K, V]) versions(p []byte) ([]version, error) {
	var out []version
	var bad error
	err := s.raw.Scan(p, prefixEnd(p), func(k, v []byte) bool {
		if len(k) != len(p)+8 || len(v) == 0 {
			bad = fmt.Errorf("store %s: corrupt version entry %x", s.raw.Name(), k)
			return false
		}
		out = append(out, version{ts: int64(binary.BigEndian.Uint64(k[len(p):])), deleted: v[0] == versionDelete, value: v[1:]})
		return true
	})
	return out, errors.Join(err, bad)
}

func (s *versionedStore[K, V]) record(v version) (VersionedRecord[V], bool, error) {
	if v.deleted {
		return VersionedRecord[V]{}, false, nil
	}
	val, err := s.values.Deserialize(s.topic, v.value)
	if err != nil {
		return VersionedRecord[V]{}, false, fmt.Errorf("store %s: deserialize value: %w", s.raw.Name(), err)
	}
	return VersionedRecord[V]{Value: val, Timestamp: time.UnixMilli(v.ts).UTC()}, true, nil
}

func (s *versionedStore[K, V]) Get(key K) (VersionedRecord[V], bool, error) {
	p, err := s.prefix(key)
	if err != nil {
		return VersionedRecord[V]{}, false, err
	}
	vs, err := s.versions(p)
	if err != nil || len(vs) == 0 {
		return VersionedRecord[V]{}, false, err
	}
	return s.record(vs[len(vs)-1])
}

func (s *versionedStore[K, V]) GetAsOf(key K, asOf time.Time) (VersionedRecord[V], bool, error) {
	observed, err := s.observedTime()
	if err != nil {
		return VersionedRecord[V]{}, false, err
	}
	at := asOf.UnixMilli()
	if at < observed-s.retention {
		return VersionedRecord[V]{}, false, nil
	}
	p, err := s.prefix(key)
	if err != nil {
		return VersionedRecord[V]{}, false, err
	}
	vs, err := s.versions(p)
	if err != nil {
		return VersionedRecord[V]{}, false, err
	}
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].ts <= at {
			return s.record(vs[i])
		}
	}
	return VersionedRecord[V]{}, false, nil
}

func (s *versionedStore[K, V]) Put(key K, value V, ts time.Time) (bool, error) {
	vb, err := s.values.Serialize(s.topic, value)
	if err != nil {
		return false, fmt.Errorf("store %s: serialize value: %w", s.raw.Name(), err)
	}
	return s.write(key, ts, append([]byte{versionValue}, vb...))
}

func (s *versionedStore[K, V]) Delete(key K, ts time.Time) (bool, error) {
	return s.write(key, ts, []byte{versionDelete})
}

// write stores entry as key's version at ts, advances the observed stream
// time and drops the versions of key that have left the history. It
// reports whether it wrote.
func (s *versionedStore[K, V]) write(key K, ts time.Time, entry []byte) (bool, error) {
	observed, err := s.observedTime()
	if err != nil {
		return false, err
	}
	at := ts.UnixMilli()
	if at < observed-s.retention {
		return false, nil
	}
	p, err := s.prefix(key)
	if err != nil {
		return false, err
	}
	if err := s.raw.Put(binary.BigEndian.AppendUint64(p, uint64(at)), entry); err != nil {
		return false, err
	}
	if at > observed {
		observed = at
		if err := s.raw.Put(observedKey, binary.BigEndian.AppendUint64(nil, uint64(at))); err != nil {
			return false, err
		}
		s.observed = at
	}
	// A version has left the history once the next version, which ends
	// its validity, is no later than the oldest time still readable; the
	// latest version never leaves.
	vs, err := s.versions(p)
	if err != nil {
		return false, err
	}
	for i := 0; i+1 < len(vs) && vs[i+1].ts <= observed-s.retention; i++ {
		if err := s.raw.Delete(binary.BigEndian.AppendUint64(p, uint64(vs[i].ts))); err != nil {
			return false, err
		}
	}
	return true, nil
}
