package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

var t0 = time.UnixMilli(1_700_000_000_000)

// mustAppend appends b and waits until it is durable, and so readable.
func mustAppend(t testing.TB, l *Log, b []byte) AppendResult {
	t.Helper()
	res, err := l.Append(b, t0)
	if err == nil {
		err = l.WaitDurable(context.Background(), res.LastOffset+1)
	}
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return res
}

func segmentFiles(t testing.TB, dir, suffix string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestAppendReadAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	var want int64
	for i := range 300 {
		res := mustAppend(t, l, makeBatch(t, plain(1+i%4, int64(i))))
		if res.BaseOffset != want || res.LastOffset != want+int64(i%4) {
			t.Fatalf("batch %d: offsets %d-%d, want base %d", i, res.BaseOffset, res.LastOffset, want)
		}
		want = res.LastOffset + 1
	}
	if got := l.EndOffset(); got != want {
		t.Fatalf("end offset %d, want %d", got, want)
	}
	if n := len(segmentFiles(t, dir, logSuffix)); n < 5 {
		t.Fatalf("%d segments, want several rolls", n)
	}
	hs := readAll(t, l, 0)
	if len(hs) != 300 {
		t.Fatalf("read %d batches, want 300", len(hs))
	}
	for off := range want {
		b, err := l.Read(off, 1, nil)
		if err != nil {
			t.Fatalf("read %d: %v", off, err)
		}
		h, err := checkBatch(b)
		if err != nil || h.size != len(b) {
			t.Fatalf("read %d: %d bytes, batch of %d, err %v", off, len(b), h.size, err)
		}
		if h.baseOffset > off || h.lastOffset() < off {
			t.Fatalf("read %d returned batch %d-%d", off, h.baseOffset, h.lastOffset())
		}
	}
	// Close cuts off the zeros written ahead in the active segment.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, name := range segmentFiles(t, dir, logSuffix) {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if l.Size() != size {
		t.Fatalf("Size %d, files hold %d", l.Size(), size)
	}
}

func TestReadMaxBytes(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	b := makeBatch(t, plain(2, 0))
	for range 5 {
		mustAppend(t, l, b)
	}
	n := len(b)
	for _, tc := range []struct {
		offset  int64
		max     int32
		batches int
	}{
		{0, 1, 1},
		{0, int32(n), 1},
		{0, int32(2*n + 1), 2},
		{0, int32(n + 20), 1}, // a cut inside the next batch's header
		{1, int32(3 * n), 3},
		{3, 1 << 20, 4},
		{9, 0, 1},
	} {
		got, err := l.Read(tc.offset, tc.max, []byte("prefix"))
		if err != nil {
			t.Fatalf("read(%d, %d): %v", tc.offset, tc.max, err)
		}
		if !bytes.HasPrefix(got, []byte("prefix")) || len(got)-6 != tc.batches*n {
			t.Fatalf("read(%d, %d) returned %d bytes, want prefix and %d batches of %d", tc.offset, tc.max, len(got), tc.batches, n)
		}
	}
	if got, err := l.Read(10, 100, nil); err != nil || len(got) != 0 {
		t.Fatalf("read at end: %d bytes, %v", len(got), err)
	}
	if _, err := l.Read(11, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past end: %v", err)
	}
	if _, err := l.Read(-1, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read before start: %v", err)
	}
}

