package metadata

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/twmb/franz-go/pkg/kbin"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.NodeID == 0 {
		cfg.NodeID = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func registerBrokers(t *testing.T, s *Store, ids ...int32) {
	t.Helper()
	for _, id := range ids {
		if err := s.RegisterBroker(ctx(t), Broker{ID: id, Host: "127.0.0.1", Port: 9000 + id}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenFresh(t *testing.T) {
	var calls []*Image
	dir := filepath.Join(t.TempDir(), "meta")
	start := time.Now()
	s := openStore(t, Config{Dir: dir, NodeID: 3, OnChange: func(prev, next *Image) {
		if len(calls) == 0 && (prev == nil || prev.ClusterID != "" || len(prev.Brokers) != 0) {
			t.Errorf("first OnChange has prev %+v, want the empty image", prev)
		}
		calls = append(calls, next)
	}})
	t.Logf("fresh single-voter Open took %v", time.Since(start))

	img := s.Image()
	raw, err := base64.RawURLEncoding.DecodeString(img.ClusterID)
	if len(img.ClusterID) != 22 || err != nil || len(raw) != 16 || img.ClusterID[0] == '-' {
		t.Fatalf("cluster id %q: want 22 base64url characters of 16 bytes (%v)", img.ClusterID, err)
	}
	if len(calls) != 1 || calls[0] != img {
		t.Fatalf("OnChange calls at Open = %d, want 1 (the cluster id) with the current image", len(calls))
	}
	q := s.Quorum()
	if q.LeaderID != 3 || q.Term < 1 || q.HighWatermark < 2 || len(q.Voters) != 1 || q.Voters[0].ID != 3 || q.Voters[0].LogEndOffset < q.HighWatermark {
		t.Fatalf("quorum = %+v", q)
	}
	for _, sub := range []string{"raft", "snapshots"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			t.Fatalf("%s directory: %v", sub, err)
		}
	}
}

func TestTopicLifecycle(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "early", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrInvalidReplicationFactor) {
		t.Fatalf("create with no brokers: %v, want ErrInvalidReplicationFactor", err)
	}
	registerBrokers(t, s, 3, 1, 2)
	// Upsert by id.
	if err := s.RegisterBroker(ctx(t), Broker{ID: 2, Host: "b2", Port: 1, Rack: "r"}); err != nil {
		t.Fatal(err)
	}
	if b := s.Image().Brokers[2]; b != (Broker{ID: 2, Host: "b2", Port: 1, Rack: "r"}) || len(s.Image().Brokers) != 3 {
		t.Fatalf("brokers after upsert = %+v", s.Image().Brokers)
	}

	topic, err := s.CreateTopic(ctx(t), TopicSpec{Name: "orders", Partitions: 4, ReplicationFactor: 2, Configs: map[string]string{"retention.ms": "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	img := s.Image()
	if img.Topics["orders"] != topic || img.TopicsByID[topic.ID] != topic {
		t.Fatal("returned topic is not the one in the image")
	}
	if topic.ID[6]>>4 != 4 || topic.ID[8]>>6 != 2 {
		t.Fatalf("topic id %x is not a version 4 UUID", topic.ID)
	}
	wantReplicas := [][]int32{{1, 2}, {2, 3}, {3, 1}, {1, 2}}
	for i, p := range topic.Partitions {
		if p.Index != int32(i) || !slices.Equal(p.Replicas, wantReplicas[i]) || p.Leader != p.Replicas[0] || p.LeaderEpoch != 0 || !slices.Equal(p.ISR, p.Replicas) {
			t.Fatalf("partition %d = %+v, want replicas %v led by the first", i, p, wantReplicas[i])
		}
	}
	if got := img.Configs[ConfigResource{Type: ResourceTopic, Name: "orders"}]; !reflect.DeepEqual(got, map[string]string{"retention.ms": "1000"}) {
		t.Fatalf("topic configs = %v", got)
	}

	for name, tc := range map[string]struct {
		spec TopicSpec
		want error
	}{
		"exists":      {TopicSpec{Name: "orders", Partitions: 1, ReplicationFactor: 1}, ErrTopicExists},
		"0 parts":     {TopicSpec{Name: "x", Partitions: 0, ReplicationFactor: 1}, ErrInvalidPartitions},
		"rf > broker": {TopicSpec{Name: "x", Partitions: 1, ReplicationFactor: 4}, ErrInvalidReplicationFactor},
		"rf 0":        {TopicSpec{Name: "x", Partitions: 1, ReplicationFactor: 0}, ErrInvalidReplicationFactor},
	} {
		if _, err := s.CreateTopic(ctx(t), tc.spec); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if s.Image() != img {
		t.Fatal("failed creations changed the image")
	}

	if err := s.CreatePartitions(ctx(t), "orders", 6); err != nil {
		t.Fatal(err)
	}
	grown := s.Image().Topics["orders"]
	if len(grown.Partitions) != 6 || grown.ID != topic.ID || len(grown.Partitions[5].Replicas) != 2 || grown.Partitions[5].Index != 5 {
		t.Fatalf("after CreatePartitions(6): %+v", grown)
	}
	if len(topic.Partitions) != 4 || img.Topics["orders"] != topic {
		t.Fatal("CreatePartitions modified an earlier image")
	}
	if err := s.CreatePartitions(ctx(t), "orders", 6); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("CreatePartitions to the current count: %v", err)
	}
	if err := s.CreatePartitions(ctx(t), "nope", 6); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("CreatePartitions of unknown topic: %v", err)
	}

	if err := s.DeleteTopic(ctx(t), "orders"); err != nil {
		t.Fatal(err)
	}
	img = s.Image()
	if _, ok := img.Topics["orders"]; ok || len(img.TopicsByID) != 0 {
		t.Fatal("deleted topic still in the image")
	}
	if _, ok := img.Configs[ConfigResource{Type: ResourceTopic, Name: "orders"}]; ok {
		t.Fatal("deleted topic's configs survive")
	}
	if err := s.DeleteTopic(ctx(t), "orders"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("second delete: %v, want ErrUnknownTopic", err)
	}
	// The name is free again, under a new id.
	again, err := s.CreateTopic(ctx(t), TopicSpec{Name: "orders", Partitions: 1, ReplicationFactor: 1})
	if err != nil || again.ID == topic.ID {
		t.Fatalf("recreate: %v, id reused: %v", err, again != nil && again.ID == topic.ID)
	}
}

func ptr(s string) *string { return &s }

func TestAlterConfigs(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	registerBrokers(t, s, 1)
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "t", Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	res := ConfigResource{Type: ResourceTopic, Name: "t"}
	steps := []struct {
		changes map[string]*string
		replace bool
		want    map[string]string
	}{
		{map[string]*string{"a": ptr("1"), "b": ptr("2")}, false, map[string]string{"a": "1", "b": "2"}},
		{map[string]*string{"a": nil, "c": ptr("3")}, false, map[string]string{"b": "2", "c": "3"}},
		{map[string]*string{"gone": nil}, false, map[string]string{"b": "2", "c": "3"}},
		{map[string]*string{"c": ptr("30"), "d": ptr("4")}, true, map[string]string{"c": "30", "d": "4"}},
		{map[string]*string{"c": nil, "d": nil}, false, nil},
	}
	for i, st := range steps {
		if err := s.AlterConfigs(ctx(t), res, st.changes, st.replace); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, ok := s.Image().Configs[res]
		if !reflect.DeepEqual(got, st.want) || (st.want == nil && ok) {
			t.Fatalf("step %d: configs = %v (present %v), want %v", i, got, ok, st.want)
		}
	}

	idx := s.Image().Index
	if err := s.AlterConfigs(ctx(t), res, map[string]*string{"nothing": nil}, false); err != nil || s.Image().Index != idx {
		t.Fatalf("no-op alter: %v, index %d -> %d", err, idx, s.Image().Index)
	}
	if err := s.AlterConfigs(ctx(t), ConfigResource{Type: ResourceTopic, Name: "nope"}, map[string]*string{"a": ptr("1")}, false); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("alter unknown topic: %v", err)
	}
	if err := s.AlterConfigs(ctx(t), ConfigResource{Type: 3, Name: "x"}, map[string]*string{"a": ptr("1")}, false); err == nil {
		t.Fatal("alter of resource type 3 succeeded")
	}
	for _, r := range []ConfigResource{{Type: ResourceBroker}, {Type: ResourceBroker, Name: "1"}, {Type: ResourceGroup, Name: "g"}} {
		if err := s.AlterConfigs(ctx(t), r, map[string]*string{"k": ptr(r.Name)}, false); err != nil {
			t.Fatal(err)
		}
		if got := s.Image().Configs[r]["k"]; got != r.Name {
			t.Fatalf("%+v: k = %q", r, got)
		}
	}
}

func TestOnChangeOrder(t *testing.T) {
	var (
		mu    sync.Mutex
		calls [][2]*Image
	)
	s := openStore(t, Config{Dir: t.TempDir(), OnChange: func(prev, next *Image) {
		mu.Lock()
		calls = append(calls, [2]*Image{prev, next})
		mu.Unlock()
	}})
	registerBrokers(t, s, 1)
	const writers, perWriter = 4, 5
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: fmt.Sprintf("t%d-%d", w, i), Partitions: 1, ReplicationFactor: 1}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if want := 1 + 1 + writers*perWriter; len(calls) != want {
		t.Fatalf("%d OnChange calls, want %d (cluster id, broker, topics)", len(calls), want)
	}
	if calls[0][0].Index != 0 || calls[0][0].ClusterID != "" {
		t.Fatal("first call's prev is not the empty image")
	}
	for i := 1; i < len(calls); i++ {
		prev, next := calls[i][0], calls[i][1]
		if prev != calls[i-1][1] || next.Index <= prev.Index || len(next.Topics) != len(prev.Topics)+boolInt(i > 1) {
			t.Fatalf("call %d: prev is not the last next, or the index or topics did not advance by one change", i)
		}
	}
	if calls[len(calls)-1][1] != s.Image() {
		t.Fatal("last OnChange image is not the current image")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestConcurrentCreateSameTopic(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	registerBrokers(t, s, 1, 2)
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := s.CreateTopic(ctx(t), TopicSpec{Name: "race", Partitions: 3, ReplicationFactor: 2})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrTopicExists):
			t.Fatalf("loser failed with %v, want ErrTopicExists", err)
		}
	}
	if won != 1 || len(s.Image().Topics) != 1 || len(s.Image().Topics["race"].Partitions) != 3 {
		t.Fatalf("%d creations won, image has %d topics", won, len(s.Image().Topics))
	}
}

