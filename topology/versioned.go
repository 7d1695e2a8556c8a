package topology

import (
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// asOfLookup returns a versioned table's value of key as of ts (in
// milliseconds), nil if none.
type asOfLookup func(key any, ts int64) (any, error)

// VersionedTableFrom is TableFrom materialized in a versioned store named
// store that keeps the table's history for historyRetention (Kafka
// Streams' builder.table(topic, Materialized.as(
// Stores.persistentVersionedKeyValueStore(store, historyRetention)))).
// Join and LeftJoin then look each stream record up in the version of the
// table valid at the record's timestamp rather than in its latest version
// (KIP-914), so the result does not depend on how the stream and the
// table's updates interleave; a record older than the history retention
// finds no row. An update older than the key's latest version goes into
// the history without changing the table, so it is not forwarded
// downstream. The store is a state.VersionedKeyValueStore[K, V]; unlike
// TableFrom's it has a changelog topic of its own,
// "<application id>-<store>-changelog".
func VersionedTableFrom[K, V any](b *Builder, topic, store string, historyRetention time.Duration, opts ...state.Opt) Table[K, V] {
	return VersionedTableFromWith(b, topic, store, historyRetention, serde.Default[K](), serde.Default[V](), opts...)
}

// VersionedTableFromWith is VersionedTableFrom with the topic read with
// keys and values.
func VersionedTableFromWith[K, V any](b *Builder, topic, store string, historyRetention time.Duration, keys serde.Serde[K], values serde.Serde[V], opts ...state.Opt) Table[K, V] {
	src := b.newName("KSTREAM-SOURCE")
	AddSource(b, src, keys, values, topic)
	t := Table[K, V]{b: b, node: b.newName("KTABLE-SOURCE"), keys: keys, values: values, store: store,
		get: versionedGetter[K, V](store)}
	addNode[K, V, K, change[V]](b, t.node, storeStep(store, func(s state.VersionedKeyValueStore[K, V], ctx engine.NodeContext, r processor.Record[any, any]) error {
		if isNull(r.Key) {
			return nil
		}
		k := engine.As[K](r.Key)
		latest, found, err := s.Get(k)
		if err != nil {
			return err
		}
		c := change[V]{New: r.Value}
		if isNull(r.Value) {
			c.New = nil
			written, err := s.Delete(k, r.Timestamp)
			if err != nil || !written || !found {
				return err
			}
		} else if written, err := s.Put(k, engine.As[V](r.Value), r.Timestamp); err != nil || !written {
			return err
		}
		if found {
			if r.Timestamp.Before(latest.Timestamp) {
				return nil // history only: the table's latest row is unchanged
			}
			c.Old = latest.Value
		}
		r.Value = c
		return ctx.Forward(r, "")
	}), src)
	sb, err := state.VersionedKeyValueBuilder(store, keys, values, historyRetention, opts...)
	if err != nil {
		b.fail(err)
		return t
	}
	b.AddStore(sb, t.node)
	return t
}

// openAsOf opens g for lookups as of a time: in the history of a versioned
// table, in the latest rows of any other.
func (g *getter) openAsOf(p processor.StoreProvider) (asOfLookup, error) {
	if g.asOf != nil {
		return g.asOf(p)
	}
	get, err := g.open(p)
	if err != nil {
		return nil, err
	}
	return func(key any, _ int64) (any, error) {
		v, _, err := get(key)
		return v, err
	}, nil
}

// versionedGetter reads a versioned table: its latest rows, and the row
// valid at a time.
func versionedGetter[K, V any](name string) *getter {
	open := func(p processor.StoreProvider) (state.VersionedKeyValueStore[K, V], error) {
		return processor.Store[state.VersionedKeyValueStore[K, V]](p, name)
	}
	return &getter{stores: []string{name},
		open: func(p processor.StoreProvider) (lookup, error) {
			s, err := open(p)
			if err != nil {
				return nil, err
			}
			return func(key any) (any, int64, error) {
				r, ok, err := s.Get(engine.As[K](key))
				if err != nil || !ok {
					return nil, noTimestamp, err
				}
				return r.Value, r.Timestamp.UnixMilli(), nil
			}, nil
		},
		asOf: func(p processor.StoreProvider) (asOfLookup, error) {
			s, err := open(p)
			if err != nil {
				return nil, err
			}
			return func(key any, ts int64) (any, error) {
				r, ok, err := s.GetAsOf(engine.As[K](key), time.UnixMilli(ts))
				if err != nil || !ok {
					return nil, err
				}
				return r.Value, nil
			}, nil
		}}
}
