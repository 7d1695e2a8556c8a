package console

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// kafkaDescription is what Kafka Streams prints for a topology with a
// global store and a sink choosing its topic per record.
const kafkaDescription = `Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [trades])
      --> KSTREAM-LEFTJOIN-0000000005, KSTREAM-SINK-0000000001
    Processor: KSTREAM-LEFTJOIN-0000000005 (stores: [])
      --> KSTREAM-SINK-0000000006
      <-- KSTREAM-SOURCE-0000000000
    Sink: KSTREAM-SINK-0000000001 (extractor class: com.example.Streams$$Lambda$4/0x0000000800c143a0@70ed52de)
      <-- KSTREAM-SOURCE-0000000000
    Sink: KSTREAM-SINK-0000000006 (topic: trades.opportunities)
      <-- KSTREAM-LEFTJOIN-0000000005

  Sub-topology: 1 for global store (will not generate tasks)
    Source: KSTREAM-SOURCE-0000000003 (topics: [positions])
      --> KTABLE-SOURCE-0000000004
    Processor: KTABLE-SOURCE-0000000004 (stores: [positions-STATE-STORE-0000000002])
      --> none
      <-- KSTREAM-SOURCE-0000000003
`

// kafka1Description is the layout of Kafka 1.x.
const kafka1Description = `Sub-topologies:
  Sub-topology: 0
    Source: in (topics: [a, b])
      --> out
    Sink: out (topic: c)
      <-- in
Global Stores:
  none
`

func TestParseTopology(t *testing.T) {
	g, err := parseTopology(kafkaDescription)
	if err != nil {
		t.Fatal(err)
	}
	want := graph{Subtopologies: []subtopology{
		{ID: "0", Nodes: []nodeInfo{
			{Name: "KSTREAM-SOURCE-0000000000", Kind: "source", Topics: []string{"trades"},
				Children: []string{"KSTREAM-LEFTJOIN-0000000005", "KSTREAM-SINK-0000000001"}},
			{Name: "KSTREAM-LEFTJOIN-0000000005", Kind: "processor", Stores: []string{}, Children: []string{"KSTREAM-SINK-0000000006"}},
			{Name: "KSTREAM-SINK-0000000001", Kind: "sink", DynamicTopic: true, Children: []string{}},
			{Name: "KSTREAM-SINK-0000000006", Kind: "sink", Topics: []string{"trades.opportunities"}, Children: []string{}},
		}},
		{ID: "1", Global: true, Nodes: []nodeInfo{
			{Name: "KSTREAM-SOURCE-0000000003", Kind: "source", Topics: []string{"positions"}, Children: []string{"KTABLE-SOURCE-0000000004"}},
			{Name: "KTABLE-SOURCE-0000000004", Kind: "processor", Stores: []string{"positions-STATE-STORE-0000000002"}, Children: []string{}},
		}},
	}}
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("got  %+v\nwant %+v", g, want)
	}

	g, err = parseTopology(kafka1Description)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Subtopologies) != 1 || len(g.Subtopologies[0].Nodes) != 2 || !reflect.DeepEqual(g.Subtopologies[0].Nodes[0].Topics, []string{"a", "b"}) {
		t.Fatalf("Kafka 1.x layout: %+v", g)
	}

	// Riffle prints "<chosen per record>" for a sink's dynamic topic.
	g, err = parseTopology("Topologies:\n   Sub-topology: 0\n    Source: s (topics: [in])\n      --> k\n    Sink: k (topic: <chosen per record>)\n      <-- s\n")
	if err != nil || !g.Subtopologies[0].Nodes[1].DynamicTopic {
		t.Fatalf("dynamic sink: %+v, %v", g, err)
	}
}

func TestParseTopologyErrors(t *testing.T) {
	for _, tc := range []struct{ text, err string }{
		{"", "no sub-topology"},
		{"Topologies:\n", "no sub-topology"},
		{"Source: s (topics: [a])", "line 1: source before any sub-topology"},
		{"Sub-topology:\n", "line 1: sub-topology without an id"},
		{"Sub-topology: 0\n--> x", `line 2: "-->" before any node`},
		{"Sub-topology: 0\nWhatever: x", "line 2: want a Sub-topology, Source, Processor or Sink line"},
		{"Sub-topology: 0\nSource: s", `line 2: source "s": want NAME (...)`},
		{"Sub-topology: 0\nSource:  (topics: [a])", `line 2: source "(topics: [a])": want NAME (...)`},
		{"Sub-topology: 0\nSource: s (topics)", `line 2: source "s": want (key: value)`},
		{"Sub-topology: 0\nProcessor: p (topics: [a])", `line 2: processor "p": unexpected "topics"`},
		{"Sub-topology: 0\nSink: k (topic: a)\nSink: k (topic: b)", `line 3: node "k" appears twice`},
		{"Sub-topology: 0\nSource: s (topics: [a])\n--> t", `node "s": unknown child "t"`},
	} {
		_, err := parseTopology(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("parse %q: error %v, want %q", tc.text, err, tc.err)
		}
	}
}

// render writes g in the layout of Describe(), for the fuzz target's
// round trip.
func render(g graph) string {
	var sb strings.Builder
	sb.WriteString("Topologies:\n")
	for _, st := range g.Subtopologies {
		fmt.Fprintf(&sb, "   Sub-topology: %s", st.ID)
		if st.Global {
			sb.WriteString(" for global store (will not generate tasks)")
		}
		sb.WriteString("\n")
		for _, n := range st.Nodes {
			switch {
			case n.Kind == "source":
				fmt.Fprintf(&sb, "    Source: %s (topics: [%s])\n", n.Name, strings.Join(n.Topics, ", "))
			case n.Kind == "processor":
				fmt.Fprintf(&sb, "    Processor: %s (stores: [%s])\n", n.Name, strings.Join(n.Stores, ", "))
			case n.DynamicTopic:
				fmt.Fprintf(&sb, "    Sink: %s (topic: <chosen per record>)\n", n.Name)
			default:
				fmt.Fprintf(&sb, "    Sink: %s (topic: %s)\n", n.Name, n.Topics[0])
			}
			if len(n.Children) > 0 {
				fmt.Fprintf(&sb, "      --> %s\n", strings.Join(n.Children, ", "))
			} else if n.Kind != "sink" {
				sb.WriteString("      --> none\n")
			}
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

// FuzzParseTopology checks that any registration text parses without a
// panic, and that what parses describes a graph whose edges all lead to
// its nodes and which renders back to the same graph.
func FuzzParseTopology(f *testing.F) {
	f.Add(kafkaDescription)
	f.Add(kafka1Description)
	f.Add("Sub-topology: 0\nSource: s (topics: [a, b])\n--> p\nProcessor: p (stores: [x])\n--> none\n<-- s\n")
	f.Fuzz(func(t *testing.T, text string) {
		g, err := parseTopology(text)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, st := range g.Subtopologies {
			for _, n := range st.Nodes {
				names[n.Name] = true
			}
		}
		for _, st := range g.Subtopologies {
			for _, n := range st.Nodes {
				for _, c := range n.Children {
					if !names[c] {
						t.Fatalf("node %q has unknown child %q", n.Name, c)
					}
				}
			}
		}
		again, err := parseTopology(render(g))
		if err != nil {
			t.Fatalf("rendered graph does not parse: %v\n%s", err, render(g))
		}
		if !reflect.DeepEqual(again, g) {
			t.Fatalf("round trip changed the graph:\n%+v\n%+v", g, again)
		}
	})
}
