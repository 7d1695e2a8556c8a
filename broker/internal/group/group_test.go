package group

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// harness is a coordinator over a real Pebble directory with a topic set
// and group configs the test controls.
type harness struct {
	t       *testing.T
	dir     string
	topics  atomic.Pointer[map[string]Topic]
	configs sync.Map // group -> map[string]string
	ret     time.Duration
	// reserved names no consumer group may take (share groups').
	reserved map[string]bool
	c        *Coordinator
}

func newHarness(t *testing.T, topics ...Topic) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	m := make(map[string]Topic)
	for i, tp := range topics {
		tp.ID = [16]byte{byte(i + 1)}
		m[tp.Name] = tp
	}
	h.topics.Store(&m)
	h.open()
	t.Cleanup(func() {
		if err := h.c.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

func (h *harness) open() {
	h.t.Helper()
	c, err := Open(Config{
		Dir:    h.dir,
		Topics: func() map[string]Topic { return *h.topics.Load() },
		GroupConfig: func(g string) map[string]string {
			v, _ := h.configs.Load(g)
			m, _ := v.(map[string]string)
			return m
		},
		OffsetsRetention: h.ret,
		Reserved:         func(g string) bool { return h.reserved[g] },
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.c = c
}

func (h *harness) restart() {
	h.t.Helper()
	if err := h.c.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.open()
}

func handle[R kmsg.Response](h *harness, req kmsg.Request) R {
	h.t.Helper()
	if !h.c.Handles(req.Key()) {
		h.t.Fatalf("key %d not handled", req.Key())
	}
	resp := h.c.Handle(context.Background(), Client{ClientID: "test", Host: "127.0.0.1"}, req)
	if resp.GetVersion() != req.GetVersion() {
		h.t.Fatalf("response version %d, request %d", resp.GetVersion(), req.GetVersion())
	}
	return resp.(R)
}

func wantCode(t *testing.T, what string, got int16, want *kerr.Error) {
	t.Helper()
	w := int16(0)
	if want != nil {
		w = want.Code
	}
	if got != w {
		t.Fatalf("%s: error %v, want %v", what, kerr.ErrorForCode(got), want)
	}
}

// classic join helpers

func joinReq(group, member string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version = 9
	r.Group, r.MemberID = group, member
	r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10000, 2000
	r.ProtocolType = "consumer"
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = []string{"t"}
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "cooperative-sticky", Metadata: md.AppendTo(nil)}}
	return r
}

// joinAsync starts a JoinGroup and returns a channel with its response.
func joinAsync(h *harness, req *kmsg.JoinGroupRequest) chan *kmsg.JoinGroupResponse {
	ch := make(chan *kmsg.JoinGroupResponse, 1)
	go func() {
		ch <- h.c.Handle(context.Background(), Client{ClientID: "test"}, req).(*kmsg.JoinGroupResponse)
	}()
	return ch
}

func recv[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a response")
		panic("unreachable")
	}
}

// waitMembers waits until a classic group has n members.
func waitMembers(h *harness, group string, n int) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := kmsg.NewPtrDescribeGroupsRequest()
		d.Version, d.Groups = 5, []string{group}
		if len(handle[*kmsg.DescribeGroupsResponse](h, d).Groups[0].Members) == n {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("group %s never reached %d members", group, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// memberID performs the KIP-394 handshake and returns the assigned id.
func memberID(h *harness, group string) string {
	h.t.Helper()
	r := handle[*kmsg.JoinGroupResponse](h, joinReq(group, ""))
	wantCode(h.t, "first join", r.ErrorCode, kerr.MemberIDRequired)
	if r.MemberID == "" {
		h.t.Fatal("no member id handed out")
	}
	return r.MemberID
}

func syncReq(group, member string, gen int32, assign map[string][]byte) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version = 5
	r.Group, r.MemberID, r.Generation = group, member, gen
	for _, id := range slices.Sorted(maps.Keys(assign)) {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: assign[id]})
	}
	return r
}

func heartbeatReq(group, member string, gen int32) *kmsg.HeartbeatRequest {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version = 4
	r.Group, r.MemberID, r.Generation = group, member, gen
	return r
}

