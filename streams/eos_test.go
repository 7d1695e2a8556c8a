package streams

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/topology"
)

// readQuietly reads topic from the start with isolation, handing each
// record to each, until done reports true or nothing new has arrived for
// quiet. It returns how many records it read and whether done ended it.
func readQuietly(t testing.TB, brokers []string, topic string, isolation kgo.IsolationLevel, quiet time.Duration, each func(*kgo.Record), done func() bool) (int, bool) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(isolation))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	last, read := time.Now(), 0
	for !done() {
		if time.Since(last) > quiet {
			return read, false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		fetches := cl.PollFetches(ctx)
		cancel()
		fetches.EachRecord(func(r *kgo.Record) {
			each(r)
			read++
			last = time.Now()
		})
	}
	return read, true
}

// committedUpdates reads topic with read_committed from the start until
// done reports true for every key's values in offset order, or nothing
// new has arrived for quiet. A slow run (the race detector on a loaded
// machine) keeps it reading for as long as it makes progress; a stalled
// one ends it, with what it read logged.
func committedUpdates(t testing.TB, brokers []string, topic string, quiet time.Duration, done func(map[string][]int64) bool) map[string][]int64 {
	t.Helper()
	count := func(b []byte) (int64, error) { return serde.Int64().Deserialize(topic, b) }
	if strings.HasSuffix(topic, "-changelog") {
		// The changelog of a count holds Kafka Streams' timestamped layout.
		count = func(b []byte) (int64, error) {
			v, err := state.ValueAndTimestampSerde(serde.Int64()).Deserialize(topic, b)
			return v.Value, err
		}
	}
	got := make(map[string][]int64)
	start := time.Now()
	read, finished := readQuietly(t, brokers, topic, kgo.ReadCommitted(), quiet, func(r *kgo.Record) {
		v, err := count(r.Value)
		if err != nil {
			t.Errorf("bad count for %q: %v", r.Key, err)
		}
		got[string(r.Key)] = append(got[string(r.Key)], v)
	}, func() bool { return done(got) })
	if !finished {
		t.Logf("%s: nothing new for %v after %d records in %v", topic, quiet, read, time.Since(start).Round(time.Second))
	}
	return got
}

// updatesReach reports whether every key has as many updates as its truth.
func updatesReach(truth map[string]int64) func(map[string][]int64) bool {
	return func(got map[string][]int64) bool {
		for w, n := range truth {
			if int64(len(got[w])) < n {
				return false
			}
		}
		return true
	}
}

// lastReach reports whether every key's last update is its truth.
func lastReach(truth map[string]int64) func(map[string][]int64) bool {
	return func(got map[string][]int64) bool {
		for w, n := range truth {
			if vs := got[w]; len(vs) == 0 || vs[len(vs)-1] != n {
				return false
			}
		}
		return true
	}
}

// checkExactlyOnce fails unless every key's updates are 1, 2, ..., truth.
func checkExactlyOnce(t testing.TB, truth map[string]int64, updates map[string][]int64) {
	t.Helper()
	if err := exactlyOnce(truth, updates); err != nil {
		t.Fatal(err)
	}
}

// exactlyOnce reports the first key whose updates are not 1, 2, ...,
// truth, in the error's Word.
func exactlyOnce(truth map[string]int64, updates map[string][]int64) *countError {
	if len(updates) != len(truth) {
		return &countError{msg: fmt.Sprintf("%d keys, want %d", len(updates), len(truth))}
	}
	for w, n := range truth {
		vs := updates[w]
		for i, v := range vs {
			if v != int64(i+1) {
				return &countError{w, fmt.Sprintf("%s: update %d is %d, want %d (updates %v)", w, i, v, i+1, vs)}
			}
		}
		if int64(len(vs)) != n {
			return &countError{w, fmt.Sprintf("%s: %d updates, want %d", w, len(vs), n)}
		}
	}
	return nil
}

// A countError is a key counted wrong.
type countError struct {
	Word string // "" when the keys differ
	msg  string
}

func (e *countError) Error() string { return e.msg }

