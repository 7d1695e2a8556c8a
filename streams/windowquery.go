package streams

import (
	"cmp"
	"fmt"
	"iter"
	"math"
	"slices"
	"time"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

// ReadOnlyWindowStore is the read-only view of a window store that
// WindowStore returns (Kafka Streams' ReadOnlyWindowStore). Windows are
// named by their start. Iterators yield a non-nil error at most once, as
// their last element.
type ReadOnlyWindowStore[K, V any] interface {
	state.Store
	// FetchWindow returns the value of key in the window starting at
	// start (ReadOnlyWindowStore.fetch(key, time)).
	FetchWindow(key K, start time.Time) (V, bool, error)
	// Fetch iterates over the windows of key that start from timeFrom to
	// timeTo, both inclusive, oldest first: window start, value
	// (ReadOnlyWindowStore.fetch(key, timeFrom, timeTo)).
	Fetch(key K, timeFrom, timeTo time.Time) iter.Seq2[state.KeyValue[time.Time, V], error]
	// FetchAll iterates over the windows of every key that start from
	// timeFrom to timeTo, both inclusive, partition by partition
	// (ReadOnlyWindowStore.fetchAll).
	FetchAll(timeFrom, timeTo time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
	// All iterates over every window, partition by partition.
	All() iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
}

// ReadOnlySessionStore is the read-only view of a session store that
// SessionStore returns (Kafka Streams' ReadOnlySessionStore). Iterators
// yield a non-nil error at most once, as their last element.
type ReadOnlySessionStore[K, V any] interface {
	state.Store
	// Fetch iterates over every session of key, by end, then start
	// (ReadOnlySessionStore.fetch(key)).
	Fetch(key K) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
	// FindSessions iterates over the sessions of key that end at or after
	// earliestEnd and start at or before latestStart, by end, then start.
	FindSessions(key K, earliestEnd, latestStart time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
	// FetchSession returns the value of key's session from start to end.
	FetchSession(key K, start, end time.Time) (V, bool, error)
	// All iterates over every session, partition by partition.
	All() iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
}

// ReadOnlyVersionedStore is the read-only view of a versioned key-value
// store that VersionedKeyValueStore returns (the reads of Kafka Streams'
// VersionedKeyValueStore, IQv2's VersionedKeyQuery).
type ReadOnlyVersionedStore[K, V any] interface {
	state.Store
	// Get returns the latest version of key, unless it is a delete.
	Get(key K) (state.VersionedRecord[V], bool, error)
	// GetAsOf returns the version of key valid at asOf.
	GetAsOf(key K, asOf time.Time) (state.VersionedRecord[V], bool, error)
}

// windowReader is what a ReadOnlyWindowStore reads of one partition's
// typed window store.
type windowReader[K, V any] interface {
	Fetch(key K, start time.Time) (V, bool, error)
	FetchRange(key K, from, to time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
	FetchAll(from, to time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
	All() iter.Seq2[state.KeyValue[serde.Windowed[K], V], error]
}

// WindowStore returns read-only, typed access to a window store over every
// task of this instance (Kafka Streams' QueryableStoreTypes.windowStore).
// K and V must be the store's key and value types; on the store of a
// windowed aggregation, which keeps each aggregate with its timestamp
// (state.ValueAndTimestamp[V]), V may be the aggregate's type, to read
// the aggregates alone, or state.ValueAndTimestamp[V], to read them with
// their timestamps (QueryableStoreTypes.timestampedWindowStore).
//
// It gives the guarantees of KeyValueStore: FetchWindow and Fetch read
// the partition of the key (murmur2 of the serialized key) from the local
// task owning it, or fail with ErrNotLocal or ErrRestoring (Fetch as its
// only element); FetchAll and All read the running local tasks one after
// the other, leaving out partitions restoring or hosted elsewhere. A query
// sees every window the task has written (window stores are not cached),
// within the store's retention as of the moment each partition's read
// starts. In-memory window stores are queryable too. StaleStores lets
// all of these queries read standby replicas too, as it does for
// KeyValueStore.
func WindowStore[K, V any](a *App, store string, opts ...QueryOption) (ReadOnlyWindowStore[K, V], error) {
	q, err := newQuery[K](a, store, opts)
	if err != nil {
		return nil, err
	}
	probe := q.entry.Builder.Build(q.pinned(nil), q.topic)
	wrap, ok := windowReaderOf[K, V](probe)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a WindowStore[%T, %T]", ErrUnknownStore, store, *new(K), *new(V))
	}
	return &windowQuery[K, V]{query: q, open: func(raw state.RawStore) windowReader[K, V] {
		return wrap(q.entry.Builder.Build(raw, q.topic))
	}}, nil
}

// windowReaderOf returns how to read a built store as a window store of
// K and V, stripping timestamps when the store holds V with timestamps.
func windowReaderOf[K, V any](s state.Store) (func(state.Store) windowReader[K, V], bool) {
	if _, ok := s.(state.WindowStore[K, V]); ok {
		return func(s state.Store) windowReader[K, V] { return s.(state.WindowStore[K, V]) }, true
	}
	if _, ok := s.(state.WindowStore[K, state.ValueAndTimestamp[V]]); ok {
		return func(s state.Store) windowReader[K, V] {
			return strippedWindows[K, V]{s.(state.WindowStore[K, state.ValueAndTimestamp[V]])}
		}, true
	}
	return nil, false
}

// SessionStore returns read-only, typed access to a session store over
// every task of this instance (Kafka Streams'
// QueryableStoreTypes.sessionStore), with the guarantees of WindowStore.
// K and V must be the store's key and value types.
func SessionStore[K, V any](a *App, store string, opts ...QueryOption) (ReadOnlySessionStore[K, V], error) {
	q, err := newQuery[K](a, store, opts)
	if err != nil {
		return nil, err
	}
	if _, ok := q.entry.Builder.Build(q.pinned(nil), q.topic).(state.SessionStore[K, V]); !ok {
		return nil, fmt.Errorf("%w: %q is not a SessionStore[%T, %T]", ErrUnknownStore, store, *new(K), *new(V))
	}
	return &sessionQuery[K, V]{query: q}, nil
}

// TimestampedKeyValueStore returns read-only, typed access to a
// timestamped key-value store (a table's or an aggregation's) whose values
// carry the timestamp of the record that produced them (Kafka Streams'
// QueryableStoreTypes.timestampedKeyValueStore), with the guarantees of
// KeyValueStore. KeyValueStore[K, V] reads the same store without the
// timestamps.
func TimestampedKeyValueStore[K, V any](a *App, store string, opts ...QueryOption) (state.KeyValueStore[K, state.ValueAndTimestamp[V]], error) {
	kv, err := KeyValueStore[K, V](a, store, opts...)
	if err != nil {
		return nil, err
	}
	ts, ok := state.WithTimestamps(kv)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a TimestampedKeyValueStore[%T, %T]", ErrUnknownStore, store, *new(K), *new(V))
	}
	return ts, nil
}

// VersionedKeyValueStore returns read-only, typed access to a versioned
// key-value store (KIP-889; IQv2's VersionedKeyQuery): the latest version
// of a key, or the version valid at a time, read from the local task
// owning the key's partition with the guarantees of KeyValueStore.Get.
func VersionedKeyValueStore[K, V any](a *App, store string, opts ...QueryOption) (ReadOnlyVersionedStore[K, V], error) {
	q, err := newQuery[K](a, store, opts)
	if err != nil {
		return nil, err
	}
	if _, ok := q.entry.Builder.Build(q.pinned(nil), q.topic).(state.VersionedKeyValueStore[K, V]); !ok {
		return nil, fmt.Errorf("%w: %q is not a VersionedKeyValueStore[%T, %T]", ErrUnknownStore, store, *new(K), *new(V))
	}
	return &versionedQuery[K, V]{query: q}, nil
}

// query is what the typed queries of one store share: the store, its
// subtopology and how to find the partition of a key.
type query[K any] struct {
	queriedStore
	entry *engine.StoreEntry
	topic string
	keys  state.KeySerializer[K]
}

func newQuery[K any](a *App, store string, opts []QueryOption) (*query[K], error) {
	entry, raw, err := openQuery(a, store, opts)
	if err != nil {
		return nil, err
	}
	keys, ok := entry.Builder.(state.KeySerializer[K])
	if !ok {
		return nil, fmt.Errorf("%w: %q does not have keys of type %T", ErrUnknownStore, store, *new(K))
	}
	return &query[K]{queriedStore: *raw, entry: entry, topic: state.ChangelogTopic(a.cfg.appID, store), keys: keys}, nil
}

// pinned returns the RawStore reading the engine of one local task.
func (q *query[K]) pinned(tk *task) state.RawStore { return &taskStore{q: &q.queriedStore, tk: tk} }

// taskOfKey returns the local task a lookup of key reads (see
// queriedStore.taskOf).
func (q *query[K]) taskOfKey(key K) (*task, error) {
	kb, err := q.keys.SerializeKey(q.topic, key)
	if err != nil {
		return nil, fmt.Errorf("store %s: serialize key: %w", q.name, err)
	}
	return q.queriedStore.taskOf(kb)
}

// running returns the local tasks a query of the store reads, by
// partition: the running ones, and with StaleStores the standbys of the
// partitions not running here.
func (q *query[K]) running() []*task {
	tasks := q.app.local.readable(q.sub, q.stale)
	slices.SortFunc(tasks, func(a, b *task) int { return cmp.Compare(a.id.Partition, b.id.Partition) })
	return tasks
}

// taskStore is the RawStore of one local task's engine of a queried store:
// it reads the engine while the task keeps its stores open, and refuses
// writes.
type taskStore struct {
	q  *queriedStore
	tk *task
}

func (s *taskStore) Name() string { return s.q.name }

func (s *taskStore) Get(key []byte) ([]byte, error) {
	var v []byte
	err := s.q.read(s.tk, func(e state.RawStore) (err error) {
		v, err = e.Get(key)
		return err
	})
	return v, err
}

func (s *taskStore) Put(_, _ []byte) error { return fmt.Errorf("%w: %s", ErrReadOnly, s.q.name) }

func (s *taskStore) Delete(_ []byte) error { return fmt.Errorf("%w: %s", ErrReadOnly, s.q.name) }

func (s *taskStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	return s.q.read(s.tk, func(e state.RawStore) error { return e.Scan(from, to, yield) })
}

func (s *taskStore) ApproximateNumEntries() (int64, error) {
	var n int64
	err := s.q.read(s.tk, func(e state.RawStore) (err error) {
		n, err = e.ApproximateNumEntries()
		return err
	})
	return n, err
}

func (s *taskStore) Flush() error { return nil }

// failed is an iterator whose only element is err.
func failed[T any](err error) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) { var zero T; yield(zero, err) }
}

// concat iterates over seq of each running task of q, partition by
// partition, stopping at the first error.
func concat[K, T any](q *query[K], seq func(raw state.RawStore) iter.Seq2[T, error]) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		for _, tk := range q.running() {
			for v, err := range seq(q.pinned(tk)) {
				if !yield(v, err) || err != nil {
					return
				}
			}
		}
	}
}

