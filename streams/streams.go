// Package streams runs topologies against a Kafka-protocol cluster: Riffle's
// own broker, embedded or standalone, or any Kafka cluster, through
// franz-go.
//
// An App joins the consumer group named by its application id with one
// member per thread. Its input partitions are grouped into tasks, one per
// subtopology and partition; each task owns its processors and state stores
// and is created, restored from its changelogs, and closed as the group's
// assignment changes. A task restores on its own goroutine, its input
// partitions paused meanwhile, so that the thread goes on processing its
// other tasks and a rebalance can revoke a restoring task at once
// (OnRestore reports the progress). Processing is at-least-once by default:
// on every commit the stores are flushed (sending their changelog records),
// everything produced is awaited, and only then are the input offsets
// committed. Under ProcessingGuarantee(ExactlyOnceV2) each thread commits
// the input offsets, output and changelog records of a commit in one
// transaction, and a task whose transaction aborts restores its stores
// from the changelogs' committed records.
//
// The group uses the KIP-848 protocol (server-side assignment) when the
// broker offers it, and the classic protocol with cooperative rebalancing
// otherwise.
//
// KeyValueStore reads the Pebble stores of the instance's tasks while they
// run (interactive queries); ApplicationServer advertises where an instance
// answers, AllInstances and QueryMetadataForKey find the instance holding a
// key, and a QueryServer answers over HTTP from any instance, forwarding to
// the owner.
//
// StandbyReplicas keeps warm copies of each task's persistent stores on
// other instances: standby tasks consume the changelogs into the state
// directory layout of an active task and checkpoint as they go, so that a
// task moving to an instance with a standby restores (almost) nothing.
// Every instance derives the placement from the group's membership and
// assignment, under either protocol; StaleStores queries read standbys.
// Under the classic protocol such an application assigns its tasks with
// a lag-aware balancer of its own (KIP-441): a stateful task moves only to
// an instance within AcceptableRecoveryLag of its changelog's end, which
// otherwise warms it up until a probing rebalance.
//
// Run creates the internal topics (repartition topics with the partition
// count set for them or else that of the subtopology writing them,
// compacted changelogs with that of the subtopology owning the store) and
// checks that the source topics of each subtopology are co-partitioned.
// Pattern sources are resolved when Run starts; topics created later are
// not picked up.
//
// A table read from a topic is restored from that topic, up to the
// application's committed offset, instead of a changelog. Global tables
// are loaded from every partition of their topics before the threads
// start, and one consumer keeps them current while the application runs;
// their stores are rebuilt at every start.
//
// Repartition topics are created as Kafka Streams creates them
// (cleanup.policy=delete, retention.ms=-1, segment.bytes=52428800) and kept
// small by the runtime itself: after a commit, at most once per
// RepartitionPurgeInterval, each thread deletes the records below its
// committed offsets with DeleteRecords. User topics are never purged.
package streams

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/topology"
)

// App is a running (or runnable) stream processing application.
type App struct {
	cfg      config
	graph    *engine.Graph
	subs     []engine.Subtopology
	metrics  *metrics
	globals  *globals // set by Run before the threads start
	taskDirs taskDirs
	local    localTasks
	standbys *standbys // set by Run when StandbyReplicas is positive
	// processID names this instance in transactional ids, new at each New
	// (Kafka Streams' process id).
	processID string

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	abort   bool // set by tests simulating a crash
	threads []*thread
}

// nudgeThreads makes the other threads of the instance heartbeat now,
// after th has given partitions up under the KIP-848 protocol. The broker
// hands a released partition to its new owner in that owner's next
// heartbeat response, up to a heartbeat interval (5 s) later; a sibling
// thread waiting for the partition takes it at once instead. Without this
// Threads(2) started slower than one thread: the second thread sat idle
// for the first interval while the first had given it half the partitions.
func (a *App) nudgeThreads(th *thread) {
	a.mu.Lock()
	others := slices.DeleteFunc(slices.Clone(a.threads), func(o *thread) bool { return o == th })
	a.mu.Unlock()
	for _, o := range others {
		go func() {
			// The request is dropped while the heartbeat loop is busy,
			// and the broker must have seen th's release first: repeat.
			for _, d := range nudgeDelays {
				time.Sleep(d)
				o.cl.ForceRebalance()
			}
		}()
	}
}

