package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// topic runs "riffle topic args..." and returns its stdout, stderr and error.
func topic(ctx context.Context, t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runCLI(ctx, append([]string{"topic"}, args...)...)
}

func TestTopicLifecycle(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := "--brokers=" + addr

	out, _, err := topic(ctx, t, "create", "orders", b, "--partitions", "3", "--config", "retention.ms=60000")
	if err != nil || !strings.Contains(out, "created topic orders (partitions 3, replication factor 1)") {
		t.Fatalf("create orders: %q, %v", out, err)
	}
	out, errOut, err := topic(ctx, t, "create", b, "orders", "audit")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 topics failed") {
		t.Fatalf("create of an existing and a new topic: err = %v, want 1 of 2 failed", err)
	}
	if !strings.Contains(errOut, "topic orders: TOPIC_ALREADY_EXISTS") || !strings.Contains(out, "created topic audit") {
		t.Fatalf("create of an existing and a new topic: stdout %q stderr %q", out, errOut)
	}

	out, _, err = topic(ctx, t, "list", b)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{`(?m)^TOPIC\s+PARTITIONS\s+REPLICATION-FACTOR$`, `(?m)^audit\s+1\s+1$`, `(?m)^orders\s+3\s+1$`} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Fatalf("list output lacks %s:\n%s", row, out)
		}
	}

	// Five records, all to partition 1, show up in describe's end offsets.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 5 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 1, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, err = topic(ctx, t, "describe", b, "orders", "missing")
	if err == nil || !strings.Contains(errOut, "topic missing: UNKNOWN_TOPIC_OR_PARTITION") {
		t.Fatalf("describe of a missing topic: err %v, stderr %q", err, errOut)
	}
	// Sizes come from DescribeLogDirs: partition 1 holds the five records.
	for _, want := range []string{`TOPIC orders  ID [A-Za-z0-9_-]{22}  PARTITIONS 3  REPLICATION-FACTOR 1`, `(?m)^CONFIGS retention.ms=60000$`,
		`(?m)^PARTITION\s+LEADER\s+REPLICAS\s+ISR\s+START\s+END\s+SIZE$`, `(?m)^0\s+1\s+1\s+1\s+0\s+0\s+0 B$`, `(?m)^1\s+1\s+1\s+1\s+0\s+5\s+[1-9]\d* B$`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Fatalf("describe output lacks %s:\n%s", want, out)
		}
	}

	if _, _, err := topic(ctx, t, "alter-config", "orders", b, "--set", "cleanup.policy=compact", "--delete", "retention.ms"); err != nil {
		t.Fatal(err)
	}
	out, _, err = topic(ctx, t, "describe", b, "orders")
	if err != nil || !strings.Contains(out, "CONFIGS cleanup.policy=compact\n") {
		t.Fatalf("describe after alter-config: %q, %v", out, err)
	}
	_, errOut, err = topic(ctx, t, "alter-config", "orders", b, "--set", "no.such.config=1")
	if err == nil || !strings.Contains(errOut, "topic orders: INVALID_CONFIG") {
		t.Fatalf("alter-config with an unknown key: err %v, stderr %q", err, errOut)
	}
	if _, _, err := topic(ctx, t, "alter-config", "orders", b); err == nil {
		t.Fatal("alter-config without changes succeeded")
	}

	out, errOut, err = topic(ctx, t, "delete", b, "orders", "audit", "missing")
	if err == nil || !strings.Contains(errOut, "topic missing: UNKNOWN_TOPIC_OR_PARTITION") ||
		!strings.Contains(out, "deleted topic orders") || !strings.Contains(out, "deleted topic audit") {
		t.Fatalf("delete: stdout %q stderr %q err %v", out, errOut, err)
	}
	out, _, err = topic(ctx, t, "list", b)
	if err != nil || strings.TrimSpace(out) != "TOPIC  PARTITIONS  REPLICATION-FACTOR" {
		t.Fatalf("list after delete: %q, %v", out, err)
	}
}

func TestTopicUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{nil, {"frobnicate"}, {"create"}, {"delete"}, {"list", "extra"}, {"create", "x", "--config", "novalue"}} {
		if _, _, err := topic(ctx, t, args...); err == nil {
			t.Errorf("topic %q succeeded", args)
		}
	}
}
