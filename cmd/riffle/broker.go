package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/riffle-stream/riffle/broker"
)

// brokerServe defines the flags of riffle broker and returns what runs
// the broker until ctx ends.
func brokerServe(fs *flag.FlagSet) runFunc {
	listen := fs.String("listen", "127.0.0.1:9092", "host:port to accept Kafka clients on")
	advertised := fs.String("advertised-addr", "", "host:port clients are told to connect to (default: the listen address)")
	dataDir := fs.String("data-dir", "riffle-data", "directory for partition logs, metadata and group state")
	nodeID := fs.Int("node-id", 1, "this broker's node id")
	fsync := fs.String("fsync", "group-commit", "flush policy: group-commit (fsync before acknowledging acks=all) or none (page cache only, as Kafka's default)")
	partitions := fs.Int("num-partitions", 1, "partitions of auto-created topics")
	autoCreate := fs.Bool("auto-create-topics", true, "create unknown topics on Metadata and Produce requests")
	fetchMax := fs.Int("fetch-max-bytes", 8<<20, "largest record bytes in one fetch response (Kafka's fetch.max.bytes)")
	maxTopicParts := fs.Int("max-topic-partitions", 10_000, "most partitions of one topic, and of one CreateTopics or CreatePartitions request; more is answered POLICY_VIOLATION")
	maxParts := fs.Int("max-partitions", 100_000, "most partitions of all topics together; more is answered POLICY_VIOLATION")
	maxIdle := fs.Duration("connections-max-idle", 10*time.Minute, "close connections without traffic for this long (Kafka's connections.max.idle.ms)")
	maxConns := fs.Int("max-connections", 0, "most client connections served at once, 0 for unlimited (Kafka's max.connections)")
	maxConnsPerIP := fs.Int("max-connections-per-ip", 0, "most client connections served at once from one address, 0 for unlimited (Kafka's max.connections.per.ip)")
	sendBuf := fs.Int("socket-send-buffer-bytes", 102400, "send buffer (SO_SNDBUF) of client connections, -1 for the operating system's (Kafka's socket.send.buffer.bytes)")
	receiveBuf := fs.Int("socket-receive-buffer-bytes", -1, "receive buffer (SO_RCVBUF) of client connections, -1 for the operating system's (Kafka's socket.receive.buffer.bytes, 102400 there)")
	queuedMax := fs.Int64("queued-max-request-bytes", 0, "bytes of requests read but not yet handled, across connections; 0 for 256 MiB (Kafka's queued.max.request.bytes)")
	cleanerThreads := fs.Int("cleaner-threads", 1, "partitions the log cleaner compacts at once (Kafka's log.cleaner.threads)")
	cleanerIO := fs.Float64("cleaner-io-max-bytes-per-second", 0, "cap on the bytes the log cleaner reads and writes per second, 0 for none (Kafka's log.cleaner.io.max.bytes.per.second)")
	httpAddr := fs.String("http", "", "serve the web console, /metrics, /healthz, /readyz and, on a loopback address, /debug/pprof on this host:port (off when empty)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	return func(ctx context.Context, _ *output, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("broker: unexpected argument %q", args[0])
		}
		var lvl slog.Level
		if err := lvl.UnmarshalText([]byte(*level)); err != nil {
			return fmt.Errorf("broker: --log-level: %w", err)
		}
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
		var policy broker.SyncPolicy
		switch *fsync {
		case "group-commit":
			policy = broker.SyncGroupCommit
		case "none":
			policy = broker.SyncNone
		default:
			return fmt.Errorf("broker: --fsync must be group-commit or none, not %q", *fsync)
		}
		opts := []broker.Opt{
			broker.ListenAddr(*listen),
			broker.DataDir(*dataDir),
			broker.NodeID(int32(*nodeID)),
			broker.Sync(policy),
			broker.DefaultPartitions(int32(*partitions)),
			broker.AutoCreateTopics(*autoCreate),
			broker.FetchMaxBytes(int32(*fetchMax)),
			broker.MaxTopicPartitions(int32(min(*maxTopicParts, math.MaxInt32))),
			broker.MaxPartitions(*maxParts),
			broker.Logger(logger),
		}
		opts = append(opts, broker.ConnectionsMaxIdle(*maxIdle), broker.QueuedMaxRequestBytes(*queuedMax),
			broker.SocketSendBufferBytes(*sendBuf), broker.SocketReceiveBufferBytes(*receiveBuf),
			broker.CleanerThreads(*cleanerThreads), broker.CleanerIOMaxBytesPerSecond(*cleanerIO))
		if *maxConns != 0 {
			opts = append(opts, broker.MaxConnections(*maxConns))
		}
		if *maxConnsPerIP != 0 {
			opts = append(opts, broker.MaxConnectionsPerIP(*maxConnsPerIP))
		}
		if *advertised != "" {
			opts = append(opts, broker.AdvertisedAddr(*advertised))
		}
		b, err := broker.New(opts...)
		if err != nil {
			return err
		}
		// The HTTP endpoint comes up first, so /readyz answers during a long
		// recovery.
		mux := b.HTTPHandler()
		if *httpAddr != "" {
			stop, err := serveHTTP(*httpAddr, mux, logger)
			if err != nil {
				return err
			}
			defer stop()
		}
		if err := b.Start(ctx); err != nil {
			return err
		}
		<-ctx.Done()
		logger.Info("shutting down")
		closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return b.Close(closeCtx)
	}
}

// serveHTTP serves the broker's HTTP handler on addr until stop is
// called. Metrics and health checks are meant to be read from elsewhere,
// and they, like the Kafka listener, show nothing a Kafka client could
// not ask for; the runtime profiles reveal the process's memory and cost
// CPU, so they are served only when addr is a loopback address.
func serveHTTP(addr string, mux *http.ServeMux, logger *slog.Logger) (stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("broker: --http: %w", err)
	}
	var h http.Handler = mux
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		h = withoutProfiles(mux)
		logger.Info("not serving /debug/pprof on a non-loopback --http address", "addr", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("broker: --http: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	logger.Info("serving http", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("http server stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// withoutProfiles answers 404 for /debug/pprof and hands everything else
// to h.
func withoutProfiles(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}
