package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kv is a test record; a nil value is a tombstone.
type kv struct {
	key   string
	value []byte
}

// keyedBatch encodes a batch of keyed records with kmsg.
func keyedBatch(t testing.TB, recs []kv, codec kgo.CompressionCodec, pid int64, seq int32, ts int64) []byte {
	t.Helper()
	var body []byte
	for i, r := range recs {
		rec := kmsg.Record{TimestampDelta64: int64(i), OffsetDelta: int32(i), Key: []byte(r.key), Value: r.value}
		rec.Length = int32(len(rec.AppendTo(nil)) - 1)
		body = rec.AppendTo(body)
	}
	var attrs int16
	if codec != (kgo.CompressionCodec{}) {
		c, err := kgo.DefaultCompressor(codec)
		if err != nil {
			t.Fatal(err)
		}
		out, cc := c.Compress(new(bytes.Buffer), body)
		body, attrs = append([]byte(nil), out...), int16(cc)
	}
	if pid < 0 {
		seq = -1
	}
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1, Magic: 2, Attributes: attrs,
		LastOffsetDelta: int32(len(recs) - 1), FirstTimestamp: ts, MaxTimestamp: ts + int64(len(recs)-1),
		ProducerID: pid, FirstSequence: seq, NumRecords: int32(len(recs)), Records: body,
	}
	b.Length = int32(batchHeaderSize - lengthPrefix + len(body))
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[offCRC:], crc32.Checksum(raw[offAttributes:], castagnoli))
	return raw
}

// readRec is a record read back from a log.
type readRec struct {
	offset int64
	key    string
	value  []byte
}

// readRecords reads every record of l from its start to the high
// watermark, checking that offsets only grow.
func readRecords(t testing.TB, l *Log) []readRec {
	t.Helper()
	if err := l.WaitDurable(context.Background(), l.EndOffset()); err != nil {
		t.Fatal(err)
	}
	var out []readRec
	for off := l.StartOffset(); off < l.HighWatermark(); {
		b, err := l.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if len(b) == 0 {
			t.Fatalf("read at %d returned nothing below the high watermark %d", off, l.HighWatermark())
		}
		for len(b) > 0 {
			h, err := checkBatch(b)
			if err != nil {
				t.Fatalf("read at %d: %v", off, err)
			}
			for _, r := range batchRecords(t, b[:h.size]) {
				o := h.baseOffset + int64(r.OffsetDelta)
				if n := len(out); n > 0 && o <= out[n-1].offset {
					t.Fatalf("offset %d after %d", o, out[n-1].offset)
				}
				out = append(out, readRec{o, string(r.Key), r.Value})
			}
			off = h.lastOffset() + 1
			b = b[h.size:]
		}
	}
	return out
}

// batchRecords decodes the records of a batch with kmsg, each record's
// bytes copied out by the record walker's tee.
func batchRecords(t testing.TB, batch []byte) []kmsg.Record {
	t.Helper()
	h := parseHeader(batch)
	var raw bytes.Buffer
	w := recordWalker{tee: &raw}
	defer w.close()
	if err := w.open(h.attributes&attrCompression, batch[batchHeaderSize:h.size]); err != nil {
		t.Fatal(err)
	}
	var out []kmsg.Record
	for range h.recordCount {
		raw.Reset()
		w.setTee(true)
		if _, err := w.next(); err != nil {
			t.Fatalf("batch at offset %d: %v", h.baseOffset, err)
		}
		w.setTee(false)
		var r kmsg.Record
		if err := r.ReadFrom(bytes.Clone(raw.Bytes())); err != nil {
			t.Fatalf("record: %v", err)
		}
		out = append(out, r)
	}
	return out
}

func compactConfig() Config {
	cfg := testConfig()
	cfg.Compact, cfg.KeyRequired = true, true
	return cfg
}

// latest is a key's latest record as written.
type latest map[string]readRec

