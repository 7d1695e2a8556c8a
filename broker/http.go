package broker

import (
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPHandler returns a new mux serving the broker's operational
// endpoints, for an HTTP server of the caller's (`riffle broker --http`
// runs one):
//
//	/metrics       the broker's series in Prometheus' exposition format
//	/healthz       200 while the process is up
//	/readyz        200 from the end of Start until Close, 503 otherwise
//	/debug/pprof/  the Go runtime's profiles (net/http/pprof)
//
// The series are the broker's own registry, never Prometheus' global
// one, so several brokers can run in one process. Other paths are not
// served; the caller mounts what it wants beside them, a console at "/"
// for example, whose patterns the more specific ones above take
// precedence over:
//
//	mux := b.HTTPHandler()
//	mux.Handle("/", console)
//
// It may be called before Start. The profiles reveal the process's
// internals: serve the mux on a loopback address or behind access
// control.
func (b *Broker) HTTPHandler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(b.metrics.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if reason := b.notReady(); reason != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(reason + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// notReady says why the broker does not serve clients, or "" if it does:
// Start has returned, so the listener is up, the metadata is loaded and
// the partition logs are open, and Close has not begun.
func (b *Broker) notReady() string {
	if !b.started.Load() {
		return "not ready: starting"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "not ready: closing"
	}
	return ""
}
