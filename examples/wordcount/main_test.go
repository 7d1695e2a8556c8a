package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/broker"
)

const text = `The quick brown fox -- the QUICK one!
Über-fast: 42 foxes, 42 dogs; the end.

...
`

const want = `42 2
brown 1
dogs 1
end 1
fast 1
fox 1
foxes 1
one 1
quick 2
the 3
über 1
`

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func TestWords(t *testing.T) {
	got := strings.Join(Words("a--B c3,,Ünï_x"), "|")
	if got != "a|b|c3|ünï|x" {
		t.Fatalf("Words = %q", got)
	}
}

func TestWordCountAgainstExternalCluster(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err = run(ctx, strings.NewReader(text), &out, config{brokers: c.ListenAddrs(), stateDir: t.TempDir(), partitions: 3, logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestWordCountEmbedded(t *testing.T) {
	probe, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Logger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := probe.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(probe.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	versions, err := kadm.NewClient(cl).ApiVersions(context.Background())
	cl.Close()
	if cerr := probe.Close(context.Background()); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	versions.Each(func(v kadm.BrokerApiVersions) {
		_, classic := v.KeyMaxVersion(kmsg.JoinGroup.Int16())
		_, nextGen := v.KeyMaxVersion(kmsg.ConsumerGroupHeartbeat.Int16())
		if !classic && !nextGen {
			t.Skip("Riffle's broker does not offer consumer groups yet (neither JoinGroup nor ConsumerGroupHeartbeat in ApiVersions)")
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, strings.NewReader(text), &out, config{stateDir: t.TempDir(), partitions: 2, logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
