package group

import (
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// classicProtocol is what a consumer group keeps of a member that joined
// it with the classic protocol (JoinGroup), as Kafka 4.0 lets classic
// consumers join a group that uses the consumer protocol. The coordinator
// still computes the member's assignment; the member learns it through
// SyncGroup, and a heartbeat answering REBALANCE_IN_PROGRESS sends it
// back to JoinGroup whenever its assignment must change. Its generation
// is its member epoch.
type classicProtocol struct {
	session   time.Duration
	protocols []kmsg.JoinGroupRequestProtocol
	protocol  string
}

// consumerClassicJoinLocked admits a classic member into a consumer group.
func (c *Coordinator) consumerClassicJoinLocked(g *group, from Client, req *kmsg.JoinGroupRequest, session, rebalance time.Duration) *kmsg.JoinGroupResponse {
	resp := &kmsg.JoinGroupResponse{Generation: -1, MemberID: req.MemberID}
	if req.ProtocolType != "consumer" {
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	}
	var md kmsg.ConsumerMemberMetadata
	protocol := ""
	for _, p := range req.Protocols {
		if md.ReadFrom(p.Metadata) == nil {
			protocol = p.Name
			break
		}
	}
	if protocol == "" {
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	}
	cg := g.consumer
	id := req.MemberID
	if id == "" {
		id = newMemberID(from.ClientID)
		if req.InstanceID == nil && req.Version >= 4 {
			resp.ErrorCode, resp.MemberID = kerr.MemberIDRequired.Code, id
			return resp
		}
	}
	m := cg.members[id]
	if req.InstanceID != nil {
		if old := cg.byInstance(*req.InstanceID); old != nil && old.id != id {
			if old.classic == nil || req.MemberID != "" {
				resp.ErrorCode = kerr.FencedInstanceID.Code
				return resp
			}
			c.removeConsumerMemberLocked(g, old, "replaced by a rejoining static member")
		}
	}
	switch {
	case m == nil && req.MemberID != "" && req.Version < 4:
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	case m != nil && m.classic == nil:
		resp.ErrorCode = kerr.InconsistentGroupProtocol.Code
		return resp
	case m == nil:
		m = &consumerMember{
			id: id, instanceID: req.InstanceID, assignor: cg.assignor,
			assigned: make(partitions), revoking: make(partitions), owned: make(partitions),
		}
		cg.members[id] = m
		g.emptySince = time.Time{}
		c.log.Debug("classic member joined consumer group", "group", g.name, "member", id)
	}
	m.clientID, m.host, m.rebalance = from.ClientID, from.Host, rebalance
	m.classic = &classicProtocol{session: session, protocols: req.Protocols, protocol: protocol}
	if !slices.Equal(md.Topics, m.topicNames) {
		m.topicNames = slices.Clone(md.Topics)
		cg.epoch++
	}
	m.owned = make(partitions)
	for _, t := range md.OwnedPartitions {
		for _, p := range t.Partitions {
			m.owned[tp{t.Topic, p}] = struct{}{}
		}
	}
	c.updateTargetLocked(g, c.cfg.Topics())
	c.armConsumerSession(g, m)
	c.reconcileLocked(g, m)
	resp.ErrorCode, resp.MemberID, resp.Generation = 0, m.id, m.epoch
	resp.ProtocolType, resp.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr(protocol)
	// The member leads itself and skips the assignment: the coordinator
	// has computed it.
	resp.LeaderID, resp.SkipAssignment = m.id, true
	return resp
}

// consumerClassicSyncLocked answers a classic member's SyncGroup with the
// partitions it may own now.
func (c *Coordinator) consumerClassicSyncLocked(g *group, req *kmsg.SyncGroupRequest, resp *kmsg.SyncGroupResponse) int16 {
	m := g.consumer.members[req.MemberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case m.classic == nil:
		return kerr.InconsistentGroupProtocol.Code
	case req.Generation != m.epoch:
		return kerr.IllegalGeneration.Code
	}
	c.armConsumerSession(g, m)
	c.reconcileLocked(g, m)
	var a kmsg.ConsumerMemberAssignment
	byTopic := make(map[string][]int32)
	for p := range m.assigned {
		byTopic[p.topic] = append(byTopic[p.topic], p.partition)
	}
	for _, t := range slices.Sorted(maps.Keys(byTopic)) {
		slices.Sort(byTopic[t])
		a.Topics = append(a.Topics, kmsg.ConsumerMemberAssignmentTopic{Topic: t, Partitions: byTopic[t]})
	}
	resp.ProtocolType, resp.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr(m.classic.protocol)
	resp.MemberAssignment = a.AppendTo(nil)
	m.sent = maps.Clone(m.assigned)
	return 0
}

// consumerClassicHeartbeatLocked keeps a classic member alive and sends it
// back to JoinGroup when its assignment has to change.
func (c *Coordinator) consumerClassicHeartbeatLocked(g *group, req *kmsg.HeartbeatRequest) int16 {
	cg := g.consumer
	m := cg.members[req.MemberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case m.classic == nil:
		return kerr.InconsistentGroupProtocol.Code
	case req.Generation != m.epoch:
		return kerr.IllegalGeneration.Code
	}
	c.armConsumerSession(g, m)
	c.reconcileLocked(g, m)
	if len(m.revoking) > 0 || m.epoch != cg.assignmentEpoch || !maps.Equal(m.sent, m.assigned) || !maps.Equal(m.assigned, cg.target[m.id]) {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// consumerClassicLeaveLocked removes classic members from a consumer group.
func (c *Coordinator) consumerClassicLeaveLocked(g *group, members []kmsg.LeaveGroupRequestMember, resp *kmsg.LeaveGroupResponse) {
	cg := g.consumer
	removed := false
	for _, lm := range members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = lm.MemberID, lm.InstanceID
		m := cg.members[lm.MemberID]
		if lm.InstanceID != nil {
			m = cg.byInstance(*lm.InstanceID)
			if m != nil && lm.MemberID != "" && m.id != lm.MemberID {
				rm.ErrorCode, m = kerr.FencedInstanceID.Code, nil
			}
		}
		switch {
		case rm.ErrorCode != 0:
		case m == nil || m.classic == nil:
			rm.ErrorCode = kerr.UnknownMemberID.Code
		default:
			c.removeConsumerMemberLocked(g, m, "left the group")
			removed = true
		}
		resp.Members = append(resp.Members, rm)
	}
	if removed {
		c.updateTargetLocked(g, c.cfg.Topics())
	}
}

// upgradeClassicLocked converts a stable classic group of consumers into a
// consumer group when a member of the consumer protocol joins it, as
// Kafka 4.0 does online: the classic members keep their assignment and
// generation, as member epoch, and stay classic members of the new group.
func (c *Coordinator) upgradeClassicLocked(g *group, topics map[string]Topic) error {
	old := g.classic
	switch {
	case old.state != stateStable:
		return errors.New("the classic group is rebalancing")
	case old.protocolType != "consumer":
		return errors.New("the classic group's protocol type is " + old.protocolType)
	}
	cg := newConsumerGroup()
	cg.epoch, cg.assignmentEpoch = old.generation, old.generation
	for id, m := range old.members {
		var md kmsg.ConsumerMemberMetadata
		var ma kmsg.ConsumerMemberAssignment
		if md.ReadFrom(m.metadata(old.protocol)) != nil || ma.ReadFrom(m.assignment) != nil {
			return errors.New("member " + id + " has no consumer protocol metadata")
		}
		cm := &consumerMember{
			id: id, instanceID: m.instanceID, clientID: m.clientID, host: m.host,
			epoch: old.generation, previousEpoch: old.generation, rebalance: m.rebalance,
			topicNames: md.Topics, assignor: cg.assignor,
			assigned: make(partitions), revoking: make(partitions), owned: make(partitions),
			classic: &classicProtocol{session: m.session, protocols: m.protocols, protocol: old.protocol},
		}
		for _, t := range ma.Topics {
			for _, p := range t.Partitions {
				cm.assign(tp{t.Topic, p})
				cm.owned[tp{t.Topic, p}] = struct{}{}
				cg.owner[tp{t.Topic, p}] = id
			}
		}
		cm.sent = maps.Clone(cm.assigned)
		cg.members[id] = cm
		cg.target[id] = maps.Clone(cm.assigned)
	}
	cg.subscribed = make(map[string]int32)
	for _, m := range cg.members {
		maps.Copy(cg.subscribed, m.resolve(topics))
	}
	old.stopTimers()
	g.classic, g.consumer = nil, cg
	for _, m := range cg.members {
		c.armConsumerSession(g, m)
	}
	c.log.Info("upgraded classic group to the consumer protocol", "group", g.name, "members", len(cg.members))
	return nil
}
