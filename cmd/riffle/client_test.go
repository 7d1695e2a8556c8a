package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
)

// startCLIBroker starts a Riffle broker on a loopback port with its data in
// a temporary directory and returns its address.
func startCLIBroker(t *testing.T) string {
	t.Helper()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()),
		broker.Logger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b.Addr()
}

// runCLI runs "riffle args..." with stdout and stderr in buffers, as
// when they are not a terminal.
func runCLI(ctx context.Context, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := execute(ctx, &output{stdout: &stdout, stderr: &stderr}, args)
	return stdout.String(), stderr.String(), err
}

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		wantPos  []string
		wantN    int
		wantList []string
	}{
		{[]string{"a", "-n", "3", "b"}, []string{"a", "b"}, 3, nil},
		{[]string{"-n", "2", "a", "--set", "x=1", "b", "--set", "y=2"}, []string{"a", "b"}, 2, []string{"x=1", "y=2"}},
		{[]string{"a", "--", "-n", "b"}, []string{"a", "-n", "b"}, 0, nil},
		{nil, nil, 0, nil},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		n := fs.Int("n", 0, "")
		var l listFlag
		fs.Var(&l, "set", "")
		pos, err := parseInterleaved(fs, tc.args)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if !slices.Equal(pos, tc.wantPos) || *n != tc.wantN || !slices.Equal(l, tc.wantList) {
			t.Errorf("%q: positional %q n %d set %q; want %q %d %q", tc.args, pos, *n, l, tc.wantPos, tc.wantN, tc.wantList)
		}
	}
}

func TestSplitBrokersAndKeyValues(t *testing.T) {
	if got := splitBrokers(" a:1, ,b:2,"); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Errorf("splitBrokers = %q", got)
	}
	kv, err := keyValues([]string{"retention.ms=1000", "cleanup.policy=compact=x", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	if *kv["retention.ms"] != "1000" || *kv["cleanup.policy"] != "compact=x" || *kv["empty"] != "" {
		t.Errorf("keyValues parsed %v", kv)
	}
	if _, err := keyValues([]string{"novalue"}); err == nil {
		t.Error("keyValues accepted a pair without =")
	}
	if _, _, err := newAdmin(" , "); err == nil {
		t.Error("newAdmin accepted an empty broker list")
	}
}
