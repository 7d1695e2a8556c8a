package commitlog

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// TestZeroTailIsACleanEnd opens logs whose segment files end in zeros, as
// a file system may leave a file extended but not written by a power cut: the
// zeros are neither records nor damage that keeps the log from opening,
// and appends continue at the true end.
func TestZeroTailIsACleanEnd(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zeros int
	}{
		{"shorter than a header", batchHeaderSize - 1},
		{"a header", batchHeaderSize},
		{"64 KiB", 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewStrictMem()
			cfg := testConfig()
			cfg.FS = fs
			cfg.SegmentBytes = 1 << 20
			l, err := Open("log", cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				if _, err := l.Append(makeBatch(t, plain(3, int64(i))), time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.WaitDurable(context.Background(), 15); err != nil {
				t.Fatal(err)
			}
			name := l.segs[0].path(logSuffix)
			size := l.segs[0].size
			f, err := fs.OpenReadWrite(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, tc.zeros), size); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			fs.SetIgnoreSyncs(true)
			l.Close()
			fs.ResetToSyncedState()
			fs.SetIgnoreSyncs(false)

			var warned warnings
			cfg.Logger = slog.New(&warned)
			l = openLog(t, "log", cfg)
			if warned.n.Load() > 0 {
				t.Errorf("recovery warned %d times about a tail of zeros", warned.n.Load())
			}
			if got := l.EndOffset(); got != 15 {
				t.Fatalf("end offset %d after reopening, want 15", got)
			}
			if hs := readAll(t, l, 0); len(hs) != 5 {
				t.Fatalf("read %d batches, want 5", len(hs))
			}
			res, err := l.Append(makeBatch(t, plain(2, 9)), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if res.BaseOffset != 15 {
				t.Fatalf("appended at %d, want 15", res.BaseOffset)
			}
			if err := l.WaitDurable(context.Background(), 17); err != nil {
				t.Fatal(err)
			}
			if hs := readAll(t, l, 0); len(hs) != 6 {
				t.Fatalf("read %d batches after the append, want 6", len(hs))
			}
		})
	}
}

// warnings is a slog handler counting the records at Warn and above.
type warnings struct{ n atomic.Int32 }

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(context.Context, slog.Record) error    { w.n.Add(1); return nil }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }
