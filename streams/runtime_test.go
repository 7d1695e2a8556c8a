package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/topology"
)

const (
	inputTopic  = "lines"
	outputTopic = "word-counts"
	partitions  = 4
)

// cluster starts a broker for one test and returns its seed addresses.
type cluster func(t testing.TB) []string

func kfakeCluster(t testing.TB) []string {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, inputTopic, outputTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func testLogger(testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func words(line string) []string {
	return strings.FieldsFunc(strings.ToLower(line), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

func wordCount(t testing.TB) *topology.Topology {
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{inputTopic})
	topology.GroupBy(topology.FlatMapValues(lines, func(_, l string) []string { return words(l) }),
		func(_, w string) string { return w }).
		Count(topology.Materialized("counts")).
		ToStream().To(outputTopic)
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// produceLines writes n lines of wordsPerLine words drawn from a
// vocabulary and returns the true count per word.
// createWordCountTopics creates the input and output topics on the
// broker at addr.
func createWordCountTopics(t testing.TB, addr string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, topic := range []string{inputTopic, outputTopic} {
		resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s on %s: %v", topic, addr, err)
		}
	}
}

func produceLines(t testing.TB, brokers []string, n, wordsPerLine int) map[string]int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	truth := make(map[string]int64)
	var sb strings.Builder
	for i := range n {
		sb.Reset()
		for j := range wordsPerLine {
			w := fmt.Sprintf("Word%d", int(rng.ExpFloat64()*200)%1000)
			truth[strings.ToLower(w)]++
			if j > 0 {
				sb.WriteString([]string{" ", ", ", "--", "! "}[j%4])
			}
			sb.WriteString(w)
		}
		cl.Produce(context.Background(), &kgo.Record{Topic: inputTopic, Key: []byte(fmt.Sprint(i)), Value: []byte(sb.String())}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return truth
}

// latest reads topic from the start until done reports true for the latest
// value per key seen so far, or the deadline passes.
func latest(t testing.TB, brokers []string, topic string, timeout time.Duration, done func(map[string]int64) bool, observe ...func(*kgo.Record)) map[string]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	count := func(b []byte) (int64, error) { return serde.Int64().Deserialize(topic, b) }
	if strings.HasSuffix(topic, "-changelog") {
		// The changelog of a count holds Kafka Streams' timestamped layout.
		count = func(b []byte) (int64, error) {
			v, err := state.ValueAndTimestampSerde(serde.Int64()).Deserialize(topic, b)
			return v.Value, err
		}
	}
	got := make(map[string]int64)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			v, err := count(r.Value)
			if err != nil {
				t.Errorf("bad count for %q: %v", r.Key, err)
			}
			got[string(r.Key)] = v
			for _, o := range observe {
				o(r)
			}
		})
		if done(got) {
			return got
		}
	}
	return got
}

