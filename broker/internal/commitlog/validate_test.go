package commitlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/snappy/xerial"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// codecs are the ways a test compresses a records section, by name; each
// names its attributes codec.
var codecs = []struct {
	name  string
	codec int16
	enc   func(testing.TB, []byte) []byte
}{
	{"none", 0, func(_ testing.TB, b []byte) []byte { return b }},
	{"gzip", 1, kgoCompress(kgo.GzipCompression())},
	{"snappy", 2, kgoCompress(kgo.SnappyCompression())},
	{"snappy-xerial", 2, func(_ testing.TB, b []byte) []byte { return xerial.Encode(nil, b) }},
	{"lz4", 3, kgoCompress(kgo.Lz4Compression())},
	{"zstd", 4, kgoCompress(kgo.ZstdCompression())},
}

func kgoCompress(c kgo.CompressionCodec) func(testing.TB, []byte) []byte {
	return func(t testing.TB, b []byte) []byte {
		comp, err := kgo.DefaultCompressor(c)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := comp.Compress(new(bytes.Buffer), b)
		return bytes.Clone(out)
	}
}

// record returns record i of a test batch: a key, a value of size bytes
// and a header.
func record(i int, size int) kmsg.Record {
	return kmsg.Record{
		TimestampDelta64: int64(i),
		OffsetDelta:      int32(i),
		Key:              fmt.Appendf(nil, "key-%d", i),
		Value:            bytes.Repeat([]byte{byte('a' + i%26)}, size),
		Headers:          []kmsg.Header{{Key: "h", Value: []byte("v")}},
	}
}

// encodeRecords encodes recs as a records section, each with its length.
func encodeRecords(recs ...kmsg.Record) []byte {
	var out []byte
	for _, r := range recs {
		r.Length = int32(len(r.AppendTo(nil)) - 1) // less the 1-byte varint of Length 0
		out = r.AppendTo(out)
	}
	return out
}

// records returns the encoded records 0..n-1 of a test batch.
func records(n, size int) []byte {
	var recs []kmsg.Record
	for i := range n {
		recs = append(recs, record(i, size))
	}
	return encodeRecords(recs...)
}

// batchOf wraps a records section of count records into a signed batch
// with the given attributes, timestamps starting at ts.
func batchOf(section []byte, attrs int16, count int32, ts int64) []byte {
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      count - 1,
		FirstTimestamp:       ts,
		MaxTimestamp:         ts + int64(min(count, 1000)-1),
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           count,
		Records:              section,
	}
	b.Length = int32(batchHeaderSize - lengthPrefix + len(section))
	return resign(b.AppendTo(nil))
}

// resign fixes the length and CRC of a batch whose bytes a test changed.
func resign(b []byte) []byte {
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-lengthPrefix))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

// edit returns a signed copy of b changed by fn.
func edit(b []byte, fn func(b []byte) []byte) []byte { return resign(fn(bytes.Clone(b))) }

var (
	testNow = time.UnixMilli(1_700_000_000_000)
	// testTs is a CreateTime timestamp inside testWindow.
	testTs     = testNow.UnixMilli() - 1000
	testWindow = Config{MaxBatchBytes: DefaultMaxBatchBytes, TimestampBeforeMax: time.Hour, TimestampAfterMax: time.Hour}
)

func validateOne(cfg Config, b []byte) error {
	v := newValidator(&cfg, testNow)
	_, err := v.validate(b)
	return err
}

