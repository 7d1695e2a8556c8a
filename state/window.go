package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"strconv"
	"time"

	"github.com/riffle-stream/riffle/serde"
)

// WindowStore is a typed store of values per key and time window (Kafka
// Streams' WindowStore). Windows are named by their start; every window of
// a store has the store's size. Windows older than the store's retention,
// counted back from the latest window start written, are invisible and
// dropped segment by segment. Iterators yield a non-nil error at most once,
// as their last element.
type WindowStore[K, V any] interface {
	Store
	// Put stores value for key in the window starting at start. Without
	// RetainDuplicates it replaces the value there; with it, it adds one.
	// A window already expired is silently not written, as in Kafka.
	Put(key K, value V, start time.Time) error
	// Delete removes the value of key in the window starting at start. In a
	// store that retains duplicates it does nothing, as in Kafka.
	Delete(key K, start time.Time) error
	// Fetch returns the value of key in the window starting at start.
	Fetch(key K, start time.Time) (V, bool, error)
	// FetchRange iterates over the windows of key starting from from to to,
	// both inclusive, oldest first.
	FetchRange(key K, from, to time.Time) iter.Seq2[KeyValue[serde.Windowed[K], V], error]
	// FetchAll iterates over the windows of every key starting from from to
	// to, both inclusive: by segment, then by serialized key and start.
	FetchAll(from, to time.Time) iter.Seq2[KeyValue[serde.Windowed[K], V], error]
	// All iterates over every window of the store, in FetchAll's order.
	All() iter.Seq2[KeyValue[serde.Windowed[K], V], error]
}

// WindowSpec holds the parameters of a window store (those of Kafka
// Streams' Stores.persistentWindowStore).
type WindowSpec struct {
	// Size is the size of the windows, which sets the end of the windows
	// the store returns. It must be positive.
	Size time.Duration
	// Retention is how long windows are kept, counted back from the latest
	// window start written. It must be at least Size.
	Retention time.Duration
	// RetainDuplicates keeps every value put for a key and window, as
	// stream-stream joins need, instead of replacing it.
	RetainDuplicates bool
	// SegmentInterval is the width of a segment. Default: half the
	// retention, at least a minute (Kafka's default segment interval).
	SegmentInterval time.Duration
}

// ChangelogAdditionalRetention is added to a window or session store's
// retention to give its changelog topic's retention.ms (Kafka Streams'
// windowstore.changelog.additional.retention.ms default of one day).
const ChangelogAdditionalRetention = 24 * time.Hour

func segmentedConfig(name string, retention, interval time.Duration, suffix int, opts []Opt) Config {
	if interval <= 0 {
		interval = defaultSegmentInterval(retention)
	}
	cfg := Config{Name: name, Logging: true}
	for _, o := range opts {
		o(&cfg)
	}
	// Window and session stores are not cached: every write reaches the
	// changelog, so the write-back cache option does not apply.
	cfg.CacheMaxBytes = 0
	cfg.Segments = &Segments{Retention: retention, Interval: interval, suffix: suffix}
	logCfg := map[string]string{
		"cleanup.policy": "compact,delete",
		"retention.ms":   strconv.FormatInt((retention + ChangelogAdditionalRetention).Milliseconds(), 10),
	}
	for k, v := range cfg.LogConfig {
		logCfg[k] = v
	}
	cfg.LogConfig = logCfg
	return cfg
}

type windowBuilder[K, V any] struct {
	cfg    Config
	spec   WindowSpec
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// WindowBuilder returns a Builder for a WindowStore named name. Its
// changelog is compacted and deleted after the retention plus
// ChangelogAdditionalRetention (cleanup.policy=compact,delete, as in Kafka
// Streams); WithLogConfig overrides those configs. Window stores are not
// cached, so WithCacheMaxBytes has no effect on them.
func WindowBuilder[K, V any](name string, keys serde.Serde[K], values serde.Serde[V], spec WindowSpec, opts ...Opt) (Builder, error) {
	switch {
	case spec.Size <= 0:
		return nil, fmt.Errorf("window store %s: size %v must be positive", name, spec.Size)
	case spec.Retention < spec.Size:
		return nil, fmt.Errorf("window store %s: retention %v must not be smaller than the window size %v", name, spec.Retention, spec.Size)
	}
	cfg := segmentedConfig(name, spec.Retention, spec.SegmentInterval, windowSuffix, opts)
	return &windowBuilder[K, V]{cfg: cfg, spec: spec, keys: keys, values: values}, nil
}

func (b *windowBuilder[K, V]) Config() Config { return b.cfg }

// SerializeKey implements KeySerializer.
func (b *windowBuilder[K, V]) SerializeKey(topic string, key K) ([]byte, error) {
	return b.keys.Serialize(topic, key)
}

func (b *windowBuilder[K, V]) Build(raw RawStore, topic string) Store {
	return &windowStore[K, V]{windowedCodec: windowedCodec[K, V]{raw: raw, topic: topic, keys: b.keys, values: b.values},
		sizeMs: b.spec.Size.Milliseconds(), dups: b.spec.RetainDuplicates}
}

type windowStore[K, V any] struct {
	windowedCodec[K, V]
	sizeMs int64
	dups   bool
	seq    uint32
}

// windowKey returns Kafka's window store key: the serialized key, the
// window start and a sequence number.
func windowKey(kb []byte, startMs int64, seq uint32) []byte {
	out := make([]byte, len(kb), len(kb)+windowSuffix)
	copy(out, kb)
	out = binary.BigEndian.AppendUint64(out, uint64(startMs))
	return binary.BigEndian.AppendUint32(out, seq)
}

func (s *windowStore[K, V]) Put(key K, value V, start time.Time) error {
	kb, err := s.key(key)
	if err != nil {
		return err
	}
	vb, err := s.value(value)
	if err != nil {
		return err
	}
	var seq uint32
	if s.dups {
		s.seq++
		seq = s.seq
	}
	return s.raw.Put(windowKey(kb, start.UnixMilli(), seq), vb)
}

func (s *windowStore[K, V]) Delete(key K, start time.Time) error {
	if s.dups {
		return nil
	}
	kb, err := s.key(key)
	if err != nil {
		return err
	}
	return s.raw.Delete(windowKey(kb, start.UnixMilli(), 0))
}

func (s *windowStore[K, V]) Fetch(key K, start time.Time) (V, bool, error) {
	kb, err := s.key(key)
	if err != nil {
		var zero V
		return zero, false, err
	}
	return s.get(windowKey(kb, start.UnixMilli(), 0))
}

// scan yields the entries of raw between the byte bounds whose record key
// equals only (when only is not nil) and whose start lies in [fromMs, toMs].
func (s *windowStore[K, V]) scan(only, from, to []byte, fromMs, toMs int64) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return s.windowedCodec.scan(only, from, to, fromMs, toMs, func(k []byte) ([]byte, serde.Window, bool) {
		split := len(k) - windowSuffix
		kb, startMs := k[:split], int64(binary.BigEndian.Uint64(k[split:]))
		if startMs < fromMs || startMs > toMs {
			return nil, serde.Window{}, false
		}
		end := int64(math.MaxInt64)
		if startMs <= math.MaxInt64-s.sizeMs {
			end = startMs + s.sizeMs
		}
		return kb, serde.NewWindow(startMs, end), true
	})
}

