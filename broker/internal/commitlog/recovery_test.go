package commitlog

import (
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

const memDir = "/log"

// memConfig is testConfig on fs, under group commit.
func memConfig(fs vfs.FS) Config {
	cfg := testConfig()
	cfg.FS = fs
	return cfg
}

// memSegments returns the base offsets of the log's segments on fs.
func memSegments(t testing.TB, fs vfs.FS) []int64 {
	t.Helper()
	names, err := fs.List(memDir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []int64
	for _, n := range names {
		if b, ok := parseBase(n, logSuffix); ok {
			bases = append(bases, b)
		}
	}
	slices.Sort(bases)
	return bases
}

// rewriteFile replaces the file at path with its first n bytes, synced.
func rewriteFile(t testing.TB, fs vfs.FS, path string, n int64) {
	t.Helper()
	f, err := fs.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	nf, err := fs.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nf.Write(b[:n]); err != nil {
		t.Fatal(err)
	}
	if err := nf.Sync(); err != nil {
		t.Fatal(err)
	}
	nf.Close()
	if err := syncDir(fs, memDir); err != nil {
		t.Fatal(err)
	}
}

// TestRepairTornOlderSegment covers a log whose older segment lost its
// tail, mid-batch or at a batch boundary, past its recovery point: an
// older version of the log did not fsync a segment before rolling. Open
// truncates the torn segment, drops the segments after it, and the log
// goes on from there.
func TestRepairTornOlderSegment(t *testing.T) {
	batch := makeBatch(t, plain(2, 0))
	for _, cut := range []struct {
		name  string
		bytes int64
	}{{"mid-batch", int64(len(batch)) / 2}, {"batch boundary", int64(len(batch))}} {
		t.Run(cut.name, func(t *testing.T) {
			fs := vfs.NewStrictMem()
			l, err := Open(memDir, memConfig(fs))
			if err != nil {
				t.Fatal(err)
			}
			for range 150 {
				mustAppend(t, l, batch)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			bases := memSegments(t, fs)
			if len(bases) < 4 {
				t.Fatalf("%d segments, want at least 4", len(bases))
			}
			if err := fs.Remove(fs.PathJoin(memDir, recoveryPointFile)); err != nil {
				t.Fatal(err)
			}
			torn := &segment{fs: fs, dir: memDir, base: bases[1]}
			size := (bases[2] - bases[1]) / 2 * int64(len(batch))
			rewriteFile(t, fs, torn.path(logSuffix), size-cut.bytes)

			l, err = Open(memDir, memConfig(fs))
			if err != nil {
				t.Fatalf("open after the tear: %v", err)
			}
			want := bases[2] - 2
			if l.EndOffset() != want {
				t.Fatalf("end %d, want %d", l.EndOffset(), want)
			}
			if got := memSegments(t, fs); !slices.Equal(got, bases[:2]) {
				t.Fatalf("segments %v after repair, want %v", got, bases[:2])
			}
			if hs := readAll(t, l, 0); len(hs) != int(want/2) {
				t.Fatalf("%d batches, want %d", len(hs), want/2)
			}
			if res := mustAppend(t, l, batch); res.BaseOffset != want {
				t.Fatalf("append after repair at %d, want %d", res.BaseOffset, want)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			fs.ResetToSyncedState()
			l = openMem(t, fs)
			if l.EndOffset() != want+2 {
				t.Fatalf("end %d after a second open, want %d", l.EndOffset(), want+2)
			}
		})
	}
}

// TestRollSyncsOldSegment cuts the power right after appends that were
// never waited for, like acks=0 produces: every segment before the last
// one rolled was fsynced at the roll, and the recovery point says so.
func TestRollSyncsOldSegment(t *testing.T) {
	for round := range 20 {
		fs := vfs.NewStrictMem()
		l, err := Open(memDir, memConfig(fs))
		if err != nil {
			t.Fatal(err)
		}
		batch := makeBatch(t, plain(2, 0))
		for range 100 + 7*round {
			if _, err := l.Append(batch, t0); err != nil {
				t.Fatal(err)
			}
		}
		fs.SetIgnoreSyncs(true)
		bases := memSegments(t, fs)
		l.Close()
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)
		rolled := bases[len(bases)-1]
		l = openMem(t, fs)
		if l.EndOffset() < rolled {
			t.Fatalf("round %d: end %d after the power cut, the last roll was at %d", round, l.EndOffset(), rolled)
		}
		readAll(t, l, 0)
	}
}

// openMem opens the log on fs and closes it at the end of the test.
func openMem(t testing.TB, fs vfs.FS) *Log {
	t.Helper()
	l, err := Open(memDir, memConfig(fs))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// powerCut simulates a power loss under the open log l: nothing it does
// from now on reaches the disk, and what was not fsynced is lost.
func powerCut(fs *vfs.MemFS, l *Log) {
	fs.SetIgnoreSyncs(true)
	l.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
}

// TestDeletionsSurvivePowerLoss cuts the power right after DeleteRecords
// and retention return: the records they deleted stay deleted.
func TestDeletionsSurvivePowerLoss(t *testing.T) {
	for _, by := range []string{"DeleteRecords", "retention"} {
		t.Run(by, func(t *testing.T) {
			fs := vfs.NewStrictMem()
			cfg := memConfig(fs)
			cfg.RetentionBytes = 3 * 4096
			l, err := Open(memDir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 300 {
				mustAppend(t, l, makeBatch(t, plain(2, t0.UnixMilli()+int64(i))))
			}
			var start int64
			if by == "DeleteRecords" {
				start, err = l.DeleteRecords(301)
			} else {
				err = l.EnforceRetention(t0)
				start = l.StartOffset()
			}
			if err != nil || start < 200 {
				t.Fatalf("start %d after %s: %v", start, by, err)
			}
			segs := memSegments(t, fs)
			powerCut(fs, l)
			l, err = Open(memDir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if l.StartOffset() != start {
				t.Fatalf("start %d after the power cut, want %d", l.StartOffset(), start)
			}
			if got := memSegments(t, fs); !slices.Equal(got, segs) {
				t.Fatalf("segments %v after the power cut, want %v", got, segs)
			}
			if _, err := l.Read(start-1, 1<<20, nil); !errors.Is(err, ErrOffsetOutOfRange) {
				t.Fatalf("read below the start: %v", err)
			}
			readAll(t, l, start)
		})
	}
}

// FuzzRecover damages one segment of a closed log, cutting its tail and
// flipping bits, and opens it again. Past the recovery point, which the
// fuzzer may remove, recovery must repair anything: the log opens, every
// batch it serves is whole and follows on from the one before, and it
// takes appends. Damage below the recovery point may only fail Open with
// ErrStorage.
func FuzzRecover(f *testing.F) {
	f.Add(uint8(0), uint16(0), uint16(0), byte(0), false)
	f.Add(uint8(1), uint16(50), uint16(0), byte(0), false)
	f.Add(uint8(1), uint16(0), uint16(200), byte(0x10), false)
	f.Add(uint8(2), uint16(3000), uint16(9), byte(0xff), true)
	f.Add(uint8(0), uint16(97), uint16(70), byte(1), true)
	f.Fuzz(func(t *testing.T, seg uint8, cut, flip uint16, xor byte, keepPoint bool) {
		fs := vfs.NewMem()
		l, err := Open(memDir, memConfig(fs))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			mustAppend(t, l, makeBatch(t, plain(2, int64(i))))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		bases := memSegments(t, fs)
		i := int(seg) % len(bases)
		path := (&segment{fs: fs, dir: memDir, base: bases[i]}).path(logSuffix)
		b, err := readFile(fs, path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			b[int(flip)%len(b)] ^= xor
			b = b[:len(b)-int(cut)%(len(b)+1)]
		}
		nf, err := fs.Create(path)
		if err == nil {
			_, err = nf.Write(b)
		}
		if err != nil {
			t.Fatal(err)
		}
		nf.Close()
		if !keepPoint {
			if err := fs.Remove(fs.PathJoin(memDir, recoveryPointFile)); err != nil {
				t.Fatal(err)
			}
		}
		l, err = Open(memDir, memConfig(fs))
		belowPoint := keepPoint && i < len(bases)-1
		if err != nil {
			if belowPoint && errors.Is(err, ErrStorage) {
				return
			}
			t.Fatalf("open after damage to segment %d of %d: %v", i, len(bases), err)
		}
		defer l.Close()
		if belowPoint {
			return // trusted, so bit flips are served as they are, as in Kafka
		}
		next := l.StartOffset()
		for _, h := range readAll(t, l, next) {
			if h.baseOffset != next {
				t.Fatalf("batch at %d after offset %d", h.baseOffset, next)
			}
			next = h.lastOffset() + 1
		}
		if next != l.EndOffset() {
			t.Fatalf("batches end at %d, the log at %d", next, l.EndOffset())
		}
		if res := mustAppend(t, l, makeBatch(t, plain(1, 0))); res.BaseOffset != next {
			t.Fatalf("append after recovery at %d, want %d", res.BaseOffset, next)
		}
	})
}
