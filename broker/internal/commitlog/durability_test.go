package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
	"github.com/twmb/franz-go/pkg/kgo"
)

// syncGate blocks the fsyncs of segment files while it is closed.
type syncGate struct {
	closed atomic.Bool
	open   chan struct{}
}

func newSyncGate() *syncGate { return &syncGate{open: make(chan struct{})} }

func (g *syncGate) MaybeError(op errorfs.Op, path string) error {
	if op == errorfs.OpFileSync && strings.HasSuffix(path, logSuffix) && g.closed.Load() {
		<-g.open
	}
	return nil
}

// TestHighWatermarkIsDurable holds an fsync back and checks that under
// group commit nothing past the durable offset is visible, to Fetch, to
// the timestamp lookups or as the high watermark, and that
// Changed fires once the fsync lets the high watermark advance.
func TestHighWatermarkIsDurable(t *testing.T) {
	gate := newSyncGate()
	fs := errorfs.Wrap(vfs.NewMem(), gate)
	l := openMem(t, fs)
	first := mustAppend(t, l, makeBatch(t, plain(2, 100)))
	gate.closed.Store(true)
	ch := l.Changed()
	res, err := l.Append(makeBatch(t, plain(3, 200)), t0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the flusher reach the gate
	if hw, end := l.HighWatermark(), l.EndOffset(); hw != first.LastOffset+1 || end != res.LastOffset+1 {
		t.Fatalf("high watermark %d, end %d while the fsync is held", hw, end)
	}
	b, bounds, err := l.Fetch(0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if hs := headers(t, b); len(hs) != 1 || bounds.HighWatermark != 2 || bounds.StartOffset != 0 {
		t.Fatalf("fetch returned %d batches with bounds %+v, want 1 batch below 2", len(hs), bounds)
	}
	if b, bounds, err := l.Fetch(2, 1<<20, nil); err != nil || len(b) != 0 || bounds.HighWatermark != 2 {
		t.Fatalf("fetch at the high watermark: %d bytes, %+v, %v", len(b), bounds, err)
	}
	if _, _, ok := l.OffsetForTimestamp(200); ok {
		t.Fatal("timestamp lookup found a record past the high watermark")
	}
	if off, ts := l.MaxTimestamp(); off != -1 || ts != -1 {
		t.Fatalf("max timestamp (%d, %d) past the high watermark", off, ts)
	}
	select {
	case <-ch:
		t.Fatal("Changed fired before the high watermark moved")
	default:
	}
	gate.closed.Store(false)
	close(gate.open)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("Changed did not fire when the high watermark advanced")
	}
	if err := l.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
		t.Fatal(err)
	}
	b, bounds, err = l.Fetch(0, 1<<20, nil)
	if err != nil || len(headers(t, b)) != 2 || bounds.HighWatermark != res.LastOffset+1 {
		t.Fatalf("fetch after the fsync: %+v, %v", bounds, err)
	}
}

