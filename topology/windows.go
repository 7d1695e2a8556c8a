package topology

import (
	"fmt"
	"time"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// Windowed is a key together with the window it was aggregated in.
type Windowed[K any] = serde.Windowed[K]

// TimeWindows defines tumbling and hopping windows (Kafka Streams'
// TimeWindows): windows of a fixed size, a new one starting every advance
// at multiples of the advance since the epoch, each covering its start
// (inclusive) to its end (exclusive). A record falls in every window that
// covers its timestamp. A window closes once stream time reaches its end
// plus the grace period; records that arrive for a closed window are late
// and dropped.
type TimeWindows struct {
	size, advance, grace time.Duration
}

// TumblingWindows returns non-overlapping windows of size, with no grace
// period (Kafka Streams' TimeWindows.ofSizeWithNoGrace).
func TumblingWindows(size time.Duration) TimeWindows {
	return TimeWindows{size: size, advance: size}
}

// HoppingWindows returns windows of size starting every advance, which
// overlap when advance is smaller than size, with no grace period (Kafka
// Streams' TimeWindows.ofSizeWithNoGrace(size).advanceBy(advance)).
func HoppingWindows(size, advance time.Duration) TimeWindows {
	return TimeWindows{size: size, advance: advance}
}

// WithGrace returns the windows with a grace period: how long after a
// window's end (in stream time) records are still added to it. Default: 0
// (Kafka Streams' ofSizeAndGrace).
func (w TimeWindows) WithGrace(grace time.Duration) TimeWindows {
	w.grace = grace
	return w
}

// Size returns the size of the windows.
func (w TimeWindows) Size() time.Duration { return w.size }

// Advance returns how far apart window starts are.
func (w TimeWindows) Advance() time.Duration { return w.advance }

// Grace returns the grace period.
func (w TimeWindows) Grace() time.Duration { return w.grace }

func (w TimeWindows) validate() error {
	switch {
	case w.size.Milliseconds() <= 0:
		return fmt.Errorf("time windows: size %v must be at least 1ms", w.size)
	case w.advance.Milliseconds() <= 0 || w.advance > w.size:
		return fmt.Errorf("time windows: advance %v must be at least 1ms and at most the size %v", w.advance, w.size)
	case w.grace < 0:
		return fmt.Errorf("time windows: grace %v must not be negative", w.grace)
	}
	return nil
}

// starts returns the starts of the windows covering ts, oldest first, as
// Kafka's TimeWindows.windowsFor does: windows starting before the epoch
// are left out.
func (w TimeWindows) starts(ts int64) []int64 {
	size, advance := w.size.Milliseconds(), w.advance.Milliseconds()
	first := max(0, ts-size+advance) / advance * advance
	var out []int64
	for start := first; start <= ts; start += advance {
		out = append(out, start)
	}
	return out
}

// EmitStrategy says when a windowed aggregation forwards results (Kafka
// Streams' EmitStrategy, KIP-825).
type EmitStrategy int

const (
	// OnWindowUpdate forwards the new aggregate of a window after every
	// record added to it. It is the default.
	OnWindowUpdate EmitStrategy = iota
	// OnWindowClose forwards each window's final aggregate once, when the
	// window closes (its end plus the grace period reached by stream time).
	OnWindowClose
)

// TimeWindowedGrouped is a grouped stream cut into time windows, ready for
// aggregation (Kafka Streams' TimeWindowedKStream).
type TimeWindowedGrouped[K, V any] struct {
	g       Grouped[K, V]
	windows TimeWindows
	emit    EmitStrategy
}

// WindowedBy cuts the grouped stream into windows (Kafka Streams'
// KGroupedStream.windowedBy). It is a function, not a method of Grouped,
// because a method leading from Grouped[K, V] to Grouped[Windowed[K], V]
// would make Go instantiate the types without end.
func WindowedBy[K, V any](g Grouped[K, V], w TimeWindows) TimeWindowedGrouped[K, V] {
	return TimeWindowedGrouped[K, V]{g: g, windows: w}
}

// Emit sets when results are forwarded. Default: OnWindowUpdate (Kafka
// Streams' TimeWindowedKStream.emitStrategy).
func (t TimeWindowedGrouped[K, V]) Emit(s EmitStrategy) TimeWindowedGrouped[K, V] {
	t.emit = s
	return t
}

// WindowedTable is the table of a windowed aggregation: the latest
// aggregate per key and window (Kafka Streams' KTable<Windowed<K>, V>). Its
// store is a state.WindowStore[K, state.ValueAndTimestamp[V]] keeping each
// window until stream time passes its end plus grace.
type WindowedTable[K, V any] struct {
	Table[Windowed[K], V]
	windows TimeWindows
}

// Count counts the records per key and window.
func (t TimeWindowedGrouped[K, V]) Count(opts ...Option) WindowedTable[K, int64] {
	return windowedAggregate(t, "KSTREAM-AGGREGATE", serde.Int64(), opts,
		func(_ K, _ V, n int64, _ bool) int64 { return n + 1 })
}

// Reduce combines the values per key and window with fn; the first value of
// a window is kept as is.
func (t TimeWindowedGrouped[K, V]) Reduce(fn func(acc, v V) V, opts ...Option) WindowedTable[K, V] {
	o := collect(opts)
	values := pick(t.g.s.b, o.valueSerde, t.g.s.values)
	return windowedAggregate(t, "KSTREAM-REDUCE", values, opts, func(_ K, v V, acc V, found bool) V {
		if !found {
			return v
		}
		return fn(acc, v)
	})
}

// WindowedAggregate folds the values per key and window into an aggregate
// of type VA, starting each window from initial(). The aggregate's serde is
// serde.Default[VA]() unless WithValueSerde sets it.
func WindowedAggregate[K, V, VA any](t TimeWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, opts ...Option) WindowedTable[K, VA] {
	o := collect(opts)
	values := pick(t.g.s.b, o.valueSerde, serde.Default[VA]())
	return windowedAggregate(t, "KSTREAM-AGGREGATE", values, opts, func(k K, v V, acc VA, found bool) VA {
		if !found {
			acc = initial()
		}
		return fn(k, v, acc)
	})
}

// windowedAggregate repartitions t's stream if needed and adds the
// processor that keeps one aggregate per key and window in a window store.
func windowedAggregate[K, V, VA any](t TimeWindowedGrouped[K, V], prefix string, values serde.Serde[VA], opts []Option,
	next func(K, V, VA, bool) VA) WindowedTable[K, VA] {
	b := t.g.s.b
	o := collect(opts)
	w := t.windows
	storeName := o.storeName
	if storeName == "" {
		storeName = b.newName(prefix + "-STATE-STORE")
	}
	s := t.g.s
	if s.keyChanged {
		s = repartition(s, storeName+"-repartition")
	}
	keys := serde.TimeWindowed(s.keys, w.size)
	out := WindowedTable[K, VA]{windows: w,
		Table: Table[Windowed[K], VA]{b: b, node: o.nodeName(b, prefix), keys: keys, values: values, store: storeName}}
	if err := w.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	sb, err := state.WindowBuilder(storeName, s.keys, state.ValueAndTimestampSerde(values),
		state.WindowSpec{Size: w.size, Retention: w.size + w.grace}, o.storeOpts...)
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	AddProcessor(b, out.node, func() processor.Processor[K, V, Windowed[K], VA] {
		return &windowAggregator[K, V, VA]{windows: w, storeName: storeName, next: next, observed: -1}
	}, s.node)
	b.AddStore(sb, out.node)
	if t.emit == OnWindowClose {
		final := out.SuppressUntilWindowCloses(UnboundedBuffer())
		final.store = storeName
		return final
	}
	return out
}

// windowAggregator adds each record to the windows covering its timestamp
// and forwards each new aggregate, stamped with the largest timestamp of
// the window's records. Records for windows that have closed are dropped.
type windowAggregator[K, V, VA any] struct {
	windows   TimeWindows
	storeName string
	next      func(K, V, VA, bool) VA
	ctx       processor.Context[Windowed[K], VA]
	store     state.WindowStore[K, state.ValueAndTimestamp[VA]]
	observed  int64
}

func (p *windowAggregator[K, V, VA]) Init(ctx processor.Context[Windowed[K], VA]) error {
	p.ctx = ctx
	var err error
	p.store, err = processor.Store[state.WindowStore[K, state.ValueAndTimestamp[VA]]](ctx, p.storeName)
	return err
}

func (p *windowAggregator[K, V, VA]) Process(r processor.Record[K, V]) error {
	ts := r.Timestamp.UnixMilli()
	if ts < 0 {
		recordDropped(p.ctx)
		return nil
	}
	p.observed = max(p.observed, ts)
	closeTime := p.observed - p.windows.grace.Milliseconds()
	size := p.windows.size.Milliseconds()
	for _, start := range p.windows.starts(ts) {
		end := start + size
		if end <= closeTime {
			recordDropped(p.ctx)
			continue
		}
		startTime := time.UnixMilli(start).UTC()
		old, found, err := p.store.Fetch(r.Key, startTime)
		if err != nil {
			return err
		}
		stamp := r.Timestamp
		if found && old.Timestamp.After(stamp) {
			stamp = old.Timestamp
		}
		agg := p.next(r.Key, r.Value, old.Value, found)
		if err := p.store.Put(r.Key, state.ValueAndTimestamp[VA]{Value: agg, Timestamp: stamp}, startTime); err != nil {
			return err
		}
		w := Windowed[K]{Key: r.Key, Window: serde.NewWindow(start, end)}
		if err := p.ctx.Forward(processor.Record[Windowed[K], VA]{Key: w, Value: agg, Timestamp: stamp, Headers: r.Headers}); err != nil {
			return err
		}
	}
	return nil
}

func (p *windowAggregator[K, V, VA]) Close() error { return nil }

// droppedRecorder is implemented by the contexts of tasks that count the
// records windowed operations drop as late (Kafka Streams' dropped-records
// metric).
type droppedRecorder interface{ recordDropped() }

func recordDropped(ctx processor.BaseContext) {
	if d, ok := ctx.(droppedRecorder); ok {
		d.recordDropped()
	}
}
