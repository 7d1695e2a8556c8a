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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/kafkatest"
	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/topology"
)

// The Riffle Streams / Kafka Streams benchmark (GitHub issue 13):
//
//	RIFFLE_STREAMS_COMPARE=1 go test -count=1 -run TestStreamsCompare -v -timeout 60m ./internal/perf
//
// On one broker at a time (Riffle's broker in a child process with its
// default group-commit fsync, then Apache Kafka 4 from internal/kafkatest
// with its defaults and a 1 GiB heap, left out with a note when java or
// the Kafka jars are missing) the test produces the same seeded input once
// to a topic with 3 partitions: lines of words drawn uniformly from a
// fixed vocabulary. Then it runs the same word count, alternately with
// Riffle Streams and with Kafka Streams, each in a process of its own:
//
//   - Riffle Streams: the topology of examples/wordcount (flatMapValues
//     into words, groupBy word, count into a Pebble store, to the output
//     topic), in a child process of the test binary (re-executed with
//     RIFFLE_STREAMS_CHILD set);
//   - Kafka Streams 4.4: the same topology in
//     interop/java/src/test/java/riffle/interop/bench/WordCountApp.java,
//     counting into RocksDB, in a JVM with -Xmx1g. The test compiles it
//     with Maven (local repository .m2 at the root of the checkout, as
//     .ci/run fills it) and runs it with the classpath Maven reports.
//
// Both run at-least-once with one stream thread, a 30 s commit interval
// (the default of both under at-least-once) and no record cache (Riffle
// Streams has none; Kafka Streams gets statestore.cache.max.bytes=0), so
// both send every count update downstream and do the same work. Every run
// has a fresh application id, state directory and output topic, and reads
// the input from the earliest offset; its internal and output topics are
// deleted afterwards.
//
// A run's time goes from starting the process to reading, in the test
// process, the update that completes the final counts (checked against
// the counts the test computed while producing): it includes the
// process's start-up (the JVM's, and Kafka Streams' first rebalance).
// records/s is input lines over that time. CPU is the process's utime +
// stime when the final count arrived, peak RSS its VmHWM (for the JVM this
// includes code cache, metaspace and RocksDB's native memory besides the
// heap it touched). The medians over the rounds are printed with the
// ratios Riffle Streams / Kafka Streams and each figure's range.
//
// Environment:
//
//	RIFFLE_STREAMS_ROUNDS   runs of each application per broker (3)
//	RIFFLE_STREAMS_LINES    input lines (1000000)
//	RIFFLE_STREAMS_WORDS    words per line (8)
//	RIFFLE_STREAMS_BROKERS  brokers to run on, comma-separated (riffle,kafka)
const streamsChildEnv = "RIFFLE_STREAMS_CHILD"

// Settings both word counts share.
const (
	streamsPartitions     = 3
	streamsCommitInterval = 30 * time.Second
	streamsVocabulary     = 10_000
	streamsSeed           = 13
	streamsJavaHeap       = "1g"
	streamsRunTimeout     = 20 * time.Minute
)

// streamsApp is one stream-processing implementation under comparison.
type streamsApp string

const (
	riffleStreams streamsApp = "riffle-streams"
	kafkaStreams  streamsApp = "kafka-streams"
)

var streamsFigures = []figure{
	{"records/s", true},
	{"wall s", false},
	{"CPU s", false},
	{"CPU s per 1M records", false},
	{"peak RSS MiB", false},
}

func TestStreamsCompare(t *testing.T) {
	if os.Getenv("RIFFLE_STREAMS_COMPARE") == "" {
		t.Skip("set RIFFLE_STREAMS_COMPARE=1 to run the Riffle Streams / Kafka Streams comparison")
	}
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
	rounds, lines, words := get("RIFFLE_STREAMS_ROUNDS", 3), get("RIFFLE_STREAMS_LINES", 1_000_000), get("RIFFLE_STREAMS_WORDS", 8)
	javaCP := kafkaStreamsClasspath(t)
	brokerNames := "riffle,kafka"
	if v := os.Getenv("RIFFLE_STREAMS_BROKERS"); v != "" {
		brokerNames = v
	}
	apps := []streamsApp{riffleStreams, kafkaStreams}
	fmt.Printf("word count: %d lines of %d words (vocabulary %d, seed %d) over %d partitions, %d rounds per broker, load average %s\n",
		lines, words, streamsVocabulary, streamsSeed, streamsPartitions, rounds, loadAverage())
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
		input := "wordcount-input"
		truth, total := produceWordLines(t, srv.address(), input, lines, words)
		samples := map[system]map[string][]float64{}
		for _, app := range apps {
			samples[system(app)] = map[string][]float64{}
		}
		for round := range rounds {
			order := apps
			if round%2 == 1 {
				order = []streamsApp{apps[1], apps[0]}
			}
			for _, app := range order {
				got := runWordCount(t, app, srv.address(), input, javaCP, lines, total, truth)
				for k, v := range got {
					samples[system(app)][k] = append(samples[system(app)][k], v)
				}
				fmt.Printf("  broker %-6s round %d %-14s %8.0f lines/s  %6.1f s  CPU %6.1f s  peak RSS %6.0f MiB  (load %s)\n",
					name, round+1, app, got["records/s"], got["wall s"], got["CPU s"], got["peak RSS MiB"], loadAverage())
			}
		}
		fmt.Printf("\non broker %s (medians of %d rounds; records are input lines)\n", name, rounds)
		systems := []system{system(apps[0]), system(apps[1])}
		if err := printMedians(os.Stdout, systems, samples, streamsFigures); err != nil {
			t.Fatal(err)
		}
		fmt.Println()
		srv.stop(t)
	}
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

