package streams

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/topology"
)

const finalTopic = "final-counts"

// windowedCounts counts the records of inputTopic per key in tumbling
// windows of a second, writing every update to outputTopic and, suppressed
// until each window closes, the final counts to finalTopic.
//
// The window store keeps its windows for longer than the whole input's
// event time (produceTimed's 4000 records span 200 s): under at-least-once
// a crashed instance's changelog runs ahead of its committed offsets, so
// the instance that restores it replays records for windows as much older
// than the restored store's stream time as the crashed one processed after
// its last commit (up to all 100 s of the first half). With the default
// retention (the window size, one second) such a window reads as expired,
// as Kafka Streams' segmented stores return nothing for a key older than
// stream time minus retention, and its count starts over below the truth.
func windowedCounts(t testing.TB) *topology.Topology {
	b := topology.NewBuilder()
	records := topology.FromTopics[string, string](b, []string{inputTopic})
	counts := topology.WindowedBy(records.GroupByKey(), topology.TumblingWindows(time.Second)).
		WithRetention(10 * time.Minute).
		Count(topology.Materialized("window-counts"))
	counts.ToStream().To(outputTopic)
	counts.SuppressUntilWindowCloses(topology.UnboundedBuffer()).ToStream().To(finalTopic)
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// produceTimed writes records from to to of a sequence for 10 keys, 50 ms
// of event time apart from start on, and adds them to truth, the count per
// serialized windowed key.
func produceTimed(t testing.TB, brokers []string, start time.Time, from, to int, truth map[string]int64) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	keys := serde.TimeWindowed(serde.String(), time.Second)
	for i := from; i < to; i++ {
		key, ts := fmt.Sprintf("k%d", i%10), start.Add(time.Duration(i)*50*time.Millisecond)
		w := topology.Windowed[string]{Key: key, Window: serde.NewWindow(ts.UnixMilli()/1000*1000, ts.UnixMilli()/1000*1000+1000)}
		kb, err := keys.Serialize("", w)
		if err != nil {
			t.Fatal(err)
		}
		truth[string(kb)]++
		cl.Produce(context.Background(), &kgo.Record{Topic: inputTopic, Key: []byte(key), Value: []byte("v"), Timestamp: ts}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestWindowedCountRestoresAfterCrash runs a windowed count with Pebble
// window stores over half the input, kills it without a commit, and lets a
// fresh instance (no local state) restore the window stores and the
// suppression buffers from their changelogs and count the second half: the
// windows spanning both halves are right only if the restore was.
func TestWindowedCountRestoresAfterCrash(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := kadm.NewClient(cl).CreateTopic(context.Background(), partitions, 1, nil, finalTopic)
		cl.Close()
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", finalTopic, err)
		}
		start := time.Now().Add(-time.Hour).Truncate(time.Second)
		truth := make(map[string]int64)
		produceTimed(t, brokers, start, 0, 2000, truth)
		opts := func(dir string) []Option {
			return []Option{ApplicationID("windowcount"), Brokers(brokers...), StateDir(dir),
				CommitInterval(200 * time.Millisecond), Logger(testLogger(t))}
		}
		victim, err := New(windowedCounts(t), opts(t.TempDir())...)
		if err != nil {
			t.Fatal(err)
		}
		r := &runningApp{app: victim, done: make(chan error, 1)}
		go func() { r.done <- victim.Run(context.Background()) }()
		t.Cleanup(func() { r.stop(t) })
		waitFor(t, "the victim to make progress", 60*time.Second, func() bool {
			return victim.Metrics().RecordsProcessed > 1000 && victim.Metrics().Commits > 0
		})
		r.crash(t)
		produceTimed(t, brokers, start, 2000, 4000, truth)

		fresh, err := New(windowedCounts(t), opts(t.TempDir())...)
		if err != nil {
			t.Fatal(err)
		}
		f := &runningApp{app: fresh, done: make(chan error, 1)}
		go func() { f.done <- fresh.Run(context.Background()) }()
		t.Cleanup(func() { f.stop(t) })
		got := latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		for w, n := range truth {
			if got[w] < n {
				t.Fatalf("window %x: count %d, below the truth %d", w, got[w], n)
			}
		}
		if fresh.Metrics().RecordsRestored == 0 {
			t.Fatal("the fresh instance restored nothing")
		}
		if n := fresh.Metrics().RecordsDropped; n != 0 {
			t.Fatalf("dropped %d records, though every partition's records come in time order", n)
		}
		f.stop(t)

		// Every window but the newest of each key has closed: its final
		// count was emitted, and holds every record.
		final := readToEnd(t, brokers, finalTopic)
		last := start.Add(3999 * 50 * time.Millisecond).UnixMilli()
		closed := 0
		for w, n := range truth {
			startMs := int64(binary.BigEndian.Uint64([]byte(w[len(w)-8:])))
			if startMs+1000 > last {
				continue
			}
			closed++
			if final[w] < n {
				t.Fatalf("final count of window %x is %d, below the truth %d", w, final[w], n)
			}
		}
		if closed == 0 || len(final) > len(truth) {
			t.Fatalf("%d windows closed, %d final counts for %d windows", closed, len(final), len(truth))
		}
		// The window store's changelog holds Kafka's window store keys: the
		// key, the 8-byte window start and a 4-byte sequence number.
		// Its values are Kafka's ValueAndTimestamp: the 8-byte timestamp of
		// the window's latest record, then the count.
		n := 0
		for _, r := range readAll(t, brokers, state.ChangelogTopic("windowcount", "window-counts")) {
			k := string(r.Key)
			if _, ok := truth[k[:len(k)-4]]; !ok || len(r.Value) != 16 {
				t.Fatalf("changelog record %x = %x is not a window key, a sequence number and a timestamped count", r.Key, r.Value)
			}
			n++
		}
		if n == 0 {
			t.Fatal("the window store's changelog is empty")
		}
	})
}

// readAll returns every record of topic up to its current end offsets.
func readAll(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	remaining := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	var out []*kgo.Record
	deadline := time.Now().Add(30 * time.Second)
	for len(remaining) > 0 && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	if len(remaining) > 0 {
		t.Fatalf("read %s: partitions %v not read to their end", topic, remaining)
	}
	return out
}
