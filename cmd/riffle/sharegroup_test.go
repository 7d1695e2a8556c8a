package main

import (
	"context"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareGroupRunCLI runs "riffle share-group args..." and returns its
// stdout and error.
func shareGroupRunCLI(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := runCLI(ctx, append([]string{"share-group"}, args...)...)
	if err != nil {
		t.Logf("stderr: %s", stderr)
	}
	return stdout, err
}

func TestShareGroupDescribeAndReset(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	admin, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("jobs"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	versions, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if !hasKey(versions, kmsg.ShareFetch.Int16()) {
		t.Skip("broker does not serve share groups")
	}
	cfg := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "workers"
	res.Configs = []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "share.auto.offset.reset", Value: kmsg.StringPtr("earliest")}}
	cfg.Resources = append(cfg.Resources, res)
	if _, err := cfg.RequestWith(ctx, admin); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := admin.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"), kgo.ClientID("worker-1"))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < 10 && ctx.Err() == nil {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		consumer.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			r.Ack(kgo.AckAccept)
			got++
		})
		pcancel()
	}
	if err := consumer.FlushAcks(ctx); err != nil {
		t.Fatal(err)
	}

	out, err := shareGroupRunCLI(ctx, t, "describe", b, "workers")
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{`GROUP workers  STATE Stable`, `(?m)^\S+\s+worker-1\s+\S+\s+jobs:0$`, `(?m)^jobs\s+0\s+10\s+0$`} {
		if !regexp.MustCompile(row).MatchString(out) {
			t.Fatalf("describe output lacks %s:\n%s", row, out)
		}
	}
	consumer.Close()
	out, err = shareGroupRunCLI(ctx, t, "list", b)
	if err != nil || !regexp.MustCompile(`(?m)^workers\s+Empty$`).MatchString(out) {
		t.Fatalf("list after the member left: %q, %v", out, err)
	}

	out, err = shareGroupRunCLI(ctx, t, "reset-offsets", b, "workers", "--topic", "jobs", "--to-offset", "4")
	if err != nil || !regexp.MustCompile(`(?m)^jobs\s+0\s+4$`).MatchString(out) {
		t.Fatalf("reset dry run: %q, %v", out, err)
	}
	if _, err := shareGroupRunCLI(ctx, t, "reset-offsets", b, "workers", "--topic", "jobs", "--to-earliest", "--execute"); err != nil {
		t.Fatal(err)
	}
	out, err = shareGroupRunCLI(ctx, t, "describe", b, "workers")
	if err != nil || !regexp.MustCompile(`(?m)^jobs\s+0\s+0\s+10$`).MatchString(out) {
		t.Fatalf("after reset to earliest: %q, %v", out, err)
	}
}

func hasKey(resp *kmsg.ApiVersionsResponse, key int16) bool {
	for _, k := range resp.ApiKeys {
		if k.ApiKey == key {
			return true
		}
	}
	return false
}