// nudgeDelays space the heartbeats nudgeThreads asks for.
var nudgeDelays = []time.Duration{10 * time.Millisecond, 40 * time.Millisecond, 150 * time.Millisecond, 500 * time.Millisecond}

// New checks the configuration and returns an App; nothing connects until
// Run.
func New(top *topology.Topology, opts ...Option) (*App, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.appID == "":
		return nil, errors.New("streams: ApplicationID is required")
	case len(cfg.brokers) == 0 && cfg.embedded == nil:
		return nil, errors.New("streams: no Brokers configured and no Embedded broker")
	case cfg.threads < 1:
		return nil, fmt.Errorf("streams: Threads(%d): need at least 1", cfg.threads)
	case cfg.guarantee != AtLeastOnce && cfg.guarantee != ExactlyOnceV2:
		return nil, fmt.Errorf("streams: ProcessingGuarantee(%v): unknown", cfg.guarantee)
	case cfg.commitSet && cfg.commitInterval <= 0:
		return nil, fmt.Errorf("streams: CommitInterval(%v) must be positive", cfg.commitInterval)
	case cfg.closeTimeout <= 0:
		return nil, fmt.Errorf("streams: CloseTimeout(%v) must be positive", cfg.closeTimeout)
	case cfg.standbys < 0:
		return nil, fmt.Errorf("streams: StandbyReplicas(%d) must not be negative", cfg.standbys)
	case cfg.recoveryLag < 0:
		return nil, fmt.Errorf("streams: AcceptableRecoveryLag(%d) must not be negative", cfg.recoveryLag)
	case cfg.probeInterval <= 0:
		return nil, fmt.Errorf("streams: ProbingRebalanceInterval(%v) must be positive", cfg.probeInterval)
	case cfg.purgeInterval < 0:
		return nil, fmt.Errorf("streams: RepartitionPurgeInterval(%v) must not be negative", cfg.purgeInterval)
	}
	if !cfg.commitSet {
		cfg.commitInterval = defaultCommitInterval(cfg.guarantee)
	}
	g := engine.Of(top)
	a := &App{cfg: cfg, processID: newProcessID(), graph: g, subs: g.Subtopologies(cfg.appID), metrics: newMetrics(cfg.appID)}
	if cfg.registerer != nil {
		for _, c := range a.metrics.collectors {
			if err := cfg.registerer.Register(c); err != nil {
				return nil, fmt.Errorf("streams: MetricsRegisterer: %w", err)
			}
		}
	}
	return a, nil
}