// formClassic brings n members into a stable generation and returns their
// ids, the leader's first.
func formClassic(h *harness, group string, n int) ([]string, int32) {
	h.t.Helper()
	var ids []string
	for range n {
		ids = append(ids, memberID(h, group))
	}
	var chans []chan *kmsg.JoinGroupResponse
	for _, id := range ids {
		chans = append(chans, joinAsync(h, joinReq(group, id)))
	}
	var leader string
	var gen int32
	for _, ch := range chans {
		r := recv(h.t, ch)
		wantCode(h.t, "join", r.ErrorCode, nil)
		leader, gen = r.LeaderID, r.Generation
		if r.MemberID == r.LeaderID && len(r.Members) != n {
			h.t.Fatalf("leader saw %d members, want %d", len(r.Members), n)
		}
	}
	assign := make(map[string][]byte)
	for _, id := range ids {
		assign[id] = []byte("for " + id)
	}
	syncs := make([]chan *kmsg.SyncGroupResponse, len(ids))
	for i, id := range ids {
		syncs[i] = make(chan *kmsg.SyncGroupResponse, 1)
		req := syncReq(group, id, gen, nil)
		if id == leader {
			req = syncReq(group, id, gen, assign)
		}
		go func() { syncs[i] <- h.c.Handle(context.Background(), Client{}, req).(*kmsg.SyncGroupResponse) }()
	}
	for i, ch := range syncs {
		r := recv(h.t, ch)
		wantCode(h.t, "sync", r.ErrorCode, nil)
		if string(r.MemberAssignment) != "for "+ids[i] {
			h.t.Fatalf("member %s got assignment %q", ids[i], r.MemberAssignment)
		}
	}
	slices.SortFunc(ids, func(a, b string) int {
		if a == leader {
			return -1
		}
		if b == leader {
			return 1
		}
		return 0
	})
	return ids, gen
}

func TestClassicJoinSyncHeartbeatLeave(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 4})
	ids, gen := formClassic(h, "g", 3)
	if gen != 1 {
		t.Fatalf("generation %d, want 1", gen)
	}
	for _, id := range ids {
		wantCode(t, "heartbeat", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", id, gen)).ErrorCode, nil)
	}
	wantCode(t, "stale generation", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", ids[0], gen-1)).ErrorCode, kerr.IllegalGeneration)
	wantCode(t, "unknown member", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", "nobody", gen)).ErrorCode, kerr.UnknownMemberID)

	d := kmsg.NewPtrDescribeGroupsRequest()
	d.Version, d.Groups = 5, []string{"g"}
	dg := handle[*kmsg.DescribeGroupsResponse](h, d).Groups[0]
	if dg.State != "Stable" || dg.Protocol != "cooperative-sticky" || len(dg.Members) != 3 {
		t.Fatalf("described %s %s with %d members", dg.State, dg.Protocol, len(dg.Members))
	}

	l := kmsg.NewPtrLeaveGroupRequest()
	l.Version, l.Group = 5, "g"
	l.Members = []kmsg.LeaveGroupRequestMember{{MemberID: ids[2]}, {MemberID: "nobody"}}
	lr := handle[*kmsg.LeaveGroupResponse](h, l)
	wantCode(t, "leave", lr.Members[0].ErrorCode, nil)
	wantCode(t, "leave unknown", lr.Members[1].ErrorCode, kerr.UnknownMemberID)
	wantCode(t, "heartbeat after leave", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", ids[0], gen)).ErrorCode, kerr.RebalanceInProgress)

	// The remaining two rejoin into generation 2.
	a, b := joinAsync(h, joinReq("g", ids[0])), joinAsync(h, joinReq("g", ids[1]))
	ra, rb := recv(t, a), recv(t, b)
	if ra.Generation != 2 || rb.Generation != 2 {
		t.Fatalf("generations %d %d after leave, want 2", ra.Generation, rb.Generation)
	}
}

func TestClassicSessionTimeoutExpiresMember(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 2})
	id := memberID(h, "g")
	req := joinReq("g", id)
	req.SessionTimeoutMillis = 300
	r := recv(t, joinAsync(h, req))
	wantCode(t, "join", r.ErrorCode, nil)
	sr := handle[*kmsg.SyncGroupResponse](h, syncReq("g", id, r.Generation, map[string][]byte{id: []byte("x")}))
	wantCode(t, "sync", sr.ErrorCode, nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := kmsg.NewPtrDescribeGroupsRequest()
		d.Version, d.Groups = 5, []string{"g"}
		if g := handle[*kmsg.DescribeGroupsResponse](h, d).Groups[0]; g.State == "Empty" && len(g.Members) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("member not expired after its session timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantCode(t, "heartbeat of expired member", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", id, r.Generation)).ErrorCode, kerr.UnknownMemberID)
}

