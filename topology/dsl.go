package topology

import (
	"fmt"
	"reflect"
	"regexp"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// KeyValue is a key and value pair, returned by FlatMap functions.
type KeyValue[K, V any] = state.KeyValue[K, V]

// Stream is an unbounded stream of records with keys K and values V (Kafka
// Streams' KStream). Operations that keep the types are methods; those that
// change them are functions, since Go methods cannot have type parameters.
//
// A stream carries the serdes its records are written with downstream, by
// sinks, repartition topics and stores. An operation that keeps a type
// keeps its serde; one that changes it starts from serde.Default for the
// new type; WithKeySerde and WithValueSerde replace them.
//
// A nil key or value (of a pointer, slice, map or interface type, or a
// Kafka null read by a source) is null: sinks write it as a Kafka null
// without calling the serde, operations that only pass records on keep it
// null, and aggregations skip records with a null key or value, as Kafka
// Streams does.
type Stream[K, V any] struct {
	b      *Builder
	node   string
	keys   serde.Serde[K]
	values serde.Serde[V]
	// keyChanged records that an upstream operation may have changed keys,
	// so grouping or joining must repartition.
	keyChanged bool
}

// FromTopics returns the stream of records in topics, read with
// serde.Default[K]() and serde.Default[V]().
func FromTopics[K, V any](b *Builder, topics []string, opts ...SourceOpt) Stream[K, V] {
	return FromTopicsWith(b, topics, serde.Default[K](), serde.Default[V](), opts...)
}

// FromTopicsWith returns the stream of records in topics, read with keys
// and values (Kafka Streams' Consumed.with).
func FromTopicsWith[K, V any](b *Builder, topics []string, keys serde.Serde[K], values serde.Serde[V], opts ...SourceOpt) Stream[K, V] {
	o := collect(opts)
	s := Stream[K, V]{b: b, node: o.nodeName(b, "KSTREAM-SOURCE"), keys: keys, values: values}
	AddSource(b, s.node, keys, values, topics...)
	b.setTimestamps(s.node, o)
	return s
}

// FromPattern returns the stream of records in every topic matching
// pattern, read with serde.Default[K]() and serde.Default[V]().
func FromPattern[K, V any](b *Builder, pattern *regexp.Regexp, opts ...SourceOpt) Stream[K, V] {
	return FromPatternWith(b, pattern, serde.Default[K](), serde.Default[V](), opts...)
}

// FromPatternWith returns the stream of records in every topic matching
// pattern, read with keys and values.
func FromPatternWith[K, V any](b *Builder, pattern *regexp.Regexp, keys serde.Serde[K], values serde.Serde[V], opts ...SourceOpt) Stream[K, V] {
	o := collect(opts)
	s := Stream[K, V]{b: b, node: o.nodeName(b, "KSTREAM-SOURCE"), keys: keys, values: values}
	AddSourcePattern(b, s.node, keys, values, pattern)
	b.setTimestamps(s.node, o)
	return s
}

// Name returns the name of the node producing the stream.
func (s Stream[K, V]) Name() string { return s.node }

// WithKeySerde returns the stream with its keys written with keys
// downstream (by sinks, repartition topics and stores).
func (s Stream[K, V]) WithKeySerde(keys serde.Serde[K]) Stream[K, V] {
	s.keys = keys
	return s
}

// WithValueSerde returns the stream with its values written with values
// downstream (by sinks, repartition topics and stores).
func (s Stream[K, V]) WithValueSerde(values serde.Serde[V]) Stream[K, V] {
	s.values = values
	return s
}

// keep returns in as a Serde[U] when T and U are the same type, and
// serde.Default[U]() otherwise: an operation keeps the serde of a type it
// does not change.
func keep[T, U any](in serde.Serde[T]) serde.Serde[U] {
	if s, ok := any(in).(serde.Serde[U]); ok && reflect.TypeFor[T]() == reflect.TypeFor[U]() {
		return s
	}
	return serde.Default[U]()
}

// isNull reports whether an erased key or value is null: a nil interface
// (a Kafka null read by a source) or a nil pointer, slice, map, channel,
// function or interface.
func isNull(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// stepFunc processes one erased record of a DSL node.
type stepFunc func(ctx engine.NodeContext, r processor.Record[any, any]) error

// erasedFunc is a DSL processor working on erased records, so that records
// it passes on keep a null key or value.
type erasedFunc struct {
	ctx engine.NodeContext
	fn  stepFunc
}

func (p *erasedFunc) Init(ctx engine.NodeContext) error { p.ctx = ctx; return nil }
func (p *erasedFunc) Process(r processor.Record[any, any]) error {
	return p.fn(p.ctx, r)
}
func (p *erasedFunc) Close() error { return nil }

// addNode adds a DSL processor node taking (K, V) and emitting (KR, VR)
// after parents; newFn makes each task's instance.
func addNode[K, V, KR, VR any](b *Builder, name string, newFn func() stepFunc, parents ...string) {
	b.add(&engine.Node{
		Name: name, Kind: engine.ProcessorNode, Parents: parents,
		InKey: typeOf[K](), InValue: typeOf[V](), OutKey: typeOf[KR](), OutValue: typeOf[VR](),
		NewProcessor: func() engine.Runnable { return &erasedFunc{fn: newFn()} },
	})
}

// addStep adds a stateless DSL processor node running fn.
func addStep[K, V, KR, VR any](b *Builder, name string, fn stepFunc, parents ...string) {
	addNode[K, V, KR, VR](b, name, func() stepFunc { return fn }, parents...)
}

// step adds a stateless DSL node after s and returns its output stream.
func step[K, V, KR, VR any](s Stream[K, V], prefix string, keyChanged bool, keys serde.Serde[KR], values serde.Serde[VR],
	opts []StreamOpt, fn stepFunc) Stream[KR, VR] {
	o := collect(opts)
	out := Stream[KR, VR]{b: s.b, node: o.nodeName(s.b, prefix), keyChanged: s.keyChanged || keyChanged, keys: keys, values: values}
	addStep[K, V, KR, VR](s.b, out.node, fn, s.node)
	return out
}

func pass(ctx engine.NodeContext, r processor.Record[any, any]) error { return ctx.Forward(r, "") }

// Filter keeps the records for which keep returns true.
func (s Stream[K, V]) Filter(keep func(K, V) bool, opts ...StreamOpt) Stream[K, V] {
	return step(s, "KSTREAM-FILTER", false, s.keys, s.values, opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			if keep(engine.As[K](r.Key), engine.As[V](r.Value)) {
				return ctx.Forward(r, "")
			}
			return nil
		})
}

// FilterNot drops the records for which drop returns true.
func (s Stream[K, V]) FilterNot(drop func(K, V) bool, opts ...StreamOpt) Stream[K, V] {
	return s.Filter(func(k K, v V) bool { return !drop(k, v) }, opts...)
}

// Peek calls fn for each record and passes the record on unchanged.
func (s Stream[K, V]) Peek(fn func(K, V), opts ...StreamOpt) Stream[K, V] {
	return step(s, "KSTREAM-PEEK", false, s.keys, s.values, opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			fn(engine.As[K](r.Key), engine.As[V](r.Value))
			return ctx.Forward(r, "")
		})
}

