package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// skipWithoutShareGroups skips when the broker does not serve share
// groups, as until the share coordinator is wired in.
func skipWithoutShareGroups(t testing.TB, cl *kgo.Client) {
	t.Helper()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(testContext(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range resp.ApiKeys {
		if k.ApiKey == kmsg.ShareFetch.Int16() {
			return
		}
	}
	t.Skip("broker does not serve ShareFetch")
}

// setGroupConfigs sets GROUP resource configs with IncrementalAlterConfigs.
func setGroupConfigs(t testing.TB, cl *kgo.Client, group string, kv map[string]string) {
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
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Resources {
		if r.ErrorCode != 0 {
			t.Fatalf("set group configs: error %d %v", r.ErrorCode, r.ErrorMessage)
		}
	}
}

// shareSetup starts a broker with a one-partition topic holding n records
// "0".."n-1" and a share group reading it from the start with cfg.
func shareSetup(t testing.TB, n int, cfg map[string]string) (addr, topic, group string) {
	t.Helper()
	b := startBroker(t, "")
	return sharePrepare(t, b.Addr(), n, cfg)
}

func sharePrepare(t testing.TB, addr string, n int, cfg map[string]string) (string, string, string) {
	t.Helper()
	topic, group := "jobs", "workers"
	cl := newClient(t, addr)
	skipWithoutShareGroups(t, cl)
	createTopic(t, kadm.NewClient(cl), topic, 1, nil)
	kv := map[string]string{"share.auto.offset.reset": "earliest"}
	for k, v := range cfg {
		kv[k] = v
	}
	setGroupConfigs(t, cl, group, kv)
	produceValues(t, cl, topic, 0, n)
	return addr, topic, group
}

func produceValues(t testing.TB, cl *kgo.Client, topic string, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))})
	}
	if err := cl.ProduceSync(testContext(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func shareConsumer(t testing.TB, addr, topic, group string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, addr, append([]kgo.Opt{kgo.ShareGroup(group), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
}

// pollUntil polls cl, handing each record to fn, until done reports true
// or the deadline passes.
func pollUntil(t testing.TB, cl *kgo.Client, within time.Duration, fn func(*kgo.Record), done func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !done() && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(fn)
	}
}

func TestShareGroupThreeConsumersOnePartition(t *testing.T) {
	const n = 300
	addr, topic, group := shareSetup(t, n, nil)

	var mu sync.Mutex
	accepted := map[string]int{}
	perMember := make([]int, 3)
	total := func() int { mu.Lock(); defer mu.Unlock(); return len(accepted) }
	var wg sync.WaitGroup
	for i := range 3 {
		cl := shareConsumer(t, addr, topic, group, kgo.ShareMaxRecords(10))
		wg.Add(1)
		go func() {
			defer wg.Done()
			pollUntil(t, cl, 20*time.Second, func(r *kgo.Record) {
				time.Sleep(time.Millisecond)
				r.Ack(kgo.AckAccept)
				mu.Lock()
				accepted[string(r.Value)]++
				perMember[i]++
				mu.Unlock()
			}, func() bool { return total() >= n })
			if err := cl.FlushAcks(testContext(t)); err != nil {
				t.Errorf("flush acks: %v", err)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		if c := accepted[strconv.Itoa(i)]; c != 1 {
			t.Errorf("record %d accepted %d times, want exactly once", i, c)
		}
	}
	for i, c := range perMember {
		if c == 0 {
			t.Errorf("consumer %d received nothing; per consumer %v", i, perMember)
		}
	}
	t.Logf("records per consumer: %v", perMember)

	adm := kadm.NewClient(newClient(t, addr))
	offs, err := adm.DescribeShareGroupOffsets(testContext(t), group)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs[group].Offsets.Lookup(topic, 0)
	if !ok || o.Err != nil || o.StartOffset != n || o.Lag != 0 {
		t.Fatalf("share group offsets %+v, want start offset %d and lag 0", o, n)
	}
	groups, err := adm.DescribeShareGroups(testContext(t), group)
	if err != nil {
		t.Fatal(err)
	}
	if g := groups[group]; g.Err != nil || len(g.Members) != 3 {
		t.Fatalf("describe share group: %+v, want 3 members", g)
	}
}

func TestShareGroupReleaseRejectAndDeliveryLimit(t *testing.T) {
	addr, topic, group := shareSetup(t, 3, map[string]string{"share.delivery.count.limit": "2"})
	cl := shareConsumer(t, addr, topic, group)

	type delivery struct {
		value string
		count int32
	}
	var got []delivery
	ack := map[string]kgo.AckStatus{"0": kgo.AckRelease, "1": kgo.AckReject, "2": kgo.AckAccept}
	pollUntil(t, cl, 10*time.Second, func(r *kgo.Record) {
		got = append(got, delivery{string(r.Value), r.DeliveryCount()})
		r.Ack(ack[string(r.Value)]) // "0" is released every time
	}, func() bool { return len(got) >= 4 })
	if err := cl.FlushAcks(testContext(t)); err != nil {
		t.Fatal(err)
	}
	// One more round: nothing may come back, "0" reached the limit.
	pollUntil(t, cl, time.Second, func(r *kgo.Record) {
		got = append(got, delivery{string(r.Value), r.DeliveryCount()})
	}, func() bool { return false })

	want := map[delivery]bool{{"0", 1}: true, {"1", 1}: true, {"2", 1}: true, {"0", 2}: true}
	if len(got) != len(want) {
		t.Fatalf("deliveries %v, want %v", got, want)
	}
	for _, d := range got {
		if !want[d] {
			t.Fatalf("unexpected delivery %+v in %v", d, got)
		}
	}
	offs, err := kadm.NewClient(newClient(t, addr)).DescribeShareGroupOffsets(testContext(t), group)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs[group].Offsets.Lookup(topic, 0); o.StartOffset != 3 || o.Lag != 0 {
		t.Fatalf("share group offsets %+v, want start 3 and lag 0: all archived or accepted", o)
	}
}

func TestShareGroupLockTimeoutMovesRecords(t *testing.T) {
	addr, topic, group := shareSetup(t, 5, map[string]string{"share.record.lock.duration.ms": "1000", "share.delivery.count.limit": "10"})
	stalled := shareConsumer(t, addr, topic, group)
	held := map[string]bool{}
	pollUntil(t, stalled, 10*time.Second, func(r *kgo.Record) { held[string(r.Value)] = true }, func() bool { return len(held) > 0 })
	if len(held) == 0 {
		t.Fatal("the first consumer got nothing")
	}
	// stalled never polls again and so never acknowledges.
	start := time.Now()
	other := shareConsumer(t, addr, topic, group)
	taken := map[string]int32{}
	pollUntil(t, other, 15*time.Second, func(r *kgo.Record) { taken[string(r.Value)] = r.DeliveryCount() }, func() bool {
		for v := range held {
			if _, ok := taken[v]; !ok {
				return false
			}
		}
		return true
	})
	for v := range held {
		c, ok := taken[v]
		if !ok {
			t.Fatalf("record %s held by the stalled consumer never reached the other (got %v)", v, taken)
		}
		if c < 2 {
			t.Fatalf("record %s delivery count %d, want at least 2", v, c)
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("records moved after %v, before the 1s lock expired", d)
	}
}

// killableDialer lets a test cut a client off the network as a crash
// would: its connections close and it never reaches the broker again.
type killableDialer struct {
	mu     sync.Mutex
	conns  []net.Conn
	killed atomic.Bool
}

func (d *killableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	if d.killed.Load() {
		return nil, errors.New("killed")
	}
	c, err := new(net.Dialer).DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns = append(d.conns, c)
	return c, nil
}

func (d *killableDialer) kill() {
	d.killed.Store(true)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// holdHalf polls cl until it holds records, accepts the even ones, flushes
// those acknowledgements, and returns the values accepted and held.
func holdHalf(t *testing.T, cl *kgo.Client) (accepted, held map[string]bool) {
	t.Helper()
	var recs []*kgo.Record
	pollUntil(t, cl, 10*time.Second, func(r *kgo.Record) { recs = append(recs, r) }, func() bool { return len(recs) > 0 })
	if len(recs) < 2 {
		t.Fatalf("consumer got %d records, want several in one poll", len(recs))
	}
	accepted, held = map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		if i, _ := strconv.Atoi(string(r.Value)); i%2 == 0 {
			r.Ack(kgo.AckAccept)
			accepted[string(r.Value)] = true
		} else {
			r.Ack(kgo.AckRenew)
			held[string(r.Value)] = true
		}
	}
	if err := cl.FlushAcks(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return accepted, held
}

// checkRedelivery reads the topic with a fresh share consumer and checks
// that exactly the held records (and records never delivered) come back.
func checkRedelivery(t *testing.T, addr, topic, group string, n int, accepted, held map[string]bool) {
	t.Helper()
	cl := shareConsumer(t, addr, topic, group)
	seen := map[string]bool{}
	pollUntil(t, cl, 20*time.Second, func(r *kgo.Record) {
		if accepted[string(r.Value)] {
			t.Errorf("accepted record %s delivered again", r.Value)
		}
		seen[string(r.Value)] = true
		r.Ack(kgo.AckAccept)
	}, func() bool { return len(seen)+len(accepted) >= n })
	for v := range held {
		if !seen[v] {
			t.Errorf("held record %s never redelivered", v)
		}
	}
	if len(seen)+len(accepted) != n {
		t.Fatalf("%d redelivered + %d accepted, want %d", len(seen), len(accepted), n)
	}
}

func TestShareGroupConsumerKilledMidBatch(t *testing.T) {
	const n = 20
	addr, topic, group := shareSetup(t, n, nil)
	d := &killableDialer{}
	victim := shareConsumer(t, addr, topic, group, kgo.Dialer(d.dial))
	accepted, held := holdHalf(t, victim)
	d.kill()
	checkRedelivery(t, addr, topic, group, n, accepted, held)
}

func TestShareGroupBrokerKill9(t *testing.T) {
	const n = 20
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	_, topic, group := sharePrepare(t, addr, n, nil)
	victim := shareConsumer(t, addr, topic, group)
	accepted, held := holdHalf(t, victim)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	victim.Close()
	_, addr = startChild(t, dir)
	checkRedelivery(t, addr, topic, group, n, accepted, held)
}

// BenchmarkShareGroupWorkers measures a queue of jobs that take 5ms each,
// on one partition, drained by 1 and by 8 share consumers. The clock
// starts at the first job, so joining the group is not counted.
func BenchmarkShareGroupWorkers(b *testing.B) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("consumers=%d", workers), func(b *testing.B) {
			addr, topic, group := shareSetup(b, b.N, nil)
			var done, first atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range workers {
				cl := shareConsumer(b, addr, topic, group, kgo.ShareMaxRecords(10))
				wg.Add(1)
				go func() {
					defer wg.Done()
					pollUntil(b, cl, time.Minute, func(r *kgo.Record) {
						first.CompareAndSwap(0, time.Now().UnixNano())
						time.Sleep(5 * time.Millisecond)
						r.Ack(kgo.AckAccept)
						done.Add(1)
					}, func() bool { return done.Load() >= int64(b.N) })
				}()
			}
			wg.Wait()
			elapsed := time.Since(time.Unix(0, first.Load()))
			b.ReportMetric(float64(done.Load())/elapsed.Seconds(), "records/s")
		})
	}
}

func TestShareGroupListAndDelete(t *testing.T) {
	addr, topic, group := shareSetup(t, 5, nil)
	cl := shareConsumer(t, addr, topic, group)
	got := 0
	pollUntil(t, cl, 10*time.Second, func(r *kgo.Record) { got++ }, func() bool { return got >= 5 })
	adm := kadm.NewClient(newClient(t, addr))

	listed, err := adm.ListGroupsByType(testContext(t), []string{"share"})
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := listed[group]; !ok || g.State != "Stable" || g.ProtocolType != "share" {
		t.Fatalf("listed share groups %+v, want %s Stable", listed, group)
	}
	deleted, err := adm.DeleteGroup(testContext(t), group)
	if err == nil {
		err = deleted.Err
	}
	if err == nil {
		t.Fatal("deleted a share group that has a member")
	}
	cl.Close()
	deleted, err = adm.DeleteGroup(testContext(t), group)
	if err == nil {
		err = deleted.Err
	}
	if err != nil {
		t.Fatalf("delete the empty share group: %v", err)
	}
	listed, err = adm.ListGroupsByType(testContext(t), []string{"share"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed[group]; ok {
		t.Fatalf("share group %s still listed after delete", group)
	}
}