func TestClassicStaticMemberRejoinsWithoutRebalance(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 2})
	inst := "instance-s"
	staticJoin := func(member string) *kmsg.JoinGroupRequest {
		q := joinReq("g", member)
		q.InstanceID = &inst
		return q
	}
	// A pending member id keeps the join phase open until all three are in.
	leader, other := memberID(h, "g"), memberID(h, "g")
	lch := joinAsync(h, joinReq("g", leader))
	waitMembers(h, "g", 1)
	sch := joinAsync(h, staticJoin(""))
	waitMembers(h, "g", 2)
	or := recv(t, joinAsync(h, joinReq("g", other)))
	sr, lr := recv(t, sch), recv(t, lch)
	wantCode(t, "static join", sr.ErrorCode, nil)
	if lr.LeaderID != leader || sr.Generation != 1 || or.Generation != 1 {
		t.Fatalf("leader %s generation %d, want %s 1", lr.LeaderID, sr.Generation, leader)
	}
	static := sr.MemberID
	ss, osync := make(chan *kmsg.SyncGroupResponse, 1), make(chan *kmsg.SyncGroupResponse, 1)
	go func() {
		ss <- h.c.Handle(context.Background(), Client{}, syncReq("g", static, 1, nil)).(*kmsg.SyncGroupResponse)
	}()
	go func() {
		osync <- h.c.Handle(context.Background(), Client{}, syncReq("g", other, 1, nil)).(*kmsg.SyncGroupResponse)
	}()
	handle[*kmsg.SyncGroupResponse](h, syncReq("g", leader, 1, map[string][]byte{leader: []byte("l"), static: []byte("s"), other: []byte("o")}))
	if r := recv(t, ss); string(r.MemberAssignment) != "s" {
		t.Fatalf("static member assignment %q", r.MemberAssignment)
	}
	recv(t, osync)

	// The static member restarts: it gets a new member id in the same
	// generation, with its assignment, and nobody rebalances.
	again := handle[*kmsg.JoinGroupResponse](h, staticJoin(""))
	wantCode(t, "static rejoin", again.ErrorCode, nil)
	if again.MemberID == static || again.Generation != 1 {
		t.Fatalf("static rejoin: member %s generation %d", again.MemberID, again.Generation)
	}
	if r := handle[*kmsg.SyncGroupResponse](h, syncReq("g", again.MemberID, 1, nil)); string(r.MemberAssignment) != "s" {
		t.Fatalf("static member assignment after rejoin %q", r.MemberAssignment)
	}
	wantCode(t, "leader heartbeat", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", leader, 1)).ErrorCode, nil)
	old := heartbeatReq("g", static, 1)
	old.InstanceID = &inst
	wantCode(t, "old static id", handle[*kmsg.HeartbeatResponse](h, old).ErrorCode, kerr.FencedInstanceID)
}

