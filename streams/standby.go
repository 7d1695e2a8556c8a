package streams

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// standbyRefresh is how often an instance reads the group's membership and
// assignment to place standbys when no rebalance has told it to sooner.
const standbyRefresh = 5 * time.Second

// standbyCheckpointEvery bounds how often a standby flushes its stores and
// writes its checkpoint while it keeps up: at most the App's commit
// interval, and at least every this long.
const standbyCheckpointEvery = 5 * time.Second

// standbys keeps this instance's standby tasks: warm copies of the
// persistent stores of tasks other instances run, fed from their
// changelogs into the state directory layout an active task uses, with
// checkpoints, so that the task restores (almost) nothing when it moves
// here.
//
// Placement needs no help from the group protocol, so it works under both:
// every instance derives it from the group's membership and assignment
// (members), which every member can describe. For each stateful task the
// instances other than the one running it active are ranked by rendezvous
// hashing of (instance, task), and the first StandbyReplicas of them keep
// a standby. Every instance computes the same ranking, so two standbys of
// a task are on different instances and none on its active instance; it
// is recomputed after every rebalance of a local thread and every
// standbyRefresh. A task that the group shows with no owner (mid
// rebalance) keeps its standbys as they are.
type standbys struct {
	app  *App
	th   *thread // no group member: the restore helpers' dependencies
	kick chan struct{}

	mu      sync.Mutex
	running map[processor.TaskID]*standby
	closed  bool

	// warmups are the warm-up replicas the task balancer assigned each
	// local thread (classic protocol), kept like standbys until probeAt,
	// when the instance asks for a probing rebalance.
	warmMu  sync.Mutex
	warmups map[int][]processor.TaskID
	probeAt time.Time
}

// standby is one standby task's goroutine.
type standby struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// finished reports whether the standby's goroutine has returned.
func (sb *standby) finished() bool {
	select {
	case <-sb.done:
		return true
	default:
		return false
	}
}

func newStandbys(a *App, th *thread) *standbys {
	return &standbys{app: a, th: th, kick: make(chan struct{}, 1), running: make(map[processor.TaskID]*standby),
		warmups: make(map[int][]processor.TaskID)}
}

// setWarmups records the warm-up replicas of a thread's new assignment.
func (s *standbys) setWarmups(thread int, ids []processor.TaskID) {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	had := len(s.allWarmupsLocked()) > 0
	s.warmups[thread] = ids
	switch now := len(s.allWarmupsLocked()) > 0; {
	case now && !had:
		s.probeAt = time.Now().Add(s.app.cfg.probeInterval)
	case !now:
		s.probeAt = time.Time{}
	}
	s.rebalanced()
}

func (s *standbys) allWarmupsLocked() []processor.TaskID {
	var out []processor.TaskID
	for _, ids := range s.warmups {
		out = append(out, ids...)
	}
	return out
}

// untilProbe returns how long until the next probing rebalance, -1 if
// none is due.
func (s *standbys) untilProbe() time.Duration {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	if s.probeAt.IsZero() {
		return -1
	}
	return max(time.Until(s.probeAt), 0)
}

// warm returns the instance's warm-up replicas, and whether it is time for
// a probing rebalance.
func (s *standbys) warm() (ids []processor.TaskID, probe bool) {
	s.warmMu.Lock()
	defer s.warmMu.Unlock()
	ids = s.allWarmupsLocked()
	probe = len(ids) > 0 && !s.probeAt.IsZero() && !time.Now().Before(s.probeAt)
	if probe {
		s.probeAt = time.Now().Add(s.app.cfg.probeInterval)
	}
	return ids, probe
}

