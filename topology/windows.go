package topology

import (
	"fmt"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
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
	g         Grouped[K, V]
	windows   TimeWindows
	emit      EmitStrategy
	retention time.Duration
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

// WithRetention sets how long the aggregation's window store keeps
// windows, counted back from the latest window start; it must be at least
// the window size plus the grace period. Default: the window size plus the
// grace period (Kafka Streams' Materialized.withRetention).
func (t TimeWindowedGrouped[K, V]) WithRetention(d time.Duration) TimeWindowedGrouped[K, V] {
	t.retention = d
	return t
}

// WindowedTable is the table of a windowed aggregation: the latest
// aggregate per key and window (Kafka Streams' KTable<Windowed<K>, V>). The
// store of a time-windowed aggregation is a
// state.WindowStore[K, state.ValueAndTimestamp[V]], that of a session
// aggregation a state.SessionStore[K, V].
type WindowedTable[K, V any] struct {
	Table[Windowed[K], V]
	grace time.Duration
	// inclusiveEnd marks session and sliding windows, whose end is
	// inclusive.
	inclusiveEnd bool
}

// Count counts the records per key and window, skipping records with a
// null key or value as Kafka Streams does.
func (t TimeWindowedGrouped[K, V]) Count(opts ...MaterializeOpt) WindowedTable[K, int64] {
	return windowedAggregate(t, "KSTREAM-AGGREGATE", serde.Int64(), opts,
		func(_ K, _ V, n int64, _ bool) int64 { return n + 1 })
}

// Reduce combines the values per key and window with fn; the first value of
// a window is kept as is.
func (t TimeWindowedGrouped[K, V]) Reduce(fn func(acc, v V) V, opts ...MaterializeOpt) WindowedTable[K, V] {
	return windowedAggregate(t, "KSTREAM-REDUCE", t.g.s.values, opts, func(_ K, v V, acc V, found bool) V {
		if !found {
			return v
		}
		return fn(acc, v)
	})
}

// WindowedAggregate folds the values per key and window into an aggregate
// of type VA, starting each window from initial(). The aggregate is stored
// with serde.Default[VA](); WindowedAggregateWith takes a serde.
func WindowedAggregate[K, V, VA any](t TimeWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, opts ...MaterializeOpt) WindowedTable[K, VA] {
	return WindowedAggregateWith(t, initial, fn, serde.Default[VA](), opts...)
}

// WindowedAggregateWith is WindowedAggregate with the aggregate stored with
// values.
func WindowedAggregateWith[K, V, VA any](t TimeWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, values serde.Serde[VA], opts ...MaterializeOpt) WindowedTable[K, VA] {
	return windowedAggregate(t, "KSTREAM-AGGREGATE", values, opts, func(k K, v V, acc VA, found bool) VA {
		if !found {
			acc = initial()
		}
		return fn(k, v, acc)
	})
}

// windowStoreGetter reads a windowed table's value from its window store.
func windowStoreGetter[K, V any](name string) *getter {
	return &getter{stores: []string{name}, open: func(p processor.StoreProvider) (func(any) (any, error), error) {
		s, err := processor.Store[state.WindowStore[K, state.ValueAndTimestamp[V]]](p, name)
		if err != nil {
			return nil, err
		}
		return func(key any) (any, error) {
			w := engine.As[Windowed[K]](key)
			v, ok, err := s.Fetch(w.Key, w.Window.Start)
			if err != nil || !ok {
				return nil, err
			}
			return v.Value, nil
		}, nil
	}}
}

// windowedAggregate repartitions t's stream if needed and adds the
// processor that keeps one aggregate per key and window in a window store.
func windowedAggregate[K, V, VA any](t TimeWindowedGrouped[K, V], prefix string, values serde.Serde[VA], opts []MaterializeOpt,
	next func(K, V, VA, bool) VA) WindowedTable[K, VA] {
	b := t.g.s.b
	o := collect(opts)
	w := t.windows
	storeName := o.storeNameOr(b, prefix)
	s := repartitionIfNeeded(t.g.s, t.g.name, storeName)
	out := WindowedTable[K, VA]{grace: w.grace, Table: Table[Windowed[K], VA]{b: b, node: o.nodeName(b, prefix),
		keys: serde.TimeWindowed(s.keys, w.size), values: values, store: storeName, get: windowStoreGetter[K, VA](storeName)}}
	if err := w.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	retention := t.retention
	if retention == 0 {
		retention = w.size + w.grace
	} else if retention < w.size+w.grace {
		b.fail(fmt.Errorf("%s: retention %v is shorter than the window size plus grace %v", out.node, retention, w.size+w.grace))
		return out
	}
	sb, err := state.WindowBuilder(storeName, s.keys, state.ValueAndTimestampSerde(values),
		state.WindowSpec{Size: w.size, Retention: retention}, o.storeOpts...)
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	size, grace := w.size.Milliseconds(), w.grace.Milliseconds()
	addNode[K, V, Windowed[K], change[VA]](b, out.node, func() stepFunc {
		var store state.WindowStore[K, state.ValueAndTimestamp[VA]]
		observed := int64(-1)
		return func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			if store == nil {
				var err error
				if store, err = processor.Store[state.WindowStore[K, state.ValueAndTimestamp[VA]]](ctx, storeName); err != nil {
					return err
				}
			}
			ts := r.Timestamp.UnixMilli()
			if isNull(r.Key) || isNull(r.Value) || ts < 0 {
				recordDropped(ctx)
				return nil
			}
			key, value := engine.As[K](r.Key), engine.As[V](r.Value)
			observed = max(observed, ts)
			closeTime := observed - grace
			for _, start := range w.starts(ts) {
				end := start + size
				if end <= closeTime {
					recordDropped(ctx)
					continue
				}
				startTime := time.UnixMilli(start).UTC()
				old, found, err := store.Fetch(key, startTime)
				if err != nil {
					return err
				}
				stamp := r.Timestamp
				if found && old.Timestamp.After(stamp) {
					stamp = old.Timestamp
				}
				agg := next(key, value, old.Value, found)
				if err := store.Put(key, state.ValueAndTimestamp[VA]{Value: agg, Timestamp: stamp}, startTime); err != nil {
					return err
				}
				c := change[VA]{New: agg}
				if found {
					c.Old = old.Value
				}
				win := Windowed[K]{Key: key, Window: serde.NewWindow(start, end)}
				if err := ctx.Forward(processor.Record[any, any]{Key: win, Value: c, Timestamp: stamp, Headers: r.Headers}, ""); err != nil {
					return err
				}
			}
			return nil
		}
	}, s.node)
	b.AddStore(sb, out.node)
	if t.emit == OnWindowClose {
		final := out.SuppressUntilWindowCloses(UnboundedBuffer())
		final.store, final.get = out.store, out.get
		return final
	}
	return out
}

// recordDropped counts a record a windowed operation dropped, in the
// task's dropped-records count (Kafka Streams' dropped-records metric).
func recordDropped(ctx processor.BaseContext) {
	if d, ok := ctx.(engine.DropRecorder); ok {
		d.RecordDropped()
	}
}
