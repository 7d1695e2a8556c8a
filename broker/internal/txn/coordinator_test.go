package txn

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
)

// marker is one Markers call.
type marker struct {
	pid    int64
	epoch  int16
	commit bool
	parts  []Partition
}

// fakeBroker records the coordinator's markers and group ends, and fails
// them while fail is set.
type fakeBroker struct {
	mu      sync.Mutex
	nextPID int64
	fail    bool
	markers []marker
	groups  []string
}

func (f *fakeBroker) config(fs vfs.FS) Config {
	return Config{
		Dir: "txn",
		FS:  fs,
		ProducerIDs: func() (int64, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.nextPID++
			return f.nextPID, nil
		},
		PartitionCount: func(topic string) int32 {
			if topic == "t" {
				return 2
			}
			return 0
		},
		Markers: func(_ context.Context, pid int64, epoch int16, commit bool, parts []Partition) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail {
				return errors.New("disk on fire")
			}
			f.markers = append(f.markers, marker{pid, epoch, commit, slices.Clone(parts)})
			return nil
		},
		Groups: func(pid int64, groups []string, commit bool) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.fail {
				return errors.New("disk on fire")
			}
			f.groups = append(f.groups, groups...)
			return nil
		},
		Logger: slog.New(slog.DiscardHandler),
	}
}

func (f *fakeBroker) lastMarker(t *testing.T) marker {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.markers) == 0 {
		t.Fatal("no markers written")
	}
	return f.markers[len(f.markers)-1]
}

