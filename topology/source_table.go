package topology

import (
	"fmt"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// sourceChangelog makes a store restore from topic instead of a changelog
// of its own (Kafka Streams' source-topic optimization): the topic already
// holds every write, so the store does not log them again.
func sourceChangelog(topic string) state.Opt {
	return func(c *state.Config) { c.SourceTopic, c.Logging = topic, false }
}

// timestampedSource makes a store restored from a topic of plain values
// stamp them with their records' timestamps, the layout of a timestamped
// store.
func timestampedSource(c *state.Config) { c.SourceConverter = state.TimestampedRestore }

// TableFrom returns the table whose rows are the latest records per key of
// topic, read with serde.Default[K]() and serde.Default[V]() (Kafka
// Streams' StreamsBuilder.table). A record with a null value (a tombstone)
// deletes its key; records with a null key are skipped. The table is
// materialized in a store (named by Materialized, or generated) restored
// from topic itself, which must therefore be compacted (Kafka Streams'
// source-topic optimization): the store has no changelog of its own.
func TableFrom[K, V any](b *Builder, topic string, opts ...MaterializeOpt) Table[K, V] {
	return TableFromWith(b, topic, serde.Default[K](), serde.Default[V](), opts...)
}

// TableFromWith is TableFrom with the topic read with keys and values.
func TableFromWith[K, V any](b *Builder, topic string, keys serde.Serde[K], values serde.Serde[V], opts ...MaterializeOpt) Table[K, V] {
	o := collect(opts)
	src := b.newName("KSTREAM-SOURCE")
	AddSource(b, src, keys, values, topic)
	storeName := o.storeNameOr(b, "KTABLE-SOURCE")
	t := Table[K, V]{b: b, node: o.nodeName(b, "KTABLE-SOURCE"), keys: keys, values: values, store: storeName,
		get: storeGetter[K, V](storeName)}
	addNode[K, V, K, change[V]](b, t.node, storeStep(storeName, func(store state.TimestampedKeyValueStore[K, V], ctx engine.NodeContext, r processor.Record[any, any]) error {
		if isNull(r.Key) {
			return nil
		}
		k := engine.As[K](r.Key)
		old, found, err := store.Get(k)
		if err != nil {
			return err
		}
		c := change[V]{New: r.Value}
		if found {
			c.Old = old
		}
		if isNull(r.Value) {
			if !found {
				return nil
			}
			c.New = nil
			if _, _, err := store.Delete(k); err != nil {
				return err
			}
		} else if err := store.PutWithTimestamp(k, state.ValueAndTimestamp[V]{Value: engine.As[V](r.Value), Timestamp: r.Timestamp}); err != nil {
			return err
		}
		r.Value = c
		return ctx.Forward(r, "")
	}), src)
	b.AddStore(state.TimestampedKeyValueBuilder(storeName, keys, values, append(o.storeOpts, sourceChangelog(topic), timestampedSource)...), t.node)
	return t
}

// GlobalTable is a table holding every partition of a topic in every
// instance of the application (Kafka Streams' GlobalKTable). The runtime
// loads it fully before processing starts and keeps it current from then
// on; streams join it by any key they derive, with no repartition.
type GlobalTable[K, V any] struct {
	b     *Builder
	store string
	get   *getter
}

// StoreName returns the name of the global table's store.
func (g GlobalTable[K, V]) StoreName() string { return g.store }

// GlobalTableFrom returns the global table of topic, read with
// serde.Default[K]() and serde.Default[V]() (Kafka Streams'
// StreamsBuilder.globalTable). A tombstone deletes its key. The store
// (named by Materialized, or generated) holds the topic's records as they
// are, and is rebuilt from the topic when the application starts.
func GlobalTableFrom[K, V any](b *Builder, topic string, opts ...MaterializeOpt) GlobalTable[K, V] {
	return GlobalTableFromWith(b, topic, serde.Default[K](), serde.Default[V](), opts...)
}

// GlobalTableFromWith is GlobalTableFrom with the topic read with keys and
// values.
func GlobalTableFromWith[K, V any](b *Builder, topic string, keys serde.Serde[K], values serde.Serde[V], opts ...MaterializeOpt) GlobalTable[K, V] {
	o := collect(opts)
	storeName := o.storeNameOr(b, "GLOBALKTABLE-SOURCE")
	b.addGlobal(storeName, topic, state.KeyValueBuilder(storeName, keys, values, append(o.storeOpts, sourceChangelog(topic))...))
	return GlobalTable[K, V]{b: b, store: storeName, get: storeGetter[K, V](storeName)}
}

func (b *Builder) addGlobal(store, topic string, sb state.Builder) {
	if _, taken := b.stores[store]; taken {
		b.fail(fmt.Errorf("store name %q is already taken", store))
		return
	}
	if _, taken := b.globals[store]; taken {
		b.fail(fmt.Errorf("store name %q is already taken", store))
		return
	}
	b.globals[store] = &engine.GlobalStore{Topic: topic, Builder: sb}
}
