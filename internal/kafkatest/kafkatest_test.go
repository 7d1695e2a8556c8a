package kafkatest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := StopShared(); err != nil {
		println("stop shared kafka:", err.Error())
		code = 1
	}
	os.Exit(code)
}

func TestProduceConsume(t *testing.T) {
	start := time.Now()
	b := Shared(t)
	t.Logf("kafka ready at %s after %v", b.Addr(), time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("kafkatest"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "kafkatest"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kafkatest", Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	fetches := cl.PollRecords(ctx, 1)
	if err := fetches.Err(); err != nil {
		t.Fatal(err)
	}
	if recs := fetches.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("consumed %v, want one record \"hello\"", recs)
	}
}

func TestStopRemovesRunDirectory(t *testing.T) {
	b := Start(t, Heap("256m"), Config("num.partitions", "3"))
	dir := b.Dir()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("run directory %s still there after Stop: %v", dir, err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestClusterIDIsNeverAFlag checks that no generated cluster id starts with
// '-': the storage tool would take it for a flag and refuse to format.
func TestClusterIDIsNeverAFlag(t *testing.T) {
	for range 10_000 {
		id, err := newClusterID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 22 || id[0] == '-' {
			t.Fatalf("cluster id %q: want 22 characters not starting with '-'", id)
		}
	}
}
