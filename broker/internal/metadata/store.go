package metadata

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/riffle-stream/riffle/broker/internal/metadata/raftstore"
)

// Sentinel errors of the write methods. They are returned wrapped with
// context; test for them with errors.Is.
var (
	// ErrTopicExists means a topic of that name already exists.
	ErrTopicExists = errors.New("topic already exists")
	// ErrUnknownTopic means no topic has that name (or id).
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrInvalidPartitions means a partition count is out of range: below
	// 1 for a new topic, or not above the current count when adding.
	ErrInvalidPartitions = errors.New("invalid partition count")
	// ErrInvalidReplicationFactor means a replication factor is below 1 or
	// above the number of registered brokers.
	ErrInvalidReplicationFactor = errors.New("invalid replication factor")
	// ErrNotLeader means this node is not the quorum leader, so it cannot
	// write metadata.
	ErrNotLeader = errors.New("not the metadata quorum leader")
	// ErrPolicyViolation means a change exceeds the Limits.
	ErrPolicyViolation = errors.New("policy violation")
	// ErrClusterMismatch means the metadata in Config.Dir belongs to
	// another cluster than Config.ClusterID, or to none.
	ErrClusterMismatch = errors.New("metadata of another cluster")
	// ErrTooLarge means a value does not fit its field in a metadata
	// record: a string over MaxStringLen bytes.
	ErrTooLarge = errors.New("too large for a metadata record")
)

// Raft tuning. The timeouts let a single voter elect itself within a few
// hundred milliseconds of starting, and are still sane for a multi-voter
// quorum on one network.
const (
	heartbeatTimeout   = 150 * time.Millisecond
	electionTimeout    = 150 * time.Millisecond
	leaderLeaseTimeout = 100 * time.Millisecond
	commitTimeout      = 10 * time.Millisecond
	retainSnapshots    = 2
	// defaultSnapshotThreshold is how many entries since the last snapshot
	// trigger a new one; metadata entries are small, so snapshot often.
	defaultSnapshotThreshold = 1024
	defaultTrailingLogs      = 1024
	tcpMaxPool               = 3
	tcpTimeout               = 10 * time.Second
)

// Config configures Open.
type Config struct {
	// Dir is the directory for the raft log and stable store (Pebble, in
	// Dir/raft) and snapshots (Dir/snapshots). It is created if missing.
	Dir string
	// NodeID is this node's id, and in decimal its raft server id.
	NodeID int32
	// RaftAddr is the TCP address raft listens on. "" means an in-process
	// transport, which only a single-voter quorum can use.
	RaftAddr string
	// ClusterID, if not empty, is the cluster the node's data belongs
	// to: Open fails with ErrClusterMismatch, before OnChange sees any
	// image, if the metadata in Dir is of another cluster or of none.
	ClusterID string
	// OnChange, if not nil, is called with the image before and after
	// each change, in apply order, from the first: the first call's prev
	// is the empty image. The calls for the latest snapshot and the log
	// after it happen before Open returns, so the hook sees every change
	// the log records, topic removals included. Calls run on Open's
	// goroutine (restoring a snapshot) or raft's apply goroutine and never
	// overlap. A call runs on the apply path, before the write that caused
	// it returns: it must not call Store's write methods, and a slow
	// OnChange delays every write.
	OnChange func(prev, next *Image)
	// Limits bounds the partitions CreateTopic and CreatePartitions may
	// create; zero fields take the defaults.
	Limits Limits
	// Logger receives the store's logs and raft's Warn and Error lines. Nil
	// means slog.Default().
	Logger *slog.Logger

	// snapshotThreshold, snapshotInterval and trailingLogs override raft's
	// settings of those names when not zero; tests lower them.
	snapshotThreshold uint64
	snapshotInterval  time.Duration
	trailingLogs      uint64
}

