package commitlog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchBatch is a 16 KiB batch of 1 KiB records.
func benchBatch(b *testing.B) []byte {
	return makeBatch(b, spec{n: 16, ts: time.Now().UnixMilli(), valueSize: 1000, pid: -1, seq: -1})
}

// BenchmarkAppend appends 16 KiB batches from 4 goroutines; under
// SyncGroupCommit each append waits until it is durable.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name   string
		policy SyncPolicy
	}{{"SyncNone", SyncNone}, {"SyncGroupCommit", SyncGroupCommit}} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{SegmentBytes: 128 << 20, RetentionBytes: -1, RetentionAge: -1, Sync: bc.policy, Logger: slog.New(slog.DiscardHandler)}
			l, err := Open(b.TempDir(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batch := benchBatch(b)
			b.SetBytes(int64(len(batch)))
			b.ReportAllocs()
			var n atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 4 {
				wg.Go(func() {
					for n.Add(1) <= int64(b.N) {
						res, err := l.Append(batch, time.Now())
						if err == nil {
							err = l.WaitDurable(context.Background(), res.LastOffset+1)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// BenchmarkRead reads up to 1 MiB from random offsets of a 64 MiB log
// into a reused buffer.
func BenchmarkRead(b *testing.B) {
	cfg := Config{SegmentBytes: 16 << 20, RetentionBytes: -1, RetentionAge: -1, Sync: SyncNone, Logger: slog.New(slog.DiscardHandler)}
	l, err := Open(b.TempDir(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	batch := benchBatch(b)
	for range 4096 {
		if _, err := l.Append(batch, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	end := l.EndOffset()
	dst := make([]byte, 0, 2<<20)
	var read int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		off := int64(i*7919) % end
		if dst, err = l.Read(off, 1<<20, dst[:0]); err != nil {
			b.Fatal(err)
		}
		read += int64(len(dst))
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
}

// BenchmarkOpen measures recovery: opening a log whose 64 MiB active
// segment is scanned and CRC-checked in full.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	cfg := Config{RetentionBytes: -1, RetentionAge: -1, Sync: SyncNone, Logger: slog.New(slog.DiscardHandler)}
	l, err := Open(dir, cfg)
	if err != nil {
		b.Fatal(err)
	}
	batch := benchBatch(b)
	for range 4096 {
		if _, err := l.Append(batch, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	size := l.Size()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	for b.Loop() {
		l, err := Open(dir, cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