// TestStateMachineRejectsStaleBatch proposes past the Store's validation,
// as a write validated against a lagging image would, and checks the state
// machine refuses the whole batch.
func TestStateMachineRejectsStaleBatch(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	registerBrokers(t, s, 1)
	topic, err := s.CreateTopic(ctx(t), TopicSpec{Name: "t", Partitions: 1, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	before := s.Image()
	_, err = s.propose(ctx(t), "stale create", []record{
		topicRecord{Name: "fresh", ID: [16]byte{15: 1}},
		topicRecord{Name: "t", ID: [16]byte{15: 2}},
	})
	if !errors.Is(err, ErrTopicExists) {
		t.Fatalf("duplicate TopicRecord: %v, want ErrTopicExists", err)
	}
	_, err = s.propose(ctx(t), "stale grow", []record{partitionRecord{TopicID: topic.ID, Partition: Partition{Index: 0}}})
	if !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("existing partition index: %v, want ErrInvalidPartitions", err)
	}
	if s.Image() != before {
		t.Fatal("a rejected batch changed the image")
	}
}

func TestRestartKeepsImage(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	populate(t, s, 0)
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	var last *Image
	s = openStore(t, Config{Dir: dir, OnChange: func(prev, next *Image) {
		if last != nil && prev != last {
			t.Error("OnChange at reopen: prev is not the last next")
		}
		last = next
	}})
	if got := s.Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image after restart\n%+v\nwant\n%+v", got, want)
	}
	if !reflect.DeepEqual(last, want) {
		t.Fatal("OnChange at reopen did not end at the replayed image")
	}
	// Writes continue on the same log.
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "after", Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if s.Image().Index <= want.Index {
		t.Fatal("index did not advance after restart")
	}
}

