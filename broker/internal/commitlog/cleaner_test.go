package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
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
			err = eachRecord(&h, b, func(rec *recordMeta, raw, key []byte) bool {
				var r kmsg.Record
				if err := r.ReadFrom(raw); err != nil {
					t.Fatalf("record: %v", err)
				}
				o := h.baseOffset + int64(rec.offsetDelta)
				if n := len(out); n > 0 && o <= out[n-1].offset {
					t.Fatalf("offset %d after %d", o, out[n-1].offset)
				}
				out = append(out, readRec{o, string(r.Key), r.Value})
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			off = h.lastOffset() + 1
			b = b[h.size:]
		}
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
// readable at its offset, and a new pass completes.
func TestCleanCrash(t *testing.T) {
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
		if err := l.WaitDurable(context.Background(), l.EndOffset()); err != nil {
			t.Fatal(err)
		}
		armed.Store(true)
		_, cleanErr := l.Clean(time.Now(), CleanOptions{})
		finished := cleanErr == nil && ops.Load() < cut
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
		checkLatest(t, readRecords(t, l), want, 0)
		if _, err := l.Clean(time.Now(), CleanOptions{}); err != nil {
			t.Fatalf("cut %d: clean after the cut: %v", cut, err)
		}
		checkLatest(t, readRecords(t, l), want, l.segs[len(l.segs)-1].base)
		names, _ := mem.List(memDir)
		for _, n := range names {
			if bytes.HasSuffix([]byte(n), []byte(cleanedSuffix)) || bytes.HasSuffix([]byte(n), []byte(swapSuffix)) {
				t.Fatalf("cut %d: leftover %s", cut, n)
			}
		}
		l.Close()
		if finished {
			t.Logf("%d cut points", cut-1)
			if cut < 10 {
				t.Fatalf("a pass took only %d write operations", cut)
			}
			return
		}
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
