package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/processor"
)

// thread is one consumer group member and the tasks it runs. Its loop and
// franz-go's rebalance callbacks (which BlockRebalanceOnPoll keeps out of
// the processing part of the loop) share the tasks under mu.
type thread struct {
	app     *App
	id      int
	log     *slog.Logger
	brokers []string
	plan    *plan
	adm     *kadm.Client
	cl      *kgo.Client
	opts    []kgo.Opt // of cl, to connect again after a fencing

	// Under ExactlyOnceV2, sess wraps cl; inTxn says a transaction is
	// open, wrote that something was produced in it, and abortNow that a
	// rebalance dooms it.
	sess     *kgo.GroupTransactSession
	inTxn    bool
	wrote    atomic.Bool
	abortNow bool

	// endMu guards what franz-go's OnPartitionsCallbackBlocked signal
	// shares with the thread: rebalancing, that a rebalance waits for the
	// thread to allow it, and endCancel, which cancels the transaction's
	// End under way.
	endMu       sync.Mutex
	rebalancing bool
	endCancel   context.CancelFunc
	// endTxns counts the EndTxn requests cl wrote: an interrupted End
	// that wrote none cannot have committed.
	endTxns endTxnWrites

	mu         sync.Mutex
	assigned   map[string]map[int32]bool
	tasks      map[processor.TaskID]*task
	restoring  map[processor.TaskID]*restoration
	lastCommit time.Time
	lastPurge  time.Time
	failed     error
	nextGen    bool          // a KIP-848 member
	released   bool          // revoked partitions since the last assignment
	stopping   bool          // set by shutdown: revocations no longer commit
	purged     chan struct{} // closed once the last purge request is done

	partitions map[string]knownCount // sink topic -> partition count, for partitioners

	// now is the wall-clock time of the record being processed (or of the
	// punctuation or commit under way), against which send measures the
	// end-to-end latency of what the record makes the sinks send, as Kafka
	// Streams measures it against the system time it caches per record:
	// one clock read per input record instead of one per output record.
	now time.Time
	// produced counts the records the thread's sinks sent.
	produced *atomic.Int64
	// latency holds the end-to-end latency histogram of each topic the
	// sinks sent to, and lastLatency the one of the last topic: a sink's
	// records come in runs, so most lookups compare one string, whose
	// bytes are the sink's own, instead of hashing it.
	latency     map[string]prometheus.Observer
	lastLatency topicLatency
	// sentFn is th.sent bound once: a method value made per record would
	// be allocated per record.
	sentFn func(*kgo.Record, error)
	// out hands what the thread produces to cl.
	out *outbox

	prodMu  sync.Mutex
	prodErr error
}

