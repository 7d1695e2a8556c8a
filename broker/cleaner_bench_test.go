package broker_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/internal/testenv"
	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/topology"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Environment of TestCleanerFigures.
const (
	// cleanerBenchEnv, set to 1, runs TestCleanerFigures.
	cleanerBenchEnv = "RIFFLE_CLEANER_BENCH"
	// cleanerBenchUpdatesEnv and cleanerBenchKeysEnv set its changelog's
	// updates (default 10,000,000) and keys (default 100,000).
	cleanerBenchUpdatesEnv = "RIFFLE_CLEANER_BENCH_UPDATES"
	cleanerBenchKeysEnv    = "RIFFLE_CLEANER_BENCH_KEYS"
)

// logWatch is a slog handler that keeps the attributes of the records
// with some messages, and drops the rest.
type logWatch struct {
	msgs map[string]bool
	mu   *sync.Mutex
	seen *[]map[string]slog.Value
	cond *sync.Cond
}

func newLogWatch(msgs ...string) *logWatch {
	w := &logWatch{msgs: make(map[string]bool), mu: new(sync.Mutex), seen: new([]map[string]slog.Value)}
	w.cond = sync.NewCond(w.mu)
	for _, m := range msgs {
		w.msgs[m] = true
	}
	return w
}

func (w *logWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *logWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *logWatch) WithGroup(string) slog.Handler            { return w }

func (w *logWatch) Handle(_ context.Context, r slog.Record) error {
	if !w.msgs[r.Message] {
		return nil
	}
	attrs := map[string]slog.Value{"msg": slog.StringValue(r.Message)}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Resolve(); return true })
	w.mu.Lock()
	*w.seen = append(*w.seen, attrs)
	w.cond.Broadcast()
	w.mu.Unlock()
	return nil
}

// count returns how many records it kept so far.
func (w *logWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(*w.seen)
}