// readToEnd reads topic up to its current end offsets and returns the latest
// value per key.
func readToEnd(t testing.TB, brokers []string, topic string) map[string]int64 {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	remaining := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	return latest(t, brokers, topic, 30*time.Second, func(map[string]int64) bool { return len(remaining) == 0 },
		func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
}

func atLeast(truth map[string]int64) func(map[string]int64) bool {
	return func(got map[string]int64) bool {
		for w, n := range truth {
			if got[w] < n {
				return false
			}
		}
		return true
	}
}

func diff(truth, got map[string]int64) string {
	var out []string
	for w, n := range truth {
		if got[w] != n {
			out = append(out, fmt.Sprintf("%s: got %d want %d", w, got[w], n))
		}
		if len(out) > 5 {
			break
		}
	}
	return strings.Join(out, "; ")
}

type runningApp struct {
	app  *App
	done chan error
}

func startApp(t *testing.T, brokers []string, dir string, opts ...Option) *runningApp {
	t.Helper()
	app, err := New(wordCount(t), append([]Option{
		ApplicationID("wordcount"),
		Brokers(brokers...),
		StateDir(dir),
		CommitInterval(200 * time.Millisecond),
		Logger(testLogger(t)),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &runningApp{app: app, done: make(chan error, 1)}
	go func() { r.done <- app.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

var stopOnce sync.Map

func (r *runningApp) stop(t *testing.T) {
	if _, loaded := stopOnce.LoadOrStore(r, true); loaded {
		return
	}
	r.app.Close()
	if err := <-r.done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// crash stops the app without committing, flushing or checkpointing, as a
// killed process would.
func (r *runningApp) crash(t *testing.T) {
	r.app.mu.Lock()
	r.app.abort = true
	r.app.mu.Unlock()
	r.stop(t)
}

var clusters = map[string]cluster{"kfake": kfakeCluster}

func forEachCluster(t *testing.T, fn func(t *testing.T, brokers []string)) {
	for name, start := range clusters {
		t.Run(name, func(t *testing.T) { fn(t, start(t)) })
	}
}

func TestWordCountTwoInstances(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		a := startApp(t, brokers, t.TempDir())
		b := startApp(t, brokers, t.TempDir(), Threads(2))
		waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
			return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0
		})
		truth := produceLines(t, brokers, 20000, 10)
		got := latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		if d := diff(truth, got); d != "" {
			t.Fatalf("counts differ from the truth: %s", d)
		}
		ma, mb := a.app.Metrics(), b.app.Metrics()
		if ma.RecordsProcessed == 0 || mb.RecordsProcessed == 0 {
			t.Fatalf("work not shared: processed %d and %d", ma.RecordsProcessed, mb.RecordsProcessed)
		}
		if ma.Commits == 0 || mb.Commits == 0 {
			t.Fatalf("no commits: %d and %d", ma.Commits, mb.Commits)
		}
		t.Logf("processed %d + %d records", ma.RecordsProcessed, mb.RecordsProcessed)
	})
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSurvivorRestoresAfterCrash(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		truth := produceLines(t, brokers, 10000, 10)
		var firstHalf int64
		for _, n := range truth {
			firstHalf += n
		}
		victim := startApp(t, brokers, t.TempDir())
		waitFor(t, "the victim to make progress", 30*time.Second, func() bool {
			return victim.app.Metrics().RecordsProcessed > firstHalf/2
		})
		survivor := startApp(t, brokers, t.TempDir())
		waitFor(t, "the survivor to take tasks over", 30*time.Second, func() bool {
			return survivor.app.Metrics().Tasks > 0 && victim.app.Metrics().Tasks < 2*partitions
		})
		for w, n := range produceLines(t, brokers, 10000, 10) {
			truth[w] += n
		}
		victim.crash(t)
		got := latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		for w, n := range truth {
			if got[w] < n {
				t.Fatalf("count of %q is %d, below the truth %d", w, got[w], n)
			}
		}
		if survivor.app.Metrics().RecordsRestored == 0 {
			t.Fatal("survivor restored nothing from the changelog")
		}
		survivor.stop(t)

		final := readToEnd(t, brokers, outputTopic)
		changelog := readToEnd(t, brokers, state.ChangelogTopic("wordcount", "counts"))
		if len(changelog) != len(truth) {
			t.Fatalf("changelog has %d words, want %d", len(changelog), len(truth))
		}
		for w, n := range final {
			if changelog[w] != n || n < truth[w] {
				t.Fatalf("%s: changelog has %d, output has %d, truth is %d", w, changelog[w], n, truth[w])
			}
		}
		// A fresh instance restores the same state from the changelog.
		fresh := startApp(t, brokers, t.TempDir())
		waitFor(t, "a fresh instance to restore every word", 30*time.Second, func() bool {
			return fresh.app.Metrics().RecordsRestored >= int64(len(truth))
		})
	})
}

func TestConfigAndTopicErrors(t *testing.T) {
	top := wordCount(t)
	if _, err := New(top, Brokers("x")); err == nil {
		t.Fatal("missing ApplicationID: want error")
	}
	if _, err := New(top, ApplicationID("a")); err == nil {
		t.Fatal("no brokers: want error")
	}
	brokers := kfakeCluster(t)
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 3, 1, nil, "other"); err != nil {
		t.Fatal(err)
	}
	b := topology.NewBuilder()
	topology.FromTopics[string, string](b, []string{inputTopic, "other"}).To("out")
	merged, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(merged, ApplicationID("a"), Brokers(brokers...), StateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := app.Run(ctx); err == nil || !strings.Contains(err.Error(), "not co-partitioned") {
		t.Fatalf("Run = %v, want co-partitioning error", err)
	}
	b = topology.NewBuilder()
	topology.FromTopics[string, string](b, []string{"missing"}).To("out")
	missing, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	app, err = New(missing, ApplicationID("a"), Brokers(brokers...), StateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Run(ctx); err == nil || !strings.Contains(err.Error(), `"missing" of subtopology 0 does not exist`) {
		t.Fatalf("Run = %v, want missing topic error", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("Run did not fail fast")
	}
}

func TestWordCountClassicProtocol(t *testing.T) {
	forEachCluster(t, func(t *testing.T, brokers []string) {
		a := startApp(t, brokers, t.TempDir(), WithGroupProtocol(GroupProtocolClassic))
		b := startApp(t, brokers, t.TempDir(), WithGroupProtocol(GroupProtocolClassic))
		waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
			return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0
		})
		truth := produceLines(t, brokers, 2000, 10)
		got := latest(t, brokers, outputTopic, 30*time.Second, atLeast(truth))
		if d := diff(truth, got); d != "" {
			t.Fatalf("counts differ from the truth: %s", d)
		}

		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ctx := context.Background()
		changelog := state.ChangelogTopic("wordcount", "counts")
		repartition := engine.InternalTopic("wordcount", "counts-repartition")
		details, err := adm.ListTopics(ctx, changelog, repartition)
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range []string{changelog, repartition} {
			if n := len(details[topic].Partitions); n != partitions {
				t.Errorf("%s has %d partitions, want %d", topic, n, partitions)
			}
		}
		configs, err := adm.DescribeTopicConfigs(ctx, changelog, repartition)
		if err != nil {
			t.Fatal(err)
		}
		for topic, want := range map[string]string{changelog: "compact", repartition: "delete"} {
			rc, err := configs.On(topic, nil)
			if err != nil {
				t.Fatal(err)
			}
			var policy string
			for _, c := range rc.Configs {
				if c.Key == "cleanup.policy" && c.Value != nil {
					policy = *c.Value
				}
			}
			if policy != want {
				t.Errorf("%s: cleanup.policy=%q, want %q", topic, policy, want)
			}
		}
		// The record cache coalesces updates of hot keys: far fewer changelog
		// records than counted words. Counts reach the output before the cache
		// is flushed at the next commit, so wait for the changelog to fill.
		var logged, words int64
		waitFor(t, "the changelog to be flushed", 10*time.Second, func() bool {
			ends, err := adm.ListEndOffsets(ctx, changelog)
			if err != nil {
				t.Fatal(err)
			}
			logged = 0
			ends.Each(func(o kadm.ListedOffset) { logged += o.Offset })
			return logged > 0
		})
		for _, n := range truth {
			words += n
		}
		if logged == 0 || logged >= words/2 {
			t.Fatalf("changelog holds %d records for %d words; want caching to coalesce updates", logged, words)
		}
		t.Logf("changelog holds %d records for %d words", logged, words)
	})
}

func TestEmbeddedBrokerStartsWithRun(t *testing.T) {
	var (
		brokerDir string
		addrs     = make(chan []string, 1)
	)
	start := func(_ context.Context, dir string, _ *slog.Logger) (string, func(context.Context) error, error) {
		brokerDir = dir
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, inputTopic, outputTopic))
		if err != nil {
			return "", nil, err
		}
		addrs <- c.ListenAddrs()
		return c.ListenAddrs()[0], func(context.Context) error { c.Close(); return nil }, nil
	}
	dir := t.TempDir()
	app, err := New(wordCount(t), ApplicationID("wordcount"), StateDir(dir), Embedded(start),
		CommitInterval(100*time.Millisecond), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	brokers := <-addrs
	truth := produceLines(t, brokers, 200, 5)
	got := latest(t, brokers, outputTopic, 30*time.Second, atLeast(truth))
	app.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := diff(truth, got); d != "" {
		t.Fatalf("counts differ from the truth: %s", d)
	}
	if brokerDir != filepath.Join(dir, "broker") {
		t.Fatalf("broker data dir = %q, want %q", brokerDir, filepath.Join(dir, "broker"))
	}
}

func TestProcessingErrorsAtRuntime(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	b := topology.NewBuilder()
	topology.MapValues(topology.FromTopics[string, string](b, []string{"in"}), func(_, v string) string {
		if v == "bad" {
			panic("bad value")
		}
		return strings.ToUpper(v)
	}).To("out")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range []string{"a", "bad", "b"} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "in", Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	app, err := New(top, ApplicationID("failing"), Brokers(brokers...), StateDir(t.TempDir()), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Run(ctx); err == nil || !strings.Contains(err.Error(), `panicked: bad value`) {
		t.Fatalf("Run = %v, want the processor's panic as an error", err)
	}

	app, err = New(top, ApplicationID("tolerant"), Brokers(brokers...), StateDir(t.TempDir()), Logger(testLogger(t)),
		ProcessingErrors(processor.DeadLetterQueue("dlq", testLogger(t))), CommitInterval(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out", "dlq"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	got := map[string][]string{}
	for !slices.Contains(got["out"], "B") || len(got["dlq"]) < 1 {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("timed out; got %v", got)
		}
		fetches.EachRecord(func(r *kgo.Record) { got[r.Topic] = append(got[r.Topic], string(r.Value)) })
	}
	app.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The failing application wrote "A" before it stopped; the tolerant one
	// writes "A" and "B" and sends "bad" to the dead-letter topic.
	if out := got["out"]; len(out) < 2 || strings.Join(out[len(out)-2:], ",") != "A,B" || strings.Join(got["dlq"], ",") != "bad" {
		t.Fatalf("got %v", got)
	}
}
