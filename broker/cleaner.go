package broker

import (
	"errors"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
)

// cleanerLoop is the log cleaner, one goroutine as with Kafka's
// log.cleaner.threads=1: it cleans the compacted partition with the
// highest dirty ratio at or above its min.cleanable.dirty.ratio, then
// looks again at once, and sleeps for the cleaner backoff when none is
// cleanable.
func (b *Broker) cleanerLoop() {
	defer b.serving.Done()
	for {
		if !b.parts.cleanDirtiest(time.Now()) {
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(b.cfg.cleanerBackoff):
			}
		}
		if b.ctx.Err() != nil {
			return
		}
	}
}

// cleanDirtiest runs one cleaning pass over the partition with the
// highest cleanable dirty ratio, and reports whether there was one.
func (s *partitionSet) cleanDirtiest(now time.Time) bool {
	var best *partition
	bestRatio := 0.0
	for _, p := range s.snapshot() {
		if r, ok := p.log.Cleanable(); ok && r > bestRatio {
			best, bestRatio = p, r
		}
	}
	if best == nil {
		return false
	}
	res, err := best.log.Clean(now, commitlog.CleanOptions{})
	switch {
	case errors.Is(err, commitlog.ErrClosed):
	case err != nil:
		s.log.Error("clean log", "topic", best.topic, "partition", best.index, "err", err)
		return false
	case res.Segments > 0:
		s.log.Debug("cleaned partition", "topic", best.topic, "partition", best.index, "dirty_ratio", bestRatio,
			"segments", res.Segments, "bytes_before", res.BytesRead, "bytes_after", res.BytesWritten, "records_removed", res.RecordsRemoved)
	}
	// A pass that cleaned nothing (segments changed meanwhile, or held
	// back by min.compaction.lag.ms) leaves the ratio as it was: wait
	// for the backoff rather than spin on it.
	return res.Segments > 0
}