// rebalanced tells the standbys that a local thread's assignment changed.
func (s *standbys) rebalanced() {
	if s == nil {
		return
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run places the standbys until ctx is done, then stops them all.
func (s *standbys) run(ctx context.Context) {
	defer s.stopAll()
	// A rebalance completes member by member: place again shortly after
	// one, once the other members have their assignment too.
	timer := time.NewTimer(0)
	defer timer.Stop()
	followUp := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			timer.Reset(100 * time.Millisecond)
			followUp = true
			continue
		case <-timer.C:
		}
		switch err := s.place(ctx); {
		case err == nil || ctx.Err() != nil:
		case errors.Is(err, kerr.GroupIDNotFound) || kerr.IsRetriable(err):
			s.th.log.Debug("place standby tasks", "err", err) // the group is forming
		default:
			s.th.log.Warn("place standby tasks", "err", err)
		}
		next := standbyRefresh
		if followUp {
			next, followUp = time.Second, false
		}
		if until := s.untilProbe(); until >= 0 && until < next {
			next = until
		}
		timer.Reset(next)
	}
}

// place reads the group and starts and stops standbys to match.
func (s *standbys) place(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := s.app.members(ctx)
	if err != nil {
		return err
	}
	self := s.app.instanceKey()
	hosts, known := s.app.standbyPlacement(members)
	warmups, probe := s.warm()
	if probe {
		s.th.log.Info("probing rebalance", "warmups", warmups)
		s.app.forceRebalance()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	for _, id := range s.app.standbyTasks() {
		if !known[id] {
			continue
		}
		want := (slices.Contains(hosts[id], self) || slices.Contains(warmups, id)) && !s.app.local.has(id)
		sb, have := s.running[id]
		if have && sb.finished() {
			delete(s.running, id) // failed: start it again
			have = false
		}
		switch {
		case want && !have:
			s.start(ctx, id)
		case !want && have:
			s.stopLocked(id)
		}
	}
	return nil
}

// forceRebalance makes the instance's first thread rejoin the group.
func (a *App) forceRebalance() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.threads) > 0 {
		a.threads[0].cl.ForceRebalance()
	}
}

// standbyTasks returns the tasks that can have standbys: those of
// subtopologies with a persistent, changelogged store.
func (a *App) standbyTasks() []processor.TaskID {
	var out []processor.TaskID
	for _, sub := range a.subs {
		if !slices.ContainsFunc(sub.Stores, standbyStore) {
			continue
		}
		for p := range a.local.partitionCount(sub.ID) {
			out = append(out, processor.TaskID{Subtopology: sub.ID, Partition: p})
		}
	}
	return out
}

// standbyStore reports whether a standby keeps a store warm: a persistent
// store with a changelog of its own. In-memory stores are rebuilt by the
// active task anyway, and a table restored from its source topic is
// restored up to the committed offset, which a standby cannot know ahead.
func standbyStore(sc state.Config) bool {
	return sc.Logging && !sc.InMemory && sc.SourceTopic == ""
}

// standbyPlacement returns the instances keeping standbys of each task
// that can have them, and which tasks have an active owner in the group
// (the others are mid-rebalance: their placement is not known).
func (a *App) standbyPlacement(members []member) (hosts map[processor.TaskID][]string, known map[processor.TaskID]bool) {
	subOf := a.local.topics()
	owner := make(map[processor.TaskID]string)
	for _, m := range members {
		for topic, ps := range m.partitions {
			sub, ok := subOf[topic]
			if !ok {
				continue
			}
			for _, p := range ps {
				owner[processor.TaskID{Subtopology: sub, Partition: p}] = m.instance
			}
		}
	}
	hosts, known = make(map[processor.TaskID][]string), make(map[processor.TaskID]bool)
	for _, id := range a.standbyTasks() {
		active, ok := owner[id]
		if !ok {
			continue
		}
		known[id] = true
		var candidates []string
		for _, m := range members {
			if m.instance != active {
				candidates = append(candidates, m.instance)
			}
		}
		slices.SortFunc(candidates, func(x, y string) int {
			wx, wy := rendezvous(x, id), rendezvous(y, id)
			switch {
			case wx > wy:
				return -1
			case wx < wy:
				return 1
			}
			return 0
		})
		hosts[id] = candidates[:min(len(candidates), a.cfg.standbys)]
	}
	return hosts, known
}

