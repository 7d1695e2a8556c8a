package streams

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/topology"
)

// TestVersionedJoinAtRuntime joins views with a versioned users table on a
// broker: each view meets the row valid at its timestamp, and a fresh
// instance restores the table's history from its changelog.
func TestVersionedJoinAtRuntime(t *testing.T) {
	forEachCluster(t, func(t *testing.T, brokers []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		anyTime := map[string]*string{
			"message.timestamp.before.max.ms": kadm.StringPtr(strconv.FormatInt(math.MaxInt64, 10)),
			"message.timestamp.after.max.ms":  kadm.StringPtr(strconv.FormatInt(math.MaxInt64, 10)),
		}
		for _, topic := range []string{"vusers", "vviews", "venriched"} {
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, anyTime, topic); err != nil {
				t.Fatal(err)
			}
		}
		produce := func(topic, key, value string, ts int64) {
			t.Helper()
			r := &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value), Timestamp: time.UnixMilli(ts)}
			if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		b := topology.NewBuilder()
		users := topology.VersionedTableFrom[string, string](b, "vusers", "vusers", time.Hour)
		views := topology.FromTopics[string, string](b, []string{"vviews"})
		topology.Join(views, users, func(page, region string) string { return page + "@" + region }).To("venriched")
		top, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		run := func(dir string) (*App, func()) {
			app, err := New(top, ApplicationID("versioned"), Brokers(brokers...), StateDir(dir),
				CommitInterval(100*time.Millisecond), Logger(testLogger(t)))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- app.Run(context.Background()) }()
			return app, func() {
				app.Close()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}
		}
		consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("venriched"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer consumer.Close()
		var got []string
		readUntil := func(n int) {
			t.Helper()
			for len(got) < n {
				fetches := consumer.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("timed out with %v", got)
				}
				fetches.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
			}
		}

		produce("vusers", "alice", "eu", 100)
		produce("vusers", "alice", "us", 300)
		app, stop := run(t.TempDir())
		waitFor(t, "the users table", 30*time.Second, func() bool { return app.Metrics().RecordsProcessed >= 2 })
		produce("vviews", "alice", "p1", 200)
		produce("vviews", "alice", "p2", 350)
		readUntil(2)
		stop()

		// A fresh instance rebuilds the history from the changelog.
		fresh, stopFresh := run(t.TempDir())
		defer stopFresh()
		produce("vviews", "alice", "p3", 250)
		readUntil(3)
		if want := []string{"p1@eu", "p2@us", "p3@eu"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("joined %v, want %v", got, want)
		}
		if fresh.Metrics().RecordsRestored == 0 {
			t.Fatal("the fresh instance restored nothing")
		}
	})
}