func newThread(a *App, id int, brokers []string, p *plan, nextGen bool, adm *kadm.Client) (*thread, error) {
	th := &thread{
		app: a, id: id, brokers: brokers, plan: p, adm: adm,
		log:        a.cfg.logger.With("application.id", a.cfg.appID, "thread", id),
		assigned:   make(map[string]map[int32]bool),
		tasks:      make(map[processor.TaskID]*task),
		restoring:  make(map[processor.TaskID]*restoration),
		partitions: make(map[string]knownCount),
		nextGen:    nextGen,
		produced:   a.metrics.producedCounter(),
		latency:    make(map[string]prometheus.Observer),
	}
	th.sentFn = th.sent
	for topic, n := range p.partitions {
		th.partitions[topic] = knownCount{n: n, read: time.Now()}
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(a.clientID(id)),
		kgo.ConsumerGroup(a.cfg.appID),
		kgo.ConsumeTopics(p.sourceTopics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(th.onAssigned),
		kgo.OnPartitionsRevoked(th.onRevoked),
		kgo.OnPartitionsLost(th.onLost),
		kgo.RecordPartitioner(partitioner{keyed: kgo.StickyKeyPartitioner(nil)}),
		kgo.ProducerLinger(5 * time.Millisecond),
		// Kafka Streams' producer leaves compression.type at none, and
		// so does this one: franz-go's default, snappy, costs the thread
		// and the broker (which decompresses to validate) more CPU than
		// a loopback or LAN link saves. ClientOpts can set one.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}
	if a.cfg.instanceID != "" {
		opts = append(opts, kgo.InstanceID(fmt.Sprintf("%s-%d", a.cfg.instanceID, id)))
	}
	if nextGen {
		opts = append(opts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.RangeBalancer()))
	} else {
		// Only the range assignor keeps co-partitioned topics together.
		balancer := kgo.CooperativeStickyBalancer()
		if coPartitioned(a.subs) {
			balancer = kgo.RangeBalancer()
		}
		if a.cfg.standbys > 0 {
			// The task balancer first; the other as a second choice, which
			// the group agrees on while some members (a rolling upgrade)
			// do not offer the task balancer.
			opts = append(opts, kgo.Balancers(&taskBalancer{th: th}, balancer))
		} else {
			opts = append(opts, kgo.Balancers(balancer))
		}
	}
	th.opts = append(opts, a.cfg.clientOpts...)
	if err := th.connect(); err != nil {
		return nil, err
	}
	th.out = newOutbox()
	return th, nil
}

// coPartitioned reports whether some subtopology reads several topics that
// must be assigned together.
func coPartitioned(subs []engine.Subtopology) bool {
	for _, s := range subs {
		if len(s.SourceTopics)+len(s.SourcePatterns) > 1 {
			return true
		}
	}
	return false
}

// partitioner honours a partition chosen by the runtime (changelogs,
// Partitioner sinks) and otherwise hashes the key as Kafka does.
type partitioner struct{ keyed kgo.Partitioner }

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return topicPartitioner{keyed: p.keyed.ForTopic(topic)}
}

type topicPartitioner struct{ keyed kgo.TopicPartitioner }

