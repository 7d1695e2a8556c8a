package perf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/kafkatest"
	"github.com/riffle-stream/riffle/internal/testenv"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/topology"
)

// The Riffle Streams / Kafka Streams / goka benchmark (GitHub issues 13
// and 16):
//
//	RIFFLE_STREAMS_COMPARE=1 go test -count=1 -run TestStreamsCompare -v -timeout 60m ./internal/perf
//
// On one broker at a time (Riffle's broker in a child process with its
// default group-commit fsync, then Apache Kafka 4 from internal/kafkatest
// with its defaults and a 1 GiB heap, left out with a note when java or
// the Kafka jars are missing) the test produces the same seeded input once
// to a topic with 3 partitions: lines of words drawn uniformly from a
// fixed vocabulary. Then it runs the same word count with each
// application in turn, each in a process of its own:
//
//   - riffle-streams: the topology of examples/wordcount (flatMapValues
//     into words, groupBy word, count into a Pebble store, to the output
//     topic), in a child process of the test binary (re-executed with
//     RIFFLE_STREAMS_CHILD set), with one stream thread and the store's
//     write-back cache off;
//   - riffle-streams-cache: the same with the store's default 10 MiB
//     write-back cache (state.DefaultCacheMaxBytes, as in
//     examples/wordcount), which writes a word's count to Pebble and the
//     changelog once per commit instead of once per update; every update
//     is still sent downstream. Not like for like: not in the default run;
//   - riffle-streams-2threads: riffle-streams with Threads(2);
//   - riffle-streams-2x1: the same in two processes (two instances of the
//     application, one thread each, a state directory each);
//   - kafka-streams: Kafka Streams 4.4 with the same topology in
//     interop/java/src/test/java/riffle/interop/bench/WordCountApp.java,
//     counting into RocksDB, in a JVM with -Xmx1g. The test compiles it
//     with Maven (local repository .m2 at the root of the checkout, as
//     .ci/run fills it) and runs it with the classpath Maven reports;
//   - goka: github.com/lovoo/goka v1.1.14 (on IBM/sarama) in
//     internal/perf/gokawc, a module of its own that the test builds with
//     go build: one processor whose input callback sends each word to its
//     key through the group's loopback topic (goka's repartitioning) and
//     whose loop callback counts in the group table (its changelog topic,
//     goka's default LevelDB storage on disk) and emits every new count to
//     the output topic.
//
// All run at-least-once with a 30 s commit interval (the default of
// Riffle Streams and Kafka Streams under at-least-once; for goka sarama's
// offset auto-commit interval) and no record cache (goka has none, Riffle
// Streams' store gets state.WithCacheMaxBytes(0) and Kafka Streams
// statestore.cache.max.bytes=0), so all send every count update
// downstream and to the changelog, produce with acks=all and do the
// same work: one repartition write, one store write, one changelog write
// and one output record per word. Every run has a fresh application id
// (goka's group), state directory and output topic, and reads the input
// from the earliest offset; its internal and output topics are deleted
// afterwards.
//
// A run's time goes from starting the processes to reading, in the test
// process, the update that completes the final counts (checked against
// the counts the test computed while producing): it includes the
// processes' start-up (the JVM's, and the first rebalance). records/s is
// input lines over that time. CPU is the processes' utime + stime when the
// final count arrived, peak RSS the sum of their VmHWM (for the JVM this
// includes code cache, metaspace and RocksDB's native memory besides the
// heap it touched). broker CPU s is what the broker's process spent over
// the run's time, to tell whether the machine's cores were the limit.
// Each round runs every application once, in an order
// that rotates from round to round. The medians over the rounds are
// printed with the ratios of the first application to each other and each
// figure's range.
//
// Environment:
//
//	RIFFLE_STREAMS_ROUNDS      runs of each application per broker (3)
//	RIFFLE_STREAMS_WARMUP      runs of the first application per broker before
//	                           the rounds, not counted, so that Kafka's JIT has
//	                           compiled the paths a word count takes (0)
//	RIFFLE_STREAMS_LINES       input lines (1000000)
//	RIFFLE_STREAMS_WORDS       words per line (8)
//	RIFFLE_STREAMS_PARTITIONS  partitions of the input and output topics (3)
//	RIFFLE_STREAMS_BROKERS     brokers to run on, comma-separated (riffle,kafka)
//	RIFFLE_STREAMS_APPS        applications, comma-separated, the first
//	                           compared with the others (riffle-streams,kafka-streams,goka)
//	RIFFLE_STREAMS_CPUPROFILE  a directory for CPU profiles of the Riffle Streams children
//	RIFFLE_STREAMS_LOG         the level of the Riffle Streams children's log (error);
//	                           when set, the test logs every run's output
//
// Riffle Streams' thread scaling (issue 16) is the run
//
//	RIFFLE_STREAMS_COMPARE=1 RIFFLE_STREAMS_PARTITIONS=6 RIFFLE_STREAMS_BROKERS=riffle \
//	RIFFLE_STREAMS_APPS=riffle-streams,riffle-streams-2threads,riffle-streams-2x1 \
//	go test -count=1 -run TestStreamsCompare -v -timeout 60m ./internal/perf
const streamsChildEnv = "RIFFLE_STREAMS_CHILD"

