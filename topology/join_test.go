package topology_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

// The input sequence of the join semantics tables in Kafka Streams'
// documentation ("Kafka Streams Join Semantics"): one key, values per
// timestamp on the left and right input, "" for a null (a tombstone).
type step struct {
	ts    int64
	left  bool
	value string
}

var semantics = []step{
	{1, true, ""}, {2, false, ""}, {3, true, "A"}, {4, false, "a"}, {5, true, "B"}, {6, false, "b"},
	{7, true, ""}, {8, false, ""}, {9, true, "C"}, {10, false, "c"}, {11, false, ""}, {12, true, ""},
	{13, false, ""}, {14, false, "d"}, {15, true, "D"},
}

// play pipes the sequence into the topics left and right and returns what
// the topology wrote to out, as "ts:value" with "null" for a tombstone.
func play(t *testing.T, b *topology.Builder, steps []step) []string {
	t.Helper()
	d := build(t, b)
	start := time.UnixMilli(0)
	in := map[bool]*streamstest.InputTopic[string, string]{
		true:  streamstest.NewInputTopic(d, "left", serde.String(), serde.String()),
		false: streamstest.NewInputTopic(d, "right", serde.String(), serde.String()),
	}
	for _, s := range steps {
		var err error
		if s.value == "" {
			err = in[s.left].PipeRaw([]byte("k"), nil, start.Add(time.Duration(s.ts)*time.Millisecond), nil)
		} else {
			err = in[s.left].PipeAt("k", s.value, start.Add(time.Duration(s.ts)*time.Millisecond))
		}
		if err != nil {
			t.Fatalf("ts %d: %v", s.ts, err)
		}
	}
	recs, err := streamstest.NewOutputTopic(d, "out", serde.String(), serde.Bytes()).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		v := "null"
		if r.Value != nil {
			v = string(r.Value)
		}
		out = append(out, strconv.FormatInt(r.Timestamp.UnixMilli(), 10)+":"+v)
	}
	return out
}

func pair(l string, lok bool, r string, rok bool) string {
	if !lok {
		l = "null"
	}
	if !rok {
		r = "null"
	}
	return l + "-" + r
}

func TestStreamTableJoinSemantics(t *testing.T) {
	for name, c := range map[string]struct {
		join func(s topology.Stream[string, string], tb topology.Table[string, string]) topology.Stream[string, string]
		want []string
	}{
		"inner": {func(s topology.Stream[string, string], tb topology.Table[string, string]) topology.Stream[string, string] {
			return topology.Join(s, tb, func(v, row string) string { return pair(v, true, row, true) })
		}, []string{"5:B-a", "15:D-d"}},
		"left": {func(s topology.Stream[string, string], tb topology.Table[string, string]) topology.Stream[string, string] {
			return topology.LeftJoin(s, tb, func(v, row string, found bool) string { return pair(v, true, row, found) })
		}, []string{"3:A-null", "5:B-a", "9:C-null", "15:D-d"}},
	} {
		t.Run(name, func(t *testing.T) {
			b := topology.NewBuilder()
			s := topology.FromTopics[string, string](b, []string{"left"})
			c.join(s, topology.TableFrom[string, string](b, "right")).To("out")
			expect(t, play(t, b, semantics), c.want...)
		})
	}
}

func TestStreamGlobalTableJoinSemantics(t *testing.T) {
	for name, c := range map[string]struct {
		join func(s topology.Stream[string, string], g topology.GlobalTable[string, string]) topology.Stream[string, string]
		want []string
	}{
		"inner": {func(s topology.Stream[string, string], g topology.GlobalTable[string, string]) topology.Stream[string, string] {
			return topology.JoinGlobal(s, g, func(k, _ string) string { return k },
				func(v, row string) string { return pair(v, true, row, true) })
		}, []string{"5:B-a", "15:D-d"}},
		"left": {func(s topology.Stream[string, string], g topology.GlobalTable[string, string]) topology.Stream[string, string] {
			return topology.LeftJoinGlobal(s, g, func(k, _ string) string { return k },
				func(v, row string, found bool) string { return pair(v, true, row, found) })
		}, []string{"3:A-null", "5:B-a", "9:C-null", "15:D-d"}},
	} {
		t.Run(name, func(t *testing.T) {
			b := topology.NewBuilder()
			s := topology.FromTopics[string, string](b, []string{"left"})
			c.join(s, topology.GlobalTableFrom[string, string](b, "right")).To("out")
			expect(t, play(t, b, semantics), c.want...)
		})
	}
}