func TestExactlyOnceSurvivesCrash(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		eos := ProcessingGuarantee(ExactlyOnceV2)
		truth := produceLines(t, brokers, 5000, 10)
		var total int64
		for _, n := range truth {
			total += n
		}
		victim := startApp(t, brokers, t.TempDir(), eos)
		waitFor(t, "the victim to make progress", 30*time.Second, func() bool {
			return victim.app.Metrics().RecordsProcessed > total/4
		})
		survivor := startApp(t, brokers, t.TempDir(), eos)
		waitFor(t, "the survivor to take tasks over", 60*time.Second, func() bool {
			return survivor.app.Metrics().Tasks > 0 && victim.app.Metrics().Tasks < 2*partitions
		})
		for w, n := range produceLines(t, brokers, 5000, 10) {
			truth[w] += n
		}
		victim.crash(t)
		checkExactlyOnce(t, truth, committedUpdates(t, brokers, outputTopic, time.Minute, updatesReach(truth)))
		survivor.stop(t)
		changelog := committedUpdates(t, brokers, state.ChangelogTopic("wordcount", "counts"), time.Minute, lastReach(truth))
		for w, n := range truth {
			if vs := changelog[w]; len(vs) == 0 || vs[len(vs)-1] != n {
				t.Fatalf("%s: committed changelog ends at %v, want %d", w, vs[max(0, len(vs)-1):], n)
			}
		}
	})
}

func TestProcessingGuaranteeOptions(t *testing.T) {
	top := wordCount(t)
	for _, tc := range []struct {
		opts []Option
		want time.Duration
	}{
		{nil, 30 * time.Second},
		{[]Option{ProcessingGuarantee(ExactlyOnceV2)}, 100 * time.Millisecond},
		{[]Option{ProcessingGuarantee(ExactlyOnceV2), CommitInterval(time.Second)}, time.Second},
	} {
		a, err := New(top, append([]Option{ApplicationID("a"), Brokers("x")}, tc.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if a.cfg.commitInterval != tc.want {
			t.Errorf("%v: commit interval %v, want %v", a.cfg.guarantee, a.cfg.commitInterval, tc.want)
		}
	}
	if _, err := New(top, ApplicationID("a"), Brokers("x"), ProcessingGuarantee(Guarantee(7))); err == nil {
		t.Error("unknown guarantee: want error")
	}
	if _, err := New(top, ApplicationID("a"), Brokers("x"), CommitInterval(0)); err == nil {
		t.Error("CommitInterval(0): want error")
	}
}

// TestExactlyOnceStalledProducer stalls the only instance's thread past
// its transaction timeout, so that the broker aborts its transaction and
// bumps its producer's epoch: the thread must notice at its next commit,
// close its tasks dirty, restore them, and still count every word once.
func TestExactlyOnceStalledProducer(t *testing.T) {
	t.Parallel()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Sync(broker.SyncNone),
		broker.TransactionAbortInterval(100*time.Millisecond), broker.Logger(testLogger(t).With("component", "broker")))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	brokers := []string{b.Addr()}
	createWordCountTopics(t, b.Addr())
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var stalled atomic.Bool
	tb := topology.NewBuilder()
	lines := topology.MapValues(topology.FromTopics[string, string](tb, []string{inputTopic}), func(_, l string) string {
		if l == "stall" && !stalled.Swap(true) {
			time.Sleep(3 * time.Second)
		}
		return l
	})
	topology.GroupBy(topology.FlatMapValues(lines, func(_, l string) []string { return words(l) }),
		func(_, w string) string { return w }).
		Count(topology.Materialized("counts")).
		ToStream().To(outputTopic)
	top, err := tb.Build()
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(top, ApplicationID("wordcount"), Brokers(brokers...), StateDir(t.TempDir()),
		ProcessingGuarantee(ExactlyOnceV2), Logger(testLogger(t)),
		ClientOpts(kgo.TransactionTimeout(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	truth := produceLines(t, brokers, 2000, 5)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: inputTopic, Value: []byte("stall")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	truth["stall"]++
	for w, n := range produceLines(t, brokers, 2000, 5) {
		truth[w] += n
	}
	checkExactlyOnce(t, truth, committedUpdates(t, brokers, outputTopic, time.Minute, updatesReach(truth)))
	if !stalled.Load() {
		t.Fatal("the thread never stalled")
	}
	app.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
