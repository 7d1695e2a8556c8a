package share

import (
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// group is one share group: its members, their assignment, and its share
// partitions.
type group struct {
	id      string
	epoch   int32 // group epoch: bumped when membership or assignment changes
	members map[string]*member
	parts   map[topicPartition]*sharePartition
}

// member is one share consumer of a group.
type member struct {
	id         string
	clientID   string
	host       string
	rack       *string
	epoch      int32
	prevEpoch  int32
	subscribed []string // sorted topic names
	assigned   map[string][]int32
	lastSeen   time.Time
}

func newGroup(id string) *group {
	return &group{id: id, members: make(map[string]*member), parts: make(map[topicPartition]*sharePartition)}
}

// state is the group state as ListGroups and ShareGroupDescribe show it.
func (g *group) state() string {
	if len(g.members) == 0 {
		return "Empty"
	}
	return "Stable"
}

// assign computes every member's partitions. Share groups need no
// exclusive ownership: each partition goes to at least one subscribed
// member, and when a topic has fewer partitions than members, members
// share partitions round-robin; when it has more, they are spread. It
// bumps the group epoch if anything changed.
func (g *group) assign(topics map[string]Topic) {
	next := make(map[string]map[string][]int32, len(g.members))
	subs := make(map[string][]string)
	for _, id := range slices.Sorted(maps.Keys(g.members)) {
		next[id] = make(map[string][]int32)
		for _, t := range g.members[id].subscribed {
			subs[t] = append(subs[t], id)
		}
	}
	for topic, ids := range subs {
		t, ok := topics[topic]
		if !ok || t.Partitions == 0 {
			continue
		}
		n := int32(len(ids))
		if n >= t.Partitions {
			for i, id := range ids {
				next[id][topic] = []int32{int32(i) % t.Partitions}
			}
			continue
		}
		for p := range t.Partitions {
			id := ids[p%n]
			next[id][topic] = append(next[id][topic], p)
		}
	}
	changed := false
	for id, m := range g.members {
		if !maps.EqualFunc(m.assigned, next[id], slices.Equal) {
			m.assigned = next[id]
			changed = true
		}
	}
	if changed {
		g.epoch++
	}
}

// heartbeat serves ShareGroupHeartbeat: joining (epoch 0), leaving
// (epoch -1), and staying, with the member's assignment whenever its epoch
// moves or it sends its subscription.
func (c *Coordinator) heartbeat(from Client, req *kmsg.ShareGroupHeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	fail := func(e *kerr.Error, msg string) kmsg.Response {
		resp.ErrorCode, resp.ErrorMessage = e.Code, kmsg.StringPtr(msg)
		return resp
	}
	switch {
	case checkGroupID(req.GroupID) != nil:
		return fail(kerr.InvalidGroupID, "group id must be 1 to "+strconv.Itoa(maxGroupIDBytes)+" bytes")
	case req.MemberID == "" || len(req.MemberID) > 36:
		return fail(kerr.InvalidRequest, "member id must be 1 to 36 characters")
	case req.MemberEpoch < -1:
		return fail(kerr.InvalidRequest, "member epoch below -1")
	}
	if c.cfg.IsConsumerGroup != nil && c.cfg.IsConsumerGroup(req.GroupID) {
		return fail(kerr.GroupIDNotFound, "group "+req.GroupID+" is not a share group")
	}
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	gc := c.groupConfig(req.GroupID)
	resp.HeartbeatIntervalMillis = int32(gc.heartbeatInterval.Milliseconds())
	g := c.groups[req.GroupID]
	if req.MemberEpoch == -1 {
		if g == nil || g.members[req.MemberID] == nil {
			return fail(kerr.UnknownMemberID, "member "+req.MemberID+" is not in the group")
		}
		c.removeMemberLocked(g, req.MemberID)
		c.wakeLocked()
		// A member leaving gets no heartbeat interval, as in Kafka.
		resp.MemberID, resp.MemberEpoch, resp.HeartbeatIntervalMillis = &req.MemberID, -1, 0
		return resp
	}
	if g == nil {
		if req.MemberEpoch != 0 {
			return fail(kerr.UnknownMemberID, "group "+req.GroupID+" has no members")
		}
		b := c.store.batch()
		b.putGroup(req.GroupID)
		if err := b.commit(); err != nil {
			c.log.Error("create share group", "group", req.GroupID, "err", err)
			return fail(kerr.CoordinatorNotAvailable, "cannot store the group")
		}
		g = newGroup(req.GroupID)
		c.groups[req.GroupID] = g
	}
	m := g.members[req.MemberID]
	joined := false
	switch {
	case m == nil && req.MemberEpoch != 0:
		return fail(kerr.UnknownMemberID, "member "+req.MemberID+" is not in the group")
	case m == nil:
		m = &member{id: req.MemberID, assigned: map[string][]int32{}}
		g.members[req.MemberID] = m
		g.epoch++
		joined = true
	case req.MemberEpoch != 0 && req.MemberEpoch != m.epoch && req.MemberEpoch != m.prevEpoch:
		return fail(kerr.FencedMemberEpoch, "member epoch is stale")
	}
	m.clientID, m.host, m.lastSeen = from.ClientID, from.Host, time.Now()
	if req.RackID != nil {
		m.rack = req.RackID
	}
	subsChanged := false
	if req.SubscribedTopicNames != nil {
		subs := slices.Sorted(slices.Values(req.SubscribedTopicNames))
		subs = slices.Compact(subs)
		if !slices.Equal(subs, m.subscribed) {
			m.subscribed = subs
			subsChanged = true
		}
	}
	if subsChanged || joined {
		g.assign(topics)
	}
	full := req.MemberEpoch == 0 || req.SubscribedTopicNames != nil
	if m.epoch != g.epoch {
		m.prevEpoch, m.epoch = m.epoch, g.epoch
		full = true
	}
	resp.MemberID, resp.MemberEpoch = &req.MemberID, m.epoch
	if full {
		a := kmsg.NewShareGroupHeartbeatResponseAssignment()
		for _, topic := range slices.Sorted(maps.Keys(m.assigned)) {
			tp := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
			tp.TopicID, tp.Partitions = topics[topic].ID, m.assigned[topic]
			a.TopicPartitions = append(a.TopicPartitions, tp)
		}
		resp.Assignment = &a
	}
	return resp
}

// describe serves ShareGroupDescribe.
func (c *Coordinator) describe(req *kmsg.ShareGroupDescribeRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range req.GroupIDs {
		rg := kmsg.NewShareGroupDescribeResponseGroup()
		rg.GroupID = id
		g := c.groups[id]
		if g == nil {
			rg.ErrorCode = kerr.GroupIDNotFound.Code
			rg.ErrorMessage = kmsg.StringPtr("group " + id + " is not a share group")
			resp.Groups = append(resp.Groups, rg)
			continue
		}
		rg.GroupState, rg.GroupEpoch, rg.AssignmentEpoch, rg.Assignor = g.state(), g.epoch, g.epoch, "simple"
		for _, mid := range slices.Sorted(maps.Keys(g.members)) {
			m := g.members[mid]
			rm := kmsg.NewShareGroupDescribeResponseGroupMember()
			rm.MemberID, rm.RackID, rm.MemberEpoch = m.id, m.rack, m.epoch
			rm.ClientID, rm.ClientHost = m.clientID, "/"+m.host
			rm.SubscribedTopicNames = m.subscribed
			for _, topic := range slices.Sorted(maps.Keys(m.assigned)) {
				tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
				tp.Topic, tp.TopicID, tp.Partitions = topic, topics[topic].ID, m.assigned[topic]
				rm.Assignment.TopicPartitions = append(rm.Assignment.TopicPartitions, tp)
			}
			rg.Members = append(rg.Members, rm)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}