func TestTimestamps(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	if off, ts := l.MaxTimestamp(); off != -1 || ts != -1 {
		t.Fatalf("empty log max timestamp (%d, %d)", off, ts)
	}
	if _, _, ok := l.OffsetForTimestamp(0); ok {
		t.Fatal("empty log found a timestamp")
	}
	// 100 batches of 5 records; batch i has timestamps 1000+10i .. 1004+10i,
	// so the records' timestamps increase with gaps. Every third batch is
	// snappy-compressed.
	for i := range 100 {
		s := plain(5, 1000+10*int64(i))
		if i%3 == 0 {
			s.codec = kgo.SnappyCompression()
		}
		mustAppend(t, l, makeBatch(t, s))
	}
	// A batch with an older timestamp must not change the max.
	mustAppend(t, l, makeBatch(t, plain(1, 5)))
	for _, tc := range []struct {
		ts, off, gotTs int64
	}{
		{0, 0, 1000},
		{1000, 0, 1000},
		{1003, 3, 1003},
		{1005, 5, 1010},
		{1500, 250, 1500},
		{1502, 252, 1502},
		{1994, 499, 1994},
	} {
		off, ts, ok := l.OffsetForTimestamp(tc.ts)
		if !ok || off != tc.off || ts != tc.gotTs {
			t.Errorf("OffsetForTimestamp(%d) = (%d, %d, %v), want (%d, %d)", tc.ts, off, ts, ok, tc.off, tc.gotTs)
		}
	}
	if _, _, ok := l.OffsetForTimestamp(1995); ok {
		t.Error("found a record newer than all")
	}
	if off, ts := l.MaxTimestamp(); off != 499 || ts != 1994 {
		t.Errorf("MaxTimestamp = (%d, %d), want (499, 1994)", off, ts)
	}
	if _, err := l.DeleteRecords(252); err != nil {
		t.Fatal(err)
	}
	if off, _, ok := l.OffsetForTimestamp(1000); !ok || off != 252 {
		t.Errorf("after DeleteRecords(252), OffsetForTimestamp(1000) = %d, %v", off, ok)
	}
}

