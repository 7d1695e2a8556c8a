//go:build unix

package commitlog

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"golang.org/x/sys/unix"
)

// spanBytes reads a span's bytes through its own descriptor.
func spanBytes(t testing.TB, s *FileSpan) []byte {
	t.Helper()
	b := make([]byte, s.Len)
	for n := 0; n < len(b); {
		m, err := unix.Pread(s.Fd(), b[n:], s.Pos+int64(n))
		if err != nil || m == 0 {
			t.Fatalf("pread span of %d bytes at %d: %d, %v", s.Len, s.Pos, m, err)
		}
		n += m
	}
	return b
}

// TestFetchSpanMatchesRead checks that a span holds exactly the batches a
// read returns, for every offset and a range of byte limits, across index
// entries and up to the last stable offset of an open transaction.
func TestFetchSpanMatchesRead(t *testing.T) {
	cfg := testConfig()
	cfg.SegmentBytes = 32 << 10
	l := openLog(t, t.TempDir(), cfg)
	for i := range 120 {
		s := plain(1+i%5, int64(i))
		s.valueSize = 10 + (i*37)%300
		mustAppend(t, l, makeBatch(t, s))
		switch i {
		case 40:
			mustAppendTxn(t, l, makeBatch(t, txnBatch(7, 0, 0, 2)))
		case 60:
			mustMarker(t, l, 7, 0, false)
		case 90:
			mustAppendTxn(t, l, makeBatch(t, txnBatch(8, 0, 0, 2))) // left open
		}
	}
	hwm, lso := l.HighWatermark(), l.LastStableOffset()
	if lso >= hwm {
		t.Fatalf("LSO %d not below the high watermark %d", lso, hwm)
	}
	spans := 0
	for _, committed := range []bool{false, true} {
		for off := int64(0); off < hwm; off++ {
			for _, maxBytes := range []int32{1, 300, 1000, 2500, 8000, 1 << 20} {
				name := fmt.Sprintf("committed=%v offset %d max %d", committed, off, maxBytes)
				read, err := l.FetchTo(off, maxBytes, nil, FetchOptions{Committed: committed})
				if err != nil {
					t.Fatalf("%s: read: %v", name, err)
				}
				sp, err := l.FetchTo(off, maxBytes, []byte("kept"), FetchOptions{Committed: committed, SpanBytes: 1})
				if err != nil {
					t.Fatalf("%s: span: %v", name, err)
				}
				if string(sp.Records) != "kept" {
					t.Fatalf("%s: span fetch changed dst to %d bytes", name, len(sp.Records))
				}
				if sp.Bounds != read.Bounds {
					t.Fatalf("%s: bounds %+v, read %+v", name, sp.Bounds, read.Bounds)
				}
				if len(read.Records) == 0 {
					if sp.Span != nil {
						t.Fatalf("%s: span of %d bytes where a read returns none", name, sp.Span.Len)
					}
					continue
				}
				if sp.Span == nil {
					t.Fatalf("%s: no span for %d bytes", name, len(read.Records))
				}
				if got := spanBytes(t, sp.Span); !bytes.Equal(got, read.Records) {
					t.Fatalf("%s: span holds %d bytes, read %d, or they differ", name, len(got), len(read.Records))
				}
				if fmt.Sprint(sp.Aborted) != fmt.Sprint(read.Aborted) {
					t.Fatalf("%s: aborted %v, read %v", name, sp.Aborted, read.Aborted)
				}
				if err := sp.Span.Close(); err != nil {
					t.Fatal(err)
				}
				spans++
			}
		}
	}
	if spans == 0 {
		t.Fatal("no spans compared")
	}
}

