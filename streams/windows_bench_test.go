package streams

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/topology"
)

// The window figures: RIFFLE_WINDOW_BENCH=1 go test -run '^$' -bench
// BenchmarkWindows -benchtime 1x ./streams. Each runs one single-threaded
// instance with Pebble stores on Riffle's broker (4 partitions).
const windowBenchRecords = 200_000

func windowBench(b *testing.B) {
	if os.Getenv("RIFFLE_WINDOW_BENCH") == "" {
		b.Skip("set RIFFLE_WINDOW_BENCH=1 to run the window figures")
	}
}

// produceKeyed writes n records for 1000 keys to topic, 10 ms of event
// time apart.
func produceKeyed(b *testing.B, brokers []string, topic string, n int, start time.Time) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key%d", i%1000),
			Value: []byte("value"), Timestamp: start.Add(time.Duration(i) * 10 * time.Millisecond)}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// restoreLog captures the "restored store" lines of the runtime's log.
type restoreLog struct {
	slog.Handler
	mu       *sync.Mutex
	records  *int64
	duration *time.Duration
}

func (h restoreLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "restored store" {
		h.mu.Lock()
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "records":
				*h.records += a.Value.Int64()
			case "duration":
				*h.duration += a.Value.Duration()
			}
			return true
		})
		h.mu.Unlock()
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h restoreLog) Enabled(context.Context, slog.Level) bool { return true }
func (h restoreLog) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}
func (h restoreLog) WithGroup(g string) slog.Handler {
	h.Handler = h.Handler.WithGroup(g)
	return h
}

// runUntil runs top until done holds for its metrics, closes it (a final
// commit) and returns the time that took.
func runUntil(b *testing.B, top *topology.Topology, brokers []string, dir string, done func(Metrics) bool, logger *slog.Logger) time.Duration {
	app, err := New(top, ApplicationID("windowbench"), Brokers(brokers...), StateDir(dir),
		CommitInterval(time.Second), Logger(logger))
	if err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- app.Run(context.Background()) }()
	for !done(app.Metrics()) {
		select {
		case err := <-stopped:
			b.Fatalf("app stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	app.Close()
	if err := <-stopped; err != nil {
		b.Fatal(err)
	}
	return time.Since(began)
}

func processed(n int64) func(Metrics) bool {
	return func(m Metrics) bool { return m.RecordsProcessed >= n }
}

// endOffsets sums the end offsets of topic's partitions.
func endOffsets(b *testing.B, brokers []string, topic string) int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// BenchmarkWindows reports windowed count records/s with tumbling (1 min)
// and hopping (1 min every 10 s: 6 windows per record) windows, the
// window-store restore rate of a fresh instance, and stream-stream join
// records/s (both inputs, 1 min windows).
func BenchmarkWindows(b *testing.B) {
	windowBench(b)
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Minute)
	for name, w := range map[string]topology.TimeWindows{
		"tumbling": topology.TumblingWindows(time.Minute),
		"hopping":  topology.HoppingWindows(time.Minute, 10*time.Second),
	} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				brokers := riffleCluster(b)
				produceKeyed(b, brokers, inputTopic, windowBenchRecords, start)
				build := func() *topology.Topology {
					tb := topology.NewBuilder()
					in := topology.FromTopics[string, string](tb, []string{inputTopic})
					topology.WindowedBy(in.GroupByKey(), w).Count(topology.Materialized("counts")).ToStream().To(outputTopic)
					top, err := tb.Build()
					if err != nil {
						b.Fatal(err)
					}
					return top
				}
				elapsed := runUntil(b, build(), brokers, b.TempDir(), processed(windowBenchRecords), quiet())
				b.ReportMetric(windowBenchRecords/elapsed.Seconds(), "records/s")

				// A fresh instance restores the window store from its changelog.
				var mu sync.Mutex
				var restored int64
				var took time.Duration
				logger := slog.New(restoreLog{Handler: slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}),
					mu: &mu, records: &restored, duration: &took})
				changelog := endOffsets(b, brokers, "windowbench-counts-changelog")
				runUntil(b, build(), brokers, b.TempDir(), func(m Metrics) bool { return m.RecordsRestored >= changelog }, logger)
				mu.Lock()
				if took > 0 {
					b.ReportMetric(float64(restored)/took.Seconds(), "restored-records/s")
					b.ReportMetric(float64(restored), "restored-records")
				}
				mu.Unlock()
			}
		})
	}
	b.Run("join", func(b *testing.B) {
		for range b.N {
			brokers := riffleCluster(b)
			produceKeyed(b, brokers, inputTopic, windowBenchRecords, start)
			produceKeyed(b, brokers, outputTopic, windowBenchRecords, start.Add(5*time.Millisecond))
			tb := topology.NewBuilder()
			l := topology.FromTopics[string, string](tb, []string{inputTopic})
			r := topology.FromTopics[string, string](tb, []string{outputTopic})
			topology.JoinStreams(l, r, func(lv, rv string) string { return lv + rv }, topology.JoinWindowsOf(time.Minute)).
				Foreach(func(string, string) {})
			top, err := tb.Build()
			if err != nil {
				b.Fatal(err)
			}
			elapsed := runUntil(b, top, brokers, b.TempDir(), processed(2*windowBenchRecords), quiet())
			b.ReportMetric(2*windowBenchRecords/elapsed.Seconds(), "records/s")
		}
	})
}
