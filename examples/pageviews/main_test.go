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

// viewLine renders a view t0+offset milliseconds.
func viewLine(offsetMs int64, user, page string) string {
	return fmt.Sprintf("view %d %s %s\n", t0+offsetMs, user, page)
}

// pageInput, with -window 1m -grace 10s (the defaults). The tables are
// loaded before any view: frank's second row replaces his first; dave's
// region is not in the regions table and erin has no row, so their views
// count for "unknown". W0 = [t0, t0+60s) closes when stream time (the
// largest view timestamp so far) reaches t0+70s, W1 = [t0+60s, t0+120s) at
// t0+130s.
//
//	view            stream time  effect
//	t0+1s alice     t0+1s        W0 Europe=1
//	t0+2s bob       t0+2s        W0 Americas=1
//	t0+3s carol     t0+3s        W0 Asia=1
//	t0+4s dave      t0+4s        W0 unknown=1
//	t0+5s erin      t0+5s        W0 unknown=2
//	t0+30s alice    t0+30s       W0 Europe=2
//	t0+61s bob      t0+61s       W1 Americas=1
//	t0+50s frank    t0+61s       out of order, W0 still open: Americas=2
//	t0+70s alice    t0+70s       W1 Europe=1; W0 closes and is emitted
//	t0+59s carol    t0+70s       late for W0: dropped
//	t0+130s bob     t0+130s      W2 Americas=1; W1 closes and is emitted
//
// W2 is still open when the input ends: it has no final result.
var pageInput = "region eu Europe\nregion us Americas\nregion ap Asia\n" +
	"user alice eu\nuser bob us\nuser carol ap\nuser dave mars\nuser frank eu\n" +
	"\n" + // blank lines are skipped
	"user frank us\n" +
	viewLine(1_000, "alice", "/home") + viewLine(2_000, "bob", "/home") + viewLine(3_000, "carol", "/cart") +
	viewLine(4_000, "dave", "/home") + viewLine(5_000, "erin", "/home") + viewLine(30_000, "alice", "/cart") +
	viewLine(61_000, "bob", "/cart") + viewLine(50_000, "frank", "/home") + viewLine(70_000, "alice", "/home") +
	viewLine(59_000, "carol", "/home") + viewLine(130_000, "bob", "/home")

var pageWant = fmt.Sprintf(`%[1]d Americas 2
%[1]d Asia 1
%[1]d Europe 2
%[1]d unknown 2
%[2]d Americas 1
%[2]d Europe 1
`, t0, t0+60_000)

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

func TestPageViewsEmbedded(t *testing.T) {
	if got := runFile(t, pageInput); got != pageWant {
		t.Fatalf("output:\n%s\nwant:\n%s", got, pageWant)
	}
}

// TestPageViewsGrace: with no grace, W0 closes at t0+60s, so frank's view
// at t0+50s, read when stream time is t0+61s, is late for it too, and W1
// closes at t0+120s.
func TestPageViewsGrace(t *testing.T) {
	want := fmt.Sprintf("%[1]d Americas 1\n%[1]d Asia 1\n%[1]d Europe 2\n%[1]d unknown 2\n%[2]d Americas 1\n%[2]d Europe 1\n", t0, t0+60_000)
	if got := runFile(t, pageInput, "-grace", "0s"); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestPageViewsAgainstExternalCluster(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := runFile(t, pageInput, "-brokers", strings.Join(c.ListenAddrs(), ",")); got != pageWant {
		t.Fatalf("output:\n%s\nwant:\n%s", got, pageWant)
	}
}

func TestBadInput(t *testing.T) {
	for _, in := range []string{"view x alice /home\n", "view -5 alice /home\n", "user alice\n", "click 1 a b\n"} {
		if _, err := parse(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("parse(%q) = %v, want an error naming line 1", in, err)
		}
	}
	if _, _, err := parseArgs(nil); err == nil {
		t.Error("no -input was accepted")
	}
	if _, _, err := parseArgs([]string{"-input", "f", "-window", "0s"}); err == nil {
		t.Error("a zero window was accepted")
	}
}
