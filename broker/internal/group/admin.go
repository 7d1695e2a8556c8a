package group

import (
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// describeGroups serves DescribeGroups for classic groups. Consumer groups
// are described by ConsumerGroupDescribe; here they are not found, as in
// Kafka.
func (c *Coordinator) describeGroups(req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range req.Groups {
		rg := kmsg.NewDescribeGroupsResponseGroup()
		rg.Group = name
		g := c.groups[name]
		switch {
		case g == nil && req.Version >= 6:
			rg.State = stateDead.String()
			rg.ErrorCode, rg.ErrorMessage = kerr.GroupIDNotFound.Code, errMessage("Group %s not found.", name)
		case g == nil:
			rg.State = stateDead.String()
		case g.consumer != nil:
			rg.State = stateDead.String()
			rg.ErrorCode = kerr.GroupIDNotFound.Code
			if req.Version >= 6 {
				rg.ErrorMessage = errMessage("Group %s is not a classic group.", name)
			}
		default:
			cg := g.classic
			// As in Kafka, the protocol and the members' metadata and
			// assignments are shown only while the group is Stable, and
			// client hosts with Java's leading slash.
			rg.State, rg.ProtocolType = cg.state.String(), cg.protocolType
			if cg.state == stateStable {
				rg.Protocol = cg.protocol
			}
			for _, id := range slices.Sorted(maps.Keys(cg.members)) {
				m := cg.members[id]
				rm := kmsg.NewDescribeGroupsResponseGroupMember()
				rm.MemberID, rm.InstanceID, rm.ClientID, rm.ClientHost = m.id, m.instanceID, m.clientID, "/"+m.host
				if cg.state == stateStable {
					rm.ProtocolMetadata, rm.MemberAssignment = m.metadata(cg.protocol), m.assignment
				}
				rg.Members = append(rg.Members, rm)
			}
		}
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

// listGroups serves ListGroups with its state (v4+) and type (v5+)
// filters, both matched without regard to case.
func (c *Coordinator) listGroups(req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	matches := func(filter []string, v string) bool {
		return len(filter) == 0 || slices.ContainsFunc(filter, func(f string) bool { return strings.EqualFold(f, v) })
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(c.groups)) {
		g := c.groups[name]
		if !matches(req.StatesFilter, g.state()) || !matches(req.TypesFilter, g.typeName()) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = name, g.protocolType(), g.state(), g.typeName()
		resp.Groups = append(resp.Groups, lg)
	}
	return resp
}

// deleteGroups serves DeleteGroups: only empty groups can be deleted, and
// their offsets go with them.
func (c *Coordinator) deleteGroups(req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.store.batch()
	var deleted []*group
	for _, name := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = name
		g := c.groups[name]
		switch {
		case name == "":
			rg.ErrorCode = kerr.InvalidGroupID.Code
		case g == nil || (g.classic != nil && g.classic.state == stateDead):
			rg.ErrorCode = kerr.GroupIDNotFound.Code
		case !g.isEmpty():
			rg.ErrorCode = kerr.NonEmptyGroup.Code
		default:
			deleted = append(deleted, g)
		}
		resp.Groups = append(resp.Groups, rg)
	}
	for _, g := range deleted {
		c.removeGroupLocked(g, b)
	}
	if err := b.commit(); err != nil {
		c.log.Error("delete groups", "err", err)
		for i := range resp.Groups {
			if resp.Groups[i].ErrorCode == 0 {
				resp.Groups[i].ErrorCode = kerr.CoordinatorNotAvailable.Code
			}
		}
	}
	return resp
}
