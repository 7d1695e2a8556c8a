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
	const updates, keys = 20_000, 200
	cl := newClient(t, b.Addr(), kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.ProducerBatchMaxBytes(2048))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end := ends[topic][0].Offset

	// readAll reads the topic from the start to its end offset.
	readAll := func() (n int, last map[string]string) {
		c := newClient(t, b.Addr(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
		defer c.Close()
		last = make(map[string]string)
		for {
			fs := c.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read %d records before timeout", n)
			}
			fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
			done := false
			fs.EachRecord(func(r *kgo.Record) {
				n++
				last[string(r.Key)] = string(r.Value)
				done = done || r.Offset == end-1
			})
			if done {
				return n, last
			}
		}
	}
	deadline := time.Now().Add(50 * time.Second)
	for {
		n, last := readAll()
		for k, v := range want {
			if last[k] != v {
				t.Fatalf("key %s: latest value %q, want %q", k, last[k], v)
			}
		}
		// segment.ms rolls the quiet partition, so that all of it is
		// cleaned: one record per key, but for the producer's last
		// batch, which is kept whole.
		if n < 2*keys {
			t.Logf("%d records of %d updates over %d keys read back", n, updates, keys)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records of %d updates over %d keys after 50s", n, updates, keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
