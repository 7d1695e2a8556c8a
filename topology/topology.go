package topology

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/riffle-stream/riffle/state"
)

// Topology is a validated processing graph, ready to be run by the streams
// runtime or the streamstest driver. It is immutable and may be shared.
type Topology struct {
	nodes    map[string]*node
	order    []string
	children map[string][]string
	stores   map[string]*storeEntry
	subs     []*subtopology
}

type subtopology struct {
	id     int
	nodes  []string
	stores []string
}

func newTopology(b *Builder, children map[string][]string) *Topology {
	t := &Topology{nodes: b.nodes, order: b.order, children: children, stores: b.stores}
	// Union-find over nodes: edges and shared stores join subtopologies.
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
	for _, name := range b.order {
		for _, p := range b.nodes[name].parents {
			union(name, p)
		}
	}
	for _, se := range b.stores {
		for _, p := range se.processors[1:] {
			union(se.processors[0], p)
		}
	}
	byRoot := make(map[string]*subtopology)
	for _, name := range b.order {
		root := find(name)
		st, ok := byRoot[root]
		if !ok {
			st = &subtopology{id: len(t.subs)}
			byRoot[root] = st
			t.subs = append(t.subs, st)
		}
		st.nodes = append(st.nodes, name)
		for _, s := range b.nodes[name].stores {
			if !slices.Contains(st.stores, s) {
				st.stores = append(st.stores, s)
			}
		}
	}
	return t
}

// InternalTopic returns the full name of an internal topic of the
// application: "<applicationID>-<name>".
func InternalTopic(applicationID, name string) string { return applicationID + "-" + name }

// Subtopology describes, for the runtime, one independently runnable part
// of a Topology. Topic names are resolved for an application id.
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
	// Stores configures the subtopology's state stores.
	Stores []state.Config
}

// Subtopologies describes the subtopologies with internal topic names
// resolved for applicationID.
func (t *Topology) Subtopologies(applicationID string) []Subtopology {
	out := make([]Subtopology, 0, len(t.subs))
	for _, st := range t.subs {
		s := Subtopology{ID: st.id}
		for _, name := range st.nodes {
			n := t.nodes[name]
			switch n.kind {
			case sourceNode:
				if n.pattern != nil {
					s.SourcePatterns = append(s.SourcePatterns, n.pattern)
				}
				for _, topic := range n.topics {
					full := t.resolve(applicationID, n, topic)
					s.SourceTopics = append(s.SourceTopics, full)
					if n.internal {
						s.RepartitionSources = append(s.RepartitionSources, full)
					}
				}
			case sinkNode:
				if n.topicFor == nil {
					s.SinkTopics = append(s.SinkTopics, t.resolve(applicationID, n, n.topic))
				}
			}
		}
		for _, store := range st.stores {
			s.Stores = append(s.Stores, t.stores[store].builder.Config())
		}
		out = append(out, s)
	}
	return out
}

func (t *Topology) resolve(applicationID string, n *node, topic string) string {
	if n.internal {
		return InternalTopic(applicationID, topic)
	}
	return topic
}

// Describe renders the topology in the format of Kafka Streams'
// TopologyDescription: each subtopology with its sources and their topics,
// processors and their stores, and sinks and their topics, with arrows to
// children (-->) and parents (<--). Internal topic names are shown without
// the application id prefix.
func (t *Topology) Describe() string {
	var sb strings.Builder
	sb.WriteString("Topologies:\n")
	for _, st := range t.subs {
		fmt.Fprintf(&sb, "   Sub-topology: %d\n", st.id)
		for _, name := range st.nodes {
			n := t.nodes[name]
			switch n.kind {
			case sourceNode:
				if n.pattern != nil {
					fmt.Fprintf(&sb, "    Source: %s (topics: [%s])\n", name, n.pattern)
				} else {
					fmt.Fprintf(&sb, "    Source: %s (topics: [%s])\n", name, strings.Join(n.topics, ", "))
				}
			case processorNode:
				fmt.Fprintf(&sb, "    Processor: %s (stores: [%s])\n", name, strings.Join(n.stores, ", "))
			case sinkNode:
				topic := n.topic
				if n.topicFor != nil {
					topic = "<chosen per record>"
				}
				fmt.Fprintf(&sb, "    Sink: %s (topic: %s)\n", name, topic)
			}
			if c := t.children[name]; len(c) > 0 {
				fmt.Fprintf(&sb, "      --> %s\n", strings.Join(c, ", "))
			} else if n.kind != sinkNode {
				sb.WriteString("      --> none\n")
			}
			if len(n.parents) > 0 {
				fmt.Fprintf(&sb, "      <-- %s\n", strings.Join(n.parents, ", "))
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