func (s *windowStore[K, V]) FetchRange(key K, from, to time.Time) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	kb, err := s.key(key)
	if err != nil {
		return failWindowed[K, V](err)
	}
	fromMs, toMs := from.UnixMilli(), to.UnixMilli()
	upper := append(windowKey(kb, max(toMs, 0), math.MaxUint32), 0)
	return s.scan(kb, windowKey(kb, max(fromMs, 0), 0), upper, fromMs, toMs)
}

func (s *windowStore[K, V]) FetchAll(from, to time.Time) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return s.scan(nil, nil, nil, from.UnixMilli(), to.UnixMilli())
}

func (s *windowStore[K, V]) All() iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return s.scan(nil, nil, nil, math.MinInt64, math.MaxInt64)
}

// windowedCodec is what window and session stores share: the raw store,
// the changelog topic their serdes are called with, and the serdes of keys
// and values.
type windowedCodec[K, V any] struct {
	raw    RawStore
	topic  string
	keys   serde.Serde[K]
	values serde.Serde[V]
}

func (c *windowedCodec[K, V]) Name() string { return c.raw.Name() }

// key serializes the record key k.
func (c *windowedCodec[K, V]) key(k K) ([]byte, error) {
	kb, err := c.keys.Serialize(c.topic, k)
	if err != nil {
		return nil, fmt.Errorf("store %s: serialize key: %w", c.raw.Name(), err)
	}
	return kb, nil
}

// value serializes v, a nil result as empty bytes so that it is stored.
func (c *windowedCodec[K, V]) value(v V) ([]byte, error) {
	vb, err := c.values.Serialize(c.topic, v)
	if err != nil {
		return nil, fmt.Errorf("store %s: serialize value: %w", c.raw.Name(), err)
	}
	if vb == nil {
		vb = []byte{}
	}
	return vb, nil
}

// get returns the deserialized value stored under the raw key rawKey.
func (c *windowedCodec[K, V]) get(rawKey []byte) (V, bool, error) {
	var zero V
	vb, err := c.raw.Get(rawKey)
	if err != nil || vb == nil {
		return zero, false, err
	}
	v, err := c.values.Deserialize(c.topic, vb)
	if err != nil {
		return zero, false, fmt.Errorf("store %s: deserialize value: %w", c.raw.Name(), err)
	}
	return v, true, nil
}

// scan yields the decoded entries of raw between the byte bounds, in the
// segments of times first to last, whose raw key window accepts and whose
// record key equals only (when only is not nil). window splits a raw key
// into the serialized record key and its window, or reports false to skip
// the entry. A decoding or scanning error ends the iteration as its last
// element.
func (c *windowedCodec[K, V]) scan(only, from, to []byte, first, last int64,
	window func(rawKey []byte) ([]byte, serde.Window, bool)) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return func(yield func(KeyValue[serde.Windowed[K], V], error) bool) {
		var stopped bool
		var decodeErr error
		err := scanTime(c.raw, first, last, from, to, func(k, vb []byte) bool {
			kb, win, ok := window(k)
			if !ok || only != nil && !bytes.Equal(kb, only) {
				return true
			}
			key, err := c.keys.Deserialize(c.topic, kb)
			if err != nil {
				decodeErr = fmt.Errorf("store %s: deserialize key: %w", c.raw.Name(), err)
				return false
			}
			v, err := c.values.Deserialize(c.topic, vb)
			if err != nil {
				decodeErr = fmt.Errorf("store %s: deserialize value: %w", c.raw.Name(), err)
				return false
			}
			if !yield(KeyValue[serde.Windowed[K], V]{Key: serde.Windowed[K]{Key: key, Window: win}, Value: v}, nil) {
				stopped = true
				return false
			}
			return true
		})
		if err = errors.Join(err, decodeErr); err != nil && !stopped {
			yield(KeyValue[serde.Windowed[K], V]{}, err)
		}
	}
}

func failWindowed[K, V any](err error) iter.Seq2[KeyValue[serde.Windowed[K], V], error] {
	return func(yield func(KeyValue[serde.Windowed[K], V], error) bool) {
		yield(KeyValue[serde.Windowed[K], V]{}, err)
	}
}
