package differential

import (
	"crypto/rand"
	"encoding/base64"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func describeGroup(group string) func() kmsg.Request {
	return func() kmsg.Request {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		return req
	}
}

// findCoordinator asks both brokers for the coordinator of group until
// both name one (Kafka creates __consumer_offsets on the first ask) and
// compares the answers.
func (p *pair) findCoordinator(t *testing.T, group string) {
	t.Helper()
	newReq := func(side) kmsg.Request {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorKeys = []string{group}
		return req
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, k := p.bothFor(t, newReq)
		rc, kc := r.(*kmsg.FindCoordinatorResponse).Coordinators, k.(*kmsg.FindCoordinatorResponse).Coordinators
		if len(rc) == 1 && len(kc) == 1 && rc[0].ErrorCode == 0 && kc[0].ErrorCode == 0 && p.coordinatorLoaded(t, group) {
			rt, kt := trees(t, r, k)
			compare(t, "FindCoordinator", rt, kt, map[string]string{"Coordinators[0].Host": ""})
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no coordinator for %s: riffle %+v, kafka %+v", group, rc, kc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// coordinatorLoaded reports whether Kafka's coordinator has loaded the
// group's partition of __consumer_offsets (it answers NOT_COORDINATOR or
// COORDINATOR_LOAD_IN_PROGRESS until then).
func (p *pair) coordinatorLoaded(t *testing.T, group string) bool {
	t.Helper()
	resp := p.send(t, onKafka, describeGroup(group)()).(*kmsg.DescribeGroupsResponse)
	code := resp.Groups[0].ErrorCode
	return code != kerr.NotCoordinator.Code && code != kerr.CoordinatorLoadInProgress.Code && code != kerr.CoordinatorNotAvailable.Code
}

// memberID returns a client-generated member id, as KIP-848 and KIP-932
// members send: a Kafka Uuid in URL-safe base64.
func memberID(t *testing.T) string {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// TestClassicGroupStates walks one classic consumer group through its
// states on both brokers: Dead, member id required, CompletingRebalance,
// Stable, the heartbeat errors, Empty after the member leaves, and Dead
// again once deleted.
func TestClassicGroupStates(t *testing.T) {
	p := newPair(t)
	topic, group := topicName(t, "t"), topicName(t, "g")
	p.createTopic(t, topic, 2, nil)
	var (
		member     [2]string
		generation [2]int32
	)
	meta := (&kmsg.ConsumerMemberMetadata{Version: 0, Topics: []string{topic}}).AppendTo(nil)
	assignment := (&kmsg.ConsumerMemberAssignment{Version: 0, Topics: []kmsg.ConsumerMemberAssignmentTopic{
		{Topic: topic, Partitions: []int32{0, 1}},
	}}).AppendTo(nil)
	join := func(s side) kmsg.Request {
		req := kmsg.NewPtrJoinGroupRequest()
		req.Group, req.MemberID, req.ProtocolType = group, member[s], "consumer"
		req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 30_000, 30_000
		proto := kmsg.NewJoinGroupRequestProtocol()
		proto.Name, proto.Metadata = "range", meta
		req.Protocols = append(req.Protocols, proto)
		return req
	}
	step := func(what string, newReq func(side) kmsg.Request, documented map[string]string) (r, k kmsg.Response) {
		t.Helper()
		r, k = p.bothFor(t, newReq)
		rt, kt := trees(t, r, k)
		compare(t, what, rt, kt, documented)
		return r, k
	}
	describe := func(what string) {
		t.Helper()
		r, k := p.both(t, describeGroup(group))
		compare(t, what, r, k, nil)
	}

	p.findCoordinator(t, group)
	describe("DescribeGroups before the group exists")

	r, k := step("JoinGroup without member id", join, nil)
	for s, resp := range []kmsg.Response{r, k} {
		member[s] = resp.(*kmsg.JoinGroupResponse).MemberID
	}
	r, k = step("JoinGroup with the assigned member id", join, nil)
	for s, resp := range []kmsg.Response{r, k} {
		generation[s] = resp.(*kmsg.JoinGroupResponse).Generation
	}
	describe("DescribeGroups after JoinGroup")

	step("SyncGroup", func(s side) kmsg.Request {
		req := kmsg.NewPtrSyncGroupRequest()
		req.Group, req.MemberID, req.Generation = group, member[s], generation[s]
		req.ProtocolType, req.Protocol = kmsg.StringPtr("consumer"), kmsg.StringPtr("range")
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID, a.MemberAssignment = member[s], assignment
		req.GroupAssignment = append(req.GroupAssignment, a)
		return req
	}, nil)
	describe("DescribeGroups after SyncGroup")

	heartbeat := func(generationDelta int32, unknownMember bool) func(side) kmsg.Request {
		return func(s side) kmsg.Request {
			req := kmsg.NewPtrHeartbeatRequest()
			req.Group, req.MemberID, req.Generation = group, member[s], generation[s]+generationDelta
			if unknownMember {
				req.MemberID = "nobody"
			}
			return req
		}
	}
	step("Heartbeat", heartbeat(0, false), nil)
	step("Heartbeat with a stale generation", heartbeat(-1, false), nil)
	step("Heartbeat from an unknown member", heartbeat(0, true), nil)
	step("OffsetCommit", func(s side) kmsg.Request {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = group, member[s], generation[s]
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = 0, 0, -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}, nil)

	step("LeaveGroup", func(s side) kmsg.Request {
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group = group
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = member[s]
		req.Members = append(req.Members, m)
		return req
	}, nil)
	describe("DescribeGroups after LeaveGroup")

	step("ListGroups", func(side) kmsg.Request {
		req := kmsg.NewPtrListGroupsRequest()
		req.StatesFilter = []string{"Empty"}
		return req
	}, map[string]string{"Groups*": "the Kafka broker is shared by the package's tests; checked below"})
	r, k = p.bothFor(t, func(side) kmsg.Request { return kmsg.NewPtrListGroupsRequest() })
	for s, resp := range []kmsg.Response{r, k} {
		var found *kmsg.ListGroupsResponseGroup
		for i, g := range resp.(*kmsg.ListGroupsResponse).Groups {
			if g.Group == group {
				found = &resp.(*kmsg.ListGroupsResponse).Groups[i]
			}
		}
		if found == nil || found.GroupState != "Empty" || found.ProtocolType != "consumer" || found.GroupType != "classic" {
			t.Errorf("%s: ListGroups lists %+v for %s, want an Empty classic consumer group", side(s), found, group)
		}
	}

	step("DeleteGroups", func(side) kmsg.Request {
		req := kmsg.NewPtrDeleteGroupsRequest()
		req.Groups = []string{group}
		return req
	}, nil)
	describe("DescribeGroups after DeleteGroups")
}

// TestConsumerGroupStates joins one KIP-848 member on both brokers and
// compares the heartbeats and ConsumerGroupDescribe answers until it has
// its assignment, then leaves.
func TestConsumerGroupStates(t *testing.T) {
	p := newPair(t)
	topic, group := topicName(t, "t"), topicName(t, "g")
	p.createTopic(t, topic, 2, nil)
	id := memberID(t)
	var epoch [2]int32
	heartbeat := func(leave bool) func(side) kmsg.Request {
		return func(s side) kmsg.Request {
			req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
			req.Group, req.MemberID, req.MemberEpoch = group, id, epoch[s]
			if leave {
				req.MemberEpoch = -1
				return req
			}
			if epoch[s] == 0 {
				req.RebalanceTimeoutMillis = 30_000
				req.SubscribedTopicNames = []string{topic}
				req.ServerAssignor = kmsg.StringPtr("uniform")
				req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
			}
			return req
		}
	}
	describe := func() kmsg.Request {
		req := kmsg.NewPtrConsumerGroupDescribeRequest()
		req.Groups = []string{group}
		return req
	}
	heartbeatUntilAssigned(t, p, "ConsumerGroup", group, &epoch, heartbeat, describe, func(resp kmsg.Response) heartbeatView {
		r := resp.(*kmsg.ConsumerGroupHeartbeatResponse)
		return heartbeatView{r.ErrorCode, r.MemberEpoch, r.Assignment != nil, r.Assignment != nil && len(r.Assignment.Topics) > 0}
	}, consumerGroupDocumented)
}

// epochsDiffer: both brokers' epochs start low and only grow, as the
// protocol asks, but Kafka advances the group epoch once more after a
// member joins (when it refreshes the subscribed topics' metadata) and
// Riffle does not.
const epochsDiffer = "epoch numbering: Kafka bumps the group epoch again after a join when it refreshes topic metadata; both only increase"

// consumerGroupDocumented are the deliberate differences in KIP-848
// answers.
var consumerGroupDocumented = map[string]string{
	"*Epoch": epochsDiffer,
}

// joinDocumented are the deliberate differences in the answer to a
// member's first heartbeat.
var joinDocumented = map[string]string{
	"*Epoch":      epochsDiffer,
	"Assignment*": "Riffle assigns partitions in the answer to the joining heartbeat; Kafka in a later heartbeat",
	// Consumer groups only: share groups answer with the group's interval
	// on both.
	"HeartbeatIntervalMillis": "Riffle tells a consumer group member 100 ms within 3 s of a change of the target assignment or while its assignment is not its target; Kafka the group's interval",
}

// TestShareGroupStates joins one share group member on both brokers and
// compares ShareGroupHeartbeat and ShareGroupDescribe answers.
func TestShareGroupStates(t *testing.T) {
	p := newPair(t)
	topic, group := topicName(t, "t"), topicName(t, "g")
	p.createTopic(t, topic, 2, nil)
	id := memberID(t)
	var epoch [2]int32
	heartbeat := func(leave bool) func(side) kmsg.Request {
		return func(s side) kmsg.Request {
			req := kmsg.NewPtrShareGroupHeartbeatRequest()
			req.GroupID, req.MemberID, req.MemberEpoch = group, id, epoch[s]
			if leave {
				req.MemberEpoch = -1
				return req
			}
			if epoch[s] == 0 {
				req.SubscribedTopicNames = []string{topic}
			}
			return req
		}
	}
	describe := func() kmsg.Request {
		req := kmsg.NewPtrShareGroupDescribeRequest()
		req.GroupIDs = []string{group}
		return req
	}
	heartbeatUntilAssigned(t, p, "ShareGroup", group, &epoch, heartbeat, describe, func(resp kmsg.Response) heartbeatView {
		r := resp.(*kmsg.ShareGroupHeartbeatResponse)
		return heartbeatView{r.ErrorCode, r.MemberEpoch, r.Assignment != nil, r.Assignment != nil && len(r.Assignment.TopicPartitions) > 0}
	}, shareGroupDocumented)
}

// heartbeatView is what heartbeatUntilAssigned reads from a KIP-848 style
// heartbeat answer (ConsumerGroupHeartbeat, ShareGroupHeartbeat).
type heartbeatView struct {
	errorCode int16
	epoch     int32
	// hasAssignment: the answer carries an assignment; assigned: one
	// with partitions in it.
	hasAssignment, assigned bool
}

// heartbeatUntilAssigned joins one member of group on both brokers with
// heartbeat, compares the answers, heartbeats until both brokers have
// assigned it partitions and stopped changing the assignment, then
// leaves. The group's description (describeReq) is compared before, in
// between and after; documented lists the deliberate differences of
// every answer but the join. Epochs are kept per broker in epoch.
func heartbeatUntilAssigned(t *testing.T, p *pair, api, group string, epoch *[2]int32,
	heartbeat func(leave bool) func(side) kmsg.Request, describeReq func() kmsg.Request,
	view func(kmsg.Response) heartbeatView, documented map[string]string) {
	t.Helper()
	describe := func(what string) {
		t.Helper()
		r, k := p.both(t, describeReq)
		compare(t, what, r, k, documented)
	}
	p.findCoordinator(t, group)
	describe(api + "Describe before the group exists")
	r, k := p.bothFor(t, heartbeat(false))
	rt, kt := trees(t, r, k)
	compare(t, api+"Heartbeat join", rt, kt, joinDocumented)
	rv, kv := view(r), view(k)
	epoch[onRiffle], epoch[onKafka] = rv.epoch, kv.epoch
	// Both brokers assign at once in the join answer or by the next
	// heartbeat; wait until both have.
	assigned := [2]bool{rv.assigned, kv.assigned}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, k = p.bothFor(t, heartbeat(false))
		rv, kv = view(r), view(k)
		epoch[onRiffle], epoch[onKafka] = rv.epoch, kv.epoch
		settled := rv.errorCode == 0 && kv.errorCode == 0 && !rv.hasAssignment && !kv.hasAssignment
		if settled && assigned[onRiffle] && assigned[onKafka] {
			break
		}
		assigned[onRiffle] = assigned[onRiffle] || rv.assigned
		assigned[onKafka] = assigned[onKafka] || kv.assigned
		if time.Now().After(deadline) {
			t.Fatalf("heartbeats still changing: riffle %+v, kafka %+v", r, k)
		}
		time.Sleep(100 * time.Millisecond)
	}
	describe(api + "Describe once assigned")
	r, k = p.bothFor(t, heartbeat(true))
	rt, kt = trees(t, r, k)
	compare(t, api+"Heartbeat leave", rt, kt, documented)
	describe(api + "Describe after the member left")
}

// shareGroupDocumented are the deliberate differences in share group
// answers.
var shareGroupDocumented = consumerGroupDocumented