// streamsProfileEnv names a directory into which every Riffle Streams
// child writes a CPU profile of its run, <application id>-<pid>.pprof.
const streamsProfileEnv = "RIFFLE_STREAMS_CPUPROFILE"

// Settings both word counts share.
const (
	streamsCommitInterval = 30 * time.Second
	streamsVocabulary     = 10_000
	streamsSeed           = 13
	streamsJavaHeap       = "1g"
	streamsRunTimeout     = 20 * time.Minute
)

// streamsApp is one stream-processing implementation under comparison.
type streamsApp string

const (
	riffleStreams           streamsApp = "riffle-streams"
	riffleStreamsCached     streamsApp = "riffle-streams-cache"
	riffleStreams2Threads   streamsApp = "riffle-streams-2threads"
	riffleStreams2Instances streamsApp = "riffle-streams-2x1"
	kafkaStreams            streamsApp = "kafka-streams"
	gokaStreams             streamsApp = "goka"
)

// streamsRun is what one run of the comparison needs besides its app.
type streamsRun struct {
	addr, input string
	brokerPid   int    // the broker's process, whose CPU time a run reports
	brokerURL   string // a Riffle broker's HTTP handler, whose request counts a run reports
	partitions  int
	javaCP      string // WordCountApp's classpath, for kafka-streams
	gokaExe     string // the built gokawc, for goka
	lines       int
	total       int64 // words
	truth       map[string]int64
}

var streamsFigures = []figure{
	{"records/s", true},
	{"wall s", false},
	{"CPU s", false},
	{"CPU s per 1M records", false},
	{"peak RSS MiB", false},
	{"broker CPU s", false},
}

