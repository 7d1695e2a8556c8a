package broker_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/broker"
)

// BenchmarkProduce measures produce throughput over loopback, under
// SyncNone so that the broker's CPU cost, not the disk, sets the pace:
// "request" sends one record per request and waits for its answer, which
// puts the per-request cost (metrics included) in front; "stream" keeps
// many batches in flight.
func BenchmarkProduce(b *testing.B) {
	br := startBroker(b, "", broker.Sync(broker.SyncNone))
	createTopic(b, kadm.NewClient(newClient(b, br.Addr())), "bench", 4, nil)
	value := bytes.Repeat([]byte("v"), 100)
	b.Run("request", func(b *testing.B) {
		cl := newClient(b, br.Addr(), kgo.DefaultProduceTopic("bench"), kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
		ctx := context.Background()
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	})
	b.Run("stream", func(b *testing.B) {
		cl := newClient(b, br.Addr(), kgo.DefaultProduceTopic("bench"), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
		ctx := context.Background()
		errs := make(chan error, 1)
		done := func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}
		b.ReportAllocs()
		start := time.Now()
		for b.Loop() {
			cl.Produce(ctx, &kgo.Record{Value: value}, done)
		}
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		select {
		case err := <-errs:
			b.Fatal(err)
		default:
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
		b.ReportMetric(float64(b.N*len(value))/time.Since(start).Seconds()/(1<<20), "MiB/s")
	})
}
