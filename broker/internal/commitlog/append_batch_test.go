package commitlog

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

// writeGate holds back the first write to a segment file once armed,
// until released, and counts the writes to segment files.
type writeGate struct {
	armed   atomic.Bool
	held    chan struct{} // closed when the first write is held
	release chan struct{}
	writes  atomic.Int32
	once    sync.Once
}

func (g *writeGate) MaybeError(op errorfs.Op, path string) error {
	if op != errorfs.OpFileWriteAt || !strings.HasSuffix(path, logSuffix) || !g.armed.Load() {
		return nil
	}
	g.writes.Add(1)
	g.once.Do(func() {
		close(g.held)
		<-g.release
	})
	return nil
}

// TestConcurrentAppendsShareAWrite holds one append in its write and
// checks that the appends queued behind it are written with one write,
// each answered with its own offsets, idempotent ones checked in turn
// against what the ones before them left: a retry is a duplicate, a
// sequence gap is refused without failing the others.
func TestConcurrentAppendsShareAWrite(t *testing.T) {
	gate := &writeGate{held: make(chan struct{}), release: make(chan struct{})}
	l := openMem(t, errorfs.Wrap(vfs.NewMem(), gate))
	gate.armed.Store(true)

	type result struct {
		res AppendResult
		err error
	}
	batches := [][]byte{
		makeBatch(t, idem(7, 0, 0, 2)), // held in its write
		makeBatch(t, idem(7, 0, 2, 3)),
		makeBatch(t, plain(4, 50)),
		makeBatch(t, idem(7, 0, 2, 3)), // a retry of the second
		makeBatch(t, idem(7, 0, 9, 1)), // a gap
		makeBatch(t, idem(7, 0, 5, 1)),
	}
	results := make([]result, len(batches))
	var wg sync.WaitGroup
	appendAt := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := l.Append(batches[i], t0)
			results[i] = result{res, err}
		}()
	}
	appendAt(0)
	<-gate.held
	for i := 1; i < len(batches); i++ {
		appendAt(i)
		// Queue them in order: each is checked against the ones before.
		deadline := time.Now().Add(30 * time.Second)
		for {
			l.queueMu.Lock()
			n := len(l.queue)
			l.queueMu.Unlock()
			if n == i {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d appends queued, want %d", n, i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	close(gate.release)
	wg.Wait()

	want := []struct {
		base, last int64
		dup        bool
		err        error
	}{
		{0, 1, false, nil},
		{2, 4, false, nil},
		{5, 8, false, nil},
		{2, 4, true, nil},
		{0, 0, false, ErrOutOfOrderSequence},
		{9, 9, false, nil},
	}
	for i, w := range want {
		r := results[i]
		if w.err != nil {
			if r.err == nil || !errors.Is(r.err, w.err) {
				t.Errorf("append %d: err %v, want %v", i, r.err, w.err)
			}
			continue
		}
		if r.err != nil || r.res.BaseOffset != w.base || r.res.LastOffset != w.last || r.res.Duplicate != w.dup {
			t.Errorf("append %d: %+v, %v; want offsets %d-%d, duplicate %v", i, r.res, r.err, w.base, w.last, w.dup)
		}
	}
	if n := gate.writes.Load(); n != 2 {
		t.Errorf("%d writes to the segment, want 2: the held one and one for the appends queued behind it", n)
	}
	if err := l.WaitDurable(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	hs := readAll(t, l, 0)
	var offs [][2]int64
	for _, h := range hs {
		offs = append(offs, [2]int64{h.baseOffset, h.lastOffset()})
	}
	if len(offs) != 4 || offs[0] != [2]int64{0, 1} || offs[1] != [2]int64{2, 4} || offs[2] != [2]int64{5, 8} || offs[3] != [2]int64{9, 9} {
		t.Fatalf("read batches at %v, want [0 1] [2 4] [5 8] [9 9]", offs)
	}
}

// TestConcurrentAppends appends from many goroutines at once, each an
// idempotent producer of its own, and checks that every producer's
// batches got increasing, distinct offsets, all of which read back with
// their producer's sequence.
func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 8 << 10 // rolls between the appends of one write
	l := openLog(t, dir, cfg)
	const producers, each = 8, 60
	type placed struct {
		pid  int64
		seq  int32
		last int64
	}
	got := make(chan placed, producers*each)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			pid := int64(100 + p)
			var prev int64 = -1
			for i := range each {
				res, err := l.Append(makeBatch(t, idem(pid, 0, int32(2*i), 2)), t0)
				if err != nil {
					t.Errorf("producer %d append %d: %v", pid, i, err)
					return
				}
				if res.BaseOffset <= prev || res.LastOffset != res.BaseOffset+1 {
					t.Errorf("producer %d append %d at %d-%d after %d", pid, i, res.BaseOffset, res.LastOffset, prev)
					return
				}
				prev = res.LastOffset
				got <- placed{pid, int32(2 * i), res.BaseOffset}
			}
		})
	}
	wg.Wait()
	close(got)
	if t.Failed() {
		return
	}
	at := make(map[int64]placed)
	for p := range got {
		at[p.last] = p
	}
	if err := l.WaitDurable(context.Background(), producers*each*2); err != nil {
		t.Fatal(err)
	}
	hs := readAll(t, l, 0)
	if len(hs) != producers*each {
		t.Fatalf("read %d batches, want %d", len(hs), producers*each)
	}
	for i, h := range hs {
		p, ok := at[h.baseOffset]
		if h.baseOffset != int64(2*i) || !ok || p.pid != h.producerID || p.seq != h.baseSequence {
			t.Fatalf("batch %d at %d of producer %d sequence %d; the append there was %+v", i, h.baseOffset, h.producerID, h.baseSequence, p)
		}
	}
}
