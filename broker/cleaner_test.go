package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceUpdates writes updates records over keys keys to topic and
// returns each key's latest value and the end offset.
func produceUpdates(t *testing.T, ctx context.Context, addr, topic string, updates, keys int) (map[string]string, int64) {
	t.Helper()
	cl := newClient(t, addr, kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.ProducerBatchMaxBytes(2048))
	want := make(map[string]string, keys)
	for i := range updates {
		k, v := fmt.Sprintf("key-%03d", i%keys), fmt.Sprintf("value-%05d", i)
		want[k] = v
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return want, ends[topic][0].Offset
}

// awaitCompacted reads topic from the start to end until it holds fewer
// than twice as many records as keys, checking each time that every
// key's latest value is the one last read.
func awaitCompacted(t *testing.T, ctx context.Context, addr, topic string, want map[string]string, end int64) {
	t.Helper()
	deadline := time.Now().Add(50 * time.Second)
	for {
		c := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
		n, last := 0, make(map[string]string)
		for done := false; !done; {
			fs := c.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read %d records before timeout", n)
			}
			fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
			fs.EachRecord(func(r *kgo.Record) {
				n++
				last[string(r.Key)] = string(r.Value)
				done = done || r.Offset == end-1
			})
		}
		c.Close()
		for k, v := range want {
			if last[k] != v {
				t.Fatalf("key %s: latest value %q, want %q", k, last[k], v)
			}
		}
		// segment.ms rolls the quiet partition, so that all of it is
		// cleaned: one record per key, but for the producer's last
		// batch, which is kept whole.
		if n < 2*len(want) {
			t.Logf("%d records over %d keys read back", n, len(want))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records over %d keys after 50s", n, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCompactedTopicIsCleaned is the case of issue 10 at a smaller
// scale: 20,000 updates over 200 keys on a compacted topic with small
// segments read back, once the background cleaner has run, as about one
// record per key, each key's latest value last. segment.ms makes the
// last segment cleanable once the partition is quiet.
func TestCompactedTopicIsCleaned(t *testing.T) {
	b := startBroker(t, "", broker.CleanerBackoff(20*time.Millisecond), broker.RetentionCheckInterval(100*time.Millisecond))
	topic := "table"
	adm := kadm.NewClient(newClient(t, b.Addr()))
	createTopic(t, adm, topic, 1, map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"segment.bytes":             kadm.StringPtr("16384"),
		"segment.ms":                kadm.StringPtr("500"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want, end := produceUpdates(t, ctx, b.Addr(), topic, 20_000, 200)
	awaitCompacted(t, ctx, b.Addr(), topic, want, end)
}

// TestCleanerFollowsPolicyChange turns a delete topic compacted with
// IncrementalAlterConfigs: the cleaner then compacts it.
func TestCleanerFollowsPolicyChange(t *testing.T) {
	b := startBroker(t, "", broker.CleanerBackoff(20*time.Millisecond), broker.RetentionCheckInterval(100*time.Millisecond))
	topic := "was-delete"
	adm := kadm.NewClient(newClient(t, b.Addr()))
	createTopic(t, adm, topic, 1, map[string]*string{
		"segment.bytes":             kadm.StringPtr("16384"),
		"segment.ms":                kadm.StringPtr("500"),
		"retention.ms":              kadm.StringPtr("-1"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want, end := produceUpdates(t, ctx, b.Addr(), topic, 5_000, 50)
	// A few cleaner rounds, which must leave a delete topic whole.
	time.Sleep(300 * time.Millisecond)
	if got := consumeN(t, b.Addr(), topic, 5_000); got[0].Offset != 0 || got[len(got)-1].Offset != end-1 {
		t.Fatalf("the delete topic changed: offsets %d to %d of %d records", got[0].Offset, got[len(got)-1].Offset, len(got))
	}
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: kadm.StringPtr("compact")}}, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	awaitCompacted(t, ctx, b.Addr(), topic, want, end)
}

// TestMaxCompactionLag compacts two topics alike but for
// max.compaction.lag.ms, whose min.cleanable.dirty.ratio of 1 their
// dirty ratio no longer reaches after the first pass: the one with a lag
// of one second is compacted all the same, the other is not. Three
// cleaner threads share the work.
func TestMaxCompactionLag(t *testing.T) {
	b := startBroker(t, "", broker.CleanerBackoff(20*time.Millisecond), broker.RetentionCheckInterval(100*time.Millisecond), broker.CleanerThreads(3))
	adm := kadm.NewClient(newClient(t, b.Addr()))
	for topic, lag := range map[string]string{"lagged": "1000", "unlagged": "9223372036854775807"} {
		createTopic(t, adm, topic, 1, map[string]*string{
			"cleanup.policy":            kadm.StringPtr("compact"),
			"segment.bytes":             kadm.StringPtr("16384"),
			"segment.ms":                kadm.StringPtr("500"),
			"min.cleanable.dirty.ratio": kadm.StringPtr("1"),
			"max.compaction.lag.ms":     kadm.StringPtr(lag),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want, end := produceUpdates(t, ctx, b.Addr(), "lagged", 5_000, 50)
	produceUpdates(t, ctx, b.Addr(), "unlagged", 5_000, 50)
	awaitCompacted(t, ctx, b.Addr(), "lagged", want, end)
	if n := len(consumeN(t, b.Addr(), "unlagged", 500)); n < 500 {
		t.Fatalf("the topic without max.compaction.lag.ms holds %d records", n)
	}
	// A few more cleaner rounds, which must leave it as it is.
	time.Sleep(time.Second)
	if n := len(consumeN(t, b.Addr(), "unlagged", 500)); n < 500 {
		t.Fatalf("the topic without max.compaction.lag.ms holds %d records", n)
	}
}
