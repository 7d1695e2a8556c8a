package topology_test

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

func build(t *testing.T, b *topology.Builder, opts ...streamstest.Option) *streamstest.Driver {
	t.Helper()
	top, err := b.Build()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	d, err := streamstest.New(top, opts...)
	if err != nil {
		t.Fatalf("driver: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d
}

func pipe[K, V any](t *testing.T, in *streamstest.InputTopic[K, V], kvs ...topology.KeyValue[K, V]) {
	t.Helper()
	for _, kv := range kvs {
		if err := in.Pipe(kv.Key, kv.Value); err != nil {
			t.Fatalf("pipe %v: %v", kv, err)
		}
	}
}

func kv[K, V any](k K, v V) topology.KeyValue[K, V] { return topology.KeyValue[K, V]{Key: k, Value: v} }

func readKV[K, V any](t *testing.T, out *streamstest.OutputTopic[K, V]) []string {
	t.Helper()
	recs, err := out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range recs {
		s = append(s, fmt.Sprintf("%v=%v", r.Key, r.Value))
	}
	return s
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestStatelessOperators(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, string](b, []string{"in"})
	var peeked []string
	s.Filter(func(k, _ string) bool { return k != "skip" }).
		FilterNot(func(_, v string) bool { return v == "" }).
		Peek(func(k, _ string) { peeked = append(peeked, k) }).
		To("filtered")
	topology.MapValues(s, func(_, v string) int64 { return int64(len(v)) }).To("lengths")
	topology.Map(s, func(k, v string) (string, string) { return v, k }).To("swapped")
	topology.FlatMapValues(s, func(_, v string) []string { return strings.Fields(v) }).To("words")
	topology.FlatMap(s, func(k, v string) []topology.KeyValue[string, int64] {
		return []topology.KeyValue[string, int64]{kv(k+"1", int64(1)), kv(k+"2", int64(2))}
	}).To("doubled")
	d := build(t, b)
	pipe(t, streamstest.NewInputTopic(d, "in", serde.String(), serde.String()),
		kv("a", "x y"), kv("skip", "z"), kv("b", ""))

	expect(t, readKV(t, streamstest.NewOutputTopic(d, "filtered", serde.String(), serde.String())), "a=x y")
	expect(t, peeked, "a")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "lengths", serde.String(), serde.Int64())), "a=3", "skip=1", "b=0")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "swapped", serde.String(), serde.String())), "x y=a", "z=skip", "=b")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "words", serde.String(), serde.String())), "a=x", "a=y", "skip=z")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "doubled", serde.String(), serde.Int64())),
		"a1=1", "a2=2", "skip1=1", "skip2=2", "b1=1", "b2=2")
}

func TestBranchMergeAndDynamicSink(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopicsWith(b, []string{"nums"}, serde.String(), serde.Int64())
	br := s.Split(topology.Named("num-")).
		Branch("negative", func(_ string, v int64) bool { return v < 0 }).
		Branch("even", func(_ string, v int64) bool { return v%2 == 0 }).
		DefaultBranch("odd")
	if len(br) != 3 {
		t.Fatalf("branches = %v", br)
	}
	br["num-negative"].To("negative")
	br["num-even"].Merge(br["num-odd"]).To("rest")
	s.ToDynamic(func(r processor.Record[string, int64]) string { return "topic-" + r.Key })
	d := build(t, b)
	pipe(t, streamstest.NewInputTopic(d, "nums", serde.String(), serde.Int64()),
		kv("a", int64(-2)), kv("b", int64(4)), kv("a", int64(3)))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "negative", serde.String(), serde.Int64())), "a=-2")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "rest", serde.String(), serde.Int64())), "b=4", "a=3")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "topic-a", serde.String(), serde.Int64())), "a=-2", "a=3")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "topic-b", serde.String(), serde.Int64())), "b=4")
}

