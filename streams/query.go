package streams

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// Errors of interactive queries. They wrap more detail: which store, which
// partition.
var (
	// ErrUnknownStore means the topology has no such store, its types are
	// not the ones asked for, or it cannot be queried (global stores).
	ErrUnknownStore = errors.New("streams: unknown or unqueryable store")
	// ErrNotLocal means the partition holding the key is not one of this
	// instance's tasks: it belongs to another instance, or the group has
	// not assigned it yet (Kafka's InvalidStateStorePartitionException).
	ErrNotLocal = errors.New("streams: partition not hosted by this instance")
	// ErrRestoring means the partition's task is on this instance but its
	// stores are still being restored (Kafka Streams' REBALANCING state).
	ErrRestoring = errors.New("streams: store is restoring")
	// ErrReadOnly is returned by a queried store's writes.
	ErrReadOnly = errors.New("streams: queried stores are read-only")
)

// KeyValueStore returns read-only, typed access to a key-value store over
// every task of this instance (Kafka Streams' interactive queries). K and V
// must be the store's key and value types. StaleStores lets it read the
// instance's standby replicas too.
//
// Get finds the key's partition as the runtime's partitioner does (murmur2
// of the serialized key, as Kafka's default partitioner and Kafka Streams'
// KeyQueryMetadata do) and reads it from the local task owning that
// partition, or fails with ErrNotLocal or ErrRestoring. Range, PrefixScan
// and All merge, in serialized key order, the partitions of every running
// local task; partitions restoring or hosted elsewhere are left out.
//
// What a query sees: every write the store's task has committed (the
// record cache is flushed to the store at every commit), and possibly
// later writes that left the cache early; never a half-written value.
// Range, PrefixScan and All read each partition at one point in time
// (a Pebble iterator). A task that moves away while a query runs makes the
// query fail with ErrNotLocal rather than read a closed store, and an
// iteration left open holds up the close of the tasks it reads. After a
// task moves, its new owner serves what it restored from the changelog,
// which may be older than what the old owner last served: at-least-once,
// as in Kafka Streams without position bounds. Queries are
// safe to run from any goroutine while the tasks process. Stores kept in
// memory (state.InMemory) are queried alike, but their scans are not at
// one point in time: they go over the keys present when they start and
// read each value as they reach it (state.MemoryStore). On a timestamped
// store (a table's or an aggregation's) V is the value type without the
// timestamp; TimestampedKeyValueStore reads the timestamps too.
func KeyValueStore[K, V any](a *App, store string, opts ...QueryOption) (state.KeyValueStore[K, V], error) {
	entry, raw, err := openQuery(a, store, opts)
	if err != nil {
		return nil, err
	}
	kv, ok := entry.Builder.Build(raw, state.ChangelogTopic(a.cfg.appID, store)).(state.KeyValueStore[K, V])
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a KeyValueStore[%T, %T]", ErrUnknownStore, store, *new(K), *new(V))
	}
	return kv, nil
}

// openQuery returns the entry of store in a's topology and the raw,
// read-only store a query with opts reads it through.
func openQuery(a *App, store string, opts []QueryOption) (*engine.StoreEntry, *queriedStore, error) {
	entry, ok := a.graph.Stores[store]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownStore, store)
	}
	sub, err := a.subOfStore(store)
	if err != nil {
		return nil, nil, err
	}
	var qc queryConfig
	for _, o := range opts {
		o(&qc)
	}
	return entry, &queriedStore{app: a, name: store, sub: sub, stale: qc.stale}, nil
}

// localTasks is the App's registry of the tasks its threads run and
// restore, which queries read.
type localTasks struct {
	mu         sync.RWMutex
	running    map[processor.TaskID]*task
	restoring  map[processor.TaskID]bool
	partitions []int32 // per subtopology, set by Run
	subOf      map[string]int
	admCl      *kgo.Client
	adm        *kadm.Client
	nextGen    bool

	standby map[processor.TaskID]*task // standby tasks, for stale queries
}

func (l *localTasks) setRestoring(id processor.TaskID, restoring bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.restoring == nil {
		l.restoring = make(map[processor.TaskID]bool)
	}
	if restoring {
		l.restoring[id] = true
	} else {
		delete(l.restoring, id)
	}
}

func (l *localTasks) add(tk *task) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running == nil {
		l.running = make(map[processor.TaskID]*task)
	}
	l.running[tk.id] = tk
	delete(l.restoring, tk.id)
}

func (l *localTasks) remove(id processor.TaskID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.running, id)
}

// lookup returns the running task of id, or why there is none.
func (l *localTasks) lookup(id processor.TaskID, store string) (*task, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if tk, ok := l.running[id]; ok {
		return tk, nil
	}
	if l.restoring[id] {
		return nil, &PartitionError{Err: ErrRestoring, Store: store, Partition: id.Partition}
	}
	return nil, &PartitionError{Err: ErrNotLocal, Store: store, Partition: id.Partition}
}

