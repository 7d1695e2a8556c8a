package topology

import (
	"encoding/binary"
	"errors"
	"hash/fnv"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// A foreign-key join (KIP-213) runs in two subtopologies. The left one
// sends a subscription for each left row to the partition of its foreign
// key (the subscription topic, co-partitioned with the right table); the
// right one keeps the subscriptions per foreign key and answers each
// subscription, and each right update, with the right row for every
// subscribed left key (the response topic, co-partitioned with the left
// table). The left side joins a response only if it answers the left row
// as it is now: responses carry a hash of the left value they answer.

// Subscription instructions.
const (
	subscribe   byte = iota // store the subscription and answer it
	unsubscribe             // drop the subscription, the row moved to another key
)

// subscription is the value of a subscription record: the instruction, the
// hash of the left value, and the left key's bytes.
func encodeSubscription(instruction byte, hash uint64, key []byte) []byte {
	out := make([]byte, 9, 9+len(key))
	out[0] = instruction
	binary.BigEndian.PutUint64(out[1:], hash)
	return append(out, key...)
}

var errFKRecord = errors.New("malformed foreign-key join record")

func decodeSubscription(b []byte) (instruction byte, hash uint64, key []byte, err error) {
	if len(b) < 9 {
		return 0, 0, nil, errFKRecord
	}
	return b[0], binary.BigEndian.Uint64(b[1:9]), b[9:], nil
}

// response is the value of a response record: the hash of the left value
// answered, then the right row's bytes if there is one.
func encodeResponse(hash uint64, right []byte, found bool) []byte {
	out := make([]byte, 9, 9+len(right))
	if found {
		out[0] = 1
	}
	binary.BigEndian.PutUint64(out[1:], hash)
	return append(out, right...)
}

func decodeResponse(b []byte) (hash uint64, right []byte, found bool, err error) {
	if len(b) < 9 {
		return 0, nil, false, errFKRecord
	}
	return binary.BigEndian.Uint64(b[1:9]), b[9:], b[0] == 1, nil
}

// subscriptionKey orders the subscription store by foreign key, then left
// key, so that a prefix scan finds a foreign key's subscribers.
func subscriptionKey(fk, key []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(len(fk)))
	return append(append(out, fk...), key...)
}

