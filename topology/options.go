package topology

import (
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// Opt is an option of DSL operations. Each operation takes the options of
// its family (SourceOpt, StreamOpt, ProcessOpt, GroupOpt, MaterializeOpt,
// SinkOpt, RepartitionOpt), so an option that does not apply to it does not
// compile. Serdes are not options: they are typed arguments (FromTopicsWith,
// AggregateWith, ...) or methods (Stream.WithValueSerde, ...), so a serde of
// the wrong type does not compile either.
type Opt interface{ apply(*options) }

// SourceOpt configures a source: FromTopics, FromPattern and their With
// variants.
type SourceOpt interface {
	Opt
	sourceOpt()
}

// StreamOpt configures a stateless stream or table operation (Filter, Map,
// MapValues, Split, ToStream, joins, ...).
type StreamOpt interface {
	Opt
	streamOpt()
}

// ProcessOpt configures Process and ProcessValues.
type ProcessOpt interface {
	Opt
	processOpt()
}

// GroupOpt configures a grouping: GroupByKey, GroupBy and GroupTableBy.
type GroupOpt interface {
	Opt
	groupOpt()
}

// MaterializeOpt configures an operation that materializes a table into a
// store: the aggregations (Count, Reduce, Aggregate) and the tables read
// from topics (TableFrom, GlobalTableFrom).
type MaterializeOpt interface {
	Opt
	materializeOpt()
}

// SinkOpt configures a sink: To and ToDynamic.
type SinkOpt interface {
	Opt
	sinkOpt()
}

// RepartitionOpt configures an explicit Repartition.
type RepartitionOpt interface {
	Opt
	repartitionOpt()
}

type options struct {
	name        string
	storeName   string
	storeOpts   []state.Opt
	stores      []string
	partitioner Partitioner
	partitions  int32
	timestamps  func(r processor.Record[any, any], partitionTime, now time.Time) time.Time
}

func collect[O Opt](opts []O) options {
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	return o
}

func (o options) nodeName(b *Builder, prefix string) string {
	if o.name != "" {
		return o.name
	}
	return b.newName(prefix)
}

// NameOpt names what an operation creates; it is an option of every
// family.
type NameOpt interface {
	SourceOpt
	StreamOpt
	ProcessOpt
	GroupOpt
	MaterializeOpt
	SinkOpt
	RepartitionOpt
}

type nameOpt string

func (n nameOpt) apply(o *options) { o.name = string(n) }
func (nameOpt) sourceOpt()         {}
func (nameOpt) streamOpt()         {}
func (nameOpt) processOpt()        {}
func (nameOpt) groupOpt()          {}
func (nameOpt) materializeOpt()    {}
func (nameOpt) sinkOpt()           {}
func (nameOpt) repartitionOpt()    {}

// Named names the node an operation creates (Kafka Streams' Named.as). For
// GroupBy, GroupByKey and Repartition it names the repartition topic
// instead: "<application id>-<name>-repartition". Default: a generated name
// such as "KSTREAM-FILTER-0000000003".
func Named(name string) NameOpt { return nameOpt(name) }

type materialized struct {
	store string
	opts  []state.Opt
}

func (m materialized) apply(o *options) { o.storeName, o.storeOpts = m.store, m.opts }
func (materialized) materializeOpt()    {}

// Materialized names the store a table is materialized into and configures
// it (Kafka Streams' Materialized.as). The store's changelog topic is
// "<application id>-<store>-changelog", and a repartition topic an
// aggregation needs is named "<application id>-<store>-repartition" unless
// the grouping is Named. Default: a generated name such as
// "KSTREAM-AGGREGATE-STATE-STORE-0000000004" and a logged, cached Pebble
// store.
func Materialized(store string, opts ...state.Opt) MaterializeOpt {
	return materialized{store: store, opts: opts}
}

type withStores []string

func (w withStores) apply(o *options) { o.stores = append(o.stores, w...) }
func (withStores) processOpt()        {}

// WithStores connects already added stores to the processor Process or
// ProcessValues creates (Kafka Streams' process(supplier, stateStoreNames)).
// Default: none.
func WithStores(names ...string) ProcessOpt { return withStores(names) }

// PartitionOpt is an option of sinks and explicit repartitions.
type PartitionOpt interface {
	SinkOpt
	RepartitionOpt
}

type partitionerOpt struct{ p Partitioner }

func (p partitionerOpt) apply(o *options) { o.partitioner = p.p }
func (partitionerOpt) sinkOpt()           {}
func (partitionerOpt) repartitionOpt()    {}

// WithPartitioner makes a sink or repartition choose each record's
// partition with p (Kafka Streams' Produced.streamPartitioner). Default:
// murmur2 of the serialized key, as Kafka's producer does.
func WithPartitioner(p Partitioner) PartitionOpt { return partitionerOpt{p} }

type numPartitions int32

func (n numPartitions) apply(o *options) { o.partitions = int32(n) }
func (numPartitions) repartitionOpt()    {}

// NumPartitions sets the partition count of the topic an explicit
// Repartition creates (Kafka Streams' Repartitioned.withNumberOfPartitions).
// Default: the partition count of the subtopology writing it.
func NumPartitions(n int32) RepartitionOpt { return numPartitions(n) }