// runningOf returns the running tasks of a subtopology, by partition.
func (l *localTasks) runningOf(sub int) []*task {
	l.mu.RLock()
	defer l.mu.RUnlock()
	var out []*task
	for id, tk := range l.running {
		if id.Subtopology == sub {
			out = append(out, tk)
		}
	}
	return out
}

func (l *localTasks) partitionCount(sub int) int32 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if sub < len(l.partitions) {
		return l.partitions[sub]
	}
	return 0
}

// keyPartitioner places a serialized key as the runtime's partitioner
// places an unpartitioned keyed record.
var keyPartitioner = kgo.StickyKeyPartitioner(nil).ForTopic("")

// partitionOf returns the partition a serialized key of a store belongs to
// among n partitions: murmur2, as Kafka's default partitioner.
func partitionOf(key []byte, n int32) int32 {
	return int32(keyPartitioner.Partition(&kgo.Record{Key: key}, int(n)))
}

// queriedStore is the RawStore under a queried typed store: it routes
// reads to the engines of the local tasks and refuses writes.
type queriedStore struct {
	app   *App
	name  string
	sub   int
	stale bool // StaleStores: standbys too
}

func (q *queriedStore) Name() string { return q.name }

// read runs fn on the engine of a running task, keeping the task from
// closing its stores meanwhile.
func (q *queriedStore) read(tk *task, fn func(state.RawStore) error) error {
	tk.queryMu.RLock()
	defer tk.queryMu.RUnlock()
	if tk.closed {
		return &PartitionError{Err: ErrNotLocal, Store: q.name, Partition: tk.id.Partition}
	}
	return fn(tk.engines[q.name])
}

// taskOf returns the running local task holding the partition of key, a
// serialized key, or with StaleStores its standby here when the task runs
// elsewhere.
func (q *queriedStore) taskOf(key []byte) (*task, error) {
	n := q.app.local.partitionCount(q.sub)
	if n <= 0 {
		return nil, fmt.Errorf("%w: store %s: the application is not running", ErrNotLocal, q.name)
	}
	id := processor.TaskID{Subtopology: q.sub, Partition: partitionOf(key, n)}
	tk, err := q.app.local.lookup(id, q.name)
	if err != nil && q.stale {
		return q.app.local.standbyOf(id, err)
	}
	return tk, err
}

func (q *queriedStore) Get(key []byte) ([]byte, error) {
	tk, err := q.taskOf(key)
	if err != nil {
		return nil, err
	}
	var v []byte
	err = q.read(tk, func(e state.RawStore) (err error) {
		v, err = e.Get(key)
		return err
	})
	return v, err
}

func (q *queriedStore) Put(_, _ []byte) error { return fmt.Errorf("%w: %s", ErrReadOnly, q.name) }

func (q *queriedStore) Delete(_ []byte) error { return fmt.Errorf("%w: %s", ErrReadOnly, q.name) }

// Scan merges the scans of every running local task's engine in key order.
func (q *queriedStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	type cursor struct {
		next func() (kv [2][]byte, ok bool)
		stop func()
		kv   [2][]byte
	}
	var cursors []*cursor
	var errs []error
	var errMu sync.Mutex
	for _, tk := range q.app.local.readable(q.sub, q.stale) {
		seq := func(y func([2][]byte) bool) {
			err := q.read(tk, func(e state.RawStore) error {
				return e.Scan(from, to, func(k, v []byte) bool { return y([2][]byte{k, v}) })
			})
			if err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		}
		next, stop := iter.Pull(seq)
		c := &cursor{next: next, stop: stop}
		defer stop()
		var ok bool
		if c.kv, ok = c.next(); ok {
			cursors = append(cursors, c)
		}
	}
	for len(cursors) > 0 {
		lo := 0
		for i, c := range cursors {
			if bytes.Compare(c.kv[0], cursors[lo].kv[0]) < 0 {
				lo = i
			}
		}
		c := cursors[lo]
		if !yield(c.kv[0], c.kv[1]) {
			break
		}
		var ok bool
		if c.kv, ok = c.next(); !ok {
			cursors = append(cursors[:lo], cursors[lo+1:]...)
		}
	}
	for _, c := range cursors {
		c.stop()
	}
	errMu.Lock()
	defer errMu.Unlock()
	return errors.Join(errs...)
}

func (q *queriedStore) ApproximateNumEntries() (int64, error) {
	var total int64
	for _, tk := range q.app.local.readable(q.sub, q.stale) {
		err := q.read(tk, func(e state.RawStore) error {
			n, err := e.ApproximateNumEntries()
			total += n
			return err
		})
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (q *queriedStore) Flush() error { return nil }
