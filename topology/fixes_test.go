package topology_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

type point struct{ X int }

// pointSerde writes "X=<n>", where serde.Default would write JSON.
var pointSerde = serde.Func(
	func(_ string, p point) ([]byte, error) { return fmt.Appendf(nil, "X=%d", p.X), nil },
	func(_ string, b []byte) (point, error) {
		var p point
		_, err := fmt.Sscanf(string(b), "X=%d", &p.X)
		return p, err
	})

type identity struct {
	ctx processor.Context[point, point]
}

func (p *identity) Init(ctx processor.Context[point, point]) error { p.ctx = ctx; return nil }
func (p *identity) Process(r processor.Record[point, point]) error { return p.ctx.Forward(r) }
func (p *identity) Close() error                                   { return nil }

type fixedIdentity struct {
	ctx processor.FixedKeyContext[point, point]
}

func (p *fixedIdentity) Init(ctx processor.FixedKeyContext[point, point]) error {
	p.ctx = ctx
	return nil
}
func (p *fixedIdentity) Process(r processor.FixedKeyRecord[point, point]) error {
	return p.ctx.Forward(r)
}
func (p *fixedIdentity) Close() error { return nil }

// TestOperationsKeepSerdesOfUnchangedTypes sends records with a custom key
// and value serde through every operation that may change types but here
// does not, and checks the output is still written with the custom serde.
func TestOperationsKeepSerdesOfUnchangedTypes(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopicsWith(b, []string{"in"}, pointSerde, pointSerde)
	id := func(k, v point) (point, point) { return k, v }
	topology.Map(s, id).To("map")
	topology.FlatMap(s, func(k, v point) []topology.KeyValue[point, point] { return []topology.KeyValue[point, point]{kv(k, v)} }).To("flatmap")
	topology.MapValues(s, func(_, v point) point { return v }).To("mapvalues")
	topology.FlatMapValues(s, func(_, v point) []point { return []point{v} }).To("flatmapvalues")
	topology.SelectKey(s, func(k, _ point) point { return k }).To("selectkey")
	topology.Process(s, func() processor.Processor[point, point, point, point] { return &identity{} }).To("process")
	topology.ProcessValues(s, func() processor.FixedKeyProcessor[point, point, point] { return &fixedIdentity{} }).To("processvalues")
	table := s.GroupByKey().Reduce(func(_, v point) point { return v })
	topology.MapValuesTable(table, func(_, v point) point { return v }).ToStream().To("mapvaluestable")
	d := build(t, b)
	if err := streamstest.NewInputTopic(d, "in", pointSerde, pointSerde).Pipe(point{1}, point{2}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"map", "flatmap", "mapvalues", "flatmapvalues", "selectkey", "process", "processvalues", "mapvaluestable"} {
		expect(t, readKV(t, streamstest.NewOutputTopic(d, topic, serde.String(), serde.String())), "X=1=X=2")
	}
}

// recordingSerde remembers the topics it is asked about.
type recordingSerde struct {
	mu     sync.Mutex
	topics []string
}

func (r *recordingSerde) note(topic string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.topics, topic) {
		r.topics = append(r.topics, topic)
	}
}

func (r *recordingSerde) Serialize(topic string, v int64) ([]byte, error) {
	r.note(topic)
	return serde.Int64().Serialize(topic, v)
}

func (r *recordingSerde) Deserialize(topic string, b []byte) (int64, error) {
	r.note(topic)
	return serde.Int64().Deserialize(topic, b)
}

func TestStoreSerdesAreToldTheChangelogTopic(t *testing.T) {
	b := topology.NewBuilder()
	rec := &recordingSerde{}
	g := topology.FromTopics[string, string](b, []string{"in"}).GroupByKey()
	topology.AggregateWith(g, func() int64 { return 0 }, func(_, _ string, n int64) int64 { return n + 1 }, rec,
		topology.Materialized("agg")).ToStream().To("out")
	d := build(t, b, streamstest.ApplicationID("app"))
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	pipe(t, in, kv("a", "x"), kv("a", "y"))
	if !slices.Equal(rec.topics, []string{"app-agg-changelog", "out"}) {
		t.Fatalf("serde saw topics %q, want the changelog and the sink topic", rec.topics)
	}
}