// TestUnwaitedAppendsBecomeVisible checks that appends no one waits for,
// as with acks=0, are flushed and become readable.
func TestUnwaitedAppendsBecomeVisible(t *testing.T) {
	l := openMem(t, vfs.NewMem())
	for i := range 50 {
		if _, err := l.Append(makeBatch(t, plain(2, int64(i))), t0); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.HighWatermark() < 100 {
		if time.Now().After(deadline) {
			t.Fatalf("high watermark stuck at %d, end %d", l.HighWatermark(), l.EndOffset())
		}
		select {
		case <-l.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if hs := readAll(t, l, 0); len(hs) != 50 {
		t.Fatalf("%d batches", len(hs))
	}
}

// headers parses the batches of b.
func headers(t testing.TB, b []byte) []batchHeader {
	t.Helper()
	var hs []batchHeader
	for len(b) > 0 {
		h, err := checkBatch(b)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		b = b[h.size:]
	}
	return hs
}

// faultFS injects storage faults into the files of a log: fsyncs of
// segment files fail with EIO while syncEIO is set, and writes to any
// file fail with ENOSPC, after writing half of their bytes, while full
// is set.
type faultFS struct {
	vfs.FS
	syncEIO, full atomic.Bool
}

func (d *faultFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := d.FS.OpenReadWrite(name, opts...)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, d: d, name: name}, nil
}

func (d *faultFS) Create(name string) (vfs.File, error) {
	if d.full.Load() {
		return nil, syscall.ENOSPC
	}
	f, err := d.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, d: d, name: name}, nil
}

type faultFile struct {
	vfs.File
	d    *faultFS
	name string
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.d.full.Load() {
		n, _ := f.File.WriteAt(p[:len(p)/2], off)
		return n, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.d.full.Load() {
		n, _ := f.File.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if f.d.syncEIO.Load() && strings.HasSuffix(f.name, logSuffix) {
		return syscall.EIO
	}
	return f.File.Sync()
}

// lockedBuffer collects log output from concurrent goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.b.String(), s)
}

// checkOffline checks that l refuses appends and reads with ErrStorage
// wrapping cause, and logged the transition once.
func checkOffline(t *testing.T, l *Log, logs *lockedBuffer, cause error) {
	t.Helper()
	if _, err := l.Append(makeBatch(t, plain(1, 0)), t0); !errors.Is(err, ErrStorage) || !errors.Is(err, cause) {
		t.Fatalf("append to an offline log: %v", err)
	}
	if _, err := l.Read(0, 1<<20, nil); !errors.Is(err, ErrStorage) {
		t.Fatalf("read from an offline log: %v", err)
	}
	if _, err := l.DeleteRecords(0); !errors.Is(err, ErrStorage) {
		t.Fatalf("DeleteRecords on an offline log: %v", err)
	}
	if err := l.Err(); !errors.Is(err, ErrStorage) || !errors.Is(err, cause) {
		t.Fatalf("Err of an offline log: %v", err)
	}
	if n := logs.count("level=ERROR"); n != 1 {
		t.Fatalf("%d errors logged, want 1:\n%s", n, logs.b.String())
	}
}

// openFaulty opens a log on an in-memory file system whose faults the
// test switches on, logging into a buffer the test can read.
func openFaulty(t *testing.T) (*faultFS, *lockedBuffer, *Log) {
	t.Helper()
	fs := &faultFS{FS: vfs.NewMem()}
	logs := &lockedBuffer{}
	cfg := memConfig(fs)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	l, err := Open(memDir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fs, logs, l
}

// TestFsyncErrorTakesLogOffline fails an fsync: the waiting append gets
// ErrStorage, the log serves and acknowledges nothing more, and after a
// restart every record acknowledged before the failure is there.
func TestFsyncErrorTakesLogOffline(t *testing.T) {
	for _, during := range []string{"group commit", "roll"} {
		t.Run(during, func(t *testing.T) {
			fs, logs, l := openFaulty(t)
			batch := makeBatch(t, plain(2, 0))
			for range 20 {
				mustAppend(t, l, batch)
			}
			acked := l.HighWatermark()
			fs.syncEIO.Store(true)
			n := 1
			if during == "roll" {
				n = 100 // enough to roll under the 4 KiB segment size
			}
			var lastErr error
			for range n {
				res, err := l.Append(batch, t0)
				if err == nil {
					err = l.WaitDurable(context.Background(), res.LastOffset+1)
				}
				if lastErr = err; err != nil {
					break
				}
			}
			if !errors.Is(lastErr, ErrStorage) || !errors.Is(lastErr, syscall.EIO) {
				t.Fatalf("append under a failing fsync: %v", lastErr)
			}
			if l.HighWatermark() != acked {
				t.Fatalf("high watermark %d moved past %d over a failed fsync", l.HighWatermark(), acked)
			}
			checkOffline(t, l, logs, syscall.EIO)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			fs.syncEIO.Store(false)
			l = openMem(t, fs)
			if l.EndOffset() < acked {
				t.Fatalf("end %d after restart, %d were acknowledged", l.EndOffset(), acked)
			}
			readAll(t, l, 0)
			mustAppend(t, l, batch)
		})
	}
}

// TestDiskFullTakesLogOffline fills the disk in the middle of an append:
// the append fails with ErrStorage, the half-written batch is never
// served, and once space returns a restart cuts it off and the log takes
// appends again.
func TestDiskFullTakesLogOffline(t *testing.T) {
	fs, logs, l := openFaulty(t)
	batch := makeBatch(t, plain(2, 0))
	for range 10 {
		mustAppend(t, l, batch)
	}
	fs.full.Store(true)
	if _, err := l.Append(batch, t0); !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append to a full disk: %v", err)
	}
	if l.EndOffset() != 20 || l.HighWatermark() != 20 {
		t.Fatalf("end %d, high watermark %d after a failed append, want 20", l.EndOffset(), l.HighWatermark())
	}
	checkOffline(t, l, logs, syscall.ENOSPC)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	fs.full.Store(false)
	l = openMem(t, fs)
	if l.EndOffset() != 20 {
		t.Fatalf("end %d after restart, want 20", l.EndOffset())
	}
	if hs := readAll(t, l, 0); len(hs) != 10 {
		t.Fatalf("%d batches after restart, want 10", len(hs))
	}
	if res := mustAppend(t, l, batch); res.BaseOffset != 20 {
		t.Fatalf("append after restart at %d, want 20", res.BaseOffset)
	}
	readAll(t, l, 0)
}

// TestLookupsWarnWhileConfigChanges runs timestamp lookups that log a
// warning, over a batch whose compressed records do not decode, while
// SetConfig changes the config: under -race it fails if the lookups read
// the config's logger without the lock.
func TestLookupsWarnWhileConfigChanges(t *testing.T) {
	fs := vfs.NewMem()
	cfg := memConfig(fs)
	l := openMem(t, fs)
	mustAppend(t, l, makeBatch(t, spec{n: 4, ts: 50, valueSize: 30, pid: -1, seq: -1, codec: kgo.GzipCompression()}))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Garble the compressed records on disk, keeping the CRC right.
	path := (&segment{fs: fs, dir: memDir}).path(logSuffix)
	b, err := readFile(fs, path)
	if err != nil {
		t.Fatal(err)
	}
	for i := batchHeaderSize; i < len(b); i++ {
		b[i] = 0xa5
	}
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	f, err := fs.OpenReadWrite(path)
	if err == nil {
		_, err = f.WriteAt(b, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	l = openMem(t, fs)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			cfg.SegmentAge = time.Duration(i+1) * time.Hour
			l.SetConfig(cfg)
		}
	})
	for range 200 {
		if _, _, ok := l.OffsetForTimestamp(51); ok {
			t.Fatal("found a record in a batch that does not decode")
		}
	}
	wg.Wait()
}

// TestIdleLogsHaveNoFlusher opens many logs that are never written to:
// they start no goroutine, which matters to a broker with thousands of
// idle partitions.
func TestIdleLogsHaveNoFlusher(t *testing.T) {
	fs := vfs.NewMem()
	before := runtime.NumGoroutine()
	var logs []*Log
	for i := range 100 {
		l, err := Open(fmt.Sprintf("/idle-%d", i), memConfig(fs))
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Fatalf("%d goroutines for 100 idle logs", n)
	}
	mustAppend(t, logs[0], makeBatch(t, plain(1, 0)))
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOnFsyncTimesEachFsync checks that the fsync hook sees every group
// commit and every roll's fsync, with the time the fsync took.
func TestOnFsyncTimesEachFsync(t *testing.T) {
	gate := newSyncGate()
	fs := errorfs.Wrap(vfs.NewMem(), gate)
	var mu sync.Mutex
	var seen []time.Duration
	cfg := memConfig(fs)
	cfg.OnFsync = func(d time.Duration) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	}
	l, err := Open(memDir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	calls := func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	mustAppend(t, l, makeBatch(t, plain(2, 0)))
	if n := len(calls()); n != 1 {
		t.Fatalf("%d fsyncs reported after one group commit, want 1", n)
	}
	gate.closed.Store(true)
	res, err := l.Append(makeBatch(t, plain(2, 0)), t0)
	if err != nil {
		t.Fatal(err)
	}
	const held = 30 * time.Millisecond
	time.AfterFunc(held, func() { close(gate.open) })
	if err := l.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
		t.Fatal(err)
	}
	gate.closed.Store(false)
	if got := calls(); len(got) != 2 || got[1] < held {
		t.Fatalf("fsyncs reported %v, want a second one of at least %v", got, held)
	}
	before := len(calls())
	segs := len(memSegments(t, fs))
	for len(memSegments(t, fs)) == segs {
		if _, err := l.Append(makeBatch(t, plain(20, 0)), t0); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(calls()) - before; n < 1 {
		t.Fatal("the fsync of a segment roll was not reported")
	}
}
