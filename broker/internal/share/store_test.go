package share

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/crashtest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// shareClient is one share consumer of group g on topic jobs, speaking to the
// coordinator directly.
type shareClient struct {
	c     *Coordinator
	topic Topic
	id    string
	conn  uint64
	epoch int32
}

func (m *shareClient) join(t *testing.T) {
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.Version, req.GroupID, req.MemberID, req.SubscribedTopicNames = 1, "g", m.id, []string{m.topic.Name}
	resp := m.c.Handle(context.Background(), Client{ConnID: m.conn}, req).(*kmsg.ShareGroupHeartbeatResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("join %s: error %d", m.id, resp.ErrorCode)
	}
}

// fetch accepts the offsets in accept and acquires more. It reports
// whether the coordinator acknowledged the acceptances, and the offsets
// acquired.
func (m *shareClient) fetch(accept []int64) (bool, []int64, error) {
	req := kmsg.NewPtrShareFetchRequest()
	req.Version, req.GroupID, req.MemberID, req.ShareSessionEpoch = 1, kmsg.StringPtr("g"), kmsg.StringPtr(m.id), m.epoch
	req.MaxWaitMillis, req.MaxRecords, req.MaxBytes = 5, 50, 1<<20
	p := kmsg.NewShareFetchRequestTopicPartition()
	for _, off := range accept {
		p.AcknowledgementBatches = append(p.AcknowledgementBatches, kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch{FirstOffset: off, LastOffset: off, AcknowledgeTypes: []int8{ackAccept}})
	}
	req.Topics = []kmsg.ShareFetchRequestTopic{{TopicID: m.topic.ID, Partitions: []kmsg.ShareFetchRequestTopicPartition{p}}}
	resp := m.c.Handle(context.Background(), Client{ConnID: m.conn}, req).(*kmsg.ShareFetchResponse)
	if resp.ErrorCode != 0 {
		return false, nil, fmt.Errorf("share fetch of %s: error %d", m.id, resp.ErrorCode)
	}
	m.epoch++
	ok := len(accept) == 0
	var got []int64
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if rp.ErrorCode != 0 {
				return false, nil, fmt.Errorf("share fetch of %s: partition error %d", m.id, rp.ErrorCode)
			}
			ok = ok || rp.AcknowledgeErrorCode == 0
			for _, r := range rp.AcquiredRecords {
				for off := r.FirstOffset; off <= r.LastOffset; off++ {
					got = append(got, off)
				}
			}
		}
	}
	return ok, got, nil
}

// TestAcknowledgementsSurvivePowerCut has share consumers acquire and
// accept records while the power is cut at a seeded random moment: only
// what the share store synced survives. After each cut the store opens,
// and no record whose acceptance was acknowledged is delivered again.
func TestAcknowledgementsSurvivePowerCut(t *testing.T) {
	rounds := crashtest.Rounds(t, 100)
	seed := crashtest.Seed(t)
	t.Logf("seed %d (RIFFLE_CRASH_SEED), %d rounds", seed, rounds)
	rng := rand.New(rand.NewPCG(seed, 0))

	const records = 1000
	l, err := commitlog.Open(filepath.Join(t.TempDir(), "jobs-0"), commitlog.Config{RetentionAge: -1, RetentionBytes: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range records / 10 {
		if _, err := l.Append(recordBatch(10), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WaitDurable(context.Background(), records); err != nil {
		t.Fatal(err)
	}
	topic := Topic{Name: "jobs", ID: [16]byte{1}, Partitions: 1}
	open := func(fs vfs.FS) *Coordinator {
		c, err := Open(Config{
			Dir:         "share",
			FS:          fs,
			Topics:      func() map[string]Topic { return map[string]Topic{topic.Name: topic} },
			Logs:        logSet{{"jobs", 0}: l},
			GroupConfig: func(string) map[string]string { return map[string]string{"share.auto.offset.reset": "earliest"} },
			Logger:      slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	totalAcked := 0
	for round := range rounds {
		fs := vfs.NewStrictMem()
		c := open(fs)
		cutAfter := int64(rng.IntN(records / 2))
		var (
			cut   atomic.Bool
			count atomic.Int64
			mu    sync.Mutex
			acked = make(map[int64]bool) // acceptances acknowledged before the cut
			sent  = make(map[int64]bool) // acceptances sent
			wg    sync.WaitGroup
		)
		cutNow := make(chan struct{})
		var once sync.Once
		for i := range 3 {
			m := &shareClient{c: c, topic: topic, id: "member-" + strconv.Itoa(i), conn: uint64(i + 1)}
			m.join(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				var held []int64
				for !cut.Load() {
					mu.Lock()
					for _, off := range held {
						sent[off] = true
					}
					mu.Unlock()
					ok, got, err := m.fetch(held)
					if err != nil {
						t.Error(err)
						return
					}
					// Answered before the cut: the acceptances were synced.
					if cut.Load() {
						return
					}
					if ok && len(held) > 0 {
						mu.Lock()
						for _, off := range held {
							acked[off] = true
						}
						mu.Unlock()
						if count.Add(int64(len(held))) >= cutAfter {
							once.Do(func() { close(cutNow) })
						}
					}
					held = got
				}
			}()
		}
		select {
		case <-cutNow:
		case <-time.After(time.Duration(rng.IntN(50)) * time.Millisecond):
		}
		cut.Store(true)
		fs.SetIgnoreSyncs(true)
		wg.Wait()
		c.Close()
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)

		c = open(fs)
		m := &shareClient{c: c, topic: topic, id: "checker", conn: 99}
		m.join(t)
		seen := make(map[int64]bool)
		var held []int64
		for idle := 0; idle < 3; {
			_, got, err := m.fetch(held)
			if err != nil {
				t.Fatal(err)
			}
			for _, off := range got {
				if acked[off] {
					t.Fatalf("round %d: offset %d delivered again after the power cut; its acceptance was acknowledged", round, off)
				}
			}
			if len(got) == 0 {
				idle++
			}
			for _, off := range got {
				seen[off] = true
			}
			held = got
		}
		for off := range int64(records) {
			if !seen[off] && !sent[off] {
				t.Fatalf("round %d: offset %d was never accepted, yet is not delivered after the power cut", round, off)
			}
		}
		totalAcked += len(acked)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d acknowledged acceptances, none delivered again", rounds, totalAcked)
}

// TestLoadSkipsUndecodableRecords stores a share partition next to
// records that do not decode: the coordinator opens, logs them, and keeps
// the good partition's state.
func TestLoadSkipsUndecodableRecords(t *testing.T) {
	fs := vfs.NewMem()
	st, err := openStore("share", fs, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	good := &sharePartition{topicID: [16]byte{1}, win: window{start: 42}}
	b := st.batch()
	b.putGroup("g")
	b.putPartition("g", topicPartition{"jobs", 0}, good)
	if err := b.commit(); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string][]byte{
		"p\x05ab":                        nil,
		"p\x01g\x04jobs\x00\x00\x00\x01": make([]byte, 16),
		"p\x01g\x04jobs\x00\x00\x00\x02": append(make([]byte, 16), 9),
		"?":                              nil,
	} {
		if err := st.db.Set([]byte(k), v, nil); err != nil {
			t.Fatal(err)
		}
	}
	groups, parts, skipped, err := st.load()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.close(); err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || len(parts) != 1 || parts[0].win.start != 42 || skipped != 4 {
		t.Fatalf("loaded groups %v, partitions %+v, skipped %d; want g, jobs-0 at 42, 4 skipped", groups, parts, skipped)
	}
}
