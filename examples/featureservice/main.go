// Command featureservice keeps per-user features, the number of clicks of
// each user, in a Riffle Streams table and serves them over HTTP from every
// instance, forwarding a lookup to the instance that holds the user.
//
//	go run ./examples/featureservice -brokers 127.0.0.1:9092 -listen 127.0.0.1:8081
//	go run ./examples/featureservice -brokers 127.0.0.1:9092 -listen 127.0.0.1:8082 -state /tmp/fs2
//	curl 127.0.0.1:8081/stores/clicks-per-user/keys/user-7   # from either instance
//	curl 127.0.0.1:8082/stores/clicks-per-user/all
//
// Clicks are records of the clicks topic keyed by user id (their values
// are not read). The count per user lives in a Pebble store, restored from
// its changelog when a user's partition moves.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/topology"
)

// Store is the name of the store holding the click count per user.
const Store = "clicks-per-user"

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "comma-separated host:port of the cluster")
	listen := flag.String("listen", "127.0.0.1:8081", "host:port of this instance's query server, advertised to the others")
	stateDir := flag.String("state", "", "state directory (default: riffle-streams under the temporary directory)")
	topic := flag.String("topic", "clicks", "topic of clicks, keyed by user id")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "featureservice:", err)
		os.Exit(1)
	}
	cfg := Config{Brokers: strings.Split(*brokers, ","), Topic: *topic, StateDir: *stateDir, Logger: slog.Default()}
	if err := Run(ctx, ln, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "featureservice:", err)
		os.Exit(1)
	}
}

// Config configures one instance of the service.
type Config struct {
	Brokers  []string
	Topic    string
	StateDir string
	Logger   *slog.Logger
}

// Topology counts the clicks of each user into Store.
func Topology(topic string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	topology.FromTopics[string, string](b, []string{topic}).
		GroupByKey().
		Count(topology.Materialized(Store))
	return b.Build()
}

// Run runs one instance, serving queries on ln, until ctx is done.
func Run(ctx context.Context, ln net.Listener, cfg Config) error {
	top, err := Topology(cfg.Topic)
	if err != nil {
		return err
	}
	opts := []streams.Option{
		streams.ApplicationID("featureservice"),
		streams.Brokers(cfg.Brokers...),
		streams.ApplicationServer(ln.Addr().String()),
		streams.Logger(cfg.Logger),
	}
	if cfg.StateDir != "" {
		opts = append(opts, streams.StateDir(cfg.StateDir))
	}
	app, err := streams.New(top, opts...)
	if err != nil {
		return err
	}
	qs := streams.NewQueryServer(app)
	if err := streams.ServeKeyValue[string, int64](qs, Store, func(s string) (string, error) { return s, nil }); err != nil {
		return err
	}
	srv := &http.Server{Handler: qs}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	runErr := app.Run(ctx)
	if err := srv.Close(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}
