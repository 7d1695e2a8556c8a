package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/riffle-stream/riffle/broker"
)

// The side-by-side benchmark (GitHub issue "Speed"):
//
//	RIFFLE_PERF_COMPARE=1 go test -run TestCompare -v -timeout 30m ./internal/perf
//
// It runs franz-go's kfake and a Riffle broker alternately, each as a child
// process of the test binary (re-executed with RIFFLE_PERF_CHILD set), and
// drives both with the same franz-go load from the test process: produce
// 1 KiB records with acks=all, consume them from the start, then e2e latency
// at 10,000 records/s. Each round starts fresh brokers on empty data
// directories, so both systems pay for creating their files. The whole
// sequence runs with fsync on every acknowledged write (kfake DataDir with
// SyncWrites against Riffle's default group commit) and again without
// (kfake DataDir alone against Riffle's page-cache mode), and the medians
// over the rounds are printed with the ratio Riffle / kfake and each
// figure's range across rounds, which shows how noisy the machine was.
//
// Running the brokers in child processes keeps their cost apart from the
// client's: broker CPU is utime+stime from /proc/<pid>/stat read before and
// after the produce phase (in USER_HZ ticks, 100 a second on Linux), divided
// by the gigabytes (10^9 bytes of record values) produced; peak RSS is
// VmHWM from /proc/<pid>/status at the end of the round.
//
// Environment, with defaults sized for a two-core machine (a full run takes
// about three minutes):
//
//	RIFFLE_PERF_ROUNDS       rounds per durability mode (5)
//	RIFFLE_PERF_RECORDS      records produced and consumed per round (500000)
//	RIFFLE_PERF_RECORD_SIZE  bytes per record value (1024)
//	RIFFLE_PERF_PARTITIONS   partitions of the benchmark topic (3)
//	RIFFLE_PERF_E2E_RATE     e2e records per second (10000)
//	RIFFLE_PERF_E2E_SECONDS  e2e duration per round (5)
const (
	childEnv    = "RIFFLE_PERF_CHILD"
	childDirEnv = "RIFFLE_PERF_CHILD_DIR"
)

func TestMain(m *testing.M) {
	if kind := os.Getenv(childEnv); kind != "" {
		if err := runChild(kind, os.Getenv(childDirEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "perf child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// system is one broker implementation under comparison.
type system string

const (
	riffle   system = "riffle"
	kfakeSys system = "kfake"
)

// runChild serves one broker on a loopback port until SIGTERM, announcing
// its address on stdout as "listening <addr>".
func runChild(kind, dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	sys, mode, ok := strings.Cut(kind, "/")
	if !ok || (mode != "fsync" && mode != "nofsync") {
		return fmt.Errorf("unknown child kind %q", kind)
	}
	switch system(sys) {
	case riffle:
		policy := broker.SyncGroupCommit
		if mode == "nofsync" {
			policy = broker.SyncNone
		}
		b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir), broker.Sync(policy),
			broker.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))))
		if err != nil {
			return fmt.Errorf("new riffle broker: %w", err)
		}
		if err := b.Start(ctx); err != nil {
			return fmt.Errorf("start riffle broker: %w", err)
		}
		fmt.Printf("listening %s\n", b.Addr())
		<-ctx.Done()
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return b.Close(closeCtx)
	case kfakeSys:
		opts := []kfake.Opt{kfake.NumBrokers(1), kfake.DataDir(dir)}
		if mode == "fsync" {
			opts = append(opts, kfake.SyncWrites())
		}
		c, err := kfake.NewCluster(opts...)
		if err != nil {
			return fmt.Errorf("new kfake cluster: %w", err)
		}
		fmt.Printf("listening %s\n", c.ListenAddrs()[0])
		<-ctx.Done()
		c.Close()
		return nil
	}
	return fmt.Errorf("unknown system %q", sys)
}

// child is a broker running in a child process.
type child struct {
	cmd     *exec.Cmd
	addr    string
	dir     string        // data directory, removed when the child stops
	exited  chan struct{} // closed once the child has been waited for
	waitErr error         // the child's exit status, set before exited closes
	stopped bool
}

