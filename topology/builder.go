// Package topology builds the processing graph of a Riffle Streams
// application: sources reading topics, processors transforming records,
// sinks writing topics, and the state stores processors use.
//
// There are two ways to build one. The low-level Processor API (AddSource,
// AddProcessor, AddSink, Builder.AddStore) wires nodes by name, like Kafka
// Streams' Topology class. The typed DSL (FromTopics, Stream, Grouped,
// Table, TableFrom, GlobalTableFrom, the joins) compiles to the same graph,
// inserting repartition topics and materialized stores where needed, like
// Kafka Streams' StreamsBuilder.
//
// Each DSL operation takes the options of its family (see Opt), and serdes
// are typed arguments, so an option that does not apply, or a serde of the
// wrong type, does not compile.
//
// Build validates the graph and returns a Topology. The graph is cut into
// subtopologies at topics: nodes connected by edges or by a shared store form
// one subtopology, and the runtime runs one task per subtopology and
// partition. Describe prints the result as Kafka Streams does.
package topology

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// Partitioner chooses the partition of a record written by a sink, given
// the serialized key and value and the topic's partition count. Returning a
// negative number leaves the choice to the producer's default partitioner
// (murmur2 of the key, as in Kafka).
type Partitioner func(topic string, key, value []byte, numPartitions int32) int32

// Builder accumulates nodes and stores. Its methods record the first error
// and report it from Build, so a topology can be written without checking
// every step.
type Builder struct {
	nodes   map[string]*engine.Node
	order   []string
	stores  map[string]*engine.StoreEntry
	globals map[string]*engine.GlobalStore
	seq     int
	errs    []error
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{nodes: make(map[string]*engine.Node), stores: make(map[string]*engine.StoreEntry),
		globals: make(map[string]*engine.GlobalStore)}
}

func (b *Builder) fail(err error) { b.errs = append(b.errs, err) }

// newName returns a generated node name, like Kafka Streams'
// "KSTREAM-FILTER-0000000003".
func (b *Builder) newName(prefix string) string {
	name := fmt.Sprintf("%s-%010d", prefix, b.seq)
	b.seq++
	return name
}

