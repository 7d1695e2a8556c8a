package broker_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// heartbeatCounter counts ConsumerGroupHeartbeat requests a client
// writes: franz-go silently falls back to the classic protocol, so every
// KIP-848 test asserts the new path was taken.
type heartbeatCounter struct{ n atomic.Int64 }

func (h *heartbeatCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == kmsg.ConsumerGroupHeartbeat.Int16() && err == nil {
		h.n.Add(1)
	}
}

// groupConsumer starts a group member on topic; serverSide selects the
// KIP-848 protocol, otherwise the classic one with cooperative-sticky.
func groupConsumer(t testing.TB, addr, group, topic string, serverSide bool, hb *heartbeatCounter, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.HeartbeatInterval(200 * time.Millisecond),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}
	if serverSide {
		base = append(base, kgo.ServerSideBalancer())
	}
	if hb != nil {
		base = append(base, kgo.WithHooks(hb))
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(addr)}, base...), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// setGroupConfig sets GROUP resource configs with IncrementalAlterConfigs.
func setGroupConfig(t testing.TB, cl *kgo.Client, group string, kv map[string]string) {
	t.Helper()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeGroupConfig, group
	for k, v := range kv {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Value = k, kmsg.StringPtr(v)
		r.Configs = append(r.Configs, c)
	}
	req.Resources = append(req.Resources, r)
	resp, err := req.RequestWith(testContext(t), cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err != nil {
		t.Fatalf("set configs of group %s: %v", group, err)
	}
}

// describeConsumerGroup returns the group as ConsumerGroupDescribe sees it.
func describeConsumerGroup(t testing.TB, adm *kadm.Client, group string) kadm.DescribedConsumerGroup {
	t.Helper()
	gs, err := adm.DescribeConsumerGroups(testContext(t), group)
	if err != nil {
		t.Fatal(err)
	}
	return gs[group]
}

// tally records who received which record when.
type tally struct {
	mu sync.Mutex
	// seen counts deliveries per "partition/offset".
	seen map[string]int
	// last is, per partition, the highest offset received, when, and by whom.
	last map[int32]receipt
	// stall is the longest gap per partition between new records.
	stall map[int32]time.Duration
	// switched is, per partition, when records started to come from the
	// member that delivered the latest one.
	switched map[int32]time.Time
	from     time.Time
}

type receipt struct {
	offset int64
	at     time.Time
	by     string
}

func newTally() *tally {
	return &tally{seen: make(map[string]int), last: make(map[int32]receipt), stall: make(map[int32]time.Duration), switched: make(map[int32]time.Time)}
}

func (t *tally) add(by string, r *kgo.Record) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
	prev, ok := t.last[r.Partition]
	if ok && r.Offset <= prev.offset {
		return
	}
	if ok && !t.from.IsZero() && now.After(t.from) {
		since := prev.at
		if since.Before(t.from) {
			since = t.from
		}
		t.stall[r.Partition] = max(t.stall[r.Partition], now.Sub(since))
	}
	if !ok || prev.by != by {
		t.switched[r.Partition] = now
	}
	t.last[r.Partition] = receipt{r.Offset, now, by}
}

// poll consumes with cl until ctx ends, adding every record to t.
func (t *tally) poll(ctx context.Context, wg *sync.WaitGroup, name string, cl *kgo.Client) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) { t.add(name, r) })
		}
	}()
}

func (t *tally) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

func (t *tally) duplicates() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := 0
	for _, n := range t.seen {
		d += n - 1
	}
	return d
}

