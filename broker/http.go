package broker

import (
	"log/slog"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPHandler returns a new mux serving the broker's operational
// endpoints and its web console, for an HTTP server of the caller's
// (`riffle broker --http` runs one):
//
//	/metrics       the broker's series in Prometheus' exposition format
//	/healthz       200 while the process is up
//	/readyz        200 from the end of Start until Close, 503 otherwise
//	/debug/pprof/  the Go runtime's profiles (net/http/pprof)
//	/              the web console: pages and their JSON API under /api/
//
// The series are the broker's own registry, never Prometheus' global
// one, so several brokers can run in one process. The console reads the
// cluster through the Kafka protocol with a client of the broker's own
// listener, and answers 503 until Start has returned. The caller may
// mount more beside them.
//
// It may be called before Start. The profiles reveal the process's
// internals and the console shows every record: like the Kafka listener,
// neither has authentication, so serve the mux on a loopback address or
// behind access control.
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
	mux.Handle("/", b.console)
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
