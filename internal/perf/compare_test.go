package perf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	"github.com/riffle-stream/riffle/internal/kafkatest"
	"github.com/riffle-stream/riffle/internal/testenv"
)

// The side-by-side benchmark (GitHub issues "Speed" and 13):
//
//	RIFFLE_PERF_COMPARE=1 go test -run TestCompare -v -timeout 60m ./internal/perf
//
// It runs a Riffle broker, franz-go's kfake and Apache Kafka 4 alternately,
// each in its own process: Riffle and kfake as child processes of the test
// binary (re-executed with RIFFLE_PERF_CHILD set), Kafka as a JVM in KRaft
// combined mode started by internal/kafkatest (skipped with a note when
// java or the Kafka jars are missing; see that package). The same franz-go
// load drives all three from the test process: produce 1 KiB records with
// acks=all, consume them from the start, then e2e latency at 10,000
// records/s. Each round starts fresh brokers on empty data directories, so
// every system pays for creating its files, and the order of the systems
// rotates from round to round.
//
// The whole sequence runs twice, with the durability each system offers:
//
//   - fsync before acknowledging: kfake DataDir with SyncWrites, Riffle's
//     default group commit, Kafka with log.flush.interval.messages=1 (the
//     broker-wide flush.messages=1: every append is fsynced before the
//     produce request is answered);
//   - page cache only: kfake DataDir alone, Riffle --fsync none, and Kafka's
//     defaults (Kafka never fsyncs on the produce path by default; it relies
//     on replication, which a single broker does not have).
//
// Kafka's JVM gets a 1 GiB heap (-Xms1g -Xmx1g, what kafka-server-start.sh
// gives it) and the G1 options of kafka-run-class.sh
// (kafkatest.PerformanceJVMOptions); its peak RSS includes the JVM's code
// cache, metaspace and direct buffers as well as the heap it touched.
//
// The medians over the rounds are printed with the ratios Riffle / kfake
// and Riffle / Kafka and each figure's range across rounds, which shows how
// noisy the machine was.
//
// Running the brokers in their own processes keeps their cost apart from
// the client's: broker CPU is utime+stime from /proc/<pid>/stat read before
// and after the produce phase and after the consume phase (in USER_HZ
// ticks, 100 a second on Linux), divided by the gigabytes (10^9 bytes of
// record values) produced or consumed; peak RSS
// is VmHWM from /proc/<pid>/status at the end of the round.
//
// Environment, with defaults sized for a two-core machine:
//
//	RIFFLE_PERF_ROUNDS       rounds per durability mode (5)
//	RIFFLE_PERF_RECORDS      records produced and consumed per round (500000)
//	RIFFLE_PERF_RECORD_SIZE  bytes per record value (1024)
//	RIFFLE_PERF_PARTITIONS   partitions of the benchmark topic (3)
//	RIFFLE_PERF_E2E_RATE     e2e records per second (10000)
//	RIFFLE_PERF_E2E_SECONDS  e2e duration per round (5)
//	RIFFLE_PERF_SYSTEMS      systems to compare, comma-separated (riffle,kfake,kafka)
//	RIFFLE_PERF_WARMUP       records produced to another topic before measuring (0)
//
// RIFFLE_PERF_WARMUP lets the JVM compile Kafka's hot paths before the
// measured phases (every system gets the same warm-up); without it each
// round measures a cold broker, which costs Kafka's JIT more the fewer
// records a round has.
const (
	childEnv    = "RIFFLE_PERF_CHILD"
	childDirEnv = "RIFFLE_PERF_CHILD_DIR"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(streamsChildEnv); spec != "" {
		if err := runWordCountChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "streams child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
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
	kafkaSys system = "kafka"
)

// kafkaHeap is the heap of the Kafka broker under comparison: what
// kafka-server-start.sh gives it (KAFKA_HEAP_OPTS="-Xmx1G -Xms1G").
const kafkaHeap = "1g"

// server is a broker under measurement, running in a process of its own.
type server interface {
	address() string
	pid() int
	stop(t *testing.T)
}

// startServer starts a fresh broker of system sys in durability mode
// (fsync or nofsync) for the rest of the test.
func startServer(t *testing.T, sys system, mode string) server {
	t.Helper()
	if sys != kafkaSys {
		return startChild(t, sys, mode)
	}
	cp, err := kafkatest.Classpath()
	if err != nil {
		t.Fatal(err)
	}
	opts := []kafkatest.Option{kafkatest.Heap(kafkaHeap), kafkatest.JVMOptions(kafkatest.PerformanceJVMOptions...)}
	if mode == "fsync" {
		opts = append(opts, kafkatest.Config("log.flush.interval.messages", "1"))
	}
	b, err := kafkatest.Launch(cp, opts...)
	if err != nil {
		t.Fatal(err)
	}
	k := &kafkaServer{b: b}
	t.Cleanup(func() { k.stop(t) })
	return k
}

// kafkaServer is an Apache Kafka broker's JVM.
type kafkaServer struct{ b *kafkatest.Broker }

func (k *kafkaServer) address() string { return k.b.Addr() }
func (k *kafkaServer) pid() int        { return k.b.Pid() }
func (k *kafkaServer) stop(t *testing.T) {
	if err := k.b.Stop(); err != nil {
		t.Errorf("stop kafka: %v", err)
	}
}

// compareSystems returns the systems RIFFLE_PERF_SYSTEMS names (all three
// by default), leaving Kafka out with a note when it cannot run here.
func compareSystems(t *testing.T) []system {
	names := "riffle,kfake,kafka"
	if v := os.Getenv("RIFFLE_PERF_SYSTEMS"); v != "" {
		names = v
	}
	var out []system
	for _, n := range strings.Split(names, ",") {
		sys := system(strings.TrimSpace(n))
		switch sys {
		case riffle, kfakeSys:
		case kafkaSys:
			if _, err := kafkatest.Classpath(); err != nil {
				fmt.Printf("Apache Kafka left out: %v\n", err)
				continue
			}
		default:
			t.Fatalf("RIFFLE_PERF_SYSTEMS: unknown system %q (want riffle, kfake or kafka)", sys)
		}
		out = append(out, sys)
	}
	if len(out) == 0 {
		t.Fatal("no system to compare")
	}
	// Riffle first: the ratios are Riffle over each other system.
	if i := slices.Index(out, riffle); i > 0 {
		out = append([]system{riffle}, slices.Delete(out, i, i+1)...)
	}
	return out
}

// runChild serves one broker on a loopback port until SIGTERM, announcing
// its address on stdout as "listening <addr>"; a Riffle broker also serves
// its HTTP handler (metrics) and adds that URL: "listening <addr> <url>".
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
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen for metrics: %w", err)
		}
		srv := &http.Server{Handler: b.HTTPHandler()}
		go srv.Serve(ln)
		fmt.Printf("listening %s http://%s\n", b.Addr(), ln.Addr())
		<-ctx.Done()
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return errors.Join(srv.Shutdown(closeCtx), b.Close(closeCtx))
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
	httpURL string        // the Riffle broker's HTTP handler; empty for kfake
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
		addrs, ok := strings.CutPrefix(line, "listening ")
		if !ok {
			t.Fatalf("%s child announced %q, want \"listening <addr>\"", sys, line)
		}
		c.addr, c.httpURL, _ = strings.Cut(addrs, " ")
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

