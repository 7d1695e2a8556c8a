package topology

import (
	"encoding/binary"
	"errors"
	"reflect"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// GroupedTable is a table re-grouped by a new key, ready for aggregation
// with an adder and a subtractor (Kafka Streams' KGroupedTable): when a row
// changes, its old value is subtracted from the aggregate of its old group
// and its new value added to that of its new group.
type GroupedTable[K, V any] struct {
	b      *Builder
	node   string // the selecting node, emitting change[V]
	name   string // of the repartition topic, if Named
	keys   serde.Serde[K]
	values serde.Serde[V]
}

// GroupTableBy maps each row of t to a new key and value with selector and
// groups the rows by the new key (Kafka Streams' KTable.groupBy). The rows
// go through a repartition topic, "<application id>-<name>-repartition"
// with the name from Named or else the aggregation's store. Keys and values
// are written with the table's serdes where the types are unchanged, else
// serde.Default; the With methods of the result set them. Rows for which
// selector returns a null key are skipped.
func GroupTableBy[K, V, KR, VR any](t Table[K, V], selector func(K, V) (KR, VR), opts ...GroupOpt) GroupedTable[KR, VR] {
	o := collect(opts)
	node := o.nodeName(t.b, "KTABLE-SELECT")
	addTableStep[K, V, KR, VR](t.b, node, func(ctx engine.NodeContext, r processor.Record[any, any]) error {
		c := r.Value.(change[V])
		var oldKey, oldValue, newKey, newValue any
		if c.Old != nil {
			oldKey, oldValue = selector(engine.As[K](r.Key), engine.As[V](c.Old))
		}
		if c.New != nil {
			newKey, newValue = selector(engine.As[K](r.Key), engine.As[V](c.New))
		}
		send := func(k any, c change[VR]) error {
			if isNull(k) {
				return nil
			}
			return ctx.Forward(processor.Record[any, any]{Key: k, Value: c, Timestamp: r.Timestamp, Headers: r.Headers}, "")
		}
		// One record when the group stays, so that the aggregate takes the
		// subtraction and the addition as one update.
		if c.Old != nil && c.New != nil && sameKey(oldKey, newKey) {
			return send(newKey, change[VR]{New: newValue, Old: oldValue})
		}
		if c.Old != nil {
			if err := send(oldKey, change[VR]{Old: oldValue}); err != nil {
				return err
			}
		}
		if c.New != nil {
			return send(newKey, change[VR]{New: newValue})
		}
		return nil
	}, t.node)
	return GroupedTable[KR, VR]{b: t.b, node: node, name: o.name, keys: keep[K, KR](t.keys), values: keep[V, VR](t.values)}
}

// WithKeySerde returns g with its keys written with keys to the
// repartition topic and the aggregation's store.
func (g GroupedTable[K, V]) WithKeySerde(keys serde.Serde[K]) GroupedTable[K, V] {
	g.keys = keys
	return g
}

// WithValueSerde returns g with its values written with values to the
// repartition topic (and, for Reduce, the store).
func (g GroupedTable[K, V]) WithValueSerde(values serde.Serde[V]) GroupedTable[K, V] {
	g.values = values
	return g
}

// changeSerde writes a change to a repartition topic: a flags byte (1: a
// new value follows, 2: an old value follows), then each value present as
// a uvarint length and its bytes.
type changeSerde[V any] struct{ values serde.Serde[V] }

func (s changeSerde[V]) Serialize(topic string, c change[V]) ([]byte, error) {
	out := []byte{0}
	for i, v := range []any{c.New, c.Old} {
		if v == nil {
			continue
		}
		out[0] |= 1 << i
		b, err := s.values.Serialize(topic, engine.As[V](v))
		if err != nil {
			return nil, err
		}
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out, nil
}

var errChange = errors.New("malformed table change")

func (s changeSerde[V]) Deserialize(topic string, b []byte) (change[V], error) {
	var c change[V]
	if len(b) == 0 {
		return c, errChange
	}
	flags, rest := b[0], b[1:]
	for i, dst := range []*any{&c.New, &c.Old} {
		if flags&(1<<i) == 0 {
			continue
		}
		n, w := binary.Uvarint(rest)
		if w <= 0 || uint64(len(rest)-w) < n {
			return c, errChange
		}
		v, err := s.values.Deserialize(topic, rest[w:w+int(n)])
		if err != nil {
			return c, err
		}
		*dst, rest = v, rest[w+int(n):]
	}
	if len(rest) != 0 {
		return c, errChange
	}
	return c, nil
}

// Count counts the rows per group; a row leaving the group counts down.
func (g GroupedTable[K, V]) Count(opts ...MaterializeOpt) Table[K, int64] {
	one := func(_ K, _ V, n int64) int64 { return n + 1 }
	less := func(_ K, _ V, n int64) int64 { return n - 1 }
	return AggregateTableWith(g, func() int64 { return 0 }, one, less, serde.Int64(), opts...)
}

// Reduce combines the rows per group: adder adds a row's new value,
// subtractor takes a row's old value away.
func (g GroupedTable[K, V]) Reduce(adder, subtractor func(acc, v V) V, opts ...MaterializeOpt) Table[K, V] {
	return tableAggregate(g, "KTABLE-REDUCE", g.values, opts, func(_ K, v, old V, found bool, add bool) V {
		switch {
		case !found:
			return v
		case add:
			return adder(old, v)
		default:
			return subtractor(old, v)
		}
	})
}

// AggregateTable folds the rows per group into an aggregate of type VA,
// starting from initial(): adder adds a row's new value, subtractor takes a
// row's old value away. The aggregate is stored with serde.Default[VA]().
func AggregateTable[K, V, VA any](g GroupedTable[K, V], initial func() VA, adder, subtractor func(K, V, VA) VA, opts ...MaterializeOpt) Table[K, VA] {
	return AggregateTableWith(g, initial, adder, subtractor, serde.Default[VA](), opts...)
}

// AggregateTableWith is AggregateTable with the aggregate stored with
// values.
func AggregateTableWith[K, V, VA any](g GroupedTable[K, V], initial func() VA, adder, subtractor func(K, V, VA) VA, values serde.Serde[VA], opts ...MaterializeOpt) Table[K, VA] {
	return tableAggregate(g, "KTABLE-AGGREGATE", values, opts, func(k K, v V, old VA, found bool, add bool) VA {
		if !found {
			old = initial()
		}
		if add {
			return adder(k, v, old)
		}
		return subtractor(k, v, old)
	})
}

// tableAggregate writes g's changes to a repartition topic and folds them
// into a store: first the subtraction of the old value, then the addition
// of the new.
func tableAggregate[K, V, VA any](g GroupedTable[K, V], prefix string, values serde.Serde[VA], opts []MaterializeOpt,
	next func(k K, v V, old VA, found, add bool) VA) Table[K, VA] {
	b := g.b
	o := collect(opts)
	storeName := o.storeNameOr(b, prefix)
	name := g.name
	if name == "" {
		name = storeName
	}
	topic := name + "-repartition"
	sink := b.newName("KSTREAM-SINK")
	cs := changeSerde[V]{g.values}
	AddSink[K, change[V]](b, sink, topic, g.keys, cs, g.node)
	if n, ok := b.nodes[sink]; ok {
		n.Internal = true
	}
	src := b.newName("KSTREAM-SOURCE")
	b.add(newSource[K, change[V]](src, g.keys, cs, []string{topic}, nil, true))
	t := Table[K, VA]{b: b, node: o.nodeName(b, prefix), keys: g.keys, values: values, store: storeName,
		get: storeGetter[K, VA](storeName)}
	addNode[K, change[V], K, change[VA]](b, t.node, storeStep(storeName, func(store state.TimestampedKeyValueStore[K, VA], ctx engine.NodeContext, r processor.Record[any, any]) error {
		if isNull(r.Key) {
			return nil
		}
		k := engine.As[K](r.Key)
		c := r.Value.(change[V])
		stored, found, err := store.GetWithTimestamp(k)
		if err != nil {
			return err
		}
		old := stored.Value
		agg, have := old, found
		if c.Old != nil {
			agg, have = next(k, engine.As[V](c.Old), agg, have, false), true
		}
		if c.New != nil {
			agg, have = next(k, engine.As[V](c.New), agg, have, true), true
		}
		if !have {
			return nil
		}
		if r.Timestamp, err = putStamped(store, k, agg, r, stored, found); err != nil {
			return err
		}
		out := change[VA]{New: agg}
		if found {
			out.Old = old
		}
		r.Value = out
		return ctx.Forward(r, "")
	}), src)
	b.AddStore(state.TimestampedKeyValueBuilder(storeName, g.keys, values, o.storeOpts...), t.node)
	return t
}

// sameKey reports whether two erased keys are equal, without panicking on
// keys of types == cannot compare.
func sameKey(a, b any) bool {
	if a == nil || b == nil || reflect.TypeOf(a) != reflect.TypeOf(b) {
		return a == nil && b == nil
	}
	if reflect.TypeOf(a).Comparable() {
		return a == b
	}
	return reflect.DeepEqual(a, b)
}
