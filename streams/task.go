package streams

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

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

}

// openTask opens the task's stores, restores them from their changelogs
// and creates its processors.
func (th *thread) openTask(ctx context.Context, id processor.TaskID) (*task, error) {
	a := th.app
	sub := a.subs[id.Subtopology]
	tk := &task{
		id:        id,
		dir:       filepath.Join(a.cfg.stateDir, a.cfg.appID, id.String()),
		engines:   make(map[string]state.RawStore),
		changelog: make(map[string]int64),
		consumed:  make(map[string]kgo.EpochOffset),

		sourceStores: make(map[string]string),
	}
	if err := os.MkdirAll(tk.dir, 0o755); err != nil {
		return nil, fmt.Errorf("task %s: create state dir: %w", id, err)
	}
	checkpoint, err := state.ReadCheckpoint(tk.dir)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", id, err)
	}
	if a.cfg.guarantee == ExactlyOnceV2 {
		// Under exactly-once the checkpoint is written only on a clean
		// close: once processing starts, local state runs ahead of the
		// changelogs' committed records until the next commit.
		if err := state.RemoveCheckpoint(tk.dir); err != nil {
			return nil, fmt.Errorf("task %s: %w", id, err)
		}
	}
	pebbleDir := filepath.Join(tk.dir, "pebble")
	if checkpoint == nil {
		// Local state without a checkpoint cannot be trusted: start over.
		if err := os.RemoveAll(pebbleDir); err != nil {
			return nil, fmt.Errorf("task %s: wipe state: %w", id, err)
		}
	}
	for _, sc := range sub.Stores {
		if sc.InMemory {
			tk.engines[sc.Name] = sc.WrapEngine(state.NewMemoryStore(sc.Name))
			continue
		}
		if tk.db == nil {
			if tk.db, err = openPebbleRetry(ctx, pebbleDir, a); err != nil {
				return nil, fmt.Errorf("task %s: %w", id, err)
			}
		}
		tk.engines[sc.Name] = sc.WrapEngine(tk.db.Store(sc.Name))
	}
	for _, sc := range sub.Stores {
		start := int64(-2) // earliest
		if off, ok := checkpoint[sc.Name]; ok && !sc.InMemory {
			start = off
		}
		if sc.SourceTopic != "" {
			tk.sourceStores[sc.Name] = sc.SourceTopic
		}
		if sc.Logging || sc.SourceTopic != "" {
			if err := th.restore(ctx, tk, sc, start); err != nil {
				tk.closeStores()
				return nil, fmt.Errorf("task %s: restore store %s: %w", id, sc.Name, err)
			}
		}
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
	})
	if err != nil {
		tk.closeStores()
		return nil, err
	}
	return tk, nil
}

