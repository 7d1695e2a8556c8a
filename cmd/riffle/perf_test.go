package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/riffle-stream/riffle/internal/perf"
)

func TestPerfCommands(t *testing.T) {
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	common := []string{"--brokers", addr, "--topic", "load", "--record-size", "256"}

	run := func(terminal bool, args ...string) (map[string]any, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		o := &output{stdout: &stdout, stderr: &stderr, tty: terminal, width: 200}
		if err := execute(ctx, o, append(append([]string{"perf"}, args...), common...)); err != nil {
			t.Fatalf("perf %q: %v (stderr %q)", args, err, stderr.String())
		}
		if terminal {
			return nil, stdout.String()
		}
		var summary map[string]any
		if err := json.Unmarshal(stdout.Bytes(), &summary); err != nil {
			t.Fatalf("perf %q printed %q: %v", args, stdout.String(), err)
		}
		return summary, stdout.String()
	}

	prod, _ := run(false, "produce", "--output", "json", "--records", "3000", "--partitions", "2", "--compression", "snappy")
	if prod["records"] != 3000.0 || prod["bytes"] != 3000*256.0 || prod["mode"] != "produce" {
		t.Fatalf("produce summary %v", prod)
	}
	cons, _ := run(false, "consume", "--output", "json")
	if cons["records"] != 3000.0 {
		t.Fatalf("consume summary %v", cons)
	}
	e2e, _ := run(false, "e2e", "--output", "json", "--records", "1000", "--rate", "2000", "--linger", "0")
	lat, _ := e2e["latency"].(map[string]any)
	if e2e["records"] != 1000.0 || lat == nil || lat["count"] != 1000.0 || lat["p99_ms"].(float64) <= 0 {
		t.Fatalf("e2e summary %v", e2e)
	}

	// On a terminal a 1.5s run draws at least one progress bar before the summary.
	_, out := run(true, "produce", "--duration", "1500ms", "--rate", "1000", "--acks", "1")
	if !regexp.MustCompile(`\r\x1b\[K\[#+\.*\] +\d+% produce .* in flight`).MatchString(out) {
		t.Fatalf("no progress bar in %q", out)
	}
	if !strings.HasSuffix(out, "\n") || !strings.Contains(out, "records/s") {
		t.Fatalf("no summary line in %q", out)
	}
}

func TestProgressLine(t *testing.T) {
	p := perf.Progress{Mode: perf.ModeProduce, Elapsed: 2 * time.Second, Records: 250, RecordsPerSec: 125}
	if got := progressLine(p, 1000, 0, 0); !strings.HasPrefix(got, "[#####...............]  25% produce") {
		t.Errorf("a quarter of the records: %q", got)
	}
	if got := progressLine(p, 1000, 4*time.Second, 0); !strings.HasPrefix(got, "[##########..........]  50% ") {
		t.Errorf("half the duration, a quarter of the records: %q", got)
	}
	if got := progressLine(p, 0, 0, 0); !strings.HasPrefix(got, "produce ") {
		t.Errorf("no target: %q", got)
	}
	if got := progressLine(p, 100, 0, 30); utf8.RuneCountInString(got) != 29 || !strings.HasPrefix(got, "[####################] 100%") || !strings.HasSuffix(got, "…") {
		t.Errorf("past the target, cut to 30 columns: %q", got)
	}
}

func TestPerfUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{nil, {"fly"}, {"produce", "--acks", "2"}, {"produce", "extra"}, {"consume", "--compression", "brotli", "--brokers", "127.0.0.1:1"}} {
		if _, _, err := runCLI(ctx, append([]string{"perf"}, args...)...); err == nil {
			t.Errorf("perf %q succeeded", args)
		}
	}
}