func produceN(t testing.TB, cl *kgo.Client, topic string, n int) {
	t.Helper()
	rs := make([]*kgo.Record, n)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
	}
	if err := cl.ProduceSync(testContext(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testGroupEveryRecordOnce runs three members over six partitions and
// checks that every record is delivered exactly once while the group is
// stable, then that a member joining and one leaving under load lose
// nothing.
func testGroupEveryRecordOnce(t *testing.T, serverSide bool) {
	b := startBroker(t, "")
	admCl := newClient(t, b.Addr())
	adm := kadm.NewClient(admCl)
	createTopic(t, adm, "orders", 6, nil)
	group := "g"
	setGroupConfig(t, admCl, group, map[string]string{"consumer.heartbeat.interval.ms": "200"})

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var wg sync.WaitGroup
	tl := newTally()
	var hb heartbeatCounter
	members := make([]*kgo.Client, 3)
	for i := range members {
		members[i] = groupConsumer(t, b.Addr(), group, "orders", serverSide, &hb)
		tl.poll(ctx, &wg, fmt.Sprint(i), members[i])
	}
	waitStable := func(n int) {
		waitFor(t, 15*time.Second, fmt.Sprintf("a stable group of %d", n), func() bool {
			if serverSide {
				d := describeConsumerGroup(t, adm, group)
				return d.Err == nil && d.State == "Stable" && len(d.Members) == n
			}
			gs, err := adm.DescribeGroups(testContext(t), group)
			if err != nil || gs[group].State != "Stable" || len(gs[group].Members) != n {
				return false
			}
			owned := 0
			for _, m := range gs[group].Members {
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, tp := range a.Topics {
						owned += len(tp.Partitions)
					}
				}
			}
			return owned == 6
		})
	}
	waitStable(3)
	produceN(t, admCl, "orders", 600)
	waitFor(t, 15*time.Second, "600 records", func() bool { return tl.count() == 600 })
	if d := tl.duplicates(); d != 0 {
		t.Fatalf("%d records delivered twice in a stable group", d)
	}

	// Under load, a fourth member joins and the first leaves.
	stop := make(chan struct{})
	produced := make(chan int)
	go func() {
		n := 0
		defer func() { produced <- n }()
		for i := 0; i < 2000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := admCl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Value: []byte("x")}).FirstErr(); err != nil {
				return
			}
			n++
			time.Sleep(2 * time.Millisecond)
		}
	}()
	fourth := groupConsumer(t, b.Addr(), group, "orders", serverSide, &hb)
	tl.poll(ctx, &wg, "3", fourth)
	waitStable(4)
	members[0].Close()
	waitStable(3)
	close(stop)
	total := 600 + <-produced
	waitFor(t, 15*time.Second, fmt.Sprintf("%d records", total), func() bool { return tl.count() == total })
	cancel()
	wg.Wait()
	for _, m := range append(members[1:], fourth) {
		m.Close()
	}
	if serverSide {
		if hb.n.Load() == 0 {
			t.Fatal("no ConsumerGroupHeartbeat was sent: the client fell back to the classic protocol")
		}
		lg, err := adm.ListGroupsByType(testContext(t), []string{"consumer"})
		if err != nil || len(lg) != 1 {
			t.Fatalf("consumer groups listed: %v, %v", lg, err)
		}
	} else if hb.n.Load() != 0 {
		t.Fatalf("%d ConsumerGroupHeartbeat requests from classic members", hb.n.Load())
	}
	t.Logf("%d records, %d delivered again across rebalances", total, tl.duplicates())
}

func TestGroupClassicCooperativeSticky(t *testing.T) { testGroupEveryRecordOnce(t, false) }

func TestGroupKIP848(t *testing.T) { testGroupEveryRecordOnce(t, true) }

// joinResult is what joinUnderLoad measures: the longest stall of any
// partition not moved to the newcomer and of any partition, the time
// until every moved partition is consumed by its new owner, and how many
// partitions moved.
type joinResult struct {
	unmovedStall, anyStall, converged time.Duration
	moved                             int
}

