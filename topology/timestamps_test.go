package topology_test

import (
	"fmt"
	"testing"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

// stamped renders records as key=value@ms.
func stamped[K, V any](t *testing.T, out *streamstest.OutputTopic[K, V]) []string {
	t.Helper()
	recs, err := out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range recs {
		s = append(s, fmt.Sprintf("%v=%v@%d", r.Key, r.Value, r.Timestamp.UnixMilli()))
	}
	return s
}

// TestAggregateTimestamps: a key-value aggregation's row carries the
// largest timestamp of the records it reflects, in its output and in its
// store and changelog (Kafka Streams' KStreamAggregate and
// KTableAggregate).
func TestAggregateTimestamps(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	in.GroupByKey().Count(topology.Materialized("counts")).ToStream().To("counts")
	// The users per region: a user moving between regions at an earlier
	// time than the region's last change leaves the later stamp in place.
	users := topology.TableFrom[string, string](b, "users", topology.Materialized("users"))
	topology.GroupTableBy(users, func(user, region string) (string, string) { return region, user }).
		Count(topology.Materialized("per-region")).ToStream().To("per-region")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := streamstest.New(top, streamstest.ApplicationID("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	src := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	for _, r := range []timed{{"a", 10}, {"a", 5}, {"a", 20}, {"b", 3}} {
		if err := src.PipeAt(r.key, "v", at(r.ts)); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, stamped(t, streamstest.NewOutputTopic(d, "counts", serde.String(), serde.Int64())),
		"a=1@10", "a=2@10", "a=3@20", "b=1@3")
	counts, err := streamstest.Store[state.TimestampedKeyValueStore[string, int64]](d, "counts")
	if err != nil {
		t.Fatal(err)
	}
	if vt, ok, err := counts.GetWithTimestamp("a"); vt.Value != 3 || vt.Timestamp.UnixMilli() != 20 || !ok || err != nil {
		t.Fatalf("stored a = %+v %v %v, want 3 at 20", vt, ok, err)
	}
	logged, err := streamstest.NewOutputTopic(d, "app-counts-changelog", serde.String(), state.ValueAndTimestampSerde(serde.Int64())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if last := logged[len(logged)-1]; last.Key != "b" || last.Value.Value != 1 || last.Value.Timestamp.UnixMilli() != 3 {
		t.Fatalf("last changelog record = %+v", last)
	}

	up := streamstest.NewInputTopic(d, "users", serde.String(), serde.String())
	for _, r := range []struct {
		ts           int64
		user, region string
	}{{100, "ann", "eu"}, {50, "bob", "eu"}, {70, "ann", "us"}} {
		if err := up.PipeAt(r.user, r.region, at(r.ts)); err != nil {
			t.Fatal(err)
		}
	}
	// ann's move at 70 subtracts her from eu, whose row was stamped 100.
	expect(t, stamped(t, streamstest.NewOutputTopic(d, "per-region", serde.String(), serde.Int64())),
		"eu=1@100", "eu=2@100", "eu=1@100", "us=1@70")
}

// TestTableJoinTimestamps: a table-table join row carries the later of
// its two sides' timestamps, whichever side triggered the update (Kafka
// Streams' KTable-KTable joins), through a Filter of a side too.
func TestTableJoinTimestamps(t *testing.T) {
	b := topology.NewBuilder()
	left := topology.TableFrom[string, string](b, "left", topology.Materialized("left"))
	right := topology.TableFrom[string, string](b, "right", topology.Materialized("right")).
		Filter(func(_, v string) bool { return v != "hidden" })
	joined := topology.LeftJoinTables(left, right, func(l, r string, found bool) string {
		if !found {
			return l + "+none"
		}
		return l + "+" + r
	})
	joined.ToStream().To("joined")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d, err := streamstest.New(top)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l := streamstest.NewInputTopic(d, "left", serde.String(), serde.String())
	r := streamstest.NewInputTopic(d, "right", serde.String(), serde.String())
	steps := []struct {
		in  *streamstest.InputTopic[string, string]
		ts  int64
		val string
	}{
		{l, 100, "A"},    // A+none@100
		{r, 50, "a"},     // the left row is later: A+a@100
		{r, 200, "b"},    // A+b@200
		{l, 10, "C"},     // the right row is later: C+b@200
		{r, 5, "hidden"}, // filtered out: the join sees no right row, C+none@10
	}
	for _, s := range steps {
		if err := s.in.PipeAt("k", s.val, at(s.ts)); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, stamped(t, streamstest.NewOutputTopic(d, "joined", serde.String(), serde.String())),
		"k=A+none@100", "k=A+a@100", "k=A+b@200", "k=C+b@200", "k=C+none@10")
}
