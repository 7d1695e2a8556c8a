package streams

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/processor"
)

// Option configures an App.
type Option func(*config)

// BrokerStarter starts a Kafka-protocol broker in-process with its data
// under dir and returns the address clients reach it at and a function that
// stops it. Package streams/embedded provides one backed by Riffle's broker.
type BrokerStarter func(ctx context.Context, dir string, logger *slog.Logger) (addr string, stop func(context.Context) error, err error)

type config struct {
	appID           string
	brokers         []string
	embedded        BrokerStarter
	stateDir        string
	commitInterval  time.Duration
	commitSet       bool // CommitInterval given; else the guarantee's default
	guarantee       Guarantee
	purgeInterval   time.Duration
	threads         int
	processing      processor.ErrorHandler
	deserialization processor.ErrorHandler
	logger          *slog.Logger
	replication     int16
	pollTimeout     time.Duration
	clientOpts      []kgo.Opt
	protocol        GroupProtocol
	registerer      prometheus.Registerer
	consoleURL      string
	consoleEvery    time.Duration
	closeTimeout    time.Duration
	restoreListener RestoreListener
	server          string
	instanceID      string
	standbys        int
	recoveryLag     int64
	probeInterval   time.Duration
}

func defaultConfig() config {
	return config{
		stateDir:      filepath.Join(os.TempDir(), "riffle-streams"),
		purgeInterval: 30 * time.Second,
		threads:       1,
		logger:        slog.Default(),
		replication:   -1,
		pollTimeout:   100 * time.Millisecond,
		closeTimeout:  30 * time.Second,
		recoveryLag:   10000,
		probeInterval: 10 * time.Minute,
	}
}

// ApplicationID names the application. It is the consumer group id, the
// prefix of internal topics and the directory under the state directory.
// Required (Kafka Streams' application.id).
func ApplicationID(id string) Option { return func(c *config) { c.appID = id } }

// Brokers sets the host:port seed brokers of the cluster. Default: none,
// which requires Embedded (Kafka Streams' bootstrap.servers).
func Brokers(addrs ...string) Option { return func(c *config) { c.brokers = addrs } }

// Embedded starts a broker in-process when no Brokers are configured, with
// its data in "<state dir>/broker", so one binary is broker and application.
// Default: none.
func Embedded(start BrokerStarter) Option { return func(c *config) { c.embedded = start } }

// StateDir sets the directory holding local state: one subdirectory per
// application and task. Default: "<os.TempDir()>/riffle-streams" (Kafka
// Streams' state.dir).
func StateDir(dir string) Option { return func(c *config) { c.stateDir = dir } }

// CommitInterval sets how often progress is committed: stores and
// changelogs flushed, output produced, input offsets committed. Default: 30s
// under AtLeastOnce and 100ms under ExactlyOnceV2 (Kafka Streams'
// commit.interval.ms).
func CommitInterval(d time.Duration) Option {
	return func(c *config) { c.commitInterval, c.commitSet = d, true }
}

// Guarantee is a processing guarantee.
type Guarantee int

const (
	// AtLeastOnce commits input offsets after the output and changelog
	// records of a commit are acknowledged: after a failure some input is
	// processed again, so outputs and state may count it twice. The
	// producer is idempotent, so retries never duplicate a record.
	AtLeastOnce Guarantee = iota
	// ExactlyOnceV2 runs one transactional producer per stream thread and
	// commits the input offsets, output records and changelog writes of a
	// commit in one transaction; consumers read committed records only.
	// After a failure, state is rewound to what the changelogs' committed
	// records say, so no input is counted twice. Kafka 2.5 or later.
	ExactlyOnceV2
)

func (g Guarantee) String() string {
	switch g {
	case AtLeastOnce:
		return "at_least_once"
	case ExactlyOnceV2:
		return "exactly_once_v2"
	}
	return fmt.Sprintf("Guarantee(%d)", int(g))
}

// ProcessingGuarantee selects the processing guarantee. Default:
// AtLeastOnce (Kafka Streams' processing.guarantee).
func ProcessingGuarantee(g Guarantee) Option { return func(c *config) { c.guarantee = g } }

