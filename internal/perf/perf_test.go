package perf

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	for _, tc := range []struct {
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{nil, 0.5, 0},
		{[]time.Duration{ms(7)}, 0.5, ms(7)},
		{[]time.Duration{ms(7)}, 0.999, ms(7)},
		{hundred, 0.50, ms(50)},
		{hundred, 0.99, ms(99)},
		{hundred, 0.999, ms(100)},
		{hundred, 1, ms(100)},
		{hundred, 0.001, ms(1)},
		{[]time.Duration{ms(1), ms(2), ms(3)}, 0.5, ms(2)},
		{[]time.Duration{ms(1), ms(2), ms(3), ms(4)}, 0.5, ms(2)},
	} {
		if got := Percentile(tc.samples, tc.q); got != tc.want {
			t.Errorf("Percentile(%d samples, %v) = %v, want %v", len(tc.samples), tc.q, got, tc.want)
		}
	}
}

func TestLatenciesSummary(t *testing.T) {
	var l Latencies
	if s := l.Summary(); s != (LatencySummary{}) {
		t.Fatalf("empty summary = %+v, want zero", s)
	}
	// 1000 samples 1ms..1000ms added in reverse, so Summary must sort.
	for i := 1000; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	s := l.Summary()
	want := LatencySummary{
		Count: 1000,
		Mean:  500500 * time.Microsecond,
		P50:   500 * time.Millisecond,
		P99:   990 * time.Millisecond,
		P999:  999 * time.Millisecond,
		Max:   1000 * time.Millisecond,
	}
	if s != want {
		t.Fatalf("summary = %+v, want %+v", s, want)
	}
}

