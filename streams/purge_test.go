package streams

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/engine"
)

// TestRepartitionTopicsPurged runs word count, whose grouping writes a
// repartition topic, and checks that records below the committed offsets
// of the repartition topic are deleted after a purge interval, and only
// then, while the input topic keeps every record.
func TestRepartitionTopicsPurged(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ctx := context.Background()
		repartition := engine.InternalTopic("wordcount", "counts-repartition")
		offsets := func(list func(context.Context, ...string) (kadm.ListedOffsets, error), topic string) map[int32]int64 {
			t.Helper()
			listed, err := list(ctx, topic)
			if err == nil {
				err = listed.Error()
			}
			if err != nil {
				t.Fatalf("list offsets of %s: %v", topic, err)
			}
			out := make(map[int32]int64)
			listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
			return out
		}
		committed := func() map[int32]int64 {
			t.Helper()
			resp, err := adm.FetchOffsets(ctx, "wordcount")
			if err == nil {
				err = resp.Error()
			}
			if err != nil {
				t.Fatalf("fetch committed offsets: %v", err)
			}
			out := make(map[int32]int64)
			for p, o := range resp[repartition] {
				out[p] = o.At
			}
			return out
		}
		// caughtUp reports whether the group has committed the end of every
		// partition of the repartition topic.
		caughtUp := func() bool {
			ends, done := offsets(adm.ListEndOffsets, repartition), committed()
			for p, end := range ends {
				if end == 0 || done[p] != end {
					return false
				}
			}
			return len(ends) == partitions
		}
		dir := t.TempDir()

		// With an interval longer than the test, nothing is purged.
		idle := startApp(t, brokers, dir, RepartitionPurgeInterval(time.Hour))
		truth := produceLines(t, brokers, 2000, 10)
		if d := diff(truth, latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))); d != "" {
			t.Fatalf("counts differ from the truth: %s", d)
		}
		waitFor(t, "the repartition topic to be committed", 30*time.Second, caughtUp)
		// Several commit intervals (200ms) pass, each a chance to purge.
		time.Sleep(time.Second)
		for p, start := range offsets(adm.ListStartOffsets, repartition) {
			if start != 0 {
				t.Fatalf("%s[%d] starts at %d before the purge interval passed, want 0", repartition, p, start)
			}
		}
		idle.stop(t)

		// A restarted instance purging every 300ms deletes everything below
		// the offsets it commits.
		const interval = 300 * time.Millisecond
		startApp(t, brokers, dir, RepartitionPurgeInterval(interval))
		for w, n := range produceLines(t, brokers, 2000, 10) {
			truth[w] += n
		}
		if d := diff(truth, latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))); d != "" {
			t.Fatalf("counts differ from the truth: %s", d)
		}
		waitFor(t, "the repartition topic to be committed", 30*time.Second, caughtUp)
		var starts, done map[int32]int64
		waitFor(t, "the repartition topic to be purged up to the committed offsets", 10*time.Second, func() bool {
			starts, done = offsets(adm.ListStartOffsets, repartition), committed()
			for p, start := range starts {
				if start != done[p] {
					return false
				}
			}
			return true
		})
		for p, start := range starts {
			if start == 0 {
				t.Fatalf("%s[%d] was not purged", repartition, p)
			}
		}
		t.Logf("%s starts at %v, committed %v", repartition, starts, done)
		ends := offsets(adm.ListEndOffsets, inputTopic)
		for p, start := range offsets(adm.ListStartOffsets, inputTopic) {
			if start != 0 || ends[p] == 0 {
				t.Fatalf("input topic %s[%d] holds [%d, %d), want it untouched from 0", inputTopic, p, start, ends[p])
			}
		}

		configs, err := adm.DescribeTopicConfigs(ctx, repartition)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := configs.On(repartition, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": "52428800"}
		for _, c := range rc.Configs {
			if v, ok := want[c.Key]; ok {
				if c.Value == nil || *c.Value != v {
					t.Errorf("%s: %s=%v, want %s", repartition, c.Key, c.Value, v)
				}
				delete(want, c.Key)
			}
		}
		if len(want) > 0 {
			t.Errorf("%s: configs %v not described", repartition, want)
		}
	})
}

func TestRepartitionPurgeIntervalMustNotBeNegative(t *testing.T) {
	if _, err := New(wordCount(t), ApplicationID("a"), Brokers("x"), RepartitionPurgeInterval(-time.Second)); err == nil {
		t.Fatal("RepartitionPurgeInterval(-1s): want error")
	}
	if _, err := New(wordCount(t), ApplicationID("a"), Brokers("x"), RepartitionPurgeInterval(0)); err != nil {
		t.Fatalf("RepartitionPurgeInterval(0): %v", err)
	}
}