func open(t *testing.T, cfg Config) *Coordinator {
	t.Helper()
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustInit(t *testing.T, c *Coordinator, id string) (int64, int16) {
	t.Helper()
	pid, epoch, err := c.InitProducerID(id, time.Minute, -1, -1)
	if err != nil {
		t.Fatalf("init %s: %v", id, err)
	}
	return pid, epoch
}

func TestInitProducerIDEpochs(t *testing.T) {
	f := &fakeBroker{}
	c := open(t, f.config(vfs.NewMem()))
	defer c.Close()
	pid, epoch := mustInit(t, c, "a")
	if pid2, epoch2 := mustInit(t, c, "a"); pid2 != pid || epoch2 != epoch+1 {
		t.Errorf("second init: %d/%d, want %d/%d", pid2, epoch2, pid, epoch+1)
	}
	// KIP-360: the current producer may ask for a bump; a stale one is fenced.
	if _, _, err := c.InitProducerID("a", time.Minute, pid, epoch); err != kerr.ProducerFenced {
		t.Errorf("init from the stale epoch: %v, want PRODUCER_FENCED", err)
	}
	if _, _, err := c.InitProducerID("a", c.cfg.MaxTimeout+time.Millisecond, -1, -1); err != kerr.InvalidTransactionTimeout {
		t.Errorf("timeout over the maximum: %v", err)
	}
	// Epochs exhausted: a new producer id at epoch 0.
	c.lookup("a").rec.Epoch = math.MaxInt16 - 1
	if pid3, epoch3 := mustInit(t, c, "a"); pid3 == pid || epoch3 != 0 {
		t.Errorf("init with the epochs exhausted: %d/%d, want a new id at epoch 0", pid3, epoch3)
	}
}

func TestInitFencesOngoingTransaction(t *testing.T) {
	f := &fakeBroker{}
	c := open(t, f.config(vfs.NewMem()))
	defer c.Close()
	pid, epoch := mustInit(t, c, "a")
	if err, each := c.AddPartitions("a", pid, epoch, []Partition{{"t", 1}, {"t", 0}}); err != nil || each != nil {
		t.Fatal(err, each)
	}
	_, epoch2 := mustInit(t, c, "a")
	m := f.lastMarker(t)
	if m.commit || m.epoch != epoch+1 || !slices.Equal(m.parts, []Partition{{"t", 0}, {"t", 1}}) {
		t.Errorf("markers of the fenced transaction: %+v, want an abort at epoch %d on both partitions", m, epoch+1)
	}
	if epoch2 != epoch+2 {
		t.Errorf("new epoch %d, want %d", epoch2, epoch+2)
	}
	if _, _, err := c.EndTxn("a", pid, epoch, true, false); err != kerr.ProducerFenced {
		t.Errorf("the zombie's commit: %v, want PRODUCER_FENCED", err)
	}
}

// TestPreparedCompletedAfterPowerCut: an EndTxn whose markers could not be
// written is decided all the same; after a power cut the reopened
// coordinator writes them and completes the transaction.
func TestPreparedCompletedAfterPowerCut(t *testing.T) {
	fs := vfs.NewStrictMem()
	f := &fakeBroker{}
	c := open(t, f.config(fs))
	pid, epoch := mustInit(t, c, "a")
	if err, _ := c.AddPartitions("a", pid, epoch, []Partition{{"t", 0}}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddGroup("a", pid, epoch, "g"); err != nil {
		t.Fatal(err)
	}
	f.fail = true
	if _, _, err := c.EndTxn("a", pid, epoch, true, false); err != nil {
		t.Fatalf("EndTxn with the markers failing: %v; the outcome is decided once prepared", err)
	}
	if in, _ := c.Describe("a"); in.State != PrepareCommit {
		t.Fatalf("state %v, want PrepareCommit", in.State)
	}
	if err, _ := c.AddPartitions("a", pid, epoch, []Partition{{"t", 1}}); err != kerr.ConcurrentTransactions {
		t.Errorf("AddPartitions while the commit is pending: %v, want CONCURRENT_TRANSACTIONS", err)
	}
	fs.SetIgnoreSyncs(true)
	c.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)

	f.fail = false
	c = open(t, f.config(fs))
	defer c.Close()
	m := f.lastMarker(t)
	if !m.commit || m.pid != pid || !slices.Equal(m.parts, []Partition{{"t", 0}}) || !slices.Equal(f.groups, []string{"g"}) {
		t.Errorf("after reopening: marker %+v, groups %v, want the commit on t[0] and group g", m, f.groups)
	}
	if in, _ := c.Describe("a"); in.State != CompleteCommit || len(in.Partitions) != 0 {
		t.Errorf("after reopening: %+v, want CompleteCommit with no partitions", in)
	}
	if _, _, err := c.EndTxn("a", pid, epoch, true, false); err != nil {
		t.Errorf("retried commit: %v", err)
	}
}

func TestExpiredTransactionAborted(t *testing.T) {
	f := &fakeBroker{}
	cfg := f.config(vfs.NewMem())
	cfg.AbortInterval = 10 * time.Millisecond
	c := open(t, cfg)
	defer c.Close()
	pid, epoch, err := c.InitProducerID("a", 50*time.Millisecond, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err, _ := c.AddPartitions("a", pid, epoch, []Partition{{"t", 0}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if in, _ := c.Describe("a"); in.State == CompleteAbort {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired transaction was not aborted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := f.lastMarker(t); m.commit || m.epoch != epoch+1 {
		t.Errorf("abort marker %+v, want epoch %d (the producer fenced)", m, epoch+1)
	}
	if _, _, err := c.EndTxn("a", pid, epoch, true, false); err != kerr.ProducerFenced {
		t.Errorf("commit after the timeout: %v, want PRODUCER_FENCED", err)
	}
}

func TestVerify(t *testing.T) {
	f := &fakeBroker{}
	c := open(t, f.config(vfs.NewMem()))
	defer c.Close()
	pid, epoch := mustInit(t, c, "a")
	p0 := &Partition{"t", 0}
	applied := 0
	apply := func() { applied++ }
	for _, tc := range []struct {
		id    string
		pid   int64
		epoch int16
		part  *Partition
		want  *kerr.Error
	}{
		{"b", pid, epoch, p0, kerr.InvalidProducerIDMapping},
		{"a", pid + 1, epoch, p0, kerr.InvalidProducerIDMapping},
		{"a", pid, epoch - 1, p0, kerr.InvalidProducerEpoch},
		{"a", pid, epoch, p0, kerr.InvalidTxnState},
	} {
		if err := c.Verify(tc.id, tc.pid, tc.epoch, tc.part, "", false, apply); err != tc.want {
			t.Errorf("verify %+v: %v, want %v", tc, err, tc.want)
		}
	}
	if err, _ := c.AddPartitions("a", pid, epoch, []Partition{*p0}); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify("a", pid, epoch, p0, "", false, apply); err != nil || applied != 1 {
		t.Errorf("verify an added partition: %v, applied %d times", err, applied)
	}
	if err := c.Verify("a", pid, epoch, nil, "g", false, apply); err != kerr.InvalidTxnState {
		t.Errorf("verify a group never added: %v", err)
	}
}

// TestTransactionVersion2 drives the KIP-890 part 2 flow: the first
// produce adds its partition, EndTxn bumps the epoch for the markers and
// the next transaction, a retry of it from the old epoch succeeds, an
// abort of nothing only bumps the epoch, and once the epochs run out the
// producer gets a new id.
func TestTransactionVersion2(t *testing.T) {
	f := &fakeBroker{}
	c := open(t, f.config(vfs.NewMem()))
	defer c.Close()
	pid, epoch := mustInit(t, c, "a")
	if err := c.Verify("a", pid, epoch, &Partition{"t", 0}, "", true, nil); err != nil {
		t.Fatalf("implicit add: %v", err)
	}
	if err := c.Verify("a", pid, epoch, nil, "g", true, nil); err != nil {
		t.Fatalf("implicit group add: %v", err)
	}
	pid2, epoch2, err := c.EndTxn("a", pid, epoch, true, true)
	if err != nil || pid2 != pid || epoch2 != epoch+1 {
		t.Fatalf("EndTxn v5: %d/%d, %v, want %d/%d", pid2, epoch2, err, pid, epoch+1)
	}
	if m := f.lastMarker(t); !m.commit || m.epoch != epoch+1 {
		t.Errorf("commit marker %+v, want the bumped epoch %d", m, epoch+1)
	}
	if p, e, err := c.EndTxn("a", pid, epoch, true, true); err != nil || p != pid || e != epoch+1 {
		t.Errorf("retry from the old epoch: %d/%d, %v, want the current %d/%d", p, e, err, pid, epoch+1)
	}
	if _, _, err := c.EndTxn("a", pid, epoch, false, true); err != kerr.ProducerFenced {
		t.Errorf("an abort from the old epoch after a commit: %v, want PRODUCER_FENCED", err)
	}
	if p, e, err := c.EndTxn("a", pid, epoch2, false, true); err != nil || p != pid || e != epoch2+1 {
		t.Errorf("abort of nothing: %d/%d, %v, want the epoch bumped to %d", p, e, err, epoch2+1)
	}
	if err := c.Verify("a", pid, epoch2, &Partition{"t", 0}, "", true, nil); err != kerr.InvalidProducerEpoch {
		t.Errorf("a produce from an ended epoch: %v, want INVALID_PRODUCER_EPOCH", err)
	}

	c.lookup("a").rec.Epoch = math.MaxInt16 - 2
	if err := c.Verify("a", pid, math.MaxInt16-2, &Partition{"t", 1}, "", true, nil); err != nil {
		t.Fatal(err)
	}
	p, e, err := c.EndTxn("a", pid, math.MaxInt16-2, true, true)
	if err != nil || p == pid || e != 0 {
		t.Fatalf("EndTxn with the epochs running out: %d/%d, %v, want a new producer id at epoch 0", p, e, err)
	}
	if m := f.lastMarker(t); m.pid != pid || m.epoch != math.MaxInt16-1 {
		t.Errorf("marker %+v, want the old producer id at the last epoch", m)
	}
	if p2, e2, err := c.EndTxn("a", pid, math.MaxInt16-2, true, true); err != nil || p2 != p || e2 != 0 {
		t.Errorf("retry across the new producer id: %d/%d, %v, want %d/0", p2, e2, err, p)
	}
}
