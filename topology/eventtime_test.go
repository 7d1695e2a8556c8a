package topology_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

func TestTimestampExtractorDrivesWindows(t *testing.T) {
	b := topology.NewBuilder()
	var partitionTimes []int64
	in := topology.FromTopics[string, string](b, []string{"in"}, topology.WithTimestampExtractor(
		func(r processor.Record[any, any], partitionTime time.Time) time.Time {
			partitionTimes = append(partitionTimes, partitionTime.UnixMilli())
			ms, err := strconv.ParseInt(r.Value.(string), 10, 64)
			if err != nil {
				return time.UnixMilli(-1) // dropped
			}
			return time.UnixMilli(ms)
		}))
	topology.WindowedBy(in.GroupByKey(), topology.TumblingWindows(10*time.Millisecond)).Count().ToStream().To("out")
	d := build(t, b)
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	out := streamstest.NewOutputTopic(d, "out", serde.TimeWindowed(serde.String(), 10*time.Millisecond), serde.Int64())
	// The records' own timestamps (1000 s) are ignored; the values are the
	// event time.
	for _, v := range []string{"3", "12", "not a time", "7"} {
		if err := input.PipeAt("k", v, time.UnixMilli(1_000_000)); err != nil {
			t.Fatal(err)
		}
	}
	// "7" arrives at stream time 12, when [0,10) has closed (no grace).
	if got, want := windowed(t, out), []string{"k@0=1/3", "k@10=1/12"}; !slices.Equal(got, want) {
		t.Fatalf("output %v, want %v", got, want)
	}
	if n := d.DroppedRecords(); n != 2 {
		t.Fatalf("dropped %d, want 2: the unparsable one and the late one", n)
	}
	if want := []int64{time.Time{}.UnixMilli(), 3, 12, 12}; !slices.Equal(partitionTimes, want) {
		t.Fatalf("partition times %v, want %v", partitionTimes, want)
	}
}

func TestWallClockTimestamps(t *testing.T) {
	b := topology.NewBuilder()
	in := topology.FromTopics[string, string](b, []string{"in"}, topology.WallClockTimestamps())
	in.To("out")
	start := time.UnixMilli(50_000)
	d := build(t, b, streamstest.StartTime(start))
	input := streamstest.NewInputTopic(d, "in", serde.String(), serde.String())
	out := streamstest.NewOutputTopic(d, "out", serde.String(), serde.String())
	if err := input.PipeAt("k", "v", time.UnixMilli(1)); err != nil {
		t.Fatal(err)
	}
	if err := d.AdvanceWallClock(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := input.PipeAt("k", "v", time.UnixMilli(1)); err != nil {
		t.Fatal(err)
	}
	recs, err := out.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Timestamp.UnixMilli() != 50_000 || recs[1].Timestamp.UnixMilli() != 51_000 {
		t.Fatalf("records %v, want them stamped with the driver's clock, 50 s and 51 s", recs)
	}
}
