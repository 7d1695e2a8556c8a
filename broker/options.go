package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/riffle-stream/riffle/broker/internal/txn"
)

// Opt configures a Broker. Options are applied in order by New.
type Opt interface{ apply(*config) }

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

// SyncPolicy says when appended records reach stable storage.
type SyncPolicy int

const (
	// SyncGroupCommit fsyncs a partition's log before a produce request with
	// acks=-1 (all) is answered, and before consumers see the records.
	// Concurrent writers share one fsync, so the cost is paid once per flush
	// rather than once per request. Anything acknowledged with acks=-1
	// survives a crash of the process or of the machine; acks=1 is
	// answered once the records are in the log, without waiting for the
	// fsync, and survives a crash of the process.
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
	cleanerBackoff   time.Duration
	cleanerThreads   int
	cleanerIORate    float64 // bytes per second; 0: unlimited
	offsetsRetention time.Duration
	logger           *slog.Logger

	// Transactions.
	txnMaxTimeout    time.Duration
	txnAbortInterval time.Duration
	txnVersion       int16

	maxTopicPartitions int32
	maxPartitions      int

	// Connections and their memory.
	connMaxIdle       time.Duration
	maxConns          int
	maxConnsPerIP     int
	queuedMaxRequests int64 // 0: max(defaultQueuedMaxRequestBytes, maxRequestBytes)
	sendBuffer        int   // SO_SNDBUF of client connections; -1: the OS's
	receiveBuffer     int   // SO_RCVBUF of client connections; -1: the OS's
	// maxWait caps how long a request may wait in the broker (a fetch's
	// MaxWait, a produce's timeout); only tests change it.
	maxWait time.Duration
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
		cleanerBackoff:   15 * time.Second,
		cleanerThreads:   1,
		offsetsRetention: 7 * 24 * time.Hour,
		logger:           slog.Default(),
		txnMaxTimeout:    txn.DefaultMaxTimeout,
		txnAbortInterval: txn.DefaultAbortInterval,
		txnVersion:       2,

		maxTopicPartitions: metadata.DefaultTopicPartitions,
		maxPartitions:      metadata.DefaultPartitions,
		connMaxIdle:        10 * time.Minute,
		maxConns:           math.MaxInt32,
		maxConnsPerIP:      math.MaxInt32,
		sendBuffer:         102400,
		receiveBuffer:      -1,
		maxWait:            MaxWait,
	}
}