type windowQuery[K, V any] struct {
	*query[K]
	open func(raw state.RawStore) windowReader[K, V]
}

func (w *windowQuery[K, V]) FetchWindow(key K, start time.Time) (V, bool, error) {
	tk, err := w.taskOfKey(key)
	if err != nil {
		var zero V
		return zero, false, err
	}
	return w.open(w.pinned(tk)).Fetch(key, start)
}

func (w *windowQuery[K, V]) Fetch(key K, timeFrom, timeTo time.Time) iter.Seq2[state.KeyValue[time.Time, V], error] {
	tk, err := w.taskOfKey(key)
	if err != nil {
		return failed[state.KeyValue[time.Time, V]](err)
	}
	return func(yield func(state.KeyValue[time.Time, V], error) bool) {
		for kv, err := range w.open(w.pinned(tk)).FetchRange(key, timeFrom, timeTo) {
			if !yield(state.KeyValue[time.Time, V]{Key: kv.Key.Window.Start, Value: kv.Value}, err) {
				return
			}
		}
	}
}

func (w *windowQuery[K, V]) FetchAll(timeFrom, timeTo time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return concat(w.query, func(raw state.RawStore) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
		return w.open(raw).FetchAll(timeFrom, timeTo)
	})
}

func (w *windowQuery[K, V]) All() iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return concat(w.query, func(raw state.RawStore) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
		return w.open(raw).All()
	})
}

