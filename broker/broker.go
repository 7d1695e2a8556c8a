// Package broker is Riffle's Kafka-protocol broker, embeddable in any Go
// program.
//
// A Broker speaks the Kafka wire protocol, so existing clients (franz-go,
// librdkafka and kcat, kafkajs, sarama, kafka-python) use it unchanged. It
// keeps each partition in a segmented log on disk, its cluster metadata in
// a Raft quorum (KRaft-style, no ZooKeeper), and consumer group, share group and
// transaction state in stores of their own, all under one data directory:
//
//	<data-dir>/logs/<topic>-<partition>/   partition logs
//	<data-dir>/metadata/                   the metadata quorum's log and snapshots
//	<data-dir>/groups/                     committed offsets and consumer group state
//	<data-dir>/share/                      share group membership and record states
//	<data-dir>/transactions/               the transaction coordinator's state
//	<data-dir>/producer-ids                the next block of producer ids
//	<data-dir>/meta.properties             the cluster and node the directory belongs to
//
// Start a broker, use it, and stop it:
//
//	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir))
//	if err != nil { ... }
//	if err := b.Start(ctx); err != nil { ... }
//	defer b.Close(context.Background())
//	client, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
//
// Every request is decoded and every response encoded with franz-go's kmsg
// package; requests on one connection are handled in order and answered in
// order, while long polls and fsync waits proceed in the background.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"golang.org/x/sync/semaphore"
)

// Broker is a single Kafka-protocol broker. Its methods are safe for
// concurrent use.
type Broker struct {
	cfg config
	log *slog.Logger

	lock  *os.File // flock on the data directory
	meta  *metadata.Store
	parts *partitionSet
	pids  *producerIDs
	ext   extensions
	// metrics is the broker's Prometheus registry and series.
	metrics *series
	// console is the web console HTTPHandler serves at "/".
	console *webConsole
	// started is set once Start has opened every store and listens, and
	// never cleared: the metrics collector reads the stores only then.
	started atomic.Bool

	ln       net.Listener
	addr     string
	host     string
	port     int32
	ctx      context.Context
	cancel   context.CancelFunc
	serving  sync.WaitGroup
	nextConn atomic.Uint64

	// queued is the budget of request bytes read but not yet handled
	// (QueuedMaxRequestBytes).
	queued *semaphore.Weighted
	// panics counts the requests whose handling panicked.
	panics atomic.Int64
	// refused rate-limits the log of connections closed at accept.
	refused rateLog

	mu     sync.Mutex
	conns  map[uint64]net.Conn
	perIP  map[string]int // open connections by client address
	closed bool
}

// New returns a broker configured by opts. It touches neither the network
// nor the disk: Start does.
func New(opts ...Opt) (*Broker, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	if cfg.queuedMaxRequests == 0 {
		cfg.queuedMaxRequests = max(defaultQueuedMaxRequestBytes, int64(cfg.maxRequestBytes))
	}
	b := &Broker{
		cfg:     cfg,
		log:     cfg.logger,
		conns:   make(map[uint64]net.Conn),
		perIP:   make(map[string]int),
		queued:  semaphore.NewWeighted(cfg.queuedMaxRequests),
		refused: rateLog{every: 10 * time.Second},
	}
	b.metrics = newSeries(b)
	b.console = &webConsole{b: b}
	return b, nil
}

