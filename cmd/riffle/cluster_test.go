package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestClusterInfo(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	out := mustCLI(ctx, t, "", "cluster", "info", b)
	host, port, _ := strings.Cut(addr, ":")
	mustMatch(t, "cluster info", out,
		`(?m)^CLUSTER \S+  CONTROLLER 1  BROKERS 1$`,
		`(?m)^BROKER\s+HOST\s+PORT\s+RACK\s+ROLE$`,
		`(?m)^1\s+`+host+`\s+`+port+`\s+-\s+broker, controller$`,
		`(?m)^QUORUM leader 1  epoch \d+  high watermark \d+$`,
		`(?m)^1\s+leader\s+\d+\s+0$`)

	var d clusterDescription
	if err := json.Unmarshal([]byte(mustCLI(ctx, t, "", "cluster", "info", "--output", "json", b)), &d); err != nil {
		t.Fatal(err)
	}
	if d.ClusterID == "" || d.Controller != 1 || len(d.Brokers) != 1 || d.Brokers[0].Host != host || d.Quorum == nil ||
		d.Quorum.Leader != 1 || len(d.Quorum.Voters) != 1 || d.Quorum.HighWatermark <= 0 {
		t.Fatalf("cluster info --output json: %+v", d)
	}
}

func TestTopicDescribeSizesAndDirtyRatio(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "orders", "--partitions", "2", "--config", "cleanup.policy=compact", b)
	var in strings.Builder
	for i := range 100 {
		fmt.Fprintf(&in, "k%d:%s\n", i%10, strings.Repeat("v", 100))
	}
	mustCLI(ctx, t, in.String(), "produce", "orders", "-K", ":", "-p", "0", b)

	// The broker's /metrics, as h-metrics' exposition has it: the CLI
	// reads the dirty ratio of each partition and ignores the rest.
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `# HELP riffle_log_dirty_ratio Share of the log not yet compacted.
# TYPE riffle_log_dirty_ratio gauge
riffle_log_dirty_ratio{partition="0",topic="orders"} 0.25
riffle_log_dirty_ratio{topic="other",partition="1"} 1
riffle_log_size_bytes{partition="0",topic="orders"} 12345
`)
	}))
	defer metrics.Close()
	httpAddr := strings.TrimPrefix(metrics.URL, "http://")
	out := mustCLI(ctx, t, "", "topic", "describe", "orders", "--http", httpAddr, b)
	mustMatch(t, "describe --http", out,
		`(?m)^PARTITION\s+LEADER\s+REPLICAS\s+ISR\s+START\s+END\s+SIZE\s+DIRTY$`,
		`(?m)^0\s+1\s+1\s+1\s+0\s+100\s+\d+\.\d KiB\s+0\.25$`,
		`(?m)^1\s+1\s+1\s+1\s+0\s+0\s+0 B\s+-$`)

	var topics []describedTopic
	if err := json.Unmarshal([]byte(mustCLI(ctx, t, "", "topic", "describe", "orders", "--http", httpAddr, "--output", "json", b)), &topics); err != nil {
		t.Fatal(err)
	}
	if len(topics) != 1 || topics[0].Configs["cleanup.policy"] != "compact" || len(topics[0].Partitions) != 2 {
		t.Fatalf("describe --output json: %+v", topics)
	}
	p0, p1 := topics[0].Partitions[0], topics[0].Partitions[1]
	if *p0.End != 100 || *p0.Size < 100*100 || *p0.Dirty != 0.25 || *p1.Size != 0 || p1.Dirty != nil {
		t.Fatalf("describe --output json partitions: %+v %+v", p0, p1)
	}

	// Without --http there is no DIRTY column; a broker that does not answer is an error.
	if out := mustCLI(ctx, t, "", "topic", "describe", "orders", b); strings.Contains(out, "DIRTY") {
		t.Fatalf("DIRTY without --http:\n%s", out)
	}
	if _, _, err := runCLI(ctx, "topic", "describe", "orders", "--http", "127.0.0.1:1", b); err == nil {
		t.Fatal("describe with an unreachable --http succeeded")
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, `riffle_log_dirty_ratio{topic="orders" 0.5`)
	}))
	defer bad.Close()
	if _, _, err := runCLI(ctx, "topic", "describe", "orders", "--http", strings.TrimPrefix(bad.URL, "http://"), b); err == nil {
		t.Fatal("describe with a malformed exposition succeeded")
	}

	var listed []map[string]any
	if err := json.Unmarshal([]byte(mustCLI(ctx, t, "", "topic", "list", "--output", "json", b)), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0]["topic"] != "orders" || listed[0]["partitions"] != 2.0 || listed[0]["replication_factor"] != 1.0 {
		t.Fatalf("topic list --output json: %v", listed)
	}
}

func TestGroupDescribeWatchAndJSON(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "orders", "--partitions", "2", b)
	mustCLI(ctx, t, "a\nb\nc\nd\n", "produce", "orders", b)
	member, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"),
		kgo.ServerSideBalancer(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("billing-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	for got := 0; got < 4; {
		fs := member.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}

	var groups []describedGroup
	if err := json.Unmarshal([]byte(mustCLI(ctx, t, "", "group", "describe", "billing", "--output", "json", b)), &groups); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Type != "consumer" || groups[0].State != "Stable" || len(groups[0].Members) != 1 ||
		groups[0].Members[0].ClientID != "billing-1" || len(groups[0].Members[0].Assignment["orders"]) != 2 || len(groups[0].Offsets) != 2 {
		t.Fatalf("group describe --output json: %+v", groups)
	}
	for _, o := range groups[0].Offsets {
		if *o.Committed != *o.End || *o.Lag != 0 || o.Member != groups[0].Members[0].ID {
			t.Fatalf("group describe --output json offset: %+v", o)
		}
	}

	// --watch redraws until interrupted; on no terminal the drawings are
	// separated by blank lines, with JSON one document per line.
	watchCtx, stop := context.WithTimeout(ctx, 1200*time.Millisecond)
	defer stop()
	out, _, err := runCLI(watchCtx, "group", "describe", "billing", "--watch", "--interval", "200ms", b)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "GROUP billing  TYPE consumer  STATE Stable"); n < 3 {
		t.Fatalf("--watch drew %d times in 1.2s at 200ms:\n%s", n, out)
	}
	watchCtx, stop = context.WithTimeout(ctx, 700*time.Millisecond)
	defer stop()
	out, _, err = runCLI(watchCtx, "group", "describe", "billing", "--watch", "--interval", "200ms", "--output", "json", b)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		var gs []describedGroup
		if err := json.Unmarshal([]byte(l), &gs); err != nil || len(gs) != 1 {
			t.Fatalf("--watch --output json line %q: %v", l, err)
		}
	}
	if len(lines) < 2 {
		t.Fatalf("--watch --output json printed %d lines", len(lines))
	}
	if _, _, err := runCLI(ctx, "group", "describe", "billing", "--watch", "--interval", "0s", b); err == nil {
		t.Fatal("--interval 0s accepted")
	}

	var listed []map[string]any
	if err := json.Unmarshal([]byte(mustCLI(ctx, t, "", "group", "list", "--output", "json", b)), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0]["group"] != "billing" || listed[0]["type"] != "consumer" {
		t.Fatalf("group list --output json: %v", listed)
	}
}
