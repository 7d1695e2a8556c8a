package topology_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

func at(n int64) time.Time { return time.UnixMilli(n).UTC() }

type timed struct {
	key string
	ts  int64
}

// windowed renders windowed records as "key@start=value/timestamp".
func windowed[V any](t *testing.T, out *streamstest.OutputTopic[topology.Windowed[string], V]) []string {
	t.Helper()
	recs, err := out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range recs {
		s = append(s, fmt.Sprintf("%s@%d=%v/%d", r.Key.Key, r.Key.Window.StartMs(), r.Value, r.Timestamp.UnixMilli()))
	}
	return s
}

func pipeAt(t *testing.T, in *streamstest.InputTopic[string, string], recs ...timed) {
	t.Helper()
	for _, r := range recs {
		if err := in.PipeAt(r.key, "v", at(r.ts)); err != nil {
			t.Fatalf("pipe %v: %v", r, err)
		}
	}
}

func windowedCount(t *testing.T, w topology.TimeWindows, emit topology.EmitStrategy) (*streamstest.Driver, *streamstest.InputTopic[string, string], *streamstest.OutputTopic[topology.Windowed[string], int64]) {
	t.Helper()
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	topology.WindowedBy(in.GroupByKey(), w).Emit(emit).Count(topology.Materialized("counts")).ToStream().To("out")
	d := build(t, b)
	return d, streamstest.NewInputTopic(d, "in", serde.String(), serde.String()),
		streamstest.NewOutputTopic(d, "out", serde.TimeWindowed(serde.String(), w.Size()), serde.Int64())
}

func TestTumblingWindowCountWithGrace(t *testing.T) {
	d, in, out := windowedCount(t, topology.TumblingWindows(10*time.Millisecond).WithGrace(5*time.Millisecond), topology.OnWindowUpdate)
	// Windows [0,10) and [10,20); a window closes when stream time reaches
	// its end + 5.
	pipeAt(t, in,
		timed{"a", 1}, timed{"a", 8}, timed{"b", 12},
		timed{"a", 5},  // out of order; stream time 12 < 10+5: counted
		timed{"a", 14}, //
		timed{"a", 3},  // stream time 14 < 15: counted
		timed{"b", 16}, // stream time 16 >= 15 closes [0,10)
		timed{"a", 2},  // late: dropped
	)
	want := []string{
		"a@0=1/1", "a@0=2/8", "b@10=1/12",
		"a@0=3/8", // the aggregate keeps the largest timestamp of its records
		"a@10=1/14", "a@0=4/8", "b@10=2/16",
	}
	if got := windowed(t, out); !slices.Equal(got, want) {
		t.Fatalf("output:\n%v\nwant:\n%v", got, want)
	}
	if n := d.DroppedRecords(); n != 1 {
		t.Fatalf("dropped %d records, want the late one", n)
	}
}

func TestHoppingWindowCount(t *testing.T) {
	d, in, out := windowedCount(t, topology.HoppingWindows(10*time.Millisecond, 5*time.Millisecond), topology.OnWindowUpdate)
	pipeAt(t, in,
		timed{"a", 7},  // windows [0,10) and [5,15)
		timed{"a", 12}, // [5,15) and [10,20); stream time 12 closes [0,10)
		timed{"a", 9},  // late for [0,10), counted in [5,15)
	)
	want := []string{"a@0=1/7", "a@5=1/7", "a@5=2/12", "a@10=1/12", "a@5=3/12"}
	if got := windowed(t, out); !slices.Equal(got, want) {
		t.Fatalf("output:\n%v\nwant:\n%v", got, want)
	}
	if n := d.DroppedRecords(); n != 1 {
		t.Fatalf("dropped %d, want 1: the record late for one of its two windows", n)
	}
}

func TestEmitOnWindowClose(t *testing.T) {
	_, in, out := windowedCount(t, topology.TumblingWindows(10*time.Millisecond).WithGrace(5*time.Millisecond), topology.OnWindowClose)
	pipeAt(t, in, timed{"a", 1}, timed{"a", 8}, timed{"b", 12}, timed{"a", 14})
	if got := windowed(t, out); len(got) != 0 {
		t.Fatalf("emitted %v before any window closed", got)
	}
	pipeAt(t, in, timed{"b", 21}) // closes [0,10) at 10+5 <= 21
	if got, want := windowed(t, out), []string{"a@0=2/8"}; !slices.Equal(got, want) {
		t.Fatalf("at 21: %v, want %v", got, want)
	}
	pipeAt(t, in, timed{"a", 3}, timed{"c", 30}) // a@3 is late; 30 closes [10,20)
	if got, want := windowed(t, out), []string{"a@10=1/14", "b@10=1/12"}; !slices.Equal(got, want) {
		t.Fatalf("at 30: %v, want %v", got, want)
	}
}

