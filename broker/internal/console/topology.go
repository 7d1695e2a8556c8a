package console

import (
	"fmt"
	"strings"
)

// graph is a streams application's topology, parsed from the text of
// Describe() (the format of Kafka Streams' TopologyDescription).
type graph struct {
	Subtopologies []subtopology `json:"subtopologies"`
}

type subtopology struct {
	ID string `json:"id"`
	// Global marks a global store's subtopology, which runs no tasks.
	Global bool       `json:"global"`
	Nodes  []nodeInfo `json:"nodes"`
}

// nodeInfo is a source, processor or sink. Sources have Topics (a
// pattern source's regular expression as its one entry), processors
// Stores, sinks one Topics entry, or DynamicTopic when the sink chooses
// the topic per record.
type nodeInfo struct {
	Name         string   `json:"name"`
	Kind         string   `json:"kind"`
	Topics       []string `json:"topics,omitempty"`
	DynamicTopic bool     `json:"dynamicTopic,omitempty"`
	Stores       []string `json:"stores,omitempty"`
	Children     []string `json:"children"`
}

// parseTopology parses a topology description. It accepts what Riffle's
// topology.Describe and Kafka Streams print: "Sub-topology: N" headers
// (with " for global store (will not generate tasks)" on global ones),
// "Source:", "Processor:" and "Sink:" lines, each followed by "-->"
// (children, or none) and "<--" (parents, which the children imply), and
// the "Sub-topologies:" and "Global Stores:" headings of Kafka 1.x.
func parseTopology(text string) (graph, error) {
	var g graph
	var cur *subtopology
	var node *nodeInfo
	names := map[string]bool{}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		bad := func(format string, args ...any) error {
			return fmt.Errorf("line %d: %s", i+1, fmt.Sprintf(format, args...))
		}
		switch {
		case line == "" || line == "Topologies:" || line == "Sub-topologies:" || line == "Global Stores:" || line == "none":
			continue
		case strings.HasPrefix(line, "Sub-topology:"):
			id, rest, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "Sub-topology:")), " ")
			if id == "" {
				return g, bad("sub-topology without an id")
			}
			g.Subtopologies = append(g.Subtopologies, subtopology{ID: id, Global: strings.Contains(rest, "global store"), Nodes: []nodeInfo{}})
			cur, node = &g.Subtopologies[len(g.Subtopologies)-1], nil
		case strings.HasPrefix(line, "-->"), strings.HasPrefix(line, "<--"):
			if node == nil {
				return g, bad("%q before any node", line[:3])
			}
			if strings.HasPrefix(line, "-->") {
				node.Children = nameList(strings.TrimSpace(line[3:]))
			}
		default:
			kind, rest, ok := strings.Cut(line, ":")
			kind = strings.ToLower(kind)
			if !ok || (kind != "source" && kind != "processor" && kind != "sink") {
				return g, bad("want a Sub-topology, Source, Processor or Sink line, got %q", truncate(line, 80))
			}
			if cur == nil {
				return g, bad("%s before any sub-topology", kind)
			}
			n, err := parseNode(kind, strings.TrimSpace(rest))
			if err != nil {
				return g, bad("%v", err)
			}
			if names[n.Name] {
				return g, bad("node %q appears twice", n.Name)
			}
			names[n.Name] = true
			cur.Nodes = append(cur.Nodes, n)
			node = &cur.Nodes[len(cur.Nodes)-1]
		}
	}
	if len(g.Subtopologies) == 0 {
		return g, fmt.Errorf("no sub-topology")
	}
	for _, st := range g.Subtopologies {
		for _, n := range st.Nodes {
			for _, ch := range n.Children {
				if !names[ch] {
					return g, fmt.Errorf("node %q: unknown child %q", n.Name, ch)
				}
			}
		}
	}
	return g, nil
}

// parseNode parses "NAME (topics: [a, b])", "NAME (stores: [s])",
// "NAME (topic: t)" or "NAME (extractor class: c)".
func parseNode(kind, s string) (nodeInfo, error) {
	n := nodeInfo{Kind: kind, Children: []string{}}
	name, attrs, ok := strings.Cut(s, " (")
	if !ok || !strings.HasSuffix(attrs, ")") {
		return n, fmt.Errorf("%s %q: want NAME (...)", kind, truncate(s, 80))
	}
	n.Name = strings.TrimSpace(name)
	if n.Name == "" {
		return n, fmt.Errorf("%s without a name", kind)
	}
	key, val, ok := strings.Cut(strings.TrimSuffix(attrs, ")"), ":")
	if !ok {
		return n, fmt.Errorf("%s %q: want (key: value)", kind, n.Name)
	}
	val = strings.TrimSpace(val)
	switch key = strings.TrimSpace(key); {
	case kind == "source" && key == "topics":
		n.Topics = bracketList(val)
	case kind == "processor" && key == "stores":
		n.Stores = bracketList(val)
	case kind == "sink" && key == "topic" && legalTopic(val):
		n.Topics = []string{val}
	case kind == "sink" && (key == "topic" || key == "extractor class"):
		// Kafka Streams names the extractor class, Riffle prints
		// "<chosen per record>": no topic of the topology.
		n.DynamicTopic = true
	default:
		return n, fmt.Errorf("%s %q: unexpected %q", kind, n.Name, key)
	}
	return n, nil
}

// legalTopic reports whether s can be a Kafka topic name: 1 to 249 of
// the characters [a-zA-Z0-9._-].
func legalTopic(s string) bool {
	if len(s) == 0 || len(s) > 249 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// bracketList parses "[a, b]" (Riffle prints a pattern source's regular
// expression in the brackets, which then is one entry).
func bracketList(s string) []string {
	return nameList(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
}

// nameList parses "a, b"; "none" and "" are empty.
func nameList(s string) []string {
	out := []string{}
	if s == "none" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