// joinUnderLoad has a fourth member join a three-member group over twelve
// partitions under continuous production and measures the join.
func joinUnderLoad(t testing.TB, serverSide bool, opts ...kgo.Opt) joinResult {
	b := startBroker(t, "")
	admCl := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(admCl)
	const partitions = 12
	createTopic(t, adm, "events", partitions, nil)
	group := "load"
	setGroupConfig(t, admCl, group, map[string]string{"consumer.heartbeat.interval.ms": "200"})

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	var wg sync.WaitGroup
	tl := newTally()
	var hb heartbeatCounter
	var members []*kgo.Client
	for i := range 3 {
		cl := groupConsumer(t, b.Addr(), group, "events", serverSide, &hb, opts...)
		members = append(members, cl)
		tl.poll(ctx, &wg, fmt.Sprint(i), cl)
		// Staggered starts keep the members' heartbeats out of phase,
		// as they are in a real deployment.
		time.Sleep(70 * time.Millisecond)
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, m := range members {
			m.Close()
		}
	}()

	// Production: one record per partition every 20ms, bounded by count
	// and by the test's context.
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		for i := 0; i < 3000 && ctx.Err() == nil; i++ {
			for p := range int32(partitions) {
				admCl.Produce(ctx, &kgo.Record{Topic: "events", Partition: p, Value: []byte("x")}, nil)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-prodDone }()

	waitFor(t, 20*time.Second, "all partitions consumed by three members", func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		return len(tl.last) == partitions
	})
	time.Sleep(time.Second)
	tl.mu.Lock()
	before := make(map[int32]string)
	for p, r := range tl.last {
		before[p] = r.by
	}
	joined := time.Now()
	tl.from = joined
	tl.mu.Unlock()

	fourth := groupConsumer(t, b.Addr(), group, "events", serverSide, &hb, opts...)
	members = append(members, fourth)
	tl.poll(ctx, &wg, "new", fourth)
	waitFor(t, 20*time.Second, "the newcomer consuming", func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		n := 0
		for _, r := range tl.last {
			if r.by == "new" {
				n++
			}
		}
		return n == partitions/4
	})
	time.Sleep(time.Second)

	tl.mu.Lock()
	defer tl.mu.Unlock()
	var res joinResult
	for p, r := range tl.last {
		stall := max(tl.stall[p], time.Since(r.at))
		res.anyStall = max(res.anyStall, stall)
		if r.by == before[p] {
			res.unmovedStall = max(res.unmovedStall, stall)
		} else {
			res.moved++
			res.converged = max(res.converged, tl.switched[p].Sub(joined))
		}
	}
	if serverSide && hb.n.Load() == 0 {
		t.Fatal("no ConsumerGroupHeartbeat was sent: the client fell back to the classic protocol")
	}
	return res
}

func TestGroupKIP848JoinWithoutStoppingTheWorld(t *testing.T) {
	r := joinUnderLoad(t, true)
	t.Logf("KIP-848: %d partitions moved; converged in %v; longest stall of an unmoved partition %v, of any partition %v",
		r.moved, r.converged, r.unmovedStall, r.anyStall)
	if r.moved != 3 {
		t.Fatalf("%d partitions moved to the fourth member of twelve, want 3", r.moved)
	}
	// Records arrive every 20ms per partition; an unmoved partition may
	// wait for a fetch round but never for the rebalance.
	if r.unmovedStall > 500*time.Millisecond {
		t.Fatalf("an unmoved partition stalled %v while a member joined", r.unmovedStall)
	}
}

// BenchmarkRebalance compares a member joining under load in the classic
// protocol, eager (range) and cooperative-sticky, and in KIP-848: the time
// until every moved partition is consumed by its new owner, and the
// longest per-partition stall.
func BenchmarkRebalance(b *testing.B) {
	for _, proto := range []struct {
		name       string
		serverSide bool
		opts       []kgo.Opt
	}{
		{"classic-eager", false, []kgo.Opt{kgo.Balancers(kgo.RangeBalancer())}},
		{"classic-cooperative", false, nil},
		{"kip848", true, nil},
	} {
		b.Run(proto.name, func(b *testing.B) {
			var conv, stall, unmoved time.Duration
			for range b.N {
				r := joinUnderLoad(b, proto.serverSide, proto.opts...)
				conv, stall, unmoved = conv+r.converged, max(stall, r.anyStall), max(unmoved, r.unmovedStall)
			}
			b.ReportMetric(float64(conv.Milliseconds())/float64(b.N), "ms-to-converge")
			b.ReportMetric(float64(stall.Milliseconds()), "ms-max-stall")
			b.ReportMetric(float64(unmoved.Milliseconds()), "ms-max-unmoved-stall")
		})
	}
}