// rendezvous is the weight of an instance for a task in rendezvous
// (highest random weight) hashing: FNV-1a of both, mixed by splitmix64's
// finalizer so that similar keys spread.
func rendezvous(instance string, id processor.TaskID) uint64 {
	h := fnv.New64a()
	h.Write([]byte(instance))
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(id.Subtopology))
	binary.BigEndian.PutUint32(b[4:8], uint32(id.Partition))
	h.Write(b[:8])
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// start runs a standby of id. Call it with s.mu held.
func (s *standbys) start(ctx context.Context, id processor.TaskID) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sb := &standby{cancel: cancel, done: make(chan struct{})}
	s.running[id] = sb
	s.app.metrics.standbys.Add(1)
	go func() {
		defer close(sb.done)
		defer s.app.metrics.standbys.Add(-1)
		if err := s.keep(ctx, id); err != nil && !errors.Is(err, context.Canceled) {
			// Not fatal: the next placement starts it again.
			s.th.log.Warn("standby task failed", "task", id.String(), "err", err)
		}
	}()
}

// release stops the standby of id, if any, and waits until it has written
// its checkpoint and let go of the task's state directory: the task is
// about to run active here.
func (s *standbys) release(id processor.TaskID) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked(id)
}

func (s *standbys) stopLocked(id processor.TaskID) {
	sb, ok := s.running[id]
	if !ok {
		return
	}
	delete(s.running, id)
	sb.cancel()
	<-sb.done
}

func (s *standbys) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id := range s.running {
		s.stopLocked(id)
	}
}

// keep runs a standby of task id until ctx is done: it opens the task's
// stores as an active task would, then applies the records of their
// changelogs as they come, flushing the stores and writing the checkpoint
// at every commit interval (at most standbyCheckpointEvery) and when it
// stops. Under ExactlyOnceV2 it reads committed records only.
func (s *standbys) keep(ctx context.Context, id processor.TaskID) error {
	a := s.app
	sub := a.subs[id.Subtopology]
	tk, err := a.lockTask(ctx, id)
	if err != nil {
		return fmt.Errorf("standby %s: %w", id, err)
	}
	defer func() {
		if err := tk.closeStores(); err != nil {
			s.th.log.Error("close standby task", "task", id.String(), "err", err)
		}
	}()
	ranges, err := s.th.prepareStores(ctx, tk, sub.Stores)
	if err != nil {
		return fmt.Errorf("standby %s: %w", id, err)
	}
	start := make(map[string]map[int32]kgo.Offset)
	storeOf := make(map[string]state.Config) // changelog topic -> store
	for _, sc := range sub.Stores {
		r, ok := ranges[sc.Name]
		switch {
		case !ok:
			continue
		case !standbyStore(sc):
			// The checkpoint keeps the offset of a store the standby
			// does not feed as it found it: its local state stays as it
			// was then.
			if r.start >= 0 {
				tk.changelog[sc.Name] = r.start
			}
			continue
		}
		from := max(r.start, r.logStart)
		tk.changelog[sc.Name] = from
		start[r.topic] = map[int32]kgo.Offset{id.Partition: kgo.NewOffset().At(from)}
		storeOf[r.topic] = sc
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.th.brokers...),
		kgo.ConsumePartitions(start),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(),
	}
	if a.cfg.guarantee == ExactlyOnceV2 {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(append(opts, a.cfg.clientOpts...)...)
	if err != nil {
		return fmt.Errorf("standby %s: client: %w", id, err)
	}
	defer cl.Close()
	a.local.addStandby(tk)
	defer a.local.removeStandby(id)
	log := s.th.log.With("task", id.String())
	log.Info("standby task started", "from", tk.changelog)
	every := min(a.cfg.commitInterval, standbyCheckpointEvery)
	lastCheckpoint := time.Now()
	checkpoint := func() error {
		for _, sc := range storeOf {
			if err := tk.engines[sc.Name].Flush(); err != nil {
				return err
			}
		}
		lastCheckpoint = time.Now()
		return tk.checkpoint()
	}
	for {
		pollCtx, cancel := context.WithTimeout(ctx, every)
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			if a.aborted() {
				return ctx.Err()
			}
			if err := checkpoint(); err != nil {
				return fmt.Errorf("standby %s: %w", id, err)
			}
			log.Info("standby task stopped", "at", tk.changelog)
			return ctx.Err()
		}
		var ferr error
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = errors.Join(ferr, fmt.Errorf("fetch %s[%d]: %w", topic, p, err))
			}
		})
		if ferr != nil {
			return fmt.Errorf("standby %s: %w", id, ferr)
		}
		var applied int64
		var err error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if err != nil || len(fp.Records) == 0 {
				return
			}
			sc := storeOf[fp.Topic]
			var n int64
			n, err = applyChangelog(tk.engines[sc.Name], fp.Records)
			applied += n
			tk.mu.Lock()
			tk.changelog[sc.Name] = fp.Records[len(fp.Records)-1].Offset + 1
			tk.mu.Unlock()
		})
		if err != nil {
			return fmt.Errorf("standby %s: %w", id, err)
		}
		a.metrics.standbyRecords.Add(applied)
		if time.Since(lastCheckpoint) >= every {
			if err := checkpoint(); err != nil {
				return fmt.Errorf("standby %s: %w", id, err)
			}
		}
	}
}