func (c *child) address() string { return c.addr }
func (c *child) pid() int        { return c.cmd.Process.Pid }

// cpuSeconds reads a process's user plus system CPU time.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
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

// peakRSS reads a process's high-water resident set size in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// compareConfig is the benchmark's load, read from the environment.
type compareConfig struct {
	rounds, partitions  int
	records, recordSize int
	warmup              int
	e2eRate             float64
	e2eDuration         time.Duration
}

func loadCompareConfig(t *testing.T) compareConfig {
	warmup := 0
	if os.Getenv("RIFFLE_PERF_WARMUP") != "" {
		warmup = testenv.Int(t, "RIFFLE_PERF_WARMUP", 0)
	}
	return compareConfig{
		warmup:      warmup,
		rounds:      testenv.Int(t, "RIFFLE_PERF_ROUNDS", 5),
		records:     testenv.Int(t, "RIFFLE_PERF_RECORDS", 500_000),
		recordSize:  testenv.Int(t, "RIFFLE_PERF_RECORD_SIZE", 1024),
		partitions:  testenv.Int(t, "RIFFLE_PERF_PARTITIONS", 3),
		e2eRate:     float64(testenv.Int(t, "RIFFLE_PERF_E2E_RATE", 10_000)),
		e2eDuration: time.Duration(testenv.Int(t, "RIFFLE_PERF_E2E_SECONDS", 5)) * time.Second,
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
	{"fetch records/s", true},
	{"records per batch", true},
	{"e2e p50 ms", false},
	{"e2e p99 ms", false},
	{"e2e p99.9 ms", false},
	{"e2e max ms", false},
	{"broker CPU s/GB produced", false},
	{"broker CPU s/GB consumed", false},
	{"broker CPU s/GB fetched", false},
	{"broker peak RSS MiB", false},
}

// measure runs one round against a fresh broker and returns its figures.
func measure(t *testing.T, sys system, mode string, cc compareConfig) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := startServer(t, sys, mode)
	defer c.stop(t)
	load := []Opt{Brokers(c.address()), Topic("perf-compare"), Partitions(int32(cc.partitions)),
		RecordSize(cc.recordSize), WithAcks(AcksAll)}

	if cc.warmup > 0 {
		warm := []Opt{Brokers(c.address()), Topic("perf-warmup"), Partitions(int32(cc.partitions)),
			RecordSize(cc.recordSize), WithAcks(AcksAll), Records(int64(cc.warmup))}
		if _, err := Produce(ctx, warm...); err != nil {
			t.Fatalf("%s/%s: warm-up: %v", sys, mode, err)
		}
	}
	cpu0, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	prod, err := Produce(ctx, append(load, Records(int64(cc.records)))...)
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	cpu1, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	cons, err := Consume(ctx, load...)
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	cpu2, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	if cons.Records != prod.Records {
		t.Fatalf("%s/%s: consumed %d records of %d produced", sys, mode, cons.Records, prod.Records)
	}
	fetched, err := fetchRaw(ctx, c.address(), "perf-compare")
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	cpu3, err := cpuSeconds(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	if fetched.records != prod.Records {
		t.Fatalf("%s/%s: fetched %d records of %d produced", sys, mode, fetched.records, prod.Records)
	}
	// Linger 0: the latency measured is the broker's, not a batching delay.
	e2e, err := EndToEnd(ctx, append(load, Records(0), Duration(cc.e2eDuration), Rate(cc.e2eRate), Linger(0))...)
	if err != nil {
		t.Fatalf("%s/%s: %v", sys, mode, err)
	}
	rss, err := peakRSS(c.pid())
	if err != nil {
		t.Fatal(err)
	}
	l := e2e.Latency
	return map[string]float64{
		"produce records/s":        prod.RecordsPerSec(),
		"produce MB/s":             prod.MBPerSec(),
		"consume records/s":        cons.RecordsPerSec(),
		"consume MB/s":             cons.MBPerSec(),
		"fetch records/s":          float64(fetched.records) / fetched.elapsed.Seconds(),
		"records per batch":        float64(fetched.records) / float64(fetched.batches),
		"e2e p50 ms":               ms(l.P50),
		"e2e p99 ms":               ms(l.P99),
		"e2e p99.9 ms":             ms(l.P999),
		"e2e max ms":               ms(l.Max),
		"broker CPU s/GB produced": (cpu1 - cpu0) / (float64(prod.Bytes) / 1e9),
		"broker CPU s/GB consumed": (cpu2 - cpu1) / (float64(cons.Bytes) / 1e9),
		"broker CPU s/GB fetched":  (cpu3 - cpu2) / (float64(cons.Bytes) / 1e9),
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
		t.Skip("set RIFFLE_PERF_COMPARE=1 to run the Riffle / kfake / Kafka comparison")
	}
	cc := loadCompareConfig(t)
	systems := compareSystems(t)
	fmt.Printf("%s: %d rounds per mode, %d records of %d B acks=all over %d partitions (after %d warm-up records), e2e %v at %.0f records/s\n",
		joinSystems(systems, " vs "), cc.rounds, cc.records, cc.recordSize, cc.partitions, cc.warmup, cc.e2eDuration, cc.e2eRate)
	for _, mode := range []struct{ name, label string }{
		{"fsync", "fsync before acknowledging: kfake DataDir+SyncWrites, Riffle default group commit, Kafka flush.messages=1"},
		{"nofsync", "page cache only: kfake DataDir, Riffle --fsync none, Kafka defaults"},
	} {
		samples := rounds(systems, cc.rounds, func(round int, sys system) map[string]float64 {
			begin := time.Now()
			got := measure(t, sys, mode.name, cc)
			fmt.Printf("  round %d %-6s %-7s produce %8.0f rec/s  consume %8.0f rec/s (%.2f CPU s/GB)  fetch %8.0f rec/s  e2e p99 %7.2f ms  (%.1fs)\n",
				round+1, sys, mode.name, got["produce records/s"], got["consume records/s"], got["broker CPU s/GB consumed"], got["fetch records/s"], got["e2e p99 ms"], time.Since(begin).Seconds())
			return got
		})
		fmt.Printf("\n%s (medians of %d rounds)\n", mode.label, cc.rounds)
		if err := printMedians(os.Stdout, systems, samples, figures); err != nil {
			t.Fatal(err)
		}
		fmt.Println()
	}
}

// rounds runs measure for every system in n rounds and collects the
// figures of each system, figure by figure. The order of the systems
// rotates every round, so that none always runs first (on a cold page
// cache) or last.
func rounds(systems []system, n int, measure func(round int, sys system) map[string]float64) map[system]map[string][]float64 {
	samples := make(map[system]map[string][]float64)
	for _, sys := range systems {
		samples[sys] = make(map[string][]float64)
	}
	for round := range n {
		shift := round % len(systems)
		for _, sys := range append(slices.Clone(systems[shift:]), systems[:shift]...) {
			for k, v := range measure(round, sys) {
				samples[sys][k] = append(samples[sys][k], v)
			}
		}
	}
	return samples
}

func joinSystems(systems []system, sep string) string {
	names := make([]string, len(systems))
	for i, s := range systems {
		names[i] = string(s)
	}
	return strings.Join(names, sep)
}

// printMedians writes one line per figure: each system's median, the
// ratio of the first system's median to each other's, and each system's
// range across rounds.
func printMedians(out io.Writer, systems []system, samples map[system]map[string][]float64, figures []figure) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := []string{"figure"}
	for _, s := range systems {
		header = append(header, string(s))
	}
	for _, s := range systems[1:] {
		header = append(header, string(systems[0])+"/"+string(s))
	}
	header = append(header, "better")
	for _, s := range systems {
		header = append(header, string(s)+" min..max")
	}
	fmt.Fprintln(w, strings.Join(header, "\t")+"\t")
	for _, f := range figures {
		row := []string{f.name}
		medians := make([]float64, len(systems))
		for i, s := range systems {
			medians[i] = median(samples[s][f.name])
			row = append(row, fmt.Sprintf("%.2f", medians[i]))
		}
		for i := range systems[1:] {
			row = append(row, fmt.Sprintf("%.2f", medians[0]/medians[i+1]))
		}
		better := "lower"
		if f.higher {
			better = "higher"
		}
		row = append(row, better)
		for _, s := range systems {
			xs := samples[s][f.name]
			row = append(row, fmt.Sprintf("%.2f..%.2f", slices.Min(xs), slices.Max(xs)))
		}
		fmt.Fprintln(w, strings.Join(row, "\t")+"\t")
	}
	return w.Flush()
}