func TestValidateAcceptsEveryCodec(t *testing.T) {
	for _, c := range codecs {
		for _, n := range []int{1, 16, 500} {
			b := batchOf(c.enc(t, records(n, 100)), c.codec, int32(n), testTs)
			if err := validateOne(testWindow, b); err != nil {
				t.Errorf("%s, %d records: %v", c.name, n, err)
			}
		}
	}
	nulls := encodeRecords(kmsg.Record{}, kmsg.Record{OffsetDelta: 1, Headers: []kmsg.Header{{Key: "k"}}})
	for _, c := range codecs {
		// kmsg encodes a nil key, value or header value as null (-1).
		if err := validateOne(testWindow, batchOf(c.enc(t, nulls), c.codec, 2, testTs)); err != nil {
			t.Errorf("%s, null keys and values: %v", c.name, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	good := records(3, 10)
	rec := func(r kmsg.Record) []byte { return encodeRecords(r) }
	cases := []struct {
		name    string
		section []byte // uncompressed records section
		count   int32
		attrs   int16
		ts      int64
		want    error
		index   int32 // of the bad record in a RecordError, -1 for none
	}{
		{"claims 2^31-1 records, holds none", nil, math.MaxInt32, 0, testTs, ErrInvalidRecord, 0},
		{"claims more records than it holds", good, 4, 0, testTs, ErrInvalidRecord, 3},
		{"claims fewer records than it holds", good, 2, 0, testTs, ErrInvalidRecord, -1},
		{"bytes after the last record", append(bytes.Clone(good), 0), 3, 0, testTs, ErrInvalidRecord, -1},
		{"offset deltas out of order", encodeRecords(record(0, 1), record(2, 1), record(1, 1)), 3, 0, testTs, ErrInvalidRecord, 1},
		{"offset deltas not from 0", encodeRecords(record(1, 1)), 1, 0, testTs, ErrInvalidRecord, 0},
		{"truncated in a record", good[:len(good)-3], 3, 0, testTs, ErrInvalidRecord, 2},
		{"record length longer than its fields", withLength(rec(record(0, 5)), +2), 1, 0, testTs, ErrInvalidRecord, 0},
		{"record length shorter than its fields", withLength(rec(record(0, 5)), -2), 1, 0, testTs, ErrInvalidRecord, 0},
		{"zero record length", []byte{0}, 1, 0, testTs, ErrInvalidRecord, 0},
		{"negative key length", rawRecord(0, -2, -1, 0), 1, 0, testTs, ErrInvalidRecord, 0},
		{"key overruns the record", rawRecord(0, 100, -1, 0), 1, 0, testTs, ErrInvalidRecord, 0},
		{"negative value length", rawRecord(0, -1, -3, 0), 1, 0, testTs, ErrInvalidRecord, 0},
		{"negative header count", rawRecord(0, -1, -1, -1), 1, 0, testTs, ErrInvalidRecord, 0},
		{"header count past the record", rawRecord(0, -1, -1, 50), 1, 0, testTs, ErrInvalidRecord, 0},
		{"null header key", append(rawRecordPrefix(0, -1, -1, 1), 0x01, 0x01), 1, 0, testTs, ErrInvalidRecord, 0},
		{"offset delta over 32 bits", rawRecord(1<<40, -1, -1, 0), 1, 0, testTs, ErrInvalidRecord, 0},
		{"control batch", good, 3, attrControl, testTs, ErrInvalidRecord, -1},
		{"transactional batch", good, 3, attrTransactional, testTs, ErrInvalidTxnState, -1},
		{"unknown codec", good, 3, 5, testTs, ErrInvalidRecord, -1},
		{"producer sets LogAppendTime", good, 3, attrLogAppendTime, testTs, ErrInvalidTimestamp, -1},
		{"timestamp before the window", good, 3, 0, testNow.Add(-2 * time.Hour).UnixMilli(), ErrInvalidTimestamp, 0},
		{"timestamp after the window", good, 3, 0, testNow.Add(2 * time.Hour).UnixMilli(), ErrInvalidTimestamp, 0},
		{"one record after the window", encodeRecords(record(0, 1), kmsg.Record{TimestampDelta64: time.Hour.Milliseconds() + 1001, OffsetDelta: 1}), 2, 0, testTs, ErrInvalidTimestamp, 1},
		{"max timestamp after the window", good, 3, 0, testTs, ErrInvalidTimestamp, -1},
	}
	for _, tc := range cases {
		b := batchOf(tc.section, tc.attrs, tc.count, tc.ts)
		if tc.name == "max timestamp after the window" {
			binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(testNow.Add(2*time.Hour).UnixMilli()))
			resign(b)
		}
		err := validateOne(testWindow, b)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			continue
		}
		var re *RecordError
		if errors.As(err, &re) != (tc.index >= 0) || tc.index >= 0 && re.Records[0].Index != tc.index {
			t.Errorf("%s: %#v, want a record error at index %d", tc.name, err, tc.index)
		}
	}
	badCRC := batchOf(good, 0, 3, testTs)
	badCRC[len(badCRC)-1] ^= 1
	if err := validateOne(testWindow, badCRC); !errors.Is(err, ErrCorruptMessage) {
		t.Errorf("bad crc: %v, want %v", err, ErrCorruptMessage)
	}
	for name, fn := range map[string]func(b []byte){
		"last offset delta off": func(b []byte) { binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 5) },
		"zero records":          func(b []byte) { binary.BigEndian.PutUint32(b[offRecordCount:], 0) },
		"sequence missing":      func(b []byte) { binary.BigEndian.PutUint64(b[offProducerID:], 7) },
	} {
		b := edit(batchOf(good, 0, 3, testTs), func(b []byte) []byte { fn(b); return b })
		if err := validateOne(testWindow, b); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v, want %v", name, err, ErrInvalidRecord)
		}
	}
	compacted := testWindow
	compacted.KeyRequired = true
	var re *RecordError
	keyless := encodeRecords(record(0, 1), kmsg.Record{OffsetDelta: 1}, record(2, 1))
	if err := validateOne(compacted, batchOf(keyless, 0, 3, testTs)); !errors.As(err, &re) || re.Err != ErrInvalidRecord || re.Records[0].Index != 1 {
		t.Errorf("record without a key for a compacted topic: %v", err)
	}
	if err := validateOne(testWindow, batchOf(keyless, 0, 3, testTs)); err != nil {
		t.Errorf("record without a key for a deleting topic: %v", err)
	}
	small := testWindow
	small.MaxBatchBytes = 100
	if err := validateOne(small, batchOf(good, 0, 3, testTs)); !errors.Is(err, ErrRecordTooLarge) {
		t.Errorf("batch over max.message.bytes: %v", err)
	}
}