// Foreach calls fn for each record; the stream ends there (Kafka Streams'
// foreach).
func (s Stream[K, V]) Foreach(fn func(K, V), opts ...StreamOpt) {
	step(s, "KSTREAM-FOREACH", false, s.keys, s.values, opts,
		func(_ engine.NodeContext, r processor.Record[any, any]) error {
			fn(engine.As[K](r.Key), engine.As[V](r.Value))
			return nil
		})
}

// Merge returns the records of s and other interleaved in processing order.
func (s Stream[K, V]) Merge(other Stream[K, V], opts ...StreamOpt) Stream[K, V] {
	o := collect(opts)
	out := Stream[K, V]{b: s.b, node: o.nodeName(s.b, "KSTREAM-MERGE"), keys: s.keys, values: s.values,
		keyChanged: s.keyChanged || other.keyChanged}
	addStep[K, V, K, V](s.b, out.node, pass, s.node, other.node)
	return out
}

// Splitter splits a stream into named branches (Kafka Streams'
// BranchedKStream). Add branches with Branch, then finish with
// DefaultBranch or NoDefaultBranch.
type Splitter[K, V any] struct {
	s        Stream[K, V]
	node     string
	prefix   string
	branches *[]branch[K, V]
	out      map[string]Stream[K, V]
}

type branch[K, V any] struct {
	child string
	keep  func(K, V) bool
}