// Store is a node's view of the metadata quorum: the current Image, and the
// only way to change it.
type Store struct {
	nodeID int32
	limits Limits
	log    *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	logs   *raftstore.Store
	trans  raft.Transport
	// writes serialises this node's writes, so that each validates against
	// the image its predecessors left.
	writes chan struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open opens the metadata store in cfg.Dir. On a fresh directory it
// bootstraps a quorum with this node as its only voter and commits a new
// cluster id; on an existing one it replays the latest snapshot and the log
// after it. It returns once this node is leader and has applied the whole
// log, or when ctx ends.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("metadata: create directory: %w", err)
	}
	s := &Store{nodeID: cfg.NodeID, limits: cfg.Limits.withDefaults(), log: log, fsm: newFSM(log, cfg.ClusterID, cfg.OnChange), writes: make(chan struct{}, 1)}
	if err := s.start(ctx, cfg); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func (s *Store) start(ctx context.Context, cfg Config) error {
	hlog := newHCLogger(s.log)
	var err error
	if s.logs, err = raftstore.Open(filepath.Join(cfg.Dir, "raft"), s.log); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, retainSnapshots, hlog.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("metadata: open snapshot store: %w", err)
	}
	if cfg.RaftAddr == "" {
		_, s.trans = raft.NewInmemTransport(raft.ServerAddress("inmem:" + strconv.Itoa(int(cfg.NodeID))))
	} else if s.trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, nil, tcpMaxPool, tcpTimeout, hlog.Named("transport")); err != nil {
		return fmt.Errorf("metadata: raft transport on %s: %w", cfg.RaftAddr, err)
	}

	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(strconv.Itoa(int(cfg.NodeID)))
	conf.HeartbeatTimeout = heartbeatTimeout
	conf.ElectionTimeout = electionTimeout
	conf.LeaderLeaseTimeout = leaderLeaseTimeout
	conf.CommitTimeout = commitTimeout
	conf.SnapshotThreshold = cmp.Or(cfg.snapshotThreshold, defaultSnapshotThreshold)
	conf.SnapshotInterval = cmp.Or(cfg.snapshotInterval, conf.SnapshotInterval)
	conf.TrailingLogs = cmp.Or(cfg.trailingLogs, defaultTrailingLogs)
	conf.Logger = hlog

	existing, err := raft.HasExistingState(s.logs, s.logs, snaps)
	if err != nil {
		return fmt.Errorf("metadata: inspect raft state: %w", err)
	}
	if !existing {
		voters := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: s.trans.LocalAddr()}}}
		if err := raft.BootstrapCluster(conf, s.logs, s.logs, snaps, s.trans, voters); err != nil {
			return fmt.Errorf("metadata: bootstrap quorum: %w", err)
		}
		s.log.Info("bootstrapped metadata quorum", "node_id", cfg.NodeID, "addr", s.trans.LocalAddr())
	}
	if s.raft, err = raft.NewRaft(conf, s.fsm, s.logs, s.logs, snaps, s.trans); err != nil {
		return fmt.Errorf("metadata: start raft: %w", err)
	}
	if err := s.fsm.err(); err != nil {
		return fmt.Errorf("metadata: %w", err)
	}

	if err := s.awaitLeader(ctx); err != nil {
		return err
	}
	// A barrier commits after every earlier entry, so once it is applied
	// the image reflects the whole log.
	if err := await(ctx, s.raft.Barrier(timeoutOf(ctx))); err != nil {
		return fmt.Errorf("metadata: replay log: %w", err)
	}
	if err := s.fsm.err(); err != nil {
		return fmt.Errorf("metadata: replay log: %w", err)
	}
	if s.Image().ClusterID == "" {
		if cfg.ClusterID != "" {
			return fmt.Errorf("metadata: %w: the metadata has no cluster id, the data directory is of cluster %s", ErrClusterMismatch, cfg.ClusterID)
		}
		id := newClusterID()
		if _, err := s.propose(ctx, "commit cluster id", []record{clusterIDRecord{ClusterID: id}}); err != nil {
			return err
		}
		s.log.Info("created cluster id", "cluster_id", id)
	}
	return nil
}