// strippedWindows reads a window store of values with timestamps as one of
// the values alone.
type strippedWindows[K, V any] struct {
	s state.WindowStore[K, state.ValueAndTimestamp[V]]
}

func (s strippedWindows[K, V]) Fetch(key K, start time.Time) (V, bool, error) {
	v, ok, err := s.s.Fetch(key, start)
	return v.Value, ok, err
}

func strip[K, V any](seq iter.Seq2[state.KeyValue[serde.Windowed[K], state.ValueAndTimestamp[V]], error]) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return func(yield func(state.KeyValue[serde.Windowed[K], V], error) bool) {
		for kv, err := range seq {
			if !yield(state.KeyValue[serde.Windowed[K], V]{Key: kv.Key, Value: kv.Value.Value}, err) {
				return
			}
		}
	}
}

func (s strippedWindows[K, V]) FetchRange(key K, from, to time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return strip(s.s.FetchRange(key, from, to))
}

func (s strippedWindows[K, V]) FetchAll(from, to time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return strip(s.s.FetchAll(from, to))
}

func (s strippedWindows[K, V]) All() iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return strip(s.s.All())
}

type sessionQuery[K, V any] struct{ *query[K] }

func (s *sessionQuery[K, V]) open(raw state.RawStore) state.SessionStore[K, V] {
	return s.entry.Builder.Build(raw, s.topic).(state.SessionStore[K, V])
}

