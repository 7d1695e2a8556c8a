package group

import (
	"maps"
	"slices"
)

// Stats is a group as the broker's metrics show it.
type Stats struct {
	Group string
	// Members counts the group's members, of either protocol.
	Members int
	// Offsets are the group's committed offsets, sorted by topic and
	// partition.
	Offsets []CommittedOffset
}

// CommittedOffset is one partition's committed offset.
type CommittedOffset struct {
	Topic     string
	TopicID   [16]byte // the topic's id when the offset was committed; zero if unknown
	Partition int32
	Offset    int64
}

// Stats returns every consumer and classic group, sorted by name. It only
// reads.
func (c *Coordinator) Stats() []Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Stats, 0, len(c.groups))
	for _, name := range slices.Sorted(maps.Keys(c.groups)) {
		g := c.groups[name]
		s := Stats{Group: name, Members: g.memberCount(), Offsets: make([]CommittedOffset, 0, len(g.offsets))}
		for _, p := range slices.SortedFunc(maps.Keys(g.offsets), tp.compare) {
			o := g.offsets[p]
			s.Offsets = append(s.Offsets, CommittedOffset{Topic: p.topic, TopicID: o.TopicID, Partition: p.partition, Offset: o.Offset})
		}
		out = append(out, s)
	}
	return out
}

// memberCount counts the group's members.
func (g *group) memberCount() int {
	if g.consumer != nil {
		return len(g.consumer.members)
	}
	return len(g.classic.members)
}
