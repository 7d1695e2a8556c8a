package perf

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/riffle-stream/riffle/internal/testenv"
)

// TestFixedRateLatency is the latency run of issue 16: one partition,
// 256-byte records at 10,000 records/s, acks=all, linger 0, franz-go's
// idempotent producer, against each broker with fsync before the
// acknowledgement (Riffle's group commit, kfake's SyncWrites, Kafka with
// log.flush.interval.messages=1), each in a process of its own, in
// rounds whose order rotates. It reports end-to-end and produce latency,
// and for Riffle its fsync and Produce request histograms.
//
//	RIFFLE_PERF_LATENCY=1 go test -count=1 -run TestFixedRateLatency -v ./internal/perf
//
// RIFFLE_PERF_SYSTEMS picks the systems (riffle,kfake,kafka),
// RIFFLE_PERF_ROUNDS the rounds (3) and RIFFLE_PERF_LATENCY_SECONDS the
// length of each (10).
func TestFixedRateLatency(t *testing.T) {
	if os.Getenv("RIFFLE_PERF_LATENCY") == "" {
		t.Skip("set RIFFLE_PERF_LATENCY=1 to run the fixed-rate latency run")
	}
	n, seconds := testenv.Int(t, "RIFFLE_PERF_ROUNDS", 3), testenv.Int(t, "RIFFLE_PERF_LATENCY_SECONDS", 10)
	systems := compareSystems(t)
	fmt.Printf("%s: %d rounds of %d s, 256 B records at 10,000/s to one partition, acks=all, linger 0, fsync, load average %s\n",
		joinSystems(systems, " vs "), n, seconds, loadAverage())
	samples := rounds(systems, n, func(round int, sys system) map[string]float64 {
		s := startServer(t, sys, "fsync")
		defer s.stop(t)
		res, err := EndToEnd(context.Background(), Brokers(s.address()), Topic("latency"), Partitions(1), RecordSize(256),
			Rate(10000), Linger(0), Records(0), Duration(time.Duration(seconds)*time.Second))
		if err != nil {
			t.Fatalf("%s: %v", sys, err)
		}
		if res.Latency.Count == 0 {
			t.Fatalf("%s: no records consumed", sys)
		}
		fmt.Printf("  round %d %-6s e2e %v; produce %v (load %s)\n", round+1, sys, res.Latency, res.ProduceLatency, loadAverage())
		if c, ok := s.(*child); ok && c.httpURL != "" {
			fams := scrape(t, c.httpURL)
			fmt.Printf("    fsyncs %s\n", histogram(fams["riffle_fsync_duration_seconds"], nil))
			fmt.Printf("    Produce requests %s\n", histogram(fams["riffle_request_duration_seconds"], map[string]string{"api": "Produce"}))
		}
		e, p := res.Latency, res.ProduceLatency
		return map[string]float64{
			"e2e p50 ms": ms(e.P50), "e2e p99 ms": ms(e.P99), "e2e p99.9 ms": ms(e.P999), "e2e max ms": ms(e.Max),
			"produce p50 ms": ms(p.P50), "produce p99 ms": ms(p.P99),
		}
	})
	fmt.Printf("\nmedians of %d rounds\n", n)
	if err := printMedians(os.Stdout, systems, samples, []figure{
		{"e2e p50 ms", false}, {"e2e p99 ms", false}, {"e2e p99.9 ms", false}, {"e2e max ms", false},
		{"produce p50 ms", false}, {"produce p99 ms", false},
	}); err != nil {
		t.Fatal(err)
	}
}

// scrape reads the Prometheus metrics a Riffle broker serves at url.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
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

// requestCounts returns a Riffle broker's count of requests served, by API.
func requestCounts(fams map[string]*dto.MetricFamily) map[string]uint64 {
	counts := make(map[string]uint64)
	for _, m := range fams["riffle_request_duration_seconds"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "api" {
				counts[lp.GetValue()] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return counts
}

// requestsSince formats the requests counted in after but not in before,
// the busiest API first.
func requestsSince(before, after map[string]uint64) string {
	apis := slices.Collect(maps.Keys(after))
	slices.SortFunc(apis, func(a, b string) int { return cmp.Compare(after[b]-before[b], after[a]-before[a]) })
	var parts []string
	for _, api := range apis {
		if n := after[api] - before[api]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", api, n))
		}
	}
	return strings.Join(parts, ", ")
}