// firstLine captures the first line written to it and discards the rest.
type firstLine struct {
	buf  []byte
	line chan string
}

func (w *firstLine) Write(p []byte) (int, error) {
	if w.line == nil {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
		w.line <- string(w.buf[:i])
		w.line, w.buf = nil, nil
	}
	return len(p), nil
}

func startChild(t *testing.T, sys system, mode string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Each child gets its own data directory, removed as soon as it stops
	// rather than at the end of the test, so rounds do not pile up on disk.
	dir, err := os.MkdirTemp("", "riffle-perf-"+string(sys)+"-")
	if err != nil {
		t.Fatal(err)
	}
	announced := make(chan string, 1)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(sys)+"/"+mode, childDirEnv+"="+dir)
	cmd.Stdout = &firstLine{line: announced}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s child: %v", sys, err)
	}
	c := &child{cmd: cmd, dir: dir, exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() { c.stop(t) })
	select {
	case line := <-announced:
		addr, ok := strings.CutPrefix(line, "listening ")
		if !ok {
			t.Fatalf("%s child announced %q, want \"listening <addr>\"", sys, line)
		}
		c.addr = addr
	case <-c.exited:
		t.Fatalf("%s child exited before listening: %v", sys, c.waitErr)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s child did not announce its address within 30s", sys)
	}
	return c
}

// stop sends the child SIGTERM, waits for it to exit (killing it after 30s)
// and removes its data directory.
func (c *child) stop(t *testing.T) {
	if c.stopped {
		return
	}
	c.stopped = true
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("signal child %d: %v", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.exited:
		if c.waitErr != nil {
			t.Errorf("child %d exited: %v", c.cmd.Process.Pid, c.waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("child %d did not exit within 30s of SIGTERM; killing it", c.cmd.Process.Pid)
		if err := c.cmd.Process.Kill(); err != nil {
			t.Errorf("kill child %d: %v", c.cmd.Process.Pid, err)
		}
		<-c.exited
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("remove child data: %v", err)
	}
}

// cpuSeconds reads the child's user plus system CPU time.
func (c *child) cpuSeconds() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read child stat: %w", err)
	}
	// The command name in parentheses may contain spaces; fields after it
	// start at state (field 3), so utime and stime (14, 15) are at 11, 12.
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", b)
	}
	var ticks float64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat field %q: %w", f, err)
		}
		ticks += float64(n)
	}
	const userHZ = 100
	return ticks / userHZ, nil
}

// peakRSS reads the child's high-water resident set size in bytes.
func (c *child) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read child status: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", c.cmd.Process.Pid)
}

// compareConfig is the benchmark's load, read from the environment.
type compareConfig struct {
	rounds, partitions  int
	records, recordSize int
	e2eRate             float64
	e2eDuration         time.Duration
}

func loadCompareConfig(t *testing.T) compareConfig {
	get := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive integer", name, v)
		}
		return n
	}
	return compareConfig{
		rounds:      get("RIFFLE_PERF_ROUNDS", 5),
		records:     get("RIFFLE_PERF_RECORDS", 500_000),
		recordSize:  get("RIFFLE_PERF_RECORD_SIZE", 1024),
		partitions:  get("RIFFLE_PERF_PARTITIONS", 3),
		e2eRate:     float64(get("RIFFLE_PERF_E2E_RATE", 10_000)),
		e2eDuration: time.Duration(get("RIFFLE_PERF_E2E_SECONDS", 5)) * time.Second,
	}
}

// figure is one measured quantity, with whether a higher value is better.
type figure struct {
	name   string
	higher bool
}

var figures = []figure{
	{"produce records/s", true},
	{"produce MB/s", true},
	{"consume records/s", true},
	{"consume MB/s", true},
	{"e2e p50 ms", false},
	{"e2e p99 ms", false},
	{"e2e p99.9 ms", false},
	{"e2e max ms", false},
	{"broker CPU s/GB produced", false},
	{"broker peak RSS MiB", false},
}

