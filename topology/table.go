package topology

import (
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// change is what table nodes forward: a key's new and old value, erased;
// nil means absent (a new value of nil is a delete). V only types the
// node edges, so that Build checks them.
type change[V any] struct{ New, Old any }

// getter reads a table's current value of a key: from its store, through
// the Filter and MapValues steps derived from it.
type getter struct {
	stores []string
	open   func(p processor.StoreProvider) (lookup, error)
	// asOf, set for a versioned table, reads the row valid at a time.
	asOf func(p processor.StoreProvider) (asOfLookup, error)
}

// lookup returns a table's current value of key (nil if absent) and its
// timestamp in milliseconds (noTimestamp if the store keeps none).
type lookup func(key any) (value any, ts int64, err error)

// noTimestamp is the timestamp of a row from a store without timestamps
// (Kafka's ConsumerRecord.NO_TIMESTAMP); it never wins a max.
const noTimestamp = -1

// storeGetter reads the store name of a materialized table, with its
// timestamps if the store is a TimestampedKeyValueStore.
func storeGetter[K, V any](name string) *getter {
	return &getter{stores: []string{name}, open: func(p processor.StoreProvider) (lookup, error) {
		s, err := processor.Store[state.KeyValueStore[K, V]](p, name)
		if err != nil {
			return nil, err
		}
		if ts, ok := s.(state.TimestampedKeyValueStore[K, V]); ok {
			return func(key any) (any, int64, error) {
				v, ok, err := ts.GetWithTimestamp(engine.As[K](key))
				if err != nil || !ok {
					return nil, noTimestamp, err
				}
				return v.Value, v.Timestamp.UnixMilli(), nil
			}, nil
		}
		return func(key any) (any, int64, error) {
			v, ok, err := s.Get(engine.As[K](key))
			if err != nil || !ok {
				return nil, noTimestamp, err
			}
			return v, noTimestamp, nil
		}, nil
	}}
}

// derive returns a getter applying fn to what g reads; fn sees and
// returns nil for absent values.
func (g *getter) derive(fn func(key, v any) any) *getter {
	return &getter{stores: g.stores, open: func(p processor.StoreProvider) (lookup, error) {
		get, err := g.open(p)
		if err != nil {
			return nil, err
		}
		return func(key any) (any, int64, error) {
			v, ts, err := get(key)
			if err != nil {
				return nil, noTimestamp, err
			}
			return fn(key, v), ts, nil
		}, nil
	}}
}

// Table is a changelog stream read as the latest value per key (Kafka
// Streams' KTable). Deletes (tombstones) flow through it: ToStream emits
// them as records with a null value.
type Table[K, V any] struct {
	b      *Builder
	node   string
	keys   serde.Serde[K]
	values serde.Serde[V]
	store  string
	get    *getter
}

// StoreName returns the name of the store materializing the table, or ""
// for a table derived without materialization (Filter, MapValuesTable,
// joins).
func (t Table[K, V]) StoreName() string { return t.store }

// addTableStep adds a node taking changes of V and emitting changes of VR.
func addTableStep[K, V, KR, VR any](b *Builder, name string, fn stepFunc, parents ...string) {
	addStep[K, change[V], KR, change[VR]](b, name, fn, parents...)
}

// ToStream returns the stream of the table's updates; a delete is a record
// with a null value.
func (t Table[K, V]) ToStream(opts ...StreamOpt) Stream[K, V] {
	o := collect(opts)
	out := Stream[K, V]{b: t.b, node: o.nodeName(t.b, "KTABLE-TOSTREAM"), keys: t.keys, values: t.values}
	addStep[K, change[V], K, V](t.b, out.node, func(ctx engine.NodeContext, r processor.Record[any, any]) error {
		r.Value = r.Value.(change[V]).New
		return ctx.Forward(r, "")
	}, t.node)
	return out
}

// Filter keeps the rows for which keep returns true. A row that stops
// matching is deleted: Filter forwards a delete for its key, as Kafka
// Streams' KTable.filter does. The result is not materialized; joins read
// it through the store of the table it derives from.
func (t Table[K, V]) Filter(keep func(K, V) bool, opts ...StreamOpt) Table[K, V] {
	o := collect(opts)
	match := func(k, v any) any {
		if v == nil || !keep(engine.As[K](k), engine.As[V](v)) {
			return nil
		}
		return v
	}
	out := Table[K, V]{b: t.b, node: o.nodeName(t.b, "KTABLE-FILTER"), keys: t.keys, values: t.values, get: t.get.derive(match)}
	addTableStep[K, V, K, V](t.b, out.node, func(ctx engine.NodeContext, r processor.Record[any, any]) error {
		c := r.Value.(change[V])
		n, o := match(r.Key, c.New), match(r.Key, c.Old)
		if n == nil && o == nil {
			return nil
		}
		r.Value = change[V]{New: n, Old: o}
		return ctx.Forward(r, "")
	}, t.node)
	return out
}

// MapValuesTable transforms each row's value, keeping its key; deletes stay
// deletes. The result is not materialized.
func MapValuesTable[K, V, VR any](t Table[K, V], fn func(K, V) VR, opts ...StreamOpt) Table[K, VR] {
	o := collect(opts)
	mapped := func(k, v any) any {
		if v == nil {
			return nil
		}
		return fn(engine.As[K](k), engine.As[V](v))
	}
	out := Table[K, VR]{b: t.b, node: o.nodeName(t.b, "KTABLE-MAPVALUES"), keys: t.keys, values: keep[V, VR](t.values),
		get: t.get.derive(mapped)}
	addTableStep[K, V, K, VR](t.b, out.node, func(ctx engine.NodeContext, r processor.Record[any, any]) error {
		c := r.Value.(change[V])
		r.Value = change[VR]{New: mapped(r.Key, c.New), Old: mapped(r.Key, c.Old)}
		return ctx.Forward(r, "")
	}, t.node)
	return out
}

// WithValueSerde returns the table with its values written with values
// downstream (by ToStream's sinks and by repartitions). It does not change
// the store the table is materialized in.
func (t Table[K, V]) WithValueSerde(values serde.Serde[V]) Table[K, V] {
	t.values = values
	return t
}

// Grouped is a stream grouped by key, ready for aggregation (Kafka Streams'
// KGroupedStream). An aggregation's store is a
// state.TimestampedKeyValueStore[K, VA]: each row carries the largest
// timestamp of the records it reflects, and so does each update forwarded.
type Grouped[K, V any] struct {
	s    Stream[K, V]
	name string
}

// GroupByKey groups the stream by its current key. If an upstream
// operation may have changed keys, aggregations first write the stream to
// a repartition topic so that all records of a key meet in one task; Named
// names that topic.
func (s Stream[K, V]) GroupByKey(opts ...GroupOpt) Grouped[K, V] {
	return Grouped[K, V]{s: s, name: collect(opts).name}
}

// GroupBy re-keys the stream with key and groups it by the new key; the
// aggregation repartitions it. The new keys are written with
// serde.Default[KR]() (or the stream's key serde if KR is K) unless
// Grouped.WithKeySerde sets one.
func GroupBy[K, V, KR any](s Stream[K, V], key func(K, V) KR, opts ...GroupOpt) Grouped[KR, V] {
	return Grouped[KR, V]{s: selectKey(s, "KSTREAM-KEY-SELECT", key, nil), name: collect(opts).name}
}

// WithKeySerde returns g with its keys written with keys to the repartition
// topic and the aggregation's store.
func (g Grouped[K, V]) WithKeySerde(keys serde.Serde[K]) Grouped[K, V] {
	g.s.keys = keys
	return g
}

// WithValueSerde returns g with its values written with values to the
// repartition topic (and, for Reduce, the store).
func (g Grouped[K, V]) WithValueSerde(values serde.Serde[V]) Grouped[K, V] {
	g.s.values = values
	return g
}

// Count counts the records per key, skipping records with a null key or
// value as Kafka Streams does.
func (g Grouped[K, V]) Count(opts ...MaterializeOpt) Table[K, int64] {
	return AggregateWith(g, func() int64 { return 0 }, func(_ K, _ V, n int64) int64 { return n + 1 }, serde.Int64(), opts...)
}

// Reduce combines the values per key with fn; the first value of a key is
// kept as is. Records with a null key or value are skipped.
func (g Grouped[K, V]) Reduce(fn func(acc, v V) V, opts ...MaterializeOpt) Table[K, V] {
	return aggregate(g, "KSTREAM-REDUCE", g.s.values, opts, func(_ K, v V, old V, found bool) V {
		if !found {
			return v
		}
		return fn(old, v)
	})
}

// Aggregate folds the values per key into an aggregate of type VA, starting
// from initial(). Records with a null key or value are skipped. The
// aggregate is stored with serde.Default[VA](); AggregateWith takes a serde.
func Aggregate[K, V, VA any](g Grouped[K, V], initial func() VA, fn func(K, V, VA) VA, opts ...MaterializeOpt) Table[K, VA] {
	return AggregateWith(g, initial, fn, serde.Default[VA](), opts...)
}

// AggregateWith is Aggregate with the aggregate stored with values.
func AggregateWith[K, V, VA any](g Grouped[K, V], initial func() VA, fn func(K, V, VA) VA, values serde.Serde[VA], opts ...MaterializeOpt) Table[K, VA] {
	return aggregate(g, "KSTREAM-AGGREGATE", values, opts, func(k K, v V, old VA, found bool) VA {
		if !found {
			old = initial()
		}
		return fn(k, v, old)
	})
}

// storeName returns the Materialized store name or a generated one.
func (o options) storeNameOr(b *Builder, prefix string) string {
	if o.storeName != "" {
		return o.storeName
	}
	return b.newName(prefix + "-STATE-STORE")
}

// repartitionIfNeeded repartitions s if its key may have changed, naming
// the topic after the grouping's name or else the store.
func repartitionIfNeeded[K, V any](s Stream[K, V], name, store string) Stream[K, V] {
	if !s.keyChanged {
		return s
	}
	if name == "" {
		name = store
	}
	return repartition(s, name+"-repartition", 0, nil)
}

// aggregate repartitions g if needed and adds a processor that folds each
// record into a key-value store with next and forwards the change.
func aggregate[K, V, VA any](g Grouped[K, V], prefix string, values serde.Serde[VA], opts []MaterializeOpt,
	next func(k K, v V, old VA, found bool) VA) Table[K, VA] {
	b := g.s.b
	o := collect(opts)
	storeName := o.storeNameOr(b, prefix)
	s := repartitionIfNeeded(g.s, g.name, storeName)
	t := Table[K, VA]{b: b, node: o.nodeName(b, prefix), keys: s.keys, values: values, store: storeName,
		get: storeGetter[K, VA](storeName)}
	addNode[K, V, K, change[VA]](b, t.node, storeStep(storeName, func(store state.TimestampedKeyValueStore[K, VA], ctx engine.NodeContext, r processor.Record[any, any]) error {
		if isNull(r.Key) || isNull(r.Value) {
			return nil
		}
		k := engine.As[K](r.Key)
		old, found, err := store.GetWithTimestamp(k)
		if err != nil {
			return err
		}
		agg := next(k, engine.As[V](r.Value), old.Value, found)
		if r.Timestamp, err = putStamped(store, k, agg, r, old, found); err != nil {
			return err
		}
		c := change[VA]{New: agg}
		if found {
			c.Old = old.Value
		}
		r.Value = c
		return ctx.Forward(r, "")
	}), s.node)
	b.AddStore(state.TimestampedKeyValueBuilder(storeName, s.keys, values, o.storeOpts...), t.node)
	return t
}

// storeStep returns a node factory whose instances open the store named
// name, of type S, on first use and run fn with it.
func storeStep[S state.Store](name string, fn func(S, engine.NodeContext, processor.Record[any, any]) error) func() stepFunc {
	return func() stepFunc {
		var store S
		opened := false
		return func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			if !opened {
				s, err := processor.Store[S](ctx, name)
				if err != nil {
					return err
				}
				store, opened = s, true
			}
			return fn(store, ctx, r)
		}
	}
}

// putStamped stores agg under k with the later of r's timestamp and that
// of the value it replaces, found old, and returns that timestamp: a
// table's row is as recent as the latest record it reflects (Kafka
// Streams' timestamped aggregations).
func putStamped[K, V any](store state.TimestampedKeyValueStore[K, V], k K, agg V, r processor.Record[any, any], old state.ValueAndTimestamp[V], found bool) (time.Time, error) {
	stamp := r.Timestamp
	if found && old.Timestamp.After(stamp) {
		stamp = old.Timestamp
	}
	return stamp, store.PutWithTimestamp(k, state.ValueAndTimestamp[V]{Value: agg, Timestamp: stamp})
}