// Times far enough apart to take in every session.
var (
	minTime = time.UnixMilli(math.MinInt64)
	maxTime = time.UnixMilli(math.MaxInt64)
)

func (s *sessionQuery[K, V]) Fetch(key K) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return s.FindSessions(key, minTime, maxTime)
}

func (s *sessionQuery[K, V]) FindSessions(key K, earliestEnd, latestStart time.Time) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	tk, err := s.taskOfKey(key)
	if err != nil {
		return failed[state.KeyValue[serde.Windowed[K], V]](err)
	}
	return s.open(s.pinned(tk)).FindSessions(key, earliestEnd, latestStart)
}

func (s *sessionQuery[K, V]) FetchSession(key K, start, end time.Time) (V, bool, error) {
	tk, err := s.taskOfKey(key)
	if err != nil {
		var zero V
		return zero, false, err
	}
	return s.open(s.pinned(tk)).FetchSession(key, start, end)
}

func (s *sessionQuery[K, V]) All() iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
	return concat(s.query, func(raw state.RawStore) iter.Seq2[state.KeyValue[serde.Windowed[K], V], error] {
		return s.open(raw).All()
	})
}

type versionedQuery[K, V any] struct{ *query[K] }

// open builds the typed store afresh, so that it reads the store's
// observed stream time anew.
func (v *versionedQuery[K, V]) open(key K) (state.VersionedKeyValueStore[K, V], error) {
	tk, err := v.taskOfKey(key)
	if err != nil {
		return nil, err
	}
	return v.entry.Builder.Build(v.pinned(tk), v.topic).(state.VersionedKeyValueStore[K, V]), nil
}

func (v *versionedQuery[K, V]) Get(key K) (state.VersionedRecord[V], bool, error) {
	s, err := v.open(key)
	if err != nil {
		return state.VersionedRecord[V]{}, false, err
	}
	return s.Get(key)
}

func (v *versionedQuery[K, V]) GetAsOf(key K, asOf time.Time) (state.VersionedRecord[V], bool, error) {
	s, err := v.open(key)
	if err != nil {
		return state.VersionedRecord[V]{}, false, err
	}
	return s.GetAsOf(key, asOf)
}