func TestGlobalTableJoinByKeySelector(t *testing.T) {
	b := topology.NewBuilder()
	regions := topology.GlobalTableFrom[string, string](b, "regions", topology.Materialized("regions"))
	views := topology.FromTopics[string, string](b, []string{"views"}) // user -> region code
	topology.LeftJoinGlobal(views, regions, func(_, code string) string { return code },
		func(code, region string, found bool) string { return pair(code, true, region, found) }).To("out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if subs := engine.Of(top).Subtopologies("app"); len(subs) != 1 || len(subs[0].Stores) != 0 || len(subs[0].SourceTopics) != 1 {
		t.Fatalf("the global table belongs to no subtopology: %+v", subs)
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "regions", serde.String(), serde.String()), kv("eu", "Europe"), kv("us", "Americas"))
	pipe(t, streamstest.NewInputTopic(d, "views", serde.String(), serde.String()), kv("u1", "eu"), kv("u2", "xx"), kv("u3", "us"))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.String(), serde.String())),
		"u1=eu-Europe", "u2=xx-null", "u3=us-Americas")
	expect(t, storeContents[string](t, d, "regions"), "eu=Europe", "us=Americas")
}

// The table-table rows add, at ts 17, the right value d again, which
// updates every join.
var tableSemantics = append(append([]step(nil), semantics...), step{17, false, "d"})

func TestTableTableJoinSemantics(t *testing.T) {
	for name, c := range map[string]struct {
		join func(l, r topology.Table[string, string]) topology.Table[string, string]
		want []string
	}{
		"inner": {func(l, r topology.Table[string, string]) topology.Table[string, string] {
			return topology.JoinTables(l, r, func(lv, rv string) string { return pair(lv, true, rv, true) })
		}, []string{"4:A-a", "5:B-a", "6:B-b", "7:null", "10:C-c", "11:null", "15:D-d", "17:D-d"}},
		"left": {func(l, r topology.Table[string, string]) topology.Table[string, string] {
			return topology.LeftJoinTables(l, r, func(lv, rv string, rok bool) string { return pair(lv, true, rv, rok) })
		}, []string{"3:A-null", "4:A-a", "5:B-a", "6:B-b", "7:null", "9:C-null", "10:C-c", "11:C-null", "12:null", "15:D-d", "17:D-d"}},
		"outer": {func(l, r topology.Table[string, string]) topology.Table[string, string] {
			return topology.OuterJoinTables(l, r, pair)
		}, []string{"3:A-null", "4:A-a", "5:B-a", "6:B-b", "7:null-b", "8:null", "9:C-null", "10:C-c", "11:C-null", "12:null", "14:null-d", "15:D-d", "17:D-d"}},
	} {
		t.Run(name, func(t *testing.T) {
			b := topology.NewBuilder()
			l := topology.TableFrom[string, string](b, "left")
			r := topology.TableFrom[string, string](b, "right")
			c.join(l, r).ToStream().To("out")
			expect(t, play(t, b, tableSemantics), c.want...)
		})
	}
}

func TestStreamTableJoinRepartitionsRekeyedStream(t *testing.T) {
	b := topology.NewBuilder()
	users := topology.TableFrom[string, string](b, "users")
	clicks := topology.FromTopics[string, string](b, []string{"clicks"}) // page -> user
	byUser := topology.SelectKey(clicks, func(_, user string) string { return user })
	topology.Join(byUser, users, func(user, name string) string { return name }, topology.Named("enrich")).To("out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	subs := engine.Of(top).Subtopologies("app")
	if len(subs) != 2 || len(subs[0].RepartitionSources) != 1 || subs[0].RepartitionSources[0] != "app-enrich-repartition" ||
		len(subs[0].Stores) != 1 || len(subs[0].ReaderPartitioned) != 1 {
		t.Fatalf("want the re-keyed stream repartitioned into the table's subtopology:\n%s", top.Describe())
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pipe(t, streamstest.NewInputTopic(d, "users", serde.String(), serde.String()), kv("u1", "Ann"))
	pipe(t, streamstest.NewInputTopic(d, "clicks", serde.String(), serde.String()), kv("home", "u1"), kv("cart", "u2"))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.String(), serde.String())), "u1=Ann")
}

func TestCoPartitioningCheckedAtBuild(t *testing.T) {
	b := topology.NewBuilder()
	users := topology.FromTopics[string, string](b, []string{"users"}).
		Repartition(topology.Named("users-by-id"), topology.NumPartitions(4)).
		GroupByKey().Reduce(func(_, v string) string { return v }, topology.Materialized("users"))
	clicks := topology.FromTopics[string, string](b, []string{"clicks"}).
		Repartition(topology.Named("clicks-by-user"), topology.NumPartitions(6))
	topology.Join(clicks, users, func(c, u string) string { return c + u }).To("out")
	_, err := b.Build()
	if err == nil || !strings.Contains(err.Error(), "not co-partitioned") ||
		!strings.Contains(err.Error(), "clicks-by-user-repartition") || !strings.Contains(err.Error(), "users-by-id-repartition") {
		t.Fatalf("Build = %v, want a co-partitioning error naming both topics", err)
	}
}