// Split starts splitting s: each record goes to the first branch whose
// predicate it satisfies, to the default branch if none does, or nowhere.
// Named sets the prefix of the branch names (Kafka Streams' split(Named)).
func (s Stream[K, V]) Split(opts ...StreamOpt) *Splitter[K, V] {
	o := collect(opts)
	node := s.b.newName("KSTREAM-BRANCH")
	prefix := o.name
	if prefix == "" {
		prefix = node + "-"
	}
	branches := new([]branch[K, V])
	addStep[K, V, K, V](s.b, node, func(ctx engine.NodeContext, r processor.Record[any, any]) error {
		k, v := engine.As[K](r.Key), engine.As[V](r.Value)
		for _, br := range *branches {
			if br.keep == nil || br.keep(k, v) {
				return ctx.Forward(r, br.child)
			}
		}
		return nil
	}, s.node)
	return &Splitter[K, V]{s: s, node: node, prefix: prefix, branches: branches, out: make(map[string]Stream[K, V])}
}

// Branch adds a branch named prefix+name for the records keep accepts that
// no earlier branch took.
func (sp *Splitter[K, V]) Branch(name string, keep func(K, V) bool) *Splitter[K, V] {
	if keep == nil {
		sp.s.b.fail(fmt.Errorf("split branch %q: nil predicate", name))
		return sp
	}
	sp.add(name, keep)
	return sp
}

func (sp *Splitter[K, V]) add(name string, keep func(K, V) bool) {
	full := sp.prefix + name
	if _, taken := sp.out[full]; taken {
		sp.s.b.fail(fmt.Errorf("split: branch %q added twice", full))
		return
	}
	*sp.branches = append(*sp.branches, branch[K, V]{child: full, keep: keep})
	in := Stream[K, V]{b: sp.s.b, node: sp.node, keys: sp.s.keys, values: sp.s.values, keyChanged: sp.s.keyChanged}
	sp.out[full] = step(in, "", false, sp.s.keys, sp.s.values, []StreamOpt{Named(full)}, pass)
}

// DefaultBranch adds a branch named prefix+name for the records no other
// branch took, and returns every branch by its full name.
func (sp *Splitter[K, V]) DefaultBranch(name string) map[string]Stream[K, V] {
	sp.add(name, nil)
	return sp.out
}

// NoDefaultBranch drops the records no branch took, and returns every
// branch by its full name.
func (sp *Splitter[K, V]) NoDefaultBranch() map[string]Stream[K, V] { return sp.out }

// To writes the stream to topic with the stream's serdes.
func (s Stream[K, V]) To(topic string, opts ...SinkOpt) {
	o := collect(opts)
	name := o.nodeName(s.b, "KSTREAM-SINK")
	AddSink(s.b, name, topic, s.keys, s.values, s.node)
	if o.partitioner != nil {
		s.b.SetPartitioner(name, o.partitioner)
	}
}

// ToDynamic writes each record to the topic topicFor chooses for it.
func (s Stream[K, V]) ToDynamic(topicFor func(processor.Record[K, V]) string, opts ...SinkOpt) {
	o := collect(opts)
	name := o.nodeName(s.b, "KSTREAM-SINK")
	AddDynamicSink(s.b, name, topicFor, s.keys, s.values, s.node)
	if o.partitioner != nil {
		s.b.SetPartitioner(name, o.partitioner)
	}
}

// Repartition writes s to an internal topic and reads it back, so that
// records are partitioned by their current key (Kafka Streams'
// repartition). The topic is "<application id>-<name>-repartition", with
// the name from Named or generated; NumPartitions sets its partition count
// and WithPartitioner how records are spread.
func (s Stream[K, V]) Repartition(opts ...RepartitionOpt) Stream[K, V] {
	o := collect(opts)
	name := o.name
	if name == "" {
		name = s.b.newName("KSTREAM-REPARTITION")
	}
	return repartition(s, name+"-repartition", o.partitions, o.partitioner)
}

// Map transforms each record's key and value. Grouping or joining the
// result repartitions it.
func Map[K, V, KR, VR any](s Stream[K, V], fn func(K, V) (KR, VR), opts ...StreamOpt) Stream[KR, VR] {
	return step(s, "KSTREAM-MAP", true, keep[K, KR](s.keys), keep[V, VR](s.values), opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			k, v := fn(engine.As[K](r.Key), engine.As[V](r.Value))
			return ctx.Forward(processor.Record[any, any]{Key: k, Value: v, Timestamp: r.Timestamp, Headers: r.Headers}, "")
		})
}

// SelectKey sets each record's key to key(k, v), keeping its value.
// Grouping or joining the result repartitions it.
func SelectKey[K, V, KR any](s Stream[K, V], key func(K, V) KR, opts ...StreamOpt) Stream[KR, V] {
	return selectKey(s, "KSTREAM-KEY-SELECT", key, opts)
}

