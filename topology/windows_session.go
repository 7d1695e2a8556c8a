package topology

import (
	"fmt"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// SessionWindows defines session windows (Kafka Streams' SessionWindows):
// a key's session spans its records from the first to the last, both
// inclusive, as long as no two consecutive records are more than the
// inactivity gap apart. A record within the gap of one or more sessions
// merges them into one. A session closes once stream time passes its end
// plus the grace period; a record that would only extend closed sessions
// is late and dropped.
type SessionWindows struct {
	gap, grace time.Duration
}

// SessionWindowsWithGap returns session windows with the inactivity gap
// gap and no grace period (Kafka Streams'
// SessionWindows.ofInactivityGapWithNoGrace).
func SessionWindowsWithGap(gap time.Duration) SessionWindows { return SessionWindows{gap: gap} }

// WithGrace returns the windows with a grace period. Default: 0 (Kafka
// Streams' ofInactivityGapAndGrace).
func (w SessionWindows) WithGrace(grace time.Duration) SessionWindows {
	w.grace = grace
	return w
}

// Gap returns the inactivity gap.
func (w SessionWindows) Gap() time.Duration { return w.gap }

// Grace returns the grace period.
func (w SessionWindows) Grace() time.Duration { return w.grace }

func (w SessionWindows) validate() error {
	switch {
	case w.gap.Milliseconds() <= 0:
		return fmt.Errorf("session windows: inactivity gap %v must be at least 1ms", w.gap)
	case w.grace < 0:
		return fmt.Errorf("session windows: grace %v must not be negative", w.grace)
	}
	return nil
}

// SessionWindowedGrouped is a grouped stream cut into session windows,
// ready for aggregation (Kafka Streams' SessionWindowedKStream).
type SessionWindowedGrouped[K, V any] struct {
	g         Grouped[K, V]
	windows   SessionWindows
	emit      EmitStrategy
	retention time.Duration
}

// SessionWindowedBy cuts the grouped stream into session windows (Kafka
// Streams' KGroupedStream.windowedBy(SessionWindows)).
func SessionWindowedBy[K, V any](g Grouped[K, V], w SessionWindows) SessionWindowedGrouped[K, V] {
	return SessionWindowedGrouped[K, V]{g: g, windows: w}
}

// Emit sets when results are forwarded. Default: OnWindowUpdate.
func (t SessionWindowedGrouped[K, V]) Emit(s EmitStrategy) SessionWindowedGrouped[K, V] {
	t.emit = s
	return t
}

// WithRetention sets how long the session store keeps sessions, counted
// back from the latest session end; it must be at least the gap plus the
// grace period. Default: the gap plus the grace period.
func (t SessionWindowedGrouped[K, V]) WithRetention(d time.Duration) SessionWindowedGrouped[K, V] {
	t.retention = d
	return t
}

// Count counts the records per session, skipping records with a null key
// or value.
func (t SessionWindowedGrouped[K, V]) Count(opts ...MaterializeOpt) WindowedTable[K, int64] {
	return sessionAggregate(t, "KSTREAM-AGGREGATE", serde.Int64(), opts,
		func(_ K, _ V, n int64, _ bool) int64 { return n + 1 },
		func(_ K, acc int64, _ bool, n int64) int64 { return acc + n })
}

// Reduce combines the values per session with fn, which also combines the
// aggregates of merged sessions.
func (t SessionWindowedGrouped[K, V]) Reduce(fn func(acc, v V) V, opts ...MaterializeOpt) WindowedTable[K, V] {
	combine := func(_ K, acc V, found bool, v V) V {
		if !found {
			return v
		}
		return fn(acc, v)
	}
	return sessionAggregate(t, "KSTREAM-REDUCE", t.g.s.values, opts,
		func(k K, v V, acc V, found bool) V { return combine(k, acc, found, v) }, combine)
}

// SessionAggregate folds the values per session into an aggregate of type
// VA, starting from initial(); when a record merges sessions, merger
// combines their aggregates, starting from initial() too (Kafka Streams'
// SessionWindowedKStream.aggregate). The aggregate is stored with
// serde.Default[VA](); SessionAggregateWith takes a serde.
func SessionAggregate[K, V, VA any](t SessionWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, merger func(k K, a, b VA) VA, opts ...MaterializeOpt) WindowedTable[K, VA] {
	return SessionAggregateWith(t, initial, fn, merger, serde.Default[VA](), opts...)
}

// SessionAggregateWith is SessionAggregate with the aggregate stored with
// values.
func SessionAggregateWith[K, V, VA any](t SessionWindowedGrouped[K, V], initial func() VA, fn func(K, V, VA) VA, merger func(k K, a, b VA) VA, values serde.Serde[VA], opts ...MaterializeOpt) WindowedTable[K, VA] {
	start := func(acc VA, found bool) VA {
		if !found {
			return initial()
		}
		return acc
	}
	return sessionAggregate(t, "KSTREAM-AGGREGATE", values, opts,
		func(k K, v V, acc VA, found bool) VA { return fn(k, v, start(acc, found)) },
		func(k K, acc VA, found bool, v VA) VA { return merger(k, start(acc, found), v) })
}

// sessionStoreGetter reads a session table's value from its session store.
func sessionStoreGetter[K, V any](name string) *getter {
	return &getter{stores: []string{name}, open: func(p processor.StoreProvider) (func(any) (any, error), error) {
		s, err := processor.Store[state.SessionStore[K, V]](p, name)
		if err != nil {
			return nil, err
		}
		return func(key any) (any, error) {
			w := engine.As[Windowed[K]](key)
			v, ok, err := s.FetchSession(w.Key, w.Window.Start, w.Window.End)
			if err != nil || !ok {
				return nil, err
			}
			return v, nil
		}, nil
	}}
}

// sessionAggregate adds the processor keeping one aggregate per session:
// add folds a record into an aggregate, merge folds a merged session's
// aggregate into another (found is false for the first).
func sessionAggregate[K, V, VA any](t SessionWindowedGrouped[K, V], prefix string, values serde.Serde[VA], opts []MaterializeOpt,
	add func(K, V, VA, bool) VA, merge func(k K, acc VA, found bool, v VA) VA) WindowedTable[K, VA] {
	b := t.g.s.b
	o := collect(opts)
	w := t.windows
	storeName := o.storeNameOr(b, prefix)
	s := repartitionIfNeeded(t.g.s, t.g.name, storeName)
	out := WindowedTable[K, VA]{grace: w.grace, inclusiveEnd: true, Table: Table[Windowed[K], VA]{b: b, node: o.nodeName(b, prefix),
		keys: serde.SessionWindowed(s.keys), values: values, store: storeName, get: sessionStoreGetter[K, VA](storeName)}}
	if err := w.validate(); err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	retention := t.retention
	if retention == 0 {
		retention = w.gap + w.grace
	} else if retention < w.gap+w.grace {
		b.fail(fmt.Errorf("%s: retention %v is shorter than the gap plus grace %v", out.node, retention, w.gap+w.grace))
		return out
	}
	sb, err := state.SessionBuilder(storeName, s.keys, values, retention, o.storeOpts...)
	if err != nil {
		b.fail(fmt.Errorf("%s: %w", out.node, err))
		return out
	}
	gap, grace := w.gap, w.grace.Milliseconds()
	addNode[K, V, Windowed[K], change[VA]](b, out.node, func() stepFunc {
		var store state.SessionStore[K, VA]
		observed := int64(-1)
		return func(ctx engine.NodeContext, r processor.Record[any, any]) error {
			if store == nil {
				var err error
				if store, err = processor.Store[state.SessionStore[K, VA]](ctx, storeName); err != nil {
					return err
				}
			}
			ts := r.Timestamp.UnixMilli()
			if isNull(r.Key) || isNull(r.Value) || ts < 0 {
				recordDropped(ctx)
				return nil
			}
			key := engine.As[K](r.Key)
			observed = max(observed, ts)
			closeTime := observed - grace
			var merged []state.KeyValue[Windowed[K], VA]
			var agg VA
			found := false
			mergedStart, mergedEnd := ts, ts
			for kv, err := range store.FindSessions(key, r.Timestamp.Add(-gap), r.Timestamp.Add(gap)) {
				if err != nil {
					return err
				}
				merged = append(merged, kv)
				agg = merge(key, agg, found, kv.Value)
				found = true
				mergedStart = min(mergedStart, kv.Key.Window.StartMs())
				mergedEnd = max(mergedEnd, kv.Key.Window.EndMs())
			}
			// Kafka's rule for sessions, whose end is inclusive: late when
			// the merged session ends before stream time minus grace.
			if mergedEnd < closeTime {
				recordDropped(ctx)
				return nil
			}
			if mergedStart != ts || mergedEnd != ts {
				for _, kv := range merged {
					if err := store.Remove(kv.Key); err != nil {
						return err
					}
					del := processor.Record[any, any]{Key: kv.Key, Value: change[VA]{Old: kv.Value}, Timestamp: kv.Key.Window.End, Headers: r.Headers}
					if err := ctx.Forward(del, ""); err != nil {
						return err
					}
				}
			}
			agg = add(key, engine.As[V](r.Value), agg, found)
			session := Windowed[K]{Key: key, Window: serde.NewWindow(mergedStart, mergedEnd)}
			if err := store.Put(session, agg); err != nil {
				return err
			}
			return ctx.Forward(processor.Record[any, any]{Key: session, Value: change[VA]{New: agg}, Timestamp: session.Window.End, Headers: r.Headers}, "")
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
