package broker

import (
	"log/slog"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
)

// Opt configures a Broker. Options are applied in order by New.
type Opt interface{ apply(*config) }

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

// SyncPolicy says when appended records reach stable storage.
type SyncPolicy int

const (
	// SyncGroupCommit fsyncs a partition's log before a produce request with
	// acks=1 or acks=-1 is answered. Concurrent writers share one fsync, so
	// the cost is paid once per flush rather than once per request. Anything
	// acknowledged survives a crash of the process or of the machine.
	SyncGroupCommit SyncPolicy = iota
	// SyncNone leaves flushing to the operating system's page cache, as
	// Kafka does by default. Acknowledged records survive a crash of the
	// broker process (kill -9) but may be lost if the machine loses power.
	SyncNone
)

type config struct {
	listenAddr       string
	advertisedAddr   string
	dataDir          string
	nodeID           int32
	sync             SyncPolicy
	maxRequestBytes  int32
	fetchMaxBytes    int32
	autoCreateTopics bool
	numPartitions    int32
	retentionCheck   time.Duration
	offsetsRetention time.Duration
	logger           *slog.Logger

	maxTopicPartitions int32
	maxPartitions      int
}

func defaultConfig() config {
	return config{
		listenAddr:       "127.0.0.1:9092",
		dataDir:          "riffle-data",
		nodeID:           1,
		sync:             SyncGroupCommit,
		maxRequestBytes:  100 << 20,
		fetchMaxBytes:    8 << 20,
		autoCreateTopics: true,
		numPartitions:    1,
		retentionCheck:   5 * time.Minute,
		offsetsRetention: 7 * 24 * time.Hour,
		logger:           slog.Default(),

		maxTopicPartitions: metadata.DefaultTopicPartitions,
		maxPartitions:      metadata.DefaultPartitions,
	}
}

// ListenAddr sets the host:port the broker accepts Kafka clients on.
// Port 0 picks a free port; Addr reports the one chosen.
// Default: "127.0.0.1:9092" (Kafka's listeners).
func ListenAddr(addr string) Opt { return optFunc(func(c *config) { c.listenAddr = addr }) }

// AdvertisedAddr sets the host:port the broker tells clients to connect to
// in Metadata and FindCoordinator responses. Default: the address actually
// bound by ListenAddr (Kafka's advertised.listeners).
func AdvertisedAddr(addr string) Opt { return optFunc(func(c *config) { c.advertisedAddr = addr }) }

// DataDir sets the directory holding the partition logs, the metadata
// quorum's log and the group state. It is created if missing.
// Default: "riffle-data" (Kafka's log.dirs).
func DataDir(dir string) Opt { return optFunc(func(c *config) { c.dataDir = dir }) }

// NodeID sets this broker's id in the cluster. Default: 1 (Kafka's node.id).
func NodeID(id int32) Opt { return optFunc(func(c *config) { c.nodeID = id }) }

// Sync sets the flush policy for partition logs. Default: SyncGroupCommit,
// which trades a little produce latency for durability across power loss.
// Kafka's default corresponds to SyncNone (log.flush.interval.messages unset).
func Sync(p SyncPolicy) Opt { return optFunc(func(c *config) { c.sync = p }) }

// MaxRequestBytes sets the largest request frame accepted; a larger frame
// closes its connection. Default: 100 MiB (Kafka's socket.request.max.bytes).
func MaxRequestBytes(n int32) Opt { return optFunc(func(c *config) { c.maxRequestBytes = n }) }

// FetchMaxBytes caps the record bytes of one fetch response, below
// whatever larger limit the client asks for; the first batch is returned
// whole even if it is larger, so consumers always progress. The broker
// holds a response's bytes twice while sending it, so this cap is what
// keeps its memory flat when consumers read many partitions at once.
// Default: 8 MiB (Kafka's fetch.max.bytes, whose default is 55 MiB:
// beyond a few MiB a larger response hardly raises throughput).
func FetchMaxBytes(n int32) Opt { return optFunc(func(c *config) { c.fetchMaxBytes = n }) }

// AutoCreateTopics sets whether Metadata and Produce requests for unknown
// topics create them with the default partition count.
// Default: true (Kafka's auto.create.topics.enable).
func AutoCreateTopics(on bool) Opt { return optFunc(func(c *config) { c.autoCreateTopics = on }) }

// DefaultPartitions sets the partition count of auto-created topics and of
// CreateTopics requests that leave it unset. Default: 1 (Kafka's num.partitions).
func DefaultPartitions(n int32) Opt { return optFunc(func(c *config) { c.numPartitions = n }) }

// RetentionCheckInterval sets how often retention.ms and retention.bytes are
// enforced and segment.ms rolls happen.
// Default: 5 minutes (Kafka's log.retention.check.interval.ms).
func RetentionCheckInterval(d time.Duration) Opt {
	return optFunc(func(c *config) { c.retentionCheck = d })
}

// OffsetsRetention sets how long the committed offsets of a consumer
// group that has no members are kept; the group goes with them.
// Default: 7 days (Kafka's offsets.retention.minutes).
func OffsetsRetention(d time.Duration) Opt {
	return optFunc(func(c *config) { c.offsetsRetention = d })
}

// Logger sets the structured logger. Default: slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(c *config) { c.logger = l }) }

// MaxTopicPartitions caps the partitions of one topic: CreateTopics and
// CreatePartitions asking for more are answered POLICY_VIOLATION before
// anything is allocated or committed. Default: 10,000, the cap Kafka's
// controller puts on the partitions one request may create (Kafka has no
// per-topic setting; this is the analogue of a CreateTopicPolicy).
func MaxTopicPartitions(n int32) Opt { return optFunc(func(c *config) { c.maxTopicPartitions = n }) }

// MaxPartitions caps the partitions of all topics together, which this
// broker hosts; creations beyond it are answered POLICY_VIOLATION. Each
// partition costs open files and memory, and every one is opened at
// start. Default: 100,000 (Kafka has no such setting).
func MaxPartitions(n int) Opt { return optFunc(func(c *config) { c.maxPartitions = n }) }
