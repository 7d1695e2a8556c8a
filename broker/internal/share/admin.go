package share

import (
	"cmp"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// PartitionStatus is one share partition as the CLI and DescribeShare-
// GroupOffsets show it.
type PartitionStatus struct {
	Topic     string
	Partition int32
	// StartOffset is the share-partition start offset: every record
	// below it is acknowledged or archived.
	StartOffset int64
	// InFlight counts records acquired by a member right now.
	InFlight int64
	// Archived counts archived records at or above StartOffset.
	Archived int64
	// Lag counts records not yet acknowledged or archived, up to the end
	// of the log.
	Lag int64
}

// statusLocked computes the status of one share partition.
func (c *Coordinator) statusLocked(key topicPartition, sp *sharePartition) PartitionStatus {
	st := PartitionStatus{
		Topic: key.topic, Partition: key.partition, StartOffset: sp.win.start,
		InFlight: sp.win.count(acquired), Archived: sp.win.count(archived), Lag: -1,
	}
	if l := c.cfg.Logs.Partition(key.topic, key.partition); l != nil {
		done := sp.win.count(acknowledged) + st.Archived
		st.Lag = max(0, l.HighWatermark()-sp.win.start-done)
	}
	return st
}

// describeOffsets serves DescribeShareGroupOffsets.
func (c *Coordinator) describeOffsets(req *kmsg.DescribeShareGroupOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeShareGroupOffsetsResponse)
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rg := range req.Groups {
		og := kmsg.NewDescribeShareGroupOffsetsResponseGroup()
		og.GroupID = rg.GroupID
		g := c.groups[rg.GroupID]
		if g == nil {
			og.ErrorCode = kerr.GroupIDNotFound.Code
			og.ErrorMessage = kmsg.StringPtr("group " + rg.GroupID + " is not a share group")
			resp.Groups = append(resp.Groups, og)
			continue
		}
		want := rg.Topics
		if want == nil {
			byTopic := make(map[string][]int32)
			for key := range g.parts {
				byTopic[key.topic] = append(byTopic[key.topic], key.partition)
			}
			for _, name := range slices.Sorted(maps.Keys(byTopic)) {
				want = append(want, kmsg.DescribeShareGroupOffsetsRequestGroupTopic{Topic: name, Partitions: slices.Sorted(slices.Values(byTopic[name]))})
			}
		}
		for _, rt := range want {
			ot := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopic()
			ot.Topic = rt.Topic
			t, known := topics[rt.Topic]
			ot.TopicID = t.ID
			for _, p := range rt.Partitions {
				op := kmsg.NewDescribeShareGroupOffsetsResponseGroupTopicPartition()
				op.Partition, op.StartOffset, op.Lag = p, -1, -1
				key := topicPartition{rt.Topic, p}
				switch sp := g.parts[key]; {
				case !known || p < 0 || p >= t.Partitions:
					op.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case sp != nil:
					st := c.statusLocked(key, sp)
					op.StartOffset, op.Lag = st.StartOffset, st.Lag
				}
				ot.Partitions = append(ot.Partitions, op)
			}
			og.Topics = append(og.Topics, ot)
		}
		resp.Groups = append(resp.Groups, og)
	}
	return resp
}

// alterOffsets serves AlterShareGroupOffsets: it moves share partitions of
// a group without members to new start offsets, forgetting their
// in-flight state.
func (c *Coordinator) alterOffsets(req *kmsg.AlterShareGroupOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterShareGroupOffsetsResponse)
	if err := checkGroupID(req.GroupID); err != nil {
		resp.ErrorCode = err.Code
		return resp
	}
	if c.cfg.IsConsumerGroup != nil && c.cfg.IsConsumerGroup(req.GroupID) {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	g, err := c.groupLocked(req.GroupID)
	if err != nil {
		c.log.Error("alter share group offsets", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return resp
	}
	if len(g.members) > 0 {
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		resp.ErrorMessage = kmsg.StringPtr("share group has members")
		return resp
	}
	b := c.store.batch()
	for _, rt := range req.Topics {
		ot := kmsg.NewAlterShareGroupOffsetsResponseTopic()
		ot.Topic = rt.Topic
		t, known := topics[rt.Topic]
		ot.TopicID = t.ID
		for _, rp := range rt.Partitions {
			op := kmsg.NewAlterShareGroupOffsetsResponseTopicPartition()
			op.Partition = rp.Partition
			var l Log
			if known {
				l = c.cfg.Logs.Partition(rt.Topic, rp.Partition)
			}
			if l == nil {
				op.ErrorCode = kerr.UnknownTopicOrPartition.Code
				ot.Partitions = append(ot.Partitions, op)
				continue
			}
			key := topicPartition{rt.Topic, rp.Partition}
			sp := &sharePartition{topicID: t.ID}
			sp.win.reset(min(max(rp.StartOffset, l.StartOffset()), l.HighWatermark()))
			g.parts[key] = sp
			b.putPartition(g.id, key, sp)
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if err := b.commit(); err != nil {
		c.log.Error("alter share group offsets", "group", req.GroupID, "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
	}
	c.wakeLocked()
	return resp
}

// deleteOffsets serves DeleteShareGroupOffsets: it forgets a group's
// share partitions of the given topics, so the group starts on them
// afresh by share.auto.offset.reset.
func (c *Coordinator) deleteOffsets(req *kmsg.DeleteShareGroupOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteShareGroupOffsetsResponse)
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.GroupID]
	switch {
	case g == nil:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	case len(g.members) > 0:
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		return resp
	}
	b := c.store.batch()
	for _, rt := range req.Topics {
		ot := kmsg.NewDeleteShareGroupOffsetsResponseTopic()
		ot.Topic = rt.Topic
		t, known := topics[rt.Topic]
		ot.TopicID = t.ID
		if !known {
			ot.ErrorCode = kerr.UnknownTopicOrPartition.Code
		}
		for key := range g.parts {
			if key.topic == rt.Topic {
				delete(g.parts, key)
				b.deletePartition(g.id, key)
			}
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if err := b.commit(); err != nil {
		c.log.Error("delete share group offsets", "group", req.GroupID, "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
	}
	return resp
}

// Status returns the share partitions of a group, sorted, or false if no
// share group has that name.
func (c *Coordinator) Status(group string) ([]PartitionStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil {
		return nil, false
	}
	return c.statusesLocked(g), true
}

// statusesLocked returns the status of each of g's share partitions,
// sorted by topic and partition.
func (c *Coordinator) statusesLocked(g *group) []PartitionStatus {
	out := make([]PartitionStatus, 0, len(g.parts))
	for key, sp := range g.parts {
		out = append(out, c.statusLocked(key, sp))
	}
	slices.SortFunc(out, func(a, b PartitionStatus) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}

// GroupStats is a share group as the broker's metrics show it.
type GroupStats struct {
	Group string
	// Members counts the group's members.
	Members int
	// Archived counts the records of the group archived since the broker
	// loaded its share partitions: rejected, or released after their
	// last allowed delivery (share.delivery.count.limit).
	Archived int64
	// Partitions are the group's share partitions, sorted.
	Partitions []PartitionStatus
}

// Stats returns every share group, sorted by name. It only reads.
func (c *Coordinator) Stats() []GroupStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]GroupStats, 0, len(c.groups))
	for _, name := range slices.Sorted(maps.Keys(c.groups)) {
		g := c.groups[name]
		gs := GroupStats{Group: name, Members: len(g.members), Partitions: c.statusesLocked(g)}
		for _, sp := range g.parts {
			gs.Archived += sp.win.archivedTotal
		}
		out = append(out, gs)
	}
	return out
}
