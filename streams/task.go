package streams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// task is an engine.Task with its store engines, changelog positions and
// input positions.
type task struct {
	id      processor.TaskID
	t       *engine.Task
	dir     string
	db      *state.PebbleDB
	engines map[string]state.RawStore

	mu        sync.Mutex
	changelog map[string]int64 // store -> next changelog offset acknowledged

	consumed map[string]kgo.EpochOffset // topic -> next offset to commit
	dirty    bool

	sourceStores map[string]string // store restored from a source topic -> that topic
	unlock       func()            // releases the state directory

	queryMu sync.RWMutex // held by queries reading engines; closeStores takes it
	closed  bool         // stores closed: queries must not read
}

// lockTask returns a task of id with nothing open yet but its state
// directory, which it holds (see taskDirs) until the task's stores close.
func (a *App) lockTask(ctx context.Context, id processor.TaskID) (*task, error) {
	tk := &task{
		id:           id,
		dir:          filepath.Join(a.cfg.stateDir, a.cfg.appID, id.String()),
		engines:      make(map[string]state.RawStore),
		changelog:    make(map[string]int64),
		consumed:     make(map[string]kgo.EpochOffset),
		sourceStores: make(map[string]string),
	}
	unlock, err := a.taskDirs.lock(ctx, tk.dir)
	if err != nil {
		return nil, err
	}
	tk.unlock = unlock
	return tk, nil
}

// openTask opens the task's stores, restores them from their changelogs
// and creates its processors. It holds the task's state directory from
// here until closeTask, so that a task moving between threads of the
// process is opened, and its state possibly wiped, only once its previous
// thread has closed it.
func (th *thread) openTask(ctx context.Context, id processor.TaskID) (*task, error) {
	a := th.app
	sub := a.subs[id.Subtopology]
	a.standbys.release(id) // its checkpoint is where the restore starts
	tk, err := a.lockTask(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", id, err)
	}
	if err := th.openStores(ctx, tk, sub.Stores); err != nil {
		tk.closeStores()
		return nil, fmt.Errorf("task %s: %w", id, err)
	}
	tk.t, err = engine.NewTask(a.graph, engine.TaskConfig{
		ApplicationID:         a.cfg.appID,
		ID:                    id,
		Engines:               tk.engines,
		Globals:               a.globals.typed(),
		ChangeLogger:          func(store string) state.ChangeLogger { return th.changeLogger(tk, store) },
		Send:                  th.send,
		Partitions:            th.partitionCount,
		ProcessingErrors:      a.cfg.processing,
		DeserializationErrors: a.cfg.deserialization,
		Logger:                th.log,
		Dropped:               func() { a.metrics.task(id).dropped.Add(1) },
		NodeCounter:           func(node string) *atomic.Int64 { return a.metrics.node(id, node) },
		Punctuated:            func() { a.metrics.task(id).punctuations.Add(1) },
	})
	if err != nil {
		tk.closeStores()
		return nil, err
	}
	return tk, nil
}

// changeLogger sends a store's writes to its changelog partition and
// tracks the acknowledged offset for the checkpoint.
func (th *thread) changeLogger(tk *task, store string) state.ChangeLogger {
	topic := state.ChangelogTopic(th.app.cfg.appID, store)
	acked := func(r *kgo.Record, err error) {
		defer recycle(r)
		if err != nil {
			th.produceFailed(fmt.Errorf("produce to changelog %s: %w", topic, err))
			return
		}
		tk.mu.Lock()
		if r.Offset+1 > tk.changelog[store] {
			tk.changelog[store] = r.Offset + 1
		}
		tk.mu.Unlock()
	}
	return state.ChangeLoggerFunc(func(k, v []byte) {
		r := records.Get().(*kgo.Record)
		// Stamped with the time the thread read for the record (or
		// commit) under way, as the producer would stamp it.
		r.Topic, r.Partition, r.Key, r.Value, r.Timestamp = topic, tk.id.Partition, k, v, th.now
		th.sendRecord(r, acked)
	})
}

