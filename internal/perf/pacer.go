package perf

import (
	"context"
	"time"
)

// pacer spaces records evenly at a target rate. Record i is due at
// start + i/rate; a pacer that falls behind does not try to catch up in a
// burst beyond what the schedule allows, and callers that timestamp records
// with their due time (not the time they were actually sent) measure the
// delay a slow system imposes instead of hiding it (coordinated omission).
type pacer struct {
	start time.Time
	rate  float64 // records per second; 0 means unpaced
	timer *time.Timer
}

// slack is how far ahead of schedule a pacer may run before it sleeps:
// sleeping for every record at high rates would cost more than it shapes.
const slack = time.Millisecond

func newPacer(start time.Time, rate float64) *pacer {
	return &pacer{start: start, rate: rate}
}

// due reports when record i should be sent.
func (p *pacer) due(i int64) time.Time {
	if p.rate == 0 {
		return time.Now()
	}
	return p.start.Add(time.Duration(float64(i) / p.rate * float64(time.Second)))
}

// wait blocks until record i is due, or ctx is done, and returns its due time.
func (p *pacer) wait(ctx context.Context, i int64) (time.Time, error) {
	due := p.due(i)
	ahead := time.Until(due)
	if ahead <= slack {
		return due, ctx.Err()
	}
	if p.timer == nil {
		p.timer = time.NewTimer(ahead)
	} else {
		p.timer.Reset(ahead)
	}
	select {
	case <-p.timer.C:
		return due, nil
	case <-ctx.Done():
		p.timer.Stop()
		return due, ctx.Err()
	}
}