func TestSuppressUntilTimeLimit(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	in.GroupByKey().Count().SuppressUntilTimeLimit(10*time.Millisecond, topology.MaxRecords(2)).ToStream().To("out")
	d := build(t, b)
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	out := streamstest.NewOutputTopic(d, "out", serde.String(), serde.Int64())
	pipeAt(t, input, timed{"a", 0}, timed{"a", 4}, timed{"b", 5})
	if got := readKV(t, out); len(got) != 0 {
		t.Fatalf("emitted %v within the time limit", got)
	}
	pipeAt(t, input, timed{"a", 10}) // a buffered at 0: 0+10 <= 10
	if got, want := readKV(t, out), []string{"a=3"}; !slices.Equal(got, want) {
		t.Fatalf("at 10: %v, want %v", got, want)
	}
	// b and c fill the buffer of 2; d pushes the oldest, b, out early.
	pipeAt(t, input, timed{"c", 11}, timed{"d", 12})
	if got, want := readKV(t, out), []string{"b=1"}; !slices.Equal(got, want) {
		t.Fatalf("buffer full: %v, want %v emitted early", got, want)
	}
}

func TestSuppressFailsWhenFull(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	in.GroupByKey().Count().SuppressUntilTimeLimit(time.Hour, topology.MaxRecords(1).FailWhenFull()).ToStream().To("out")
	d := build(t, b)
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	pipeAt(t, input, timed{"a", 0})
	var pe *processor.PanicError
	if err := input.PipeAt("b", "v", at(1)); err == nil || errors.As(err, &pe) {
		t.Fatalf("second key in a full buffer: %v, want a processing error", err)
	}
}

func TestWindowValidation(t *testing.T) {
	for name, w := range map[string]topology.TimeWindows{
		"zero size":      topology.TumblingWindows(0),
		"advance > size": topology.HoppingWindows(time.Second, 2*time.Second),
		"negative grace": topology.TumblingWindows(time.Second).WithGrace(-time.Second),
		"sub-ms advance": topology.HoppingWindows(time.Second, time.Microsecond),
	} {
		b := topology.NewBuilder()
		in := topology.FromTopics[string, string](b, []string{"in"})
		topology.WindowedBy(in.GroupByKey(), w).Count().ToStream().To("out")
		if _, err := b.Build(); err == nil {
			t.Errorf("%s: Build accepted %+v", name, w)
		}
	}
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	topology.WindowedBy(in.GroupByKey(), topology.TumblingWindows(time.Second)).Count().
		SuppressUntilWindowCloses(topology.MaxRecords(10)).ToStream().To("out")
	if _, err := b.Build(); err == nil {
		t.Error("Build accepted suppress until window closes with a buffer that emits early")
	}
	b = topology.NewBuilder()
	in = topology.FromTopics[string, string](b, []string{"in"})
	topology.SlidingWindowedBy(in.GroupByKey(), topology.SlidingWindowsOf(0)).Count().ToStream().To("out")
	topology.SessionWindowedBy(in.GroupByKey(), topology.SessionWindowsWithGap(time.Second).WithGrace(-1)).Count().ToStream().To("out2")
	if _, err := b.Build(); err == nil {
		t.Error("Build accepted sliding windows of no time difference and a negative session grace")
	}
}

// sessions renders session records as "key@start-end=value/timestamp",
// with "null" for a delete.
func sessions(t *testing.T, out *streamstest.OutputTopic[topology.Windowed[string], []byte]) []string {
	t.Helper()
	recs, err := out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range recs {
		v := "null"
		if r.Value != nil {
			n, err := serde.Int64().Deserialize("", r.Value)
			if err != nil {
				t.Fatal(err)
			}
			v = fmt.Sprint(n)
		}
		s = append(s, fmt.Sprintf("%s@%d-%d=%s/%d", r.Key.Key, r.Key.Window.StartMs(), r.Key.Window.EndMs(), v, r.Timestamp.UnixMilli()))
	}
	return s
}

