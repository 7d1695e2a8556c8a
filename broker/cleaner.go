package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
)

// cleaner is the log cleaner: cleanerThreads goroutines (Kafka's
// log.cleaner.threads) that each take the compacted partition most in
// need of cleaning that no other thread is cleaning, clean it, and look
// again at once, sleeping for the cleaner backoff when none is cleanable.
// Their reads and writes share one rate limit.
type cleaner struct {
	parts    *partitionSet
	backoff  time.Duration
	throttle *ioThrottle // nil: unlimited

	mu   sync.Mutex
	busy map[*partition]bool // being cleaned by a thread
}

// startCleaner starts the cleaner threads; they stop with b.ctx.
func (b *Broker) startCleaner() {
	c := &cleaner{parts: b.parts, backoff: b.cfg.cleanerBackoff, busy: make(map[*partition]bool)}
	if r := b.cfg.cleanerIORate; r > 0 {
		c.throttle = newIOThrottle(r)
	}
	b.serving.Add(b.cfg.cleanerThreads)
	for range b.cfg.cleanerThreads {
		go func() {
			defer b.serving.Done()
			c.run(b.ctx)
		}()
	}
}

// run is one cleaner thread.
func (c *cleaner) run(ctx context.Context) {
	for ctx.Err() == nil {
		if c.cleanOne(ctx, time.Now()) {
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(c.backoff):
		}
	}
}

// cleanOne runs one cleaning pass over the partition most in need of
// one, and reports whether it did any work.
func (c *cleaner) cleanOne(ctx context.Context, now time.Time) bool {
	p, st := c.pick(now)
	if p == nil {
		return false
	}
	defer func() {
		c.mu.Lock()
		delete(c.busy, p)
		c.mu.Unlock()
	}()
	var opts commitlog.CleanOptions
	if c.throttle != nil {
		opts.Throttle = func(n int) error { return c.throttle.wait(ctx, n) }
	}
	res, err := p.log.Clean(now, opts)
	switch {
	case errors.Is(err, commitlog.ErrClosed), ctx.Err() != nil:
		return false
	case err != nil:
		c.parts.log.Error("clean log", "topic", p.topic, "partition", p.index, "err", err)
		return false
	case res.Segments > 0:
		c.parts.log.Debug("cleaned partition", "topic", p.topic, "partition", p.index, "dirty_ratio", st.Ratio, "overdue", st.Overdue,
			"segments", res.Segments, "bytes_before", res.BytesRead, "bytes_after", res.BytesWritten, "records_removed", res.RecordsRemoved)
	}
	// A pass that read nothing (segments changed meanwhile) leaves the
	// state as it was: wait for the backoff rather than spin on it.
	return res.BytesRead > 0
}

// pick marks busy and returns the cleanable partition no thread is
// cleaning that is most in need of a pass: the one whose oldest
// uncleaned record is longest past its max.compaction.lag.ms, else the
// one with the highest dirty ratio at or above its
// min.cleanable.dirty.ratio.
func (c *cleaner) pick(now time.Time) (*partition, commitlog.CleanState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *partition
	var bestState commitlog.CleanState
	for _, p := range c.parts.snapshot() {
		if c.busy[p] {
			continue
		}
		st := p.log.CleanState(now)
		if !st.Cleanable {
			continue
		}
		if best == nil || st.Overdue > bestState.Overdue || st.Overdue == bestState.Overdue && st.Ratio > bestState.Ratio {
			best, bestState = p, st
		}
	}
	if best != nil {
		c.busy[best] = true
	}
	return best, bestState
}

// ioThrottle keeps the bytes the cleaner threads read and write together
// under a rate, as Kafka's cleaner throttler does: each pass reports its
// I/O as it goes and sleeps while the threads are ahead of the rate.
type ioThrottle struct {
	nsPerByte float64
	mu        sync.Mutex
	due       time.Time // when the bytes reported so far are paid for
}

// throttleSlack is how far ahead of the rate the cleaner may run before
// it sleeps, so that it sleeps in steps of a few milliseconds rather
// than once per batch.
const throttleSlack = 10 * time.Millisecond

func newIOThrottle(bytesPerSecond float64) *ioThrottle {
	return &ioThrottle{nsPerByte: float64(time.Second) / bytesPerSecond}
}

// wait accounts for n bytes of I/O and sleeps while the threads are
// ahead of the rate; it returns ctx's error if ctx ends first.
func (t *ioThrottle) wait(ctx context.Context, n int) error {
	t.mu.Lock()
	now := time.Now()
	if t.due.Before(now) {
		t.due = now // an idle cleaner earns no credit
	}
	t.due = t.due.Add(time.Duration(float64(n) * t.nsPerByte))
	ahead := t.due.Sub(now)
	t.mu.Unlock()
	if ahead <= throttleSlack {
		return nil
	}
	timer := time.NewTimer(ahead)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
