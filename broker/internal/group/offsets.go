package group

import (
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// offsetCommit serves OffsetCommit. Accepted offsets are synced to disk
// before the response is built, outside the coordinator's lock, so that
// groups do not queue behind one another's fsyncs.
func (c *Coordinator) offsetCommit(req *kmsg.OffsetCommitRequest) *kmsg.OffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	build := func() *kmsg.OffsetCommitResponse {
		for i, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for j, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, codes[i][j]
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	fail := func(err *kerr.Error) *kmsg.OffsetCommitResponse {
		for _, cs := range codes {
			for j := range cs {
				cs[j] = err.Code
			}
		}
		return build()
	}
	if err := checkGroupID(req.Group); err != nil {
		return fail(err)
	}
	if c.reserved(req.Group) {
		return fail(kerr.GroupIDNotFound)
	}
	wrote, kerrv := c.applyCommit(req, codes)
	if kerrv != nil {
		return fail(kerrv)
	}
	if wrote {
		if err := c.store.sync(); err != nil {
			c.log.Error("commit offsets", "group", req.Group, "err", err)
			return fail(kerr.CoordinatorNotAvailable)
		}
	}
	return build()
}

// applyCommit validates a commit and applies it, under the coordinator's
// lock, to the group and to the store's write-ahead log without waiting
// for the disk; the caller syncs outside the lock. Commits are applied to
// the log in the order they change the group, so a later commit of a
// partition is never replaced by an earlier one on replay. The group
// shows the new offsets before they are synced, as the share coordinator
// shows acknowledgements; if the sync fails the client is told so. It
// fills codes for partitions it refuses, reports whether it wrote
// anything, and returns an error for the whole request.
func (c *Coordinator) applyCommit(req *kmsg.OffsetCommitRequest, codes [][]int16) (bool, *kerr.Error) {
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing() {
		return false, kerr.CoordinatorNotAvailable
	}
	g := c.groups[req.Group]
	created := false
	if g == nil {
		if req.Generation >= 0 {
			return false, kerr.IllegalGeneration
		}
		g = &group{name: req.Group, classic: newClassicGroup(), offsets: make(map[tp]offset), emptySince: time.Now()}
		created = true
	}
	// The member's epoch is checked against the partitions the commit
	// would write; the others are refused one by one.
	now := time.Now()
	accepted := make(map[tp]offset)
	for i, t := range req.Topics {
		topic, ok := topics[t.Topic]
		for j, p := range t.Partitions {
			switch {
			case !ok || p.Partition < 0 || p.Partition >= topic.Partitions:
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > maxMetadataBytes:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			default:
				accepted[tp{t.Topic, p.Partition}] = offset{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, Committed: now, TopicID: topic.ID}
			}
		}
	}
	if err := c.validateCommitLocked(g, req.MemberID, req.InstanceID, req.Generation, maps.Keys(accepted)); err != nil {
		return false, err
	}
	b := c.store.batch()
	for key, o := range accepted {
		b.putOffset(g.name, key, o)
	}
	if created {
		b.putGroup(g.name, g.record())
	}
	wrote, err := b.apply()
	if err != nil {
		c.log.Error("commit offsets", "group", g.name, "err", err)
		return false, kerr.CoordinatorNotAvailable
	}
	if created {
		c.groups[g.name] = g
	}
	maps.Copy(g.offsets, accepted)
	return wrote, nil
}

// validateCommitLocked checks that a commit of the partitions parts comes
// from a current member, as Kafka does for each protocol. A commit with a
// negative generation and no member id is an administrative commit,
// allowed only into an empty group.
//
// A member of a consumer group commits at its member epoch, or, as in
// Kafka since KIP-1251, at an older epoch no older than the assignment
// epoch of every partition in parts: the epoch at which the member was
// given the partition, which it still holds or has yet to revoke. A
// member that commits before it has heard of its new epoch is so not
// refused, while a commit naming a partition the member was given later,
// gave up or never had is refused whole, with STALE_MEMBER_EPOCH
// (ILLEGAL_GENERATION for a classic member).
func (c *Coordinator) validateCommitLocked(g *group, memberID string, instanceID *string, generation int32, parts iter.Seq[tp]) *kerr.Error {
	if cg := g.consumer; cg != nil {
		if generation < 0 && len(cg.members) == 0 {
			return nil
		}
		m := cg.members[memberID]
		if m == nil {
			return kerr.UnknownMemberID
		}
		refused := kerr.StaleMemberEpoch
		if m.classic != nil {
			refused = kerr.IllegalGeneration
		}
		switch {
		case generation == m.epoch:
			return nil
		case generation > m.epoch && m.classic == nil:
			return kerr.FencedMemberEpoch
		case generation > m.epoch:
			return refused
		}
		for p := range parts {
			if at, ok := m.assignedAt[p]; !ok || generation < at {
				return refused
			}
		}
		return nil
	}
	cg := g.classic
	switch {
	case cg.state == stateDead:
		return kerr.CoordinatorNotAvailable
	case generation < 0 && cg.state == stateEmpty:
		return nil
	case cg.state == stateCompleting:
		return kerr.RebalanceInProgress
	}
	if err := cg.checkMember(memberID, instanceID); err != nil {
		return err
	}
	if generation != cg.generation {
		return kerr.IllegalGeneration
	}
	return nil
}

// fetchTopic is one topic of an OffsetFetch, in either request layout.
type fetchTopic struct {
	name       string
	partitions []int32
}

// offsetFetch serves OffsetFetch, single-group (v0-v7) or batched (v8+).
func (c *Coordinator) offsetFetch(req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version < 8 {
		var topics []fetchTopic
		if req.Topics != nil {
			topics = []fetchTopic{}
			for _, t := range req.Topics {
				topics = append(topics, fetchTopic{t.Topic, t.Partitions})
			}
		}
		code, results := c.fetchGroupOffsets(req.Group, nil, -1, topics, req.RequireStable)
		resp.ErrorCode = code
		for _, t := range results {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata, rp.ErrorCode = p.Partition, p.Offset, p.LeaderEpoch, p.Metadata, p.ErrorCode
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	for _, rg := range req.Groups {
		var topics []fetchTopic
		if rg.Topics != nil {
			topics = []fetchTopic{}
			for _, t := range rg.Topics {
				topics = append(topics, fetchTopic{t.Topic, t.Partitions})
			}
		}
		code, results := c.fetchGroupOffsets(rg.Group, rg.MemberID, rg.MemberEpoch, topics, req.RequireStable)
		og := kmsg.NewOffsetFetchResponseGroup()
		og.Group, og.ErrorCode, og.Topics = rg.Group, code, results
		resp.Groups = append(resp.Groups, og)
	}
	return resp
}

// fetchGroupOffsets reads the committed offsets of one group: of the
// given partitions, or all of them when topics is nil. Partitions without
// a commit read as offset -1. A member of a consumer group that names
// itself must be at its current epoch. With requireStable, a partition
// with an offset pending in an open transaction is UNSTABLE_OFFSET_COMMIT.
func (c *Coordinator) fetchGroupOffsets(name string, memberID *string, epoch int32, topics []fetchTopic, requireStable bool) (int16, []kmsg.OffsetFetchResponseGroupTopic) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing() {
		return kerr.CoordinatorNotAvailable.Code, nil
	}
	g := c.groups[name]
	if g != nil && g.consumer != nil && memberID != nil && epoch >= 0 {
		m := g.consumer.members[*memberID]
		if m == nil {
			return kerr.UnknownMemberID.Code, nil
		}
		if m.epoch != epoch {
			return kerr.StaleMemberEpoch.Code, nil
		}
	}
	var committed map[tp]offset
	if g != nil {
		committed = g.offsets
	}
	if topics == nil {
		byTopic := make(map[string][]int32)
		for p := range committed {
			byTopic[p.topic] = append(byTopic[p.topic], p.partition)
		}
		for _, name := range slices.Sorted(maps.Keys(byTopic)) {
			slices.Sort(byTopic[name])
			topics = append(topics, fetchTopic{name, byTopic[name]})
		}
	}
	out := make([]kmsg.OffsetFetchResponseGroupTopic, 0, len(topics))
	for _, t := range topics {
		rt := kmsg.NewOffsetFetchResponseGroupTopic()
		rt.Topic = t.name
		for _, p := range t.partitions {
			rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
			rp.Partition, rp.Offset = p, -1
			rp.Metadata = new(string)
			if requireStable && g != nil && g.unstableLocked(tp{t.name, p}) {
				rp.ErrorCode = kerr.UnstableOffsetCommit.Code
			} else if o, ok := committed[tp{t.name, p}]; ok {
				rp.Offset, rp.LeaderEpoch, rp.Metadata = o.Offset, o.LeaderEpoch, o.Metadata
				if rp.Metadata == nil {
					rp.Metadata = new(string)
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		out = append(out, rt)
	}
	return 0, out
}

// offsetDelete serves OffsetDelete: offsets of topics the group is
// subscribed to cannot be deleted while it has members.
func (c *Coordinator) offsetDelete(req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[req.Group]
	if g == nil || (g.classic != nil && g.classic.state == stateDead) {
		resp.ErrorCode = kerr.GroupIDNotFound.Code
		return resp
	}
	var subscribed map[string]bool
	switch {
	case g.consumer != nil:
		subscribed = g.consumer.subscribedTopics()
	case !g.isEmpty() && g.classic.protocolType != "consumer":
		resp.ErrorCode = kerr.NonEmptyGroup.Code
		return resp
	default:
		subscribed = g.classic.subscribedTopics()
	}
	b := c.store.batch()
	var gone []tp
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if subscribed[t.Topic] {
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			} else {
				gone = append(gone, tp{t.Topic, p.Partition})
				b.deleteOffset(g.name, tp{t.Topic, p.Partition})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if err := b.commit(); err != nil {
		c.log.Error("delete offsets", "group", g.name, "err", err)
		resp.Topics = nil
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	for _, p := range gone {
		delete(g.offsets, p)
	}
	return resp
}
