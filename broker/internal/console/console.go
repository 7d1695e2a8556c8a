// Package console serves Riffle's web console: embedded pages (no CDN,
// they work offline) and the JSON API they read. Every figure the console
// shows comes from the cluster through the Kafka protocol, with a kgo
// client against the broker's own listener, so the console sees what any
// client sees and needs no private access to the broker.
//
// The API, all JSON:
//
//	GET    /api/overview                 cluster id, controller, brokers, quorum, topics
//	GET    /api/topics                   topics with partitions, records and end offsets
//	GET    /api/topics/{topic}           partitions with offsets (and sizes when the
//	                                     cluster serves DescribeLogDirs), configs
//	GET    /api/topics/{topic}/records   records from an offset, a time or the end
//	GET    /api/groups                   consumer and share groups
//	GET    /api/groups/{group}           a consumer group: members, assignment, lag
//	GET    /api/share-groups/{group}     a share group: members, assignment, offsets
//	GET    /api/apps                     registered streams applications
//	GET    /api/apps/{app}               an application's topology as a graph
//	PUT    /api/apps/{app}               register or refresh an application
//	DELETE /api/apps/{app}               unregister it
//
// The broker's HTTP server mounts the handler at "/" with a client of its
// own listener:
//
//	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
//	...
//	mux.Handle("/", console.New(cl, console.Logger(log)))
//
// Like the broker's listener, the console has no authentication: anyone
// who reaches it reads every topic and may register applications.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

//go:embed assets
var assets embed.FS

// Opt configures the console.
type Opt interface{ apply(*config) }

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

type config struct {
	logger         *slog.Logger
	appTTL         time.Duration
	requestTimeout time.Duration
}

// Logger sets the logger for failed requests to the cluster. The default
// is slog.Default().
func Logger(l *slog.Logger) Opt { return optFunc(func(c *config) { c.logger = l }) }

// AppTTL sets how long a streams application stays listed after its last
// registration (PUT /api/apps/{app}); applications refresh it by
// registering again. The default is one minute.
func AppTTL(d time.Duration) Opt { return optFunc(func(c *config) { c.appTTL = d }) }

// RequestTimeout bounds how long one API request may take, its requests
// to the cluster included; past it the request fails with 502. The
// default is 10 seconds.
func RequestTimeout(d time.Duration) Opt { return optFunc(func(c *config) { c.requestTimeout = d }) }

// console is the handler New returns.
type console struct {
	cfg  config
	cl   *kgo.Client
	adm  *kadm.Client
	apps *apps
	mux  *http.ServeMux
}

// New returns the console's handler. cl is a client of the cluster the
// console shows (the broker's own listener); the caller keeps owning it
// and closes it after the handler is done. Browsing records opens a
// short-lived consumer with cl's seed brokers, dialer, TLS and SASL.
func New(cl *kgo.Client, opts ...Opt) http.Handler {
	cfg := config{logger: slog.Default(), appTTL: time.Minute, requestTimeout: 10 * time.Second}
	for _, o := range opts {
		o.apply(&cfg)
	}
	c := &console{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), apps: newApps(cfg.appTTL), mux: http.NewServeMux()}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree always has the directory
	}
	c.mux.Handle("GET /", http.FileServerFS(static))
	c.mux.HandleFunc("GET /api/overview", c.api(c.overview))
	c.mux.HandleFunc("GET /api/topics", c.api(c.topics))
	c.mux.HandleFunc("GET /api/topics/{topic}", c.api(c.topic))
	c.mux.HandleFunc("GET /api/topics/{topic}/records", c.api(c.records))
	c.mux.HandleFunc("GET /api/groups", c.api(c.groups))
	c.mux.HandleFunc("GET /api/groups/{group}", c.api(c.group))
	c.mux.HandleFunc("GET /api/share-groups/{group}", c.api(c.shareGroup))
	c.mux.HandleFunc("GET /api/apps", c.api(c.listApps))
	c.mux.HandleFunc("GET /api/apps/{app}", c.api(c.getApp))
	c.mux.HandleFunc("PUT /api/apps/{app}", c.api(c.putApp))
	c.mux.HandleFunc("DELETE /api/apps/{app}", c.api(c.deleteApp))
	c.mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, apiError{"no such API: " + r.Method + " " + r.URL.Path})
	})
	return c
}

// contentSecurityPolicy lets the pages load only their own scripts,
// styles and API, and keeps other sites from framing them.
const contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	c.mux.ServeHTTP(w, r)
}

// statusError is an error with the HTTP status it answers.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func badRequest(err error) error { return &statusError{http.StatusBadRequest, err} }
func notFound(err error) error   { return &statusError{http.StatusNotFound, err} }

type apiError struct {
	Error string `json:"error"`
}

// api adapts a handler returning a value or an error to JSON. An error
// without a status is a failure to reach the cluster (502), unless it is
// one of Kafka's "unknown" errors (404).
func (c *console) api(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), c.cfg.requestTimeout)
		defer cancel()
		v, err := fn(r.WithContext(ctx))
		if err == nil {
			writeJSON(w, http.StatusOK, v)
			return
		}
		status := http.StatusBadGateway
		var se *statusError
		switch {
		case errors.As(err, &se):
			status = se.status
		case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.GroupIDNotFound):
			status = http.StatusNotFound
		}
		if status >= 500 && r.Context().Err() == nil {
			c.cfg.logger.Warn("console request failed", "path", r.URL.Path, "err", err)
		}
		writeJSON(w, status, apiError{err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

// nowMillis is the time figures were taken at, for rates in the browser.
func nowMillis() int64 { return time.Now().UnixMilli() }