func openPebbleRetry(ctx context.Context, dir string, a *App) (*state.PebbleDB, error) {
	// A task moving between threads of this process may still be closing.
	var err error
	for range 50 {
		var db *state.PebbleDB
		if db, err = state.OpenPebble(dir, a.cfg.logger); err == nil {
			return db, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, err
}

// changeLogger sends a store's writes to its changelog partition and
// tracks the acknowledged offset for the checkpoint.
func (th *thread) changeLogger(tk *task, store string) state.ChangeLogger {
	topic := state.ChangelogTopic(th.app.cfg.appID, store)
	return state.ChangeLoggerFunc(func(k, v []byte) {
		r := &kgo.Record{Topic: topic, Partition: tk.id.Partition, Key: k, Value: v}
		th.wrote.Store(true)
		th.cl.Produce(context.Background(), r, func(r *kgo.Record, err error) {
			if err != nil {
				th.produceFailed(fmt.Errorf("produce to changelog %s: %w", topic, err))
				return
			}
			tk.mu.Lock()
			if r.Offset+1 > tk.changelog[store] {
				tk.changelog[store] = r.Offset + 1
			}
			tk.mu.Unlock()
		})
	})
}

// restoreEnd returns the offset a store's restore stops at: the end of its
// changelog partition or, for a store restored from its source topic, the
// application's committed offset in that partition, since the records
// after it will be processed again (none if nothing is committed).
func (th *thread) restoreEnd(ctx context.Context, tk *task, sc state.Config, topic string) (int64, error) {
	if sc.SourceTopic != "" {
		committed, err := th.adm.FetchOffsets(ctx, th.app.cfg.appID)
		if err != nil {
			return 0, fmt.Errorf("fetch committed offsets: %w", err)
		}
		if o, ok := committed.Lookup(topic, tk.id.Partition); ok && o.Err == nil && o.At >= 0 {
			return o.At, nil
		}
		return 0, nil
	}
	// Under exactly-once too the restore reads to the high watermark, not
	// the last stable offset: a crashed owner's open transaction holds the
	// latter back while the next owner commits after it, and reading
	// committed records to the high watermark waits for that transaction
	// to be aborted.
	ends, err := th.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, tk.id.Partition)
	if !ok || end.Err != nil {
		return 0, fmt.Errorf("end offset of %s[%d]: %v", topic, tk.id.Partition, end.Err)
	}
	return end.Offset, nil
}

// restore replays a store's changelog partition (or source topic
// partition) into its engine from start (an offset, or -2 for the
// earliest) to restoreEnd.
func (th *thread) restore(ctx context.Context, tk *task, sc state.Config, start int64) error {
	store := sc.Name
	topic := engine.ChangelogTopic(th.app.cfg.appID, sc)
	end, err := th.restoreEnd(ctx, tk, sc, topic)
	if err != nil {
		return err
	}
	tk.changelog[store] = end
	th.app.metrics.setRestoring(tk.id, store, end-max(start, 0))
	if end == 0 || start >= end {
		th.log.Info("store up to date", "task", tk.id.String(), "store", store, "offset", end)
		return nil
	}
	offset := kgo.NewOffset().AtStart()
	if start >= 0 {
		offset = kgo.NewOffset().At(start)
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(th.brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {tk.id.Partition: offset}}),
	}
	if th.app.cfg.guarantee == ExactlyOnceV2 {
		// Committed records only; the markers too, so that a partition
		// ending in one is read to its end.
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	}
	cl, err := kgo.NewClient(append(opts, th.app.cfg.clientOpts...)...)
	if err != nil {
		return fmt.Errorf("restore client: %w", err)
	}
	defer cl.Close()
	engine := tk.engines[store]
	began := time.Now()
	lastLog := began
	var restored int64
	th.log.Info("restoring store", "task", tk.id.String(), "store", store, "from", start, "to", end)
	for next := max(start, 0); next < end; {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return fmt.Errorf("fetch %s: %w", topic, ferr)
		}
		for _, r := range fetches.Records() {
			if r.Offset >= end {
				next = end // the records below end were compacted away
				break
			}
			next = r.Offset + 1
			if r.Attrs.IsControl() || r.Key == nil {
				continue // a marker, or a source topic's record without a key: not a row
			}
			if r.Value == nil {
				err = engine.Delete(r.Key)
			} else {
				err = engine.Put(r.Key, r.Value)
			}
			if err != nil {
				return err
			}
			restored++
		}
		th.app.metrics.restored.Add(int64(len(fetches.Records())))
		th.app.metrics.setRestoring(tk.id, store, end-next)
		if time.Since(lastLog) > time.Second {
			lastLog = time.Now()
			th.log.Info("restoring store", "task", tk.id.String(), "store", store, "offset", next, "end", end)
		}
	}
	if err := engine.Flush(); err != nil {
		return err
	}
	th.log.Info("restored store", "task", tk.id.String(), "store", store, "records", restored,
		"duration", time.Since(began).Round(time.Millisecond))
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
	if err := state.WriteCheckpoint(tk.dir, offsets); err != nil {
		return fmt.Errorf("task %s: %w", tk.id, err)
	}
	return nil
}

func (tk *task) closeStores() error {
	if tk.db == nil {
		return nil
	}
	err := tk.db.Close()
	tk.db = nil
	return err
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
