package topology_test

import (
	"testing"
	"time"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

// streamJoinSemantics is the input of the "improved left/outer
// stream-stream join" table of Kafka Streams' join semantics page (Kafka
// 3.1 and later, KIP-633): the common sequence, then E at 40, F at 60, f at
// 80 and G at 100, with join windows of 15 and no grace.
var streamJoinSemantics = append(append([]step(nil), semantics...),
	step{40, true, "E"}, step{60, true, "F"}, step{80, false, "f"}, step{100, true, "G"})

// innerJoinResults is the table's inner join column: each pair as soon as
// its second record arrives, stamped with the later timestamp; null values
// are dropped.
var innerJoinResults = []string{
	"4:A-a",
	"5:B-a",
	"6:A-b", "6:B-b",
	"9:C-a", "9:C-b",
	"10:A-c", "10:B-c", "10:C-c",
	"14:A-d", "14:B-d", "14:C-d",
	"15:D-a", "15:D-b", "15:D-c", "15:D-d",
}

func TestStreamStreamJoinSemantics(t *testing.T) {
	w := topology.JoinWindowsOf(15 * time.Millisecond)
	for name, c := range map[string]struct {
		join func(l, r topology.Stream[string, string]) topology.Stream[string, string]
		want []string
	}{
		"inner": {func(l, r topology.Stream[string, string]) topology.Stream[string, string] {
			return topology.JoinStreams(l, r, func(lv, rv string) string { return pair(lv, true, rv, true) }, w)
		}, innerJoinResults},
		// Every record of 1-15 finds a partner, so no A-null is emitted
		// (before Kafka 3.1 it was, spuriously, at 3). E finds none: it is
		// emitted, with its own timestamp, once stream time passes 40 + 15,
		// when F arrives; F when f arrives at 80.
		"left": {func(l, r topology.Stream[string, string]) topology.Stream[string, string] {
			return topology.LeftJoinStreams(l, r, func(lv, rv string, rok bool) string { return pair(lv, true, rv, rok) }, w)
		}, append(append([]string(nil), innerJoinResults...), "40:E-null", "60:F-null")},
		// As left, and f, without a left partner, once G passes 80 + 15.
		"outer": {func(l, r topology.Stream[string, string]) topology.Stream[string, string] {
			return topology.OuterJoinStreams(l, r, func(lv string, lok bool, rv string, rok bool) string { return pair(lv, lok, rv, rok) }, w)
		}, append(append([]string(nil), innerJoinResults...), "40:E-null", "60:F-null", "80:null-f")},
	} {
		t.Run(name, func(t *testing.T) {
			b := topology.NewBuilder()
			l := topology.FromTopics[string, string](b, []string{"left"})
			r := topology.FromTopics[string, string](b, []string{"right"})
			c.join(l, r).To("out")
			expect(t, play(t, b, streamJoinSemantics), c.want...)
		})
	}
}

func TestStreamStreamJoinBoundsAndGrace(t *testing.T) {
	// A left record at t joins right records from t-2 to t+5; non-joined
	// left records wait until stream time passes t + 5 + 3 (after + grace).
	w := topology.JoinWindowsOf(0).Before(2 * time.Millisecond).After(5 * time.Millisecond).WithGrace(3 * time.Millisecond)
	b := topology.NewBuilder()
	l := topology.FromTopics[string, string](b, []string{"left"})
	r := topology.FromTopics[string, string](b, []string{"right"})
	topology.LeftJoinStreams(l, r, func(lv, rv string, rok bool) string { return pair(lv, true, rv, rok) }, w).To("out")
	got := play(t, b, []step{
		{10, true, "A"},
		{7, false, "x"},  // 3 before A: outside before = 2
		{15, false, "y"}, // 5 after A: inside
		{20, true, "B"},  // y is 5 before B: outside; stream time 20 < 10+5+3: A waits
		{23, false, "z"}, // 3 after B: inside; A has joined, so is never emitted alone
		{30, true, "C"},  // stream time 30: B joined too
		{39, false, "w"}, // 9 after C: outside; 30+5+3 = 38 < 39: C is emitted alone
	})
	expect(t, got, "15:A-y", "23:B-z", "30:C-null")
}

func TestStreamStreamJoinRejectsNegativeWindow(t *testing.T) {
	b := topology.NewBuilder()
	l := topology.FromTopics[string, string](b, []string{"left"})
	r := topology.FromTopics[string, string](b, []string{"right"})
	topology.JoinStreams(l, r, func(lv, rv string) string { return lv + rv },
		topology.JoinWindowsOf(time.Second).Before(-2*time.Second)).To("out")
	if _, err := b.Build(); err == nil {
		t.Fatal("Build accepted join windows with before + after < 0")
	}
}

func TestStreamStreamJoinRepartitionsAChangedKey(t *testing.T) {
	b := topology.NewBuilder()
	l := topology.FromTopics[string, string](b, []string{"left"})
	r := topology.SelectKey(topology.FromTopics[string, string](b, []string{"right"}), func(_, v string) string { return v })
	topology.JoinStreams(l, r, func(lv, rv string) string { return lv + "+" + rv }, topology.JoinWindowsOf(time.Second), topology.Named("j")).To("out")
	d := build(t, b)
	left := streamstest.NewInputTopic(d, "left", serde.String(), serde.String())
	right := streamstest.NewInputTopic(d, "right", serde.String(), serde.String())
	if err := right.PipeAt("ignored", "k", time.UnixMilli(1)); err != nil {
		t.Fatal(err)
	}
	if err := left.PipeAt("k", "v", time.UnixMilli(2)); err != nil {
		t.Fatal(err)
	}
	expect(t, readKV(t, streamstest.NewOutputTopic(d, "out", serde.String(), serde.String())), "k=v+k")
}