// restoreRange is the part of a changelog (or source topic) partition a
// store is restored from.
type restoreRange struct {
	topic      string
	start, end int64 // start is -1 for the log start offset
	logStart   int64
}

// openStores opens the task's store engines and restores them.
func (th *thread) openStores(ctx context.Context, tk *task, stores []state.Config) error {
	ranges, err := th.prepareStores(ctx, tk, stores)
	if err != nil {
		return err
	}
	if th.app.cfg.guarantee == ExactlyOnceV2 {
		// Under exactly-once the checkpoint is written only on a clean
		// close: once processing starts, local state runs ahead of the
		// changelogs' committed records until the next commit.
		if err := state.RemoveCheckpoint(vfs.Default, tk.dir); err != nil {
			return err
		}
	}
	for _, sc := range stores {
		r, ok := ranges[sc.Name]
		if !ok {
			continue
		}
		if err := th.restore(ctx, tk, sc, r); err != nil {
			return fmt.Errorf("restore store %s: %w", sc.Name, err)
		}
	}
	return nil
}

// prepareStores opens the task's store engines and returns the range each
// store is to be restored from: from its checkpointed offset, or from the
// log start (start -1). Local state is trusted only up to a valid
// checkpoint: one that parses and whose offsets lie within their
// changelog partitions. A checkpoint past the end (the changelog was
// truncated or recreated) or below the log start offset (records were
// deleted that the local state may be missing) means, as in Kafka
// Streams, that the state is wiped and rebuilt from the whole changelog.
// Active and standby tasks share it, and so the on-disk layout.
func (th *thread) prepareStores(ctx context.Context, tk *task, stores []state.Config) (map[string]restoreRange, error) {
	if err := os.MkdirAll(tk.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	checkpoint, err := state.ReadCheckpoint(vfs.Default, tk.dir)
	if errors.Is(err, state.ErrBadCheckpoint) {
		th.log.Warn("checkpoint cannot be trusted, restoring from the changelogs", "task", tk.id.String(), "err", err)
		checkpoint, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	ranges := make(map[string]restoreRange)
	for _, sc := range stores {
		if sc.SourceTopic != "" {
			tk.sourceStores[sc.Name] = sc.SourceTopic
		}
		if !sc.Logging && sc.SourceTopic == "" {
			continue
		}
		r, err := th.restoreRange(ctx, tk, sc)
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", sc.Name, err)
		}
		if off, ok := checkpoint[sc.Name]; ok && !sc.InMemory {
			if off > r.end || off < r.logStart {
				th.log.Warn("checkpoint outside the changelog, restoring from the changelogs", "task", tk.id.String(),
					"store", sc.Name, "checkpoint", off, "log_start", r.logStart, "end", r.end)
				checkpoint = nil
			} else {
				r.start = off
			}
		}
		ranges[sc.Name] = r
	}
	pebbleDir := filepath.Join(tk.dir, "pebble")
	if checkpoint == nil {
		// Local state without a valid checkpoint cannot be trusted: start
		// over, and let no crash from here on trust the old checkpoint.
		if err := state.RemoveCheckpoint(vfs.Default, tk.dir); err != nil {
			return nil, err
		}
		if err := os.RemoveAll(pebbleDir); err != nil {
			return nil, fmt.Errorf("wipe state: %w", err)
		}
	}
	for _, sc := range stores {
		if sc.InMemory {
			tk.engines[sc.Name] = sc.WrapEngine(state.NewMemoryStore(sc.Name))
			continue
		}
		if tk.db == nil {
			if tk.db, err = state.OpenPebble(pebbleDir, th.app.cfg.logger); err != nil {
				return nil, err
			}
		}
		tk.engines[sc.Name] = sc.WrapEngine(tk.db.Store(sc.Name))
	}
	for name, r := range ranges {
		if sc := storeConfig(stores, name); checkpoint == nil || sc.InMemory {
			r.start = -1
			ranges[name] = r
		}
	}
	return ranges, nil
}

// storeConfig returns the config of the named store among stores.
func storeConfig(stores []state.Config, name string) state.Config {
	for _, sc := range stores {
		if sc.Name == name {
			return sc
		}
	}
	return state.Config{}
}

// restoreRange returns the partition a store is restored from, its log
// start offset and the offset its restore stops at: the end of its
// changelog partition or, for a store restored from its source topic, the
// application's committed offset in that partition, since the records
// after it will be processed again (the log start if nothing is
// committed).
func (th *thread) restoreRange(ctx context.Context, tk *task, sc state.Config) (restoreRange, error) {
	topic := engine.ChangelogTopic(th.app.cfg.appID, sc)
	r := restoreRange{topic: topic, start: -1}
	logStart, err := listOffset(ctx, th.adm.ListStartOffsets, "start", topic, tk.id.Partition)
	if err != nil {
		return r, err
	}
	r.logStart = logStart
	if sc.SourceTopic != "" {
		committed, err := th.adm.FetchOffsets(ctx, th.app.cfg.appID)
		if err != nil {
			return r, fmt.Errorf("fetch committed offsets: %w", err)
		}
		r.end = r.logStart
		if o, ok := committed.Lookup(topic, tk.id.Partition); ok && o.Err == nil && o.At >= 0 {
			r.end = o.At
		}
		return r, nil
	}
	// Under exactly-once too the restore reads to the high watermark, not
	// the last stable offset: a crashed owner's open transaction holds the
	// latter back while the next owner commits after it, and reading
	// committed records to the high watermark waits for that transaction
	// to be aborted.
	r.end, err = th.endOffset(ctx, topic, tk.id.Partition)
	return r, err
}

// endOffset returns the end offset of a partition.
func (th *thread) endOffset(ctx context.Context, topic string, partition int32) (int64, error) {
	return listOffset(ctx, th.adm.ListEndOffsets, "end", topic, partition)
}

// listOffsetTimeout bounds how long listOffset retries retriable errors,
// such as NOT_LEADER_FOR_PARTITION for a changelog another instance has
// just created.
const listOffsetTimeout = 30 * time.Second

// listOffset returns the start or end offset of a partition, retrying
// retriable errors.
func listOffset(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error), which, topic string, partition int32) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, listOffsetTimeout)
	defer cancel()
	for {
		listed, err := list(ctx, topic)
		if err == nil {
			o, ok := listed.Lookup(topic, partition)
			switch {
			case !ok:
				err = kerr.UnknownTopicOrPartition
			case o.Err == nil:
				return o.Offset, nil
			default:
				err = o.Err
			}
		}
		if !kerr.IsRetriable(err) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("%s offset of %s[%d]: %w", which, topic, partition, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s offset of %s[%d]: %w (%w)", which, topic, partition, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// restoreIdle is how long a restore waits for records before it checks
// whether its changelog partition has lost its tail.
const restoreIdle = time.Second

// restore replays a store's changelog partition (or source topic
// partition) into its engine from r.start (the log start offset if
// negative) to r.end. It stops at the end even when the end is reached
// through transaction markers (control records, which it reads and skips),
// or through offsets compaction emptied. When records it has not read yet
// are deleted while it restores (DeleteRecords, or retention.ms on a
// compact,delete changelog moving the log start past its position), it
// wipes the store and restores what the partition still holds, from the
// new log start, as Kafka Streams does for a corrupted task; when the
// partition loses its tail (deleted and recreated), it stops at the new
// end. Both are found from the consumer's OFFSET_OUT_OF_RANGE, and, after
// restoreIdle without records, from the partition's offsets read again.
func (th *thread) restore(ctx context.Context, tk *task, sc state.Config, r restoreRange) (err error) {
	store := sc.Name
	start := max(r.start, r.logStart)
	tk.changelog[store] = r.end
	th.app.metrics.setRestoring(tk.id, store, r.end-start)
	if start >= r.end {
		th.log.Info("store up to date", "task", tk.id.String(), "store", store, "offset", r.end)
		return nil
	}
	events := restoreEvents{l: th.app.cfg.restoreListener, r: StoreRestore{Task: tk.id, Store: store, Topic: r.topic, Partition: tk.id.Partition}}
	events.start(start, r.end)
	var restored int64
	defer func() { events.end(restored, err) }()
	next := start // the next offset to read
	cl, err := th.restoreClient(r.topic, tk.id.Partition, next)
	if err != nil {
		return err
	}
	defer func() { cl.Close() }()
	engine := tk.engines[store]
	began := time.Now()
	lastLog := began
	th.log.Info("restoring store", "task", tk.id.String(), "store", store, "from", start, "to", r.end)
	// moved handles the partition's offsets moving under the restore: it
	// reads them again and returns where to go on from, and whether the
	// consumer must be placed there.
	moved := func(why string) (to int64, seek bool, err error) {
		logStart, err := listOffset(ctx, th.adm.ListStartOffsets, "start", r.topic, tk.id.Partition)
		if err != nil {
			return 0, false, err
		}
		end, err := th.endOffset(ctx, r.topic, tk.id.Partition)
		if err != nil {
			return 0, false, err
		}
		switch {
		case end < r.end:
			th.log.Warn("changelog lost its tail while restoring", "task", tk.id.String(), "store", store, "end", end, "was", r.end, "why", why)
			r.end = max(end, next)
			tk.changelog[store] = r.end
			return next, true, nil
		case logStart > next:
			th.log.Warn("changelog records deleted while restoring: wiping the store and restoring from the log start", "task", tk.id.String(),
				"store", store, "position", next, "log_start", logStart, "end", r.end, "why", why)
			if err := wipe(engine); err != nil {
				return 0, false, fmt.Errorf("wipe store %s: %w", store, err)
			}
			return logStart, true, nil
		}
		return next, false, nil
	}
	for next < r.end {
		pollCtx, cancel := context.WithTimeout(ctx, restoreIdle)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		outOfRange := false
		fetches.EachError(func(_ string, _ int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded):
			case errors.Is(err, kerr.OffsetOutOfRange):
				outOfRange = true
			default:
				ferr = errors.Join(ferr, err)
			}
		})
		if ferr != nil {
			return fmt.Errorf("fetch %s: %w", r.topic, ferr)
		}
		records := fetches.Records()
		if len(records) == 0 || outOfRange {
			why := "idle"
			if outOfRange {
				why = "offset out of range"
			}
			to, seek, err := moved(why)
			if err != nil {
				return err
			}
			if outOfRange && !seek {
				return fmt.Errorf("fetch %s[%d] at %d: %w", r.topic, tk.id.Partition, next, kerr.OffsetOutOfRange)
			}
			if seek {
				next = to
				if next < r.end {
					cl.Close()
					if cl, err = th.restoreClient(r.topic, tk.id.Partition, next); err != nil {
						return err
					}
				}
			}
			continue
		}
		for _, rec := range records {
			if rec.Offset >= r.end {
				next = r.end
				break
			}
			next = rec.Offset + 1
			if rec.Key == nil || rec.Attrs.IsControl() {
				continue // a transaction marker, or a source topic's record without a key: not a row
			}
			switch {
			case rec.Value == nil:
				err = engine.Delete(rec.Key)
			case sc.SourceConverter != nil:
				err = engine.Put(rec.Key, sc.SourceConverter(rec.Value, rec.Timestamp))
			default:
				err = engine.Put(rec.Key, rec.Value)
			}
			if err != nil {
				return err
			}
			restored++
		}
		th.app.metrics.restored.Add(int64(len(records)))
		events.batch(next-1, len(records))
		th.app.metrics.setRestoring(tk.id, store, r.end-next)
		if time.Since(lastLog) > time.Second {
			lastLog = time.Now()
			th.log.Info("restoring store", "task", tk.id.String(), "store", store, "offset", next, "end", r.end)
		}
	}
	if err := engine.Flush(); err != nil {
		return err
	}
	th.log.Info("restored store", "task", tk.id.String(), "store", store, "records", restored,
		"duration", time.Since(began).Round(time.Millisecond))
	return nil
}