// RepartitionPurgeInterval sets how often each thread deletes the records
// of the application's repartition topics below its committed offsets
// (DeleteRecords): after a commit, once at least this long has passed since
// the previous purge, with at most one request in flight. Zero purges after
// every commit. Default: 30s (Kafka Streams' repartition.purge.interval.ms).
func RepartitionPurgeInterval(d time.Duration) Option { return func(c *config) { c.purgeInterval = d } }

// Threads sets the number of stream threads, each a consumer group member
// running its share of the tasks. Default: 1 (Kafka Streams'
// num.stream.threads).
func Threads(n int) Option { return func(c *config) { c.threads = n } }

// ProcessingErrors sets the handler for processor errors and panics.
// Default: processor.FailOnError() (Kafka Streams'
// processing.exception.handler).
func ProcessingErrors(h processor.ErrorHandler) Option { return func(c *config) { c.processing = h } }

// DeserializationErrors sets the handler for input records that cannot be
// deserialized. Default: processor.FailOnError() (Kafka Streams'
// deserialization.exception.handler).
func DeserializationErrors(h processor.ErrorHandler) Option {
	return func(c *config) { c.deserialization = h }
}

// Logger sets the logger. Default: slog.Default().
func Logger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// ReplicationFactor sets the replication factor of internal topics.
// Default: -1, the broker's default (Kafka Streams' replication.factor).
func ReplicationFactor(n int16) Option { return func(c *config) { c.replication = n } }

// ClientOpts adds franz-go options to every client the application creates,
// for example TLS or SASL settings, after the runtime's own, which they
// override. The runtime's producer sends with acks=all and no
// compression, as Kafka Streams' does (kgo.ProducerBatchCompression to
// compress), and lingers 5 ms (Kafka Streams: 100). Default: none.
func ClientOpts(opts ...kgo.Opt) Option {
	return func(c *config) { c.clientOpts = append(c.clientOpts, opts...) }
}

// GroupProtocol selects the consumer group protocol.
type GroupProtocol int

const (
	// GroupProtocolAuto uses the KIP-848 consumer protocol when every broker
	// supports it and the classic protocol otherwise.
	GroupProtocolAuto GroupProtocol = iota
	// GroupProtocolClassic uses the classic JoinGroup/SyncGroup protocol,
	// with cooperative rebalancing unless co-partitioned sources require the
	// range assignor.
	GroupProtocolClassic
	// GroupProtocolConsumer uses the KIP-848 protocol, with the broker's
	// range assignor.
	GroupProtocolConsumer
)

// WithGroupProtocol selects the consumer group protocol. Default:
// GroupProtocolAuto (the Kafka consumer's group.protocol, which Kafka
// defaults to classic).
func WithGroupProtocol(p GroupProtocol) Option { return func(c *config) { c.protocol = p } }

// MetricsRegisterer registers the App's series (see App.MetricsHandler)
// with r too, for example the registry an application already serves or
// prometheus.DefaultRegisterer; New fails if r refuses them. Two Apps of
// one application id in one process need registerers of their own.
// Default: none; App.MetricsHandler serves them either way.
func MetricsRegisterer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// CloseTimeout bounds how long each thread takes to shut down when Run
// ends: its final commit, its last repartition purge and leaving the group.
// Past it, a thread gives up (its tasks are closed dirty if the commit did
// not finish) so that Close returns even when the cluster cannot be
// reached. Default: 30s (the Kafka consumer's default close timeout).
func CloseTimeout(d time.Duration) Option { return func(c *config) { c.closeTimeout = d } }

// StaticMembership makes every thread a static member of the group with
// group.instance.id "<id>-<thread>" (KIP-345; KIP-848 members too), so an
// instance restarted within the group's session timeout takes its tasks
// back and the others keep theirs: a rolling restart moves no task. id must
// be unique to the instance and stable across its restarts. Default: none,
// dynamic members (Kafka Streams passes the consumer's group.instance.id
// the same way, with a thread suffix).
func StaticMembership(id string) Option { return func(c *config) { c.instanceID = id } }

// StandbyReplicas sets how many standby replicas each stateful task has:
// other instances keep a warm copy of the task's persistent stores from
// its changelogs, so that the instance taking the task over restores
// almost nothing (see the package doc). Under the classic protocol it
// also selects the lag-aware task balancer (see AcceptableRecoveryLag).
// Default: 0 (Kafka Streams' num.standby.replicas).
func StandbyReplicas(n int) Option { return func(c *config) { c.standbys = n } }
