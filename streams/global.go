package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/state"
)

// globals holds the application's global stores (Kafka Streams' global
// state): each is fed by every partition of its topic, loaded fully before
// the stream threads start and kept current by one consumer from then on.
// The stream threads read the stores while the consumer writes them.
type globals struct {
	stores  map[string]state.Store    // store name -> typed store
	engines map[string]state.RawStore // topic -> engine
	db      *state.PebbleDB
	cl      *kgo.Client
	done    chan struct{}
}

// typed returns the global stores for the tasks; nil when there are none.
func (g *globals) typed() map[string]state.Store {
	if g == nil {
		return nil
	}
	return g.stores
}

// startGlobals opens the global stores afresh, loads every partition of
// their topics up to the current end offsets, and starts keeping them
// current. It returns nil when the topology has no global table.
func (a *App) startGlobals(ctx context.Context, brokers []string, adm *kadm.Client, log *slog.Logger) (*globals, error) {
	if len(a.graph.Globals) == 0 {
		return nil, nil
	}
	g := &globals{stores: make(map[string]state.Store), engines: make(map[string]state.RawStore), done: make(chan struct{})}
	dir := filepath.Join(a.cfg.stateDir, a.cfg.appID, "global")
	// A global store is a copy of its topic: rebuilt at each start rather
	// than trusted across a crash.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("wipe global state: %w", err)
	}
	var topics []string
	for name, gs := range a.graph.Globals {
		var raw state.RawStore
		if gs.Builder.Config().InMemory {
			raw = state.NewMemoryStore(name)
		} else {
			if g.db == nil {
				db, err := state.OpenPebble(dir, a.cfg.logger)
				if err != nil {
					return nil, fmt.Errorf("global state: %w", err)
				}
				g.db = db
			}
			raw = g.db.Store(name)
		}
		raw = &lockedStore{inner: raw}
		g.engines[gs.Topic] = raw
		g.stores[name] = gs.Builder.Build(raw, gs.Topic)
		topics = append(topics, gs.Topic)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if a.cfg.guarantee == ExactlyOnceV2 {
		// Committed records to the high watermark, which waits for the
		// transactions open now; the markers too, so that a partition
		// ending in one is read to its end.
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		g.close()
		return nil, fmt.Errorf("list end offsets of global topics: %w", err)
	}
	if err := ends.Error(); err != nil {
		g.close()
		return nil, fmt.Errorf("global topics: %w", err)
	}
	remaining := make(map[string]map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if remaining[o.Topic] == nil {
				remaining[o.Topic] = make(map[int32]int64)
			}
			remaining[o.Topic][o.Partition] = o.Offset
		}
	})
	g.cl, err = kgo.NewClient(append(opts, a.cfg.clientOpts...)...)
	if err != nil {
		g.close()
		return nil, fmt.Errorf("global consumer: %w", err)
	}
	var loaded int64
	for len(remaining) > 0 {
		n, err := g.poll(ctx, func(r *kgo.Record) {
			if r.Offset+1 >= remaining[r.Topic][r.Partition] {
				delete(remaining[r.Topic], r.Partition)
				if len(remaining[r.Topic]) == 0 {
					delete(remaining, r.Topic)
				}
			}
		})
		loaded += n
		if err != nil {
			g.close()
			return nil, err
		}
	}
	log.Info("global stores loaded", "topics", topics, "records", loaded)
	go func() {
		defer close(g.done)
		for ctx.Err() == nil {
			if _, err := g.poll(ctx, nil); err != nil && ctx.Err() == nil {
				log.Error("update global stores", "err", err)
			}
		}
	}()
	return g, nil
}

// poll applies one fetch to the global stores and calls seen with each
// record applied.
func (g *globals) poll(ctx context.Context, seen func(*kgo.Record)) (int64, error) {
	fetches := g.cl.PollFetches(ctx)
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var errs []error
	fetches.EachError(func(topic string, p int32, err error) {
		errs = append(errs, fmt.Errorf("fetch %s[%d]: %w", topic, p, err))
	})
	var n int64
	fetches.EachRecord(func(r *kgo.Record) {
		if r.Key != nil && !r.Attrs.IsControl() {
			raw := g.engines[r.Topic]
			var err error
			if r.Value == nil {
				err = raw.Delete(r.Key)
			} else {
				err = raw.Put(r.Key, r.Value)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("global store of %s: %w", r.Topic, err))
			}
			n++
		}
		if seen != nil {
			seen(r)
		}
	})
	return n, errors.Join(errs...)
}

// close stops the consumer and closes the stores; the updater must have
// stopped (its context cancelled) or never started.
func (g *globals) close() error {
	if g == nil {
		return nil
	}
	if g.cl != nil {
		g.cl.Close()
	}
	if g.db != nil {
		return g.db.Close()
	}
	return nil
}

// stop waits for the updater, whose context the caller has cancelled, and
// closes the stores.
func (g *globals) stop() error {
	if g == nil {
		return nil
	}
	<-g.done
	return g.close()
}

// lockedStore makes a global store's engine safe for the updater and the
// stream threads at once.
type lockedStore struct {
	mu    sync.RWMutex
	inner state.RawStore
}

func (s *lockedStore) Name() string { return s.inner.Name() }

func (s *lockedStore) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.inner.Get(key)
}

func (s *lockedStore) Put(key, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.Put(key, value)
}

func (s *lockedStore) Delete(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.Delete(key)
}

func (s *lockedStore) Scan(from, to []byte, yield func(key, value []byte) bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.inner.Scan(from, to, yield)
}

func (s *lockedStore) ApproximateNumEntries() (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.inner.ApproximateNumEntries()
}

func (s *lockedStore) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inner.Flush()
}
