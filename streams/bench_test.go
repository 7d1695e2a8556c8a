package streams

import (
	"context"
	"testing"
	"time"
)

// BenchmarkWordCount counts 200,000 words (20,000 lines) per iteration with
// one single-threaded instance and a Pebble store, on kfake, on Riffle's
// broker and on Apache Kafka (the package's shared broker, when java and
// the Kafka jars are there), and reports input words and processed records
// (lines plus repartitioned words) per second, from the first line
// produced to the last count read.
func BenchmarkWordCount(b *testing.B) {
	b.Run("kfake", func(b *testing.B) { benchmarkWordCount(b, kfakeCluster) })
	b.Run("riffle", func(b *testing.B) { benchmarkWordCount(b, riffleCluster) })
	b.Run("kafka", func(b *testing.B) { benchmarkWordCount(b, kafkaBenchCluster) })
}

func benchmarkWordCount(b *testing.B, cluster func(testing.TB) []string) {
	for range b.N {
		b.StopTimer()
		brokers := cluster(b)
		dir := b.TempDir()
		b.StartTimer()
		began := time.Now()
		truth := produceLines(b, brokers, 20000, 10)
		app, err := New(wordCount(b), ApplicationID("wordcount"), Brokers(brokers...), StateDir(dir),
			CommitInterval(100*time.Millisecond), Logger(testLogger(b)))
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- app.Run(context.Background()) }()
		got := latest(b, brokers, outputTopic, 120*time.Second, atLeast(truth))
		elapsed := time.Since(began)
		app.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if d := diff(truth, got); d != "" {
			b.Fatalf("counts differ: %s", d)
		}
		m := app.Metrics()
		b.ReportMetric(200000/elapsed.Seconds(), "words/s")
		b.ReportMetric(float64(m.RecordsProcessed)/elapsed.Seconds(), "records/s")
	}
}