func TestOffsetsCommitFetchDeleteRestart(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 3}, Topic{Name: "u", Partitions: 1})
	commit := func(group, member string, gen int32, topic string, part int32, off int64) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version = 9
		r.Group, r.MemberID, r.Generation = group, member, gen
		p := kmsg.NewOffsetCommitRequestTopicPartition()
		p.Partition, p.Offset, p.Metadata = part, off, kmsg.StringPtr("md")
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetCommitRequestTopicPartition{p}}}
		return handle[*kmsg.OffsetCommitResponse](h, r).Topics[0].Partitions[0].ErrorCode
	}
	wantCode(t, "admin commit", commit("simple", "", -1, "t", 0, 10), nil)
	wantCode(t, "admin commit", commit("simple", "", -1, "u", 0, 7), nil)
	wantCode(t, "unknown topic", commit("simple", "", -1, "nope", 0, 1), kerr.UnknownTopicOrPartition)
	wantCode(t, "bad partition", commit("simple", "", -1, "t", 9, 1), kerr.UnknownTopicOrPartition)
	wantCode(t, "member commit to missing group", commit("missing", "m", 3, "t", 0, 1), kerr.IllegalGeneration)

	ids, gen := formClassic(h, "g", 2)
	wantCode(t, "member commit", commit("g", ids[1], gen, "t", 1, 42), nil)
	wantCode(t, "stale generation", commit("g", ids[1], gen+1, "t", 1, 43), kerr.IllegalGeneration)
	wantCode(t, "unknown member", commit("g", "nobody", gen, "t", 1, 43), kerr.UnknownMemberID)
	wantCode(t, "admin commit to active group", commit("g", "", -1, "t", 1, 43), kerr.UnknownMemberID)

	h.restart()

	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version = 9
	f.Groups = []kmsg.OffsetFetchRequestGroup{
		{Group: "simple", MemberEpoch: -1},
		{Group: "g", MemberEpoch: -1, Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 1}}}},
	}
	fr := handle[*kmsg.OffsetFetchResponse](h, f)
	s := fr.Groups[0]
	if len(s.Topics) != 2 || s.Topics[0].Partitions[0].Offset != 10 || s.Topics[1].Partitions[0].Offset != 7 || *s.Topics[0].Partitions[0].Metadata != "md" {
		t.Fatalf("simple group offsets after restart: %+v", s.Topics)
	}
	gp := fr.Groups[1].Topics[0].Partitions
	if gp[0].Offset != -1 || gp[1].Offset != 42 {
		t.Fatalf("group g offsets after restart: %d %d, want -1 42", gp[0].Offset, gp[1].Offset)
	}

	// v7, the single-group layout.
	f7 := kmsg.NewPtrOffsetFetchRequest()
	f7.Version, f7.Group = 7, "simple"
	if r := handle[*kmsg.OffsetFetchResponse](h, f7); len(r.Topics) != 2 || r.Topics[1].Partitions[0].Offset != 7 {
		t.Fatalf("v7 fetch: %+v", r.Topics)
	}

	// After the restart members are gone and must rejoin.
	wantCode(t, "commit after restart", commit("g", ids[1], gen, "t", 1, 44), kerr.UnknownMemberID)

	del := kmsg.NewPtrOffsetDeleteRequest()
	del.Group = "simple"
	del.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "u", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	wantCode(t, "offset delete", handle[*kmsg.OffsetDeleteResponse](h, del).Topics[0].Partitions[0].ErrorCode, nil)
	h.restart()
	if r := handle[*kmsg.OffsetFetchResponse](h, f7); len(r.Topics) != 1 || r.Topics[0].Topic != "t" {
		t.Fatalf("after offset delete and restart: %+v", r.Topics)
	}
}

func TestListDeleteGroups(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 2})
	formClassic(h, "active", 1)
	c := kmsg.NewPtrOffsetCommitRequest()
	c.Version, c.Group, c.Generation = 9, "idle", -1
	c.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	handle[*kmsg.OffsetCommitResponse](h, c)
	consumerJoin(h, "new", "m1", []string{"t"})

	list := func(states, types []string) []string {
		r := kmsg.NewPtrListGroupsRequest()
		r.Version, r.StatesFilter, r.TypesFilter = 5, states, types
		var out []string
		for _, g := range handle[*kmsg.ListGroupsResponse](h, r).Groups {
			out = append(out, g.Group+"/"+g.GroupType+"/"+g.GroupState)
		}
		return out
	}
	if got := list(nil, nil); !slices.Equal(got, []string{"active/classic/Stable", "idle/classic/Empty", "new/consumer/Stable"}) {
		t.Fatalf("all groups: %v", got)
	}
	if got := list([]string{"empty"}, nil); !slices.Equal(got, []string{"idle/classic/Empty"}) {
		t.Fatalf("empty groups: %v", got)
	}
	if got := list(nil, []string{"Consumer"}); !slices.Equal(got, []string{"new/consumer/Stable"}) {
		t.Fatalf("consumer groups: %v", got)
	}

	d := kmsg.NewPtrDeleteGroupsRequest()
	d.Version, d.Groups = 2, []string{"active", "idle", "none"}
	r := handle[*kmsg.DeleteGroupsResponse](h, d)
	wantCode(t, "delete active", r.Groups[0].ErrorCode, kerr.NonEmptyGroup)
	wantCode(t, "delete idle", r.Groups[1].ErrorCode, nil)
	wantCode(t, "delete missing", r.Groups[2].ErrorCode, kerr.GroupIDNotFound)
	h.restart()
	if got := list(nil, []string{"classic"}); !slices.Equal(got, []string{"active/classic/Empty"}) {
		t.Fatalf("after delete and restart: %v", got)
	}
}

