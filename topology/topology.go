package topology

import "github.com/riffle-stream/riffle/internal/engine"

// Topology is a validated processing graph, ready to be run by the streams
// runtime or the streamstest driver. It is immutable and may be shared.
type Topology struct {
	g *engine.Graph
}

func init() {
	engine.SetUnwrap(func(top any) *engine.Graph { return top.(*Topology).g })
}

// Describe renders the topology in the format of Kafka Streams'
// TopologyDescription: each subtopology with its sources and their topics,
// processors and their stores, and sinks and their topics, with arrows to
// children (-->) and parents (<--). Internal topic names are shown without
// the application id prefix.
func (t *Topology) Describe() string { return t.g.Describe() }