func TestStreamsCompare(t *testing.T) {
	if os.Getenv("RIFFLE_STREAMS_COMPARE") == "" {
		t.Skip("set RIFFLE_STREAMS_COMPARE=1 to run the Riffle Streams / Kafka Streams / goka comparison")
	}
	rounds, lines, words := testenv.Int(t, "RIFFLE_STREAMS_ROUNDS", 3), testenv.Int(t, "RIFFLE_STREAMS_LINES", 1_000_000), testenv.Int(t, "RIFFLE_STREAMS_WORDS", 8)
	partitions := testenv.Int(t, "RIFFLE_STREAMS_PARTITIONS", 3)
	warmups := testenv.Int(t, "RIFFLE_STREAMS_WARMUP", 0)
	brokerNames := "riffle,kafka"
	if v := os.Getenv("RIFFLE_STREAMS_BROKERS"); v != "" {
		brokerNames = v
	}
	apps := []streamsApp{riffleStreams, kafkaStreams, gokaStreams}
	if v := os.Getenv("RIFFLE_STREAMS_APPS"); v != "" {
		apps = nil
		for _, name := range strings.Split(v, ",") {
			app := streamsApp(strings.TrimSpace(name))
			switch app {
			case riffleStreams, riffleStreamsCached, riffleStreams2Threads, riffleStreams2Instances, kafkaStreams, gokaStreams:
				apps = append(apps, app)
			default:
				t.Fatalf("RIFFLE_STREAMS_APPS: unknown application %q", app)
			}
		}
	}
	run := streamsRun{partitions: partitions, lines: lines}
	if slices.Contains(apps, kafkaStreams) {
		run.javaCP = kafkaStreamsClasspath(t)
	}
	if slices.Contains(apps, gokaStreams) {
		run.gokaExe = buildGoka(t)
	}
	fmt.Printf("word count: %d lines of %d words (vocabulary %d, seed %d) over %d partitions, %d rounds per broker after %d warm-up runs, %d CPUs, load average %s\n",
		lines, words, streamsVocabulary, streamsSeed, partitions, rounds, warmups, runtime.NumCPU(), loadAverage())
	for _, name := range strings.Split(brokerNames, ",") {
		var srv server
		switch sys := system(strings.TrimSpace(name)); sys {
		case riffle:
			srv = startServer(t, riffle, "fsync")
		case kafkaSys:
			if _, err := kafkatest.Classpath(); err != nil {
				fmt.Printf("Apache Kafka's broker left out: %v\n", err)
				continue
			}
			srv = startServer(t, kafkaSys, "nofsync")
		default:
			t.Fatalf("RIFFLE_STREAMS_BROKERS: unknown broker %q (want riffle or kafka)", sys)
		}
		run.addr, run.input, run.brokerPid = srv.address(), "wordcount-input", srv.pid()
		run.brokerURL = ""
		if c, ok := srv.(*child); ok {
			run.brokerURL = c.httpURL
		}
		run.truth, run.total = produceWordLines(t, run.addr, run.input, partitions, lines, words)
		samples := map[system]map[string][]float64{}
		for _, app := range apps {
			samples[system(app)] = map[string][]float64{}
		}
		for i := range warmups {
			got := runWordCount(t, apps[0], run)
			fmt.Printf("  broker %-6s warm-up %d %-21s %8.0f lines/s  (not counted)\n", name, i+1, apps[0], got["records/s"])
		}
		for round := range rounds {
			order := append(slices.Clone(apps[round%len(apps):]), apps[:round%len(apps)]...)
			for _, app := range order {
				got := runWordCount(t, app, run)
				for k, v := range got {
					samples[system(app)][k] = append(samples[system(app)][k], v)
				}
				fmt.Printf("  broker %-6s round %d %-23s %8.0f lines/s  %6.1f s  CPU %6.1f s  peak RSS %6.0f MiB  broker CPU %6.1f s  (load %s)\n",
					name, round+1, app, got["records/s"], got["wall s"], got["CPU s"], got["peak RSS MiB"], got["broker CPU s"], loadAverage())
			}
		}
		fmt.Printf("\non broker %s (medians of %d rounds; records are input lines)\n", name, rounds)
		systems := make([]system, len(apps))
		for i, app := range apps {
			systems[i] = system(app)
		}
		if err := printMedians(os.Stdout, systems, samples, streamsFigures); err != nil {
			t.Fatal(err)
		}
		fmt.Println()
		srv.stop(t)
	}
}

// buildGoka builds internal/perf/gokawc, a module of its own, into a
// temporary directory and returns the executable's path.
func buildGoka(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "gokawc")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = "gokawc"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build internal/perf/gokawc: %v\n%s", err, out)
	}
	return exe
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// kafkaStreamsClasspath compiles interop/java's test classes and returns
// the classpath that runs WordCountApp, or skips t without java or mvn.
func kafkaStreamsClasspath(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("java is not on the PATH (install a JDK 17 or newer)")
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		t.Skip("mvn is not on the PATH (install Apache Maven)")
	}
	module, err := filepath.Abs(filepath.Join("..", "..", "interop", "java"))
	if err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(module, "target", "wordcount-bench.classpath")
	cmd := exec.Command(mvn, "-q", "-B", "--no-transfer-progress", "-Dstyle.color=never",
		"-Dmaven.repo.local="+filepath.Join(module, "..", "..", ".m2"),
		"test-compile", "dependency:build-classpath", "-Dmdep.includeScope=test", "-Dmdep.outputFile="+cpFile)
	cmd.Dir = module
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compile interop/java: %v\n%s", err, out)
	}
	deps, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(module, "target", "test-classes") + string(os.PathListSeparator) + strings.TrimSpace(string(deps))
}