func TestOffsetsRetentionAndDeletedTopics(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), ret: 200 * time.Millisecond}
	topics := map[string]Topic{"t": {Name: "t", ID: [16]byte{1}, Partitions: 1}, "u": {Name: "u", ID: [16]byte{2}, Partitions: 1}}
	h.topics.Store(&topics)
	h.open()
	t.Cleanup(func() { h.c.Close() })

	c := kmsg.NewPtrOffsetCommitRequest()
	c.Version, c.Group, c.Generation = 9, "keep", -1
	c.Topics = []kmsg.OffsetCommitRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5}}},
		{Topic: "u", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 6}}},
	}
	handle[*kmsg.OffsetCommitResponse](h, c)

	// Deleting topic u drops its offsets.
	left := map[string]Topic{"t": topics["t"]}
	h.topics.Store(&left)
	h.c.TopicsChanged()
	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version, f.Group = 7, "keep"
	if r := handle[*kmsg.OffsetFetchResponse](h, f); len(r.Topics) != 1 || r.Topics[0].Topic != "t" {
		t.Fatalf("offsets after deleting u: %+v", r.Topics)
	}

	// The group is empty: after the retention its offsets and the group
	// are gone.
	deadline := time.Now().Add(5 * time.Second)
	for len(handle[*kmsg.OffsetFetchResponse](h, f).Topics) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("offsets of an empty group outlived the retention")
		}
		time.Sleep(50 * time.Millisecond)
	}
	l := kmsg.NewPtrListGroupsRequest()
	l.Version = 5
	if gs := handle[*kmsg.ListGroupsResponse](h, l).Groups; len(gs) != 0 {
		t.Fatalf("expired group still listed: %+v", gs)
	}
}

// TestReservedNamesRefused checks that a name held by a share group can
// become a consumer group by none of the three ways groups are created.
func TestReservedNamesRefused(t *testing.T) {
	h := &harness{t: t, dir: t.TempDir(), reserved: map[string]bool{"queue": true}}
	m := map[string]Topic{"t": {Name: "t", ID: [16]byte{1}, Partitions: 1}}
	h.topics.Store(&m)
	h.open()
	t.Cleanup(func() { h.c.Close() })

	join := handle[*kmsg.JoinGroupResponse](h, joinReq("queue", ""))
	wantCode(t, "JoinGroup", join.ErrorCode, kerr.InconsistentGroupProtocol)

	hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	hb.Version, hb.Group, hb.MemberID, hb.MemberEpoch, hb.SubscribedTopicNames = 1, "queue", "m1", 0, []string{"t"}
	wantCode(t, "ConsumerGroupHeartbeat", handle[*kmsg.ConsumerGroupHeartbeatResponse](h, hb).ErrorCode, kerr.GroupIDNotFound)

	oc := kmsg.NewPtrOffsetCommitRequest()
	oc.Version, oc.Group, oc.Generation = 9, "queue", -1
	ot := kmsg.NewOffsetCommitRequestTopic()
	ot.Topic = "t"
	op := kmsg.NewOffsetCommitRequestTopicPartition()
	op.Offset = 5
	ot.Partitions = append(ot.Partitions, op)
	oc.Topics = append(oc.Topics, ot)
	commit := handle[*kmsg.OffsetCommitResponse](h, oc)
	wantCode(t, "OffsetCommit", commit.Topics[0].Partitions[0].ErrorCode, kerr.GroupIDNotFound)

	if h.c.Exists("queue") {
		t.Fatal("a consumer group was created under a reserved name")
	}
}