func (topicPartitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (p topicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition >= 0 && int(r.Partition) < n {
		return int(r.Partition)
	}
	return p.keyed.Partition(r, n)
}

// partitionCountMaxAge is how long a sink partitioner trusts a partition
// count before it is read again, Kafka's metadata.max.age.ms default.
const partitionCountMaxAge = 5 * time.Minute

type knownCount struct {
	n    int32
	read time.Time
}

// partitionCount returns a sink topic's partition count for its
// partitioner: the thread's copy, read from the cluster when the topic is
// new to it (a topic created after startup) or the copy is older than
// partitionCountMaxAge (partitions added since). It returns -1 when the
// topic does not exist or cannot be described.
func (th *thread) partitionCount(topic string) int32 {
	now := time.Now()
	if c, ok := th.partitions[topic]; ok && now.Sub(c.read) < partitionCountMaxAge {
		return c.n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tds, err := th.adm.ListTopics(ctx, topic)
	td, ok := tds[topic]
	if err != nil || !ok || td.Err != nil || len(td.Partitions) == 0 {
		th.log.Warn("partition count unknown", "topic", topic, "err", errors.Join(err, td.Err))
		return -1
	}
	n := int32(len(td.Partitions))
	th.partitions[topic] = knownCount{n: n, read: now}
	return n
}

func (th *thread) produceFailed(err error) {
	th.prodMu.Lock()
	if th.prodErr == nil {
		th.prodErr = err
	}
	th.prodMu.Unlock()
}

// clearProduceErr forgets the failed produces of an aborted transaction.
func (th *thread) clearProduceErr() {
	th.prodMu.Lock()
	th.prodErr = nil
	th.prodMu.Unlock()
}

func (th *thread) produceErr() error {
	th.prodMu.Lock()
	defer th.prodMu.Unlock()
	return th.prodErr
}

// records recycles the records the threads produce: a record is put back
// by its promise, after which franz-go no longer reads it. A word count
// produces three records per word; reusing them takes that much garbage
// off the collector.
var records = sync.Pool{New: func() any { return new(kgo.Record) }}

// sendRecord produces r, taken from records, through the thread's outbox;
// its promise puts it back once it is acknowledged or has failed.
func (th *thread) sendRecord(r *kgo.Record, promise func(*kgo.Record, error)) {
	if !th.wrote.Load() {
		th.wrote.Store(true)
	}
	th.out.add(th.cl, r, promise)
}

// recycle returns a produced record to records.
func recycle(r *kgo.Record) {
	*r = kgo.Record{}
	records.Put(r)
}

// send produces a task's output record.
func (th *thread) send(o engine.OutputRecord) {
	r := records.Get().(*kgo.Record)
	r.Topic, r.Partition, r.Key, r.Value, r.Timestamp = o.Topic, o.Partition, o.Key, o.Value, o.Timestamp
	if len(o.Headers) > 0 {
		r.Headers = make([]kgo.RecordHeader, len(o.Headers))
		for i, h := range o.Headers {
			r.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	th.produced.Add(1)
	if !o.Timestamp.IsZero() {
		th.sinkLatency(o.Topic).Observe(th.now.Sub(o.Timestamp).Seconds())
	}
	th.sendRecord(r, th.sentFn)
}

// topicLatency is a topic's end-to-end latency histogram.
type topicLatency struct {
	topic string
	o     prometheus.Observer
}

// sinkLatency returns the end-to-end latency histogram of topic.
func (th *thread) sinkLatency(topic string) prometheus.Observer {
	if l := th.lastLatency; l.o != nil && l.topic == topic {
		return l.o
	}
	o, ok := th.latency[topic]
	if !ok {
		o = th.app.metrics.e2e.WithLabelValues(topic)
		th.latency[topic] = o
	}
	th.lastLatency = topicLatency{topic, o}
	return o
}

// sent is the promise of the records send produces.
func (th *thread) sent(r *kgo.Record, err error) {
	if err != nil {
		th.produceFailed(fmt.Errorf("produce to %s: %w", r.Topic, err))
	}
	recycle(r)
}

func (th *thread) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.released {
		th.released = false
		th.app.nudgeThreads(th)
	}
	for topic, parts := range assigned {
		if th.assigned[topic] == nil {
			th.assigned[topic] = make(map[int32]bool)
		}
		for _, p := range parts {
			th.assigned[topic][p] = true
		}
	}
	th.log.Info("partitions assigned", "partitions", assigned)
	th.app.standbys.rebalanced()
}

func (th *thread) unassign(lost map[string][]int32) []processor.TaskID {
	var ids []processor.TaskID
	for topic, parts := range lost {
		for _, p := range parts {
			delete(th.assigned[topic], p)
			th.app.metrics.dropLag(topic, p)
			id := processor.TaskID{Subtopology: th.plan.subOf[topic], Partition: p}
			th.stopRestore(id)
			if _, ok := th.tasks[id]; ok && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

func (th *thread) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	th.mu.Lock()
	defer th.mu.Unlock()
	th.log.Info("partitions revoked", "partitions", revoked)
	defer th.app.standbys.rebalanced()
	if th.app.aborted() || th.stopping {
		return
	}
	if th.nextGen && len(revoked) > 0 {
		th.released = true
	}
	if th.sess != nil {
		// The session aborts the open transaction at its next end: the
		// revoked tasks' state has effects of it.
		th.abortNow = true
		for _, id := range th.unassign(revoked) {
			th.closeTask(id, false)
		}
		return
	}
	err := th.commit(ctx)
	switch {
	case errors.Is(err, errTaskMigrated):
		th.log.Warn("tasks migrated before their commit, closing them dirty", "err", err)
	case err != nil:
		th.fail(fmt.Errorf("commit on revocation: %w", err))
	}
	for _, id := range th.unassign(revoked) {
		th.closeTask(id, err == nil)
	}
}

func (th *thread) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	if len(lost) == 0 {
		return
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	th.log.Warn("partitions lost", "partitions", lost)
	defer th.app.standbys.rebalanced()
	th.abortNow = true
	for _, id := range th.unassign(lost) {
		th.closeTask(id, false)
	}
}

func (th *thread) fail(err error) {
	if th.failed == nil {
		th.failed = err
	}
}

// closeTask closes a task; a clean close (after a successful commit)
// writes its checkpoint, a dirty one removes it so that its state is
// rebuilt from the changelog next time.
func (th *thread) closeTask(id processor.TaskID, clean bool) {
	th.now = time.Now()
	tk := th.tasks[id]
	delete(th.tasks, id)
	th.app.local.remove(id)
	th.app.metrics.tasks.Add(-1)
	var errs []error
	if !th.app.aborted() {
		errs = append(errs, tk.t.Close())
		if clean {
			errs = append(errs, tk.checkpoint())
		} else {
			errs = append(errs, tk.removeCheckpoint())
		}
	}
	errs = append(errs, tk.closeStores())
	if err := errors.Join(errs...); err != nil {
		th.log.Error("close task", "task", id.String(), "err", err)
	}
	th.log.Info("task closed", "task", id.String(), "clean", clean)
}

// closeAllDirty closes every task dirty (without a checkpoint), as Kafka
// Streams does when the group has moved its tasks away before a commit (the
// progress since the last commit belongs to whoever owns the partitions
// now) and when a transaction aborts (the stores hold its effects).
func (th *thread) closeAllDirty() {
	for id := range th.tasks {
		th.closeTask(id, false)
	}
}

// ensureTasks starts opening a task for every assigned partition that
// lacks one, and installs those whose restore has finished.
func (th *thread) ensureTasks(ctx context.Context) error {
	if err := th.installRestored(); err != nil {
		return err
	}
	for _, topic := range slices.Sorted(maps.Keys(th.assigned)) {
		for p := range th.assigned[topic] {
			id := processor.TaskID{Subtopology: th.plan.subOf[topic], Partition: p}
			if _, ok := th.tasks[id]; ok {
				continue
			}
			if _, ok := th.restoring[id]; ok {
				continue
			}
			th.startRestore(ctx, id)
		}
	}
	return nil
}

// commit flushes every task's stores, waits for everything produced, then
// commits the consumed offsets and writes checkpoints.
func (th *thread) commit(ctx context.Context) error {
	th.lastCommit = time.Now()
	th.now = th.lastCommit
	began := th.lastCommit
	var errs []error
	for _, tk := range th.tasks {
		errs = append(errs, tk.t.Flush())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	th.out.drain(th.cl)
	if th.sess != nil {
		return th.commitTxn(ctx, began)
	}
	if err := th.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush producer: %w", err)
	}
	if err := th.produceErr(); err != nil {
		return err
	}
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	var committed []*task
	for _, tk := range th.tasks {
		if tk.dirty {
			tk.commitOffsets(offsets)
			committed = append(committed, tk)
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	var commitErrs []error
	th.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErrs = append(commitErrs, err)
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					commitErrs = append(commitErrs, fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, err))
				}
			}
		}
	})
	if len(commitErrs) > 0 {
		if migrated(commitErrs) {
			return fmt.Errorf("commit offsets: %w: %w", errTaskMigrated, errors.Join(commitErrs...))
		}
		return fmt.Errorf("commit offsets: %w", errors.Join(commitErrs...))
	}
	th.app.metrics.commits.Add(1)
	th.app.metrics.commit.Observe(time.Since(began).Seconds())
	for _, tk := range committed {
		tk.dirty = false
		if err := tk.checkpoint(); err != nil {
			return err
		}
	}
	return nil
}

// errTaskMigrated marks a commit refused because the member no longer owns
// the partitions at the generation or member epoch it committed with
// (Kafka Streams' TaskMigratedException). franz-go has already retried a
// KIP-848 commit answered STALE_MEMBER_EPOCH with the epoch its heartbeat
// learnt, for the partitions still owned; what remains is not fatal: the
// thread closes its tasks dirty and carries on with what the group
// assigns it.
var errTaskMigrated = errors.New("tasks migrated")

// migrated reports whether every error of a commit is one with which the
// group says the member's assignment changed under it.
func migrated(errs []error) bool {
	for _, e := range errs {
		switch {
		case errors.Is(e, kerr.StaleMemberEpoch), errors.Is(e, kerr.FencedMemberEpoch),
			errors.Is(e, kerr.IllegalGeneration), errors.Is(e, kerr.UnknownMemberID),
			errors.Is(e, kerr.RebalanceInProgress):
		default:
			return false
		}
	}
	return len(errs) > 0
}

// run is the thread's loop: poll, create tasks, process, punctuate, commit.
// A poll holds rebalances back (BlockRebalanceOnPoll) until the thread
// allows them after its step, or after shutdown's final commit when the
// loop ends, so that no revocation runs while the thread commits.
func (th *thread) run(ctx context.Context) error {
	defer th.shutdown(ctx)
	th.lastCommit = time.Now()
	th.lastPurge = th.lastCommit
	for {
		pollCtx, cancel := context.WithTimeout(ctx, th.app.cfg.pollTimeout)
		fetches := th.cl.PollRecords(pollCtx, 10000)
		cancel()
		if ctx.Err() != nil || th.app.aborted() {
			return ctx.Err()
		}
		err := th.step(ctx, fetches)
		th.out.ship(th.cl, nil)
		if errors.Is(err, errFenced) || errors.Is(err, errEndInterrupted) {
			th.log.Warn("rejoining with a new producer", "err", err)
			err = th.rejoin()
		}
		if err != nil {
			if th.sess != nil {
				th.mu.Lock()
				th.fail(err) // no final commit of the failed transaction
				th.mu.Unlock()
			}
			return err
		}
		th.allowRebalance()
	}
}

// rejoinable reports whether err is franz-go's notice that the group
// member was kicked out or could not join (kgo.ErrGroupSession) for a
// reason a rejoin cures: the coordinator forgot the member or fenced its
// generation or epoch (a broker restart, a session timeout under load),
// or could not be reached. franz-go has already called the lost callback,
// which closed the thread's tasks, and it rejoins on its own; Kafka
// Streams rejoins on these too. Anything else (an authorization failure,
// an invalid group id) stops the thread.
func rejoinable(err error) bool {
	var gs *kgo.ErrGroupSession
	if !errors.As(err, &gs) {
		return false
	}
	var ke *kerr.Error
	if !errors.As(gs.Err, &ke) {
		return true // the network, a timeout
	}
	switch ke {
	case kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.RebalanceInProgress,
		kerr.FencedMemberEpoch, kerr.StaleMemberEpoch:
		return true
	}
	return ke.Retriable
}

func (th *thread) step(ctx context.Context, fetches kgo.Fetches) error {
	th.mu.Lock()
	defer th.mu.Unlock()
	if th.failed != nil {
		return th.failed
	}
	var ferr error
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		case rejoinable(err):
			th.log.Warn("group membership lost, rejoining", "err", err)
		default:
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s[%d]: %w", topic, p, err))
		}
	})
	if ferr != nil {
		return ferr
	}
	if th.inTxn && th.missingTasks() {
		// A restore must not hold a transaction open past its timeout.
		if err := th.commit(ctx); err != nil {
			return err
		}
	}
	if err := th.ensureTasks(ctx); err != nil {
		return err
	}
	if err := th.begin(); err != nil {
		return err
	}
	var procErr error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if procErr != nil || len(fp.Records) == 0 {
			return
		}
		id := processor.TaskID{Subtopology: th.plan.subOf[fp.Topic], Partition: fp.Partition}
		tk, ok := th.tasks[id]
		if !ok {
			if _, restoring := th.restoring[id]; restoring {
				th.rewind(fp) // fetched before the pause: processed once restored
			}
			return
		}
		stats := th.app.metrics.task(id)
		var processed int
		defer func() {
			if processed > 0 {
				r := fp.Records[processed-1]
				tk.consumed[r.Topic] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
				tk.dirty = true
				stats.processed.Add(int64(processed))
			}
		}()
		began := time.Now()
		for _, r := range fp.Records {
			th.now = began
			if err := tk.t.Process(inputRecord(r)); err != nil {
				procErr = fmt.Errorf("task %s: %w", id, err)
				return
			}
			done := time.Now()
			stats.process.Observe(done.Sub(began).Seconds())
			began = done
			processed++
		}
		last := fp.Records[len(fp.Records)-1]
		th.app.metrics.setLag(fp.Topic, fp.Partition, fp.HighWatermark-last.Offset-1)
	})
	if procErr != nil {
		return procErr
	}
	now := time.Now()
	th.now = now
	commitNow := th.abortNow || now.Sub(th.lastCommit) >= th.app.cfg.commitInterval
	for _, tk := range th.tasks {
		if err := tk.t.Punctuate(now); err != nil {
			return fmt.Errorf("task %s: %w", tk.id, err)
		}
		if tk.t.CommitRequested() {
			commitNow = true
		}
	}
	if commitNow {
		err := th.commit(ctx)
		switch {
		case errors.Is(err, errTaskMigrated):
			th.log.Warn("tasks migrated before their commit, closing them dirty", "err", err)
			th.closeAllDirty()
		case err != nil:
			return err
		default:
			th.maybePurge(ctx)
		}
	}
	return nil
}