// produceWordLines creates topic with partitions partitions and writes
// lines of words lines to it,
// drawn from a seeded generator, returning every word's count and the
// number of words.
func produceWordLines(t *testing.T, addr, topic string, partitions, lines, words int) (map[string]int64, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, ctx, kadm.NewClient(cl), topic, partitions)
	vocab := make([]string, streamsVocabulary)
	for i := range vocab {
		vocab[i] = "w" + strconv.Itoa(i)
	}
	rng := rand.New(rand.NewPCG(streamsSeed, 0))
	truth := make(map[string]int64, len(vocab))
	var line []byte
	for range lines {
		line = line[:0]
		for j := range words {
			if j > 0 {
				line = append(line, ' ')
			}
			w := vocab[rng.IntN(len(vocab))]
			truth[w]++
			line = append(line, w...)
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: append([]byte(nil), line...)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce input: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	return truth, int64(lines) * int64(words)
}

func createTopic(t *testing.T, ctx context.Context, adm *kadm.Client, topic string, partitions int) {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, int32(partitions), -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// runWordCount runs one word count of r.input with app until its output
// holds the final counts, and returns its figures.
func runWordCount(t *testing.T, app streamsApp, r streamsRun) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamsRunTimeout)
	defer cancel()
	id := fmt.Sprintf("%s-%d", app, time.Now().UnixNano())
	output := id + "-counts"
	admCl, err := kgo.NewClient(kgo.SeedBrokers(r.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	createTopic(t, ctx, adm, output, r.partitions)
	// The consumer starts once the topic exists: one that asked for it
	// before would see it only at its next metadata refresh, up to
	// franz-go's metadata.min.age (5 s) later, which the run would count.
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.addr), kgo.ConsumeTopics(output),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	stateDir, err := os.MkdirTemp("", "riffle-streams-bench-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(stateDir)

	var cmds []*exec.Cmd
	riffleChild := func(threads, instance, cacheBytes int) *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(stateDir, strconv.Itoa(instance))
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), streamsChildEnv+"="+strings.Join([]string{r.addr, r.input, output, id, dir, strconv.Itoa(threads), strconv.Itoa(cacheBytes)}, " "))
		return cmd
	}
	switch app {
	case riffleStreams:
		cmds = append(cmds, riffleChild(1, 0, 0))
	case riffleStreamsCached:
		cmds = append(cmds, riffleChild(1, 0, state.DefaultCacheMaxBytes))
	case riffleStreams2Threads:
		cmds = append(cmds, riffleChild(2, 0, 0))
	case riffleStreams2Instances:
		cmds = append(cmds, riffleChild(1, 0, 0), riffleChild(1, 1, 0))
	case kafkaStreams:
		cmds = append(cmds, exec.Command("java", "-Xmx"+streamsJavaHeap, "-cp", r.javaCP, "riffle.interop.bench.WordCountApp",
			r.addr, r.input, output, id, stateDir, strconv.FormatInt(streamsCommitInterval.Milliseconds(), 10)))
	case gokaStreams:
		cmds = append(cmds, exec.Command(r.gokaExe,
			r.addr, r.input, output, id, stateDir, strconv.FormatInt(streamsCommitInterval.Milliseconds(), 10)))
	}
	logPath := filepath.Join(stateDir, "app.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	exited := make(chan error, len(cmds))
	running := 0
	kill := func() {
		for _, cmd := range cmds[:running] {
			cmd.Process.Kill()
		}
		for range running {
			<-exited
		}
		running = 0
	}
	fail := func(format string, args ...any) {
		t.Helper()
		kill()
		log, _ := os.ReadFile(logPath)
		t.Fatalf("%s: %s\nits output:\n%s", app, fmt.Sprintf(format, args...), lastLines(string(log), 60))
	}
	brokerBefore, err := cpuSeconds(r.brokerPid)
	if err != nil {
		t.Fatal(err)
	}
	var requestsBefore map[string]uint64
	if r.brokerURL != "" {
		requestsBefore = requestCounts(scrape(t, r.brokerURL))
	}
	began := time.Now()
	for _, cmd := range cmds {
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			fail("start: %v", err)
		}
		running++
		go func() { exited <- cmd.Wait() }()
	}

	counts := make(map[string]int64, len(r.truth))
	var sum int64
	for sum < r.total {
		select {
		case err := <-exited:
			running--
			fail("exited before the counts were final: %v", err)
		default:
		}
		pollCtx, cancelPoll := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(pollCtx)
		cancelPoll()
		if ctx.Err() != nil {
			fail("counted %d of %d words within %v", sum, r.total, streamsRunTimeout)
		}
		var bad error
		fetches.EachRecord(func(rec *kgo.Record) {
			if len(rec.Value) != 8 {
				bad = fmt.Errorf("count of %q is %d bytes, want 8", rec.Key, len(rec.Value))
				return
			}
			n := int64(binary.BigEndian.Uint64(rec.Value))
			sum += n - counts[string(rec.Key)]
			counts[string(rec.Key)] = n
		})
		if bad != nil {
			fail("%v", bad)
		}
	}
	elapsed := time.Since(began)
	brokerCPU, err := cpuSeconds(r.brokerPid)
	if err != nil {
		fail("%v", err)
	}
	if r.brokerURL != "" {
		fmt.Printf("    %s: broker requests %s\n", app, requestsSince(requestsBefore, requestCounts(scrape(t, r.brokerURL))))
	}
	var cpu float64
	var rss int64
	for _, cmd := range cmds {
		c, err := cpuSeconds(cmd.Process.Pid)
		if err != nil {
			fail("%v", err)
		}
		m, err := peakRSS(cmd.Process.Pid)
		if err != nil {
			fail("%v", err)
		}
		cpu, rss = cpu+c, rss+m
	}
	for w, want := range r.truth {
		if counts[w] != want {
			fail("count of %q is %d, want %d", w, counts[w], want)
		}
	}
	if len(counts) != len(r.truth) {
		fail("counted %d distinct words, want %d", len(counts), len(r.truth))
	}

	for _, cmd := range cmds {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			fail("stop: %v", err)
		}
	}
	stopped := time.After(60 * time.Second)
	for running > 0 {
		select {
		case err := <-exited:
			running--
			// A JVM stopped by SIGTERM exits with 143 once its shutdown hooks ran.
			var exit *exec.ExitError
			if err != nil && !(app == kafkaStreams && errors.As(err, &exit) && exit.ExitCode() == 143) {
				log, _ := os.ReadFile(logPath)
				t.Errorf("%s exited: %v\n%s", app, err, lastLines(string(log), 60))
			}
		case <-stopped:
			t.Errorf("%s did not exit within 60s of SIGTERM; killing it", app)
			kill()
		}
	}
	if os.Getenv("RIFFLE_STREAMS_LOG") != "" {
		log, _ := os.ReadFile(logPath)
		t.Logf("%s's output:\n%s", app, log)
	}
	deleteAppTopics(t, adm, id)
	return map[string]float64{
		"records/s":            float64(r.lines) / elapsed.Seconds(),
		"wall s":               elapsed.Seconds(),
		"CPU s":                cpu,
		"CPU s per 1M records": cpu / (float64(r.lines) / 1e6),
		"peak RSS MiB":         float64(rss) / (1 << 20),
		"broker CPU s":         brokerCPU - brokerBefore,
	}
}