// rawJoin848 joins a KIP-848 member with a raw request, so the test
// decides when it stops heartbeating: a member killed without leaving.
func rawJoin848(t testing.TB, cl *kgo.Client, group, member, topic string) *kmsg.ConsumerGroupHeartbeatResponse {
	t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Group, req.MemberID, req.MemberEpoch = group, member, 0
	req.SubscribedTopicNames = []string{topic}
	req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	req.RebalanceTimeoutMillis = 5000
	resp, err := req.RequestWith(testContext(t), cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("join %s: %v", member, err)
	}
	return resp
}

func TestGroupKIP848SessionExpiryAndFencedCommits(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 4, nil)
	setGroupConfig(t, cl, "g", map[string]string{"consumer.session.timeout.ms": "1500", "consumer.heartbeat.interval.ms": "200"})

	dead := rawJoin848(t, cl, "g", "dead-member", "t")
	commit := func(epoch int32) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "g", "dead-member", epoch
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}}}
		resp, err := req.RequestWith(testContext(t), cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	if err := commit(dead.MemberEpoch); err != nil {
		t.Fatalf("commit at the member epoch: %v", err)
	}
	if err := commit(dead.MemberEpoch + 1); err != kerr.FencedMemberEpoch {
		t.Fatalf("commit at a future epoch: %v, want FENCED_MEMBER_EPOCH", err)
	}

	// A real member joins; the raw one never heartbeats again and is
	// expired after the session timeout, leaving all partitions.
	var hb heartbeatCounter
	live := groupConsumer(t, b.Addr(), "g", "t", true, &hb)
	defer live.Close()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			live.PollFetches(ctx)
		}
	}()
	start := time.Now()
	waitFor(t, 10*time.Second, "the silent member to expire", func() bool {
		d := describeConsumerGroup(t, adm, "g")
		if len(d.Members) != 1 || d.Members[0].MemberID == "dead-member" || d.State != "Stable" {
			return false
		}
		n := 0
		for _, ps := range d.Members[0].Assignment {
			n += len(ps)
		}
		return n == 4
	})
	if took := time.Since(start); took < time.Second {
		t.Fatalf("silent member expired after %v, before its 1.5s session timeout", took)
	}
	if err := commit(dead.MemberEpoch); err != kerr.UnknownMemberID {
		t.Fatalf("commit by the expired member: %v, want UNKNOWN_MEMBER_ID", err)
	}
	if hb.n.Load() == 0 {
		t.Fatal("the live member did not use ConsumerGroupHeartbeat")
	}
}

func TestGroupClassicSessionExpiryAndFencedCommits(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 2, nil)

	join := kmsg.NewPtrJoinGroupRequest()
	join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = "g", 1000, 5000, "consumer"
	md := kmsg.NewConsumerMemberMetadata()
	md.Topics = []string{"t"}
	join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "cooperative-sticky", Metadata: md.AppendTo(nil)}}
	jr, err := join.RequestWith(testContext(t), cl)
	if err != nil || jr.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: %v %v", err, kerr.ErrorForCode(jr.ErrorCode))
	}
	join.MemberID = jr.MemberID
	if jr, err = join.RequestWith(testContext(t), cl); err != nil || jr.ErrorCode != 0 {
		t.Fatalf("join: %v %v", err, kerr.ErrorForCode(jr.ErrorCode))
	}
	sync := kmsg.NewPtrSyncGroupRequest()
	sync.Group, sync.MemberID, sync.Generation = "g", jr.MemberID, jr.Generation
	if sr, err := sync.RequestWith(testContext(t), cl); err != nil || sr.ErrorCode != 0 {
		t.Fatalf("sync: %v", err)
	}
	commit := func(gen int32) error {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Group, req.MemberID, req.Generation = "g", jr.MemberID, gen
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, LeaderEpoch: -1}}}}
		resp, err := req.RequestWith(testContext(t), cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	}
	if err := commit(jr.Generation); err != nil {
		t.Fatalf("commit in generation: %v", err)
	}
	if err := commit(jr.Generation - 1); err != kerr.IllegalGeneration {
		t.Fatalf("commit from an old generation: %v, want ILLEGAL_GENERATION", err)
	}
	start := time.Now()
	waitFor(t, 10*time.Second, "the silent member to expire", func() bool {
		gs, err := adm.DescribeGroups(testContext(t), "g")
		return err == nil && gs["g"].State == "Empty"
	})
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("member expired after %v, before its 1s session timeout", took)
	}
	if err := commit(jr.Generation); err != kerr.UnknownMemberID && err != kerr.IllegalGeneration {
		t.Fatalf("commit by the expired member: %v", err)
	}
}