// Run starts the embedded broker if configured, creates the internal
// topics, and processes until ctx is cancelled, Close is called, or a task
// fails. On the way out it commits and closes every task and leaves the
// group. It returns nil after a cancellation or Close.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	if a.done != nil {
		a.mu.Unlock()
		cancel()
		return errors.New("streams: Run called twice")
	}
	a.cancel, a.done = cancel, make(chan struct{})
	a.mu.Unlock()
	defer close(a.done)
	defer cancel()

	log := a.cfg.logger.With("application.id", a.cfg.appID)
	brokers := a.cfg.brokers
	if len(brokers) == 0 {
		addr, stop, err := a.cfg.embedded(ctx, filepath.Join(a.cfg.stateDir, "broker"), a.cfg.logger)
		if err != nil {
			return fmt.Errorf("streams: start embedded broker: %w", err)
		}
		defer func() {
			if err := stop(context.WithoutCancel(ctx)); err != nil {
				log.Error("stop embedded broker", "err", err)
			}
		}()
		log.Info("embedded broker started", "addr", addr)
		brokers = []string{addr}
	}
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, a.cfg.clientOpts...)...)
	if err != nil {
		return fmt.Errorf("streams: admin client: %w", err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	plan, err := a.prepareTopics(ctx, adm)
	if err != nil {
		return fmt.Errorf("streams: %w", err)
	}
	nextGen := a.cfg.protocol == GroupProtocolConsumer ||
		a.cfg.protocol == GroupProtocolAuto && supportsKIP848(ctx, adm)
	a.local.mu.Lock()
	a.local.partitions, a.local.subOf, a.local.nextGen = plan.subParts, plan.subOf, nextGen
	a.local.admCl, a.local.adm = admCl, adm
	a.local.mu.Unlock()
	defer func() {
		a.local.mu.Lock()
		a.local.admCl, a.local.adm = nil, nil
		a.local.mu.Unlock()
	}()
	globalCtx, stopGlobals := context.WithCancel(ctx)
	a.globals, err = a.startGlobals(globalCtx, brokers, adm, log)
	if err != nil {
		stopGlobals()
		return fmt.Errorf("streams: %w", err)
	}
	defer func() {
		stopGlobals()
		if err := a.globals.stop(); err != nil {
			log.Error("close global stores", "err", err)
		}
	}()
	log.Info("starting", "threads", a.cfg.threads, "kip848", nextGen, "topics", plan.sourceTopics)

	g, gctx := errgroup.WithContext(ctx)
	if a.cfg.consoleURL != "" {
		g.Go(func() error { a.reportToConsole(gctx, log); return nil })
	}
	if a.cfg.standbys > 0 {
		a.standbys = newStandbys(a, standbyThread(a, brokers, plan, adm, log.With("standby", true)))
		g.Go(func() error { a.standbys.run(gctx); return nil })
	}
	for i := range a.cfg.threads {
		th, err := newThread(a, i, brokers, plan, nextGen, adm)
		if err != nil {
			cancel()
			_ = g.Wait()
			return fmt.Errorf("streams: %w", err)
		}
		a.mu.Lock()
		a.threads = append(a.threads, th)
		a.mu.Unlock()
		g.Go(func() error { return th.run(gctx) })
	}
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("streams: %w", err)
	}
	return nil
}