func TestLogAppendTime(t *testing.T) {
	cfg := testConfig()
	cfg.LogAppendTime = true
	l := openLog(t, t.TempDir(), cfg)
	now := time.UnixMilli(1_800_000_000_123)
	res, err := l.Append(makeBatch(t, plain(3, 42)), now)
	if err == nil {
		err = l.WaitDurable(context.Background(), res.LastOffset+1)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.LogAppendTime != now.UnixMilli() {
		t.Fatalf("LogAppendTime %d, want %d", res.LogAppendTime, now.UnixMilli())
	}
	b, err := l.Read(0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := checkBatch(b)
	if err != nil {
		t.Fatalf("stored batch fails its CRC: %v", err)
	}
	if h.attributes&attrLogAppendTime == 0 || h.maxTimestamp != now.UnixMilli() || h.baseTimestamp != 42 {
		t.Fatalf("stored header attrs %#x max ts %d base ts %d", h.attributes, h.maxTimestamp, h.baseTimestamp)
	}
	if off, ts, ok := l.OffsetForTimestamp(now.UnixMilli()); !ok || off != 0 || ts != now.UnixMilli() {
		t.Fatalf("OffsetForTimestamp(now) = (%d, %d, %v)", off, ts, ok)
	}
	cfg.LogAppendTime = false
	l.SetConfig(cfg)
	if res, err := l.Append(makeBatch(t, plain(1, 42)), now); err != nil || res.LogAppendTime != -1 {
		t.Fatalf("CreateTime append after SetConfig: %+v, %v", res, err)
	}
}

func TestRetentionBytes(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 200 {
		mustAppend(t, l, makeBatch(t, plain(2, int64(i))))
	}
	if err := l.EnforceRetention(t0); err != nil {
		t.Fatal(err)
	}
	if l.StartOffset() != 0 {
		t.Fatal("unlimited retention deleted data")
	}
	cfg := testConfig()
	cfg.RetentionBytes = 10000
	l.SetConfig(cfg)
	before := l.Size()
	if err := l.EnforceRetention(t0); err != nil {
		t.Fatal(err)
	}
	// Whole segments go, so the log keeps at least the limit and less than a
	// segment more.
	if l.Size() < 10000 || l.Size() >= 10000+4096 || l.Size() >= before {
		t.Fatalf("size %d after retention of 10000 bytes (was %d)", l.Size(), before)
	}
	start := l.StartOffset()
	if start == 0 {
		t.Fatal("start offset did not move")
	}
	if _, err := l.Read(start-1, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v", err)
	}
	if hs := readAll(t, l, start); hs[0].baseOffset != start || hs[len(hs)-1].lastOffset() != 399 {
		t.Fatalf("remaining batches %d-%d", hs[0].baseOffset, hs[len(hs)-1].lastOffset())
	}
	first := fmt.Sprintf("%020d", start)
	if _, err := os.Stat(filepath.Join(dir, first+logSuffix)); err != nil {
		t.Fatalf("first remaining segment should be %s: %v", first, err)
	}
}

func TestRetentionAge(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentAge = time.Hour
	cfg.RetentionAge = 24 * time.Hour
	l := openLog(t, t.TempDir(), cfg)
	day := int64(24 * time.Hour / time.Millisecond)
	old := t0.UnixMilli() - 3*day
	for i := range 100 {
		mustAppend(t, l, makeBatch(t, plain(2, old+int64(i))))
	}
	oldEnd := l.EndOffset()
	for i := range 100 {
		mustAppend(t, l, makeBatch(t, plain(2, t0.UnixMilli()+int64(i))))
	}
	if err := l.EnforceRetention(t0); err != nil {
		t.Fatal(err)
	}
	if start := l.StartOffset(); start == 0 || start > oldEnd {
		t.Fatalf("start offset %d, want in (0, %d]", start, oldEnd)
	}
	end := l.EndOffset()
	if err := l.EnforceRetention(t0.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	res := mustAppend(t, l, makeBatch(t, plain(1, t0.UnixMilli())))
	l.mu.Lock()
	activeBase := l.segs[len(l.segs)-1].base
	l.mu.Unlock()
	if activeBase != end || res.BaseOffset != end {
		t.Fatalf("active segment base %d after an age roll, want %d", activeBase, end)
	}
}

func TestDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 100 {
		mustAppend(t, l, makeBatch(t, plain(3, int64(i))))
	}
	segs := len(segmentFiles(t, dir, logSuffix))
	if _, err := l.DeleteRecords(301); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("delete past end: %v", err)
	}
	ch := l.Changed()
	start, err := l.DeleteRecords(151)
	if err != nil || start != 151 {
		t.Fatalf("DeleteRecords(151) = %d, %v", start, err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("DeleteRecords did not signal Changed")
	}
	if n := len(segmentFiles(t, dir, logSuffix)); n >= segs {
		t.Fatalf("%d segments after deleting half the log, had %d", n, segs)
	}
	if start, _ := l.DeleteRecords(10); start != 151 {
		t.Fatalf("start offset moved back to %d", start)
	}
	b, err := l.Read(151, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := parseHeader(b); h.baseOffset != 150 {
		t.Fatalf("read at 151 returned batch %d, want the one at 150", h.baseOffset)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, testConfig())
	if l.StartOffset() != 151 || l.EndOffset() != 300 {
		t.Fatalf("after reopen start %d end %d, want 151 300", l.StartOffset(), l.EndOffset())
	}
	if start, err := l.DeleteRecords(-1); err != nil || start != 300 {
		t.Fatalf("DeleteRecords(-1) = %d, %v", start, err)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 150 {
		mustAppend(t, l, makeBatch(t, plain(2, int64(i))))
	}
	mustAppend(t, l, makeBatch(t, idem(7, 0, 0, 2)))
	before, err := l.Read(0, math.MaxInt32, nil)
	if err != nil {
		t.Fatal(err)
	}
	end, size := l.EndOffset(), l.Size()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(makeBatch(t, plain(1, 0)), t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	l = openLog(t, dir, testConfig())
	if l.EndOffset() != end || l.Size() != size {
		t.Fatalf("reopened end %d size %d, want %d %d", l.EndOffset(), l.Size(), end, size)
	}
	after, err := l.Read(0, math.MaxInt32, nil)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("reopened log reads differently: %v", err)
	}
	if res := mustAppend(t, l, makeBatch(t, idem(7, 0, 0, 2))); !res.Duplicate || res.BaseOffset != 300 {
		t.Fatalf("retry after reopen: %+v", res)
	}
	if off, ts := l.MaxTimestamp(); off != 301 || ts != 1001 {
		t.Fatalf("max timestamp after reopen (%d, %d)", off, ts)
	}
	readAll(t, l, 0)
}

// copyDir copies the files of a live log, which is what a kill -9 leaves.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestRecoverTornTail(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 50 {
		mustAppend(t, l, makeBatch(t, plain(2, int64(i))))
	}
	last := makeBatch(t, plain(3, 99))
	mustAppend(t, l, last)
	crashed := copyDir(t, dir)
	logs := segmentFiles(t, crashed, logSuffix)
	active := logs[len(logs)-1]
	l.mu.Lock()
	records := l.segs[len(l.segs)-1].size // the zeros written ahead follow
	l.mu.Unlock()
	// Tear the last batch and add garbage after it.
	if err := os.Truncate(active, records-int64(len(last))/2); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(active, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte{0xff}, 100))
	f.Close()

	r := openLog(t, crashed, testConfig())
	if r.EndOffset() != 100 {
		t.Fatalf("recovered end %d, want 100", r.EndOffset())
	}
	if fi, _ := os.Stat(active); fi.Size()%int64(len(makeBatch(t, plain(2, 0)))) != 0 {
		t.Fatalf("active segment not truncated to whole batches: %d bytes", fi.Size())
	}
	if res := mustAppend(t, r, last); res.BaseOffset != 100 {
		t.Fatalf("append after recovery at %d", res.BaseOffset)
	}
	if hs := readAll(t, r, 0); len(hs) != 51 {
		t.Fatalf("%d batches after recovery, want 51", len(hs))
	}
}

func TestRecoverCorruptIndexes(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 200 {
		mustAppend(t, l, makeBatch(t, plain(2, 1000+2*int64(i))))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	idx := segmentFiles(t, dir, indexSuffix)
	tidx := segmentFiles(t, dir, timeIndexSuffix)
	if len(idx) < 4 {
		t.Fatalf("%d segments, want at least 4", len(idx))
	}
	want := make(map[string]int64)
	for _, p := range append(idx, tidx...) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want[p] = fi.Size()
	}
	if err := os.WriteFile(idx[0], bytes.Repeat([]byte{0x7f}, 64), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tidx[1]); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(idx[2], want[idx[2]]-indexEntrySize); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tidx[2], want[tidx[2]]-timeIndexEntrySize); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(idx[len(idx)-1], 3); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, testConfig())
	for p, size := range want {
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != size {
			t.Errorf("%s not rebuilt: %v", filepath.Base(p), err)
		}
	}
	for off := range int64(400) {
		b, err := l.Read(off, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := parseHeader(b); h.baseOffset != off&^1 {
			t.Fatalf("read %d returned batch %d", off, h.baseOffset)
		}
		if got, ts, ok := l.OffsetForTimestamp(1000 + off); !ok || got != off || ts != 1000+off {
			t.Fatalf("OffsetForTimestamp(%d) = %d, %d, %v", 1000+off, got, ts, ok)
		}
	}
}

