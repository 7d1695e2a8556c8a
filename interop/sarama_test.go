package interop

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func saramaConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.ClientID = "riffle-interop"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Idempotent = true
	cfg.Net.MaxOpenRequests = 1
	cfg.Producer.Compression = sarama.CompressionZSTD
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Return.Errors = true
	return cfg
}

// TestSaramaProduceConsume produces with sarama's idempotent sync
// producer and reads back with its partition consumer.
func TestSaramaProduceConsume(t *testing.T) {
	addr := startBroker(t)
	cfg := saramaConfig()
	admin, err := sarama.NewClusterAdmin([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateTopic("sarama", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	topics, err := admin.ListTopics()
	if err != nil || topics["sarama"].NumPartitions != 3 {
		t.Fatalf("list topics: %v %+v", err, topics["sarama"])
	}

	producer, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const n = 300
	for i := range n {
		msg := &sarama.ProducerMessage{Topic: "sarama", Partition: int32(i % 3), Key: sarama.StringEncoder(strconv.Itoa(i)), Value: sarama.StringEncoder(fmt.Sprintf("v%d", i))}
		if _, _, err := producer.SendMessage(msg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}

	consumer, err := sarama.NewConsumer([]string{addr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for p := range int32(3) {
		pc, err := consumer.ConsumePartition("sarama", p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			timeout := time.After(30 * time.Second)
			for range n / 3 {
				select {
				case m := <-pc.Messages():
					mu.Lock()
					seen[string(m.Key)] = string(m.Value)
					mu.Unlock()
				case err := <-pc.Errors():
					t.Errorf("partition %d: %v", p, err)
					return
				case <-timeout:
					t.Errorf("partition %d: timed out", p)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("sarama consumed %d distinct records, want %d", len(seen), n)
	}
	for i := range n {
		if seen[strconv.Itoa(i)] != fmt.Sprintf("v%d", i) {
			t.Fatalf("record %d: %q", i, seen[strconv.Itoa(i)])
		}
	}
}

// groupHandler counts what a sarama consumer group member reads and marks
// it for commit.
type groupHandler struct {
	mu   sync.Mutex
	seen map[string]bool
	done chan struct{}
	want int
}

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *groupHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		s.MarkMessage(m, "")
		h.mu.Lock()
		h.seen[string(m.Key)] = true
		if len(h.seen) == h.want {
			close(h.done)
		}
		h.mu.Unlock()
	}
	return nil
}

// TestSaramaConsumerGroup reads a topic with a sarama consumer group and
// checks that its committed offsets survive a broker restart.
func TestSaramaConsumerGroup(t *testing.T) {
	dir := t.TempDir()
	b := startBrokerAt(t, dir)
	cfg := saramaConfig()
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	producer, err := sarama.NewSyncProducer([]string{b.Addr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "sarama-group", Key: sarama.StringEncoder(strconv.Itoa(i)), Value: sarama.StringEncoder("v")}); err != nil {
			t.Fatal(err)
		}
	}
	producer.Close()

	group, err := sarama.NewConsumerGroup([]string{b.Addr()}, "sarama-g", cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &groupHandler{seen: map[string]bool{}, done: make(chan struct{}), want: n}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if err := group.Consume(ctx, []string{"sarama-group"}, h); err != nil && ctx.Err() == nil {
				t.Errorf("consume: %v", err)
				return
			}
		}
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
		t.Fatalf("sarama group read %d of %d records", len(h.seen), n)
	}
	cancel()
	if err := group.Close(); err != nil { // commits the marked offsets
		t.Fatal(err)
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	b = startBrokerAt(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(context.Background(), "sarama-g")
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != n {
		t.Fatalf("after a restart the group's committed offsets sum to %d, want %d", committed, n)
	}
}
