package group

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// member is a KIP-848 member driven by hand: it owns exactly what the
// coordinator last assigned, as a client that revokes at once would.
type member struct {
	h     *harness
	group string
	id    string
	epoch int32
	owned partitions
}

func consumerJoin(h *harness, group, id string, topics []string) *member {
	h.t.Helper()
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID, r.MemberEpoch = group, id, 0
	r.SubscribedTopicNames = topics
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	r.RebalanceTimeoutMillis = 5000
	resp := handle[*kmsg.ConsumerGroupHeartbeatResponse](h, r)
	wantCode(h.t, "join "+id, resp.ErrorCode, nil)
	m := &member{h: h, group: group, id: *resp.MemberID, owned: make(partitions)}
	m.apply(resp)
	return m
}

func (m *member) apply(resp *kmsg.ConsumerGroupHeartbeatResponse) {
	m.epoch = resp.MemberEpoch
	if resp.Assignment == nil {
		return
	}
	names := make(map[[16]byte]string)
	for name, t := range *m.h.topics.Load() {
		names[t.ID] = name
	}
	m.owned = make(partitions)
	for _, t := range resp.Assignment.Topics {
		for _, p := range t.Partitions {
			m.owned[tp{names[t.TopicID], p}] = struct{}{}
		}
	}
}

// beat heartbeats with the owned partitions and applies the answer.
func (m *member) beat() *kmsg.ConsumerGroupHeartbeatResponse {
	m.h.t.Helper()
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version = 1
	r.Group, r.MemberID, r.MemberEpoch = m.group, m.id, m.epoch
	topics := *m.h.topics.Load()
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	for _, p := range m.owned.sorted() {
		id := topics[p.topic].ID
		if n := len(r.Topics); n == 0 || r.Topics[n-1].TopicID != id {
			r.Topics = append(r.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: id})
		}
		r.Topics[len(r.Topics)-1].Partitions = append(r.Topics[len(r.Topics)-1].Partitions, p.partition)
	}
	resp := handle[*kmsg.ConsumerGroupHeartbeatResponse](m.h, r)
	if resp.ErrorCode == 0 {
		m.apply(resp)
	}
	return resp
}

// checkExclusive fails if a partition is owned by two members.
func checkExclusive(t *testing.T, ms ...*member) {
	t.Helper()
	seen := make(map[tp]string)
	for _, m := range ms {
		for p := range m.owned {
			if o, ok := seen[p]; ok {
				t.Fatalf("%s[%d] owned by %s and %s", p.topic, p.partition, o, m.id)
			}
			seen[p] = m.id
		}
	}
}

// settle heartbeats every member until the group is stable.
func settle(t *testing.T, ms ...*member) {
	t.Helper()
	for range 20 {
		for _, m := range ms {
			if r := m.beat(); r.ErrorCode != 0 {
				t.Fatalf("heartbeat of %s: %v", m.id, kerr.ErrorForCode(r.ErrorCode))
			}
			checkExclusive(t, ms...)
		}
		d := kmsg.NewPtrConsumerGroupDescribeRequest()
		d.Version, d.Groups = 1, []string{ms[0].group}
		if g := handle[*kmsg.ConsumerGroupDescribeResponse](ms[0].h, d).Groups[0]; g.State == "Stable" {
			return
		}
	}
	t.Fatal("group did not become stable")
}