func TestCorruptOlderSegmentFailsOpen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 100 {
		mustAppend(t, l, makeBatch(t, plain(2, int64(i))))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	logs := segmentFiles(t, dir, logSuffix)
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(b[len(makeBatch(t, plain(2, 0)))+offLength:], 1<<30)
	if err := os.WriteFile(logs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(segmentFiles(t, dir, indexSuffix)[0])
	_, err = Open(dir, testConfig())
	if !errors.Is(err, ErrStorage) || !bytes.Contains([]byte(err.Error()), []byte(filepath.Base(logs[0]))) {
		t.Fatalf("open of a log with a corrupt older segment: %v", err)
	}
}

func TestAppendRejects(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchBytes = 2000
	l := openLog(t, t.TempDir(), cfg)
	good := makeBatch(t, plain(2, 0))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	magic1 := bytes.Clone(good)
	magic1[offMagic] = 1
	short := bytes.Clone(good)
	binary.BigEndian.PutUint32(short[offLength:], uint32(len(good)))
	zero := makeBatch(t, plain(1, 0))
	binary.BigEndian.PutUint32(zero[offRecordCount:], 0)
	for _, tc := range []struct {
		name    string
		records []byte
		want    error
	}{
		{"bad crc", badCRC, ErrCorruptMessage},
		{"bad crc in second batch", append(bytes.Clone(good), badCRC...), ErrCorruptMessage},
		{"magic 1", magic1, ErrUnsupportedMagic},
		{"length past end", short, ErrCorruptMessage},
		{"zero records", zero, ErrCorruptMessage},
		{"truncated", good[:40], ErrCorruptMessage},
		{"empty", nil, ErrCorruptMessage},
		{"too large", makeBatch(t, spec{n: 3, valueSize: 1000, pid: -1, seq: -1}), ErrRecordTooLarge},
	} {
		if _, err := l.Append(tc.records, t0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if l.EndOffset() != 0 || l.Size() != 0 {
		t.Fatalf("rejected appends wrote: end %d size %d", l.EndOffset(), l.Size())
	}
	if res := mustAppend(t, l, append(bytes.Clone(good), good...)); res.BaseOffset != 0 || res.LastOffset != 3 {
		t.Fatalf("two-batch append: %+v", res)
	}
}

func TestIdempotence(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	check := func(s spec, wantErr error, wantDup bool, wantBase int64) {
		t.Helper()
		res, err := l.Append(makeBatch(t, s), t0)
		if !errors.Is(err, wantErr) || (err == nil && (res.Duplicate != wantDup || res.BaseOffset != wantBase)) {
			t.Fatalf("pid %d epoch %d seq %d: %+v, %v; want dup %v base %d err %v", s.pid, s.epoch, s.seq, res, err, wantDup, wantBase, wantErr)
		}
	}
	for i := range 6 {
		check(idem(1, 0, int32(3*i), 3), nil, false, int64(3*i))
	}
	check(idem(1, 0, 15, 3), nil, true, 15)                     // retry of the last batch
	check(idem(1, 0, 3, 3), nil, true, 3)                       // retry of the oldest batch remembered
	check(idem(1, 0, 0, 3), ErrOutOfOrderSequence, false, 0)    // older than the window
	check(idem(1, 0, 19, 1), ErrOutOfOrderSequence, false, 0)   // gap
	check(idem(1, 0, 17, 1), ErrOutOfOrderSequence, false, 0)   // overlap, not a duplicate
	check(idem(1, 1, 5, 1), ErrOutOfOrderSequence, false, 0)    // new epoch not at 0
	check(idem(1, 1, 0, 2), nil, false, 18)                     // new epoch at 0
	check(idem(1, 0, 18, 1), ErrInvalidProducerEpoch, false, 0) // fenced epoch
	check(idem(2, 3, 77, 1), nil, false, 20)                    // unknown producer: any sequence
	check(idem(2, 3, 78, 1), nil, false, 21)
	check(idem(3, 0, math.MaxInt32-1, 2), nil, false, 22)
	check(idem(3, 0, 0, 1), nil, false, 24) // the sequence wraps to 0

	end := l.EndOffset()
	crashed := copyDir(t, dir) // no snapshot at the end: replays headers
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, crashed} {
		l = openLog(t, d, testConfig())
		check(idem(1, 1, 0, 2), nil, true, 18)
		check(idem(2, 3, 78, 1), nil, true, 21)
		check(idem(1, 0, 18, 1), ErrInvalidProducerEpoch, false, 0)
		check(idem(3, 0, 2, 1), ErrOutOfOrderSequence, false, 0)
		check(idem(1, 1, 2, 1), nil, false, end)
	}
}

func TestIdempotenceAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	var seq int32
	for i := range 100 {
		mustAppend(t, l, makeBatch(t, idem(int64(i%3), 0, seq, 2)))
		if i%3 == 2 {
			seq += 2
		}
	}
	crashed := copyDir(t, dir)
	for _, snap := range segmentFiles(t, crashed, snapshotSuffix) {
		os.Remove(snap)
	}
	for _, d := range []string{crashed, copyDir(t, dir)} {
		r := openLog(t, d, testConfig())
		if res := mustAppend(t, r, makeBatch(t, idem(0, 0, seq, 2))); !res.Duplicate || res.BaseOffset != 198 {
			t.Fatalf("retry of the last batch after recovery: %+v", res)
		}
		if res := mustAppend(t, r, makeBatch(t, idem(1, 0, seq, 2))); res.Duplicate {
			t.Fatalf("new batch taken for a duplicate: %+v", res)
		}
	}
}

func TestConcurrentAppendWaitDurable(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	const writers, perWriter = 4, 150
	b := makeBatch(t, plain(2, 0))
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range writers {
		wg.Go(func() {
			for range perWriter {
				res, err := l.Append(b, time.Now())
				if err == nil {
					err = l.WaitDurable(ctx, res.LastOffset+1)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for ctx.Err() == nil && l.EndOffset() < 2*writers*perWriter {
			if _, err := l.Read(l.StartOffset(), 1<<16, nil); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	<-readers
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if l.EndOffset() != 2*writers*perWriter {
		t.Fatalf("end %d", l.EndOffset())
	}
	l.mu.Lock()
	durable := l.durable
	l.mu.Unlock()
	if durable != l.EndOffset() {
		t.Fatalf("durable %d, end %d", durable, l.EndOffset())
	}
	if hs := readAll(t, l, 0); len(hs) != writers*perWriter {
		t.Fatalf("%d batches", len(hs))
	}
	expired, cancel2 := context.WithCancel(context.Background())
	cancel2()
	mustAppend(t, l, b)
	if err := l.WaitDurable(expired, l.EndOffset()); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with a cancelled context: %v", err)
	}
}

func TestChangedAndClose(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	ch := l.Changed()
	select {
	case <-ch:
		t.Fatal("changed before any append")
	default:
	}
	mustAppend(t, l, makeBatch(t, plain(1, 0)))
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("append did not signal Changed")
	}
	ch = l.Changed()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	<-ch
	if err := l.WaitDurable(context.Background(), 1); err != nil {
		t.Fatalf("records appended before Close are durable: %v", err)
	}
	if _, err := l.Read(0, 100, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "topic-0")
	l := openLog(t, dir, testConfig())
	mustAppend(t, l, makeBatch(t, plain(1, 0)))
	if err := l.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory still there: %v", err)
	}
}

// FuzzAppend feeds arbitrary bytes to Append, with their CRCs fixed up
// when sign is set so that the fuzzer reaches past CRC validation, and
// checks that the log stays consistent and readable.
func FuzzAppend(f *testing.F) {
	good := makeBatch(f, plain(2, 5))
	f.Add(good, false)
	f.Add(append(bytes.Clone(good), good...), true)
	f.Add(good[:70], false)
	f.Add(makeBatch(f, idem(1, 0, 0, 3)), true)
	f.Add(makeBatch(f, spec{n: 4, ts: 9, valueSize: 30, pid: -1, seq: -1, codec: kgo.SnappyCompression()}), true)
	f.Fuzz(func(t *testing.T, data []byte, sign bool) {
		data = bytes.Clone(data)
		for pos := 0; sign && pos+batchHeaderSize <= len(data); {
			size := lengthPrefix + int(int32(binary.BigEndian.Uint32(data[pos+offLength:])))
			if size < batchHeaderSize || pos+size > len(data) {
				break
			}
			binary.BigEndian.PutUint32(data[pos+offCRC:], crc32.Checksum(data[pos+offAttributes:pos+size], castagnoli))
			pos += size
		}
		cfg := testConfig()
		cfg.SegmentBytes = 512
		cfg.Sync = SyncNone
		l := openLog(t, t.TempDir(), cfg)
		mustAppend(t, l, good)
		res, err := l.Append(data, t0)
		if err == nil && !res.Duplicate && res.LastOffset+1 != l.EndOffset() {
			t.Fatalf("append result %+v, end %d", res, l.EndOffset())
		}
		if err != nil && l.EndOffset() != 2 {
			t.Fatalf("failed append moved the end to %d", l.EndOffset())
		}
		if _, err := l.Append(data, t0); err == nil && l.EndOffset() < 2 {
			t.Fatal("end moved back")
		}
		mustAppend(t, l, good)
		readAll(t, l, 0)
		b, err := l.Read(0, int32(len(data)), nil)
		for err == nil && len(b) > 0 {
			var h batchHeader
			if h, err = checkBatch(b); err == nil {
				b = b[h.size:]
			}
		}
		if err != nil {
			t.Fatalf("read with max bytes %d: %v", len(data), err)
		}
		l.OffsetForTimestamp(0)
		l.MaxTimestamp()
	})
}

func TestProducerStateLifecycle(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, testConfig())
	for i := range 3 {
		mustAppend(t, l, makeBatch(t, idem(5, 0, int32(2*i), 2)))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Lose the last batch: the snapshot written at Close now covers
	// records that are gone, so the retry must be taken as new.
	logs := segmentFiles(t, dir, logSuffix)
	fi, err := os.Stat(logs[len(logs)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(logs[len(logs)-1], fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, testConfig())
	if l.EndOffset() != 4 {
		t.Fatalf("end %d after losing the last batch, want 4", l.EndOffset())
	}
	if res := mustAppend(t, l, makeBatch(t, idem(5, 0, 4, 2))); res.Duplicate || res.BaseOffset != 4 {
		t.Fatalf("re-sent lost batch: %+v", res)
	}
	if res := mustAppend(t, l, makeBatch(t, idem(5, 0, 4, 2))); !res.Duplicate || res.BaseOffset != 4 {
		t.Fatalf("retry of the re-sent batch: %+v", res)
	}

	// Once DeleteRecords removes all of a producer's batches, the log
	// forgets it and accepts any sequence from it.
	if _, err := l.Append(makeBatch(t, idem(5, 0, 100, 1)), t0); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("sequence gap: %v", err)
	}
	mustAppend(t, l, makeBatch(t, plain(1, 0)))
	if _, err := l.DeleteRecords(l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	if res := mustAppend(t, l, makeBatch(t, idem(5, 0, 100, 1))); res.BaseOffset != 7 {
		t.Fatalf("append from a forgotten producer: %+v", res)
	}
}

// TestConcurrentReadsAndRetention reads while appends, retention and
// DeleteRecords remove segments under the readers.
func TestConcurrentReadsAndRetention(t *testing.T) {
	cfg := testConfig()
	cfg.RetentionBytes = 3 * 4096
	l := openLog(t, t.TempDir(), cfg)
	b := makeBatch(t, plain(2, t0.UnixMilli()))
	deadline := time.Now().Add(5 * time.Second)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	done := churn(&wg, l, b, deadline, errs)
	for r := range 2 {
		wg.Go(func() {
			var dst []byte
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				start, end := l.StartOffset(), l.HighWatermark()
				if end <= start {
					continue
				}
				off := start + int64(i*31+r)%(end-start)
				var err error
				dst, err = l.Read(off, 1024, dst[:0])
				if errors.Is(err, ErrOffsetOutOfRange) {
					continue // retention moved the start meanwhile
				}
				if err == nil {
					var h batchHeader
					if h, err = checkBatch(dst); err == nil && (h.baseOffset > off || h.lastOffset() < off) {
						err = fmt.Errorf("read %d returned batch %d", off, h.baseOffset)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				l.OffsetForTimestamp(t0.UnixMilli())
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.EnforceRetention(t0); err != nil {
		t.Fatal(err)
	}
	if l.Size() > 4*4096 {
		t.Fatalf("size %d despite retention", l.Size())
	}
}

func TestWaitDurableAcrossClose(t *testing.T) {
	for range 20 {
		l := openLog(t, t.TempDir(), testConfig())
		res := mustAppend(t, l, makeBatch(t, plain(2, 0)))
		waited := make(chan error, 1)
		go func() { waited <- l.WaitDurable(context.Background(), res.LastOffset+1) }()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-waited; err != nil {
			t.Fatalf("wait racing Close: %v", err)
		}
	}
}

// TestRecoverTornSegmentBeforeEmptyActive covers a power loss right after
// a roll: the rolled segment's tail is torn and the new active one empty.
func TestRecoverTornSegmentBeforeEmptyActive(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.SegmentAge = time.Hour
	l := openLog(t, dir, cfg)
	for i := range 60 {
		mustAppend(t, l, makeBatch(t, plain(2, int64(i))))
	}
	if err := l.EnforceRetention(t0.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	logs := segmentFiles(t, dir, logSuffix)
	if fi, err := os.Stat(logs[len(logs)-1]); err != nil || fi.Size() != 0 {
		t.Fatalf("want an empty active segment after the age roll: %v", err)
	}
	torn := logs[len(logs)-2]
	fi, err := os.Stat(torn)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(torn, fi.Size()-5); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	if l.EndOffset() != 118 {
		t.Fatalf("end %d, want 118", l.EndOffset())
	}
	if res := mustAppend(t, l, makeBatch(t, plain(2, 0))); res.BaseOffset != 118 {
		t.Fatalf("append at %d", res.BaseOffset)
	}
	readAll(t, l, 0)
}

func TestIdempotentMultiBatchAppend(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	two := append(makeBatch(t, idem(4, 0, 0, 2)), makeBatch(t, idem(4, 0, 2, 2))...)
	if res := mustAppend(t, l, two); res.BaseOffset != 0 || res.LastOffset != 3 {
		t.Fatalf("two batches of one producer: %+v", res)
	}
	gap := append(makeBatch(t, idem(4, 0, 4, 2)), makeBatch(t, idem(4, 0, 7, 1))...)
	if _, err := l.Append(gap, t0); !errors.Is(err, ErrOutOfOrderSequence) || l.EndOffset() != 4 {
		t.Fatalf("gap between the batches of one append: %v, end %d", err, l.EndOffset())
	}
	if res := mustAppend(t, l, makeBatch(t, idem(4, 0, 2, 2))); !res.Duplicate || res.BaseOffset != 2 {
		t.Fatalf("retry of the second batch: %+v", res)
	}
}
