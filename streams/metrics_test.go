package streams

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/riffle-stream/riffle/processor"
)

// scrapeFamilies reads the exposition at url with Prometheus' parser.
func scrapeFamilies(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// seriesValue sums a family's counters, gauges and histogram counts.
func seriesValue(fam *dto.MetricFamily) float64 {
	var v float64
	for _, m := range fam.GetMetric() {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return v
}

// TestMetricsOfARunningApp runs word count on Riffle's broker, scrapes
// App.MetricsHandler and checks each series, its labels, that it moves,
// that it agrees with App.Metrics, and that records do not add series.
func TestMetricsOfARunningApp(t *testing.T) {
	t.Parallel()
	brokers := riffleCluster(t)
	reg := prometheus.NewRegistry()
	r := startApp(t, brokers, t.TempDir(), MetricsRegisterer(reg))
	srv := httptest.NewServer(r.app.MetricsHandler())
	t.Cleanup(srv.Close)

	truth := produceLines(t, brokers, 2000, 5)
	latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
	waitFor(t, "a commit after the last count", 10*time.Second, func() bool {
		m := r.app.Metrics()
		return m.Commits > 0 && m.TotalLag() == 0
	})
	first := scrapeFamilies(t, srv.URL)
	for name, want := range map[string][]string{
		"riffle_streams_records_processed_total":   {"application_id", "task"},
		"riffle_streams_process_duration_seconds":  {"application_id", "task"},
		"riffle_streams_dropped_records_total":     {"application_id", "task"},
		"riffle_streams_commit_duration_seconds":   {"application_id"},
		"riffle_streams_commits_total":             {"application_id"},
		"riffle_streams_e2e_latency_seconds":       {"application_id", "topic"},
		"riffle_streams_records_produced_total":    {"application_id"},
		"riffle_streams_consumer_lag":              {"application_id", "topic", "partition"},
		"riffle_streams_records_restored_total":    {"application_id"},
		"riffle_streams_restore_remaining_records": {"application_id", "task", "store"},
		"riffle_streams_tasks":                     {"application_id"},
		"riffle_streams_processor_records_total":   {"application_id", "task", "processor"},
		"riffle_streams_punctuations_total":        {"application_id", "task"},
		"riffle_streams_standby_tasks":             {"application_id"},
		"riffle_streams_standby_records_total":     {"application_id"},
	} {
		fam := first[name]
		if fam == nil || len(fam.GetMetric()) == 0 {
			t.Errorf("no series %s", name)
			continue
		}
		for _, m := range fam.GetMetric() {
			var have []string
			for _, l := range m.GetLabel() {
				have = append(have, l.GetName())
				if l.GetName() == "application_id" && l.GetValue() != "wordcount" {
					t.Errorf("%s: application_id %q", name, l.GetValue())
				}
			}
			slices.Sort(have)
			slices.Sort(want)
			if !slices.Equal(have, want) {
				t.Errorf("%s has labels %v, want %v", name, have, want)
			}
		}
	}
	m := r.app.Metrics()
	if got := seriesValue(first["riffle_streams_records_processed_total"]); got != float64(m.RecordsProcessed) || got < 2000 {
		t.Errorf("records processed: scrape %v, Metrics %d", got, m.RecordsProcessed)
	}
	// Every input record reaches its source node and at least one more.
	if got := seriesValue(first["riffle_streams_processor_records_total"]); got < 2*float64(m.RecordsProcessed) {
		t.Errorf("records received by nodes: %v, want at least twice the %d processed", got, m.RecordsProcessed)
	}
	if got := seriesValue(first["riffle_streams_process_duration_seconds"]); got != float64(m.RecordsProcessed) {
		t.Errorf("process latency observed %v records, %d processed", got, m.RecordsProcessed)
	}
	if got := seriesValue(first["riffle_streams_tasks"]); got != 8 {
		t.Errorf("riffle_streams_tasks = %v, want 8 (2 subtopologies of 4 partitions)", got)
	}
	for _, name := range []string{"riffle_streams_dropped_records_total", "riffle_streams_restore_remaining_records", "riffle_streams_consumer_lag",
		"riffle_streams_standby_tasks", "riffle_streams_standby_records_total"} {
		if v := seriesValue(first[name]); v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
	sinks := map[string]bool{}
	for _, s := range first["riffle_streams_e2e_latency_seconds"].GetMetric() {
		for _, l := range s.GetLabel() {
			if l.GetName() == "topic" {
				sinks[l.GetValue()] = true
			}
		}
	}
	if !sinks[outputTopic] || !sinks["wordcount-counts-repartition"] || len(sinks) != 2 {
		t.Errorf("end-to-end latency by topic %v, want the output and repartition topics", sinks)
	}
	// What the App's registry has, the registerer has too.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 15 {
		t.Errorf("MetricsRegisterer's registry holds %d families, want the 15 riffle_streams ones", len(fams))
	}

	produceLines(t, brokers, 500, 5)
	waitFor(t, "the new lines to be processed", 30*time.Second, func() bool {
		return r.app.Metrics().RecordsProcessed >= m.RecordsProcessed+500
	})
	second := scrapeFamilies(t, srv.URL)
	for name, fam := range first {
		if !strings.HasPrefix(name, "riffle_streams_") {
			continue
		}
		if n0, n := len(fam.GetMetric()), len(second[name].GetMetric()); n != n0 {
			t.Errorf("%s went from %d to %d series with more records", name, n0, n)
		}
	}
	if p0, p := seriesValue(first["riffle_streams_records_processed_total"]), seriesValue(second["riffle_streams_records_processed_total"]); p < p0+500 {
		t.Errorf("records processed went %v -> %v over 500 more lines", p0, p)
	}
}

// TestMetricsRegistererRefusal checks that New reports a registerer that
// already holds the series of an App of the same id.
func TestMetricsRegistererRefusal(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := []Option{ApplicationID("twice"), Brokers("127.0.0.1:1"), MetricsRegisterer(reg)}
	if _, err := New(wordCount(t), opts...); err != nil {
		t.Fatal(err)
	}
	_, err := New(wordCount(t), opts...)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second App on one registerer: %v", err)
	}
	if _, err := New(wordCount(t), ApplicationID("other"), Brokers("127.0.0.1:1"), MetricsRegisterer(reg)); err != nil {
		t.Fatalf("an App of another id on the same registerer: %v", err)
	}
}

// BenchmarkRecordMetrics measures what the metrics add to one input
// record that yields one output: a clock read and the task's latency
// histogram, then the sink's end-to-end latency against that clock read.
func BenchmarkRecordMetrics(b *testing.B) {
	m := newMetrics("bench")
	th := &thread{app: &App{metrics: m}, latency: make(map[string]prometheus.Observer)}
	stats := m.task(processor.TaskID{Partition: 1})
	ts := time.Now()
	began := ts
	b.ReportAllocs()
	for b.Loop() {
		done := time.Now()
		stats.process.Observe(done.Sub(began).Seconds())
		began = done
		th.sinkLatency(outputTopic).Observe(done.Sub(ts).Seconds())
	}
}