func TestConsumerRevokeBeforeAssign(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 6})
	a := consumerJoin(h, "g", "a", []string{"t"})
	if len(a.owned) != 6 || a.epoch != 1 {
		t.Fatalf("first member owns %d at epoch %d, want 6 at 1", len(a.owned), a.epoch)
	}
	b := consumerJoin(h, "g", "b", []string{"t"})
	if len(b.owned) != 0 || b.epoch != 2 {
		t.Fatalf("second member owns %d at epoch %d before revocation, want 0 at 2", len(b.owned), b.epoch)
	}
	// Until the partitions it is to get are released, b is told to come
	// back sooner than the group's interval; so is a, which has
	// partitions to revoke. (The target was computed just now, within
	// settlingWindow, when every member is told the short interval: move
	// it back past the window to see the rule for reconciling alone.)
	settleTarget(h, "g")
	short := int32(reconcilingHeartbeatInterval / time.Millisecond)
	if r := b.beat(); r.HeartbeatIntervalMillis != short {
		t.Fatalf("waiting member's heartbeat interval %d ms, want %d", r.HeartbeatIntervalMillis, short)
	}
	// a is told to keep three; it stays at epoch 1 until it reports
	// having released the rest.
	if r := a.beat(); r.MemberEpoch != 1 || len(a.owned) != 3 || r.HeartbeatIntervalMillis != short {
		t.Fatalf("revoking member at epoch %d owns %d with heartbeat interval %d ms, want 1, 3 and %d", r.MemberEpoch, len(a.owned), r.HeartbeatIntervalMillis, short)
	}
	checkExclusive(t, a, b)
	if r := a.beat(); a.epoch != 2 || r.HeartbeatIntervalMillis != int32(defaultHeartbeatInterval/time.Millisecond) {
		t.Fatalf("member epoch %d, heartbeat interval %d ms after revoking, want 2 and the default", a.epoch, r.HeartbeatIntervalMillis)
	}
	if r := b.beat(); len(b.owned) != 3 || r.HeartbeatIntervalMillis != int32(defaultHeartbeatInterval/time.Millisecond) {
		t.Fatalf("second member owns %d with heartbeat interval %d ms after release, want 3 and the default", len(b.owned), r.HeartbeatIntervalMillis)
	}
	checkExclusive(t, a, b)

	d := kmsg.NewPtrConsumerGroupDescribeRequest()
	d.Version, d.Groups = 1, []string{"g"}
	g := handle[*kmsg.ConsumerGroupDescribeResponse](h, d).Groups[0]
	if g.State != "Stable" || g.Epoch != 2 || g.AssignorName != "uniform" || len(g.Members) != 2 || g.Members[0].MemberType != 1 {
		t.Fatalf("described %s epoch %d assignor %s members %d", g.State, g.Epoch, g.AssignorName, len(g.Members))
	}

	// Fencing: a heartbeat or commit at the wrong epoch.
	stale := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	stale.Version, stale.Group, stale.MemberID, stale.MemberEpoch = 1, "g", "a", 7
	wantCode(t, "heartbeat at a future epoch", handle[*kmsg.ConsumerGroupHeartbeatResponse](h, stale).ErrorCode, kerr.FencedMemberEpoch)
	commit := func(id string, epoch int32) int16 {
		return commitAt(h, "g", id, epoch, tp{"t", 0})[0]
	}
	wantCode(t, "commit at the member epoch", commit("a", 2), nil)
	wantCode(t, "commit at an epoch before any assignment", commit("a", 0), kerr.StaleMemberEpoch)
	wantCode(t, "commit at a future epoch", commit("a", 3), kerr.FencedMemberEpoch)
	wantCode(t, "commit by a stranger", commit("x", 2), kerr.UnknownMemberID)
	wantCode(t, "admin commit to an active group", commit("", -1), kerr.UnknownMemberID)
	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version = 9
	f.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", MemberID: kmsg.StringPtr("a"), MemberEpoch: 1}}
	wantCode(t, "fetch at an old epoch", handle[*kmsg.OffsetFetchResponse](h, f).Groups[0].ErrorCode, kerr.StaleMemberEpoch)

	// b leaves: a gets everything back.
	leave := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	leave.Version, leave.Group, leave.MemberID, leave.MemberEpoch = 1, "g", "b", -1
	if r := handle[*kmsg.ConsumerGroupHeartbeatResponse](h, leave); r.ErrorCode != 0 || r.MemberEpoch != -1 {
		t.Fatalf("leave: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	if a.beat(); len(a.owned) != 6 {
		t.Fatalf("remaining member owns %d after leave, want 6", len(a.owned))
	}
}

// settleTarget moves the last change of group's target assignment back
// past settlingWindow, as if it had been computed that long ago.
func settleTarget(h *harness, group string) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.c.groups[group].consumer.targetAt = time.Now().Add(-settlingWindow)
}