func TestGroupRestartKeepsCommittedOffsets(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir), broker.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 3, nil)
	produceN(t, cl, "t", 90)

	for _, serverSide := range []bool{false, true} {
		group := fmt.Sprintf("g-%v", serverSide)
		c := groupConsumer(t, b.Addr(), group, "t", serverSide, nil, kgo.DisableAutoCommit())
		got := 0
		for got < 90 {
			fs := c.PollFetches(testContext(t))
			if err := fs.Err0(); err != nil {
				t.Fatal(err)
			}
			got += fs.NumRecords()
		}
		if err := c.CommitUncommittedOffsets(testContext(t)); err != nil {
			t.Fatalf("commit: %v", err)
		}
		c.Close()
	}
	cl.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b2 := startBroker(t, dir)
	adm = kadm.NewClient(newClient(t, b2.Addr()))
	for _, group := range []string{"g-false", "g-true"} {
		offs, err := adm.FetchOffsets(testContext(t), group)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		if sum != 90 {
			t.Fatalf("group %s: committed offsets sum to %d after restart, want 90", group, sum)
		}
	}
	lg, err := adm.ListGroups(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if names := slices.Sorted(maps.Keys(lg)); !slices.Equal(names, []string{"g-false", "g-true"}) {
		t.Fatalf("groups after restart: %v", names)
	}
}

// TestGroupKill9KeepsAcknowledgedCommits commits offsets in a loop while
// the broker is killed with SIGKILL, restarts it on the same directory,
// and checks that no acknowledged commit was lost.
func TestGroupKill9KeepsAcknowledgedCommits(t *testing.T) {
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	cl := newClient(t, addr, kgo.RetryTimeout(time.Second))
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 2, nil)

	var acked atomic.Int64
	killed := make(chan struct{})
	go func() {
		time.Sleep(time.Second)
		cmd.Process.Signal(syscall.SIGKILL)
		close(killed)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := int64(1); i < 1_000_000; i++ {
		select {
		case <-killed:
			i = 1_000_000
			continue
		default:
		}
		offs := make(kadm.Offsets)
		offs.AddOffset("t", 0, i, -1)
		offs.AddOffset("t", 1, i, -1)
		if err := adm.CommitAllOffsets(ctx, "crash-g", offs); err == nil {
			acked.Store(i)
		}
	}
	cl.Close()
	cmd.Wait()
	if acked.Load() == 0 {
		t.Fatal("no commit was acknowledged before the kill")
	}

	_, addr = startChild(t, dir)
	adm = kadm.NewClient(newClient(t, addr))
	offs, err := adm.FetchOffsets(testContext(t), "crash-g")
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		o, ok := offs.Lookup("t", p)
		if !ok || o.At < acked.Load() {
			t.Fatalf("partition %d: committed offset %d after kill -9, last acknowledged %d", p, o.At, acked.Load())
		}
	}
	t.Logf("%d commits acknowledged before the kill, all kept", acked.Load())
}