// Start opens the data directory, recovers the logs and the metadata
// quorum, and begins accepting connections. It returns once the broker
// serves requests; ctx bounds the start-up only.
func (b *Broker) Start(ctx context.Context) (err error) {
	if b.ctx != nil {
		return errors.New("broker: already started")
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			b.shutdown()
		}
	}()
	if err := os.MkdirAll(b.cfg.dataDir, 0o755); err != nil {
		return fmt.Errorf("broker: create data directory: %w", err)
	}
	if b.lock, err = lockDir(b.cfg.dataDir); err != nil {
		return err
	}
	if b.pids, err = openProducerIDs(filepath.Join(b.cfg.dataDir, "producer-ids")); err != nil {
		return err
	}
	props, err := b.checkDataDir()
	if err != nil {
		return err
	}
	b.parts = newPartitionSet(filepath.Join(b.cfg.dataDir, "logs"), b.cfg.sync, b.cfg.nodeID, b.log, b.metrics)
	b.meta, err = metadata.Open(ctx, metadata.Config{
		Dir:       filepath.Join(b.cfg.dataDir, "metadata"),
		NodeID:    b.cfg.nodeID,
		ClusterID: props.clusterID,
		Limits:    b.limits(),
		OnChange:  b.metadataChanged,
		Logger:    b.log.With("component", "metadata"),
	})
	if errors.Is(err, metadata.ErrClusterMismatch) {
		return fmt.Errorf("broker: data directory %s: %w; its metadata/ is not the one its logs were written under: restore that metadata/ (or point --data-dir at the data of the cluster this metadata belongs to)", b.cfg.dataDir, err)
	}
	if err != nil {
		return fmt.Errorf("broker: open metadata: %w", err)
	}
	if props.clusterID == "" {
		props = metaProperties{clusterID: b.meta.Image().ClusterID, nodeID: b.cfg.nodeID}
		if err := writeMetaProperties(b.cfg.dataDir, props); err != nil {
			return err
		}
	}
	b.parts.wait()
	b.parts.warnStrays(b.meta.Image())
	if err := b.ext.open(b); err != nil {
		return err
	}
	if err := b.listen(ctx); err != nil {
		return err
	}
	b.serving.Add(2)
	go b.acceptLoop()
	go b.retentionLoop()
	b.startCleaner()
	b.log.Info("broker started", "addr", b.addr, "advertised", net.JoinHostPort(b.host, strconv.Itoa(int(b.port))),
		"data_dir", b.cfg.dataDir, "node_id", b.cfg.nodeID, "cluster_id", b.meta.Image().ClusterID)
	b.started.Store(true)
	return nil
}