func selectKey[K, V, KR any](s Stream[K, V], prefix string, key func(K, V) KR, opts []StreamOpt) Stream[KR, V] {
	return step(s, prefix, true, keep[K, KR](s.keys), s.values, opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			r.Key = key(engine.As[K](r.Key), engine.As[V](r.Value))
			return ctx.Forward(r, "")
		})
}

// MapValues transforms each record's value, keeping its key.
func MapValues[K, V, VR any](s Stream[K, V], fn func(K, V) VR, opts ...StreamOpt) Stream[K, VR] {
	return step(s, "KSTREAM-MAPVALUES", false, s.keys, keep[V, VR](s.values), opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			r.Value = fn(engine.As[K](r.Key), engine.As[V](r.Value))
			return ctx.Forward(r, "")
		})
}

// FlatMap turns each record into zero or more records with new keys and
// values. Grouping or joining the result repartitions it.
func FlatMap[K, V, KR, VR any](s Stream[K, V], fn func(K, V) []KeyValue[KR, VR], opts ...StreamOpt) Stream[KR, VR] {
	return step(s, "KSTREAM-FLATMAP", true, keep[K, KR](s.keys), keep[V, VR](s.values), opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			for _, kv := range fn(engine.As[K](r.Key), engine.As[V](r.Value)) {
				if err := ctx.Forward(processor.Record[any, any]{Key: kv.Key, Value: kv.Value, Timestamp: r.Timestamp, Headers: r.Headers}, ""); err != nil {
					return err
				}
			}
			return nil
		})
}

// FlatMapValues turns each record into zero or more records with the same
// key.
func FlatMapValues[K, V, VR any](s Stream[K, V], fn func(K, V) []VR, opts ...StreamOpt) Stream[K, VR] {
	return step(s, "KSTREAM-FLATMAPVALUES", false, s.keys, keep[V, VR](s.values), opts,
		func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			for _, v := range fn(engine.As[K](r.Key), engine.As[V](r.Value)) {
				if err := ctx.Forward(processor.Record[any, any]{Key: r.Key, Value: v, Timestamp: r.Timestamp, Headers: r.Headers}, ""); err != nil {
					return err
				}
			}
			return nil
		})
}

// Process attaches a Processor, created once per task by newProcessor.
// Connect its stores with WithStores. Grouping or joining the result
// repartitions it, since the processor may change keys.
func Process[K, V, KR, VR any](s Stream[K, V], newProcessor func() processor.Processor[K, V, KR, VR], opts ...ProcessOpt) Stream[KR, VR] {
	o := collect(opts)
	out := Stream[KR, VR]{b: s.b, node: o.nodeName(s.b, "KSTREAM-PROCESSOR"), keyChanged: true,
		keys: keep[K, KR](s.keys), values: keep[V, VR](s.values)}
	AddProcessor(s.b, out.node, newProcessor, s.node)
	for _, store := range o.stores {
		s.b.ConnectStore(store, out.node)
	}
	return out
}

// ProcessValues attaches a FixedKeyProcessor; keys are unchanged, so no
// repartition is needed after it.
func ProcessValues[K, V, VR any](s Stream[K, V], newProcessor func() processor.FixedKeyProcessor[K, V, VR], opts ...ProcessOpt) Stream[K, VR] {
	o := collect(opts)
	out := Stream[K, VR]{b: s.b, node: o.nodeName(s.b, "KSTREAM-PROCESSVALUES"), keyChanged: s.keyChanged,
		keys: s.keys, values: keep[V, VR](s.values)}
	AddFixedKeyProcessor(s.b, out.node, newProcessor, s.node)
	for _, store := range o.stores {
		s.b.ConnectStore(store, out.node)
	}
	return out
}

// repartition writes s to the internal topic name and reads it back, so
// that records are partitioned by their current key. A partition count of
// 0 lets the runtime choose it.
func repartition[K, V any](s Stream[K, V], name string, partitions int32, p Partitioner) Stream[K, V] {
	b := s.b
	sink := b.newName("KSTREAM-SINK")
	AddSink(b, sink, name, s.keys, s.values, s.node)
	if n, ok := b.nodes[sink]; ok {
		n.Internal = true
		n.Partitions = partitions
		n.Partitioner = p
	}
	src := b.newName("KSTREAM-SOURCE")
	b.add(newSource(src, s.keys, s.values, []string{name}, nil, true))
	return Stream[K, V]{b: b, node: src, keys: s.keys, values: s.values}
}