func TestPacerHoldsRate(t *testing.T) {
	const rate, n = 2000.0, 400 // 200ms of schedule
	start := time.Now()
	p := newPacer(start, rate)
	for i := range int64(n) {
		due, err := p.wait(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		if want := start.Add(time.Duration(i) * time.Second / rate); !due.Equal(want) {
			t.Fatalf("record %d due %v, want %v", i, due.Sub(start), want.Sub(start))
		}
	}
	// The last record is due at 199.5ms; the pacer may run up to slack early.
	if got, floor := time.Since(start), time.Duration(n-1)*time.Second/rate-slack; got < floor {
		t.Fatalf("%d records at %v/s took %v, want at least %v", n, rate, got, floor)
	}
}

func TestPacerStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := newPacer(time.Now(), 0.5) // record 1 is due in 2s
	time.AfterFunc(20*time.Millisecond, cancel)
	begin := time.Now()
	if _, err := p.wait(ctx, 1); err != context.Canceled {
		t.Fatalf("wait after cancel = %v, want context.Canceled", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("wait returned %v after cancel, want promptly", d)
	}
}

func TestPacerUnpaced(t *testing.T) {
	p := newPacer(time.Now(), 0)
	begin := time.Now()
	for i := range int64(100_000) {
		if _, err := p.wait(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("100000 unpaced waits took %v", d)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		mode Mode
		opts []Opt
		want string
	}{
		{ModeProduce, []Opt{Records(0)}, "neither a record count nor a duration"},
		{ModeProduce, []Opt{Compression("brotli")}, "compression must be"},
		{ModeProduce, []Opt{Rate(-1)}, "rate"},
		{ModeProduce, []Opt{Partitions(0)}, "partitions"},
		{ModeEndToEnd, []Opt{RecordSize(4)}, "timestamp"},
		{ModeProduce, []Opt{Brokers()}, "no brokers"},
	} {
		if _, err := newConfig(tc.mode, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s with %d opts: err = %v, want one containing %q", tc.mode, len(tc.opts), err, tc.want)
		}
	}
	c, err := newConfig(ModeConsume, nil)
	if err != nil || c.records != 0 {
		t.Fatalf("consume defaults: records %d, err %v; want 0 (all present), nil", c.records, err)
	}
	if c, _ := newConfig(ModeProduce, nil); c.records != 1_000_000 {
		t.Fatalf("produce default records = %d, want 1000000", c.records)
	}
}

func TestParseAcks(t *testing.T) {
	for in, want := range map[string]Acks{"all": AcksAll, "-1": AcksAll, "1": AcksLeader, "0": AcksNone} {
		got, err := ParseAcks(in)
		if err != nil || got != want {
			t.Errorf("ParseAcks(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseAcks("2"); err == nil {
		t.Error("ParseAcks(\"2\") succeeded")
	}
}

// newCluster starts a one-broker kfake cluster persisting to a temporary
// directory and returns its address.
func newCluster(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func TestProduceConsumeEndToEnd(t *testing.T) {
	addr := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	common := []Opt{Brokers(addr), Topic("perf-test"), Partitions(2), RecordSize(100)}

	var mu sync.Mutex
	var progress []Progress
	prod, err := Produce(ctx, append(common, Records(5000), Compression("lz4"),
		OnProgress(func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }))...)
	if err != nil {
		t.Fatal(err)
	}
	if prod.Records != 5000 || prod.Bytes != 5000*100 {
		t.Fatalf("produce acknowledged %d records, %d bytes; want 5000, 500000", prod.Records, prod.Bytes)
	}

	cons, err := Consume(ctx, common...)
	if err != nil {
		t.Fatal(err)
	}
	if cons.Records != 5000 || cons.Bytes != 5000*100 {
		t.Fatalf("consume read %d records, %d bytes; want 5000, 500000", cons.Records, cons.Bytes)
	}
	if part, err := Consume(ctx, append(common, Records(1234))...); err != nil || part.Records != 1234 {
		t.Fatalf("consume of 1234 records read %d, err %v", part.Records, err)
	}

	// 1500 records at 5000/s take about 300ms and must all come back,
	// none of them before it was produced.
	e2e, err := EndToEnd(ctx, append(common, Records(1500), Rate(5000), Linger(0),
		OnProgress(func(p Progress) { mu.Lock(); progress = append(progress, p); mu.Unlock() }))...)
	if err != nil {
		t.Fatal(err)
	}
	if e2e.Records != 1500 || e2e.Latency == nil || e2e.Latency.Count != 1500 {
		t.Fatalf("e2e consumed %d records with latency %+v; want 1500 samples", e2e.Records, e2e.Latency)
	}
	if l := e2e.Latency; l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max || l.Max > 10*time.Second {
		t.Fatalf("implausible latency summary %+v", *l)
	}
	if e2e.Elapsed < 250*time.Millisecond {
		t.Fatalf("1500 records at 5000/s finished in %v, want at least 300ms minus slack", e2e.Elapsed)
	}

	// The topic now holds both runs' records.
	all, err := Consume(ctx, common...)
	if err != nil || all.Records != 6500 {
		t.Fatalf("final consume read %d records, err %v; want 6500", all.Records, err)
	}

	js, err := json.Marshal(e2e)
	if err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Mode    string `json:"mode"`
		Records int64  `json:"records"`
		Latency struct {
			P99 float64 `json:"p99_ms"`
		} `json:"latency"`
	}
	if err := json.Unmarshal(js, &decoded); err != nil || decoded.Mode != "e2e" || decoded.Records != 1500 || decoded.Latency.P99 <= 0 {
		t.Fatalf("JSON %s decoded to %+v, err %v", js, decoded, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range progress {
		if p.Records < 0 || p.Elapsed <= 0 || p.InFlight < 0 {
			t.Fatalf("implausible progress %v", p)
		}
	}
}

func TestProduceDuration(t *testing.T) {
	addr := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var ticks int
	res, err := Produce(ctx, Brokers(addr), Records(0), Duration(1200*time.Millisecond), Rate(1000),
		OnProgress(func(Progress) { ticks++ }))
	if err != nil {
		t.Fatal(err)
	}
	// About 1200 records at 1000/s, give or take scheduling.
	if res.Records < 1000 || res.Records > 1300 {
		t.Fatalf("1.2s at 1000/s acknowledged %d records", res.Records)
	}
	// One report at 1s, and a second only if the final flush is slow.
	if ticks < 1 || ticks > 2 {
		t.Fatalf("got %d progress reports in a 1.2s run, want 1 or 2", ticks)
	}
}

func TestConsumeMissingTopic(t *testing.T) {
	addr := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	_, err := Consume(ctx, Brokers(addr), Topic("no-such-topic"))
	if err == nil || !strings.Contains(err.Error(), "no-such-topic") {
		t.Fatalf("consume of a missing topic: err = %v, want one naming the topic", err)
	}
	if d := time.Since(begin); d > 12*time.Second {
		t.Fatalf("consume of a missing topic took %v to fail", d)
	}
}