// TestConsumerSettlingHeartbeatInterval checks that every member is told
// the short heartbeat interval within settlingWindow of the target's last
// change, so that the first of several members started together learns
// of the others' joining at once, and the group's interval after it.
func TestConsumerSettlingHeartbeatInterval(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 2})
	a := consumerJoin(h, "g", "a", []string{"t"})
	short := int32(reconcilingHeartbeatInterval / time.Millisecond)
	if r := a.beat(); len(a.owned) != 2 || r.HeartbeatIntervalMillis != short {
		t.Fatalf("member owns %d with heartbeat interval %d ms just after joining, want 2 and %d", len(a.owned), r.HeartbeatIntervalMillis, short)
	}
	settleTarget(h, "g")
	if r := a.beat(); r.HeartbeatIntervalMillis != int32(defaultHeartbeatInterval/time.Millisecond) {
		t.Fatalf("settled member's heartbeat interval %d ms, want the default %v", r.HeartbeatIntervalMillis, defaultHeartbeatInterval)
	}
}

// commitAt commits offset 1 for ps as member id at epoch and returns the
// error code of each partition.
func commitAt(h *harness, group, id string, epoch int32, ps ...tp) []int16 {
	h.t.Helper()
	c := kmsg.NewPtrOffsetCommitRequest()
	c.Version, c.Group, c.MemberID, c.Generation = 9, group, id, epoch
	for _, p := range ps {
		if n := len(c.Topics); n == 0 || c.Topics[n-1].Topic != p.topic {
			c.Topics = append(c.Topics, kmsg.OffsetCommitRequestTopic{Topic: p.topic})
		}
		last := &c.Topics[len(c.Topics)-1]
		last.Partitions = append(last.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: p.partition, Offset: 1, LeaderEpoch: -1})
	}
	var codes []int16
	for _, t := range handle[*kmsg.OffsetCommitResponse](h, c).Topics {
		for _, p := range t.Partitions {
			codes = append(codes, p.ErrorCode)
		}
	}
	if len(codes) != len(ps) {
		h.t.Fatalf("commit of %d partitions answered %d", len(ps), len(codes))
	}
	return codes
}

// TestConsumerCommitAssignmentEpochs checks the commit rule of KIP-1251:
// a member commits at an older epoch the partitions it has held since
// that epoch, assigned or pending revocation, and nothing else.
func TestConsumerCommitAssignmentEpochs(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 6})
	a := consumerJoin(h, "g", "a", []string{"t"})
	if len(a.owned) != 6 || a.epoch != 1 {
		t.Fatalf("first member owns %d at epoch %d, want 6 at 1", len(a.owned), a.epoch)
	}
	b := consumerJoin(h, "g", "b", []string{"t"})
	settle(t, a, b)
	if a.epoch != 2 || b.epoch != 2 || len(a.owned) != 3 || len(b.owned) != 3 {
		t.Fatalf("after the scale-out a owns %d at %d, b %d at %d; want 3 each at 2", len(a.owned), a.epoch, len(b.owned), b.epoch)
	}
	kept, moved := a.owned.sorted()[0], b.owned.sorted()[0]

	// a moved to epoch 2 keeping kept, held since epoch 1: a commit at
	// epoch 1, sent before a heard of epoch 2, is accepted.
	wantCode(t, "commit at the previous epoch of a partition held since", commitAt(h, "g", "a", 1, kept)[0], nil)
	if got := committed(h.c, "g")[kept.partition]; got != 1 {
		t.Fatalf("offset of the kept partition %d, want 1", got)
	}
	// b was given moved at epoch 2: its commits at epoch 1 are refused,
	// and so are a's, which gave it up.
	wantCode(t, "commit at an epoch older than the assignment", commitAt(h, "g", "b", 1, moved)[0], kerr.StaleMemberEpoch)
	wantCode(t, "commit of a partition given up", commitAt(h, "g", "a", 1, moved)[0], kerr.StaleMemberEpoch)
	// One partition refused refuses the whole commit.
	for i, code := range commitAt(h, "g", "a", 1, a.owned.sorted()[1], moved) {
		wantCode(t, fmt.Sprintf("partition %d of a commit with one partition refused", i), code, kerr.StaleMemberEpoch)
	}
	if got, ok := committed(h.c, "g")[a.owned.sorted()[1].partition]; ok {
		t.Fatalf("a refused commit wrote offset %d", got)
	}
	wantCode(t, "commit at the member epoch", commitAt(h, "g", "b", 2, moved)[0], nil)
	wantCode(t, "commit at a future epoch", commitAt(h, "g", "a", 3, kept)[0], kerr.FencedMemberEpoch)

	// OffsetFetch still wants the member epoch itself, as in Kafka.
	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version = 9
	f.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g", MemberID: kmsg.StringPtr("a"), MemberEpoch: 1}}
	wantCode(t, "fetch at the previous epoch", handle[*kmsg.OffsetFetchResponse](h, f).Groups[0].ErrorCode, kerr.StaleMemberEpoch)

	// c joins: a and b each give up one partition and stay at epoch 2
	// until they report it released. A partition pending revocation still
	// commits at an epoch no older than its assignment.
	c := consumerJoin(h, "g", "c", []string{"t"})
	before := maps.Clone(a.owned)
	if a.beat(); a.epoch != 2 {
		t.Fatalf("revoking member at epoch %d, want 2", a.epoch)
	}
	var revoking []tp
	for p := range before {
		if _, ok := a.owned[p]; !ok {
			revoking = append(revoking, p)
		}
	}
	if len(revoking) != 1 {
		t.Fatalf("a revokes %v, want one partition", revoking)
	}
	wantCode(t, "commit at an old epoch of a partition pending revocation", commitAt(h, "g", "a", 1, revoking[0])[0], nil)
	settle(t, a, b, c)
	if a.epoch != 3 {
		t.Fatalf("a at epoch %d after revoking, want 3", a.epoch)
	}
	wantCode(t, "commit of a revoked partition", commitAt(h, "g", "a", 2, revoking[0])[0], kerr.StaleMemberEpoch)
	for p := range a.owned {
		wantCode(t, "commit at the epoch before the revocation", commitAt(h, "g", "a", 2, p)[0], nil)
	}
}