// validate range-checks every setting, so that a bad one is an error from
// New rather than a panic or a misbehaving broker later.
func (c *config) validate() error {
	switch {
	case c.dataDir == "":
		return errors.New("empty data directory")
	case c.nodeID < 0:
		return fmt.Errorf("negative node id %d", c.nodeID)
	case c.sync != SyncGroupCommit && c.sync != SyncNone:
		return fmt.Errorf("unknown sync policy %d", c.sync)
	case c.maxRequestBytes < 1024:
		return fmt.Errorf("max request bytes %d is below 1024", c.maxRequestBytes)
	case c.fetchMaxBytes < 1:
		return fmt.Errorf("fetch max bytes %d is below 1", c.fetchMaxBytes)
	case c.numPartitions < 1:
		return fmt.Errorf("default partitions %d is below 1", c.numPartitions)
	case c.numPartitions > c.maxTopicPartitions:
		return fmt.Errorf("default partitions %d exceed max partitions per topic %d", c.numPartitions, c.maxTopicPartitions)
	case c.cleanerBackoff < time.Millisecond:
		return fmt.Errorf("cleaner backoff %v is below 1ms", c.cleanerBackoff)
	case c.cleanerThreads < 1:
		return fmt.Errorf("cleaner threads %d is below 1", c.cleanerThreads)
	case c.cleanerIORate < 0 || math.IsNaN(c.cleanerIORate):
		return fmt.Errorf("cleaner I/O rate %v bytes per second is negative", c.cleanerIORate)
	case c.retentionCheck < time.Millisecond:
		return fmt.Errorf("retention check interval %v is below 1ms", c.retentionCheck)
	case c.offsetsRetention <= 0:
		return fmt.Errorf("offsets retention %v is not positive", c.offsetsRetention)
	case c.logger == nil:
		return errors.New("nil logger")
	case c.connMaxIdle < time.Millisecond:
		return fmt.Errorf("connections max idle %v is below 1ms", c.connMaxIdle)
	case c.maxConns < 1:
		return fmt.Errorf("max connections %d is below 1", c.maxConns)
	case c.maxConnsPerIP < 1:
		return fmt.Errorf("max connections per ip %d is below 1", c.maxConnsPerIP)
	case c.sendBuffer == 0 || c.sendBuffer < -1:
		return fmt.Errorf("socket send buffer %d bytes is neither positive nor -1", c.sendBuffer)
	case c.receiveBuffer == 0 || c.receiveBuffer < -1:
		return fmt.Errorf("socket receive buffer %d bytes is neither positive nor -1", c.receiveBuffer)
	case c.queuedMaxRequests != 0 && c.queuedMaxRequests < int64(c.maxRequestBytes):
		return fmt.Errorf("queued max request bytes %d is below max request bytes %d", c.queuedMaxRequests, c.maxRequestBytes)
	case c.maxWait <= 0:
		return fmt.Errorf("max wait %v is not positive", c.maxWait)
	case c.maxTopicPartitions < 1:
		return fmt.Errorf("max partitions per topic %d is below 1", c.maxTopicPartitions)
	case c.maxPartitions < 1:
		return fmt.Errorf("max partitions %d is below 1", c.maxPartitions)
	case c.txnMaxTimeout < time.Millisecond || c.txnMaxTimeout > math.MaxInt32*time.Millisecond:
		return fmt.Errorf("transaction max timeout %v is outside [1ms, 2^31-1 ms]", c.txnMaxTimeout)
	case c.txnAbortInterval < time.Millisecond:
		return fmt.Errorf("transaction abort interval %v is below 1ms", c.txnAbortInterval)
	case c.txnVersion < 1 || c.txnVersion > 2:
		return fmt.Errorf("transaction version %d is not 1 or 2", c.txnVersion)
	}
	return nil
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
// It is also the budget of one connection's pending fetch responses: a
// connection that pipelines fetches without reading its answers stops
// being read until its earlier responses are written.
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

// CleanerBackoff sets how long a log cleaner thread sleeps when no
// compacted partition needs cleaning: none has a dirty ratio at or above
// its min.cleanable.dirty.ratio or records older than its
// max.compaction.lag.ms. Default: 15 seconds (Kafka's
// log.cleaner.backoff.ms).
func CleanerBackoff(d time.Duration) Opt {
	return optFunc(func(c *config) { c.cleanerBackoff = d })
}

// CleanerThreads sets how many partitions the log cleaner compacts at
// once, each on its own goroutine; two never clean the same partition.
// Default: 1 (Kafka's log.cleaner.threads).
func CleanerThreads(n int) Opt { return optFunc(func(c *config) { c.cleanerThreads = n }) }

// CleanerIOMaxBytesPerSecond caps the bytes the log cleaner threads read
// and write together, on average over each pass; a value of 0 or
// math.MaxFloat64 is no cap. Default: no cap (Kafka's
// log.cleaner.io.max.bytes.per.second, Double.MAX_VALUE).
func CleanerIOMaxBytesPerSecond(r float64) Opt {
	return optFunc(func(c *config) {
		if r == math.MaxFloat64 {
			r = 0
		}
		c.cleanerIORate = r
	})
}

// OffsetsRetention sets how long the committed offsets of a consumer
// group that has no members are kept; the group goes with them.
// Default: 7 days (Kafka's offsets.retention.minutes).
func OffsetsRetention(d time.Duration) Opt {
	return optFunc(func(c *config) { c.offsetsRetention = d })
}

// TransactionMaxTimeout sets the longest transaction.timeout.ms a
// transactional producer may ask for; InitProducerId asking for more is
// answered INVALID_TRANSACTION_TIMEOUT.
// Default: 15 minutes (Kafka's transaction.max.timeout.ms).
func TransactionMaxTimeout(d time.Duration) Opt {
	return optFunc(func(c *config) { c.txnMaxTimeout = d })
}

// TransactionAbortInterval sets how often the transaction coordinator
// aborts the transactions open longer than their timeout.
// Default: 10 seconds (Kafka's
// transaction.abort.timed.out.transaction.cleanup.interval.ms).
func TransactionAbortInterval(d time.Duration) Opt {
	return optFunc(func(c *config) { c.txnAbortInterval = d })
}

// TransactionVersion sets the transaction protocol the broker advertises
// as its finalized transaction.version feature in ApiVersions. At 2
// (KIP-890 part 2) clients skip AddPartitionsToTxn and AddOffsetsToTxn,
// a Produce v12+ or TxnOffsetCommit v5+ adds its partition or group to
// the transaction, and every EndTxn bumps the producer's epoch; at 1
// clients use the older flow, which the broker serves in both.
// Default: 2 (Kafka 4's transaction.version for a new cluster).
func TransactionVersion(v int16) Opt { return optFunc(func(c *config) { c.txnVersion = v }) }

// Logger sets the structured logger. Default: slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(c *config) { c.logger = l }) }

// MaxTopicPartitions caps the partitions of one topic, and the
// partitions one CreateTopics or CreatePartitions request may create:
// requests asking for more are answered POLICY_VIOLATION before anything
// is allocated or committed. Default: 10,000, the cap Kafka's controller
// puts on one request (not configurable in Kafka; the per-topic cap is
// Riffle's, the analogue of a CreateTopicPolicy).
func MaxTopicPartitions(n int32) Opt { return optFunc(func(c *config) { c.maxTopicPartitions = n }) }

// MaxPartitions caps the partitions of all topics together, which this
// broker hosts; creations beyond it are answered POLICY_VIOLATION. Each
// partition costs open files and memory, and every one is opened at
// start. Default: 100,000 (Kafka has no such setting).
func MaxPartitions(n int) Opt { return optFunc(func(c *config) { c.maxPartitions = n }) }

// MaxWait caps how long the broker holds a request before answering it:
// a fetch or share fetch whose MaxWaitMillis is longer is answered after
// MaxWait with what it found, and a produce's TimeoutMillis is cut to it.
// Clients ask again; Kafka sets no such cap.
const MaxWait = 30 * time.Second

// defaultQueuedMaxRequestBytes is QueuedMaxRequestBytes's default when
// MaxRequestBytes does not ask for more.
const defaultQueuedMaxRequestBytes = 256 << 20

// ConnectionsMaxIdle sets how long a connection may go without a request
// or a response before the broker closes it; a connection waiting for a
// response in progress is not idle. It also bounds how long a request
// frame may take to arrive once its first byte has (at most 30 seconds,
// a client's usual request timeout) and how long writing one response
// may stall, so a client sending half a frame or never reading cannot hold
// a connection. Default: 10 minutes (Kafka's connections.max.idle.ms).
func ConnectionsMaxIdle(d time.Duration) Opt {
	return optFunc(func(c *config) { c.connMaxIdle = d })
}

// MaxConnections caps the connections the broker serves at once; one
// accepted beyond it is closed at once. Default: unlimited, 2^31-1
// (Kafka's max.connections).
func MaxConnections(n int) Opt { return optFunc(func(c *config) { c.maxConns = n }) }

// MaxConnectionsPerIP caps the connections the broker serves at once from
// one client address; one accepted beyond it is closed at once.
// Default: unlimited, 2^31-1 (Kafka's max.connections.per.ip).
func MaxConnectionsPerIP(n int) Opt { return optFunc(func(c *config) { c.maxConnsPerIP = n }) }

// SocketSendBufferBytes sets the send buffer (SO_SNDBUF) of every client
// connection, -1 for the operating system's default, which on Linux grows
// the buffer with the connection's traffic, up to net.ipv4.tcp_wmem's
// maximum (4 MiB by default). A fixed buffer of about 100 KiB keeps the
// bytes of a fetch response in flight within the CPU's caches: on
// loopback it served fetches of 3 MiB a third faster than Linux's
// growing buffer (see the README's Performance section). Linux doubles
// the value for its bookkeeping, and caps it at net.core.wmem_max.
// Default: 102400 (Kafka's socket.send.buffer.bytes).
func SocketSendBufferBytes(n int) Opt { return optFunc(func(c *config) { c.sendBuffer = n }) }

// SocketReceiveBufferBytes sets the receive buffer (SO_RCVBUF) of every
// client connection, -1 for the operating system's default, which on
// Linux grows with the connection's traffic. Default: -1, unlike Kafka's
// socket.receive.buffer.bytes (102400): a fixed buffer of that size made
// produce slower on loopback (see the README's Performance section).
func SocketReceiveBufferBytes(n int) Opt { return optFunc(func(c *config) { c.receiveBuffer = n }) }

// QueuedMaxRequestBytes bounds, across all connections, the bytes of
// request frames read but not yet handled. A frame larger than 64 KiB
// takes its bytes from this budget as they arrive (nothing is allocated
// for a frame's claimed size before its bytes come), and a connection
// whose frame finds the budget spent stops reading until other requests
// are handled. Smaller frames bypass the budget: each connection holds
// at most one at a time, so well-behaved clients are served while
// hostile ones wait. It must be at least MaxRequestBytes; 0 selects the
// default.
// Default: 256 MiB, or MaxRequestBytes if larger (Kafka's
// queued.max.request.bytes, unlimited by default there).
func QueuedMaxRequestBytes(n int64) Opt {
	return optFunc(func(c *config) { c.queuedMaxRequests = n })
}
