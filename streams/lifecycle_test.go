package streams

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

const countsChangelog = "wordcount-counts-changelog"

func admin(t testing.TB, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// partitionEnds returns the end offset of every partition of topic.
func partitionEnds(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	// A topic just created on Apache Kafka may answer
	// UNKNOWN_TOPIC_OR_PARTITION until its metadata has spread.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			out := make(map[int32]int64)
			ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("end offsets of %s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nextCount produces line and returns the first count of word written to
// the output after the output's current end.
func nextCount(t *testing.T, brokers []string, line, word string) int64 {
	t.Helper()
	from := make(map[int32]kgo.Offset)
	for p, end := range partitionEnds(t, admin(t, brokers), outputTopic) {
		from[p] = kgo.NewOffset().At(end)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{outputTopic: from}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: inputTopic, Value: []byte(line)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no count of %q in the output", word)
		}
		for _, r := range fetches.Records() {
			if string(r.Key) == word {
				n, err := serde.Int64().Deserialize(outputTopic, r.Value)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
}

// waitRestored waits until app runs every task, which it does only once
// their stores are restored.
func waitRestored(t *testing.T, r *runningApp) {
	t.Helper()
	waitFor(t, "every task to be restored", 30*time.Second, func() bool {
		return r.app.Metrics().Tasks == 2*partitions
	})
}

// TestRestoreWithDeletedChangelog deletes every record of the changelog
// (DeleteRecords up to its end): a fresh instance restores nothing and
// starts, where it used to wait forever for records that no longer exist.
func TestRestoreWithDeletedChangelog(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		a := startApp(t, brokers, t.TempDir())
		if n := nextCount(t, brokers, "apple apple apple", "apple"); n < 1 {
			t.Fatalf("count %d", n)
		}
		a.stop(t)
		// Kafka refuses DeleteRecords on a topic that is only compacted
		// (POLICY_VIOLATION), as Riffle's broker does: deleteChangelog
		// makes it compact,delete first.
		deleteChangelog(t, admin(t, brokers))
		b := startApp(t, brokers, t.TempDir())
		waitRestored(t, b)
		if n := nextCount(t, brokers, "apple", "apple"); n != 1 {
			t.Fatalf("count after restoring an emptied changelog = %d, want 1", n)
		}
	})
}

// TestRestoreStopsAtTransactionMarker ends the changelog with a committed
// transaction: the last offset below the end is a control record, never
// returned to a consumer, and the restore still ends.
func TestRestoreStopsAtTransactionMarker(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, inputTopic, outputTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	a := startApp(t, brokers, t.TempDir())
	nextCount(t, brokers, "pear", "pear")
	a.stop(t)

	// Write pear=41 into every changelog partition in a transaction.
	tx, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("restore-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx := context.Background()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	v, _ := state.ValueAndTimestampSerde(serde.Int64()).Serialize(countsChangelog, state.ValueAndTimestamp[int64]{Value: 41, Timestamp: time.Now()})
	for p := range int32(partitions) {
		if err := tx.ProduceSync(ctx, &kgo.Record{Topic: countsChangelog, Partition: p, Key: []byte("pear"), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	b := startApp(t, brokers, t.TempDir())
	waitRestored(t, b)
	if n := nextCount(t, brokers, "pear", "pear"); n != 42 {
		t.Fatalf("count after restore = %d, want 42", n)
	}
}

// TestCheckpointBeyondChangelogEnd recreates the changelog empty under an
// instance's checkpoint: the checkpoint lies beyond the end, so the local
// state is wiped and rebuilt (from nothing) instead of being kept stale.
func TestCheckpointBeyondChangelogEnd(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		dir := t.TempDir()
		a := startApp(t, brokers, dir)
		for range 3 {
			nextCount(t, brokers, "plum", "plum")
		}
		a.stop(t)
		cp := checkpointOf(t, dir)
		if cp == 0 {
			t.Fatal("no checkpoint after a clean stop")
		}
		adm := admin(t, brokers)
		if _, err := adm.DeleteTopic(context.Background(), countsChangelog); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the changelog to be gone", 10*time.Second, func() bool {
			td, err := adm.ListTopics(context.Background(), countsChangelog)
			return err == nil && !td.Has(countsChangelog)
		})
		b := startApp(t, brokers, dir)
		waitRestored(t, b)
		if n := nextCount(t, brokers, "plum", "plum"); n != 1 {
			t.Fatalf("count over a checkpoint beyond the recreated changelog = %d, want 1", n)
		}
	})
}

// checkpointOf returns the sum of the counts store's checkpointed
// changelog offsets over the tasks in dir.
func checkpointOf(t *testing.T, dir string) int64 {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join(dir, "wordcount", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, task := range tasks {
		cp, err := state.ReadCheckpoint(vfs.Default, task)
		if err != nil {
			t.Fatal(err)
		}
		sum += cp["counts"]
	}
	return sum
}

// TestTornCheckpointRestores starts an instance whose checkpoints are torn:
// it restores from the changelog instead of failing to start.
func TestTornCheckpointRestores(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		dir := t.TempDir()
		a := startApp(t, brokers, dir)
		for range 2 {
			nextCount(t, brokers, "fig", "fig")
		}
		a.stop(t)
		tasks, err := filepath.Glob(filepath.Join(dir, "wordcount", "*"))
		if err != nil || len(tasks) != 2*partitions {
			t.Fatalf("task dirs %v, %v", tasks, err)
		}
		for _, task := range tasks {
			if err := os.WriteFile(filepath.Join(task, state.CheckpointFile), []byte(`{"counts":1`), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b := startApp(t, brokers, dir)
		waitRestored(t, b)
		if n := nextCount(t, brokers, "fig", "fig"); n != 3 {
			t.Fatalf("count after a torn checkpoint = %d, want 3", n)
		}
		if b.app.Metrics().RecordsRestored == 0 {
			t.Fatal("nothing restored")
		}
	})
}

// TestCloseBoundedWithoutBroker stops the broker under a running instance
// with processed but uncommitted records: Close returns within
// CloseTimeout, and since the final commit could not be made, every task
// is closed dirty and the checkpoints of the previous run are removed.
func TestCloseBoundedWithoutBroker(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, inputTopic, outputTopic))
	if err != nil {
		t.Fatal(err)
	}
	brokers := c.ListenAddrs()
	dir := t.TempDir()
	first := startApp(t, brokers, dir)
	nextCount(t, brokers, "kiwi", "kiwi")
	first.stop(t)
	if checkpointOf(t, dir) == 0 {
		t.Fatal("no checkpoint after a clean stop")
	}
	app, err := New(wordCount(t), ApplicationID("wordcount"), Brokers(brokers...), StateDir(dir),
		CommitInterval(time.Hour), CloseTimeout(2*time.Second), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	nextCount(t, brokers, "kiwi", "kiwi")
	c.Close()
	began := time.Now()
	app.Close()
	if took := time.Since(began); took > 10*time.Second {
		t.Fatalf("Close took %v with the broker gone and CloseTimeout(2s)", took)
	}
	t.Logf("Close took %v; Run: %v", time.Since(began).Round(time.Millisecond), <-done)
	if n := checkpointOf(t, dir); n != 0 {
		t.Fatalf("checkpoints (offsets summing to %d) left after a failed final commit", n)
	}
}

// TestLagOnlyOfOwnedPartitions lets a second instance take some of the
// tasks: the first one stops reporting lag for the partitions it gave away,
// so every partition's lag is reported by one instance.
func TestLagOnlyOfOwnedPartitions(t *testing.T) {
	t.Parallel()
	brokers := kfakeCluster(t)
	a := startApp(t, brokers, t.TempDir())
	produceLines(t, brokers, 200, 3)
	waitFor(t, "lag of every input partition", 30*time.Second, func() bool {
		return len(a.app.Metrics().Lag[inputTopic]) == partitions
	})
	b := startApp(t, brokers, t.TempDir())
	waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
		return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0 && a.app.Metrics().Tasks < 2*partitions
	})
	produceLines(t, brokers, 200, 3)
	waitFor(t, "each input partition's lag reported by one instance", 30*time.Second, func() bool {
		ma, mb := a.app.Metrics(), b.app.Metrics()
		for _, topic := range []string{inputTopic, "wordcount-counts-repartition"} {
			la, lb := ma.Lag[topic], mb.Lag[topic]
			if len(la) == 0 || len(lb) == 0 || len(la)+len(lb) != partitions {
				return false
			}
			for p := range la {
				if _, ok := lb[p]; ok {
					return false
				}
			}
		}
		return true
	})
}

func TestMigratedCommitErrors(t *testing.T) {
	for _, tc := range []struct {
		errs []error
		want bool
	}{
		{[]error{kerr.StaleMemberEpoch}, true},
		{[]error{fmt.Errorf("lines[0]: %w", kerr.StaleMemberEpoch), fmt.Errorf("lines[1]: %w", kerr.IllegalGeneration)}, true},
		{[]error{kerr.FencedMemberEpoch, kerr.UnknownMemberID, kerr.RebalanceInProgress}, true},
		{[]error{kerr.StaleMemberEpoch, kerr.CoordinatorNotAvailable}, false},
		{[]error{kerr.GroupAuthorizationFailed}, false},
		{nil, false},
	} {
		if got := migrated(tc.errs); got != tc.want {
			t.Errorf("migrated(%v) = %v, want %v", tc.errs, got, tc.want)
		}
	}
}

// TestThreadsShareTasksAtOnce starts an instance with two threads under the
// KIP-848 protocol: the second thread takes the partitions the first gives
// up at once, not a heartbeat interval (5 s) later.
func TestThreadsShareTasksAtOnce(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		began := time.Now()
		a := startApp(t, brokers, t.TempDir(), Threads(2), WithGroupProtocol(GroupProtocolConsumer))
		waitRestored(t, a)
		if took := time.Since(began); took > 4*time.Second {
			t.Fatalf("the two threads ran every task after %v", took)
		}
	})
}
