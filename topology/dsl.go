package topology

import (
	"fmt"
	"regexp"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// Option adjusts one DSL operation.
type Option func(*options)

type options struct {
	name       string
	keySerde   any
	valueSerde any
	storeName  string
	storeOpts  []state.Opt
	stores     []string
}

func collect(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Named names the node an operation creates. Default: a generated name
// such as "KSTREAM-FILTER-0000000003" (Kafka Streams' Named.as).
func Named(name string) Option { return func(o *options) { o.name = name } }

// WithKeySerde sets the key serde of an operation's output (a source, a
// sink, a repartition topic or a store). Default: the serde of the input
// stream when the key type is unchanged, else serde.Default[K]() (Kafka
// Streams' Consumed/Produced/Grouped/Materialized.withKeySerde).
func WithKeySerde[K any](s serde.Serde[K]) Option { return func(o *options) { o.keySerde = s } }

// WithValueSerde sets the value serde of an operation's output, as
// WithKeySerde does for keys.
func WithValueSerde[V any](s serde.Serde[V]) Option { return func(o *options) { o.valueSerde = s } }

// Materialized names the store an aggregation writes to and configures it.
// Default: a generated name such as "KSTREAM-AGGREGATE-STATE-STORE-0000000004"
// and a logged, cached Pebble store (Kafka Streams' Materialized.as).
func Materialized(store string, opts ...state.Opt) Option {
	return func(o *options) { o.storeName, o.storeOpts = store, opts }
}

// WithStores connects already added stores to the processor Process or
// ProcessValues creates (Kafka Streams' process(supplier, stateStoreNames)).
func WithStores(names ...string) Option {
	return func(o *options) { o.stores = append(o.stores, names...) }
}

// KeyValue is a key and value pair, returned by FlatMap functions.
type KeyValue[K, V any] = state.KeyValue[K, V]

func pick[T any](b *Builder, o any, fallback serde.Serde[T]) serde.Serde[T] {
	if o == nil {
		return fallback
	}
	s, ok := o.(serde.Serde[T])
	if !ok {
		b.fail(fmt.Errorf("serde %T does not handle %v", o, typeOf[T]()))
		return fallback
	}
	return s
}

func (o options) nodeName(b *Builder, prefix string) string {
	if o.name != "" {
		return o.name
	}
	return b.newName(prefix)
}

// Stream is an unbounded stream of records with keys K and values V (Kafka
// Streams' KStream). Operations that keep the types are methods; those that
// change them are functions, since Go methods cannot have type parameters.
type Stream[K, V any] struct {
	b      *Builder
	node   string
	keys   serde.Serde[K]
	values serde.Serde[V]
	// keyChanged records that an upstream operation may have changed keys,
	// so grouping must repartition.
	keyChanged bool
}

// FromTopics returns the stream of records in topics.
func FromTopics[K, V any](b *Builder, topics []string, opts ...Option) Stream[K, V] {
	o := collect(opts)
	s := Stream[K, V]{b: b, node: o.nodeName(b, "KSTREAM-SOURCE"),
		keys: pick(b, o.keySerde, serde.Default[K]()), values: pick(b, o.valueSerde, serde.Default[V]())}
	AddSource(b, s.node, s.keys, s.values, topics...)
	return s
}

// FromPattern returns the stream of records in every topic matching pattern.
func FromPattern[K, V any](b *Builder, pattern *regexp.Regexp, opts ...Option) Stream[K, V] {
	o := collect(opts)
	s := Stream[K, V]{b: b, node: o.nodeName(b, "KSTREAM-SOURCE"),
		keys: pick(b, o.keySerde, serde.Default[K]()), values: pick(b, o.valueSerde, serde.Default[V]())}
	AddSourcePattern(b, s.node, s.keys, s.values, pattern)
	return s
}

// Name returns the name of the node producing the stream.
func (s Stream[K, V]) Name() string { return s.node }

// funcProcessor runs fn for each record, with the context from Init.
type funcProcessor[KIn, VIn, KOut, VOut any] struct {
	ctx processor.Context[KOut, VOut]
	fn  func(processor.Context[KOut, VOut], processor.Record[KIn, VIn]) error
}

func (p *funcProcessor[KIn, VIn, KOut, VOut]) Init(ctx processor.Context[KOut, VOut]) error {
	p.ctx = ctx
	return nil
}

func (p *funcProcessor[KIn, VIn, KOut, VOut]) Process(r processor.Record[KIn, VIn]) error {
	return p.fn(p.ctx, r)
}

func (p *funcProcessor[KIn, VIn, KOut, VOut]) Close() error { return nil }

// step adds a stateless DSL node running fn after s.
func step[K, V, KR, VR any](s Stream[K, V], prefix string, keyChanged bool, keys serde.Serde[KR], values serde.Serde[VR],
	opts []Option, fn func(processor.Context[KR, VR], processor.Record[K, V]) error) Stream[KR, VR] {
	o := collect(opts)
	out := Stream[KR, VR]{b: s.b, node: o.nodeName(s.b, prefix), keyChanged: s.keyChanged || keyChanged,
		keys: pick(s.b, o.keySerde, keys), values: pick(s.b, o.valueSerde, values)}
	AddProcessor(s.b, out.node, func() processor.Processor[K, V, KR, VR] {
		return &funcProcessor[K, V, KR, VR]{fn: fn}
	}, s.node)
	return out
}

// Filter keeps the records for which keep returns true.
func (s Stream[K, V]) Filter(keep func(K, V) bool, opts ...Option) Stream[K, V] {
	return step(s, "KSTREAM-FILTER", false, s.keys, s.values, opts,
		func(ctx processor.Context[K, V], r processor.Record[K, V]) error {
			if keep(r.Key, r.Value) {
				return ctx.Forward(r)
			}
			return nil
		})
}

// FilterNot drops the records for which drop returns true.
func (s Stream[K, V]) FilterNot(drop func(K, V) bool, opts ...Option) Stream[K, V] {
	return s.Filter(func(k K, v V) bool { return !drop(k, v) }, opts...)
}

// Peek calls fn for each record and passes the record on unchanged.
func (s Stream[K, V]) Peek(fn func(K, V), opts ...Option) Stream[K, V] {
	return step(s, "KSTREAM-PEEK", false, s.keys, s.values, opts,
		func(ctx processor.Context[K, V], r processor.Record[K, V]) error {
			fn(r.Key, r.Value)
			return ctx.Forward(r)
		})
}

// Merge returns the records of s and other interleaved in processing order.
func (s Stream[K, V]) Merge(other Stream[K, V], opts ...Option) Stream[K, V] {
	o := collect(opts)
	out := Stream[K, V]{b: s.b, node: o.nodeName(s.b, "KSTREAM-MERGE"), keys: s.keys, values: s.values,
		keyChanged: s.keyChanged || other.keyChanged}
	AddProcessor(s.b, out.node, func() processor.Processor[K, V, K, V] {
		return &funcProcessor[K, V, K, V]{fn: func(ctx processor.Context[K, V], r processor.Record[K, V]) error {
			return ctx.Forward(r)
		}}
	}, s.node, other.node)
	return out
}

// Branch splits s: each record goes to the stream of the first predicate
// it satisfies, or nowhere if none does (Kafka Streams' split().branch()).
// Pass a last predicate that always returns true for a default branch.
func (s Stream[K, V]) Branch(predicates []func(K, V) bool, opts ...Option) []Stream[K, V] {
	o := collect(opts)
	name := o.nodeName(s.b, "KSTREAM-BRANCH")
	children := make([]string, len(predicates))
	for i := range predicates {
		children[i] = fmt.Sprintf("%s-%d", name, i)
	}
	AddProcessor(s.b, name, func() processor.Processor[K, V, K, V] {
		return &funcProcessor[K, V, K, V]{fn: func(ctx processor.Context[K, V], r processor.Record[K, V]) error {
			for i, p := range predicates {
				if p(r.Key, r.Value) {
					return ctx.ForwardTo(children[i], r)
				}
			}
			return nil
		}}
	}, s.node)
	branches := make([]Stream[K, V], len(predicates))
	for i, child := range children {
		branches[i] = step(Stream[K, V]{b: s.b, node: name, keys: s.keys, values: s.values, keyChanged: s.keyChanged},
			"", false, s.keys, s.values, []Option{Named(child)},
			func(ctx processor.Context[K, V], r processor.Record[K, V]) error { return ctx.Forward(r) })
	}
	return branches
}

// To writes the stream to topic, with the stream's serdes unless
// WithKeySerde or WithValueSerde override them.
func (s Stream[K, V]) To(topic string, opts ...Option) {
	o := collect(opts)
	AddSink(s.b, o.nodeName(s.b, "KSTREAM-SINK"), topic,
		pick(s.b, o.keySerde, s.keys), pick(s.b, o.valueSerde, s.values), s.node)
}

// ToDynamic writes each record to the topic topicFor chooses for it.
func (s Stream[K, V]) ToDynamic(topicFor func(processor.Record[K, V]) string, opts ...Option) {
	o := collect(opts)
	AddDynamicSink(s.b, o.nodeName(s.b, "KSTREAM-SINK"), topicFor,
		pick(s.b, o.keySerde, s.keys), pick(s.b, o.valueSerde, s.values), s.node)
}

// Map transforms each record's key and value. Grouping the result
// repartitions it.
func Map[K, V, KR, VR any](s Stream[K, V], fn func(K, V) (KR, VR), opts ...Option) Stream[KR, VR] {
	return step(s, "KSTREAM-MAP", true, serde.Default[KR](), serde.Default[VR](), opts,
		func(ctx processor.Context[KR, VR], r processor.Record[K, V]) error {
			k, v := fn(r.Key, r.Value)
			return ctx.Forward(processor.Record[KR, VR]{Key: k, Value: v, Timestamp: r.Timestamp, Headers: r.Headers})
		})
}

// MapValues transforms each record's value, keeping its key.
func MapValues[K, V, VR any](s Stream[K, V], fn func(K, V) VR, opts ...Option) Stream[K, VR] {
	return step(s, "KSTREAM-MAPVALUES", false, s.keys, serde.Default[VR](), opts,
		func(ctx processor.Context[K, VR], r processor.Record[K, V]) error {
			return ctx.Forward(processor.Record[K, VR]{Key: r.Key, Value: fn(r.Key, r.Value), Timestamp: r.Timestamp, Headers: r.Headers})
		})
}

// FlatMap turns each record into zero or more records with new keys and
// values. Grouping the result repartitions it.
func FlatMap[K, V, KR, VR any](s Stream[K, V], fn func(K, V) []KeyValue[KR, VR], opts ...Option) Stream[KR, VR] {
	return step(s, "KSTREAM-FLATMAP", true, serde.Default[KR](), serde.Default[VR](), opts,
		func(ctx processor.Context[KR, VR], r processor.Record[K, V]) error {
			for _, kv := range fn(r.Key, r.Value) {
				if err := ctx.Forward(processor.Record[KR, VR]{Key: kv.Key, Value: kv.Value, Timestamp: r.Timestamp, Headers: r.Headers}); err != nil {
					return err
				}
			}
			return nil
		})
}

// FlatMapValues turns each record into zero or more records with the same
// key.
func FlatMapValues[K, V, VR any](s Stream[K, V], fn func(K, V) []VR, opts ...Option) Stream[K, VR] {
	return step(s, "KSTREAM-FLATMAPVALUES", false, s.keys, serde.Default[VR](), opts,
		func(ctx processor.Context[K, VR], r processor.Record[K, V]) error {
			for _, v := range fn(r.Key, r.Value) {
				if err := ctx.Forward(processor.Record[K, VR]{Key: r.Key, Value: v, Timestamp: r.Timestamp, Headers: r.Headers}); err != nil {
					return err
				}
			}
			return nil
		})
}

// Process attaches a Processor, created once per task by newProcessor.
// Connect its stores with WithStores. Grouping the result repartitions it,
// since the processor may change keys.
func Process[K, V, KR, VR any](s Stream[K, V], newProcessor func() processor.Processor[K, V, KR, VR], opts ...Option) Stream[KR, VR] {
	o := collect(opts)
	out := Stream[KR, VR]{b: s.b, node: o.nodeName(s.b, "KSTREAM-PROCESSOR"), keyChanged: true,
		keys: pick(s.b, o.keySerde, serde.Default[KR]()), values: pick(s.b, o.valueSerde, serde.Default[VR]())}
	AddProcessor(s.b, out.node, newProcessor, s.node)
	for _, store := range o.stores {
		s.b.ConnectStore(store, out.node)
	}
	return out
}

// ProcessValues attaches a FixedKeyProcessor; keys are unchanged, so no
// repartition is needed after it.
func ProcessValues[K, V, VR any](s Stream[K, V], newProcessor func() processor.FixedKeyProcessor[K, V, VR], opts ...Option) Stream[K, VR] {
	o := collect(opts)
	out := Stream[K, VR]{b: s.b, node: o.nodeName(s.b, "KSTREAM-PROCESSVALUES"), keyChanged: s.keyChanged,
		keys: s.keys, values: pick(s.b, o.valueSerde, serde.Default[VR]())}
	AddFixedKeyProcessor(s.b, out.node, newProcessor, s.node)
	for _, store := range o.stores {
		s.b.ConnectStore(store, out.node)
	}
	return out
}

// Grouped is a stream grouped by key, ready for aggregation (Kafka Streams'
// KGroupedStream).
type Grouped[K, V any] struct {
	s Stream[K, V]
}

// GroupByKey groups the stream by its current key. If an upstream operation
// may have changed keys, aggregations first write the stream to a
// repartition topic so that all records of a key meet in one task.
// WithKeySerde and WithValueSerde set the repartition topic's serdes.
func (s Stream[K, V]) GroupByKey(opts ...Option) Grouped[K, V] {
	o := collect(opts)
	s.keys = pick(s.b, o.keySerde, s.keys)
	s.values = pick(s.b, o.valueSerde, s.values)
	return Grouped[K, V]{s: s}
}

// GroupBy re-keys the stream with key and groups it by the new key; the
// aggregation repartitions it.
func GroupBy[K, V, KR any](s Stream[K, V], key func(K, V) KR, opts ...Option) Grouped[KR, V] {
	o := collect(opts)
	mapped := step(s, "KSTREAM-KEY-SELECT", true, pick(s.b, o.keySerde, serde.Default[KR]()), s.values, nil,
		func(ctx processor.Context[KR, V], r processor.Record[K, V]) error {
			return ctx.Forward(processor.Record[KR, V]{Key: key(r.Key, r.Value), Value: r.Value, Timestamp: r.Timestamp, Headers: r.Headers})
		})
	mapped.values = pick(s.b, o.valueSerde, mapped.values)
	return Grouped[KR, V]{s: mapped}
}

// Count counts the records per key.
func (g Grouped[K, V]) Count(opts ...Option) Table[K, int64] {
	return Aggregate(g, func() int64 { return 0 }, func(_ K, _ V, n int64) int64 { return n + 1 },
		append([]Option{WithValueSerde(serde.Int64())}, opts...)...)
}

// Reduce combines the values per key with fn; the first value of a key is
// kept as is.
func (g Grouped[K, V]) Reduce(fn func(acc, v V) V, opts ...Option) Table[K, V] {
	o := collect(opts)
	values := pick(g.s.b, o.valueSerde, g.s.values)
	return aggregate(g, "KSTREAM-REDUCE", values, opts, func(store state.KeyValueStore[K, V], r processor.Record[K, V]) (V, error) {
		old, ok, err := store.Get(r.Key)
		if err != nil {
			return old, err
		}
		if !ok {
			return r.Value, nil
		}
		return fn(old, r.Value), nil
	})
}

// Aggregate folds the values per key into an aggregate of type VA, starting
// from initial(). The aggregate's serde is serde.Default[VA]() unless
// WithValueSerde sets it.
func Aggregate[K, V, VA any](g Grouped[K, V], initial func() VA, fn func(K, V, VA) VA, opts ...Option) Table[K, VA] {
	o := collect(opts)
	values := pick(g.s.b, o.valueSerde, serde.Default[VA]())
	return aggregate(g, "KSTREAM-AGGREGATE", values, opts, func(store state.KeyValueStore[K, VA], r processor.Record[K, V]) (VA, error) {
		old, ok, err := store.Get(r.Key)
		if err != nil {
			return old, err
		}
		if !ok {
			old = initial()
		}
		return fn(r.Key, r.Value, old), nil
	})
}

// aggregate repartitions g if needed and adds a processor that updates a
// key-value store with next and forwards each new aggregate.
func aggregate[K, V, VA any](g Grouped[K, V], prefix string, values serde.Serde[VA], opts []Option,
	next func(state.KeyValueStore[K, VA], processor.Record[K, V]) (VA, error)) Table[K, VA] {
	b := g.s.b
	o := collect(opts)
	storeName := o.storeName
	if storeName == "" {
		storeName = b.newName(prefix + "-STATE-STORE")
	}
	s := g.s
	if s.keyChanged {
		s = repartition(s, storeName+"-repartition")
	}
	t := Table[K, VA]{b: b, node: o.nodeName(b, prefix), keys: s.keys, values: values, store: storeName}
	AddProcessor(b, t.node, func() processor.Processor[K, V, K, VA] {
		var store state.KeyValueStore[K, VA]
		return &initProcessor[K, V, K, VA]{
			init: func(ctx processor.Context[K, VA]) (err error) {
				store, err = processor.Store[state.KeyValueStore[K, VA]](ctx, storeName)
				return err
			},
			fn: func(ctx processor.Context[K, VA], r processor.Record[K, V]) error {
				agg, err := next(store, r)
				if err != nil {
					return err
				}
				if err := store.Put(r.Key, agg); err != nil {
					return err
				}
				return ctx.Forward(processor.Record[K, VA]{Key: r.Key, Value: agg, Timestamp: r.Timestamp, Headers: r.Headers})
			},
		}
	}, s.node)
	b.AddStore(state.KeyValueBuilder(storeName, s.keys, values, o.storeOpts...), t.node)
	return t
}

// repartition writes s to the internal topic name and reads it back, so
// that records are partitioned by their current key.
func repartition[K, V any](s Stream[K, V], name string) Stream[K, V] {
	b := s.b
	sink := b.newName("KSTREAM-SINK")
	AddSink(b, sink, name, s.keys, s.values, s.node)
	if n, ok := b.nodes[sink]; ok {
		n.internal = true
	}
	src := b.newName("KSTREAM-SOURCE")
	b.add(newSource(src, s.keys, s.values, []string{name}, nil, true))
	return Stream[K, V]{b: b, node: src, keys: s.keys, values: s.values}
}

// initProcessor is a funcProcessor with an Init step.
type initProcessor[KIn, VIn, KOut, VOut any] struct {
	funcProcessor[KIn, VIn, KOut, VOut]
	init func(processor.Context[KOut, VOut]) error
	fn   func(processor.Context[KOut, VOut], processor.Record[KIn, VIn]) error
}

func (p *initProcessor[KIn, VIn, KOut, VOut]) Init(ctx processor.Context[KOut, VOut]) error {
	p.funcProcessor = funcProcessor[KIn, VIn, KOut, VOut]{ctx: ctx, fn: p.fn}
	return p.init(ctx)
}

// Table is a changelog stream read as the latest value per key, backed by a
// key-value store (Kafka Streams' KTable).
type Table[K, V any] struct {
	b      *Builder
	node   string
	keys   serde.Serde[K]
	values serde.Serde[V]
	store  string
}

// StoreName returns the name of the store materializing the table, or ""
// for a table derived without materialization (Filter, MapValues).
func (t Table[K, V]) StoreName() string { return t.store }

// ToStream returns the stream of the table's updates.
func (t Table[K, V]) ToStream(opts ...Option) Stream[K, V] {
	s := Stream[K, V]{b: t.b, node: t.node, keys: t.keys, values: t.values}
	return step(s, "KTABLE-TOSTREAM", false, t.keys, t.values, opts,
		func(ctx processor.Context[K, V], r processor.Record[K, V]) error { return ctx.Forward(r) })
}

// Filter keeps the updates for which keep returns true. The result is not
// materialized; updates that fail the predicate are dropped rather than
// turned into deletions.
func (t Table[K, V]) Filter(keep func(K, V) bool, opts ...Option) Table[K, V] {
	s := Stream[K, V]{b: t.b, node: t.node, keys: t.keys, values: t.values}
	f := step(s, "KTABLE-FILTER", false, t.keys, t.values, opts,
		func(ctx processor.Context[K, V], r processor.Record[K, V]) error {
			if keep(r.Key, r.Value) {
				return ctx.Forward(r)
			}
			return nil
		})
	return Table[K, V]{b: t.b, node: f.node, keys: f.keys, values: f.values}
}

// MapValuesTable transforms each update's value, keeping its key. The result
// is not materialized.
func MapValuesTable[K, V, VR any](t Table[K, V], fn func(K, V) VR, opts ...Option) Table[K, VR] {
	s := Stream[K, V]{b: t.b, node: t.node, keys: t.keys, values: t.values}
	m := step(s, "KTABLE-MAPVALUES", false, t.keys, serde.Default[VR](), opts,
		func(ctx processor.Context[K, VR], r processor.Record[K, V]) error {
			return ctx.Forward(processor.Record[K, VR]{Key: r.Key, Value: fn(r.Key, r.Value), Timestamp: r.Timestamp, Headers: r.Headers})
		})
	return Table[K, VR]{b: t.b, node: m.node, keys: m.keys, values: m.values}
}
