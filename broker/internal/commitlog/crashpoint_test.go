package commitlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/riffle-stream/riffle/internal/testenv"
)

// crashRoundsEnv sets how many rounds TestCrashPoints runs (default 200);
// crashSeedEnv sets its seed (default 1).
const (
	crashRoundsEnv = "COMMITLOG_CRASH_ROUNDS"
	crashSeedEnv   = "COMMITLOG_CRASH_SEED"
)

// notesFile is a file the log does not know, which recovery must keep.
const notesFile = "operator-notes.txt"

// stored identifies a batch by where it is and what it holds: test
// batches carry a unique first timestamp.
type stored struct {
	last, ts int64
}

// crashHistory is what a round saw before its power cuts: the batches
// whose WaitDurable returned, those a consumer read, the highest high
// watermark it was told and the start offsets DeleteRecords and
// retention returned.
type crashHistory struct {
	acked, seen map[int64]stored
	hwm, start  int64
	records     int64 // acknowledged records
}

// crashCycle runs producers, a consumer, retention and DeleteRecords on l
// until the cut'th append, then cuts the power: from that moment fsyncs
// do nothing and what the goroutines learn no longer counts. It returns
// the files as they were at the cut.
type crashCycle struct {
	t       *testing.T
	fs      *vfs.MemFS
	l       *Log
	h       *crashHistory
	durable bool // group commit: acknowledgements and high watermarks count

	mu       sync.Mutex // orders the cut against recording what was learnt
	cut      atomic.Bool
	appends  atomic.Int64
	captured map[string][]byte
	errs     chan error
}

func (c *crashCycle) powerCut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut.Load() {
		return
	}
	c.fs.SetIgnoreSyncs(true)
	c.cut.Store(true)
	c.captured = make(map[string][]byte)
	names, err := c.fs.List(memDir)
	if err != nil {
		c.errs <- err
		return
	}
	for _, n := range names {
		if b, err := readFile(c.fs, c.fs.PathJoin(memDir, n)); err == nil {
			c.captured[n] = b
		}
	}
}

// record runs fn, which records something learnt, unless the power is cut.
func (c *crashCycle) record(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cut.Load() {
		fn()
	}
}

func (c *crashCycle) produce(rng *rand.Rand, id int64, cutAt int64) {
	for seq := int64(0); !c.cut.Load(); seq++ {
		n := 1 + rng.IntN(4)
		ts := id<<32 | seq
		res, err := c.l.Append(makeBatch(c.t, plain(n, ts)), time.Now())
		if err != nil {
			c.errs <- fmt.Errorf("append: %w", err)
			return
		}
		if c.appends.Add(1) == cutAt {
			c.powerCut()
		}
		if rng.IntN(10) < 3 {
			continue // acks=0
		}
		if err := c.l.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
			c.errs <- fmt.Errorf("wait: %w", err)
			return
		}
		if c.durable {
			c.record(func() {
				c.h.acked[res.BaseOffset] = stored{res.LastOffset, ts}
				c.h.records += int64(n)
			})
		}
	}
}