func TestConsumerJoiningMemberMovesOnlyWhatItTakes(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 12})
	ms := []*member{consumerJoin(h, "g", "m0", []string{"t"})}
	for i := 1; i < 3; i++ {
		ms = append(ms, consumerJoin(h, "g", fmt.Sprintf("m%d", i), []string{"t"}))
		settle(t, ms...)
	}
	before := make([]partitions, len(ms))
	for i, m := range ms {
		before[i] = maps.Clone(m.owned)
		if len(m.owned) != 4 {
			t.Fatalf("%s owns %d of 12 with 3 members", m.id, len(m.owned))
		}
	}
	ms = append(ms, consumerJoin(h, "g", "m3", []string{"t"}))
	settle(t, ms...)
	moved := 0
	for i, m := range ms[:3] {
		if len(m.owned) != 3 || !subset(m.owned, before[i]) {
			t.Fatalf("%s owns %v after the fourth joined; before %v", m.id, m.owned.sorted(), before[i].sorted())
		}
		moved += len(before[i]) - len(m.owned)
	}
	if moved != 3 || len(ms[3].owned) != 3 {
		t.Fatalf("%d partitions moved, newcomer owns %d; want 3 and 3", moved, len(ms[3].owned))
	}
}

func TestConsumerSessionTimeoutFromGroupConfig(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 4})
	h.configs.Store("g", map[string]string{ConfigSessionTimeout: "300", ConfigHeartbeatInterval: "100"})
	a := consumerJoin(h, "g", "a", []string{"t"})
	b := consumerJoin(h, "g", "b", []string{"t"})
	settle(t, a, b)
	if r := a.beat(); r.HeartbeatIntervalMillis != 100 {
		t.Fatalf("heartbeat interval %d, want the group config's 100", r.HeartbeatIntervalMillis)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(a.owned) != 4 {
		if time.Now().After(deadline) {
			t.Fatal("silent member not expired")
		}
		time.Sleep(50 * time.Millisecond)
		a.beat()
	}
	wantCode(t, "expired member", b.beat().ErrorCode, kerr.UnknownMemberID)
}

