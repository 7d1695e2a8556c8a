package topology

import (
	"fmt"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// SlidingWindows defines sliding windows (Kafka Streams' SlidingWindows,
// KIP-450): windows of a fixed time difference, both ends inclusive, that
// exist where records are. Each record has a window ending at its
// timestamp and, if later records fall in it, one starting just after it;
// an aggregate is kept for every distinct set of records that lie within
// the time difference of each other. Records before the time difference
// (since the epoch) share the window starting at 0. A window closes once
// stream time passes its end plus the grace period.
type SlidingWindows struct {
	diff, grace time.Duration
}

// SlidingWindowsOf returns sliding windows of the time difference diff
// with no grace period (Kafka Streams'
// SlidingWindows.ofTimeDifferenceWithNoGrace).
func SlidingWindowsOf(diff time.Duration) SlidingWindows { return SlidingWindows{diff: diff} }

// WithGrace returns the windows with a grace period. Default: 0 (Kafka
// Streams' ofTimeDifferenceAndGrace).
func (w SlidingWindows) WithGrace(grace time.Duration) SlidingWindows {
	w.grace = grace
	return w
}

// TimeDifference returns the windows' time difference, their size.
func (w SlidingWindows) TimeDifference() time.Duration { return w.diff }

func (w SlidingWindows) validate() error {
	switch {
	case w.diff.Milliseconds() <= 0:
		return fmt.Errorf("sliding windows: time difference %v must be at least 1ms", w.diff)
	case w.grace < 0:
		return fmt.Errorf("sliding windows: grace %v must not be negative", w.grace)
	}
	return nil
}

// SlidingWindowedGrouped is a grouped stream cut into sliding windows,
// ready for aggregation (Kafka Streams' TimeWindowedKStream over
// SlidingWindows).
type SlidingWindowedGrouped[K, V any] struct {
	g         Grouped[K, V]
	windows   SlidingWindows
	emit      EmitStrategy
	retention time.Duration
}

// SlidingWindowedBy cuts the grouped stream into sliding windows (Kafka
// Streams' KGroupedStream.windowedBy(SlidingWindows)).
func SlidingWindowedBy[K, V any](g Grouped[K, V], w SlidingWindows) SlidingWindowedGrouped[K, V] {
	return SlidingWindowedGrouped[K, V]{g: g, windows: w}
}

// Emit sets when results are forwarded. Default: OnWindowUpdate.
func (t SlidingWindowedGrouped[K, V]) Emit(s EmitStrategy) SlidingWindowedGrouped[K, V] {
	t.emit = s
	return t
}

// WithRetention sets how long the window store keeps windows, counted back
// from the latest window start; it must be at least twice the time
// difference plus the grace period, its default (as in Kafka Streams).
func (t SlidingWindowedGrouped[K, V]) WithRetention(d time.Duration) SlidingWindowedGrouped[K, V] {
	t.retention = d
	return t
}

// Count counts the records per key and sliding window, skipping records
// with a null key or value.
func (t SlidingWindowedGrouped[K, V]) Count(opts ...MaterializeOpt) WindowedTable[K, int64] {
	return slidingAggregate(t, "KSTREAM-AGGREGATE", serde.Int64(), opts,
		func(_ K, _ V, n int64, _ bool) int64 { return n + 1 })
}

// Reduce combines the values per key and sliding window with fn.
func (t SlidingWindowedGrouped[K, V]) Reduce(fn func(acc, v V) V, opts ...MaterializeOpt) WindowedTable[K, V] {
	return slidingAggregate(t, "KSTREAM-REDUCE", t.g.s.values, opts, func(_ K, v V, acc V, found bool) V {
		if !found {
			return v
		}
		return fn(acc, v)
	})
}

// SlidingAggregate folds the values per key and sliding window into an
// aggregate of type VA, starting each window from initial(). The aggregate
// is stored with serde.Default[VA](); SlidingAggregateWith takes a serde.
func SlidingAggregate[K, V, VA any](t SlidingWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, opts ...MaterializeOpt) WindowedTable[K, VA] {
	return SlidingAggregateWith(t, initial, fn, serde.Default[VA](), opts...)
}

// SlidingAggregateWith is SlidingAggregate with the aggregate stored with
// values.
func SlidingAggregateWith[K, V, VA any](t SlidingWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, values serde.Serde[VA], opts ...MaterializeOpt) WindowedTable[K, VA] {
	return slidingAggregate(t, "KSTREAM-AGGREGATE", values, opts, func(k K, v V, acc VA, found bool) VA {
		if !found {
			acc = initial()
		}
		return fn(k, v, acc)
	})
}

func slidingAggregate[K, V, VA any](t SlidingWindowedGrouped[K, V], prefix string, values serde.Serde[VA], opts []MaterializeOpt,
	next func(K, V, VA, bool) VA) WindowedTable[K, VA] {
	b := t.g.s.b
	o := collect(opts)
	w := t.windows
	storeName := o.storeNameOr(b, prefix)
	s := repartitionIfNeeded(t.g.s, t.g.name, storeName)
	out := WindowedTable[K, VA]{grace: w.grace, inclusiveEnd: true, Table: Table[Windowed[K], VA]{b: b, node: o.nodeName(b, prefix),
		keys: serde.TimeWindowed(s.keys, w.diff), values: values, store: storeName, get: windowStoreGetter[K, VA](storeName)}}
	if err := w.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	retention := t.retention
	if retention == 0 {
		retention = 2*w.diff + w.grace
	} else if retention < 2*w.diff+w.grace {
		b.fail(fmt.Errorf("%s: retention %v is shorter than twice the time difference plus grace %v", out.node, retention, 2*w.diff+w.grace))
		return out
	}
	sb, err := state.WindowBuilder(storeName, s.keys, state.ValueAndTimestampSerde(values),
		state.WindowSpec{Size: w.diff, Retention: retention}, o.storeOpts...)
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	addNode[K, V, Windowed[K], change[VA]](b, out.node, func() stepFunc {
		p := &slidingAggregator[K, V, VA]{storeName: storeName, diff: w.diff.Milliseconds(), grace: w.grace.Milliseconds(),
			next: next, observed: -1}
		return p.process
	}, s.node)
	b.AddStore(sb, out.node)
	if t.emit == OnWindowClose {
		final := out.SuppressUntilWindowCloses(UnboundedBuffer())
		final.store, final.get = out.store, out.get
		return final
	}
	return out
}

// slidingAggregator follows Kafka's KStreamSlidingWindowAggregate: for
// each record it updates the existing windows that hold it and creates its
// left window (ending at it), its right window (starting just after it)
// when later records fall in that, and the right window of the record
// before it when the new record falls in that.
type slidingAggregator[K, V, VA any] struct {
	storeName   string
	diff, grace int64
	next        func(K, V, VA, bool) VA
	store       state.WindowStore[K, state.ValueAndTimestamp[VA]]
	observed    int64

	// Per record.
	ctx       engine.NodeContext
	r         processor.Record[any, any]
	key       K
	value     V
	ts        int64
	closeTime int64
}

// slidingWindow is a stored window: its start and its aggregate with the
// timestamp of its latest record.
type slidingWindow[VA any] struct {
	start int64
	agg   state.ValueAndTimestamp[VA]
}

func (p *slidingAggregator[K, V, VA]) process(ctx engine.NodeContext, r processor.Record[any, any]) error {
	if p.store == nil {
		var err error
		if p.store, err = processor.Store[state.WindowStore[K, state.ValueAndTimestamp[VA]]](ctx, p.storeName); err != nil {
			return err
		}
	}
	ts := r.Timestamp.UnixMilli()
	if isNull(r.Key) || isNull(r.Value) || ts < 0 {
		recordDropped(ctx)
		return nil
	}
	p.observed = max(p.observed, ts)
	p.ctx, p.r, p.key, p.value, p.ts = ctx, r, engine.As[K](r.Key), engine.As[V](r.Value), ts
	p.closeTime = p.observed - p.grace
	if ts+1+p.diff <= p.closeTime {
		// Even the record's right window has closed.
		recordDropped(ctx)
		return nil
	}
	if ts < p.diff {
		return p.processEarly()
	}
	return p.processInOrder()
}

// windows returns the key's stored windows starting from from to to.
func (p *slidingAggregator[K, V, VA]) windows(from, to int64) ([]slidingWindow[VA], error) {
	var out []slidingWindow[VA]
	for kv, err := range p.store.FetchRange(p.key, time.UnixMilli(from), time.UnixMilli(to)) {
		if err != nil {
			return nil, err
		}
		out = append(out, slidingWindow[VA]{start: kv.Key.Window.StartMs(), agg: kv.Value})
	}
	return out, nil
}

func (p *slidingAggregator[K, V, VA]) processInOrder() error {
	ts := p.ts
	existing, err := p.windows(max(0, ts-2*p.diff), ts+1)
	if err != nil {
		return err
	}
	starts := make(map[int64]bool, len(existing))
	var leftAgg, rightAgg *state.ValueAndTimestamp[VA]
	var leftCreated, rightCreated bool
	prev, hasPrev := int64(0), false
	for _, win := range existing {
		starts[win.start] = true
		end, maxTs := win.start+p.diff, win.agg.Timestamp.UnixMilli()
		switch {
		case end < ts:
			leftAgg, prev, hasPrev = &win.agg, maxTs, true
		case end == ts:
			leftCreated = true
			if maxTs < ts {
				prev, hasPrev = maxTs, true
			}
			if err := p.update(win.start, win.agg.Value, maxTs, true, true); err != nil {
				return err
			}
		case win.start <= ts:
			rightAgg = &win.agg
			if err := p.update(win.start, win.agg.Value, maxTs, true, true); err != nil {
				return err
			}
		case win.start == ts+1:
			rightCreated = true
		default:
			return fmt.Errorf("sliding windows: unexpected window at %d for a record at %d", win.start, ts)
		}
	}
	if hasPrev && !starts[prev+1] && prev+1+p.diff >= ts {
		// The previous record's right window now holds this record.
		if err := p.update(prev+1, *new(VA), ts, false, false); err != nil {
			return err
		}
	}
	if !leftCreated {
		var acc VA
		found := hasPrev && ts-p.diff <= prev
		if found {
			acc = leftAgg.Value
		}
		if err := p.update(ts-p.diff, acc, ts, found, false); err != nil {
			return err
		}
	}
	if !rightCreated && rightAgg != nil && rightAgg.Timestamp.UnixMilli() > ts {
		return p.createRight(*rightAgg)
	}
	return nil
}

// processEarly handles a record before the time difference: such records
// share the window [0, diff], since windows do not start before the epoch.
func (p *slidingAggregator[K, V, VA]) processEarly() error {
	ts := p.ts
	existing, err := p.windows(0, ts+1)
	if err != nil {
		return err
	}
	starts := make(map[int64]bool, len(existing))
	var combined, rightAgg *state.ValueAndTimestamp[VA]
	var rightCreated bool
	prev, hasPrev := int64(0), false
	for _, win := range existing {
		starts[win.start] = true
		maxTs := win.agg.Timestamp.UnixMilli()
		switch {
		case win.start == 0:
			combined = &win.agg
			if maxTs < ts {
				prev, hasPrev = maxTs, true
			}
		case win.start <= ts:
			rightAgg = &win.agg
			if err := p.update(win.start, win.agg.Value, maxTs, true, true); err != nil {
				return err
			}
		case win.start == ts+1:
			rightCreated = true
		default:
			return fmt.Errorf("sliding windows: unexpected window at %d for an early record at %d", win.start, ts)
		}
	}
	// Without a right window found, the combined window holds only records
	// after this one if its latest record is.
	if rightAgg == nil && combined != nil && combined.Timestamp.UnixMilli() > ts {
		rightAgg = combined
	}
	if !rightCreated && rightAgg != nil && rightAgg.Timestamp.UnixMilli() > ts {
		if err := p.createRight(*rightAgg); err != nil {
			return err
		}
	}
	if hasPrev && !starts[prev+1] {
		if err := p.update(prev+1, *new(VA), ts, false, false); err != nil {
			return err
		}
	}
	if combined == nil {
		return p.update(0, *new(VA), ts, false, false)
	}
	return p.update(0, combined.Value, combined.Timestamp.UnixMilli(), true, true)
}

// update adds the record to the window starting at start, whose aggregate
// so far is acc (found false for a fresh aggregate) with latest record
// time accTs, stores and forwards the result; existed says whether the
// window was stored. A window that has closed is left alone and the record
// counted as dropped for it.
func (p *slidingAggregator[K, V, VA]) update(start int64, acc VA, accTs int64, found, existed bool) error {
	end := start + p.diff
	if end < p.closeTime {
		recordDropped(p.ctx)
		return nil
	}
	agg := p.next(p.key, p.value, acc, found)
	stamp := p.ts
	if found {
		stamp = max(stamp, accTs)
	}
	if err := p.store.Put(p.key, state.ValueAndTimestamp[VA]{Value: agg, Timestamp: time.UnixMilli(stamp).UTC()}, time.UnixMilli(start)); err != nil {
		return err
	}
	c := change[VA]{New: agg}
	if existed {
		c.Old = acc
	}
	return p.forward(start, c, stamp)
}

// createRight creates the record's right window with the aggregate of the
// later records, rightAgg.
func (p *slidingAggregator[K, V, VA]) createRight(rightAgg state.ValueAndTimestamp[VA]) error {
	start := p.ts + 1
	if err := p.store.Put(p.key, rightAgg, time.UnixMilli(start)); err != nil {
		return err
	}
	return p.forward(start, change[VA]{New: rightAgg.Value}, rightAgg.Timestamp.UnixMilli())
}

func (p *slidingAggregator[K, V, VA]) forward(start int64, c change[VA], stamp int64) error {
	w := Windowed[K]{Key: p.key, Window: serde.NewWindow(start, start+p.diff)}
	return p.ctx.Forward(processor.Record[any, any]{Key: w, Value: c, Timestamp: time.UnixMilli(stamp).UTC(), Headers: p.r.Headers}, "")
}
