package state

import (
	"iter"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

// NoTimestamp is the timestamp of a value written without one (Kafka's
// ConsumerRecord.NO_TIMESTAMP, -1 ms): a plain Put on a
// TimestampedKeyValueStore stores it.
var NoTimestamp = time.UnixMilli(-1).UTC()

// TimestampedKeyValueStore is a KeyValueStore that keeps with every value
// the timestamp of the record that produced it (Kafka Streams'
// TimestampedKeyValueStore). Its KeyValueStore methods see the values
// alone, so code written for a KeyValueStore[K, V] (a processor, an
// interactive query) reads it unchanged; Put stores NoTimestamp. Its engine
// and changelog hold ValueAndTimestampSerde's layout, that of Kafka Streams'
// timestamped key-value stores.
type TimestampedKeyValueStore[K, V any] interface {
	KeyValueStore[K, V]
	// GetWithTimestamp returns the value and timestamp stored under key and
	// whether there were any.
	GetWithTimestamp(key K) (ValueAndTimestamp[V], bool, error)
	// PutWithTimestamp stores v under key.
	PutWithTimestamp(key K, v ValueAndTimestamp[V]) error
}

// TimestampedKeyValueBuilder returns a Builder for a
// TimestampedKeyValueStore named name whose keys are serialized with keys
// and values with ValueAndTimestampSerde(values).
func TimestampedKeyValueBuilder[K, V any](name string, keys serde.Serde[K], values serde.Serde[V], opts ...Opt) Builder {
	return &tsKVBuilder[K, V]{kvBuilder: KeyValueBuilder(name, keys, ValueAndTimestampSerde(values), opts...).(*kvBuilder[K, ValueAndTimestamp[V]])}
}

type tsKVBuilder[K, V any] struct {
	*kvBuilder[K, ValueAndTimestamp[V]]
}

func (b *tsKVBuilder[K, V]) Build(raw RawStore, topic string) Store {
	return &tsKVStore[K, V]{inner: NewKeyValueStore(raw, topic, b.keys, b.values)}
}

// TimestampedRestore converts a record of a table's source topic, which
// holds plain values, to the layout of a timestamped store, stamping the
// value with the record's timestamp (Kafka Streams' conversion when it
// restores a timestamped store from a source topic). A nil value, a
// delete, stays nil.
func TimestampedRestore(value []byte, timestamp time.Time) []byte {
	if value == nil {
		return nil
	}
	out := make([]byte, timestampSize, timestampSize+len(value))
	putTimestamp(out, timestamp)
	return append(out, value...)
}

// WithTimestamps returns the view of a TimestampedKeyValueStore of this
// package whose values carry their timestamps (what Kafka Streams'
// timestampedKeyValueStore query type reads), or false for another store.
func WithTimestamps[K, V any](s KeyValueStore[K, V]) (KeyValueStore[K, ValueAndTimestamp[V]], bool) {
	ts, ok := s.(*tsKVStore[K, V])
	if !ok {
		return nil, false
	}
	return ts.inner, true
}

type tsKVStore[K, V any] struct {
	inner KeyValueStore[K, ValueAndTimestamp[V]]
}

func (s *tsKVStore[K, V]) Name() string { return s.inner.Name() }

func (s *tsKVStore[K, V]) GetWithTimestamp(key K) (ValueAndTimestamp[V], bool, error) {
	return s.inner.Get(key)
}

func (s *tsKVStore[K, V]) PutWithTimestamp(key K, v ValueAndTimestamp[V]) error {
	return s.inner.Put(key, v)
}

func (s *tsKVStore[K, V]) Get(key K) (V, bool, error) {
	v, ok, err := s.inner.Get(key)
	return v.Value, ok, err
}

func (s *tsKVStore[K, V]) Put(key K, value V) error {
	return s.inner.Put(key, ValueAndTimestamp[V]{Value: value, Timestamp: NoTimestamp})
}

func (s *tsKVStore[K, V]) PutIfAbsent(key K, value V) (V, bool, error) {
	old, ok, err := s.inner.PutIfAbsent(key, ValueAndTimestamp[V]{Value: value, Timestamp: NoTimestamp})
	return old.Value, ok, err
}

func (s *tsKVStore[K, V]) Delete(key K) (V, bool, error) {
	old, ok, err := s.inner.Delete(key)
	return old.Value, ok, err
}

// values strips the timestamps off the entries of seq.
func values[K, V any](seq iter.Seq2[KeyValue[K, ValueAndTimestamp[V]], error]) iter.Seq2[KeyValue[K, V], error] {
	return func(yield func(KeyValue[K, V], error) bool) {
		for kv, err := range seq {
			if !yield(KeyValue[K, V]{Key: kv.Key, Value: kv.Value.Value}, err) {
				return
			}
		}
	}
}

func (s *tsKVStore[K, V]) Range(from, to K) iter.Seq2[KeyValue[K, V], error] {
	return values(s.inner.Range(from, to))
}

func (s *tsKVStore[K, V]) PrefixScan(prefix K) iter.Seq2[KeyValue[K, V], error] {
	return values(s.inner.PrefixScan(prefix))
}

func (s *tsKVStore[K, V]) All() iter.Seq2[KeyValue[K, V], error] { return values(s.inner.All()) }

func (s *tsKVStore[K, V]) ApproximateNumEntries() (int64, error) {
	return s.inner.ApproximateNumEntries()
}
