package main

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/broker"
)

func TestQueueWorkerEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	versions, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	served := false
	for _, k := range versions.ApiKeys {
		served = served || k.ApiKey == kmsg.ShareFetch.Int16()
	}
	if !served {
		t.Skip("broker does not serve share groups")
	}

	var out bytes.Buffer
	cfg := config{brokers: []string{b.Addr()}, jobs: 100, workers: 4, work: time.Millisecond, logger: slog.New(slog.DiscardHandler)}
	if err := run(ctx, &out, cfg); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// Jobs 49 and 99 are corrupt; jobs 0, 10, ... 90 fail once and are
	// retried.
	if !regexp.MustCompile(`98 jobs done, 2 rejected, 10 retried`).MatchString(out.String()) {
		t.Fatalf("unexpected summary:\n%s", out.String())
	}
}

func TestInfer(t *testing.T) {
	for _, c := range []struct {
		job      string
		delivery int32
		want     string
	}{
		{"job-3 image=a.jpg", 1, outcomeDone},
		{"job-20 image=a.jpg", 1, outcomeRetry},
		{"job-20 image=a.jpg", 2, outcomeDone},
		{"job-7 image=corrupt", 3, outcomeCorrupted},
	} {
		if got := infer(c.job, c.delivery, 0); got != c.want {
			t.Errorf("infer(%q, %d) = %s, want %s", c.job, c.delivery, got, c.want)
		}
	}
}
