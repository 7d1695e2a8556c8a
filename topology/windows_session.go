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
	return sessionAggregate(t, "KSTREAM-AGGREGATE", serde.Int64(), opts, countRecord[K, V],
		func(_ K, n, acc int64, _ bool) int64 { return acc + n })
}

// Reduce combines the values per session with fn, which also combines the
// aggregates of merged sessions.
func (t SessionWindowedGrouped[K, V]) Reduce(fn func(acc, v V) V, opts ...MaterializeOpt) WindowedTable[K, V] {
	return sessionAggregate(t, "KSTREAM-REDUCE", t.g.s.values, opts, reduceRecord[K](fn), reduceRecord[K](fn))
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
	return sessionAggregate(t, "KSTREAM-AGGREGATE", values, opts, aggregateRecord(initial, fn),
		aggregateRecord(initial, func(k K, v, acc VA) VA { return merger(k, acc, v) }))
}

// sessionStoreGetter reads a session table's value from its session store.
func sessionStoreGetter[K, V any](name string) *getter {
	return &getter{stores: []string{name}, open: func(p processor.StoreProvider) (lookup, error) {
		s, err := processor.Store[state.SessionStore[K, V]](p, name)
		if err != nil {
			return nil, err
		}
		return func(key any) (any, int64, error) {
			w := engine.As[Windowed[K]](key)
			v, ok, err := s.FetchSession(w.Key, w.Window.Start, w.Window.End)
			if err != nil || !ok {
				return nil, noTimestamp, err
			}
			// A session's timestamp is its end, as Kafka Streams stamps it.
			return v, w.Window.EndMs(), nil
		}, nil
	}}
}

// sessionAggregate adds the processor keeping one aggregate per session in
// a session store: add folds a record into an aggregate, merge folds a
// merged session's aggregate into another (found is false for the first).
func sessionAggregate[K, V, VA any](t SessionWindowedGrouped[K, V], prefix string, values serde.Serde[VA], opts []MaterializeOpt,
	add func(K, V, VA, bool) VA, merge func(k K, v, acc VA, found bool) VA) WindowedTable[K, VA] {
	w := t.windows
	gap := w.gap
	return addWindowedAggregate(windowedAggregation[K, V, VA]{g: t.g, prefix: prefix, values: values, opts: opts, emit: t.emit,
		invalid: w.validate(), grace: w.grace, inclusiveEnd: true,
		retention: t.retention, minRetention: w.gap + w.grace, minRetentionIs: "the gap plus grace",
		windowKeys: serde.SessionWindowed[K],
		getter:     sessionStoreGetter[K, VA],
		store: func(name string, keys serde.Serde[K], retention time.Duration, opts []state.Opt) (state.Builder, error) {
			return state.SessionBuilder(name, keys, values, retention, opts...)
		},
		newStep: func(storeName string) stepFunc {
			return windowedStep(storeName, w.grace, func(ctx engine.NodeContext, r processor.Record[any, any],
				store state.SessionStore[K, VA], ts, closeTime int64) error {
				key := engine.As[K](r.Key)
				var merged []state.KeyValue[Windowed[K], VA]
				var agg VA
				found := false
				mergedStart, mergedEnd := ts, ts
				for kv, err := range store.FindSessions(key, r.Timestamp.Add(-gap), r.Timestamp.Add(gap)) {
					if err != nil {
						return err
					}
					merged = append(merged, kv)
					agg = merge(key, kv.Value, agg, found)
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
			})
		},
	})
}