func (b *Builder) add(n *engine.Node) {
	if n.Name == "" {
		b.fail(errors.New("node name must not be empty"))
		return
	}
	if _, taken := b.nodes[n.Name]; taken {
		b.fail(fmt.Errorf("node name %q is already taken", n.Name))
		return
	}
	b.nodes[n.Name] = n
	b.order = append(b.order, n.Name)
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

// AddSource adds a source node reading topics, deserializing keys and values
// with keys and values.
func AddSource[K, V any](b *Builder, name string, keys serde.Serde[K], values serde.Serde[V], topics ...string) {
	if len(topics) == 0 {
		b.fail(fmt.Errorf("source %q: no topics", name))
		return
	}
	b.add(newSource(name, keys, values, topics, nil, false))
}

// AddSourcePattern adds a source node reading every topic whose name matches
// pattern.
func AddSourcePattern[K, V any](b *Builder, name string, keys serde.Serde[K], values serde.Serde[V], pattern *regexp.Regexp) {
	b.add(newSource(name, keys, values, nil, pattern, false))
}

func newSource[K, V any](name string, keys serde.Serde[K], values serde.Serde[V], topics []string, pattern *regexp.Regexp, internal bool) *engine.Node {
	return &engine.Node{
		Name: name, Kind: engine.SourceNode, Topics: topics, Pattern: pattern, Internal: internal,
		OutKey: typeOf[K](), OutValue: typeOf[V](),
		Decode: func(topic string, kb, vb []byte) (k, v any, err error) {
			// A Kafka null stays null: the serde is not asked about it.
			if kb != nil {
				if k, err = keys.Deserialize(topic, kb); err != nil {
					return nil, nil, fmt.Errorf("deserialize key: %w", err)
				}
			}
			if vb != nil {
				if v, err = values.Deserialize(topic, vb); err != nil {
					return nil, nil, fmt.Errorf("deserialize value: %w", err)
				}
			}
			return k, v, nil
		},
	}
}

// AddProcessor adds a processor node; newProcessor is called once per task
// to create its instance. parents name the nodes feeding it.
func AddProcessor[KIn, VIn, KOut, VOut any](b *Builder, name string, newProcessor func() processor.Processor[KIn, VIn, KOut, VOut], parents ...string) {
	b.add(&engine.Node{
		Name: name, Kind: engine.ProcessorNode, Parents: parents,
		InKey: typeOf[KIn](), InValue: typeOf[VIn](), OutKey: typeOf[KOut](), OutValue: typeOf[VOut](),
		NewProcessor: func() engine.Runnable { return engine.Processor(newProcessor()) },
	})
}

// AddFixedKeyProcessor adds a node running a FixedKeyProcessor.
func AddFixedKeyProcessor[K, VIn, VOut any](b *Builder, name string, newProcessor func() processor.FixedKeyProcessor[K, VIn, VOut], parents ...string) {
	b.add(&engine.Node{
		Name: name, Kind: engine.ProcessorNode, Parents: parents,
		InKey: typeOf[K](), InValue: typeOf[VIn](), OutKey: typeOf[K](), OutValue: typeOf[VOut](),
		NewProcessor: func() engine.Runnable { return engine.Processor(processor.ProcessorOf(newProcessor())) },
	})
}

func encoder[K, V any](keys serde.Serde[K], values serde.Serde[V]) func(string, processor.Record[any, any]) ([]byte, []byte, error) {
	return func(topic string, r processor.Record[any, any]) (kb, vb []byte, err error) {
		// A null is written as a Kafka null without asking the serde.
		if !isNull(r.Key) {
			if kb, err = keys.Serialize(topic, engine.As[K](r.Key)); err != nil {
				return nil, nil, fmt.Errorf("serialize key for topic %s: %w", topic, err)
			}
		}
		if !isNull(r.Value) {
			if vb, err = values.Serialize(topic, engine.As[V](r.Value)); err != nil {
				return nil, nil, fmt.Errorf("serialize value for topic %s: %w", topic, err)
			}
		}
		return kb, vb, nil
	}
}

// AddSink adds a sink node writing to topic.
func AddSink[K, V any](b *Builder, name, topic string, keys serde.Serde[K], values serde.Serde[V], parents ...string) {
	b.add(&engine.Node{
		Name: name, Kind: engine.SinkNode, Parents: parents, Topic: topic,
		InKey: typeOf[K](), InValue: typeOf[V](), Encode: encoder(keys, values),
	})
}

// AddDynamicSink adds a sink node writing each record to the topic topicFor
// returns for it (Kafka Streams' TopicNameExtractor).
func AddDynamicSink[K, V any](b *Builder, name string, topicFor func(processor.Record[K, V]) string, keys serde.Serde[K], values serde.Serde[V], parents ...string) {
	b.add(&engine.Node{
		Name: name, Kind: engine.SinkNode, Parents: parents,
		InKey: typeOf[K](), InValue: typeOf[V](), Encode: encoder(keys, values),
		TopicFor: func(r processor.Record[any, any]) string { return topicFor(engine.Typed[K, V](r)) },
	})
}

// SetPartitioner makes the sink named sink choose partitions with p
// (Kafka Streams' StreamPartitioner).
func (b *Builder) SetPartitioner(sink string, p Partitioner) {
	n, ok := b.nodes[sink]
	if !ok || n.Kind != engine.SinkNode {
		b.fail(fmt.Errorf("set partitioner: %q is not a sink", sink))
		return
	}
	n.Partitioner = p
}

// AddStore registers a state store and connects it to processors.
func (b *Builder) AddStore(sb state.Builder, processors ...string) {
	name := sb.Config().Name
	if _, taken := b.stores[name]; taken {
		b.fail(fmt.Errorf("store name %q is already taken", name))
		return
	}
	b.stores[name] = &engine.StoreEntry{Builder: sb}
	b.ConnectStore(name, processors...)
}

// ConnectStore gives processors access to an already added store.
func (b *Builder) ConnectStore(store string, processors ...string) {
	se, ok := b.stores[store]
	if !ok {
		b.fail(fmt.Errorf("connect store %q: no such store", store))
		return
	}
	for _, p := range processors {
		n, ok := b.nodes[p]
		if !ok || n.Kind != engine.ProcessorNode {
			b.fail(fmt.Errorf("connect store %q: %q is not a processor", store, p))
			continue
		}
		if !slices.Contains(n.Stores, store) {
			n.Stores = append(n.Stores, store)
			se.Processors = append(se.Processors, p)
		}
	}
}

// Build validates the graph and returns the Topology. It reports every
// problem found: errors recorded while building, unknown or ill-typed
// parents, cycles, sources with parents, sinks with children, a topic read
// by two sources, stores not connected to any processor, and joins of
// repartition topics with different partition counts.
func (b *Builder) Build() (*Topology, error) {
	errs := slices.Clone(b.errs)
	children := make(map[string][]string)
	readers := make(map[string]string) // topic -> source node or global store reading it
	for _, name := range slices.Sorted(maps.Keys(b.globals)) {
		readers[b.globals[name].Topic] = "global store " + name
	}
	for _, name := range b.order {
		n := b.nodes[name]
		for _, topic := range n.Topics {
			if other, ok := readers[topic]; ok {
				errs = append(errs, fmt.Errorf("topic %q is read by two sources, %q and %q; read it once and share the stream", topic, other, name))
				continue
			}
			readers[topic] = name
		}
		if n.Kind != engine.SourceNode && len(n.Parents) == 0 {
			errs = append(errs, fmt.Errorf("node %q has no parents", name))
		}
		for _, p := range n.Parents {
			pn, ok := b.nodes[p]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("node %q: unknown parent %q", name, p))
				continue
			case pn.Kind == engine.SinkNode:
				errs = append(errs, fmt.Errorf("node %q: parent %q is a sink", name, p))
				continue
			case pn.OutKey != n.InKey || pn.OutValue != n.InValue:
				errs = append(errs, fmt.Errorf("node %q takes records of (%v, %v) but parent %q emits (%v, %v)",
					name, n.InKey, n.InValue, p, pn.OutKey, pn.OutValue))
			}
			children[p] = append(children[p], name)
		}
	}
	for name, se := range b.stores {
		if len(se.Processors) == 0 {
			errs = append(errs, fmt.Errorf("store %q is not connected to any processor", name))
		}
	}
	if cyc := findCycle(b.order, b.nodes); cyc != nil {
		errs = append(errs, fmt.Errorf("cycle: %v", cyc))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("invalid topology: %w", err)
	}
	g := engine.NewGraph(b.nodes, b.order, children, b.stores, b.globals)
	if err := g.CheckCoPartitioning(); err != nil {
		return nil, fmt.Errorf("invalid topology: %w", err)
	}
	return &Topology{g: g}, nil
}

// findCycle returns the nodes of a cycle along parent edges, or nil.
func findCycle(order []string, nodes map[string]*engine.Node) []string {
	const (
		unseen = iota
		active
		done
	)
	mark := make(map[string]int)
	var stack []string
	var visit func(string) []string
	visit = func(name string) []string {
		switch mark[name] {
		case active:
			i := slices.Index(stack, name)
			return append(slices.Clone(stack[i:]), name)
		case done:
			return nil
		}
		mark[name] = active
		stack = append(stack, name)
		if n, ok := nodes[name]; ok {
			for _, p := range n.Parents {
				if c := visit(p); c != nil {
					return c
				}
			}
		}
		stack = stack[:len(stack)-1]
		mark[name] = done
		return nil
	}
	for _, name := range order {
		if c := visit(name); c != nil {
			return c
		}
	}
	return nil
}
