package topology_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
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
}
