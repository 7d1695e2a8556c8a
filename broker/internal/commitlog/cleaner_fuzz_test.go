package commitlog

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzClean appends batches the input describes to a compacted log on a
// memory file system, cleaning it where the input says, and checks after
// each pass and after a reopen that every key's latest record is there,
// that cleaned keys have no older record, and that segments do not
// overlap. Each input byte is one step: the low bits pick a key (or, for
// 0xff, a pass), bit 5 a tombstone, bits 6-7 the batch's codec and size.
func FuzzClean(f *testing.F) {
	f.Add([]byte("abcabcabc\xffabc\xffaaaa\xff"))
	f.Add([]byte("\x01\x02\x21\x41\x81\xc1\xff\x01\x22\xff\xff"))
	codecs := []kgo.CompressionCodec{{}, kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()}
	f.Fuzz(func(t *testing.T, steps []byte) {
		if len(steps) > 400 {
			steps = steps[:400]
		}
		cfg := compactConfig()
		cfg.SegmentBytes = 1024
		cfg.FS = vfs.NewMem()
		l, err := Open(memDir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { l.Close() }()
		want := latest{}
		ts := time.Now().Add(-time.Hour).UnixMilli()
		for i, b := range steps {
			if b == 0xff {
				if _, err := l.Clean(time.Now(), CleanOptions{MaxKeys: 64}); err != nil {
					t.Fatal(err)
				}
				checkLatest(t, readRecords(t, l), want, l.cleanedTo)
				checkSegments(t, l)
				continue
			}
			var recs []kv
			for j := range int(b>>6) + 1 {
				r := kv{key: fmt.Sprintf("k%d", (int(b)+j)&0x1f)}
				if b&0x20 == 0 {
					r.value = fmt.Appendf(nil, "v%d-%d", i, j)
				}
				recs = append(recs, r)
			}
			res, err := l.Append(keyedBatch(t, recs, codecs[b>>6], -1, 0, ts), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			for k, r := range recs {
				want[r.key] = readRec{res.BaseOffset + int64(k), r.key, r.value}
			}
		}
		cleanedTo := l.cleanedTo
		l.Close()
		if l, err = Open(memDir, cfg); err != nil {
			t.Fatal(err)
		}
		checkLatest(t, readRecords(t, l), want, cleanedTo)
		checkSegments(t, l)
	})
}