// withLength changes the length of the single record in section by delta.
func withLength(section []byte, delta int64) []byte {
	n, w := binary.Varint(section)
	return append(binary.AppendVarint(nil, n+delta), section[w:]...)
}

// rawRecordPrefix encodes a record's fields up to its header count,
// without its length.
func rawRecordPrefix(offsetDelta, keyLen, valueLen, headers int64) []byte {
	b := []byte{0}                // attributes
	b = binary.AppendVarint(b, 0) // timestamp delta
	b = binary.AppendVarint(b, offsetDelta)
	b = binary.AppendVarint(b, keyLen)
	b = binary.AppendVarint(b, valueLen)
	return binary.AppendVarint(b, headers)
}

// rawRecord encodes a record with the given fields and its true length.
func rawRecord(offsetDelta, keyLen, valueLen, headers int64) []byte {
	body := rawRecordPrefix(offsetDelta, keyLen, valueLen, headers)
	return append(binary.AppendVarint(nil, int64(len(body))), body...)
}

func TestValidateRejectsCorruptCompression(t *testing.T) {
	good := records(20, 50)
	for _, c := range codecs[1:] {
		comp := c.enc(t, good)
		for name, section := range map[string][]byte{
			"flipped byte":       flip(comp, len(comp)/2),
			"truncated stream":   comp[:len(comp)-4],
			"garbage records":    c.enc(t, bytes.Repeat([]byte{0x55}, 300)),
			"trailing bytes":     c.enc(t, append(bytes.Clone(good), 1, 2, 3)),
			"too few records":    c.enc(t, records(19, 50)),
			"not compressed":     good,
			"empty":              nil,
			"offset deltas off":  c.enc(t, encodeRecords(record(0, 1), record(0, 1))),
			"record cut in half": c.enc(t, good[:len(good)-20]),
		} {
			count := int32(20)
			if name == "offset deltas off" {
				count = 2
			}
			err := validateOne(testWindow, batchOf(section, c.codec, count, testTs))
			// A flipped byte can land where the codec does not notice
			// (a literal); the records then parse or fail on their own.
			if err == nil && name == "flipped byte" {
				continue
			}
			if !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("%s, %s: %v, want %v", c.name, name, err, ErrInvalidRecord)
			}
		}
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0xff
	return b
}