// awaitLeader waits until this node leads the quorum.
func (s *Store) awaitLeader(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("metadata: wait to become quorum leader: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
	return nil
}

// Image returns the current image. It is immutable and safe to read from
// any goroutine; never modify it.
func (s *Store) Image() *Image { return s.fsm.cur.Load() }

// Close stops raft and closes the stores. Calls after the first return the
// first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("metadata: stop raft: %w", err))
			}
		}
		if c, ok := s.trans.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, fmt.Errorf("metadata: close raft transport: %w", err))
			}
		}
		if s.logs != nil {
			if err := s.logs.Close(); err != nil {
				errs = append(errs, fmt.Errorf("metadata: %w", err))
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// write runs fn with this node's writes serialised, after checking it is
// the leader.
func (s *Store) write(ctx context.Context, op string, fn func(img *Image) ([]record, error)) (*Image, error) {
	select {
	case s.writes <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("metadata: %s: %w", op, context.Cause(ctx))
	}
	defer func() { <-s.writes }()
	if s.raft.State() != raft.Leader {
		return nil, fmt.Errorf("metadata: %s: %w", op, ErrNotLeader)
	}
	img := s.Image()
	recs, err := fn(img)
	if err == nil {
		err = checkRecords(recs)
	}
	if err != nil {
		return nil, fmt.Errorf("metadata: %s: %w", op, err)
	}
	if len(recs) == 0 {
		return img, nil
	}
	return s.propose(ctx, op, recs)
}

// propose commits recs as one raft entry and returns the image after it is
// applied here. The state machine validates the records again, so a batch
// that became invalid while in flight fails rather than applying.
func (s *Store) propose(ctx context.Context, op string, recs []record) (*Image, error) {
	f := s.raft.Apply(appendFrame(nil, recs), timeoutOf(ctx))
	if err := await(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			err = fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return nil, fmt.Errorf("metadata: %s: %w", op, err)
	}
	switch r := f.Response().(type) {
	case *Image:
		return r, nil
	case error:
		return nil, fmt.Errorf("metadata: %s: %w", op, r)
	default:
		return nil, fmt.Errorf("metadata: %s: state machine answered %T", op, r)
	}
}

// timeoutOf is how long raft may wait to enqueue an entry: until ctx's
// deadline, or without limit.
func timeoutOf(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

// await waits for f or for ctx to end. When ctx ends first, the entry may
// still commit later.
func await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// CreateTopic creates a topic with a random id and spec.Partitions
// partitions, each with spec.ReplicationFactor replicas assigned round robin
// over the registered brokers in id order; the first replica leads, at
// leader epoch 0, and all replicas are in sync. It fails with ErrTopicExists,
// ErrInvalidPartitions, ErrInvalidReplicationFactor, ErrPolicyViolation
// (over the Limits) or ErrTooLarge.
func (s *Store) CreateTopic(ctx context.Context, spec TopicSpec) (*Topic, error) {
	img, err := s.write(ctx, "create topic "+strconv.Quote(spec.Name), func(img *Image) ([]record, error) {
		if _, ok := img.Topics[spec.Name]; ok {
			return nil, ErrTopicExists
		}
		if spec.Partitions < 1 {
			return nil, fmt.Errorf("%d partitions: %w", spec.Partitions, ErrInvalidPartitions)
		}
		if err := s.limits.Check(img, spec.Name, spec.Partitions); err != nil {
			return nil, err
		}
		if n := len(img.Brokers); spec.ReplicationFactor < 1 || int(spec.ReplicationFactor) > n {
			return nil, fmt.Errorf("replication factor %d with %d brokers: %w", spec.ReplicationFactor, n, ErrInvalidReplicationFactor)
		}
		id := newTopicID(img)
		recs := make([]record, 0, 1+int(spec.Partitions)+len(spec.Configs))
		recs = append(recs, topicRecord{Name: spec.Name, ID: id})
		brokers := slices.Sorted(maps.Keys(img.Brokers))
		// Start each topic on the next broker so leaders spread out.
		start := len(img.Topics)
		for p := range spec.Partitions {
			recs = append(recs, partitionRecord{TopicID: id, Partition: assign(brokers, start, p, int(spec.ReplicationFactor))})
		}
		for _, k := range slices.Sorted(maps.Keys(spec.Configs)) {
			v := spec.Configs[k]
			recs = append(recs, configRecord{Resource: ConfigResource{Type: ResourceTopic, Name: spec.Name}, Key: k, Value: &v})
		}
		return recs, nil
	})
	if err != nil {
		return nil, err
	}
	return img.Topics[spec.Name], nil
}

// assign places partition p: rf consecutive brokers, starting start+p
// brokers into the sorted list.
func assign(brokers []int32, start int, p int32, rf int) Partition {
	replicas := make([]int32, rf)
	for i := range replicas {
		replicas[i] = brokers[(start+int(p)+i)%len(brokers)]
	}
	return Partition{Index: p, Leader: replicas[0], Replicas: replicas, ISR: slices.Clone(replicas)}
}

// DeleteTopic deletes a topic and its configs. It fails with
// ErrUnknownTopic.
func (s *Store) DeleteTopic(ctx context.Context, name string) error {
	_, err := s.write(ctx, "delete topic "+strconv.Quote(name), func(img *Image) ([]record, error) {
		t, ok := img.Topics[name]
		if !ok {
			return nil, ErrUnknownTopic
		}
		return []record{removeTopicRecord{TopicID: t.ID}}, nil
	})
	return err
}

// CreatePartitions grows a topic to total partitions, placing the new ones
// like CreateTopic with the replication factor of its first partition. It
// fails with ErrUnknownTopic, ErrInvalidPartitions unless total exceeds
// the current count, or ErrPolicyViolation over the Limits.
func (s *Store) CreatePartitions(ctx context.Context, name string, total int32) error {
	_, err := s.write(ctx, "create partitions of topic "+strconv.Quote(name), func(img *Image) ([]record, error) {
		t, ok := img.Topics[name]
		if !ok {
			return nil, ErrUnknownTopic
		}
		cur := int32(len(t.Partitions))
		if total <= cur {
			return nil, fmt.Errorf("topic has %d partitions, cannot grow to %d: %w", cur, total, ErrInvalidPartitions)
		}
		if err := s.limits.Check(img, name, total); err != nil {
			return nil, err
		}
		brokers := slices.Sorted(maps.Keys(img.Brokers))
		if len(brokers) == 0 {
			return nil, fmt.Errorf("no registered brokers: %w", ErrInvalidReplicationFactor)
		}
		// Continue the topic's round robin from the first partition's
		// leader, with its replication factor.
		rf, start := 1, 0
		if cur > 0 {
			rf = len(t.Partitions[0].Replicas)
			start = max(slices.Index(brokers, t.Partitions[0].Leader), 0)
		}
		if rf > len(brokers) {
			return nil, fmt.Errorf("replication factor %d with %d brokers: %w", rf, len(brokers), ErrInvalidReplicationFactor)
		}
		recs := make([]record, 0, total-cur)
		for p := cur; p < total; p++ {
			recs = append(recs, partitionRecord{TopicID: t.ID, Partition: assign(brokers, start, p, rf)})
		}
		return recs, nil
	})
	return err
}

// AlterConfigs changes the configs of resource r: each key with a nil value
// is deleted and each other key set. With replace, changes becomes the
// resource's whole config set, as the legacy AlterConfigs API does; keys
// missing from changes are deleted. It fails with ErrUnknownTopic for a
// topic that does not exist.
func (s *Store) AlterConfigs(ctx context.Context, r ConfigResource, changes map[string]*string, replace bool) error {
	op := fmt.Sprintf("alter configs of resource %d %q", r.Type, r.Name)
	_, err := s.write(ctx, op, func(img *Image) ([]record, error) {
		if !r.Type.valid() {
			return nil, fmt.Errorf("resource type %d is not topic, broker or group", r.Type)
		}
		if _, ok := img.Topics[r.Name]; r.Type == ResourceTopic && !ok {
			return nil, ErrUnknownTopic
		}
		cur := img.Configs[r]
		var recs []record
		if replace {
			for _, k := range slices.Sorted(maps.Keys(cur)) {
				if changes[k] == nil {
					recs = append(recs, configRecord{Resource: r, Key: k})
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(changes)) {
			v := changes[k]
			if old, ok := cur[k]; (v == nil && !ok) || (v != nil && ok && old == *v) {
				continue
			}
			recs = append(recs, configRecord{Resource: r, Key: k, Value: v})
		}
		return recs, nil
	})
	return err
}

// RegisterBroker adds broker b, or replaces the broker with its id.
func (s *Store) RegisterBroker(ctx context.Context, b Broker) error {
	_, err := s.write(ctx, fmt.Sprintf("register broker %d", b.ID), func(*Image) ([]record, error) {
		return []record{registerBrokerRecord{Broker: b}}, nil
	})
	return err
}

// RaftState returns this node's raft state (follower, candidate, leader
// or shutdown) and commit index, which are cheap to read, for metrics.
func (s *Store) RaftState() (raft.RaftState, uint64) {
	return s.raft.State(), s.raft.CommitIndex()
}

// Quorum describes the metadata quorum as this node sees it, for
// DescribeQuorum and DescribeCluster. Offsets are raft indexes. A voter's
// LogEndOffset is known only for this node; others report -1.
func (s *Store) Quorum() Quorum {
	q := Quorum{LeaderID: -1, Term: int64(s.raft.CurrentTerm()), HighWatermark: int64(s.raft.CommitIndex())}
	if _, id := s.raft.LeaderWithID(); id != "" {
		if n, err := strconv.ParseInt(string(id), 10, 32); err == nil {
			q.LeaderID = int32(n)
		}
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		s.log.Warn("read raft configuration", "err", err)
		return q
	}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		n, err := strconv.ParseInt(string(srv.ID), 10, 32)
		if err != nil {
			s.log.Warn("raft voter id is not a node id", "id", srv.ID)
			continue
		}
		v := Voter{ID: int32(n), LogEndOffset: -1}
		if v.ID == s.nodeID {
			v.LogEndOffset = int64(s.raft.LastIndex())
		}
		q.Voters = append(q.Voters, v)
	}
	return q
}

// Default limits, which Limits' zero fields take.
const (
	// DefaultTopicPartitions is the default Limits.TopicPartitions. It
	// equals the cap of Kafka's controller on the partitions one request
	// may create (10,000), which also bounds the records of one entry.
	DefaultTopicPartitions = 10_000
	// DefaultPartitions is the default Limits.Partitions.
	DefaultPartitions = 100_000
)

// Limits bounds the partitions of the cluster, as a policy checked before
// anything is allocated or committed.
type Limits struct {
	// TopicPartitions is the most partitions one topic may have.
	TopicPartitions int32
	// Partitions is the most partitions all topics together may have.
	Partitions int
}

func (l Limits) withDefaults() Limits {
	if l.TopicPartitions <= 0 {
		l.TopicPartitions = DefaultTopicPartitions
	}
	if l.Partitions <= 0 {
		l.Partitions = DefaultPartitions
	}
	return l
}

// Check reports whether topic may have total partitions in img: it fails
// with ErrPolicyViolation if total exceeds l.TopicPartitions, or if the
// partitions it adds would take the cluster past l.Partitions. Zero
// fields of l take the defaults.
func (l Limits) Check(img *Image, topic string, total int32) error {
	l = l.withDefaults()
	if total > l.TopicPartitions {
		return fmt.Errorf("%w: %d partitions for topic %q, more than the limit of %d per topic", ErrPolicyViolation, total, topic, l.TopicPartitions)
	}
	var cur int
	if t, ok := img.Topics[topic]; ok {
		cur = len(t.Partitions)
	}
	if after := img.PartitionCount - cur + int(total); after > l.Partitions {
		return fmt.Errorf("%w: %d partitions for topic %q would make %d in all, more than the limit of %d", ErrPolicyViolation, total, topic, after, l.Partitions)
	}
	return nil
}

// TopicSpec describes a topic to create.
type TopicSpec struct {
	Name              string
	Partitions        int32
	ReplicationFactor int16
	// Configs holds the topic's explicitly set configs.
	Configs map[string]string
}

// Quorum is the state of the metadata quorum.
type Quorum struct {
	// LeaderID is the leader's node id, or -1 if there is none.
	LeaderID int32
	// Term is the current raft term (Kafka's leader epoch of the quorum).
	Term int64
	// HighWatermark is the raft commit index.
	HighWatermark int64
	// Voters are the voting members.
	Voters []Voter
}

// Voter is a voting member of the quorum.
type Voter struct {
	ID int32
	// LogEndOffset is the voter's last raft index, or -1 if unknown.
	LogEndOffset int64
}

// newClusterID returns a cluster id as Kafka makes them: 16 random bytes in
// unpadded base64url, 22 characters, never starting with '-' (which would
// read as a command-line flag).
func newClusterID() string {
	for {
		u := newUUID()
		if id := base64.RawURLEncoding.EncodeToString(u[:]); id[0] != '-' {
			return id
		}
	}
}

// newTopicID returns a random topic id that no topic in img uses.
func newTopicID(img *Image) [16]byte {
	for {
		id := newUUID()
		if _, taken := img.TopicsByID[id]; !taken {
			return id
		}
	}
}

// newUUID returns a random version 4 UUID.
func newUUID() [16]byte {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
