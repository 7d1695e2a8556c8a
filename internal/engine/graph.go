// Package engine executes topologies: it holds the type-erased processing
// graph that package topology builds, and the Task that runs one
// subtopology for one partition. Both the streams runtime and the
// streamstest driver run topologies through it, so they cannot drift: the
// store stack (engine, changelogging, caching) is assembled here too.
//
// Users never see this package; they write topologies with package
// topology and run them with package streams.
package engine

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// Kind says what a Node does.
type Kind int

const (
	// SourceNode reads topics.
	SourceNode Kind = iota
	// ProcessorNode runs a processor.
	ProcessorNode
	// SinkNode writes a topic.
	SinkNode
)

// Node is one vertex of the graph, with its types erased.
type Node struct {
	Name    string
	Kind    Kind
	Parents []string
	Stores  []string
	// Globals names the global stores the node reads.
	Globals []string

	// InKey, InValue, OutKey and OutValue are the types flowing in and
	// out, for validation.
	InKey, InValue, OutKey, OutValue reflect.Type

	// Topics, Pattern, Internal and Decode describe a source. Internal
	// topics (repartition topics) are named without the application id.
	Topics   []string
	Pattern  *regexp.Regexp
	Internal bool
	Decode   func(topic string, key, value []byte) (any, any, error)
	// ExtractTimestamp, if not nil, gives a source's records their event
	// time (see Task.Process).
	ExtractTimestamp func(r processor.Record[any, any], partitionTime, now time.Time) time.Time
	// ReaderPartitioned marks an internal source whose topic must have the
	// partition count of the subtopology's other sources, which it is
	// co-partitioned with, rather than that of its writer.
	ReaderPartitioned bool

	// NewProcessor creates a processor node's instance, once per task.
	NewProcessor func() Runnable

	// Topic, TopicFor, Encode and Partitioner describe a sink; Topic is
	// empty when TopicFor chooses the topic per record. Partitions, if not
	// 0, is the partition count an internal sink's topic is created with.
	Partitions  int32
	Topic       string
	TopicFor    func(r processor.Record[any, any]) string
	Encode      func(topic string, r processor.Record[any, any]) ([]byte, []byte, error)
	Partitioner func(topic string, key, value []byte, numPartitions int32) int32
}

// StoreEntry is a store of the graph and the processors connected to it.
type StoreEntry struct {
	Builder    state.Builder
	Processors []string
}

// GlobalStore is a store holding every partition of Topic, read by any
// task (Kafka Streams' global store). Its contents are the topic's records
// as they are: keys to values, a tombstone deleting its key.
type GlobalStore struct {
	Topic   string
	Builder state.Builder
}

// Graph is a validated processing graph cut into subtopologies.
type Graph struct {
	Nodes    map[string]*Node
	Order    []string
	Children map[string][]string
	Stores   map[string]*StoreEntry
	Globals  map[string]*GlobalStore
	subs     []*subtopology
}

type subtopology struct {
	id     int
	nodes  []string
	stores []string
}

// NewGraph cuts a validated graph into subtopologies: nodes connected by
// edges or by a shared store form one.
func NewGraph(nodes map[string]*Node, order []string, children map[string][]string, stores map[string]*StoreEntry, globals map[string]*GlobalStore) *Graph {
	g := &Graph{Nodes: nodes, Order: order, Children: children, Stores: stores, Globals: globals}
	parent := make(map[string]string)
	var find func(string) string
	find = func(x string) string {
		if p, ok := parent[x]; ok && p != x {
			r := find(p)
			parent[x] = r
			return r
		}
		return x
	}
	union := func(a, b string) { parent[find(a)] = find(b) }
	for _, name := range order {
		for _, p := range nodes[name].Parents {
			union(name, p)
		}
	}
	for _, se := range stores {
		for _, p := range se.Processors[1:] {
			union(se.Processors[0], p)
		}
	}
	byRoot := make(map[string]*subtopology)
	for _, name := range order {
		root := find(name)
		st, ok := byRoot[root]
		if !ok {
			st = &subtopology{id: len(g.subs)}
			byRoot[root] = st
			g.subs = append(g.subs, st)
		}
		st.nodes = append(st.nodes, name)
		for _, s := range nodes[name].Stores {
			if !slices.Contains(st.stores, s) {
				st.stores = append(st.stores, s)
			}
		}
	}
	return g
}