// deleteAppTopics deletes the output and internal topics of application
// id, so that rounds do not pile up on the broker's disk.
func deleteAppTopics(t *testing.T, adm *kadm.Client, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Errorf("list topics: %v", err)
		return
	}
	var names []string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, id+"-") {
			names = append(names, name)
		}
	}
	resps, err := adm.DeleteTopics(ctx, names...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Errorf("delete topics of %s: %v", id, err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runWordCountChild runs Riffle Streams' word count until SIGTERM; spec
// is "<broker> <input> <output> <application id> <state dir> <threads>
// <store cache bytes>".
func runWordCountChild(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 7 {
		return fmt.Errorf("%s=%q: want 7 fields", streamsChildEnv, spec)
	}
	threads, err := strconv.Atoi(f[5])
	if err != nil {
		return fmt.Errorf("%s=%q: threads: %w", streamsChildEnv, spec, err)
	}
	cacheBytes, err := strconv.Atoi(f[6])
	if err != nil {
		return fmt.Errorf("%s=%q: store cache: %w", streamsChildEnv, spec, err)
	}
	top, err := wordCountTopology(f[1], f[2], cacheBytes)
	if err != nil {
		return err
	}
	app, err := streams.New(top,
		streams.ApplicationID(f[3]),
		streams.Brokers(f[0]),
		streams.StateDir(f[4]),
		streams.Threads(threads),
		streams.CommitInterval(streamsCommitInterval),
		streams.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: childLogLevel()}))))
	if err != nil {
		return err
	}
	if dir := os.Getenv(streamsProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", f[3], os.Getpid())))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// wordCountTopology is examples/wordcount's Topology: split lines into
// words, re-key by word, count per word, write the counts as int64s. Its
// store's write-back cache holds cacheBytes (examples/wordcount has the
// default, state.DefaultCacheMaxBytes); with 0 every count update reaches
// the store and its changelog.
func wordCountTopology(input, output string, cacheBytes int) (*topology.Topology, error) {
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{input})
	words := topology.FlatMapValues(lines, func(_, line string) []string {
		return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		})
	})
	counts := topology.GroupBy(words, func(_, word string) string { return word }).
		Count(topology.Materialized("counts", state.WithCacheMaxBytes(cacheBytes)))
	counts.ToStream().To(output)
	return b.Build()
}

// childLogLevel is the level of the Riffle Streams children's log: that
// of RIFFLE_STREAMS_LOG (debug, info, warn or error), error by default.
func childLogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("RIFFLE_STREAMS_LOG"))); err != nil {
		return slog.LevelError
	}
	return l
}