// produceWordLines creates topic and writes lines of words lines to it,
// drawn from a seeded generator, returning every word's count and the
// number of words.
func produceWordLines(t *testing.T, addr, topic string, lines, words int) (map[string]int64, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(5*time.Millisecond), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	createTopic(t, ctx, kadm.NewClient(cl), topic)
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

func createTopic(t *testing.T, ctx context.Context, adm *kadm.Client, topic string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctx, streamsPartitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// runWordCount runs one word count of input with app until its output
// holds the final counts, and returns its figures.
func runWordCount(t *testing.T, app streamsApp, addr, input, javaCP string, lines int, total int64, truth map[string]int64) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamsRunTimeout)
	defer cancel()
	id := fmt.Sprintf("%s-%d", app, time.Now().UnixNano())
	output := id + "-counts"
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(output),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	createTopic(t, ctx, adm, output)
	stateDir, err := os.MkdirTemp("", "riffle-streams-bench-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(stateDir)

	var cmd *exec.Cmd
	switch app {
	case riffleStreams:
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd = exec.Command(exe)
		cmd.Env = append(os.Environ(), streamsChildEnv+"="+strings.Join([]string{addr, input, output, id, stateDir}, " "))
	case kafkaStreams:
		cmd = exec.Command("java", "-Xmx"+streamsJavaHeap, "-cp", javaCP, "riffle.interop.bench.WordCountApp",
			addr, input, output, id, stateDir, strconv.FormatInt(streamsCommitInterval.Milliseconds(), 10))
	}
	logPath := filepath.Join(stateDir, "app.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", app, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(format string, args ...any) {
		t.Helper()
		cmd.Process.Kill()
		<-exited
		log, _ := os.ReadFile(logPath)
		t.Fatalf("%s: %s\nits output:\n%s", app, fmt.Sprintf(format, args...), lastLines(string(log), 60))
	}

	counts := make(map[string]int64, len(truth))
	var sum int64
	for sum < total {
		select {
		case err := <-exited:
			exited <- err
			fail("exited before the counts were final: %v", err)
		default:
		}
		pollCtx, cancelPoll := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(pollCtx)
		cancelPoll()
		if ctx.Err() != nil {
			fail("counted %d of %d words within %v", sum, total, streamsRunTimeout)
		}
		var bad error
		fetches.EachRecord(func(r *kgo.Record) {
			if len(r.Value) != 8 {
				bad = fmt.Errorf("count of %q is %d bytes, want 8", r.Key, len(r.Value))
				return
			}
			n := int64(binary.BigEndian.Uint64(r.Value))
			sum += n - counts[string(r.Key)]
			counts[string(r.Key)] = n
		})
		if bad != nil {
			fail("%v", bad)
		}
	}
	elapsed := time.Since(began)
	cpu, err := cpuSeconds(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rss, err := peakRSS(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for w, want := range truth {
		if counts[w] != want {
			fail("count of %q is %d, want %d", w, counts[w], want)
		}
	}
	if len(counts) != len(truth) {
		fail("counted %d distinct words, want %d", len(counts), len(truth))
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop %s: %v", app, err)
	}
	select {
	case err := <-exited:
		// A JVM stopped by SIGTERM exits with 143 once its shutdown hooks ran.
		var exit *exec.ExitError
		if err != nil && !(app == kafkaStreams && errors.As(err, &exit) && exit.ExitCode() == 143) {
			log, _ := os.ReadFile(logPath)
			t.Errorf("%s exited: %v\n%s", app, err, lastLines(string(log), 60))
		}
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not exit within 60s of SIGTERM; killing it", app)
		cmd.Process.Kill()
		<-exited
	}
	deleteAppTopics(t, adm, id)
	return map[string]float64{
		"records/s":            float64(lines) / elapsed.Seconds(),
		"wall s":               elapsed.Seconds(),
		"CPU s":                cpu,
		"CPU s per 1M records": cpu / (float64(lines) / 1e6),
		"peak RSS MiB":         float64(rss) / (1 << 20),
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
// is "<broker> <input> <output> <application id> <state dir>".
func runWordCountChild(spec string) error {
	f := strings.Fields(spec)
	if len(f) != 5 {
		return fmt.Errorf("%s=%q: want 5 fields", streamsChildEnv, spec)
	}
	top, err := wordCountTopology(f[1], f[2])
	if err != nil {
		return err
	}
	app, err := streams.New(top,
		streams.ApplicationID(f[3]),
		streams.Brokers(f[0]),
		streams.StateDir(f[4]),
		streams.CommitInterval(streamsCommitInterval),
		streams.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := app.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// wordCountTopology is examples/wordcount's Topology: split lines into
// words, re-key by word, count per word, write the counts as int64s.
func wordCountTopology(input, output string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{input})
	words := topology.FlatMapValues(lines, func(_, line string) []string {
		return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		})
	})
	counts := topology.GroupBy(words, func(_, word string) string { return word }).
		Count(topology.Materialized("counts"))
	counts.ToStream().To(output)
	return b.Build()
}