// measure runs one round against a fresh broker and returns its figures.
func measure(t *testing.T, sys system, mode string, cc compareConfig) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startChild(t, sys, mode)
	defer c.stop(t)
	load := []Opt{Brokers(c.addr), Topic("perf-compare"), Partitions(int32(cc.partitions)),
		RecordSize(cc.recordSize), WithAcks(AcksAll)}

	cpu0, err := c.cpuSeconds()
	if err != nil {
		t.Fatal(err)
	}
	prod, err := Produce(ctx, append(load, Records(int64(cc.records)))...)
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	cpu1, err := c.cpuSeconds()
	if err != nil {
		t.Fatal(err)
	}
	cons, err := Consume(ctx, load...)
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	if cons.Records != prod.Records {
		t.Fatalf("%s/%s: consumed %d records of %d produced", sys, mode, cons.Records, prod.Records)
	}
	// Linger 0: the latency measured is the broker's, not a batching delay.
	e2e, err := EndToEnd(ctx, append(load, Records(0), Duration(cc.e2eDuration), Rate(cc.e2eRate), Linger(0))...)
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	rss, err := c.peakRSS()
	if err != nil {
		t.Fatal(err)
	}
	l := e2e.Latency
	return map[string]float64{
		"produce records/s":        prod.RecordsPerSec(),
		"produce MB/s":             prod.MBPerSec(),
		"consume records/s":        cons.RecordsPerSec(),
		"consume MB/s":             cons.MBPerSec(),
		"e2e p50 ms":               ms(l.P50),
		"e2e p99 ms":               ms(l.P99),
		"e2e p99.9 ms":             ms(l.P999),
		"e2e max ms":               ms(l.Max),
		"broker CPU s/GB produced": (cpu1 - cpu0) / (float64(prod.Bytes) / 1e9),
		"broker peak RSS MiB":      float64(rss) / (1 << 20),
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func TestCompare(t *testing.T) {
	if os.Getenv("RIFFLE_PERF_COMPARE") == "" {
		t.Skip("set RIFFLE_PERF_COMPARE=1 to run the Riffle / kfake comparison")
	}
	cc := loadCompareConfig(t)
	fmt.Printf("Riffle vs kfake: %d rounds per mode, %d records of %d B acks=all over %d partitions, e2e %v at %.0f records/s\n",
		cc.rounds, cc.records, cc.recordSize, cc.partitions, cc.e2eDuration, cc.e2eRate)
	for _, mode := range []struct{ name, label string }{
		{"fsync", "fsync before acknowledging: kfake DataDir+SyncWrites, Riffle default group commit"},
		{"nofsync", "page cache only: kfake DataDir, Riffle --fsync none"},
	} {
		samples := map[system]map[string][]float64{riffle: {}, kfakeSys: {}}
		for round := range cc.rounds {
			order := []system{riffle, kfakeSys}
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, sys := range order {
				begin := time.Now()
				got := measure(t, sys, mode.name, cc)
				for k, v := range got {
					samples[sys][k] = append(samples[sys][k], v)
				}
				fmt.Printf("  round %d %-6s %-7s produce %8.0f rec/s  consume %8.0f rec/s  e2e p99 %7.2f ms  (%.1fs)\n",
					round+1, sys, mode.name, got["produce records/s"], got["consume records/s"], got["e2e p99 ms"], time.Since(begin).Seconds())
			}
		}
		fmt.Printf("\n%s (medians of %d rounds)\n", mode.label, cc.rounds)
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "figure\triffle\tkfake\triffle/kfake\tbetter\triffle min..max\tkfake min..max\t")
		for _, f := range figures {
			rs, ks := samples[riffle][f.name], samples[kfakeSys][f.name]
			r, k := median(rs), median(ks)
			better := "lower"
			if f.higher {
				better = "higher"
			}
			fmt.Fprintf(w, "%s\t%.2f\t%.2f\t%.2f\t%s\t%.2f..%.2f\t%.2f..%.2f\t\n",
				f.name, r, k, r/k, better, slices.Min(rs), slices.Max(rs), slices.Min(ks), slices.Max(ks))
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		fmt.Println()
	}
}
