package broker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/testenv"
)

// chaosRounds is how many times the chaos test kills the broker:
// RIFFLE_CHAOS_ROUNDS, or 50.
func chaosRounds(t *testing.T) int { return testenv.Int(t, "RIFFLE_CHAOS_ROUNDS", 50) }

// ackLedger records what the broker acknowledged.
type ackLedger struct {
	mu      sync.Mutex
	records map[[2]int64]string // (partition, offset) -> value
	commits map[int32]int64     // partition -> last acknowledged committed offset
	clashes []string
}

func (l *ackLedger) record(r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]int64{int64(r.Partition), r.Offset}
	if prev, ok := l.records[k]; ok && prev != string(r.Value) {
		l.clashes = append(l.clashes, fmt.Sprintf("partition %d offset %d acknowledged for %q and %q", r.Partition, r.Offset, prev, r.Value))
	}
	l.records[k] = string(r.Value)
}

// TestChaosKill9 kills the broker with SIGKILL at random moments (0.25 to
// 0.75 s of load after each start) while
// several idempotent producers write with acks=all to four partitions
// that roll segments every 64 KiB, and a group commits offsets; it
// restarts the broker on the same data directory after every kill. At
// the end every acknowledged record is read back at its acknowledged
// offset, every acknowledged commit is there, and the broker started
// every time. RIFFLE_CHAOS_ROUNDS sets the number of kills (default 50).
func TestChaosKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	rounds := chaosRounds(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d, %d kills", seed, rounds)

	const (
		topic      = "chaos"
		partitions = 4
		producers  = 3
		group      = "chaos-g"
	)
	dir, addr := t.TempDir(), testenv.FreeAddr(t)
	cmd, _ := startChildAt(t, dir, addr)
	admCl := newClient(t, addr, kgo.RetryTimeout(2*time.Second))
	createTopic(t, kadm.NewClient(admCl), topic, partitions, map[string]*string{"segment.bytes": kadm.StringPtr("65536")})
	admCl.Close()

	ledger := &ackLedger{records: make(map[[2]int64]string), commits: make(map[int32]int64)}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := range producers {
		cl := newClient(t, addr, kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
			kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerLinger(time.Millisecond),
			kgo.MaxBufferedRecords(2000), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				v := fmt.Sprintf("p%d-%d", p, i)
				cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
					if err == nil {
						ledger.record(r)
					}
				})
			}
		}()
	}
	commitCl := newClient(t, addr, kgo.RetryTimeout(500*time.Millisecond))
	wg.Add(1)
	go func() {
		defer wg.Done()
		adm := kadm.NewClient(commitCl)
		for i := int64(1); ctx.Err() == nil; i++ {
			offs := make(kadm.Offsets)
			for p := range int32(partitions) {
				offs.AddOffset(topic, p, i, -1)
			}
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, err := adm.CommitOffsets(cctx, group, offs)
			cancel()
			if err != nil {
				continue
			}
			ledger.mu.Lock()
			resp.Each(func(o kadm.OffsetResponse) {
				if o.Err == nil {
					ledger.commits[o.Partition] = o.At
				}
			})
			ledger.mu.Unlock()
		}
	}()

	start := time.Now()
	var starting time.Duration
	for range rounds {
		time.Sleep(250*time.Millisecond + time.Duration(rng.Int64N(int64(500*time.Millisecond))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		restart := time.Now()
		cmd, _ = startChildAt(t, dir, addr)
		starting += time.Since(restart)
	}
	stop()
	wg.Wait()
	loadTime := time.Since(start)

	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, c := range ledger.clashes {
		t.Error(c)
	}
	if len(ledger.records) == 0 || len(ledger.commits) == 0 {
		t.Fatalf("%d records and %d commits acknowledged: the test proves nothing", len(ledger.records), len(ledger.commits))
	}

	// Read every partition back up to its highest acknowledged offset.
	want := make(map[int32]int64)
	for k := range ledger.records {
		want[int32(k[0])] = max(want[int32(k[0])], k[1]+1)
	}
	parts := make(map[int32]kgo.Offset)
	for p := range int32(partitions) {
		parts[p] = kgo.NewOffset().AtStart()
	}
	consumer := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}), kgo.FetchMaxWait(200*time.Millisecond))
	stored := make(map[[2]int64]string)
	next := make(map[int32]int64)
	deadline := time.Now().Add(60 * time.Second)
	for done := false; !done; {
		if time.Now().After(deadline) {
			t.Fatalf("reading back timed out at %v, want %v", next, want)
		}
		pctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		fs := consumer.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			stored[[2]int64{int64(r.Partition), r.Offset}] = string(r.Value)
			next[r.Partition] = r.Offset + 1
		})
		done = true
		for p, end := range want {
			done = done && next[p] >= end
		}
	}
	lost := 0
	for k, v := range ledger.records {
		if got, ok := stored[k]; !ok || got != v {
			lost++
			if lost <= 10 {
				t.Errorf("partition %d offset %d: acknowledged %q, read back %q (present %v)", k[0], k[1], v, got, ok)
			}
		}
	}

	offs, err := kadm.NewClient(consumer).FetchOffsets(testContext(t), group)
	if err != nil {
		t.Fatal(err)
	}
	lostCommits := 0
	for p, at := range ledger.commits {
		if o, ok := offs.Lookup(topic, p); !ok || o.At < at {
			lostCommits++
			t.Errorf("partition %d: committed offset %d after the kills, last acknowledged %d", p, o.At, at)
		}
	}
	t.Logf("%d kills over %v, %d restarts all started (%v starting); %d acknowledged records, %d lost; last acknowledged commits %v, %d lost",
		rounds, loadTime.Round(time.Millisecond), rounds, starting.Round(time.Millisecond), len(ledger.records), lost, ledger.commits, lostCommits)
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records lost", lost, len(ledger.records))
	}
}