// maybePurge deletes the records of repartition topics below the offsets
// the tasks have committed, as Kafka Streams does after a commit: at most
// once per purge interval, with one request in flight, in the background.
// Call it only after a successful commit, so that every task's consumed
// offsets are committed ones. A failed purge is logged and processing goes
// on; the next purge deletes up to newer offsets anyway.
func (th *thread) maybePurge(ctx context.Context) {
	now := time.Now()
	if now.Sub(th.lastPurge) < th.app.cfg.purgeInterval || th.purging() {
		return
	}
	th.lastPurge = now
	offsets := make(kadm.Offsets)
	for _, tk := range th.tasks {
		for topic, eo := range tk.consumed {
			if th.plan.repartition[topic] {
				offsets.AddOffset(topic, tk.id.Partition, eo.Offset, -1)
			}
		}
	}
	if len(offsets) == 0 {
		return
	}
	done := make(chan struct{})
	th.purged = done
	go func() {
		defer close(done)
		resps, err := th.adm.DeleteRecords(ctx, offsets)
		if err == nil {
			err = resps.Error()
		}
		switch {
		case err != nil && ctx.Err() == nil:
			th.log.Warn("purge repartition topics", "err", err)
		case err == nil:
			th.log.Debug("purged repartition topics", "offsets", offsets)
		}
	}()
}