// populate registers brokers and creates, grows, configures and deletes
// topics, so that an image exercises every record type.
func populate(t *testing.T, s *Store, round int) {
	t.Helper()
	registerBrokers(t, s, 1, 2, 3)
	for i := range 5 {
		name := fmt.Sprintf("topic-%d-%d", round, i)
		if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: name, Partitions: int32(i + 1), ReplicationFactor: 2, Configs: map[string]string{"segment.ms": "60000"}}); err != nil {
			t.Fatal(err)
		}
	}
	name := func(i int) string { return fmt.Sprintf("topic-%d-%d", round, i) }
	if err := s.CreatePartitions(ctx(t), name(0), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterConfigs(ctx(t), ConfigResource{Type: ResourceTopic, Name: name(1)}, map[string]*string{"cleanup.policy": ptr("compact")}, true); err != nil {
		t.Fatal(err)
	}
	if err := s.AlterConfigs(ctx(t), ConfigResource{Type: ResourceBroker}, map[string]*string{"log.retention.ms": ptr("5")}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTopic(ctx(t), name(2)); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, trailingLogs: 1}
	s := openStore(t, cfg)
	populate(t, s, 0)
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	snapIndex := s.Image().Index
	populate(t, s, 1)
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, cfg)
	if got := s.Image(); !reflect.DeepEqual(got, want) {
		t.Fatalf("image after snapshot restore\n%+v\nwant\n%+v", got, want)
	}
	// The log before the snapshot is gone, so the image before it came
	// from the snapshot.
	first, err := s.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first <= 1 || first > snapIndex {
		t.Fatalf("log starts at %d; want it compacted to just below snapshot index %d", first, snapIndex)
	}
	snaps, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("snapshot directory: %d entries, %v", len(snaps), err)
	}

	// A second snapshot after restart, restored from again.
	if err := s.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if got := s.Image(); !reflect.DeepEqual(got, want) {
		t.Fatal("image differs after restoring the second snapshot")
	}
}