// restoreClient returns a client consuming partition of topic from
// offset at. It does not reset an offset out of range: the restore reads
// the partition's offsets itself then.
func (th *thread) restoreClient(topic string, partition int32, at int64) (*kgo.Client, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(th.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(at)}}),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.KeepControlRecords(),
	}
	if th.app.cfg.guarantee == ExactlyOnceV2 {
		// Committed records only: an aborted transaction's writes never
		// reach the stores.
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(append(opts, th.app.cfg.clientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("restore client: %w", err)
	}
	return cl, nil
}

// wipe deletes every entry of a store's engine.
func wipe(engine state.RawStore) error {
	var keys [][]byte
	if err := engine.Scan(nil, nil, func(k, _ []byte) bool {
		keys = append(keys, k)
		return true
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := engine.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// checkpoint records the acknowledged changelog offsets of persistent
// stores, and for stores restored from a source topic the committed
// offset. Call it only after a successful commit.
func (tk *task) checkpoint() error {
	tk.mu.Lock()
	offsets := make(map[string]int64, len(tk.changelog))
	for k, v := range tk.changelog {
		offsets[k] = v
	}
	tk.mu.Unlock()
	for store, topic := range tk.sourceStores {
		if eo, ok := tk.consumed[topic]; ok {
			offsets[store] = eo.Offset
		}
	}
	if err := state.WriteCheckpoint(vfs.Default, tk.dir, offsets); err != nil {
		return fmt.Errorf("task %s: %w", tk.id, err)
	}
	return nil
}

// removeCheckpoint marks the task's local state as not trusted, for a
// dirty close.
func (tk *task) removeCheckpoint() error {
	if err := state.RemoveCheckpoint(vfs.Default, tk.dir); err != nil {
		return fmt.Errorf("task %s: %w", tk.id, err)
	}
	return nil
}

// closeStores closes the task's Pebble instance and releases its state
// directory.
func (tk *task) closeStores() error {
	tk.queryMu.Lock()
	defer tk.queryMu.Unlock()
	tk.closed = true
	var err error
	if tk.db != nil {
		err = tk.db.Close()
		tk.db = nil
	}
	if tk.unlock != nil {
		tk.unlock()
		tk.unlock = nil
	}
	return err
}

// taskDirs serialises the use of task state directories within the
// process: a task's directory has at most one holder, from the opening of
// the task until its stores are closed.
type taskDirs struct {
	mu   sync.Mutex
	held map[string]chan struct{} // dir -> closed when released
}

// lock waits until dir is free, or ctx is done, and takes it.
func (d *taskDirs) lock(ctx context.Context, dir string) (unlock func(), err error) {
	for {
		d.mu.Lock()
		if d.held == nil {
			d.held = make(map[string]chan struct{})
		}
		released, busy := d.held[dir]
		if !busy {
			ch := make(chan struct{})
			d.held[dir] = ch
			d.mu.Unlock()
			return func() {
				d.mu.Lock()
				delete(d.held, dir)
				d.mu.Unlock()
				close(ch)
			}, nil
		}
		d.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for state directory %s: %w", dir, ctx.Err())
		}
	}
}

// commitOffsets adds what to commit for the task's consumed partitions.
func (tk *task) commitOffsets(into map[string]map[int32]kgo.EpochOffset) {
	for topic, eo := range tk.consumed {
		if into[topic] == nil {
			into[topic] = make(map[int32]kgo.EpochOffset)
		}
		into[topic][tk.id.Partition] = eo
	}
}