func (c *crashCycle) consume() {
	pos := c.l.StartOffset()
	for !c.cut.Load() {
		ch := c.l.Changed()
		b, bounds, err := c.l.Fetch(pos, 2048, nil)
		if errors.Is(err, ErrOffsetOutOfRange) {
			pos = c.l.StartOffset()
			continue
		}
		if err != nil {
			c.errs <- fmt.Errorf("fetch at %d: %w", pos, err)
			return
		}
		var hs []batchHeader
		for len(b) > 0 {
			h, err := checkBatch(b)
			if err != nil || h.baseOffset > pos && len(hs) == 0 || h.lastOffset() >= bounds.HighWatermark {
				c.errs <- fmt.Errorf("fetch at %d below %d returned a bad batch at %d: %v", pos, bounds.HighWatermark, h.baseOffset, err)
				return
			}
			hs, b, pos = append(hs, h), b[h.size:], h.lastOffset()+1
		}
		if c.durable {
			c.record(func() {
				for _, h := range hs {
					c.h.seen[h.baseOffset] = stored{h.lastOffset(), h.baseTimestamp}
				}
				c.h.hwm = max(c.h.hwm, bounds.HighWatermark)
			})
		}
		if len(hs) == 0 {
			select {
			case <-ch:
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func (c *crashCycle) administer(rng *rand.Rand) {
	for !c.cut.Load() {
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		var start int64
		var err error
		if rng.IntN(2) == 0 {
			err = c.l.EnforceRetention(time.Now())
			start = c.l.StartOffset()
		} else {
			from, hwm := c.l.StartOffset(), c.l.HighWatermark()
			start, err = c.l.DeleteRecords(from + rng.Int64N(hwm-from+1))
		}
		if err != nil {
			c.errs <- fmt.Errorf("delete: %w", err)
			return
		}
		c.record(func() { c.h.start = max(c.h.start, start) })
	}
}

// tear puts back, after ResetToSyncedState, a random part of the bytes
// appended to each file since its last fsync, as a disk writing back
// some of its page cache before the power went does.
func tear(t *testing.T, fs *vfs.MemFS, captured map[string][]byte, rng *rand.Rand) {
	t.Helper()
	for name, c := range captured {
		path := fs.PathJoin(memDir, name)
		s, err := readFile(fs, path)
		if err != nil || len(c) <= len(s) || !bytes.Equal(c[:len(s)], s) {
			continue
		}
		k := len(c) - len(s)
		switch rng.IntN(3) {
		case 0:
			continue
		case 1:
			k = 1 + rng.IntN(k)
		}
		f, err := fs.OpenReadWrite(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(c[len(s):len(s)+k], int64(len(s))); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(f.Sync(), f.Close()); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRecovered checks the reopened log against what was learnt before
// the power cuts. It forgets the batches deleted since.
func checkRecovered(t *testing.T, l *Log, h *crashHistory, where string) {
	t.Helper()
	start, hwm := l.StartOffset(), l.HighWatermark()
	if start < h.start {
		t.Fatalf("%s: start offset %d, but %d was returned by DeleteRecords or retention", where, start, h.start)
	}
	if hwm < h.hwm {
		t.Fatalf("%s: high watermark %d, but a consumer was told %d", where, hwm, h.hwm)
	}
	got := make(map[int64]stored)
	next := start
	for off := start; off < hwm; {
		b, err := l.Read(off, 1<<20, nil)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: read at %d below %d: %d bytes, %v", where, off, hwm, len(b), err)
		}
		for len(b) > 0 {
			bh, err := checkBatch(b)
			if err != nil {
				t.Fatalf("%s: read at %d: %v", where, off, err)
			}
			if bh.baseOffset > next || bh.lastOffset() < next {
				t.Fatalf("%s: batch %d-%d does not follow on from offset %d", where, bh.baseOffset, bh.lastOffset(), next)
			}
			got[bh.baseOffset] = stored{bh.lastOffset(), bh.baseTimestamp}
			next, off, b = bh.lastOffset()+1, bh.lastOffset()+1, b[bh.size:]
		}
	}
	for what, m := range map[string]map[int64]stored{"acknowledged": h.acked, "consumed": h.seen} {
		for base, want := range m {
			if want.last < start {
				delete(m, base)
				continue
			}
			if g, ok := got[base]; !ok || g != want {
				t.Fatalf("%s: %s batch at %d (ending at %d, timestamp %#x) lost: the log has %+v, ok %v (start %d, high watermark %d)",
					where, what, base, want.last, want.ts, g, ok, start, hwm)
			}
		}
	}
}

// TestCrashPoints cuts the power at random moments while producers
// append, with and without waiting, across segment rolls, while a
// consumer reads and retention and DeleteRecords remove records, and
// lets a random part of what was not fsynced reach the disk. After each
// cut the log must open, and under group commit hold every acknowledged
// batch at its offset, every batch a consumer read, a high watermark no
// lower than any a consumer was told, and no record that was deleted.
func TestCrashPoints(t *testing.T) {
	rounds, seed := testenv.Int(t, crashRoundsEnv, 200), uint64(1)
	if v := os.Getenv(crashSeedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
		seed = n
	}
	var cuts, records, checked int64
	for round := range rounds {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		fs := vfs.NewStrictMem()
		cfg := memConfig(fs)
		cfg.SegmentBytes = 1024 + rng.Int64N(3072)
		cfg.RetentionBytes = 2*cfg.SegmentBytes + rng.Int64N(4*cfg.SegmentBytes)
		cfg.IndexIntervalBytes = 64 + rng.Int32N(512)
		durable := rng.IntN(4) != 0
		if !durable {
			cfg.Sync = SyncNone
		}
		where := fmt.Sprintf("seed %d round %d (%s)", seed, round, map[bool]string{true: "group commit", false: "no sync"}[durable])
		if err := fs.MkdirAll(memDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeFileAtomic(fs, fs.PathJoin(memDir, notesFile), []byte("keep me"), true); err != nil {
			t.Fatal(err)
		}
		if err := syncDir(fs, "/"); err != nil {
			t.Fatal(err)
		}
		h := &crashHistory{acked: make(map[int64]stored), seen: make(map[int64]stored)}
		l, err := Open(memDir, cfg)
		if err != nil {
			t.Fatalf("%s: open: %v", where, err)
		}
		for cycle := range 1 + rng.IntN(3) {
			where := fmt.Sprintf("%s cycle %d", where, cycle)
			c := &crashCycle{t: t, fs: fs, l: l, h: h, durable: durable, errs: make(chan error, 8)}
			cutAt := 1 + rng.Int64N(300)
			var wg sync.WaitGroup
			for p := range 1 + rng.IntN(3) {
				prng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
				id := int64(round)<<8 | int64(cycle)<<4 | int64(p)
				wg.Go(func() { c.produce(prng, id, cutAt) })
			}
			wg.Go(c.consume)
			arng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
			wg.Go(func() { c.administer(arng) })
			wg.Wait()
			l.Close()
			close(c.errs)
			for err := range c.errs {
				t.Fatalf("%s: %v", where, err)
			}
			fs.ResetToSyncedState()
			fs.SetIgnoreSyncs(false)
			tear(t, fs, c.captured, rng)
			cuts++

			if l, err = Open(memDir, cfg); err != nil {
				t.Fatalf("%s: open after the power cut: %v", where, err)
			}
			checkRecovered(t, l, h, where)
			if res, err := l.Append(makeBatch(t, plain(1, 0)), time.Now()); err != nil || res.BaseOffset != l.EndOffset()-1 {
				t.Fatalf("%s: append after recovery: %+v, %v", where, res, err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatalf("%s: close: %v", where, err)
		}
		if b, err := readFile(fs, fs.PathJoin(memDir, notesFile)); err != nil || string(b) != "keep me" {
			t.Fatalf("%s: recovery touched a file it does not know: %q, %v", where, b, err)
		}
		records += h.records
		checked += int64(len(h.acked))
	}
	t.Logf("%d rounds, %d power cuts, %d acknowledged records (%d batches still in the logs checked at their offsets), 0 lost",
		rounds, cuts, records, checked)
}
