package streams

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/broker"
)

// TestEOSFigures measures, on Riffle's broker in-process, the word count's
// processed records per second under at-least-once and exactly_once_v2
// (both committing every 100 ms, the same 20,000 lines of 10 words), and
// franz-go's produce throughput with an idempotent and with a
// transactional producer committing every 100 ms (500,000 records of
// 1 KiB of random bytes, acks=all, 3 partitions, group commit). It prints
// medians of 5 rounds. Run with RIFFLE_EOS_BENCH=1.
func TestEOSFigures(t *testing.T) {
	if os.Getenv("RIFFLE_EOS_BENCH") == "" {
		t.Skip("set RIFFLE_EOS_BENCH=1 to measure")
	}
	const rounds = 5
	for _, g := range []Guarantee{AtLeastOnce, ExactlyOnceV2} {
		var rates []float64
		for range rounds {
			rates = append(rates, wordCountRate(t, g))
		}
		t.Logf("word count, %v: %.0f records/s (median of %v)", g, median(rates), rates)
	}
	for _, txn := range []bool{false, true} {
		var rates []float64
		for range rounds {
			rates = append(rates, produceRate(t, txn))
		}
		kind := "idempotent"
		if txn {
			kind = "transactional, a commit every 100 ms"
		}
		t.Logf("produce, %s: %.0f records/s (median of %v)", kind, median(rates), rates)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// wordCountRate runs the word count over 20,000 lines on a fresh broker
// and returns the records (lines and repartitioned words) processed per
// second from the start of the application to the last count read.
func wordCountRate(t *testing.T, g Guarantee) float64 {
	brokers := riffleCluster(t)
	truth := produceLines(t, brokers, 20000, 10)
	app, err := New(wordCount(t), ApplicationID("wordcount"), Brokers(brokers...), StateDir(t.TempDir()),
		ProcessingGuarantee(g), CommitInterval(100*time.Millisecond), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	got := latest(t, brokers, outputTopic, 120*time.Second, atLeast(truth))
	elapsed := time.Since(began)
	app.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := diff(truth, got); d != "" {
		t.Fatalf("counts differ: %s", d)
	}
	return float64(app.Metrics().RecordsProcessed) / elapsed.Seconds()
}

// produceRate produces 500,000 records of 1 KiB (random bytes) to a fresh
// broker and returns the records acknowledged (and committed, if txn) per
// second.
func produceRate(t *testing.T, txn bool) float64 {
	const records, topic = 500000, "produce"
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()),
		broker.Logger(testLogger(t).With("component", "broker")))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	opts := []kgo.Opt{kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5 * time.Millisecond)}
	if txn {
		opts = append(opts, kgo.TransactionalID("bench"))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, 3, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	value := make([]byte, 1024)
	crand.Read(value) // incompressible, as in riffle perf
	var (
		mu     sync.Mutex
		failed error
	)
	promise := func(_ *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil && failed == nil {
			failed = err
		}
	}
	began := time.Now()
	lastCommit := began
	if txn {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range records {
		cl.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "%d", i), Value: value}, promise)
		if txn && time.Since(lastCommit) >= 100*time.Millisecond {
			lastCommit = time.Now()
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if txn {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(began)
	mu.Lock()
	defer mu.Unlock()
	if failed != nil {
		t.Fatal(failed)
	}
	return records / elapsed.Seconds()
}
