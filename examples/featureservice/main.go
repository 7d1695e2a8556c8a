// Command featureservice keeps per-user features, the number of clicks of
// each user in all and per minute, in Riffle Streams stores and serves
// them over HTTP from every instance, forwarding a lookup to the instance
// that holds the user.
//
//	go run ./examples/featureservice -brokers 127.0.0.1:9092 -listen 127.0.0.1:8081
//	go run ./examples/featureservice -brokers 127.0.0.1:9092 -listen 127.0.0.1:8082 -state /tmp/fs2
//	curl 127.0.0.1:8081/features/user-7                       # {"user":"user-7","clicks":12,"clicks_5m":3}
//	curl 127.0.0.1:8081/stores/clicks-per-user/keys/user-7    # from either instance
//	curl 127.0.0.1:8082/stores/clicks-per-user/all
//	curl '127.0.0.1:8082/stores/clicks-per-minute/windows/user-7?from=2026-12-02T10:00:00Z'
//
// Clicks are records of the clicks topic keyed by user id (their values
// are not read; their timestamps place them in windows). The count per
// user lives in a Pebble key-value store, the count per user and minute in
// a Pebble window store kept for an hour; both are restored from their
// changelogs when a user's partition moves. /features/{user} adds up the
// five latest minutes (the current one included) through the query
// server, so that it too answers on any instance.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/riffle-stream/riffle/streams"
	"github.com/riffle-stream/riffle/topology"
)

// Store is the name of the store holding the click count per user.
const Store = "clicks-per-user"

// WindowStore is the name of the store holding the click count per user
// and minute.
const WindowStore = "clicks-per-minute"

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

// Topology counts the clicks of each user into Store, and per minute into
// WindowStore.
func Topology(topic string) (*topology.Topology, error) {
	b := topology.NewBuilder()
	users := topology.FromTopics[string, string](b, []string{topic}).GroupByKey()
	users.Count(topology.Materialized(Store))
	topology.WindowedBy(users, topology.TumblingWindows(time.Minute)).WithRetention(time.Hour).
		Count(topology.Materialized(WindowStore))
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
	id := func(s string) (string, error) { return s, nil }
	if err := errors.Join(streams.ServeKeyValue[string, int64](qs, Store, id),
		streams.ServeWindow[string, int64](qs, WindowStore, id)); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", qs)
	mux.Handle("GET /features/{user}", features{self: "http://" + ln.Addr().String(), client: &http.Client{Timeout: 5 * time.Second}})
	srv := &http.Server{Handler: mux}
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

// features answers /features/{user} with the user's click count in all and
// in the five latest minutes, read through the query server at self.
type features struct {
	self   string
	client *http.Client
}

func (f features) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user := url.PathEscape(r.PathValue("user"))
	var total struct {
		Value int64 `json:"value"`
	}
	status, err := f.get(r.Context(), "/stores/"+Store+"/keys/"+user, &total)
	if err != nil || status != http.StatusOK && status != http.StatusNotFound {
		writeError(w, status, fmt.Errorf("clicks of %s: %d %v", user, status, err))
		return
	}
	from := time.Now().Truncate(time.Minute).Add(-4 * time.Minute)
	var windows struct {
		Windows []struct {
			Value int64 `json:"value"`
		} `json:"windows"`
	}
	status, err = f.get(r.Context(), "/stores/"+WindowStore+"/windows/"+user+"?from="+strconv.FormatInt(from.UnixMilli(), 10), &windows)
	if err != nil || status != http.StatusOK {
		writeError(w, status, fmt.Errorf("windows of %s: %d %v", user, status, err))
		return
	}
	var recent int64
	for _, win := range windows.Windows {
		recent += win.Value
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"user": r.PathValue("user"), "clicks": total.Value, "clicks_5m": recent})
}

// get GETs path of the query server into v and returns the status.
func (f features) get(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.self+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return http.StatusBadGateway, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	if status < 400 {
		status = http.StatusBadGateway
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