// TestThresholdSnapshot lets raft snapshot on its own once enough entries
// pile up, and restores from that snapshot.
func TestThresholdSnapshot(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, snapshotThreshold: 8, snapshotInterval: 20 * time.Millisecond, trailingLogs: 2}
	s := openStore(t, cfg)
	populate(t, s, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		first, err := s.logs.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		if first > 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("raft took no snapshot within 5s of passing the threshold")
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, cfg)
	if !reflect.DeepEqual(s.Image(), want) {
		t.Fatal("image differs after restoring a threshold snapshot")
	}
}

func TestUndecodableEntryIsSkipped(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	registerBrokers(t, s, 1)
	before := s.Image()

	// An entry as a newer Riffle would write it (record type 99), and
	// one cut short.
	future := append([]byte{frameVersion}, 0, 0, 0, 1, 0, 99, 0, 0)
	torn := appendFrame(nil, []record{topicRecord{Name: "torn", ID: newUUID()}})
	torn = torn[:len(torn)-3]
	for i, data := range [][]byte{future, torn} {
		f := s.raft.Apply(data, 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
		err, _ := f.Response().(error)
		if err == nil || (i == 0 && (!errors.Is(err, errUnknownRecord) || !strings.Contains(err.Error(), "type 99"))) {
			t.Fatalf("apply of undecodable entry %d answered %v, want a decoding error (naming type 99)", i, f.Response())
		}
	}
	if s.Image() != before {
		t.Fatal("an undecodable entry changed the image")
	}
	if err := s.RegisterBroker(ctx(t), Broker{ID: 2}); err != nil {
		t.Fatalf("write after a skipped entry: %v", err)
	}
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, Config{Dir: dir})
	if !reflect.DeepEqual(s.Image(), want) {
		t.Fatalf("image after replaying a log with undecodable entries\n%+v\nwant\n%+v", s.Image(), want)
	}
}

func TestClusterIDMismatchRefusesOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	registerBrokers(t, s, 1)
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "t", Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	id := s.Image().ClusterID
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, snapshot := range []bool{false, true} {
		if snapshot {
			s = openStore(t, Config{Dir: dir, ClusterID: id})
			if err := s.raft.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		calls := 0
		c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		s2, err := Open(c, Config{Dir: dir, NodeID: 1, ClusterID: "AAAAAAAAAAAAAAAAAAAAAA", Logger: testLogger(t),
			OnChange: func(prev, next *Image) { calls++ }})
		cancel()
		if err == nil {
			s2.Close()
			t.Fatalf("snapshot %v: Open accepted the metadata of another cluster", snapshot)
		}
		if !errors.Is(err, ErrClusterMismatch) || !strings.Contains(err.Error(), id) {
			t.Fatalf("snapshot %v: Open: %v, want ErrClusterMismatch naming %s", snapshot, err, id)
		}
		if calls != 0 {
			t.Fatalf("snapshot %v: OnChange saw %d images of another cluster", snapshot, calls)
		}
	}
	// An empty directory with an expected cluster id has lost its metadata.
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if s2, err := Open(c, Config{Dir: t.TempDir(), NodeID: 1, ClusterID: id, Logger: testLogger(t)}); !errors.Is(err, ErrClusterMismatch) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("Open of empty metadata with a cluster id: %v, want ErrClusterMismatch", err)
	}
}

func TestReplayReportsRemovals(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	registerBrokers(t, s, 1)
	topic, err := s.CreateTopic(ctx(t), TopicSpec{Name: "gone", Partitions: 2, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTopic(ctx(t), "gone"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	removed := false
	openStore(t, Config{Dir: dir, OnChange: func(prev, next *Image) {
		if _, had := prev.TopicsByID[topic.ID]; had {
			_, has := next.TopicsByID[topic.ID]
			removed = removed || !has
		}
	}})
	if !removed {
		t.Fatal("replay at Open did not report the topic removal to OnChange")
	}
}

func TestLimitsAndLongStrings(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir(), Limits: Limits{TopicPartitions: 10, Partitions: 15}})
	registerBrokers(t, s, 1)
	for _, n := range []int32{11, math.MaxInt32} {
		if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "big", Partitions: n, ReplicationFactor: 1}); !errors.Is(err, ErrPolicyViolation) {
			t.Fatalf("%d partitions: %v, want ErrPolicyViolation", n, err)
		}
	}
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "a", Partitions: 10, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "b", Partitions: 6, ReplicationFactor: 1}); !errors.Is(err, ErrPolicyViolation) {
		t.Fatalf("16 partitions in all: %v, want ErrPolicyViolation", err)
	}
	if err := s.CreatePartitions(ctx(t), "a", math.MaxInt32); !errors.Is(err, ErrPolicyViolation) {
		t.Fatalf("grow to 2^31-1: %v, want ErrPolicyViolation", err)
	}
	if got := s.Image().PartitionCount; got != 10 {
		t.Fatalf("PartitionCount = %d, want 10", got)
	}
	long := strings.Repeat("v", MaxStringLen+1)
	err := s.AlterConfigs(ctx(t), ConfigResource{Type: ResourceTopic, Name: "a"}, map[string]*string{"retention.ms": &long}, false)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("config value of %d bytes: %v, want ErrTooLarge", len(long), err)
	}
	if err := s.AlterConfigs(ctx(t), ConfigResource{Type: ResourceGroup, Name: long}, map[string]*string{"k": strPtr("v")}, false); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("group name of %d bytes: %v, want ErrTooLarge", len(long), err)
	}
	if err := s.DeleteTopic(ctx(t), "a"); err != nil {
		t.Fatal(err)
	}
	if got := s.Image().PartitionCount; got != 0 {
		t.Fatalf("PartitionCount after delete = %d, want 0", got)
	}
}