func hashOf(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// fkJoin joins each row of l with the row of r under foreignKey(row);
// joined returns the result for a left value and the right row (nil if
// absent), or nil for no row.
func fkJoin[K, VL, KO, VR, VO any](l Table[K, VL], r Table[KO, VR], prefix string, foreignKey func(VL) KO,
	opts []MaterializeOpt, joined func(vl VL, vr any) any) Table[K, VO] {
	b := l.b
	o := collect(opts)
	name := o.nodeName(b, prefix)
	storeName := o.storeNameOr(b, prefix)
	subTopic := name + "-subscription-registration-topic"
	respTopic := name + "-subscription-response-topic"
	subStore := name + "-subscription-store"
	bytesSerde := serde.Bytes()
	raw := func(v any) []byte { return engine.As[[]byte](v) }
	rawRecord := func(k, v []byte, like processor.Record[any, any]) processor.Record[any, any] {
		return processor.Record[any, any]{Key: k, Value: v, Timestamp: like.Timestamp, Headers: like.Headers}
	}

	// Left side: subscribe each row to its foreign key's partition and
	// unsubscribe it from the one it left. A deleted row, or one without a
	// foreign key, is answered at once with no right row.
	subscriber, subSink, directSink := name+"-SUBSCRIBE", name+"-SUBSCRIPTION-SINK", name+"-DIRECT-RESPONSE-SINK"
	addStep[K, change[VL], []byte, []byte](b, subscriber, func(ctx engine.NodeContext, rec processor.Record[any, any]) error {
		if isNull(rec.Key) {
			return nil
		}
		kb, err := l.keys.Serialize(subTopic, engine.As[K](rec.Key))
		if err != nil {
			return err
		}
		c := rec.Value.(change[VL])
		var newFK, oldFK any
		if c.New != nil {
			newFK = foreignKey(engine.As[VL](c.New))
		}
		if c.Old != nil {
			oldFK = foreignKey(engine.As[VL](c.Old))
		}
		if !isNull(oldFK) && (isNull(newFK) || !sameKey(oldFK, newFK)) {
			fkb, err := r.keys.Serialize(subTopic, engine.As[KO](oldFK))
			if err != nil {
				return err
			}
			if err := ctx.Forward(rawRecord(fkb, encodeSubscription(unsubscribe, 0, kb), rec), subSink); err != nil {
				return err
			}
		}
		var hash uint64
		if c.New != nil {
			vb, err := l.values.Serialize(subTopic, engine.As[VL](c.New))
			if err != nil {
				return err
			}
			hash = hashOf(vb)
		}
		if isNull(newFK) {
			return ctx.Forward(rawRecord(kb, encodeResponse(hash, nil, false), rec), directSink)
		}
		fkb, err := r.keys.Serialize(subTopic, engine.As[KO](newFK))
		if err != nil {
			return err
		}
		return ctx.Forward(rawRecord(fkb, encodeSubscription(subscribe, hash, kb), rec), subSink)
	}, l.node)
	AddSink(b, subSink, subTopic, bytesSerde, bytesSerde, subscriber)
	AddSink(b, directSink, respTopic, bytesSerde, bytesSerde, subscriber)

	// Right side: keep the subscriptions per foreign key; answer each
	// subscription, and each update of a right row, for every subscriber.
	subSource := b.newName("KSTREAM-SOURCE")
	b.add(newSource(subSource, bytesSerde, bytesSerde, []string{subTopic}, nil, true))
	respond := func(ctx engine.NodeContext, rec processor.Record[any, any], kb []byte, hash uint64, right any) error {
		var rb []byte
		if right != nil {
			var err error
			if rb, err = r.values.Serialize(respTopic, engine.As[VR](right)); err != nil {
				return err
			}
		}
		return ctx.Forward(rawRecord(kb, encodeResponse(hash, rb, right != nil), rec), "")
	}
	subscriptions, updates := name+"-SUBSCRIPTIONS", name+"-RIGHT-UPDATES"
	addNode[[]byte, []byte, []byte, []byte](b, subscriptions, func() stepFunc {
		var store state.KeyValueStore[[]byte, []byte]
		var get lookup
		return func(ctx engine.NodeContext, rec processor.Record[any, any]) error {
			if store == nil {
				var err error
				if store, err = processor.Store[state.KeyValueStore[[]byte, []byte]](ctx, subStore); err != nil {
					return err
				}
				if get, err = r.get.open(ctx); err != nil {
					return err
				}
			}
			fkb := raw(rec.Key)
			instruction, hash, kb, err := decodeSubscription(raw(rec.Value))
			if err != nil {
				return err
			}
			sk := subscriptionKey(fkb, kb)
			if instruction == unsubscribe {
				_, _, err := store.Delete(sk)
				return err
			}
			if err := store.Put(sk, binary.BigEndian.AppendUint64(nil, hash)); err != nil {
				return err
			}
			fk, err := r.keys.Deserialize(subTopic, fkb)
			if err != nil {
				return err
			}
			right, _, err := get(fk)
			if err != nil {
				return err
			}
			return respond(ctx, rec, kb, hash, right)
		}
	}, subSource)
	addNode[KO, change[VR], []byte, []byte](b, updates, storeStep(subStore, func(store state.KeyValueStore[[]byte, []byte], ctx engine.NodeContext, rec processor.Record[any, any]) error {
		if isNull(rec.Key) {
			return nil
		}
		fkb, err := r.keys.Serialize(subTopic, engine.As[KO](rec.Key))
		if err != nil {
			return err
		}
		prefix := subscriptionKey(fkb, nil)
		right := rec.Value.(change[VR]).New
		for e, err := range store.PrefixScan(prefix) {
			if err != nil {
				return err
			}
			if len(e.Value) != 8 {
				return errFKRecord
			}
			if err := respond(ctx, rec, e.Key[len(prefix):], binary.BigEndian.Uint64(e.Value), right); err != nil {
				return err
			}
		}
		return nil
	}), r.node)
	b.AddStore(state.KeyValueBuilder(subStore, bytesSerde, bytesSerde), subscriptions, updates)
	b.connect(subscriptions, r.get)
	AddSink(b, b.newName("KSTREAM-SINK"), respTopic, bytesSerde, bytesSerde, subscriptions, updates)

	// Left side again: join each response that answers the left row as it
	// is now, and keep the result in a store so that deletes are forwarded
	// only for rows that existed.
	respSource := b.newName("KSTREAM-SOURCE")
	b.add(newSource(respSource, bytesSerde, bytesSerde, []string{respTopic}, nil, true))
	for _, n := range []string{subSource, respSource} {
		if node, ok := b.nodes[n]; ok {
			node.ReaderPartitioned = true
		}
	}
	for _, n := range []string{subSink, directSink} {
		if node, ok := b.nodes[n]; ok {
			node.Internal = true
		}
	}
	for _, node := range b.nodes {
		if node.Kind == engine.SinkNode && node.Topic == respTopic {
			node.Internal = true
		}
	}
	values := serde.Default[VO]()
	t := Table[K, VO]{b: b, node: name, keys: l.keys, values: values, store: storeName, get: storeGetter[K, VO](storeName)}
	addNode[[]byte, []byte, K, change[VO]](b, name, func() stepFunc {
		var results state.KeyValueStore[K, VO]
		var get lookup
		return func(ctx engine.NodeContext, rec processor.Record[any, any]) error {
			if results == nil {
				var err error
				if results, err = processor.Store[state.KeyValueStore[K, VO]](ctx, storeName); err != nil {
					return err
				}
				if get, err = l.get.open(ctx); err != nil {
					return err
				}
			}
			hash, rb, found, err := decodeResponse(raw(rec.Value))
			if err != nil {
				return err
			}
			k, err := l.keys.Deserialize(respTopic, raw(rec.Key))
			if err != nil {
				return err
			}
			left, _, err := get(k)
			if err != nil {
				return err
			}
			var res any
			if left != nil {
				vb, err := l.values.Serialize(subTopic, engine.As[VL](left))
				if err != nil {
					return err
				}
				if hashOf(vb) != hash {
					return nil // answers an older left value; a newer answer follows
				}
				var right any
				if found {
					if right, err = r.values.Deserialize(respTopic, rb); err != nil {
						return err
					}
				}
				res = joined(engine.As[VL](left), right)
			}
			old, had, err := results.Get(k)
			if err != nil {
				return err
			}
			c := change[VO]{New: res}
			if had {
				c.Old = old
			}
			switch {
			case res != nil:
				err = results.Put(k, engine.As[VO](res))
			case had:
				_, _, err = results.Delete(k)
			default:
				return nil
			}
			if err != nil {
				return err
			}
			return ctx.Forward(processor.Record[any, any]{Key: k, Value: c, Timestamp: rec.Timestamp, Headers: rec.Headers}, "")
		}
	}, respSource)
	b.AddStore(state.KeyValueBuilder(storeName, l.keys, values, o.storeOpts...), name)
	b.connect(name, l.get)
	return t
}

// JoinForeignKey joins each row of l with the row of r whose key is
// foreignKey(row), into joiner(row, right) (Kafka Streams' foreign-key
// KTable-KTable inner join, KIP-213). l and r need not be co-partitioned:
// the join goes through two internal topics,
// "<application id>-<name>-subscription-registration-topic", with r's
// partition count, and "<application id>-<name>-subscription-response-topic",
// with l's. An update of either side updates the joined rows; a joined row
// that stops joining is deleted. The result is materialized (Materialized
// names the store) with serde.Default[VO]() for its values.
func JoinForeignKey[K, VL, KO, VR, VO any](l Table[K, VL], r Table[KO, VR], foreignKey func(VL) KO, joiner func(left VL, right VR) VO, opts ...MaterializeOpt) Table[K, VO] {
	return fkJoin[K, VL, KO, VR, VO](l, r, "KTABLE-FK-JOIN", foreignKey, opts, func(vl VL, vr any) any {
		if vr == nil {
			return nil
		}
		return joiner(vl, engine.As[VR](vr))
	})
}

// LeftJoinForeignKey is JoinForeignKey that also holds the rows of l with
// no right row (or a null foreign key), as joiner(row, zero, false).
func LeftJoinForeignKey[K, VL, KO, VR, VO any](l Table[K, VL], r Table[KO, VR], foreignKey func(VL) KO, joiner func(left VL, right VR, found bool) VO, opts ...MaterializeOpt) Table[K, VO] {
	return fkJoin[K, VL, KO, VR, VO](l, r, "KTABLE-FK-LEFTJOIN", foreignKey, opts, func(vl VL, vr any) any {
		return joiner(vl, engine.As[VR](vr), vr != nil)
	})
}