// bombRecord streams into w one record whose value is size zero bytes.
func bombRecord(t testing.TB, w io.Writer, size int64) {
	t.Helper()
	body := []byte{0, 0, 0, 1} // attributes, timestamp delta, offset delta, null key
	body = binary.AppendVarint(body, size)
	head := binary.AppendVarint(nil, int64(len(body))+size+1)
	zeros := make([]byte, 1<<20)
	if _, err := w.Write(append(head, body...)); err != nil {
		t.Fatal(err)
	}
	for n := size; n > 0; n -= int64(len(zeros)) {
		if _, err := w.Write(zeros[:min(n, int64(len(zeros)))]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write([]byte{0}); err != nil { // no headers
		t.Fatal(err)
	}
}

// TestValidateZipBomb sends small batches whose single record decompresses
// past maxRecordsBytes: they are refused as too large while validation
// allocates a small, bounded amount of memory.
func TestValidateZipBomb(t *testing.T) {
	if testing.Short() {
		t.Skip("compresses 300 MiB")
	}
	const size = maxRecordsBytes + 40<<20
	var gz, zs bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	bombRecord(t, gw, size)
	gw.Close()
	zw, err := zstd.NewWriter(&zs, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	bombRecord(t, zw, size)
	zw.Close()
	// A raw snappy block that declares 4 GiB in five bytes.
	snappyClaim := append(binary.AppendUvarint(nil, math.MaxUint32), 0, 0, 0, 0)
	cfg := testWindow
	cfg.MaxBatchBytes = math.MaxInt32
	for _, tc := range []struct {
		name  string
		codec int16
		data  []byte
		want  error
	}{
		{"gzip", 1, gz.Bytes(), ErrRecordTooLarge},
		{"zstd", 4, zs.Bytes(), ErrRecordTooLarge},
		{"snappy declared length", 2, snappyClaim, ErrInvalidRecord},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := validateOne(cfg, batchOf(tc.data, tc.codec, 1, testTs))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s bomb of %d bytes: %v, want %v", tc.name, len(tc.data), err, tc.want)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Errorf("%s bomb: validation allocated %d MiB", tc.name, alloc>>20)
		}
	}
}

// TestValidateZstdWindow refuses a zstd frame declaring a window beyond
// maxZstdWindow, which the decoder would allocate up front.
func TestValidateZstdWindow(t *testing.T) {
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(records(3, 10))
	zw.Close()
	frame := buf.Bytes()
	if err := validateOne(testWindow, batchOf(frame, 4, 3, testTs)); err != nil {
		t.Fatalf("zstd frame with a small window: %v", err)
	}
	// Byte 5, after the magic and the frame header descriptor, is the
	// window descriptor: exponent 16 declares 2^(10+16) bytes, 64 MiB.
	if frame[4]&0x20 != 0 {
		t.Fatal("the encoder wrote a single-segment frame, which has no window descriptor")
	}
	frame[5] = 16 << 3
	if err := validateOne(testWindow, batchOf(frame, 4, 3, testTs)); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("zstd frame with a 64 MiB window: %v", err)
	}
}

// TestValidateTimestampBounds checks the edges of the window and that
// LogAppendTime logs and records without timestamps skip it.
func TestValidateTimestampBounds(t *testing.T) {
	now := testNow.UnixMilli()
	for _, tc := range []struct {
		name string
		cfg  Config
		ts   int64
		ok   bool
	}{
		{"at the lower edge", testWindow, now - 3_600_000, true},
		{"below the lower edge", testWindow, now - 3_600_001, false},
		{"at the upper edge", testWindow, now + 3_600_000, true},
		{"above the upper edge", testWindow, now + 3_600_001, false},
		{"no timestamp", testWindow, -1, true},
		{"no bounds", Config{MaxBatchBytes: DefaultMaxBatchBytes}, math.MinInt64 / 2, true},
		{"LogAppendTime log", Config{MaxBatchBytes: DefaultMaxBatchBytes, LogAppendTime: true, TimestampAfterMax: time.Millisecond}, now + 10_000, true},
		{"zero skew allowed, at now", Config{MaxBatchBytes: DefaultMaxBatchBytes, TimestampBeforeMax: time.Nanosecond, TimestampAfterMax: time.Nanosecond}, now, true},
		{"zero skew allowed, 1 ms late", Config{MaxBatchBytes: DefaultMaxBatchBytes, TimestampBeforeMax: time.Nanosecond}, now - 1, false},
	} {
		b := batchOf(encodeRecords(kmsg.Record{}), 0, 1, tc.ts)
		if err := validateOne(tc.cfg, b); (err == nil) != tc.ok {
			t.Errorf("%s: timestamp %d: %v", tc.name, tc.ts, err)
		}
	}
}

func TestCheckSingleBatch(t *testing.T) {
	one := batchOf(records(2, 5), 0, 2, testTs)
	magic1 := bytes.Clone(one)
	magic1[offMagic] = 1
	for _, tc := range []struct {
		name    string
		records []byte
		ok      bool
	}{
		{"one batch", one, true},
		{"two batches", append(bytes.Clone(one), one...), false},
		{"a batch and a byte", append(bytes.Clone(one), 0), false},
		{"no batch", nil, false},
		{"magic 1", magic1, false},
		{"too short to tell", one[:30], true},
	} {
		err := CheckSingleBatch(tc.records)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if Transactional(one) || !Transactional(edit(one, func(b []byte) []byte { b[offAttributes+1] |= attrTransactional; return b })) {
		t.Error("Transactional misreads the attributes")
	}
}

// TestAppendValidates checks that Append refuses what validation refuses
// and stores nothing, and that a valid compressed batch is stored
// byte for byte as sent apart from the fields the log owns.
func TestAppendValidates(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 1 << 20
	l := openLog(t, t.TempDir(), cfg)
	bad := batchOf(nil, 0, math.MaxInt32, testTs)
	if _, err := l.Append(bad, testNow); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("61-byte batch claiming 2^31-1 records: %v", err)
	}
	if l.EndOffset() != 0 || l.Size() != 0 {
		t.Fatalf("refused batch was stored: end %d size %d", l.EndOffset(), l.Size())
	}
	for _, c := range codecs {
		b := batchOf(c.enc(t, records(16, 100)), c.codec, 16, testTs)
		res, err := l.Append(b, testNow)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := l.WaitDurable(context.Background(), res.LastOffset+1); err != nil {
			t.Fatal(err)
		}
		got, err := l.Read(res.BaseOffset, math.MaxInt32, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < len(b) {
			t.Fatalf("%s: read %d bytes of a %d-byte batch", c.name, len(got), len(b))
		}
		got = got[:len(b)]
		want := bytes.Clone(b)
		binary.BigEndian.PutUint64(want[offBaseOffset:], uint64(res.BaseOffset))
		binary.BigEndian.PutUint32(want[offLeaderEpoch:], 0)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: stored batch differs from the one sent", c.name)
		}
		off, ts, ok, err := findRecord(want, 0, func(ts int64) bool { return ts >= testTs+5 })
		if err != nil || !ok || ts != testTs+5 || off != res.BaseOffset+5 {
			t.Errorf("%s: findRecord: offset %d ts %d %v %v, want offset %d", c.name, off, ts, ok, err, res.BaseOffset+5)
		}
	}
}
