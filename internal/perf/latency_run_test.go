package perf

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/riffle-stream/riffle/broker"
)

// TestFixedRateLatency is the latency run of issue 16: one partition,
// 256-byte records at 10,000 records/s, acks=all, linger 0, franz-go's
// idempotent producer, against a Riffle broker in this process under
// group commit. It reports end-to-end and produce latency beside the
// broker's fsync and Produce request histograms.
//
//	RIFFLE_PERF_LATENCY=1 go test -count=1 -run TestFixedRateLatency -v ./internal/perf
//
// RIFFLE_PERF_ROUNDS sets the rounds (3) and RIFFLE_PERF_LATENCY_SECONDS
// the length of each (10).
func TestFixedRateLatency(t *testing.T) {
	if os.Getenv("RIFFLE_PERF_LATENCY") == "" {
		t.Skip("set RIFFLE_PERF_LATENCY=1 to run the fixed-rate latency run")
	}
	envInt := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	rounds, seconds := envInt("RIFFLE_PERF_ROUNDS", 3), envInt("RIFFLE_PERF_LATENCY_SECONDS", 10)
	for round := range rounds {
		b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()),
			broker.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := EndToEnd(ctx, Brokers(b.Addr()), Topic("latency"), Partitions(1), RecordSize(256),
			Rate(10000), Linger(0), Records(0), Duration(time.Duration(seconds)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		fams := scrape(t, b)
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: e2e %v", round+1, res.Latency)
		t.Logf("round %d: produce %v", round+1, res.ProduceLatency)
		t.Logf("round %d: fsyncs %s", round+1, histogram(fams["riffle_fsync_duration_seconds"], nil))
		t.Logf("round %d: Produce requests %s", round+1, histogram(fams["riffle_request_duration_seconds"], map[string]string{"api": "Produce"}))
		if res.Latency.Count == 0 {
			t.Fatal("no records consumed")
		}
	}
}

// scrape reads the broker's Prometheus metrics.
func scrape(t *testing.T, b *broker.Broker) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	b.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// histogram formats the series of fam with the labels want as its count,
// mean and the share of observations in each bucket.
func histogram(fam *dto.MetricFamily, want map[string]string) string {
	if fam == nil {
		return "none"
	}
next:
	for _, m := range fam.GetMetric() {
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; ok && v != lp.GetValue() {
				continue next
			}
		}
		h := m.GetHistogram()
		n := h.GetSampleCount()
		if n == 0 {
			return "none"
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "n %d mean %.3fms;", n, h.GetSampleSum()/float64(n)*1e3)
		var prev uint64
		for _, bk := range h.GetBucket() {
			if c := bk.GetCumulativeCount(); c > prev {
				fmt.Fprintf(&sb, " <=%gms %.2f%%", bk.GetUpperBound()*1e3, float64(c-prev)/float64(n)*100)
				prev = c
			}
		}
		if prev < n {
			fmt.Fprintf(&sb, " more %.2f%%", float64(n-prev)/float64(n)*100)
		}
		return sb.String()
	}
	return "none"
}