// produceUpdates appends n updates over keys keys, perBatch records a
// batch, and returns every key's latest record.
func produceUpdates(t testing.TB, l *Log, n, keys, perBatch int, codec kgo.CompressionCodec, want latest) {
	t.Helper()
	ts := time.Now().Add(-time.Hour).UnixMilli()
	for i := 0; i < n; i += perBatch {
		var recs []kv
		for j := i; j < min(n, i+perBatch); j++ {
			recs = append(recs, kv{fmt.Sprintf("key-%d", j%keys), fmt.Appendf(nil, "value-%d", j)})
		}
		res, err := l.Append(keyedBatch(t, recs, codec, -1, 0, ts), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for k, r := range recs {
			want[r.key] = readRec{res.BaseOffset + int64(k), r.key, r.value}
		}
	}
}

// checkLatest checks that every key's latest record is readable at its
// offset, and that no key whose latest record lies below cleanedTo has
// another record.
func checkLatest(t testing.TB, got []readRec, want latest, cleanedTo int64) {
	t.Helper()
	at := make(map[int64]readRec, len(got))
	for _, r := range got {
		at[r.offset] = r
		if w, ok := want[r.key]; ok && w.offset < cleanedTo && r.offset != w.offset {
			t.Fatalf("key %s: record at %d survived cleaning; its latest is at %d", r.key, r.offset, w.offset)
		}
	}
	for k, w := range want {
		r, ok := at[w.offset]
		if w.value == nil {
			continue
		}
		if !ok || r.key != k || !bytes.Equal(r.value, w.value) {
			t.Fatalf("key %s: want %q at offset %d, got %+v (found %v)", k, w.value, w.offset, r, ok)
		}
	}
}

func TestCleanKeepsLatestPerKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.CompressionCodec{}},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := compactConfig()
			cfg.SegmentBytes = 16 << 10
			l := openLog(t, dir, cfg)
			want := latest{}
			produceUpdates(t, l, 3000, 40, 5, tc.codec, want)
			before := l.Size()
			if r := l.DirtyRatio(); r != 1 {
				t.Fatalf("dirty ratio %v before cleaning, want 1", r)
			}
			res, err := l.Clean(time.Now(), CleanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Segments == 0 || res.RecordsRemoved == 0 || l.Size() >= before {
				t.Fatalf("clean did nothing: %+v, size %d -> %d", res, before, l.Size())
			}
			if r := l.DirtyRatio(); r != 0 {
				t.Fatalf("dirty ratio %v after cleaning, want 0", r)
			}
			cleanedTo := l.segs[len(l.segs)-1].base
			got := readRecords(t, l)
			checkLatest(t, got, want, cleanedTo)
			if len(got) >= 3000/4 {
				t.Fatalf("%d records left of 3000 over 40 keys", len(got))
			}
			// The cleaned log survives a reopen and takes appends.
			l.Close()
			l = openLog(t, dir, cfg)
			checkLatest(t, readRecords(t, l), want, cleanedTo)
			produceUpdates(t, l, 200, 40, 5, tc.codec, want)
			if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
				t.Fatal(err)
			}
			checkLatest(t, readRecords(t, l), want, l.segs[len(l.segs)-1].base)
		})
	}
}

func TestCleanBoundedOffsetMap(t *testing.T) {
	l := openLog(t, t.TempDir(), compactConfig())
	want := latest{}
	produceUpdates(t, l, 4000, 400, 4, kgo.CompressionCodec{}, want)
	passes := 0
	for l.DirtyRatio() > 0 {
		if _, err := l.Clean(time.Now(), CleanOptions{MaxKeys: 300}); err != nil {
			t.Fatal(err)
		}
		if passes++; passes > 100 {
			t.Fatal("the cleaner does not progress with a small offset map")
		}
	}
	if passes < 2 {
		t.Fatalf("%d passes with a map smaller than the keys", passes)
	}
	checkLatest(t, readRecords(t, l), want, l.segs[len(l.segs)-1].base)
}

