package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// idleCleanerBroker starts a broker whose cleaner threads find nothing
// to clean at start and then sleep for an hour, so that a test runs the
// passes itself.
func idleCleanerBroker(t *testing.T, opts ...Opt) (*Broker, *kgo.Client) {
	t.Helper()
	b := hostileBroker(t, nil, nil, append([]Opt{CleanerBackoff(time.Hour), RetentionCheckInterval(50 * time.Millisecond)}, opts...)...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ProducerLinger(time.Millisecond), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(4096))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return b, cl
}

// createCompacted creates a compacted topic of one partition with the
// given configs on top of small segments.
func createCompacted(t *testing.T, cl *kgo.Client, topic string, configs map[string]string) {
	t.Helper()
	cfg := map[string]*string{"cleanup.policy": kadm.StringPtr("compact"), "segment.bytes": kadm.StringPtr("16384")}
	for k, v := range configs {
		cfg[k] = kadm.StringPtr(v)
	}
	resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// produceKeyed writes n updates over keys keys to topic, of valueSize
// bytes each and timestamped ts, and waits for them to be acknowledged.
func produceKeyed(t testing.TB, cl *kgo.Client, topic string, n, keys, valueSize int, ts time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rs []*kgo.Record
	for i := range n {
		v := fmt.Appendf(nil, "%0*d", valueSize, i)
		rs = append(rs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", i%keys), Value: v, Timestamp: ts})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// rolledLog waits until the log of partition 0 of topic has a rolled
// segment a pass may clean, and returns it.
func rolledLog(t *testing.T, b *Broker, topic string) *partition {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if p := b.parts.get(topic, 0); p != nil && p.log.DirtyRatio() > 0 {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has no rolled segment", topic)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCleanerPicksOverdueFirst checks the cleaner's choice: a partition
// past its max.compaction.lag.ms comes before one with a higher dirty
// ratio, and a partition one thread cleans is not given to another.
func TestCleanerPicksOverdueFirst(t *testing.T) {
	b, cl := idleCleanerBroker(t)
	createCompacted(t, cl, "overdue", map[string]string{"max.compaction.lag.ms": "1800000", "min.cleanable.dirty.ratio": "1"})
	createCompacted(t, cl, "dirty", map[string]string{"min.cleanable.dirty.ratio": "0.01"})
	old := time.Now().Add(-time.Hour)
	produceKeyed(t, cl, "overdue", 2000, 20, 10, old)
	overdue := rolledLog(t, b, "overdue")
	if _, err := overdue.log.Clean(time.Now(), commitlog.CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	// More, an hour old, which rolls a segment: a dirty ratio below 1,
	// but past the lag.
	produceKeyed(t, cl, "overdue", 1000, 20, 10, old)
	produceKeyed(t, cl, "dirty", 2000, 20, 10, time.Now())
	dirty := rolledLog(t, b, "dirty")
	deadline := time.Now().Add(10 * time.Second)
	for overdue.log.CleanState(time.Now()).Overdue == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the overdue partition never rolled: %+v", overdue.log.CleanState(time.Now()))
		}
		time.Sleep(10 * time.Millisecond)
	}

	c := &cleaner{parts: b.parts, backoff: time.Hour, busy: make(map[*partition]bool)}
	now := time.Now()
	so, sd := overdue.log.CleanState(now), dirty.log.CleanState(now)
	if !so.Cleanable || !sd.Cleanable || so.Ratio >= sd.Ratio {
		t.Fatalf("overdue %+v, dirty %+v: want both cleanable, the overdue one less dirty", so, sd)
	}
	if p, _ := c.pick(now); p != overdue {
		t.Fatalf("first pick %v, want the overdue partition", p)
	}
	if p, _ := c.pick(now); p != dirty {
		t.Fatalf("second pick %v, want the dirty partition: the overdue one is busy", p)
	}
	if p, _ := c.pick(now); p != nil {
		t.Fatalf("third pick %v, want none: both are busy", p)
	}
	clear(c.busy)
	if !c.cleanOne(context.Background(), now) || overdue.log.CleanState(time.Now()).Overdue != 0 {
		t.Fatalf("a pass left the overdue partition overdue: %+v", overdue.log.CleanState(time.Now()))
	}
}

// TestCleanerIORate cleans 2 MiB of updates at 2 MiB/s and checks that
// the pass takes as long as its reads and writes need at that rate, and
// not much longer.
func TestCleanerIORate(t *testing.T) {
	b, cl := idleCleanerBroker(t)
	createCompacted(t, cl, "rated", map[string]string{"segment.bytes": "262144"})
	produceKeyed(t, cl, "rated", 20_000, 200, 80, time.Now())
	p := rolledLog(t, b, "rated")
	const rate = 2 << 20
	th := newIOThrottle(rate)
	var io int64
	began := time.Now()
	res, err := p.log.Clean(time.Now(), commitlog.CleanOptions{Throttle: func(n int) error {
		io += int64(n)
		return th.wait(context.Background(), n)
	}})
	elapsed := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Duration(float64(io) / rate * float64(time.Second))
	t.Logf("pass over %d bytes: %d bytes of I/O in %v at %d MiB/s (%v expected); %d bytes left", res.BytesRead, io, elapsed, rate>>20, want, res.BytesWritten)
	if res.BytesRead < 1<<20 || elapsed < want-throttleSlack || elapsed > want*3/2+200*time.Millisecond {
		t.Fatalf("a pass of %d bytes of I/O at %d B/s took %v, want about %v", io, rate, elapsed, want)
	}
}

// TestProduceDuringClean measures produce latency (acks=all, one record
// at a time) on a partition while the cleaner compacts it, against the
// same partition idle, and checks that a consumer reads on meanwhile.
// Produces wait for the cleaner only while it swaps its segments in.
func TestProduceDuringClean(t *testing.T) {
	b, cl := idleCleanerBroker(t)
	createCompacted(t, cl, "busy", map[string]string{"segment.bytes": "262144"})
	produceKeyed(t, cl, "busy", 40_000, 400, 80, time.Now())
	p := rolledLog(t, b, "busy")
	idle := produceLatencies(t, cl, "busy", 200, nil)

	consumer, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("busy"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var fetched atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			fs := consumer.PollFetches(ctx)
			cancel()
			fetched.Add(int64(fs.NumRecords()))
		}
	})
	th := newIOThrottle(8 << 20)
	var res commitlog.CleanResult
	wg.Go(func() {
		defer close(done)
		res, err = p.log.Clean(time.Now(), commitlog.CleanOptions{Throttle: func(n int) error { return th.wait(context.Background(), n) }})
	})
	busy := produceLatencies(t, cl, "busy", 0, done)
	fetchedDuring := fetched.Load()
	wg.Wait()
	if err != nil || res.RecordsRemoved == 0 {
		t.Fatalf("clean: %+v, %v", res, err)
	}
	t.Logf("produce latency idle: %v; during a pass over %d bytes: %v; %d records fetched meanwhile", idle, res.BytesRead, busy, fetchedDuring)
	if busy.n < 20 || fetchedDuring == 0 {
		t.Fatalf("during the pass: %d produces, %d records fetched", busy.n, fetchedDuring)
	}
	if busy.p99 > 250*time.Millisecond {
		t.Fatalf("produce p99 %v while the cleaner runs", busy.p99)
	}
}

// latencies summarises produce round trips.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func (l latencies) String() string {
	return fmt.Sprintf("%d produces, p50 %v, p99 %v, max %v", l.n, l.p50.Round(10*time.Microsecond), l.p99.Round(10*time.Microsecond), l.max.Round(10*time.Microsecond))
}

// produceLatencies produces one record at a time to topic, n times, or
// until done is closed if n is 0, and returns the round trips.
func produceLatencies(t testing.TB, cl *kgo.Client, topic string, n int, done <-chan struct{}) latencies {
	t.Helper()
	var ds []time.Duration
	for i := 0; n == 0 || i < n; i++ {
		if closed(done) {
			break
		}
		began := time.Now()
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", i%400), Value: []byte("latency-probe")}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, time.Since(began))
	}
	if len(ds) == 0 {
		return latencies{}
	}
	slices.Sort(ds)
	return latencies{n: len(ds), p50: ds[len(ds)/2], p99: ds[len(ds)*99/100], max: ds[len(ds)-1]}
}

// closed reports whether ch, which may be nil, is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
