package streams

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/topology"
)

// TestPartitionerSeesTopicsCreatedLater writes to a topic created after the
// application started, with a partitioner choosing the last partition: it
// must be told the topic's real partition count, not -1.
func TestPartitionerSeesTopicsCreatedLater(t *testing.T) {
	brokers := riffleCluster(t)
	b := topology.NewBuilder()
	var seen atomic.Int32
	last := func(_ string, _, _ []byte, n int32) int32 {
		seen.Store(n)
		return n - 1
	}
	topology.FromTopics[string, string](b, []string{inputTopic}).
		ToDynamic(func(r processor.Record[string, string]) string { return r.Value }, topology.WithPartitioner(last))
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(top, ApplicationID("late-topic"), Brokers(brokers...), StateDir(t.TempDir()),
		CommitInterval(100*time.Millisecond), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	defer func() {
		app.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, "late"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: inputTopic, Key: []byte("k"), Value: []byte("late")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("late"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatal("timed out waiting for the record")
		}
		if recs := fetches.Records(); len(recs) > 0 {
			if n := seen.Load(); n != 3 || recs[0].Partition != 2 {
				t.Fatalf("partitioner saw %d partitions and the record is in partition %d, want 3 and 2", n, recs[0].Partition)
			}
			return
		}
	}
}