// purging reports whether a purge request is in flight.
func (th *thread) purging() bool {
	if th.purged == nil {
		return false
	}
	select {
	case <-th.purged:
		return false
	default:
		return true
	}
}

func inputRecord(r *kgo.Record) engine.InputRecord {
	var headers []processor.Header
	for _, h := range r.Headers {
		headers = append(headers, processor.Header{Key: h.Key, Value: h.Value})
	}
	return engine.InputRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: headers}
}

// shutdown commits and closes every task and leaves the group, within the
// App's CloseTimeout even when the cluster cannot be reached; after a
// simulated crash it only releases resources. A task is closed clean only
// if the final commit succeeded. Rebalances the last poll held back go on
// only once the tasks are closed.
func (th *thread) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), th.app.cfg.closeTimeout)
	defer cancel()
	th.mu.Lock()
	th.stopping = true
	for id := range th.restoring {
		th.stopRestore(id)
	}
	clean := !th.app.aborted() && th.failed == nil
	if clean {
		if err := th.commit(ctx); err != nil {
			th.log.Error("final commit", "err", err)
			clean = false
		}
	}
	if th.app.aborted() {
		th.out.discard() // as a killed process would lose them
	}
	th.out.drain(th.cl)
	if th.sess != nil && !th.app.aborted() && th.inTxn {
		// Not committed: abort, and let the tasks restore next time.
		if _, err := th.sess.End(ctx, kgo.TryAbort); err != nil {
			th.log.Error("abort transaction", "err", err)
		}
		th.inTxn, clean = false, false
	}
	for id := range th.tasks {
		th.closeTask(id, clean)
	}
	purged := th.purged
	th.mu.Unlock()
	if purged != nil {
		select {
		case <-purged:
		case <-ctx.Done():
		}
	}
	th.allowRebalance()
	if err := th.cl.LeaveGroupContext(ctx); err != nil {
		th.log.Warn("leave group", "err", err)
	}
	th.out.close(th.cl)
	th.cl.Close()
	th.log.Info("thread stopped")
}