// await returns the first record after the first from for which ok holds,
// and its index.
func (w *logWatch) await(t testing.TB, from int, within time.Duration, ok func(map[string]slog.Value) bool) (map[string]slog.Value, int) {
	t.Helper()
	timer := time.AfterFunc(within, func() { w.mu.Lock(); w.cond.Broadcast(); w.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(within)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := from; ; {
		for ; i < len(*w.seen); i++ {
			if ok((*w.seen)[i]) {
				return (*w.seen)[i], i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching log record within %v", within)
		}
		w.cond.Wait()
	}
}

// TestCleanerFigures measures the log cleaner on a changelog-shaped
// topic, behind RIFFLE_CLEANER_BENCH=1: updates of 8-byte counts over
// keys (10M over 100k by default) written by a plain client with its
// default batching and compression, in 16 MiB segments, to a topic that
// is first cleanup.policy=delete, then turned compact. It reports the
// partition's size before and after, the cleaner's MB/s, the time a
// Riffle Streams app takes to restore a store from the changelog before
// and after, and produce latency (acks=all, one record at a time) on the
// partition idle and while the cleaner runs.
func TestCleanerFigures(t *testing.T) {
	if os.Getenv(cleanerBenchEnv) != "1" {
		t.Skipf("set %s=1 to measure the cleaner", cleanerBenchEnv)
	}
	updates := testenv.Int(t, cleanerBenchUpdatesEnv, 10_000_000)
	keys := testenv.Int(t, cleanerBenchKeysEnv, 100_000)
	const app, store = "counts", "counts"
	input, changelog := "counts-in", app+"-"+store+"-changelog"
	watch := newLogWatch("cleaned log", "restored store")
	dir := t.TempDir()
	b := startBroker(t, dir, broker.Logger(slog.New(watch)), broker.CleanerBackoff(100*time.Millisecond), broker.RetentionCheckInterval(200*time.Millisecond))
	cl := newClient(t, b.Addr(), kgo.ProducerLinger(5*time.Millisecond))
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	createTopic(t, adm, input, 1, nil)
	createTopic(t, adm, changelog, 1, map[string]*string{
		"cleanup.policy": kadm.StringPtr("delete"),
		"retention.ms":   kadm.StringPtr("-1"),
		"segment.bytes":  kadm.StringPtr(strconv.Itoa(16 << 20)),
	})

	began := time.Now()
	count := make([]int64, keys)
	for i := range updates {
		k := i % keys
		count[k]++
		r := &kgo.Record{Topic: changelog, Key: fmt.Appendf(nil, "key-%07d", k), Value: binary.BigEndian.AppendUint64(nil, uint64(count[k]))}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("produced %d updates over %d keys in %v", updates, keys, time.Since(began).Round(time.Millisecond))
	sizeBefore := partitionSize(t, dir, changelog)
	restoreBefore, restoredBefore := restoreTime(t, b.Addr(), app, store, input, watch)
	idle := produceProbes(t, cl, changelog, keys, 500, nil)

	// Roll the active segment so that the cleaner may take every
	// update, then turn the topic compact.
	alter(t, adm, changelog, "segment.ms", "100")
	time.Sleep(time.Second)
	ends, err := adm.ListEndOffsets(ctx, changelog)
	if err != nil {
		t.Fatal(err)
	}
	end := ends[changelog][0].Offset
	mark := watch.count()
	done := make(chan struct{})
	var busy latencies
	var wg sync.WaitGroup
	wg.Go(func() { busy = produceProbes(t, cl, changelog, keys, 0, done) })
	alter(t, adm, changelog, "cleanup.policy", "compact")
	alter(t, adm, changelog, "segment.ms", "604800000")
	pass, _ := watch.await(t, mark, 10*time.Minute, func(a map[string]slog.Value) bool {
		return a["msg"].String() == "cleaned log" && a["cleaned_to"].Int64() >= end-1
	})
	close(done)
	wg.Wait()
	sizeAfter := partitionSize(t, dir, changelog)
	restoreAfter, restoredAfter := restoreTime(t, b.Addr(), app, store, input, watch)

	read, dur := pass["bytes_before"].Int64(), pass["duration"].Duration()
	t.Logf("changelog of %d updates over %d keys: %.1f MiB before cleaning, %.2f MiB after", updates, keys, float64(sizeBefore)/(1<<20), float64(sizeAfter)/(1<<20))
	t.Logf("cleaner: one pass over %.1f MiB in %v: %.1f MB/s; its swap held the log's locks for %v", float64(read)/(1<<20), dur.Round(time.Millisecond), float64(read)/1e6/dur.Seconds(), pass["locked"].Duration().Round(time.Microsecond))
	t.Logf("streams restore: %d records in %v before cleaning, %d records in %v after", restoredBefore, restoreBefore, restoredAfter, restoreAfter)
	t.Logf("produce latency idle: %v; while the cleaner runs: %v", idle, busy)
}

// alter sets one config of topic.
func alter(t testing.TB, adm *kadm.Client, topic, key, value string) {
	t.Helper()
	resp, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: key, Value: kadm.StringPtr(value)}}, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("set %s=%s on %s: %v", key, value, topic, err)
	}
}

// partitionSize returns the bytes of the segment files of partition 0 of
// topic in the broker's data directory dir.
func partitionSize(t testing.TB, dir, topic string) int64 {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "logs", topic+"-0", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, name := range logs {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	return size
}

// restoreTime runs a Riffle Streams app counting the input topic by key
// into store, with no local state, until it has restored the store from
// its changelog, and returns how long the restore took, as the runtime
// logs it, and how many records it replayed.
func restoreTime(t testing.TB, addr, app, store, input string, watch *logWatch) (time.Duration, int64) {
	t.Helper()
	tb := topology.NewBuilder()
	topology.FromTopics[string, string](tb, []string{input}).GroupByKey().Count(topology.Materialized(store))
	top, err := tb.Build()
	if err != nil {
		t.Fatal(err)
	}
	a, err := streams.New(top, streams.ApplicationID(app), streams.Brokers(addr), streams.StateDir(t.TempDir()), streams.Logger(slog.New(watch)))
	if err != nil {
		t.Fatal(err)
	}
	mark := watch.count()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background()) }()
	rec, _ := watch.await(t, mark, 10*time.Minute, func(a map[string]slog.Value) bool { return a["msg"].String() == "restored store" })
	a.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return rec["duration"].Duration(), rec["records"].Int64()
}

// latencies summarises produce round trips.
type latencies struct {
	n             int
	p50, p99, max time.Duration
}

func (l latencies) String() string {
	return fmt.Sprintf("%d produces, p50 %v, p99 %v, max %v", l.n, l.p50.Round(10*time.Microsecond), l.p99.Round(10*time.Microsecond), l.max.Round(10*time.Microsecond))
}

// produceProbes produces one 8-byte update at a time to topic, n times,
// or until done is closed if n is 0, and returns the round trips.
func produceProbes(t testing.TB, cl *kgo.Client, topic string, keys, n int, done <-chan struct{}) latencies {
	var ds []time.Duration
	for i := 0; n == 0 || i < n; i++ {
		select {
		case <-done:
			n = -1
		default:
		}
		if n < 0 {
			break
		}
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%07d", i%keys), Value: binary.BigEndian.AppendUint64(nil, 0)}
		began := time.Now()
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Error(err)
			break
		}
		ds = append(ds, time.Since(began))
	}
	if len(ds) == 0 {
		return latencies{}
	}
	slices.Sort(ds)
	return latencies{n: len(ds), p50: ds[len(ds)/2], p99: ds[len(ds)*99/100], max: ds[len(ds)-1]}
}