func TestCleanTombstones(t *testing.T) {
	l := openLog(t, t.TempDir(), compactConfig())
	ts := time.Now().Add(-time.Hour).UnixMilli()
	appendRecs := func(recs ...kv) {
		t.Helper()
		if _, err := l.Append(keyedBatch(t, recs, kgo.CompressionCodec{}, -1, 0, ts), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	appendRecs(kv{"gone", []byte("v1")}, kv{"kept", []byte("v1")})
	appendRecs(kv{"gone", nil})
	for range 100 { // fill segments so that the tombstone's is rolled
		appendRecs(kv{"filler", bytes.Repeat([]byte("x"), 100)})
	}
	count := func() (tombstones, gone int) {
		for _, r := range readRecords(t, l) {
			if r.key == "gone" {
				gone++
				if r.value == nil {
					tombstones++
				}
			}
		}
		return
	}
	now := time.Now()
	if _, err := l.Clean(now, CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	if tomb, gone := count(); tomb != 1 || gone != 1 {
		t.Fatalf("after the first pass: %d tombstones, %d records of the key; want the tombstone alone", tomb, gone)
	}
	// Within delete.retention.ms the tombstone stays.
	if _, err := l.Clean(now.Add(time.Minute), CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	if tomb, _ := count(); tomb != 1 {
		t.Fatalf("tombstone removed before delete.retention.ms")
	}
	// More dirty data, then a pass past the delete retention.
	appendRecs(kv{"filler", []byte("y")})
	for range 40 {
		appendRecs(kv{"other", bytes.Repeat([]byte("z"), 100)})
	}
	if _, err := l.Clean(now.Add(DefaultDeleteRetention+2*time.Hour), CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	if tomb, gone := count(); tomb != 0 || gone != 0 {
		t.Fatalf("after delete.retention.ms: %d tombstones, %d records of the key; want none", tomb, gone)
	}
	var kept bool
	for _, r := range readRecords(t, l) {
		kept = kept || r.key == "kept" && string(r.value) == "v1"
	}
	if !kept {
		t.Fatal("a live key was lost")
	}
}

func TestCleanMinCompactionLag(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCompactionLag = 2 * time.Hour
	l := openLog(t, t.TempDir(), cfg)
	produceUpdates(t, l, 1000, 10, 5, kgo.CompressionCodec{}, latest{}) // timestamps an hour old
	res, err := l.Clean(time.Now(), CleanOptions{})
	if err != nil || res.Segments != 0 {
		t.Fatalf("clean within min.compaction.lag.ms: %+v, %v", res, err)
	}
	if res, err = l.Clean(time.Now().Add(2*time.Hour), CleanOptions{}); err != nil || res.Segments == 0 {
		t.Fatalf("clean past min.compaction.lag.ms: %+v, %v", res, err)
	}
}

func TestCleanIdempotentProducer(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, compactConfig())
	ts := time.Now().Add(-time.Hour).UnixMilli()
	var seq int32
	var last []byte
	for i := range 300 {
		last = keyedBatch(t, []kv{{"k", fmt.Appendf(nil, "v%d", i)}, {"k", fmt.Appendf(nil, "w%d", i)}}, kgo.CompressionCodec{}, 7, seq, ts)
		if _, err := l.Append(last, time.Now()); err != nil {
			t.Fatal(err)
		}
		seq += 2
	}
	// Roll so that the producer's last batch is in a cleanable segment.
	for range 60 {
		if _, err := l.Append(keyedBatch(t, []kv{{"other", bytes.Repeat([]byte("x"), 100)}}, kgo.CompressionCodec{}, -1, 0, ts), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	var ks []readRec
	for _, r := range readRecords(t, l) {
		if r.key == "k" {
			ks = append(ks, r)
		}
	}
	// The producer's last batch is kept whole, so both its records stay.
	if len(ks) != 2 || string(ks[1].value) != "w299" {
		t.Fatalf("records of the key after cleaning: %+v", ks)
	}
	l.Close()
	l = openLog(t, dir, compactConfig())
	res, err := l.Append(last, time.Now())
	if err != nil || !res.Duplicate {
		t.Fatalf("retry of the producer's last batch after cleaning: %+v, %v", res, err)
	}
	next := keyedBatch(t, []kv{{"k", []byte("next")}}, kgo.CompressionCodec{}, 7, seq, ts)
	if _, err := l.Append(next, time.Now()); err != nil {
		t.Fatalf("the producer's next batch after cleaning: %v", err)
	}
}

// TestCleanCrash cuts the power at every write operation of a pass:
// after each cut the log opens, every key's latest acknowledged record is
// readable at its offset, and a new pass completes. In the "merge" case
// the pass follows an earlier one, so that it merges the cleaned
// segments into fewer.
func TestCleanCrash(t *testing.T) {
	for _, merge := range []bool{false, true} {
		t.Run(map[bool]string{false: "first", true: "merge"}[merge], func(t *testing.T) {
			cuts, merged := 0, false
			for cut := int64(1); ; cut++ {
				mem := vfs.NewStrictMem()
				var ops atomic.Int64
				armed := atomic.Bool{}
				fs := errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
					if armed.Load() && op.OpKind() == errorfs.OpKindWrite && ops.Add(1) >= cut {
						return errors.New("injected power cut")
					}
					return nil
				}))
				cfg := compactConfig()
				cfg.FS = fs
				l, err := Open(memDir, cfg)
				if err != nil {
					t.Fatal(err)
				}
				want := latest{}
				produceUpdates(t, l, 600, 20, 5, kgo.SnappyCompression(), want)
				if merge {
					if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
						t.Fatal(err)
					}
					produceUpdates(t, l, 300, 20, 5, kgo.SnappyCompression(), want)
				}
				if err := l.WaitDurable(context.Background(), l.EndOffset()); err != nil {
					t.Fatal(err)
				}
				segsBefore := len(l.segs)
				armed.Store(true)
				_, cleanErr := l.Clean(time.Now(), CleanOptions{})
				finished := cleanErr == nil && ops.Load() < cut
				merged = merged || finished && len(l.segs) < segsBefore
				mem.SetIgnoreSyncs(true)
				l.Close()
				mem.ResetToSyncedState()
				mem.SetIgnoreSyncs(false)
				armed.Store(false)

				cfg.FS = mem
				l, err = Open(memDir, cfg)
				if err != nil {
					t.Fatalf("cut %d: open after the cut: %v", cut, err)
				}
				checkSegments(t, l)
				checkLatest(t, readRecords(t, l), want, 0)
				if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
					t.Fatalf("cut %d: clean after the cut: %v", cut, err)
				}
				checkLatest(t, readRecords(t, l), want, l.segs[len(l.segs)-1].base)
				names, _ := mem.List(memDir)
				for _, n := range names {
					if strings.HasSuffix(n, cleanedSuffix) || strings.HasSuffix(n, swapSuffix) || strings.HasSuffix(n, deletedSuffix) {
						t.Fatalf("cut %d: leftover %s", cut, n)
					}
				}
				l.Close()
				if finished {
					cuts = int(cut - 1)
					break
				}
			}
			t.Logf("%d cut points", cuts)
			if cuts < 10 {
				t.Fatalf("a pass took only %d write operations", cuts)
			}
			if merge && !merged {
				t.Fatal("the second pass merged no segments")
			}
		})
	}
}

// checkSegments checks that the batches of each segment lie between its
// base offset and the next segment's.
func checkSegments(t testing.TB, l *Log) {
	t.Helper()
	for i, s := range l.segs {
		limit := int64(math.MaxInt64)
		if i+1 < len(l.segs) {
			limit = l.segs[i+1].base
		}
		err := walkHeaders(s.log, 0, s.size, nil, func(h batchHeader, _ int64) bool {
			if h.baseOffset < s.base || h.lastOffset() >= limit {
				t.Fatalf("segment %s holds offsets %d to %d; the next segment starts at %d", s.name(), h.baseOffset, h.lastOffset(), limit)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCleanMergesSegments checks that a pass writes adjacent cleaned
// segments as one while their sizes add up to at most segment.bytes,
// that the merged log reads back every key's latest record after a
// reopen, and that a pass that leaves a rolled segment whole keeps it.
func TestCleanMergesSegments(t *testing.T) {
	dir := t.TempDir()
	cfg := compactConfig()
	cfg.SegmentBytes = 16 << 10
	l := openLog(t, dir, cfg)
	want := latest{}
	produceUpdates(t, l, 3000, 40, 5, kgo.CompressionCodec{}, want)
	if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	before := len(l.segs)
	produceUpdates(t, l, 1000, 40, 5, kgo.CompressionCodec{}, want)
	rolled := len(l.segs) - before
	res, err := l.Clean(time.Now(), CleanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The first pass's segments, each far below segment.bytes, are now
	// one, followed by the ones the new updates filled.
	if got := len(l.segs); got > rolled+2 || res.Segments < before {
		t.Fatalf("%d segments after merging (%d before the second pass, %d new): %+v", got, before+rolled, rolled, res)
	}
	for _, s := range l.segs {
		if s.size > cfg.SegmentBytes {
			t.Fatalf("segment %s of %d bytes exceeds segment.bytes %d", s.name(), s.size, cfg.SegmentBytes)
		}
	}
	cleanedTo := l.segs[len(l.segs)-1].base
	checkLatest(t, readRecords(t, l), want, cleanedTo)
	checkSegments(t, l)
	l.Close()
	l = openLog(t, dir, cfg)
	checkLatest(t, readRecords(t, l), want, cleanedTo)
	checkSegments(t, l)
	// Offset lookups land in the merged segment.
	for _, w := range want {
		b, err := l.Read(w.offset, 1, nil)
		if err != nil || len(b) == 0 {
			t.Fatalf("read at %d: %v", w.offset, err)
		}
		if h := parseHeader(b); h.baseOffset > w.offset || h.lastOffset() < w.offset {
			t.Fatalf("read at %d returned the batch of offsets %d to %d", w.offset, h.baseOffset, h.lastOffset())
		}
	}
}

// TestCleanMaxCompactionLag checks that a log whose dirty ratio is below
// min.cleanable.dirty.ratio is cleanable once its oldest uncleaned record
// is older than max.compaction.lag.ms, and by how much it is overdue.
func TestCleanMaxCompactionLag(t *testing.T) {
	cfg := compactConfig()
	cfg.MinCleanableDirtyRatio = 0.9
	l := openLog(t, t.TempDir(), cfg)
	produceUpdates(t, l, 2000, 20, 5, kgo.CompressionCodec{}, latest{}) // timestamps an hour old
	if st := l.CleanState(time.Now()); !st.Cleanable || st.Ratio != 1 || st.Overdue != 0 {
		t.Fatalf("a wholly dirty log: %+v", st)
	}
	if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
		t.Fatal(err)
	}
	produceUpdates(t, l, 200, 20, 5, kgo.CompressionCodec{}, latest{})
	st := l.CleanState(time.Now())
	if st.Cleanable || st.Ratio <= 0 || st.Ratio >= 0.9 {
		t.Fatalf("a log a little dirty, without max.compaction.lag.ms: %+v", st)
	}
	cfg.MaxCompactionLag = 30 * time.Minute
	l.SetConfig(cfg)
	st = l.CleanState(time.Now())
	if !st.Cleanable || st.Overdue < 29*time.Minute || st.Overdue > 31*time.Minute {
		t.Fatalf("a log with records an hour old and max.compaction.lag.ms of 30 minutes: %+v", st)
	}
	// min.compaction.lag.ms still holds the records back.
	cfg.MinCompactionLag = 2 * time.Hour
	l.SetConfig(cfg)
	if st := l.CleanState(time.Now()); st.Cleanable {
		t.Fatalf("records within min.compaction.lag.ms: %+v", st)
	}
	cfg.MinCompactionLag = 0
	l.SetConfig(cfg)
	if res, err := l.Clean(time.Now(), CleanOptions{}); err != nil || res.RecordsRemoved == 0 {
		t.Fatalf("clean of the overdue log: %+v, %v", res, err)
	}
	if st := l.CleanState(time.Now()); st.Cleanable || st.Overdue != 0 {
		t.Fatalf("after the pass: %+v", st)
	}
}

// TestCleanThrottle checks that a pass reports every byte it reads and
// writes to its throttle, and that an error from the throttle ends the
// pass with the log as it was.
func TestCleanThrottle(t *testing.T) {
	dir := t.TempDir()
	cfg := compactConfig()
	l := openLog(t, dir, cfg)
	want := latest{}
	produceUpdates(t, l, 2000, 20, 5, kgo.Lz4Compression(), want)
	size, segs := l.Size(), len(l.segs)
	stop := errors.New("stop")
	var reported int
	_, err := l.Clean(time.Now(), CleanOptions{Throttle: func(n int) error {
		if reported += n; reported > int(size)/2 {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) {
		t.Fatalf("clean stopped by its throttle: %v", err)
	}
	if l.Size() != size || len(l.segs) != segs || l.DirtyRatio() != 1 {
		t.Fatalf("a stopped pass changed the log: %d bytes in %d segments, dirty ratio %v", l.Size(), len(l.segs), l.DirtyRatio())
	}
	names, _ := vfs.Default.List(dir)
	for _, n := range names {
		if strings.HasSuffix(n, cleanedSuffix) {
			t.Fatalf("leftover %s", n)
		}
	}
	reported = 0
	res, err := l.Clean(time.Now(), CleanOptions{Throttle: func(n int) error { reported += n; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	// The pass reads the dirty segments twice, to map and to clean them,
	// and writes what it keeps, plus a copy of any segment it leaves
	// whole, which it discards: at least this much.
	if min := 2*res.BytesRead + res.BytesWritten; int64(reported) < min || int64(reported) > min+size {
		t.Fatalf("throttle told of %d bytes; the pass read %d and wrote %d", reported, res.BytesRead, res.BytesWritten)
	}
	checkLatest(t, readRecords(t, l), want, l.segs[len(l.segs)-1].base)
}

// TestCleanHugeRecordsStream cleans batches whose records decompress to
// 16 MiB each: the pass streams them, so it allocates less than one
// record (not checked under the race detector), and keeps each key's
// latest record intact.
func TestCleanHugeRecordsStream(t *testing.T) {
	cfg := compactConfig()
	cfg.SegmentBytes = 1 << 20
	l := openLog(t, t.TempDir(), cfg)
	huge := bytes.Repeat([]byte("z"), 16<<20)
	ts := time.Now().Add(-time.Hour).UnixMilli()
	appendRecs := func(codec kgo.CompressionCodec, recs ...kv) {
		t.Helper()
		if _, err := l.Append(keyedBatch(t, recs, codec, -1, 0, ts), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for _, codec := range []kgo.CompressionCodec{kgo.ZstdCompression(), kgo.Lz4Compression()} {
		// The first record goes, the second stays: the batch is filtered.
		appendRecs(codec, kv{"a", huge}, kv{"b", huge})
		appendRecs(codec, kv{"a", []byte("small")})
	}
	huge = nil
	for range 100 { // roll so that the batches are cleanable
		appendRecs(kgo.CompressionCodec{}, kv{"filler", bytes.Repeat([]byte("x"), 10<<10)})
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := l.Clean(time.Now(), CleanOptions{})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if res.RecordsRemoved < 2 {
		t.Fatalf("removed %d records", res.RecordsRemoved)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 12<<20 && !raceDetector {
		t.Fatalf("the pass allocated %d MiB over records of 16 MiB", alloc>>20)
	}
	var b, a int
	for _, r := range readRecords(t, l) {
		switch r.key {
		case "a":
			a++
			if string(r.value) != "small" {
				t.Fatalf("key a: %d bytes", len(r.value))
			}
		case "b":
			b++
			if len(r.value) != 16<<20 || r.value[0] != 'z' || r.value[len(r.value)-1] != 'z' {
				t.Fatalf("key b: a value of %d bytes", len(r.value))
			}
		}
	}
	if a != 1 || b != 1 {
		t.Fatalf("%d records of key a, %d of key b after cleaning, want 1 each", a, b)
	}
}

// TestCleanConcurrent produces and fetches while passes run.
func TestCleanConcurrent(t *testing.T) {
	l := openLog(t, t.TempDir(), compactConfig())
	want := latest{}
	produceUpdates(t, l, 500, 20, 5, kgo.CompressionCodec{}, want)
	var wg sync.WaitGroup
	produced := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(produced)
		for range 100 {
			produceUpdates(t, l, 20, 20, 5, kgo.CompressionCodec{}, want)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-produced:
				return
			default:
			}
			readRecords(t, l)
		}
	}()
	passes := 0
	for done := false; !done; passes++ {
		select {
		case <-produced:
			done = true
		default:
		}
		if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	checkLatest(t, readRecords(t, l), want, 0)
	t.Logf("%d passes", passes)
}

// BenchmarkClean measures a pass over 80,000 updates of 1,000 keys (about
// 2 MiB uncompressed) in 1 MiB segments on a memory file system, in bytes
// of old segments per second.
func BenchmarkClean(b *testing.B) {
	cfg := compactConfig()
	cfg.SegmentBytes = 1 << 20
	cfg.IndexIntervalBytes = 4096
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"none", kgo.CompressionCodec{}}, {"lz4", kgo.Lz4Compression()}} {
		b.Run(c.name, func(b *testing.B) {
			var read int64
			for b.Loop() {
				b.StopTimer()
				mem := vfs.NewMem()
				cfg.FS = mem
				l, err := Open(memDir, cfg)
				if err != nil {
					b.Fatal(err)
				}
				produceUpdates(b, l, 80_000, 1000, 20, c.codec, latest{})
				b.StartTimer()
				res, err := l.Clean(time.Now(), CleanOptions{})
				if err != nil {
					b.Fatal(err)
				}
				read += res.BytesRead
				b.StopTimer()
				l.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(read)/1e6/b.Elapsed().Seconds(), "MB/s")
		})
	}
}
