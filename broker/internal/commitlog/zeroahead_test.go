package commitlog

import (
	"os"
	"testing"
)

// fileSizes returns the sizes of the .log files in dir, oldest first.
func fileSizes(t *testing.T, dir string) []int64 {
	t.Helper()
	var sizes []int64
	for _, name := range segmentFiles(t, dir, logSuffix) {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	return sizes
}

// segmentSizes returns the bytes of records of l's segments, oldest first.
func segmentSizes(l *Log) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var sizes []int64
	for _, s := range l.segs {
		sizes = append(sizes, s.size)
	}
	return sizes
}

// TestZeroAhead checks the zeros a group-committing log writes ahead of
// its records in the operating system's files: they are there once an
// append is durable, never read as records, bounded by the segment size,
// cut off at a roll and at Close, and a copy of the files taken while they
// are there (a kill -9) opens with every record and takes appends.
func TestZeroAhead(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 2 * zeroChunk
	l := openLog(t, dir, cfg)
	batch := makeBatch(t, spec{n: 10, ts: 1, valueSize: 1000, pid: -1, seq: -1})
	var end int64
	for range 3 * zeroChunk / len(batch) {
		end = mustAppend(t, l, batch).LastOffset + 1
		files, segs := fileSizes(t, dir), segmentSizes(l)
		for i := range len(segs) - 1 {
			if files[i] != segs[i] {
				t.Fatalf("rolled segment %d: file of %d bytes holds %d of records", i, files[i], segs[i])
			}
		}
		active, records := files[len(files)-1], segs[len(segs)-1]
		if room := active - records; active < cfg.SegmentBytes && room < zeroChunk/2 || active > max(records, cfg.SegmentBytes) {
			t.Fatalf("active segment: file of %d bytes holds %d of records, want zeros up to %d more but not past %d",
				active, records, zeroChunk/2, cfg.SegmentBytes)
		}
	}
	if n := len(segmentSizes(l)); n < 2 {
		t.Fatalf("%d segments, want a roll", n)
	}
	if hs := readAll(t, l, 0); len(hs) == 0 || hs[len(hs)-1].lastOffset()+1 != end {
		t.Fatalf("read %d batches up to offset %d, want up to %d", len(hs), hs[len(hs)-1].lastOffset()+1, end)
	}

	crashed := copyDir(t, dir)
	r := openLog(t, crashed, cfg)
	if r.EndOffset() != end {
		t.Fatalf("a copy taken with zeros ahead recovered end %d, want %d", r.EndOffset(), end)
	}
	more := mustAppend(t, r, batch)
	if more.BaseOffset != end {
		t.Fatalf("append after recovery at %d, want %d", more.BaseOffset, end)
	}
	if hs := readAll(t, r, 0); hs[len(hs)-1].lastOffset() != more.LastOffset {
		t.Fatalf("read up to %d after recovery, want %d", hs[len(hs)-1].lastOffset(), more.LastOffset)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, segs := fileSizes(t, dir), segmentSizes(l)
	for i := range segs {
		if files[i] != segs[i] {
			t.Fatalf("after Close, segment %d: file of %d bytes holds %d of records", i, files[i], segs[i])
		}
	}
}

// TestNoZerosWithoutSync checks that a log under SyncNone, which never
// waits for an fsync, writes no zeros ahead.
func TestNoZerosWithoutSync(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Sync, cfg.SegmentBytes = SyncNone, 1<<20
	l := openLog(t, dir, cfg)
	for i := range 20 {
		mustAppend(t, l, makeBatch(t, plain(3, int64(i))))
	}
	files, segs := fileSizes(t, dir), segmentSizes(l)
	if len(files) != 1 || files[0] != segs[0] {
		t.Fatalf("files of %v bytes hold %v of records", files, segs)
	}
}

// TestNoZerosForBigCommits checks that a group commit of more than
// smallCommit bytes, paced by writing the data, writes no zeros ahead,
// and that small commits after it do.
func TestNoZerosForBigCommits(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentBytes = 1 << 20
	l := openLog(t, dir, cfg)
	big := makeBatch(t, spec{n: 2, ts: 1, valueSize: smallCommit, pid: -1, seq: -1})
	mustAppend(t, l, big)
	if files, segs := fileSizes(t, dir), segmentSizes(l); files[0] != segs[0] {
		t.Fatalf("after a commit of %d bytes the file holds %d bytes for %d of records", len(big), files[0], segs[0])
	}
	mustAppend(t, l, makeBatch(t, plain(1, 2)))
	if files, segs := fileSizes(t, dir), segmentSizes(l); files[0] < segs[0]+zeroChunk/2 {
		t.Fatalf("after a small commit the file holds %d bytes for %d of records, want zeros ahead", files[0], segs[0])
	}
}
