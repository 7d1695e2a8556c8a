package commitlog

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// allocated returns the bytes of disk blocks the file at path holds.
func allocated(t *testing.T, path string) (blocks, size int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512, fi.Size()
}

// TestSegmentPreallocation checks on the OS's file system that the active
// segment's blocks are reserved ahead of its appends without changing
// its size, that a roll and Close give back what was reserved past the
// end, and that the log reopens with every record.
func TestSegmentPreallocation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.FS = nil
	cfg.SegmentBytes = 1 << 20
	cfg.SegmentAge = time.Hour
	l, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	batch := makeBatch(t, spec{n: 10, ts: 1, valueSize: 100, pid: -1, seq: -1})
	if _, err := l.Append(batch, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitDurable(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(dir, "00000000000000000000.log")
	blocks, size := allocated(t, first)
	if size != int64(len(batch)) {
		t.Fatalf("segment size %d, want the batch's %d", size, len(batch))
	}
	if blocks < preallocMin {
		t.Skipf("the file system did not preallocate: %d bytes of blocks for %d of records", blocks, size)
	}
	// A roll by age leaves the segment far below its size limit, with
	// most of its reservation unused.
	if err := l.EnforceRetention(time.Now().Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if len(l.segs) != 2 {
		t.Fatalf("%d segments after a roll by age, want 2", len(l.segs))
	}
	// Blocks are 4 KiB, and the file system may count a block of its own.
	const slack = 16 << 10
	if blocks, size := allocated(t, first); blocks > size+slack {
		t.Errorf("rolled segment holds %d bytes of blocks for %d of records", blocks, size)
	}
	if _, err := l.Append(batch, time.Now()); err != nil {
		t.Fatal(err)
	}
	const next = 20
	if err := l.WaitDurable(context.Background(), next); err != nil {
		t.Fatal(err)
	}
	active := filepath.Join(dir, l.segs[1].name())
	if blocks, _ := allocated(t, active); blocks < preallocMin {
		t.Errorf("new active segment holds %d bytes of blocks, want its reservation of %d", blocks, preallocMin)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if blocks, size := allocated(t, active); blocks > size+slack {
		t.Errorf("closed active segment holds %d bytes of blocks for %d of records", blocks, size)
	}
	l = openLog(t, dir, cfg)
	if got := l.EndOffset(); got != next {
		t.Fatalf("end offset %d after reopening, want %d", got, next)
	}
	if hs := readAll(t, l, 0); int64(len(hs))*10 != next {
		t.Fatalf("read %d batches, want %d", len(hs), next/10)
	}
}