// applyChangelog writes changelog records into a store's engine, as a
// restore does, and returns how many rows it wrote.
func applyChangelog(e state.RawStore, records []*kgo.Record) (int64, error) {
	var n int64
	for _, rec := range records {
		if rec.Key == nil || rec.Attrs.IsControl() {
			continue
		}
		var err error
		if rec.Value == nil {
			err = e.Delete(rec.Key)
		} else {
			err = e.Put(rec.Key, rec.Value)
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// standbyThread returns the thread value the standbys use for the restore
// helpers they share with active tasks: it is no group member.
func standbyThread(a *App, brokers []string, p *plan, adm *kadm.Client, log *slog.Logger) *thread {
	return &thread{app: a, brokers: brokers, plan: p, adm: adm, log: log}
}

// has reports whether the instance runs or restores task id active.
func (l *localTasks) has(id processor.TaskID) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, running := l.running[id]
	return running || l.restoring[id]
}

func (l *localTasks) addStandby(tk *task) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.standby == nil {
		l.standby = make(map[processor.TaskID]*task)
	}
	l.standby[tk.id] = tk
}

func (l *localTasks) removeStandby(id processor.TaskID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.standby, id)
}

// QueryOption modifies an interactive query.
type QueryOption func(*queryConfig)

type queryConfig struct{ stale bool }

// StaleStores lets a query read the standby replicas this instance keeps
// (see StandbyReplicas) for the partitions whose task does not run here:
// Get falls back to a standby where it would fail with ErrNotLocal, and
// Range, PrefixScan and All take in the standbys' partitions. A standby
// lags its active task by what is in flight between the active's changelog
// writes and the standby's fetches, and may still be catching up after it
// started; while the task restores here as an active task, its standby
// has handed its state over and the query fails with ErrRestoring.
// Default: off, only running local tasks are read (Kafka Streams'
// StoreQueryParameters.enableStaleStores).
func StaleStores() QueryOption { return func(c *queryConfig) { c.stale = true } }

// standbyOf returns the standby of id when a stale query may read it
// instead of failing with err.
func (l *localTasks) standbyOf(id processor.TaskID, err error) (*task, error) {
	if !errors.Is(err, ErrNotLocal) {
		return nil, err
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if tk, ok := l.standby[id]; ok {
		return tk, nil
	}
	return nil, err
}

// readable returns the tasks of a subtopology a query reads: the running
// ones, and with stale the standbys of the partitions not running here.
func (l *localTasks) readable(sub int, stale bool) []*task {
	out := l.runningOf(sub)
	if !stale {
		return out
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for id, tk := range l.standby {
		if _, running := l.running[id]; id.Subtopology == sub && !running {
			out = append(out, tk)
		}
	}
	return out
}

// standbyServers returns the ApplicationServers of the instances that keep
// standbys of task id, as placed from members.
func (a *App) standbyServers(members []member, id processor.TaskID) []string {
	hosts, _ := a.standbyPlacement(members)
	var out []string
	for _, m := range members {
		if slices.Contains(hosts[id], m.instance) && m.server != "" {
			out = append(out, m.server)
		}
	}
	return out
}
