package topology_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

// readChanges reads an output topic with string values, showing a null
// value (a tombstone) as <null>.
func readChanges(t *testing.T, d *streamstest.Driver, topic string) []string {
	t.Helper()
	recs, err := streamstest.NewOutputTopic(d, topic, serde.String(), serde.Bytes()).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		if r.Value == nil {
			out = append(out, r.Key+"=<null>")
		} else {
			out = append(out, r.Key+"="+string(r.Value))
		}
	}
	return out
}

func storeContents[V any](t *testing.T, d *streamstest.Driver, name string) []string {
	t.Helper()
	s, err := streamstest.Store[state.KeyValueStore[string, V]](d, name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for e, err := range s.All() {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%v", e.Key, e.Value))
	}
	return out
}

func TestTableFromTopicTombstonesDelete(t *testing.T) {
	b := topology.NewBuilder()
	users := topology.TableFrom[string, string](b, "users", topology.Materialized("users"))
	users.ToStream().To("users-out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	stores := engine.Of(top).Subtopologies("app")[0].Stores
	if len(stores) != 1 || stores[0].SourceTopic != "users" || stores[0].Logging {
		t.Fatalf("store config = %+v, want the source topic as changelog and no changelog of its own", stores)
	}
	d, err := streamstest.New(top, streamstest.ApplicationID("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	in := streamstest.NewInputTopic(d, "users", serde.String(), serde.String())
	pipe(t, in, kv("u1", "ann"), kv("u2", "bob"), kv("u1", "amy"))
	for _, k := range []string{"u2", "nobody"} {
		if err := in.PipeTombstone(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.PipeRaw(nil, []byte("no key"), d.Now(), nil); err != nil {
		t.Fatal(err)
	}
	expect(t, readChanges(t, d, "users-out"), "u1=ann", "u2=bob", "u1=amy", "u2=<null>")
	expect(t, storeContents[string](t, d, "users"), "u1=amy")
	if n := streamstest.NewOutputTopic(d, "app-users-changelog", serde.String(), serde.String()).Len(); n != 0 {
		t.Fatalf("%d records in a changelog the table should not have", n)
	}
}

func TestTableFilterForwardsDeletes(t *testing.T) {
	b := topology.NewBuilder()
	table := topology.TableFrom[string, string](b, "in")
	table.Filter(func(_, v string) bool { return v != "x" }).ToStream().To("kept")
	topology.MapValuesTable(table, func(_, v string) string { return v + v }).ToStream().To("doubled")
	d := build(t, b)
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	pipe(t, in, kv("k1", "a"), kv("k1", "x"), kv("k1", "x"), kv("k2", "x"), kv("k2", "b"))
	if err := in.PipeTombstone("k2"); err != nil {
		t.Fatal(err)
	}
	// k1 stops matching: one delete, not one per non-matching update; k2
	// never matched until "b".
	expect(t, readChanges(t, d, "kept"), "k1=a", "k1=<null>", "k2=b", "k2=<null>")
	expect(t, readChanges(t, d, "doubled"), "k1=aa", "k1=xx", "k1=xx", "k2=xx", "k2=bb", "k2=<null>")
}

func TestAggregationsSkipNullKeysAndValues(t *testing.T) {
	b := topology.NewBuilder()
	s := topology.FromTopics[string, string](b, []string{"in"})
	s.GroupByKey().Count(topology.Materialized("counts")).ToStream().To("counts")
	topology.GroupBy(s, func(_, v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}).WithKeySerde(serde.JSON[*string]()).Count(topology.Materialized("by-value"))
	d := build(t, b)
	in := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	now := time.Now()
	for _, r := range []struct{ k, v []byte }{{[]byte("a"), []byte("1")}, {nil, []byte("2")}, {[]byte("a"), nil}, {[]byte("a"), []byte("")}} {
		if err := in.PipeRaw(r.k, r.v, now, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The null key and the null value are skipped; an empty value is not
	// null. GroupBy to a nil key skips the record too.
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "counts", serde.String(), serde.Int64())), "a=1", "a=2")
	s2, err := streamstest.Store[state.KeyValueStore[*string, int64]](d, "by-value")
	if err != nil {
		t.Fatal(err)
	}
	n, err := s2.ApproximateNumEntries()
	if err != nil || n != 2 {
		t.Fatalf("by-value has %d entries (%v), want 2: %q and %q", n, err, "1", "2")
	}
}

func TestGroupedTableSubtractsOldRows(t *testing.T) {
	b := topology.NewBuilder()
	users := topology.TableFrom[string, string](b, "user-regions")
	byRegion := topology.GroupTableBy(users, func(_, region string) (string, string) { return region, region })
	byRegion.Count(topology.Materialized("users-per-region")).ToStream().To("counts")
	type ages struct{ N, Sum int }
	ageTable := topology.TableFrom[string, int64](b, "user-ages")
	topology.AggregateTable(topology.GroupTableBy(ageTable, func(_ string, age int64) (string, int64) { return "all", age }),
		func() ages { return ages{} },
		func(_ string, age int64, a ages) ages { return ages{a.N + 1, a.Sum + int(age)} },
		func(_ string, age int64, a ages) ages { return ages{a.N - 1, a.Sum - int(age)} },
		topology.Materialized("ages")).ToStream().To("ages")
	d := build(t, b, streamstest.ApplicationID("app"))
	in := streamstest.NewInputTopic(d, "user-regions", serde.String(), serde.String())
	pipe(t, in, kv("u1", "eu"), kv("u2", "eu"), kv("u1", "us"), kv("u2", "eu"))
	if err := in.PipeTombstone("u2"); err != nil {
		t.Fatal(err)
	}
	// u1 moves from eu to us: eu counts down, us up; u2's unchanged row
	// subtracts and adds in one update; its delete counts eu down.
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "counts", serde.String(), serde.Int64())),
		"eu=1", "eu=2", "eu=1", "us=1", "eu=1", "eu=0")
	expect(t, storeContents[int64](t, d, "users-per-region"), "eu=0", "us=1")
	if n := streamstest.NewOutputTopic(d, "app-users-per-region-repartition", serde.String(), serde.Bytes()).Len(); n != 6 {
		t.Fatalf("repartition topic holds %d records, want 6", n)
	}
	agesIn := streamstest.NewInputTopic(d, "user-ages", serde.String(), serde.Int64())
	pipe(t, agesIn, kv("u1", int64(30)), kv("u2", int64(40)), kv("u1", int64(31)))
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "ages", serde.String(), serde.JSON[ages]())),
		"all={1 30}", "all={2 70}", "all={2 71}")
}