// ticker counts the punctuations of a schedule it makes with interval.
type ticker struct {
	interval time.Duration
	typ      processor.PunctuationType
	fired    *[]time.Time
}

func (p *ticker) Init(ctx processor.Context[string, string]) error {
	ctx.Schedule(p.interval, p.typ, func(ts time.Time) error {
		*p.fired = append(*p.fired, ts)
		return nil
	})
	return nil
}
func (p *ticker) Process(processor.Record[string, string]) error { return nil }
func (p *ticker) Close() error                                   { return nil }

func tickerTopology(t *testing.T, interval time.Duration, typ processor.PunctuationType, fired *[]time.Time) *topology.Topology {
	t.Helper()
	b := topology.NewBuilder()
	topology.AddSource(b, "src", serde.String(), serde.String(), "in")
	topology.AddProcessor(b, "tick", func() processor.Processor[string, string, string, string] {
		return &ticker{interval: interval, typ: typ, fired: fired}
	}, "src")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func TestPunctuatorInterval(t *testing.T) {
	var fired []time.Time
	for _, interval := range []time.Duration{0, -time.Second} {
		_, err := streamstest.New(tickerTopology(t, interval, processor.StreamTime, &fired))
		if err == nil || !strings.Contains(err.Error(), "non-positive interval") {
			t.Fatalf("Schedule(%v): New = %v, want a non-positive interval error", interval, err)
		}
	}

	// A gap of 10^15 intervals fires once and schedules the next due time
	// after it at once.
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d, err := streamstest.New(tickerTopology(t, time.Nanosecond, processor.StreamTime, &fired), streamstest.StartTime(start))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	for _, ts := range []time.Time{start, start.Add(300 * time.Hour), start.Add(300 * time.Hour)} {
		if err := in.PipeAt("k", "v", ts); err != nil {
			t.Fatal(err)
		}
	}
	if len(fired) != 2 || !fired[1].Equal(start.Add(300*time.Hour)) {
		t.Fatalf("fired at %v, want at the start and once after the gap", fired)
	}

	fired = nil
	d, err = streamstest.New(tickerTopology(t, time.Minute, processor.WallClockTime, &fired), streamstest.StartTime(start))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.AdvanceWallClock(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.AdvanceWallClock(20 * time.Second); err != nil { // 1m50s: next due at 2m
		t.Fatal(err)
	}
	if err := d.AdvanceWallClock(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if len(fired) != 2 || !fired[1].Equal(start.Add(2*time.Minute)) {
		t.Fatalf("wall-clock punctuator fired at %v", fired)
	}
}

func TestSelectKeyRepartitionAndForeach(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, string](b, []string{"clicks"})
	byPage := topology.SelectKey(s, func(_, page string) string { return page })
	byPage.GroupByKey(topology.Named("by-page")).Count(topology.Materialized("page-counts")).ToStream().To("page-counts")
	var seen []string
	s.Repartition(topology.Named("spread"), topology.NumPartitions(6)).
		Foreach(func(k, v string) { seen = append(seen, k+"="+v) })
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	subs := engine.Of(top).Subtopologies("app")
	if len(subs) != 3 {
		t.Fatalf("%d subtopologies, want 3:\n%s", len(subs), top.Describe())
	}
	if got := subs[0].RepartitionPartitions; len(got) != 1 || got["app-spread-repartition"] != 6 {
		t.Fatalf("repartition partition counts = %v, want app-spread-repartition: 6", got)
	}
	var sources []string
	for _, st := range subs[1:] {
		sources = append(sources, st.RepartitionSources...)
	}
	slices.Sort(sources)
	if !slices.Equal(sources, []string{"app-by-page-repartition", "app-spread-repartition"}) {
		t.Fatalf("repartition sources = %v", sources)
	}
	d, err := streamstest.New(top, streamstest.ApplicationID("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "clicks", serde.String(), serde.String()), kv("u1", "home"), kv("u2", "home"), kv("u1", "cart"))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "page-counts", serde.String(), serde.Int64())), "home=1", "home=2", "cart=1")
	expect(t, seen, "u1=home", "u2=home", "u1=cart")
}