func (b *Broker) listen(ctx context.Context) error {
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", b.cfg.listenAddr)
	if err != nil {
		return fmt.Errorf("broker: listen: %w", err)
	}
	b.ln = ln
	b.addr = ln.Addr().String()
	adv := b.cfg.advertisedAddr
	if adv == "" {
		adv = b.addr
	}
	host, portStr, err := net.SplitHostPort(adv)
	if err != nil {
		return fmt.Errorf("broker: advertised address %q: %w", adv, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return fmt.Errorf("broker: advertised port %q: %w", portStr, err)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	b.host, b.port = host, int32(port)
	reg := metadata.Broker{ID: b.cfg.nodeID, Host: b.host, Port: b.port}
	if cur, ok := b.meta.Image().Brokers[reg.ID]; ok && cur.Host == reg.Host && cur.Port == reg.Port && cur.Rack == reg.Rack {
		return nil
	}
	if err := b.meta.RegisterBroker(ctx, reg); err != nil {
		return fmt.Errorf("broker: register in metadata: %w", err)
	}
	return nil
}

// Addr returns the address the broker listens on, with the port actually
// bound. It is empty before Start.
func (b *Broker) Addr() string { return b.addr }

// ClusterID returns the id of the cluster the broker belongs to, fixed
// when its data directory was first used.
func (b *Broker) ClusterID() string { return b.meta.Image().ClusterID }

// Close stops accepting connections, closes the open ones, waits for
// in-flight requests, and closes the logs and the metadata store so that
// the next Start is fast. If ctx ends first, Close stops waiting and
// closes the stores anyway: nothing acknowledged is lost either way.
// Closing a closed broker does nothing.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.ctx == nil || b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.console.close()
	if b.ln != nil {
		b.ln.Close()
	}
	b.mu.Lock()
	for _, nc := range b.conns {
		nc.Close()
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.serving.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		b.log.Warn("broker close: gave up waiting for connections", "err", ctx.Err())
	}
	return b.shutdown()
}

// shutdown closes the stores in the reverse order of Start.
func (b *Broker) shutdown() error {
	var errs []error
	errs = append(errs, b.ext.close())
	if b.meta != nil {
		errs = append(errs, b.meta.Close())
	}
	if b.parts != nil {
		errs = append(errs, b.parts.close())
	}
	if b.lock != nil {
		errs = append(errs, b.lock.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("broker: close: %w", err)
	}
	b.log.Info("broker stopped", "addr", b.addr)
	return nil
}

func (b *Broker) acceptLoop() {
	defer b.serving.Done()
	var delay time.Duration
	for {
		nc, err := b.ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			// Temporary failures such as EMFILE: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			b.log.Warn("accept", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		b.setBuffers(nc)
		host := remoteHost(nc)
		id := b.nextConn.Add(1)
		b.mu.Lock()
		if b.ctx.Err() != nil {
			b.mu.Unlock()
			nc.Close()
			return
		}
		if reason := b.refuse(host); reason != "" {
			b.mu.Unlock()
			nc.Close()
			b.refused.log(b.log, "closed connection at accept", "reason", reason, "remote", nc.RemoteAddr().String())
			continue
		}
		b.conns[id] = nc
		b.perIP[host]++
		b.serving.Add(1)
		b.mu.Unlock()
		go func() {
			defer b.serving.Done()
			b.serveConn(b.ctx, nc, id, host)
		}()
	}
}

// setBuffers gives a client connection the socket buffers the config
// asks for. A failure leaves the operating system's, which serve too.
func (b *Broker) setBuffers(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	if n := b.cfg.sendBuffer; n > 0 {
		if err := tc.SetWriteBuffer(n); err != nil {
			b.log.Warn("set socket send buffer", "bytes", n, "err", err)
		}
	}
	if n := b.cfg.receiveBuffer; n > 0 {
		if err := tc.SetReadBuffer(n); err != nil {
			b.log.Warn("set socket receive buffer", "bytes", n, "err", err)
		}
	}
}

// refuse says why a new connection from host exceeds a connection limit,
// or "" if it does not. b.mu is held.
func (b *Broker) refuse(host string) string {
	switch {
	case len(b.conns) >= b.cfg.maxConns:
		return fmt.Sprintf("max.connections (%d) reached", b.cfg.maxConns)
	case b.perIP[host] >= b.cfg.maxConnsPerIP:
		return fmt.Sprintf("max.connections.per.ip (%d) reached", b.cfg.maxConnsPerIP)
	}
	return ""
}

// remoteHost is the address a connection counts against for
// MaxConnectionsPerIP.
func remoteHost(nc net.Conn) string {
	if host, _, err := net.SplitHostPort(nc.RemoteAddr().String()); err == nil {
		return host
	}
	return nc.RemoteAddr().String()
}

func (b *Broker) connClosed(id uint64, host string) {
	b.mu.Lock()
	delete(b.conns, id)
	if b.perIP[host]--; b.perIP[host] <= 0 {
		delete(b.perIP, host)
	}
	b.mu.Unlock()
	b.ext.connClosed(id)
}

// rateLog logs one message at most once per period, with the number of
// times it was suppressed since.
type rateLog struct {
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLog) log(l *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	suppressed := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	l.Info(msg, append(args, "suppressed_since_last", suppressed)...)
}

// retentionLoop enforces retention.ms, retention.bytes and segment.ms.
func (b *Broker) retentionLoop() {
	defer b.serving.Done()
	t := time.NewTicker(b.cfg.retentionCheck)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case now := <-t.C:
			b.parts.enforceRetention(now)
		}
	}
}

// lockDir takes an exclusive lock on dir so that two brokers never share
// one data directory. The lock goes with the process, kill -9 included.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("broker: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("broker: data directory %s is in use by another broker: %w", dir, err)
	}
	return f, nil
}