func TestSessionWindowCountMergesSessions(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	topology.SessionWindowedBy(in.GroupByKey(), topology.SessionWindowsWithGap(5*time.Millisecond)).
		Count(topology.Materialized("sessions")).ToStream().To("out")
	d := build(t, b)
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	out := streamstest.NewOutputTopic(d, "out", serde.SessionWindowed(serde.String()), serde.Bytes())
	pipeAt(t, input,
		timed{"a", 0},
		timed{"a", 3},  // within 5 of [0,0]: merged into [0,3]
		timed{"a", 20}, // a new session
		timed{"b", 9},  // stream time 20: a session [9,9] would end before 20 - 0: late
		timed{"a", 12}, // no session within 5; [12,12] ends before 20: late
		timed{"a", 16}, // within 5 of [20,20]: merged into [16,20]
	)
	want := []string{
		"a@0-0=1/0",
		"a@0-0=null/0", "a@0-3=2/3",
		"a@20-20=1/20",
		"a@20-20=null/20", "a@16-20=2/20",
	}
	if got := sessions(t, out); !slices.Equal(got, want) {
		t.Fatalf("output:\n%v\nwant:\n%v", got, want)
	}
	if n := d.DroppedRecords(); n != 2 {
		t.Fatalf("dropped %d, want the 2 late records", n)
	}
	store, err := streamstest.Store[state.SessionStore[string, int64]](d, "sessions")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for kv, err := range store.FindSessions("a", at(0), at(100)) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v=%d", kv.Key.Window, kv.Value))
	}
	// The retention is gap + grace = 5 behind the latest session end, 20:
	// [0,3] has expired.
	if want := []string{"[16,20)=2"}; !slices.Equal(got, want) {
		t.Fatalf("store holds %v, want %v", got, want)
	}
}

func TestSessionAggregateWithMergerAndEmitOnClose(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	topology.SessionAggregateWith(
		topology.SessionWindowedBy(in.GroupByKey(), topology.SessionWindowsWithGap(5*time.Millisecond).WithGrace(10*time.Millisecond)).Emit(topology.OnWindowClose),
		func() string { return "" },
		func(_ string, v string, acc string) string { return acc + v },
		func(_ string, a, b string) string { return a + b },
		serde.String()).ToStream().To("out")
	d := build(t, b)
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	out := streamstest.NewOutputTopic(d, "out", serde.SessionWindowed(serde.String()), serde.String())
	for _, r := range []struct {
		v  string
		ts int64
	}{{"x", 0}, {"z", 10}, {"y", 5}, {"w", 30}} {
		if err := input.PipeAt("k", r.v, at(r.ts)); err != nil {
			t.Fatal(err)
		}
	}
	// x@0 and z@10 are two sessions until y@5, within 5 of both, merges
	// them: merger(merger("", x), z), then + y. w@30 closes [0,10]
	// (10 + 10 <= 30); only its final aggregate is emitted, not the
	// sessions merged away.
	recs, err := out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Key.Window != serde.NewWindow(0, 10) || recs[0].Value != "xzy" {
		t.Fatalf("emitted %v, want the one final session [0,10] = xzy", recs)
	}
}

func TestSlidingWindowCount(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"})
	topology.SlidingWindowedBy(in.GroupByKey(), topology.SlidingWindowsOf(10*time.Millisecond).WithGrace(5*time.Millisecond)).
		Count(topology.Materialized("sliding")).ToStream().To("out")
	d := build(t, b)
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	out := streamstest.NewOutputTopic(d, "out", serde.TimeWindowed(serde.String(), 10*time.Millisecond), serde.Int64())
	// Windows of 10, both ends inclusive, exist where records are (KIP-450).
	pipeAt(t, input,
		timed{"k", 3},  // before the time difference: the window [0,10]
		timed{"k", 20}, // its left window [10,20]; 3 is too far back for it
		timed{"k", 25}, // the right window of 20, [21,31], and its left window [15,25] = {20, 25}
		timed{"k", 22}, // out of order: [15,25] and [21,31] grow; its left window [12,22] = {20, 22},
		//                 its right window [23,33] = {25}
		timed{"k", 9}, // stream time 25 - grace 5 = 20: even [10,20], 9's right window, has closed
	)
	want := []string{
		"k@0=1/3",
		"k@10=1/20",
		"k@21=1/25", "k@15=2/25",
		"k@15=3/25", "k@21=2/25", "k@12=2/22", "k@23=1/25",
	}
	if got := windowed(t, out); !slices.Equal(got, want) {
		t.Fatalf("output:\n%v\nwant:\n%v", got, want)
	}
	if n := d.DroppedRecords(); n != 1 {
		t.Fatalf("dropped %d, want the late record", n)
	}
}
