package topology

import (
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
)

// connect gives node read access to the stores g reads, global or not.
func (b *Builder) connect(node string, g *getter) {
	for _, store := range g.stores {
		if _, global := b.globals[store]; global {
			if n, ok := b.nodes[node]; ok {
				n.Globals = append(n.Globals, store)
			}
			continue
		}
		b.ConnectStore(store, node)
	}
}

// lookupStep returns a node factory whose instances open g on first use and
// run fn with it.
func lookupStep(g *getter, fn func(get lookup, ctx engine.NodeContext, r processor.Record[any, any]) error) func() stepFunc {
	return func() stepFunc {
		var get lookup
		return func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			if get == nil {
				var err error
				if get, err = g.open(ctx); err != nil {
					return err
				}
			}
			return fn(get, ctx, r)
		}
	}
}

// streamTableJoin joins each record of s with t's current row of its key;
// joined returns the result for a value and the row (nil if absent), or nil
// for none. A stream whose key may have changed is repartitioned first.
func streamTableJoin[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], prefix string, opts []StreamOpt, joined func(v V, tv any) any) Stream[K, VR] {
	b := s.b
	o := collect(opts)
	name := o.nodeName(b, prefix)
	if s.keyChanged {
		// The repartition topic takes the table's partition count, so
		// that the two are co-partitioned.
		s = repartition(s, name+"-repartition", 0, nil)
		if n, ok := b.nodes[s.node]; ok {
			n.ReaderPartitioned = true
		}
	}
	out := Stream[K, VR]{b: b, node: name, keys: s.keys, values: serde.Default[VR]()}
	addNode[K, V, K, VR](b, name, func() stepFunc {
		// A versioned table is read as of the stream record's time
		// (KIP-914), any other at its latest.
		var get asOfLookup
		return func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			// Records with a null key or value do not join (Kafka Streams
			// drops them).
			if isNull(r.Key) || isNull(r.Value) {
				return nil
			}
			if get == nil {
				var err error
				if get, err = t.get.openAsOf(ctx); err != nil {
					return err
				}
			}
			tv, err := get(r.Key, r.Timestamp.UnixMilli())
			if err != nil {
				return err
			}
			res := joined(engine.As[V](r.Value), tv)
			if res == nil {
				return nil
			}
			r.Value = res
			return ctx.Forward(r, "")
		}
	}, s.node)
	b.connect(name, t.get)
	return out
}

// Join joins each record of s with the row of its key in t, if there is
// one, into joiner(value, row) (Kafka Streams' KStream-KTable inner join).
// Updates of t produce no output; records with a null key or value are
// dropped. The result keeps the stream's key and timestamp, and its values
// are written with serde.Default[VR]() unless WithValueSerde sets one. If
// the stream's key may have changed it is repartitioned first, through a
// topic with t's partition count, so that s and t are co-partitioned;
// otherwise the runtime checks their topics have the same partition count.
// A table from VersionedTableFrom is read as of each record's timestamp.
func Join[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], joiner func(v V, row VT) VR, opts ...StreamOpt) Stream[K, VR] {
	return streamTableJoin[K, V, VT, VR](s, t, "KSTREAM-JOIN", opts, func(v V, tv any) any {
		if tv == nil {
			return nil
		}
		return joiner(v, engine.As[VT](tv))
	})
}

// LeftJoin is Join that also emits the records with no row in t, as
// joiner(value, zero, false) (Kafka Streams' KStream-KTable left join).
func LeftJoin[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], joiner func(v V, row VT, found bool) VR, opts ...StreamOpt) Stream[K, VR] {
	return streamTableJoin[K, V, VT, VR](s, t, "KSTREAM-LEFTJOIN", opts, func(v V, tv any) any {
		return joiner(v, engine.As[VT](tv), tv != nil)
	})
}

// streamGlobalJoin joins each record of s with the row of g under key(k,
// v).
func streamGlobalJoin[K, V, KG, VG, VR any](s Stream[K, V], g GlobalTable[KG, VG], prefix string, key func(K, V) KG, opts []StreamOpt, joined func(v V, gv any) any) Stream[K, VR] {
	b := s.b
	o := collect(opts)
	name := o.nodeName(b, prefix)
	out := Stream[K, VR]{b: b, node: name, keys: s.keys, values: serde.Default[VR](), keyChanged: s.keyChanged}
	addNode[K, V, K, VR](b, name, lookupStep(g.get, func(get lookup, ctx engine.NodeContext, r processor.Record[any, any]) error {
		if isNull(r.Value) {
			return nil
		}
		var gv any
		if gk := key(engine.As[K](r.Key), engine.As[V](r.Value)); !isNull(gk) {
			var err error
			if gv, _, err = get(gk); err != nil {
				return err
			}
		}
		res := joined(engine.As[V](r.Value), gv)
		if res == nil {
			return nil
		}
		r.Value = res
		return ctx.Forward(r, "")
	}), s.node)
	b.connect(name, g.get)
	return out
}

// JoinGlobal joins each record of s with the row of g under key(k, v), if
// there is one, into joiner(value, row) (Kafka Streams' KStream-GlobalKTable
// inner join). No repartition is needed: every task holds all of g. Records
// with a null value, or whose key selector returns a null key, are dropped.
func JoinGlobal[K, V, KG, VG, VR any](s Stream[K, V], g GlobalTable[KG, VG], key func(K, V) KG, joiner func(v V, row VG) VR, opts ...StreamOpt) Stream[K, VR] {
	return streamGlobalJoin[K, V, KG, VG, VR](s, g, "KSTREAM-JOIN", key, opts, func(v V, gv any) any {
		if gv == nil {
			return nil
		}
		return joiner(v, engine.As[VG](gv))
	})
}