// Close stops a running App, as cancelling Run's context does, and waits
// for Run to return.
func (a *App) Close() {
	a.mu.Lock()
	cancel, done := a.cancel, a.done
	a.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// plan is the runtime's view of the topology against the cluster.
type plan struct {
	sourceTopics []string
	subOf        map[string]int   // source topic -> subtopology
	partitions   map[string]int32 // every source, sink and internal topic known
	subParts     []int32          // partitions per subtopology
	repartition  map[string]bool  // the application's repartition topics
}

// prepareTopics resolves source topics, checks co-partitioning, computes
// internal topic partition counts and creates the internal topics.
func (a *App) prepareTopics(ctx context.Context, adm *kadm.Client) (*plan, error) {
	p := &plan{subOf: make(map[string]int), partitions: make(map[string]int32), subParts: make([]int32, len(a.subs))}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	for _, td := range all {
		if td.Err == nil {
			p.partitions[td.Topic] = int32(len(td.Partitions))
		}
	}
	internal := make(map[string]bool)
	for _, s := range a.subs {
		for _, t := range s.RepartitionSources {
			internal[t] = true
		}
	}
	p.repartition = internal
	sources := make([][]string, len(a.subs))
	for i, s := range a.subs {
		sources[i] = slices.Clone(s.SourceTopics)
		for _, re := range s.SourcePatterns {
			sources[i] = append(sources[i], matching(all.Names(), re)...)
		}
		for _, t := range sources[i] {
			if _, ok := p.partitions[t]; !ok && !internal[t] {
				return nil, fmt.Errorf("source topic %q of subtopology %d does not exist", t, s.ID)
			}
			p.subOf[t] = s.ID
			p.sourceTopics = append(p.sourceTopics, t)
		}
	}
	// Repartition topics take the partition count set for them, that of
	// the subtopology reading them for those co-partitioned with the
	// reader's other sources (a foreign-key join's), or else that of the
	// subtopology writing them, which may itself read repartition topics.
	fixed, byReader := make(map[string]bool), make(map[string]bool)
	for _, s := range a.subs {
		for t, n := range s.RepartitionPartitions {
			p.partitions[t], fixed[t] = n, true
		}
		for _, t := range s.ReaderPartitioned {
			byReader[t] = true
		}
	}
	for range len(a.subs) + 1 {
		for i, s := range a.subs {
			var n int32
			for _, t := range sources[i] {
				if internal[t] {
					continue
				}
				if n != 0 && p.partitions[t] != n {
					return nil, fmt.Errorf("subtopology %d: source topics are not co-partitioned: %v", s.ID, partitionCounts(sources[i], p.partitions))
				}
				n = p.partitions[t]
			}
			for _, t := range sources[i] {
				if internal[t] && !byReader[t] && p.partitions[t] > n {
					n = p.partitions[t]
				}
			}
			p.subParts[i] = n
			for _, t := range s.ReaderPartitioned {
				if n > 0 && !topicExists(all, t) {
					p.partitions[t] = n
				}
			}
			for _, t := range s.SinkTopics {
				if internal[t] && !fixed[t] && !byReader[t] && n > p.partitions[t] && !topicExists(all, t) {
					p.partitions[t] = n
				}
			}
		}
	}
	for t := range internal {
		if err := createTopic(ctx, adm, t, p.partitions[t], a.cfg.replication, repartitionConfigs()); err != nil {
			return nil, err
		}
	}
	for i, s := range a.subs {
		if p.subParts[i] == 0 {
			return nil, fmt.Errorf("subtopology %d reads no topic with a known partition count", s.ID)
		}
		for _, sc := range s.Stores {
			if !sc.Logging {
				continue
			}
			configs := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
			for k, v := range sc.LogConfig {
				configs[k] = kadm.StringPtr(v)
			}
			topic := state.ChangelogTopic(a.cfg.appID, sc.Name)
			if err := createTopic(ctx, adm, topic, p.subParts[i], a.cfg.replication, configs); err != nil {
				return nil, err
			}
			p.partitions[topic] = p.subParts[i]
		}
	}
	return p, nil
}

// repartitionConfigs are the configs of a new repartition topic, those Kafka
// Streams sets: records are kept until the runtime purges them after they
// are committed, in 50 MiB segments so that purged records free space soon.
func repartitionConfigs() map[string]*string {
	return map[string]*string{
		"cleanup.policy": kadm.StringPtr("delete"),
		"retention.ms":   kadm.StringPtr("-1"),
		"segment.bytes":  kadm.StringPtr("52428800"),
	}
}

func topicExists(all kadm.TopicDetails, t string) bool {
	td, ok := all[t]
	return ok && td.Err == nil
}

func matching(topics []string, re *regexp.Regexp) []string {
	var out []string
	for _, t := range topics {
		if re.MatchString(t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

func partitionCounts(topics []string, parts map[string]int32) map[string]int32 {
	out := make(map[string]int32)
	for _, t := range topics {
		out[t] = parts[t]
	}
	return out
}

// createTopic creates topic unless it exists; an existing topic must have
// the expected partition count.
func createTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, rf int16, configs map[string]*string) error {
	resp, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		got, err := partitionCount(ctx, adm, topic)
		if err != nil {
			return fmt.Errorf("describe internal topic %s: %w", topic, err)
		}
		if got != partitions {
			return fmt.Errorf("internal topic %s has %d partitions, want %d", topic, got, partitions)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create internal topic %s: %w", topic, err)
	}
	return nil
}

// partitionCount returns the number of partitions of an existing topic. A
// topic another instance has just created may not be in the metadata of
// every broker yet (Kafka answers CreateTopics once the controller has
// committed it, before the brokers have applied it), so it waits up to ten
// seconds for the topic to show partitions.
func partitionCount(ctx context.Context, adm *kadm.Client, topic string) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return 0, err
		}
		d := td[topic]
		if d.Err == nil && len(d.Partitions) > 0 {
			return int32(len(d.Partitions)), nil
		}
		select {
		case <-ctx.Done():
			if d.Err != nil {
				return 0, d.Err
			}
			return 0, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// supportsKIP848 reports whether every broker answers ConsumerGroupHeartbeat.
func supportsKIP848(ctx context.Context, adm *kadm.Client) bool {
	versions, err := adm.ApiVersions(ctx)
	if err != nil || len(versions) == 0 {
		return false
	}
	ok := true
	versions.Each(func(v kadm.BrokerApiVersions) {
		if _, has := v.KeyMaxVersion(kmsg.ConsumerGroupHeartbeat.Int16()); !has || v.Err != nil {
			ok = false
		}
	})
	return ok
}

func (a *App) aborted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.abort
}
