package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// group runs "riffle group args..." and returns its stdout, stderr and error.
func group(ctx context.Context, t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runCLI(ctx, append([]string{"group"}, args...)...)
}

func mustMatch(t *testing.T, what, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Fatalf("%s lacks %s:\n%s", what, p, out)
		}
	}
}

func TestGroupLifecycle(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	if _, _, err := topic(ctx, t, "create", "orders", b, "--partitions", "2"); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: int32(i % 2), Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// A KIP-848 member consumes everything and commits; it stays in the
	// group while describe and reset-offsets run.
	member, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumerGroup("billing"), kgo.ConsumeTopics("orders"),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.ServerSideBalancer(), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.ClientID("billing-1"))
	if err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 10; {
		fs := member.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got += fs.NumRecords()
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "orders", Partition: 0, Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	out, _, err := group(ctx, t, "list", b)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "list", out, `(?m)^GROUP\s+TYPE\s+STATE\s+PROTOCOL-TYPE$`, `(?m)^billing\s+consumer\s+Stable\s+consumer$`)

	out, _, err = group(ctx, t, "describe", "billing", b)
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "describe", out,
		`GROUP billing  TYPE consumer  STATE Stable  EPOCH \d+  ASSIGNOR uniform  MEMBERS 1`,
		`(?m)^\S+\s+billing-1\s+\S+\s+\d+\s+orders:0,1$`,
		`(?m)^TOPIC\s+PARTITION\s+MEMBER\s+COMMITTED\s+END\s+LAG$`,
		`(?m)^orders\s+0\s+\S+\s+5\s+9\s+4$`,
		`(?m)^orders\s+1\s+\S+\s+5\s+5\s+0$`)

	if _, _, err := group(ctx, t, "reset-offsets", "billing", b, "--to-earliest"); err == nil || !strings.Contains(err.Error(), "only be reset while the group is empty") {
		t.Fatalf("reset of an active group: %v", err)
	}
	if _, errOut, err := group(ctx, t, "delete", "billing", b); err == nil || !strings.Contains(errOut, "NON_EMPTY_GROUP") {
		t.Fatalf("delete of an active group: %v %q", err, errOut)
	}
	member.Close()

	out, _, err = group(ctx, t, "reset-offsets", "billing", b, "--to-offset", "2", "--topic", "orders")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "reset", out, `(?m)^orders\s+0\s+5\s+2$`, `(?m)^orders\s+1\s+5\s+2$`, `reset 2 partitions of group billing`)
	out, _, err = group(ctx, t, "reset-offsets", "billing", b, "--to-latest", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	mustMatch(t, "dry run", out, `(?m)^orders\s+0\s+2\s+9$`)
	adm := kadm.NewClient(cl)
	offs, err := adm.FetchOffsets(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup("orders", 0); o.At != 2 {
		t.Fatalf("dry run committed: offset %d, want 2", o.At)
	}
	if _, _, err := group(ctx, t, "reset-offsets", "billing", b, "--to-timestamp", "0"); err != nil {
		t.Fatal(err)
	}
	if offs, _ = adm.FetchOffsets(ctx, "billing"); offs["orders"][0].At != 0 {
		t.Fatalf("reset to timestamp 0: offset %d, want 0", offs["orders"][0].At)
	}

	out, _, err = group(ctx, t, "delete", "billing", b)
	if err != nil || !strings.Contains(out, "deleted group billing") {
		t.Fatalf("delete: %q %v", out, err)
	}
	if _, errOut, err := group(ctx, t, "describe", "billing", b); err == nil || !strings.Contains(errOut, "GROUP_ID_NOT_FOUND") {
		t.Fatalf("describe of a deleted group: %v %q", err, errOut)
	}
}
