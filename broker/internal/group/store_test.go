package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/riffle-stream/riffle/broker/internal/crashtest"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// openCoordinator opens a coordinator on dir in fs (the operating
// system's when nil) with one topic "t" of 4 partitions.
func openCoordinator(tb testing.TB, dir string, fs vfs.FS) *Coordinator {
	tb.Helper()
	topics := map[string]Topic{"t": {Name: "t", ID: [16]byte{1}, Partitions: 4}}
	c, err := Open(Config{Dir: dir, FS: fs, Topics: func() map[string]Topic { return topics }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// commit sends an administrative OffsetCommit of offset for one
// partition of topic t and reports whether it was acknowledged.
func commit(c *Coordinator, group string, partition int32, offset int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 9, group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = partition, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := c.Handle(context.Background(), Client{}, req).(*kmsg.OffsetCommitResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
		return fmt.Errorf("commit %s/%d at %d: error %d", group, partition, offset, code)
	}
	return nil
}

// committed reads the offsets of a group by partition of topic t.
func committed(c *Coordinator, group string) map[int32]int64 {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 9
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	req.Groups = append(req.Groups, rg)
	resp := c.Handle(context.Background(), Client{}, req).(*kmsg.OffsetFetchResponse)
	out := make(map[int32]int64)
	for _, t := range resp.Groups[0].Topics {
		for _, p := range t.Partitions {
			out[p.Partition] = p.Offset
		}
	}
	return out
}

func TestStoreRefusesStringsItCannotPrefix(t *testing.T) {
	if _, err := offsetKey(strings.Repeat("g", 1<<16), tp{"t", 0}); !errors.Is(err, errStringTooLong) {
		t.Fatalf("offset key of a 65,536-byte group: %v, want errStringTooLong", err)
	}
	k, err := offsetKey(strings.Repeat("g", 1<<16-1), tp{"t", 3})
	if err != nil {
		t.Fatal(err)
	}
	if g, p, err := parseOffsetKey(k); err != nil || len(g) != 1<<16-1 || p != (tp{"t", 3}) {
		t.Fatalf("65,535-byte group read back as %d bytes %v: %v", len(g), p, err)
	}

	c := openCoordinator(t, t.TempDir(), nil)
	defer c.Close()
	b := c.store.batch()
	b.putOffset("ok", tp{"t", 0}, offset{Offset: 1})
	b.putOffset(strings.Repeat("g", 1<<16), tp{"t", 0}, offset{Offset: 2})
	if _, err := b.apply(); !errors.Is(err, errStringTooLong) {
		t.Fatalf("batch with an unencodable key applied: %v", err)
	}
	if got := committed(c, "ok"); len(got) != 0 {
		t.Fatalf("part of a failed batch was stored: %v", got)
	}
}

// TestOffsetCommitsSurvivePowerCut commits offsets from several
// committers at once and cuts the power at a random moment: only what was
// synced survives. After each cut the store opens, and every partition
// holds its last acknowledged commit or a later one that was in flight.
func TestOffsetCommitsSurvivePowerCut(t *testing.T) {
	rounds := crashtest.Rounds(t, 100)
	seed := crashtest.Seed(t)
	t.Logf("seed %d (RIFFLE_CRASH_SEED), %d rounds", seed, rounds)
	rng := rand.New(rand.NewPCG(seed, 0))
	const committers = 6
	totalAcked := 0
	for round := range rounds {
		fs := vfs.NewStrictMem()
		c := openCoordinator(t, "groups", fs)
		cutAfter := rng.IntN(300)
		var (
			cut   atomic.Bool
			acks  atomic.Int64
			mu    sync.Mutex
			acked = make(map[string]int64) // group/partition -> last acknowledged offset
			tried = make(map[string]int64) // group/partition -> last offset sent
			wg    sync.WaitGroup
		)
		cutNow := make(chan struct{})
		for w := range committers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				group := "g" + strconv.Itoa(w%3) // two committers per group, on their own partitions
				p := int32(w / 3)
				key := group + "/" + strconv.Itoa(int(p))
				for off := int64(1); !cut.Load(); off++ {
					mu.Lock()
					tried[key] = off
					mu.Unlock()
					if err := commit(c, group, p, off); err != nil {
						t.Error(err)
						return
					}
					// Acknowledged before the cut: the sync reached the disk.
					if cut.Load() {
						return
					}
					mu.Lock()
					acked[key] = off
					mu.Unlock()
					if acks.Add(1) == int64(cutAfter) {
						close(cutNow)
					}
				}
			}()
		}
		select {
		case <-cutNow:
		case <-time.After(time.Duration(rng.IntN(20)) * time.Millisecond):
		}
		cut.Store(true)
		fs.SetIgnoreSyncs(true)
		wg.Wait()
		c.Close()
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)

		c = openCoordinator(t, "groups", fs)
		for key, want := range acked {
			group, ps, _ := strings.Cut(key, "/")
			p, _ := strconv.Atoi(ps)
			got, ok := committed(c, group)[int32(p)]
			if !ok || got < want || got > tried[key] {
				t.Fatalf("round %d: %s holds %d after the power cut, acknowledged %d, last sent %d", round, key, got, want, tried[key])
			}
		}
		totalAcked += int(acks.Load())
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds, %d acknowledged commits, none lost", rounds, totalAcked)
}

// BenchmarkOffsetCommitGroups commits from groups in parallel, each to
// its own group, on the real disk: commits of different groups share
// fsyncs instead of queueing for one another's.
func BenchmarkOffsetCommitGroups(b *testing.B) {
	for _, groups := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			c := openCoordinator(b, b.TempDir(), nil)
			defer c.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for g := range groups {
				wg.Add(1)
				go func() {
					defer wg.Done()
					group := "g" + strconv.Itoa(g)
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							return
						}
						if err := commit(c, group, int32(n%4), n); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "commits/s")
		})
	}
}

// TestConcurrentCommitsStoreWhatTheyShow commits to one partition from
// many goroutines at once: commits sync outside the coordinator's lock,
// yet what a restart reads back is what the group showed before it, the
// last commit applied, never an earlier one overtaking it.
func TestConcurrentCommitsStoreWhatTheyShow(t *testing.T) {
	dir := t.TempDir()
	c := openCoordinator(t, dir, nil)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := commit(c, "g", 0, int64(w*1000+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	shown := committed(c, "g")[0]
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openCoordinator(t, dir, nil)
	defer c.Close()
	if got := committed(c, "g")[0]; got != shown {
		t.Fatalf("after a restart partition 0 holds %d, the group showed %d", got, shown)
	}
}