// LeftJoinGlobal is JoinGlobal that also emits the records with no row in
// g, as joiner(value, zero, false).
func LeftJoinGlobal[K, V, KG, VG, VR any](s Stream[K, V], g GlobalTable[KG, VG], key func(K, V) KG, joiner func(v V, row VG, found bool) VR, opts ...StreamOpt) Stream[K, VR] {
	return streamGlobalJoin[K, V, KG, VG, VR](s, g, "KSTREAM-LEFTJOIN", key, opts, func(v V, gv any) any {
		return joiner(v, engine.As[VG](gv), gv != nil)
	})
}

// tableJoin joins l and r by key: an update on either side looks up the
// other's current row and forwards the change of the joined row, before
// and after the update, computed by joined from the left and right rows
// (nil if absent; a nil result is no row). No output is produced when the joined row neither was nor is
// present, so deletes are forwarded only for rows that existed.
func tableJoin[K, VL, VR, VO any](l Table[K, VL], r Table[K, VR], prefix string, opts []StreamOpt, joined func(lv, rv any) any) Table[K, VO] {
	b := l.b
	o := collect(opts)
	name := o.nodeName(b, prefix)
	side := func(other *getter, pair func(own, other any) any) func() stepFunc {
		return lookupStep(other, func(get lookup, ctx engine.NodeContext, rec processor.Record[any, any]) error {
			if isNull(rec.Key) {
				return nil
			}
			c := rec.Value.(interface{ values() (any, any) })
			newV, oldV := c.values()
			ov, ots, err := get(rec.Key)
			if err != nil {
				return err
			}
			n, old := pair(newV, ov), pair(oldV, ov)
			if n == nil && old == nil {
				return nil
			}
			rec.Value = change[VO]{New: n, Old: old}
			// The joined row is as recent as the later of its two sides
			// (Kafka Streams' KTable-KTable join).
			if ots > rec.Timestamp.UnixMilli() {
				rec.Timestamp = time.UnixMilli(ots).UTC()
			}
			return ctx.Forward(rec, "")
		})
	}
	leftNode, rightNode := name+"-LEFT", name+"-RIGHT"
	addNode[K, change[VL], K, change[VO]](b, leftNode, side(r.get, joined), l.node)
	addNode[K, change[VR], K, change[VO]](b, rightNode, side(l.get, func(own, other any) any { return joined(other, own) }), r.node)
	b.connect(leftNode, r.get)
	b.connect(rightNode, l.get)
	addStep[K, change[VO], K, change[VO]](b, name, pass, leftNode, rightNode)
	get := &getter{stores: append(append([]string(nil), l.get.stores...), r.get.stores...),
		open: func(p processor.StoreProvider) (lookup, error) {
			lget, err := l.get.open(p)
			if err != nil {
				return nil, err
			}
			rget, err := r.get.open(p)
			if err != nil {
				return nil, err
			}
			return func(k any) (any, int64, error) {
				lv, lts, err := lget(k)
				if err != nil {
					return nil, noTimestamp, err
				}
				rv, rts, err := rget(k)
				if err != nil {
					return nil, noTimestamp, err
				}
				return joined(lv, rv), max(lts, rts), nil
			}, nil
		}}
	return Table[K, VO]{b: b, node: name, keys: l.keys, values: serde.Default[VO](), get: get}
}

func (c change[V]) values() (any, any) { return c.New, c.Old }

// JoinTables joins two tables by key into joiner(left, right) for the keys
// both hold (Kafka Streams' KTable-KTable inner join). An update on either
// side updates the joined row; a row that stops joining is deleted. The
// result is not materialized; its values are written with
// serde.Default[VO]() unless WithValueSerde sets one.
func JoinTables[K, VL, VR, VO any](l Table[K, VL], r Table[K, VR], joiner func(left VL, right VR) VO, opts ...StreamOpt) Table[K, VO] {
	return tableJoin[K, VL, VR, VO](l, r, "KTABLE-JOIN", opts, func(lv, rv any) any {
		if lv == nil || rv == nil {
			return nil
		}
		return joiner(engine.As[VL](lv), engine.As[VR](rv))
	})
}

// LeftJoinTables is JoinTables that also holds the keys only l has, as
// joiner(left, zero, false) (Kafka Streams' KTable-KTable left join).
func LeftJoinTables[K, VL, VR, VO any](l Table[K, VL], r Table[K, VR], joiner func(left VL, right VR, rightFound bool) VO, opts ...StreamOpt) Table[K, VO] {
	return tableJoin[K, VL, VR, VO](l, r, "KTABLE-LEFTJOIN", opts, func(lv, rv any) any {
		if lv == nil {
			return nil
		}
		return joiner(engine.As[VL](lv), engine.As[VR](rv), rv != nil)
	})
}

// OuterJoinTables is JoinTables that holds the keys either table has,
// as joiner(left, leftFound, right, rightFound) (Kafka Streams'
// KTable-KTable outer join).
func OuterJoinTables[K, VL, VR, VO any](l Table[K, VL], r Table[K, VR], joiner func(left VL, leftFound bool, right VR, rightFound bool) VO, opts ...StreamOpt) Table[K, VO] {
	return tableJoin[K, VL, VR, VO](l, r, "KTABLE-OUTERJOIN", opts, func(lv, rv any) any {
		if lv == nil && rv == nil {
			return nil
		}
		return joiner(engine.As[VL](lv), lv != nil, engine.As[VR](rv), rv != nil)
	})
}