func strPtr(s string) *string { return &s }

func TestTCPTransport(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir, NodeID: 5, RaftAddr: "127.0.0.1:0"})
	registerBrokers(t, s, 5)
	if q := s.Quorum(); q.LeaderID != 5 || len(q.Voters) != 1 {
		t.Fatalf("quorum over TCP = %+v", q)
	}
	want := s.Image()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir, NodeID: 5, RaftAddr: "127.0.0.1:0"})
	if !reflect.DeepEqual(s.Image(), want) {
		t.Fatal("image differs after restart over TCP")
	}
}

func TestWriteAfterCloseIsNotLeader(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	registerBrokers(t, s, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.CreateTopic(ctx(t), TopicSpec{Name: "t", Partitions: 1, ReplicationFactor: 1}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write after Close: %v, want ErrNotLeader", err)
	}
	if len(s.Image().Brokers) != 1 {
		t.Fatal("Image after Close lost its content")
	}
}

func TestOpenHonoursContext(t *testing.T) {
	c, cancel := context.WithCancel(t.Context())
	cancel()
	s, err := Open(c, Config{Dir: t.TempDir(), NodeID: 1, Logger: testLogger(t)})
	if err == nil {
		s.Close()
		t.Fatal("Open with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open: %v, want context.Canceled", err)
	}
}

func TestHCLogBridge(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))).Named("snapshot")
	l.Debug("quiet")
	l.Info("also quiet")
	l.Warn("slow follower", "peer", "2")
	l.Error("disk full", "err", "ENOSPC")
	out := buf.String()
	for _, want := range []string{"level=WARN msg=\"slow follower\" peer=2 logger=raft.snapshot", "level=ERROR msg=\"disk full\" err=ENOSPC"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "quiet") {
		t.Errorf("below-Warn lines were forwarded:\n%s", out)
	}
}

// BenchmarkCreateTopic measures one metadata write end to end: validate,
// encode, raft commit with a synced Pebble write, apply, publish.
func BenchmarkCreateTopic(b *testing.B) {
	s, err := Open(b.Context(), Config{Dir: b.TempDir(), NodeID: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.RegisterBroker(b.Context(), Broker{ID: 1}); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		if _, err := s.CreateTopic(b.Context(), TopicSpec{Name: fmt.Sprint("t", i), Partitions: 3, ReplicationFactor: 1}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestUndecodableSnapshotRefusesOpen(t *testing.T) {
	dir := t.TempDir()
	snaps, err := raft.NewFileSnapshotStore(dir, retainSnapshots, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	voters := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: "1", Address: "inmem:1"}}}
	_, trans := raft.NewInmemTransport("inmem:1")
	sink, err := snaps.Create(raft.SnapshotVersionMax, 5, 1, voters, 1, trans)
	if err != nil {
		t.Fatal(err)
	}
	// A snapshot as a newer Riffle would write it: record type 99.
	data := kbin.AppendInt64(nil, 5)
	data = append(data, frameVersion, 0, 0, 0, 1, 0, 99, 0, 0)
	if _, err := sink.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	calls := 0
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Open(c, Config{Dir: dir, NodeID: 1, Logger: testLogger(t), OnChange: func(prev, next *Image) { calls++ }})
	if err == nil {
		s.Close()
		t.Fatal("Open restored a snapshot it cannot decode")
	}
	if !errors.Is(err, errUnknownRecord) || !strings.Contains(err.Error(), "type 99") || calls != 0 {
		t.Fatalf("Open: %v (%d OnChange calls), want an unknown record error naming type 99 and no image", err, calls)
	}
}