// CheckCoPartitioning reports the subtopologies that read repartition
// topics created with different partition counts (NumPartitions): their
// tasks could not meet each key's records of both. Other topics' counts
// are known only at run time, where the runtime checks them.
func (g *Graph) CheckCoPartitioning() error {
	fixed := make(map[string]int32)
	for _, n := range g.Nodes {
		if n.Kind == SinkNode && n.Internal && n.Partitions > 0 {
			fixed[n.Topic] = n.Partitions
		}
	}
	var errs []error
	for _, st := range g.subs {
		counts := make(map[string]int32)
		var topics []string
		for _, name := range st.nodes {
			n := g.Nodes[name]
			for _, t := range n.Topics {
				if c, ok := fixed[t]; ok && n.Internal {
					counts[t] = c
					topics = append(topics, t)
				}
			}
		}
		slices.Sort(topics)
		for _, t := range topics[min(1, len(topics)):] {
			if counts[t] != counts[topics[0]] {
				errs = append(errs, fmt.Errorf("subtopology %d: topics are not co-partitioned: %s has %d partitions, %s has %d",
					st.id, topics[0], counts[topics[0]], t, counts[t]))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// InternalTopic returns the full name of an internal topic of the
// application: "<applicationID>-<name>".
func InternalTopic(applicationID, name string) string { return applicationID + "-" + name }

// Subtopology describes, for the runtime, one independently runnable part
// of a graph. Topic names are resolved for an application id.
type Subtopology struct {
	// ID numbers the subtopology; task ids carry it.
	ID int
	// SourceTopics are the topics read by name. The runtime runs one task
	// per partition and requires all of them to have the same partition
	// count (co-partitioning).
	SourceTopics []string
	// SourcePatterns match further topics to read.
	SourcePatterns []*regexp.Regexp
	// RepartitionSources are the SourceTopics that are internal repartition
	// topics, created by the runtime.
	RepartitionSources []string
	// SinkTopics are the fixed topics written by the subtopology's sinks.
	SinkTopics []string
	// RepartitionPartitions holds the partition counts set for the
	// repartition topics among SinkTopics (Kafka Streams'
	// Repartitioned.withNumberOfPartitions); the others follow the
	// subtopology writing them.
	RepartitionPartitions map[string]int32
	// ReaderPartitioned are the RepartitionSources whose partition count
	// is that of the subtopology's other sources (a foreign-key join's
	// subscription and response topics).
	ReaderPartitioned []string
	// Stores configures the subtopology's state stores.
	Stores []state.Config
}

// Subtopologies describes the subtopologies with internal topic names
// resolved for applicationID.
func (g *Graph) Subtopologies(applicationID string) []Subtopology {
	out := make([]Subtopology, 0, len(g.subs))
	for _, st := range g.subs {
		s := Subtopology{ID: st.id}
		for _, name := range st.nodes {
			n := g.Nodes[name]
			switch n.Kind {
			case SourceNode:
				if n.Pattern != nil {
					s.SourcePatterns = append(s.SourcePatterns, n.Pattern)
				}
				for _, topic := range n.Topics {
					full := n.resolve(applicationID, topic)
					s.SourceTopics = append(s.SourceTopics, full)
					if n.Internal {
						s.RepartitionSources = append(s.RepartitionSources, full)
					}
					if n.ReaderPartitioned {
						s.ReaderPartitioned = append(s.ReaderPartitioned, full)
					}
				}
			case SinkNode:
				if n.TopicFor == nil {
					topic := n.resolve(applicationID, n.Topic)
					s.SinkTopics = append(s.SinkTopics, topic)
					if n.Partitions > 0 {
						if s.RepartitionPartitions == nil {
							s.RepartitionPartitions = make(map[string]int32)
						}
						s.RepartitionPartitions[topic] = n.Partitions
					}
				}
			}
		}
		for _, store := range st.stores {
			s.Stores = append(s.Stores, g.Stores[store].Builder.Config())
		}
		out = append(out, s)
	}
	return out
}

func (n *Node) resolve(applicationID, topic string) string {
	if n.Internal {
		return InternalTopic(applicationID, topic)
	}
	return topic
}

// Describe renders the graph in the format of Kafka Streams'
// TopologyDescription.
func (g *Graph) Describe() string {
	var sb strings.Builder
	sb.WriteString("Topologies:\n")
	for _, st := range g.subs {
		fmt.Fprintf(&sb, "   Sub-topology: %d\n", st.id)
		for _, name := range st.nodes {
			n := g.Nodes[name]
			switch n.Kind {
			case SourceNode:
				if n.Pattern != nil {
					fmt.Fprintf(&sb, "    Source: %s (topics: [%s])\n", name, n.Pattern)
				} else {
					fmt.Fprintf(&sb, "    Source: %s (topics: [%s])\n", name, strings.Join(n.Topics, ", "))
				}
			case ProcessorNode:
				fmt.Fprintf(&sb, "    Processor: %s (stores: [%s])\n", name, strings.Join(n.Stores, ", "))
			case SinkNode:
				topic := n.Topic
				if n.TopicFor != nil {
					topic = "<chosen per record>"
				}
				fmt.Fprintf(&sb, "    Sink: %s (topic: %s)\n", name, topic)
			}
			if c := g.Children[name]; len(c) > 0 {
				fmt.Fprintf(&sb, "      --> %s\n", strings.Join(c, ", "))
			} else if n.Kind != SinkNode {
				sb.WriteString("      --> none\n")
			}
			if len(n.Parents) > 0 {
				fmt.Fprintf(&sb, "      <-- %s\n", strings.Join(n.Parents, ", "))
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// unwrap returns the graph of a *topology.Topology; package topology sets
// it, since this package cannot import that one.
var unwrap func(top any) *Graph

// SetUnwrap is called once by package topology to let the runtime reach the
// graph inside a Topology without exporting it to users.
func SetUnwrap(f func(top any) *Graph) { unwrap = f }

// Of returns the graph of a *topology.Topology.
func Of(top any) *Graph { return unwrap(top) }