// TestGroupClassicMemberJoinsConsumerGroup has a classic cooperative-sticky
// consumer join a group that a KIP-848 consumer started, as Kafka 4.0
// allows: both consume, and together they see every record.
func TestGroupClassicMemberJoinsConsumerGroup(t *testing.T) {
	b := startBroker(t, "")
	admCl := newClient(t, b.Addr())
	adm := kadm.NewClient(admCl)
	createTopic(t, adm, "mixed", 4, nil)
	setGroupConfig(t, admCl, "mix", map[string]string{"consumer.heartbeat.interval.ms": "200"})

	ctx, cancel := context.WithCancel(testContext(t))
	var wg sync.WaitGroup
	tl := newTally()
	var hb heartbeatCounter
	modern := groupConsumer(t, b.Addr(), "mix", "mixed", true, &hb)
	tl.poll(ctx, &wg, "kip848", modern)
	waitFor(t, 10*time.Second, "the KIP-848 member to own all partitions", func() bool {
		d := describeConsumerGroup(t, adm, "mix")
		return d.State == "Stable" && len(d.Members) == 1
	})
	classic := groupConsumer(t, b.Addr(), "mix", "mixed", false, nil)
	tl.poll(ctx, &wg, "classic", classic)
	waitFor(t, 15*time.Second, "both members to own two partitions", func() bool {
		d := describeConsumerGroup(t, adm, "mix")
		if d.State != "Stable" || len(d.Members) != 2 {
			return false
		}
		for _, m := range d.Members {
			n := 0
			for _, ps := range m.Assignment {
				n += len(ps)
			}
			if n != 2 {
				return false
			}
		}
		return true
	})
	produceN(t, admCl, "mixed", 400)
	waitFor(t, 15*time.Second, "400 records", func() bool { return tl.count() == 400 })
	cancel()
	wg.Wait()
	modern.Close()
	classic.Close()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	by := map[string]int{}
	for _, r := range tl.last {
		by[r.by]++
	}
	if by["classic"] != 2 || by["kip848"] != 2 {
		t.Fatalf("partitions last consumed by %v, want two each", by)
	}
	if hb.n.Load() == 0 {
		t.Fatal("the KIP-848 member did not use ConsumerGroupHeartbeat")
	}
}

// TestGroupOnlineUpgrade has a KIP-848 consumer join a stable classic
// group: the group becomes a consumer group without stopping, and the
// two members split the partitions.
func TestGroupOnlineUpgrade(t *testing.T) {
	b := startBroker(t, "")
	admCl := newClient(t, b.Addr())
	adm := kadm.NewClient(admCl)
	createTopic(t, adm, "up", 4, nil)
	setGroupConfig(t, admCl, "upg", map[string]string{"consumer.heartbeat.interval.ms": "200"})

	ctx, cancel := context.WithCancel(testContext(t))
	var wg sync.WaitGroup
	tl := newTally()
	classic := groupConsumer(t, b.Addr(), "upg", "up", false, nil)
	tl.poll(ctx, &wg, "classic", classic)
	produceN(t, admCl, "up", 100)
	waitFor(t, 10*time.Second, "the classic member to consume", func() bool { return tl.count() == 100 })

	var hb heartbeatCounter
	modern := groupConsumer(t, b.Addr(), "upg", "up", true, &hb)
	tl.poll(ctx, &wg, "kip848", modern)
	waitFor(t, 15*time.Second, "an upgraded group of two members with two partitions each", func() bool {
		d := describeConsumerGroup(t, adm, "upg")
		if d.Err != nil || d.State != "Stable" || len(d.Members) != 2 {
			return false
		}
		for _, m := range d.Members {
			n := 0
			for _, ps := range m.Assignment {
				n += len(ps)
			}
			if n != 2 {
				return false
			}
		}
		return true
	})
	produceN(t, admCl, "up", 400)
	waitFor(t, 15*time.Second, "500 records", func() bool { return tl.count() == 500 })
	cancel()
	wg.Wait()
	modern.Close()
	classic.Close()
	if hb.n.Load() == 0 {
		t.Fatal("the KIP-848 member did not use ConsumerGroupHeartbeat")
	}
}