func TestConsumerRegexAndTopicChanges(t *testing.T) {
	h := newHarness(t, Topic{Name: "ev-a", Partitions: 2}, Topic{Name: "other", Partitions: 2})
	r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	r.Version, r.Group, r.MemberID = 1, "g", "m"
	r.SubscribedTopicRegex = kmsg.StringPtr("ev-.*")
	r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	resp := handle[*kmsg.ConsumerGroupHeartbeatResponse](h, r)
	m := &member{h: h, group: "g", id: "m"}
	m.apply(resp)
	if len(m.owned) != 2 {
		t.Fatalf("regex member owns %v", m.owned.sorted())
	}
	topics := maps.Clone(*h.topics.Load())
	topics["ev-b"] = Topic{Name: "ev-b", ID: [16]byte{9}, Partitions: 3}
	h.topics.Store(&topics)
	h.c.TopicsChanged()
	if m.beat(); len(m.owned) != 5 {
		t.Fatalf("after ev-b was created the member owns %v", m.owned.sorted())
	}
	bad := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	bad.Version, bad.Group, bad.MemberID = 1, "g", "n"
	bad.SubscribedTopicRegex = kmsg.StringPtr("(")
	wantCode(t, "bad regex", handle[*kmsg.ConsumerGroupHeartbeatResponse](h, bad).ErrorCode, kerr.InvalidRegularExpression)
	bad.SubscribedTopicRegex, bad.ServerAssignor = kmsg.StringPtr("x"), kmsg.StringPtr("sticky")
	wantCode(t, "unknown assignor", handle[*kmsg.ConsumerGroupHeartbeatResponse](h, bad).ErrorCode, kerr.UnsupportedAssignor)
}

func TestConsumerStaticMemberReturns(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 4})
	inst := "i"
	join := func(id string) *kmsg.ConsumerGroupHeartbeatResponse {
		r := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		r.Version, r.Group, r.MemberID, r.InstanceID = 1, "g", id, &inst
		r.SubscribedTopicNames = []string{"t"}
		r.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		return handle[*kmsg.ConsumerGroupHeartbeatResponse](h, r)
	}
	s := &member{h: h, group: "g", id: "s1"}
	s.apply(join("s1"))
	o := consumerJoin(h, "g", "o", []string{"t"})
	settle(t, s, o)
	kept := maps.Clone(s.owned)
	wantCode(t, "second holder of the instance id", join("s2").ErrorCode, kerr.UnreleasedInstanceID)

	leave := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	leave.Version, leave.Group, leave.MemberID, leave.InstanceID, leave.MemberEpoch = 1, "g", "s1", &inst, -2
	if r := handle[*kmsg.ConsumerGroupHeartbeatResponse](h, leave); r.ErrorCode != 0 || r.MemberEpoch != -2 {
		t.Fatalf("static leave: %v epoch %d", kerr.ErrorForCode(r.ErrorCode), r.MemberEpoch)
	}
	back := &member{h: h, group: "g", id: "s2"}
	back.apply(join("s2"))
	if !maps.Equal(back.owned, kept) {
		t.Fatalf("returning static member owns %v, had %v", back.owned.sorted(), kept.sorted())
	}
	d := kmsg.NewPtrConsumerGroupDescribeRequest()
	d.Version, d.Groups = 1, []string{"g"}
	if g := handle[*kmsg.ConsumerGroupDescribeResponse](h, d).Groups[0]; g.Epoch != 2 || g.State != "Stable" {
		t.Fatalf("after the static member returned: epoch %d state %s, want 2 Stable", g.Epoch, g.State)
	}
}

func TestUpgradeEmptyClassicGroup(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 2})
	c := kmsg.NewPtrOffsetCommitRequest()
	c.Version, c.Group, c.Generation = 9, "g", -1
	c.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 1, Offset: 9}}}}
	handle[*kmsg.OffsetCommitResponse](h, c)
	m := consumerJoin(h, "g", "m", []string{"t"})
	if len(m.owned) != 2 {
		t.Fatalf("member of the upgraded group owns %d", len(m.owned))
	}
	f := kmsg.NewPtrOffsetFetchRequest()
	f.Version, f.Group = 7, "g"
	if r := handle[*kmsg.OffsetFetchResponse](h, f); r.Topics[0].Partitions[0].Offset != 9 {
		t.Fatalf("offsets lost by the upgrade: %+v", r.Topics)
	}
}