// TestFetchSpanOutlivesSegment checks that a span stays readable while
// its segment is deleted and the log closed.
func TestFetchSpanOutlivesSegment(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig())
	for i := range 100 {
		mustAppend(t, l, makeBatch(t, plain(4, int64(i))))
	}
	want, err := l.Read(0, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.FetchTo(0, 1<<20, nil, FetchOptions{SpanBytes: 1})
	if err != nil || f.Span == nil {
		t.Fatalf("span: %+v, %v", f, err)
	}
	defer f.Span.Close()
	if _, err := l.DeleteRecords(l.HighWatermark()); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, l.dir, "00000000000000000000"+logSuffix)); n != 0 {
		t.Fatalf("first segment still on disk")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Files opened after the close would reuse its descriptors.
	for range 8 {
		fd, err := unix.Open(l.dir, unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}
	if got := spanBytes(t, f.Span); !bytes.Equal(got, want) {
		t.Fatalf("span of a deleted segment holds %d bytes, want the %d read before", len(got), len(want))
	}
	if err := f.Span.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Span.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// TestFetchSpanNeedsOSFiles checks that a log on another file system reads
// into memory whatever SpanBytes says.
func TestFetchSpanNeedsOSFiles(t *testing.T) {
	cfg := testConfig()
	cfg.FS = vfs.NewMem()
	l := openLog(t, "log", cfg)
	mustAppend(t, l, makeBatch(t, plain(4, 0)))
	f, err := l.FetchTo(0, 1<<20, nil, FetchOptions{SpanBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if f.Span != nil || len(f.Records) == 0 {
		t.Fatalf("span %v, %d bytes read", f.Span, len(f.Records))
	}
	if _, err := newFileSpan(l.segs[0].log, 0, 1); !errors.Is(err, errNoFd) {
		t.Fatalf("span of a memory file: %v", err)
	}
}

// TestConcurrentSpansAndRetention takes spans while appends (group
// commit, so the high watermark trails the end), retention and
// DeleteRecords run, and reads each only after more segments went: every
// span must hold whole, signed batches from the one with the offset
// asked for, all below the high watermark the fetch returned.
func TestConcurrentSpansAndRetention(t *testing.T) {
	cfg := testConfig()
	cfg.RetentionBytes = 3 * 4096
	l := openLog(t, t.TempDir(), cfg)
	b := makeBatch(t, plain(2, t0.UnixMilli()))
	deadline := time.Now().Add(3 * time.Second)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	done := churn(&wg, l, b, deadline, errs)
	type held struct {
		off int64
		f   Fetched
	}
	check := func(h held) error {
		defer h.f.Span.Close()
		data := make([]byte, h.f.Span.Len)
		if _, err := unix.Pread(h.f.Span.Fd(), data, h.f.Span.Pos); err != nil {
			return fmt.Errorf("read span: %w", err)
		}
		for first := true; len(data) > 0; first = false {
			bh, err := checkBatch(data)
			if err != nil {
				return fmt.Errorf("span for offset %d: %w", h.off, err)
			}
			if first && (bh.baseOffset > h.off || bh.lastOffset() < h.off) {
				return fmt.Errorf("span for offset %d starts with batch %d-%d", h.off, bh.baseOffset, bh.lastOffset())
			}
			if bh.lastOffset() >= h.f.Bounds.HighWatermark {
				return fmt.Errorf("span for offset %d holds batch %d-%d, at or past the high watermark %d", h.off, bh.baseOffset, bh.lastOffset(), h.f.Bounds.HighWatermark)
			}
			data = data[bh.size:]
		}
		return nil
	}
	var spans int64
	var mu sync.Mutex
	for r := range 2 {
		wg.Go(func() {
			var queue []held
			defer func() {
				for _, h := range queue {
					h.f.Span.Close()
				}
			}()
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
				f, err := l.FetchTo(off, int32(100+i%3000), nil, FetchOptions{SpanBytes: 1})
				if errors.Is(err, ErrOffsetOutOfRange) {
					continue // retention moved the start meanwhile
				}
				if err != nil {
					errs <- err
					return
				}
				if f.Span == nil {
					continue
				}
				queue = append(queue, held{off, f})
				if len(queue) < 16 {
					continue
				}
				if err := check(queue[0]); err != nil {
					errs <- err
					return
				}
				queue = queue[1:]
				mu.Lock()
				spans++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if spans == 0 {
		t.Fatal("no span checked")
	}
}