func splitWords(_ string, line string) []string {
	return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func TestGroupByCountRepartitions(t *testing.T) {
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{"lines"})
	words := topology.FlatMapValues(lines, splitWords)
	counts := topology.GroupBy(words, func(_, w string) string { return w }).
		Count(topology.Materialized("counts", state.WithCacheMaxBytes(1<<20)))
	counts.ToStream().To("counts-out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	subs := engine.Of(top).Subtopologies("app")
	if len(subs) != 2 {
		t.Fatalf("got %d subtopologies, want 2:\n%s", len(subs), top.Describe())
	}
	if !slices.Equal(subs[1].RepartitionSources, []string{"app-counts-repartition"}) {
		t.Fatalf("repartition sources = %v", subs[1].RepartitionSources)
	}
	if len(subs[1].Stores) != 1 || subs[1].Stores[0].Name != "counts" || !subs[1].Stores[0].Logging {
		t.Fatalf("stores = %+v", subs[1].Stores)
	}
	d, err := streamstest.New(top, streamstest.ApplicationID("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "lines", serde.String(), serde.String()),
		kv("", "Hello, hello WORLD!"), kv("", "world--of 42 Äpfel"))

	expect(t, readKV(t, streamstest.NewOutputTopic(d, "counts-out", serde.String(), serde.Int64())),
		"hello=1", "hello=2", "world=1", "world=2", "of=1", "42=1", "äpfel=1")
	store, err := streamstest.Store[state.KeyValueStore[string, int64]](d, "counts")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for e, err := range store.All() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s=%d", e.Key, e.Value))
	}
	expect(t, got, "42=1", "hello=2", "of=1", "world=2", "äpfel=1")
	// The cache is flushed after each piped record: the changelog holds one
	// record per key and line, not one per update, in the layout of Kafka
	// Streams' timestamped stores, stamped like the record.
	logged, err := streamstest.NewOutputTopic(d, "app-counts-changelog", serde.String(), state.ValueAndTimestampSerde(serde.Int64())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, r := range logged {
		if r.Value.Timestamp.UnixMilli() != r.Timestamp.UnixMilli() {
			t.Errorf("changelog record of %s: value stamped %v, record %v", r.Key, r.Value.Timestamp, r.Timestamp)
		}
		got = append(got, fmt.Sprintf("%s=%d", r.Key, r.Value.Value))
	}
	expect(t, got, "hello=2", "world=1", "42=1", "of=1", "world=2", "äpfel=1")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "app-counts-repartition", serde.String(), serde.String()))[:2],
		"hello=hello", "hello=hello")
}

func TestGroupByKeyReduceAggregateAndTable(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, int64](b, []string{"in"})
	g := s.GroupByKey()
	sum := g.Reduce(func(a, v int64) int64 { return a + v }, topology.Materialized("sum", state.InMemory()))
	sum.Filter(func(_ string, v int64) bool { return v > 2 }).ToStream().To("big-sums")
	topology.MapValuesTable(sum, func(_ string, v int64) string { return fmt.Sprint("sum:", v) }).ToStream().To("sum-text")
	type stats struct{ N, Max int64 }
	topology.Aggregate(g, func() stats { return stats{} }, func(_ string, v int64, a stats) stats {
		return stats{N: a.N + 1, Max: max(a.Max, v)}
	}, topology.Materialized("stats")).ToStream().To("stats")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(engine.Of(top).Subtopologies("x")); n != 1 {
		t.Fatalf("GroupByKey without key change: %d subtopologies, want 1", n)
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "in", serde.String(), serde.Int64()),
		kv("a", int64(1)), kv("a", int64(2)), kv("b", int64(5)))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "big-sums", serde.String(), serde.Int64())), "a=3", "b=5")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "sum-text", serde.String(), serde.String())), "a=sum:1", "a=sum:3", "b=sum:5")
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "stats", serde.String(), serde.JSON[stats]())),
		"a={1 1}", "a={2 2}", "b={1 5}")
	st, err := streamstest.Store[state.KeyValueStore[string, stats]](d, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := st.Get("a"); err != nil || !ok || v != (stats{2, 2}) {
		t.Fatalf("stats[a] = %v %v %v", v, ok, err)
	}
	if _, err := streamstest.Store[state.KeyValueStore[string, string]](d, "stats"); err == nil {
		t.Fatal("store with wrong type: want error")
	}
}

