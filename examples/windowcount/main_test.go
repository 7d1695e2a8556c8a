package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// t0 is a minute boundary: 1699999980000 = 28333333 * 60000.
const t0 = 1_699_999_980_000

// line renders an input line t0+offset milliseconds.
func line(offsetMs int64, key string) string { return fmt.Sprintf("%d %s\n", t0+offsetMs, key) }

// tumblingInput, with -window 1m -advance 1m -grace 10s (the defaults).
// Windows are [start, start+60s) with starts at multiples of 60 s since the
// epoch; a window closes once stream time (the largest timestamp read so
// far) reaches its end + 10 s, and a record arriving for a closed window is
// dropped. W0 = [t0, t0+60s), W1 = [t0+60s, t0+120s), W2 = [t0+120s, ...).
//
//	line            stream time   effect
//	540000001 x     540000001     window 540000000 (9000 * 60000): x=1
//	t0+5s a         t0+5s         W0 a=1
//	t0+20s b        t0+20s        W0 b=1
//	t0+61s a        t0+61s        W1 a=1
//	t0+30s a        t0+61s        out of order; W0 closes at t0+70s: a=2
//	t0+68s b        t0+68s        W1 b=1
//	t0+59.999s b    t0+68s        W0 still open (68 < 70): b=2
//	t0+70s c        t0+70s        W1 c=1; stream time reaches 60+10: W0 closes
//	t0+45s a        t0+70s        late for W0 (60+10 <= 70): dropped
//	t0+60s a        t0+70s        a window's start is inclusive: W1 a=2
//	t0+130s a       t0+130s       W2 a=1; W1 closes (120+10 <= 130)
//	t0+119.999s b   t0+130s       late for W1: dropped
//	t0+125s b       t0+130s       W2 b=1
//	t0+10s c        t0+130s       late for W0: dropped
//	t0+121s Z       t0+130s       W2 Z=1
//
// Sorted by window start as a number (540000000 before t0, though not as
// text), then by key bytes ("Z" before "a").
var tumblingInput = "540000001 x\n" + line(5_000, "a") + line(20_000, "b") + line(61_000, "a") +
	line(30_000, "a") + line(68_000, "b") + line(59_999, "b") + line(70_000, "c") + line(45_000, "a") +
	"\n" + // blank lines are skipped
	line(60_000, "a") + line(130_000, "a") + line(119_999, "b") + line(125_000, "b") + line(10_000, "c") +
	line(121_000, "Z")

var tumblingWant = fmt.Sprintf(`540000000 x 1
%[1]d a 2
%[1]d b 2
%[2]d a 2
%[2]d b 1
%[2]d c 1
%[3]d Z 1
%[3]d a 1
%[3]d b 1
`, t0, t0+60_000, t0+120_000)

// hoppingInput, with -window 1m -advance 30s: windows of 60 s starting
// every 30 s, so each record falls in the two windows starting at
// floor(ts/30s)*30s - 30s and floor(ts/30s)*30s; grace 10 s.
//
//	line        stream time  windows (start offset: effect)
//	t0+35s a    t0+35s       0: a=1     30: a=1
//	t0+75s a    t0+75s       30: a=2    60: a=1     [0,60) closes (60+10 <= 75)
//	t0+50s a    t0+75s       0: late, dropped;      30: a=3
//	t0+100s b   t0+100s      60: b=1    90: b=1     [30,90) closes (90+10 <= 100)
//	t0+80s a    t0+100s      30: late, dropped;     60: a=2
var hoppingInput = line(35_000, "a") + line(75_000, "a") + line(50_000, "a") + line(100_000, "b") + line(80_000, "a")

var hoppingWant = fmt.Sprintf(`%d a 1
%d a 3
%[3]d a 2
%[3]d b 1
%d b 1
`, t0, t0+30_000, t0+60_000, t0+90_000)

func runFile(t *testing.T, input string, args ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "input.txt")
	if err := os.WriteFile(file, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, name, err := parseArgs(append([]string{"-input", file, "-state", t.TempDir()}, args...))
	if err != nil {
		t.Fatal(err)
	}
	cfg.logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, f, &out, cfg); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestTumblingEmbedded(t *testing.T) {
	if got := runFile(t, tumblingInput); got != tumblingWant {
		t.Fatalf("output:\n%s\nwant:\n%s", got, tumblingWant)
	}
}

func TestHoppingEmbedded(t *testing.T) {
	if got := runFile(t, hoppingInput, "-window", "1m", "-advance", "30s"); got != hoppingWant {
		t.Fatalf("output:\n%s\nwant:\n%s", got, hoppingWant)
	}
}

func TestAgainstExternalCluster(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := runFile(t, tumblingInput, "-brokers", strings.Join(c.ListenAddrs(), ",")); got != tumblingWant {
		t.Fatalf("output:\n%s\nwant:\n%s", got, tumblingWant)
	}
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{"12 a b\n", "x a\n", "-5 a\n"} {
		if _, err := parse(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("parse(%q) = %v, want an error naming line 1", in, err)
		}
	}
	if _, _, err := parseArgs(nil); err == nil {
		t.Error("no -input was accepted")
	}
	cfg, _, err := parseArgs([]string{"-input", "f", "-window", "5m"})
	if err != nil || cfg.windows.Advance() != 5*time.Minute {
		t.Errorf("advance without -advance = %v %v, want the window size", cfg.windows.Advance(), err)
	}
}
