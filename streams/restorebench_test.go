package streams

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/serde"
)

// TestRestoreMillionRecords writes 1,000,000 distinct keys into the word
// count's changelog (4 partitions, each key where the partitioner puts it)
// on Riffle's broker and measures how long
// a fresh instance takes to restore them into Pebble, from Run to every
// task running. RIFFLE_RESTORE_BENCH=1 enables it.
func TestRestoreMillionRecords(t *testing.T) {
	if os.Getenv("RIFFLE_RESTORE_BENCH") == "" {
		t.Skip("set RIFFLE_RESTORE_BENCH=1 to measure a 1M-record restore")
	}
	const records = 1_000_000
	brokers := riffleCluster(t)
	// A first run creates the internal topics.
	first := startApp(t, brokers, t.TempDir())
	waitRestored(t, first)
	first.stop(t)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(10*time.Millisecond),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxBufferedRecords(100000))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range records {
		v, _ := serde.Int64().Serialize(countsChangelog, int64(i))
		k := fmt.Appendf(nil, "key-%08d", i)
		cl.Produce(context.Background(), &kgo.Record{Topic: countsChangelog, Partition: partitionOf(k, partitions),
			Key: k, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	a := startApp(t, brokers, t.TempDir())
	waitFor(t, "every task to be restored", 5*time.Minute, func() bool { return a.app.Metrics().Tasks == 2*partitions })
	took := time.Since(began)
	if n := a.app.Metrics().RecordsRestored; n < records {
		t.Fatalf("restored %d records, want %d", n, records)
	}
	counts, err := KeyValueStore[string, int64](a.app, "counts")
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := counts.Get("key-00123456"); err != nil || n != 123456 {
		t.Fatalf("restored key-00123456 = %d, %v", n, err)
	}
	t.Logf("restored %d records in %v (%.0f records/s)", records, took.Round(time.Millisecond), records/took.Seconds())
}
