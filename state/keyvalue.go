package state

import (
	"fmt"
	"iter"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

// Config describes how the runtime builds a store.
type Config struct {
	// Name is the store's name, unique within a topology.
	Name string
	// InMemory selects the in-memory engine instead of Pebble.
	InMemory bool
	// Logging enables the changelog topic.
	Logging bool
	// LogConfig holds extra topic configs for the changelog topic.
	LogConfig map[string]string
	// CacheMaxBytes bounds the write-back cache; 0 disables caching.
	CacheMaxBytes int
	// Segments, set for window and session stores, cuts the store into
	// time segments; see WrapEngine.
	Segments *Segments
	// SourceTopic, when set, is the topic the store is restored from
	// instead of a changelog of its own: a table read from a topic uses
	// that topic as its changelog (Kafka Streams' source-topic
	// optimization), so Logging is off.
	SourceTopic string
	// SourceConverter, when set, converts each value read from SourceTopic
	// during a restore to the store's layout (TimestampedRestore for a
	// timestamped store); nil stores the values as they are.
	SourceConverter func(value []byte, timestamp time.Time) []byte
}

// Builder describes a store and turns the engine the runtime opens for it
// into the typed store processors use (Kafka Streams' StoreBuilder). Build
// gets the name of the store's changelog topic (or source topic), which the
// store passes to its serdes, so that formats with a schema per topic (a
// schema registry's subject) see the topic the bytes are written to.
type Builder interface {
	Config() Config
	Build(raw RawStore, topic string) Store
}

// KeySerializer is implemented by the Builders of this package:
// SerializeKey serializes a record key as the store built for topic (the
// topic given to Build) does. Interactive queries use it to find the
// partition holding a key.
type KeySerializer[K any] interface {
	SerializeKey(topic string, key K) ([]byte, error)
}

// Opt configures a store Builder.
type Opt func(*Config)

// InMemory keeps the store in memory instead of Pebble. Default: Pebble
// (Kafka Streams' Stores.persistentKeyValueStore versus inMemoryKeyValueStore).
func InMemory() Opt { return func(c *Config) { c.InMemory = true } }

// WithoutLogging disables the store's changelog topic; its contents are then
// lost with the local state. Default: logging enabled (Kafka Streams'
// StoreBuilder.withLoggingDisabled).
func WithoutLogging() Opt { return func(c *Config) { c.Logging = false } }

// WithLogConfig adds topic configs to the changelog topic, on top of
// cleanup.policy=compact. Default: none (Kafka Streams'
// StoreBuilder.withLoggingEnabled(config)).
func WithLogConfig(cfg map[string]string) Opt {
	return func(c *Config) { c.LogConfig = cfg }
}

// DefaultCacheMaxBytes is the default write-back cache size of a store,
// Kafka Streams' statestore.cache.max.bytes default of 10 MiB.
const DefaultCacheMaxBytes = 10 << 20

// WithCacheMaxBytes sets the store's write-back cache size; 0 disables
// caching so every write reaches the changelog. Default: DefaultCacheMaxBytes
// (Kafka Streams' statestore.cache.max.bytes, here per store).
func WithCacheMaxBytes(n int) Opt { return func(c *Config) { c.CacheMaxBytes = n } }

type kvBuilder[K, V any] struct {
	cfg    Config
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// KeyValueBuilder returns a Builder for a KeyValueStore named name whose
// keys and values are serialized with keys and values.
func KeyValueBuilder[K, V any](name string, keys serde.Serde[K], values serde.Serde[V], opts ...Opt) Builder {
	cfg := Config{Name: name, Logging: true, CacheMaxBytes: DefaultCacheMaxBytes}
	for _, o := range opts {
		o(&cfg)
	}
	return &kvBuilder[K, V]{cfg: cfg, keys: keys, values: values}
}

func (b *kvBuilder[K, V]) Config() Config { return b.cfg }

// SerializeKey implements KeySerializer.
func (b *kvBuilder[K, V]) SerializeKey(topic string, key K) ([]byte, error) {
	return b.keys.Serialize(topic, key)
}

func (b *kvBuilder[K, V]) Build(raw RawStore, topic string) Store {
	return NewKeyValueStore(raw, topic, b.keys, b.values)
}

type kvStore[K, V any] struct {
	raw    RawStore
	topic  string
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// NewKeyValueStore returns a typed view of raw whose serdes are told topic,
// the store's changelog topic.
func NewKeyValueStore[K, V any](raw RawStore, topic string, keys serde.Serde[K], values serde.Serde[V]) KeyValueStore[K, V] {
	return &kvStore[K, V]{raw: raw, topic: topic, keys: keys, values: values}
}

func (s *kvStore[K, V]) Name() string { return s.raw.Name() }

func (s *kvStore[K, V]) key(k K) ([]byte, error) {
	b, err := s.keys.Serialize(s.topic, k)
	if err != nil {
		return nil, fmt.Errorf("store %s: serialize key: %w", s.raw.Name(), err)
	}
	return b, nil
}

func (s *kvStore[K, V]) value(b []byte) (V, error) {
	v, err := s.values.Deserialize(s.topic, b)
	if err != nil {
		return v, fmt.Errorf("store %s: deserialize value: %w", s.raw.Name(), err)
	}
	return v, nil
}

func (s *kvStore[K, V]) Get(key K) (V, bool, error) {
	var zero V
	kb, err := s.key(key)
	if err != nil {
		return zero, false, err
	}
	vb, err := s.raw.Get(kb)
	if err != nil || vb == nil {
		return zero, false, err
	}
	v, err := s.value(vb)
	return v, err == nil, err
}

func (s *kvStore[K, V]) Put(key K, value V) error {
	kb, err := s.key(key)
	if err != nil {
		return err
	}
	vb, err := s.values.Serialize(s.topic, value)
	if err != nil {
		return fmt.Errorf("store %s: serialize value: %w", s.raw.Name(), err)
	}
	if vb == nil {
		vb = []byte{}
	}
	return s.raw.Put(kb, vb)
}

func (s *kvStore[K, V]) PutIfAbsent(key K, value V) (V, bool, error) {
	old, ok, err := s.Get(key)
	if err != nil || ok {
		return old, ok, err
	}
	return old, false, s.Put(key, value)
}

func (s *kvStore[K, V]) Delete(key K) (V, bool, error) {
	old, ok, err := s.Get(key)
	if err != nil || !ok {
		return old, ok, err
	}
	kb, err := s.key(key)
	if err != nil {
		return old, ok, err
	}
	return old, ok, s.raw.Delete(kb)
}

func (s *kvStore[K, V]) scan(from, to []byte) iter.Seq2[KeyValue[K, V], error] {
	return func(yield func(KeyValue[K, V], error) bool) {
		var stopped bool
		var decodeErr error
		err := s.raw.Scan(from, to, func(kb, vb []byte) bool {
			k, err := s.keys.Deserialize(s.topic, kb)
			if err != nil {
				decodeErr = fmt.Errorf("store %s: deserialize key: %w", s.raw.Name(), err)
				return false
			}
			v, err := s.value(vb)
			if err != nil {
				decodeErr = err
				return false
			}
			if !yield(KeyValue[K, V]{Key: k, Value: v}, nil) {
				stopped = true
				return false
			}
			return true
		})
		if err == nil {
			err = decodeErr
		}
		if err != nil && !stopped {
			yield(KeyValue[K, V]{}, err)
		}
	}
}

func (s *kvStore[K, V]) fail(err error) iter.Seq2[KeyValue[K, V], error] {
	return func(yield func(KeyValue[K, V], error) bool) { yield(KeyValue[K, V]{}, err) }
}

func (s *kvStore[K, V]) Range(from, to K) iter.Seq2[KeyValue[K, V], error] {
	fb, err := s.key(from)
	if err != nil {
		return s.fail(err)
	}
	tb, err := s.key(to)
	if err != nil {
		return s.fail(err)
	}
	return s.scan(fb, append(tb, 0))
}

func (s *kvStore[K, V]) PrefixScan(prefix K) iter.Seq2[KeyValue[K, V], error] {
	pb, err := s.key(prefix)
	if err != nil {
		return s.fail(err)
	}
	end := prefixEnd(pb)
	if end == nil {
		return s.scan(pb, nil)
	}
	return s.scan(pb, end)
}

func (s *kvStore[K, V]) All() iter.Seq2[KeyValue[K, V], error] { return s.scan(nil, nil) }

func (s *kvStore[K, V]) ApproximateNumEntries() (int64, error) {
	return s.raw.ApproximateNumEntries()
}
