package broker_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/broker"
)

// families is a parsed scrape: metric families by name.
type families map[string]*dto.MetricFamily

// scrape reads and parses the exposition at url with Prometheus' own
// text parser.
func scrape(t testing.TB, url string) families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// labels returns a metric's labels as a map.
func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string)
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// matching returns the series of family name whose labels include want.
func (f families) matching(name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range f[name].GetMetric() {
		have := labels(m)
		ok := true
		for k, v := range want {
			ok = ok && have[k] == v
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// value returns a counter's or gauge's value, or a histogram's count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}

// sum adds up the series of family name whose labels include want; ok is
// false if there is none.
func (f families) sum(name string, want map[string]string) (total float64, ok bool) {
	ms := f.matching(name, want)
	for _, m := range ms {
		total += value(m)
	}
	return total, len(ms) > 0
}

// mustSum is sum for series that must exist.
func (f families) mustSum(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := f.sum(name, want)
	if !ok {
		t.Fatalf("no series %s%v in the scrape", name, want)
	}
	return v
}

// serveHTTP serves b's HTTP handler until the test ends.
func serveHTTP(t testing.TB, b *broker.Broker) string {
	srv := httptest.NewServer(b.HTTPHandler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestMetricsOfABusyBroker scrapes a broker that serves producers, a
// consumer group and a share group, parses the exposition with
// Prometheus' parser and checks every series with its labels and that it
// moves with the traffic.
func TestMetricsOfABusyBroker(t *testing.T) {
	b := startBroker(t, "")
	url := serveHTTP(t, b)
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, body := httpGet(t, url+path); code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
	}

	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "orders", 2, nil)
	createTopic(t, adm, "profiles", 1, map[string]*string{"cleanup.policy": kmsg.StringPtr("compact")})
	createTopic(t, adm, "jobs", 1, nil)
	produce := func(topic string, n int) {
		t.Helper()
		var recs []*kgo.Record
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(i%3)), Value: []byte(strconv.Itoa(i))})
		}
		if err := cl.ProduceSync(testContext(t), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("orders", 50)
	produce("profiles", 6)

	// A consumer group reads and commits all 50, then 10 more arrive.
	readers := newClient(t, b.Addr(), kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("orders"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
	for got := 0; got < 50; {
		fs := readers.PollFetches(testContext(t))
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		got += fs.NumRecords()
	}
	if err := readers.CommitUncommittedOffsets(testContext(t)); err != nil {
		t.Fatal(err)
	}
	first := scrape(t, url+"/metrics")
	produce("orders", 10)

	// A share group rejects the first 4 jobs and holds the next 3.
	setGroupConfigs(t, cl, "workers", map[string]string{"share.auto.offset.reset": "earliest"})
	produce("jobs", 4)
	workers := shareConsumer(t, b.Addr(), "jobs", "workers")
	rejected := 0
	pollUntil(t, workers, 10*time.Second, func(r *kgo.Record) { r.Ack(kgo.AckReject); rejected++ }, func() bool { return rejected >= 4 })
	if err := workers.FlushAcks(testContext(t)); err != nil {
		t.Fatal(err)
	}
	produce("jobs", 3)
	held := 0
	pollUntil(t, workers, 10*time.Second, func(*kgo.Record) { held++ }, func() bool { return held >= 3 })

	// Requests that fail: a fetch beyond the end, offsets of a partition
	// that does not exist.
	topics, err := adm.ListTopics(testContext(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	fetch := kmsg.NewPtrFetchRequest()
	fetch.ReplicaID, fetch.MaxBytes, fetch.MaxWaitMillis = -1, 1<<20, 10
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = "orders", topics["orders"].ID
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.FetchOffset, fp.PartitionMaxBytes = 0, 1_000_000, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	if _, err := cl.Broker(1).Request(testContext(t), fetch); err != nil {
		t.Fatal(err)
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "orders"
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Partition, lp.Timestamp = 9, -1
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	if _, err := cl.Broker(1).Request(testContext(t), lo); err != nil {
		t.Fatal(err)
	}

	f := scrape(t, url+"/metrics")
	orders := map[string]string{"topic": "orders"}
	if in0, in := first.mustSum(t, "riffle_records_in_total", orders), f.mustSum(t, "riffle_records_in_total", orders); in0 != 50 || in != 60 {
		t.Fatalf("riffle_records_in_total{topic=orders} went %v -> %v, want 50 -> 60", in0, in)
	}
	if in0, in := first.mustSum(t, "riffle_bytes_in_total", orders), f.mustSum(t, "riffle_bytes_in_total", orders); in0 <= 0 || in <= in0 {
		t.Fatalf("riffle_bytes_in_total{topic=orders} went %v -> %v, want it to grow", in0, in)
	}
	if out := first.mustSum(t, "riffle_bytes_out_total", orders); out <= 0 {
		t.Fatalf("riffle_bytes_out_total{topic=orders} %v after a group read 50 records", out)
	}
	if out0, out := first.mustSum(t, "riffle_bytes_out_total", map[string]string{"topic": "jobs"}), f.mustSum(t, "riffle_bytes_out_total", map[string]string{"topic": "jobs"}); out0 != 0 || out <= 0 {
		t.Fatalf("riffle_bytes_out_total{topic=jobs} went %v -> %v over share fetches", out0, out)
	}
	for _, api := range []string{"Produce", "Fetch", "Metadata", "JoinGroup", "OffsetCommit", "ShareFetch", "ListOffsets"} {
		n := f.mustSum(t, "riffle_request_duration_seconds", map[string]string{"api": api})
		if n <= 0 {
			t.Errorf("riffle_request_duration_seconds{api=%s} counted no request", api)
		}
	}
	if p0, p := first.mustSum(t, "riffle_request_duration_seconds", map[string]string{"api": "Produce"}), f.mustSum(t, "riffle_request_duration_seconds", map[string]string{"api": "Produce"}); p <= p0 {
		t.Errorf("riffle_request_duration_seconds{api=Produce} did not move: %v -> %v", p0, p)
	}
	for _, e := range []map[string]string{
		{"api": "Fetch", "error": "OFFSET_OUT_OF_RANGE"},
		{"api": "ListOffsets", "error": "UNKNOWN_TOPIC_OR_PARTITION"},
	} {
		if n := f.mustSum(t, "riffle_request_errors_total", e); n < 1 {
			t.Errorf("riffle_request_errors_total%v = %v", e, n)
		}
	}
	if n := f.mustSum(t, "riffle_fsync_duration_seconds", nil); n < 1 {
		t.Errorf("riffle_fsync_duration_seconds counted %v fsyncs under group commit", n)
	}
	if size := f.mustSum(t, "riffle_log_size_bytes", map[string]string{"topic": "orders", "partition": "1"}); size <= 0 {
		t.Errorf("riffle_log_size_bytes{orders,1} = %v", size)
	}
	if end := f.mustSum(t, "riffle_log_end_offset", orders); end != 60 {
		t.Errorf("riffle_log_end_offset{topic=orders} sums to %v, want 60", end)
	}
	if _, ok := f.sum("riffle_log_dirty_ratio", map[string]string{"topic": "profiles", "partition": "0"}); !ok {
		t.Error("no riffle_log_dirty_ratio for the compacted topic")
	}
	if _, ok := f.sum("riffle_log_dirty_ratio", orders); ok {
		t.Error("riffle_log_dirty_ratio for a topic that is not compacted")
	}
	group := map[string]string{"group": "readers", "topic": "orders"}
	if lag0, lag := first.mustSum(t, "riffle_group_lag", group), f.mustSum(t, "riffle_group_lag", group); lag0 != 0 || lag != 10 {
		t.Errorf("riffle_group_lag{readers} went %v -> %v, want 0 -> 10", lag0, lag)
	}
	if n := len(f.matching("riffle_group_lag", group)); n != 2 {
		t.Errorf("%d riffle_group_lag series for readers, want one per partition", n)
	}
	if m := f.mustSum(t, "riffle_group_members", map[string]string{"group": "readers"}); m != 1 {
		t.Errorf("riffle_group_members{readers} = %v, want 1", m)
	}
	if m := f.mustSum(t, "riffle_group_members", map[string]string{"group": "workers"}); m != 1 {
		t.Errorf("riffle_group_members{workers} = %v, want 1", m)
	}
	if n := f.mustSum(t, "riffle_share_group_records_in_flight", map[string]string{"group": "workers", "topic": "jobs", "partition": "0"}); n != 3 {
		t.Errorf("riffle_share_group_records_in_flight{workers,jobs,0} = %v, want the 3 held", n)
	}
	if n := f.mustSum(t, "riffle_share_group_records_archived_total", map[string]string{"group": "workers"}); n != 4 {
		t.Errorf("riffle_share_group_records_archived_total{workers} = %v, want the 4 rejected", n)
	}
	if n := f.mustSum(t, "riffle_connections", nil); n < 3 {
		t.Errorf("riffle_connections = %v with three clients connected", n)
	}
	if s := f.mustSum(t, "riffle_raft_state", nil); s != 2 {
		t.Errorf("riffle_raft_state = %v, want 2 (leader of a single-voter quorum)", s)
	}
	if c := f.mustSum(t, "riffle_raft_commit_index", nil); c < 1 {
		t.Errorf("riffle_raft_commit_index = %v", c)
	}
}

// TestMetricsCardinalityIsBounded checks that the series do not grow
// with clients: thirty producers and group members with ids of their own
// add no series over what two made, and no label carries a client's id,
// member id or address.
func TestMetricsCardinalityIsBounded(t *testing.T) {
	b := startBroker(t, "")
	url := serveHTTP(t, b)
	createTopic(t, kadm.NewClient(newClient(t, b.Addr())), "events", 3, nil)
	// work runs clients, each producing a record and polling once as a
	// member of one group, all at once.
	work := func(from, to int) {
		t.Helper()
		var wg sync.WaitGroup
		for id := from; id < to; id++ {
			cl := newClient(t, b.Addr(), kgo.ClientID(fmt.Sprintf("client-%d", id)), kgo.DefaultProduceTopic("events"),
				kgo.ConsumerGroup("loaders"), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
				kgo.FetchMaxWait(50*time.Millisecond), kgo.DisableAutoCommit())
			wg.Go(func() {
				if err := cl.ProduceSync(testContext(t), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
					t.Error(err)
				}
				// A member left without partitions gets nothing to poll.
				ctx, cancel := context.WithTimeout(testContext(t), 500*time.Millisecond)
				defer cancel()
				cl.PollFetches(ctx)
			})
		}
		wg.Wait()
	}
	series := func() map[string]int {
		out := make(map[string]int)
		for name, fam := range scrape(t, url+"/metrics") {
			// Request series are bounded by Kafka's request and error
			// names, checked below: which of them a few clients reach
			// in a moment is a matter of timing.
			if !strings.HasPrefix(name, "riffle_") || strings.HasPrefix(name, "riffle_request_") {
				continue
			}
			for _, m := range fam.GetMetric() {
				for k, v := range labels(m) {
					if strings.Contains(v, "client-") || strings.Contains(v, "127.0.0.1") {
						t.Fatalf("%s has a per-client label %s=%q", name, k, v)
					}
				}
			}
			out[name] = len(fam.GetMetric())
		}
		return out
	}
	work(0, 2)
	before := series()
	work(2, 32)
	after := series()
	if !maps.Equal(before, after) {
		t.Fatalf("series per family grew with clients:\nbefore %v\nafter  %v", before, after)
	}
	// Request series are labelled by Kafka's request and error names only.
	apis := make(map[string]bool)
	for key := range int16(kmsg.MaxKey + 1) {
		apis[kmsg.NameForKey(key)] = true
	}
	f := scrape(t, url+"/metrics")
	for _, m := range f["riffle_request_duration_seconds"].GetMetric() {
		if l := labels(m); len(l) != 1 || !apis[l["api"]] {
			t.Fatalf("riffle_request_duration_seconds series with labels %v", l)
		}
	}
	for _, m := range f["riffle_request_errors_total"].GetMetric() {
		l := labels(m)
		if len(l) != 2 || !apis[l["api"]] || l["error"] == "" || strings.ToUpper(l["error"]) != l["error"] {
			t.Fatalf("riffle_request_errors_total series with labels %v", l)
		}
	}
	if len(before) < 9 {
		t.Fatalf("only %d riffle families in the scrape: %v", len(before), before)
	}
}

// TestReadyzFollowsTheBroker checks /readyz before Start, while serving
// and after Close, and /healthz throughout.
func TestReadyzFollowsTheBroker(t *testing.T) {
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	url := serveHTTP(t, b)
	check := func(path string, want int) {
		t.Helper()
		if code, body := httpGet(t, url+path); code != want {
			t.Fatalf("GET %s: %d %q, want %d", path, code, body, want)
		}
	}
	check("/readyz", http.StatusServiceUnavailable)
	check("/healthz", http.StatusOK)
	check("/", http.StatusServiceUnavailable) // the console needs the listener
	scrape(t, url+"/metrics")                 // before Start: the process's series, no stores read
	if err := b.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	check("/readyz", http.StatusOK)
	check("/", http.StatusOK)
	if code, body := httpGet(t, url+"/api/overview"); code != http.StatusOK || !strings.Contains(body, `"127.0.0.1"`) {
		t.Fatalf("GET /api/overview: %d %s, want 200 listing this broker", code, body)
	}
	if err := b.Close(testContext(t)); err != nil {
		t.Fatal(err)
	}
	check("/readyz", http.StatusServiceUnavailable)
	check("/healthz", http.StatusOK)
	scrape(t, url+"/metrics")
}