func TestValidation(t *testing.T) {
	noop := func() processor.Processor[string, string, string, string] { return nil }
	cases := map[string]struct {
		build func(b *topology.Builder)
		want  string
	}{
		"unknown parent": {func(b *topology.Builder) {
			topology.AddProcessor(b, "p", noop, "missing")
		}, `unknown parent "missing"`},
		"cycle": {func(b *topology.Builder) {
			topology.AddSource(b, "src", serde.String(), serde.String(), "t")
			topology.AddProcessor(b, "p1", noop, "src", "p2")
			topology.AddProcessor(b, "p2", noop, "p1")
		}, "cycle"},
		"store not connected": {func(b *topology.Builder) {
			topology.AddSource(b, "src", serde.String(), serde.String(), "t")
			b.AddStore(state.KeyValueBuilder("s", serde.String(), serde.String()))
		}, `store "s" is not connected`},
		"topic read twice": {func(b *topology.Builder) {
			topology.FromTopics[string, string](b, []string{"t", "u"}).To("out1")
			topology.FromTopics[string, string](b, []string{"t"}).To("out2")
		}, `topic "t" is read by two sources`},
		"name taken": {func(b *topology.Builder) {
			topology.AddSource(b, "x", serde.String(), serde.String(), "t")
			topology.AddSource(b, "x", serde.String(), serde.String(), "u")
		}, `node name "x" is already taken`},
		"type mismatch": {func(b *topology.Builder) {
			topology.AddSource(b, "src", serde.String(), serde.Int64(), "t")
			topology.AddSink(b, "sink", "out", serde.String(), serde.String(), "src")
		}, `node "sink" takes records of (string, string) but parent "src" emits (string, int64)`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			b := topology.NewBuilder()
			c.build(b)
			_, err := b.Build()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Build error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{"lines"}, topology.Named("lines-source"))
	topology.GroupBy(topology.FlatMapValues(lines, splitWords), func(_, w string) string { return w }).
		Count(topology.Materialized("counts")).ToStream().To("out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	want := `Topologies:
   Sub-topology: 0
    Source: lines-source (topics: [lines])
      --> KSTREAM-FLATMAPVALUES-0000000000
    Processor: KSTREAM-FLATMAPVALUES-0000000000 (stores: [])
      --> KSTREAM-KEY-SELECT-0000000001
      <-- lines-source
    Processor: KSTREAM-KEY-SELECT-0000000001 (stores: [])
      --> KSTREAM-SINK-0000000002
      <-- KSTREAM-FLATMAPVALUES-0000000000
    Sink: KSTREAM-SINK-0000000002 (topic: counts-repartition)
      <-- KSTREAM-KEY-SELECT-0000000001

   Sub-topology: 1
    Source: KSTREAM-SOURCE-0000000003 (topics: [counts-repartition])
      --> KSTREAM-AGGREGATE-0000000004
    Processor: KSTREAM-AGGREGATE-0000000004 (stores: [counts])
      --> KTABLE-TOSTREAM-0000000005
      <-- KSTREAM-SOURCE-0000000003
    Processor: KTABLE-TOSTREAM-0000000005 (stores: [])
      --> KSTREAM-SINK-0000000006
      <-- KSTREAM-AGGREGATE-0000000004
    Sink: KSTREAM-SINK-0000000006 (topic: out)
      <-- KTABLE-TOSTREAM-0000000005

`
	if got := top.Describe(); got != want {
		t.Fatalf("Describe:\n%s\nwant:\n%s", got, want)
	}
}

func TestDeserializationErrors(t *testing.T) {
	b := topology.NewBuilder()
	topology.FromTopics[string, int64](b, []string{"in"}).To("out")
	d := build(t, b, streamstest.DeserializationErrors(processor.DeadLetterQueue("dlq", slog.Default())))
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.Int64())
	if err := in.PipeRaw([]byte("k"), []byte("bad"), time.Now(), nil); err != nil {
		t.Fatalf("dead-letter handler should continue: %v", err)
	}
	pipe(t, in, kv("k", int64(7)))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.String(), serde.Int64())), "k=7")
	dl, err := streamstest.NewOutputTopic(d, "dlq", serde.String(), serde.String()).Read()
	if err != nil {
		t.Fatal(err)
	}
	if dl.Value != "bad" || len(dl.Headers) < 4 || dl.Headers[0].Key != processor.HeaderErrorMessage {
		t.Fatalf("dead letter = %+v", dl)
	}

	b = topology.NewBuilder()
	topology.FromTopics[string, int64](b, []string{"in"}).To("out")
	d = build(t, b)
	err = streamstest.NewInputTopic(d, "in", serde.String(), serde.Int64()).PipeRaw(nil, []byte("bad"), time.Now(), nil)
	if err == nil || !strings.Contains(err.Error(), "deserialize value") {
		t.Fatalf("default handler: err = %v, want deserialization failure", err)
	}
}

func TestProcessingErrorsAndPanics(t *testing.T) {
	mk := func() *topology.Builder {
		b := topology.NewBuilder()
		s := topology.FromTopics[string, int64](b, []string{"in"})
		s.Filter(func(_ string, v int64) bool {
			if v == 0 {
				panic("zero")
			}
			if v < 0 {
				return 1/(v-v) == 1
			}
			return true
		}, topology.Named("picky")).To("out")
		return b
	}
	d := build(t, mk())
	err := streamstest.NewInputTopic(d, "in", serde.String(), serde.Int64()).Pipe("k", 0)
	var pe *processor.PanicError
	if !errors.As(err, &pe) || pe.Node != "picky" || pe.Value != "zero" {
		t.Fatalf("err = %v, want PanicError from picky", err)
	}

	d = build(t, mk(), streamstest.ProcessingErrors(processor.LogAndContinue(slog.Default())))
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.Int64())
	pipe(t, in, kv("a", int64(0)), kv("b", int64(-1)), kv("c", int64(1)))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.String(), serde.Int64())), "c=1")
}