// TestClassicMemberInConsumerGroup has a classic member join a group that
// uses the consumer protocol: the coordinator assigns it partitions only
// once the consumer member has revoked them, and its heartbeat sends it
// back to JoinGroup to pick them up.
func TestClassicMemberInConsumerGroup(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 4})
	a := consumerJoin(h, "g", "a", []string{"t"})
	id := memberID(h, "g")
	join := func() *kmsg.JoinGroupResponse {
		r := handle[*kmsg.JoinGroupResponse](h, joinReq("g", id))
		wantCode(t, "classic join", r.ErrorCode, nil)
		return r
	}
	assigned := func(gen int32) []int32 {
		r := handle[*kmsg.SyncGroupResponse](h, syncReq("g", id, gen, nil))
		wantCode(t, "classic sync", r.ErrorCode, nil)
		var ma kmsg.ConsumerMemberAssignment
		if err := ma.ReadFrom(r.MemberAssignment); err != nil {
			t.Fatal(err)
		}
		var out []int32
		for _, tp := range ma.Topics {
			out = append(out, tp.Partitions...)
		}
		return out
	}
	jr := join()
	if got := assigned(jr.Generation); len(got) != 0 {
		t.Fatalf("classic member got %v before the owner revoked", got)
	}
	wantCode(t, "heartbeat before release", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", id, jr.Generation)).ErrorCode, kerr.RebalanceInProgress)
	a.beat() // told to revoke two
	a.beat() // reports them released
	if len(a.owned) != 2 {
		t.Fatalf("consumer member owns %d after the classic member joined, want 2", len(a.owned))
	}
	jr = join()
	got := assigned(jr.Generation)
	if len(got) != 2 {
		t.Fatalf("classic member owns %v after the release, want two partitions", got)
	}
	for _, p := range got {
		if _, dup := a.owned[tp{"t", p}]; dup {
			t.Fatalf("partition %d owned by both members", p)
		}
	}
	wantCode(t, "stable heartbeat", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", id, jr.Generation)).ErrorCode, nil)

	c := kmsg.NewPtrOffsetCommitRequest()
	c.Version, c.Group, c.MemberID, c.Generation = 9, "g", id, jr.Generation-1
	c.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: got[0], Offset: 1}}}}
	wantCode(t, "classic commit at an old generation", handle[*kmsg.OffsetCommitResponse](h, c).Topics[0].Partitions[0].ErrorCode, kerr.IllegalGeneration)
	c.Generation = jr.Generation
	wantCode(t, "classic commit", handle[*kmsg.OffsetCommitResponse](h, c).Topics[0].Partitions[0].ErrorCode, nil)

	d := kmsg.NewPtrConsumerGroupDescribeRequest()
	d.Version, d.Groups = 1, []string{"g"}
	types := map[int8]int{}
	for _, m := range handle[*kmsg.ConsumerGroupDescribeResponse](h, d).Groups[0].Members {
		types[m.MemberType]++
	}
	if types[0] != 1 || types[1] != 1 {
		t.Fatalf("member types %v, want one classic and one consumer", types)
	}

	l := kmsg.NewPtrLeaveGroupRequest()
	l.Version, l.Group, l.Members = 5, "g", []kmsg.LeaveGroupRequestMember{{MemberID: id}}
	wantCode(t, "classic leave", handle[*kmsg.LeaveGroupResponse](h, l).Members[0].ErrorCode, nil)
	if a.beat(); len(a.owned) != 4 {
		t.Fatalf("consumer member owns %d after the classic member left, want 4", len(a.owned))
	}
}

func TestAssignors(t *testing.T) {
	subs := func(n int, topics map[string]int32) []subscription {
		var out []subscription
		for i := range n {
			out = append(out, subscription{member: fmt.Sprintf("m%d", i), topics: topics})
		}
		return out
	}
	sizes := func(a map[string]partitions) []int {
		var out []int
		for _, id := range slices.Sorted(maps.Keys(a)) {
			out = append(out, len(a[id]))
		}
		return out
	}
	u := assignUniform(subs(3, map[string]int32{"a": 4, "b": 3}), nil)
	if got := sizes(u); !slices.Equal(got, []int{3, 2, 2}) && !slices.Equal(got, []int{3, 3, 1}) && slices.Max(got)-slices.Min(got) > 1 {
		t.Fatalf("uniform sizes %v", got)
	}
	// Sticky: adding a member moves only what it takes.
	u2 := assignUniform(subs(4, map[string]int32{"a": 4, "b": 3}), u)
	for id, ps := range u2 {
		if id != "m3" && !subset(ps, u[id]) {
			t.Fatalf("uniform moved partitions between existing members: %s %v", id, ps.sorted())
		}
	}
	if got := sizes(u2); slices.Max(got)-slices.Min(got) > 1 {
		t.Fatalf("uniform sizes with 4 members %v", got)
	}
	// Heterogeneous: only subscribers get a topic.
	h := assignUniform([]subscription{{"x", map[string]int32{"a": 2}}, {"y", map[string]int32{"a": 2, "b": 2}}}, nil)
	for p := range h["x"] {
		if p.topic != "a" {
			t.Fatalf("x got %s it does not subscribe to", p.topic)
		}
	}
	if len(h["x"])+len(h["y"]) != 4 {
		t.Fatalf("heterogeneous assignment lost partitions: %v %v", h["x"].sorted(), h["y"].sorted())
	}

	r := assignRange(subs(2, map[string]int32{"a": 3, "b": 3}), nil)
	want0 := partitions{{"a", 0}: {}, {"a", 1}: {}, {"b", 0}: {}, {"b", 1}: {}}
	if !maps.Equal(r["m0"], want0) || len(r["m1"]) != 2 {
		t.Fatalf("range: m0 %v m1 %v", r["m0"].sorted(), r["m1"].sorted())
	}
}

