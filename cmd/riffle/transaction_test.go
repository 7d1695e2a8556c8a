package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// transactionRunCLI runs "riffle transaction args..." and returns its
// stdout and error.
func transactionRunCLI(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := runCLI(ctx, append([]string{"transaction"}, args...)...)
	if err != nil {
		t.Logf("stderr: %s", stderr)
	}
	return stdout, err
}

func TestTransactionListDescribe(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	p, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("orders-tx"), kgo.DefaultProduceTopic("orders"),
		kgo.AllowAutoTopicCreation(), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte("o1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out, err := transactionRunCLI(ctx, t, "list", b, "--state", "Ongoing")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^orders-tx\s+\d+\s+Ongoing$`).MatchString(out) {
		t.Errorf("list --state Ongoing:\n%s", out)
	}
	if out, err = transactionRunCLI(ctx, t, "list", b, "--state", "CompleteCommit"); err != nil || strings.Contains(out, "orders-tx") {
		t.Errorf("list --state CompleteCommit while the transaction is open: %v\n%s", err, out)
	}
	out, err = transactionRunCLI(ctx, t, "describe", b, "orders-tx")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^orders-tx\s+\d+\s+\d+\s+Ongoing\s+30s\s+\d{4}-\d\d-\d\dT\S+\s+orders-0$`).MatchString(out) {
		t.Errorf("describe of the open transaction:\n%s", out)
	}
	if err := p.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	out, err = transactionRunCLI(ctx, t, "describe", b)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^orders-tx\s+\d+\s+\d+\s+CompleteCommit\s+30s\s+-\s+-$`).MatchString(out) {
		t.Errorf("describe of every transaction after the commit:\n%s", out)
	}
	if _, err := transactionRunCLI(ctx, t, "describe", b, "nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("describe of an unknown transactional id: %v", err)
	}
}