// TestUpgradeStableClassicGroup has a consumer-protocol member join a
// stable classic group: the group converts online, the classic member
// keeps its partitions until it gives up half of them through a rejoin.
func TestUpgradeStableClassicGroup(t *testing.T) {
	h := newHarness(t, Topic{Name: "t", Partitions: 4})
	joinWith := func(member string, owned []int32) *kmsg.JoinGroupResponse {
		r := joinReq("g", member)
		md := kmsg.NewConsumerMemberMetadata()
		md.Version, md.Topics = 1, []string{"t"}
		if owned != nil {
			md.OwnedPartitions = []kmsg.ConsumerMemberMetadataOwnedPartition{{Topic: "t", Partitions: owned}}
		}
		r.Protocols[0].Metadata = md.AppendTo(nil)
		resp := handle[*kmsg.JoinGroupResponse](h, r)
		wantCode(t, "join", resp.ErrorCode, nil)
		return resp
	}
	sync := func(member string, gen int32, assign map[string][]byte) []int32 {
		r := handle[*kmsg.SyncGroupResponse](h, syncReq("g", member, gen, assign))
		wantCode(t, "sync", r.ErrorCode, nil)
		var ma kmsg.ConsumerMemberAssignment
		if err := ma.ReadFrom(r.MemberAssignment); err != nil {
			t.Fatal(err)
		}
		var out []int32
		for _, tp := range ma.Topics {
			out = append(out, tp.Partitions...)
		}
		return out
	}
	id := memberID(h, "g")
	jr := joinWith(id, nil)
	all := kmsg.NewConsumerMemberAssignment()
	all.Topics = []kmsg.ConsumerMemberAssignmentTopic{{Topic: "t", Partitions: []int32{0, 1, 2, 3}}}
	if got := sync(id, jr.Generation, map[string][]byte{id: all.AppendTo(nil)}); len(got) != 4 {
		t.Fatalf("classic leader assigned %v", got)
	}

	m := consumerJoin(h, "g", "new", []string{"t"})
	if len(m.owned) != 0 {
		t.Fatalf("new member owns %v while the classic member holds everything", m.owned.sorted())
	}
	wantCode(t, "classic heartbeat after upgrade", handle[*kmsg.HeartbeatResponse](h, heartbeatReq("g", id, jr.Generation)).ErrorCode, kerr.RebalanceInProgress)
	jr = joinWith(id, []int32{0, 1, 2, 3})
	kept := sync(id, jr.Generation, nil)
	if len(kept) != 2 {
		t.Fatalf("classic member keeps %v, want two partitions", kept)
	}
	jr = joinWith(id, kept)
	sync(id, jr.Generation, nil)
	if m.beat(); len(m.owned) != 2 {
		t.Fatalf("new member owns %v after the classic member released half", m.owned.sorted())
	}
	for _, p := range kept {
		if _, dup := m.owned[tp{"t", p}]; dup {
			t.Fatalf("partition %d owned by both members", p)
		}
	}
	l := kmsg.NewPtrListGroupsRequest()
	l.Version = 5
	if g := handle[*kmsg.ListGroupsResponse](h, l).Groups[0]; g.GroupType != "consumer" {
		t.Fatalf("group type %s after the upgrade", g.GroupType)
	}
}
