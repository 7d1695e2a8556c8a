package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/processor"
)

// QueryServer answers interactive queries over HTTP with JSON, from any
// instance: a key this instance does not host is forwarded to the instance
// that does, found through the group (see ApplicationServer), and a scan of
// a whole store gathers the entries of every instance. Register stores with
// ServeKeyValue, then serve it with net/http on the address given to
// ApplicationServer:
//
//	GET /stores/{store}/keys/{key}   {"key": K, "value": V}; 404 when absent
//	GET /stores/{store}/all          [{"key": K, "value": V}, ...] of every instance
//	GET /instances                   the instances and their partitions
//
// A key that cannot be answered (its partition is restoring, or no
// instance with a server hosts it) gets 503 with {"error", "partition"}; a
// bad key 400. The instances are read from the group at most once a
// second, and again after a forward fails. Add ?local=true to answer from this instance only (what
// forwarded requests do, so that a request is forwarded at most once).
type QueryServer struct {
	app    *App
	client *http.Client

	mu     sync.RWMutex
	stores map[string]storeHandler

	instMu    sync.Mutex
	instances map[string][]Instance // store -> instances, read at instancesAt
	readAt    map[string]time.Time
}

// instancesMaxAge is how long a QueryServer trusts the group's assignment
// it read before it describes the group again; a forward that fails reads
// it again at once.
const instancesMaxAge = time.Second

type storeHandler struct {
	get func(ctx context.Context, key string) (value any, found bool, err error)
	all func() ([]json.RawMessage, error)
}

// NewQueryServer returns a QueryServer for a's stores, with none
// registered yet.
func NewQueryServer(a *App) *QueryServer {
	return &QueryServer{app: a, client: &http.Client{Timeout: 5 * time.Second}, stores: make(map[string]storeHandler),
		instances: make(map[string][]Instance), readAt: make(map[string]time.Time)}
}

// ServeKeyValue exposes a key-value store. parseKey turns the key in a
// request's path into a K; values and keys are written with
// encoding/json.
func ServeKeyValue[K, V any](qs *QueryServer, store string, parseKey func(string) (K, error)) error {
	kv, err := KeyValueStore[K, V](qs.app, store)
	if err != nil {
		return err
	}
	h := storeHandler{
		get: func(_ context.Context, raw string) (any, bool, error) {
			k, err := parseKey(raw)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %v", errBadKey, err)
			}
			v, found, err := kv.Get(k)
			return v, found, err
		},
		all: func() ([]json.RawMessage, error) {
			var out []json.RawMessage
			for e, err := range kv.All() {
				if err != nil {
					return nil, err
				}
				b, err := json.Marshal(entry{Key: e.Key, Value: e.Value})
				if err != nil {
					return nil, err
				}
				out = append(out, b)
			}
			return out, nil
		},
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	qs.stores[store] = h
	return nil
}

var errBadKey = errors.New("bad key")

type entry struct {
	Key   any `json:"key"`
	Value any `json:"value"`
}

// ServeHTTP implements http.Handler.
func (qs *QueryServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "only GET"})
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] == "instances":
		all, err := qs.app.AllInstances(r.Context())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, all)
	case len(parts) == 4 && parts[0] == "stores" && parts[2] == "keys":
		store, err1 := url.PathUnescape(parts[1])
		key, err2 := url.PathUnescape(parts[3])
		if err := errors.Join(err1, err2); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		qs.serveKey(w, r, store, key)
	case len(parts) == 3 && parts[0] == "stores" && parts[2] == "all":
		store, err := url.PathUnescape(parts[1])
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		qs.serveAll(w, r, store)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint"})
	}
}

func (qs *QueryServer) handler(store string) (storeHandler, bool) {
	qs.mu.RLock()
	defer qs.mu.RUnlock()
	h, ok := qs.stores[store]
	return h, ok
}

func (qs *QueryServer) serveKey(w http.ResponseWriter, r *http.Request, store, key string) {
	h, ok := qs.handler(store)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("store %q is not served", store)})
		return
	}
	v, found, err := h.get(r.Context(), key)
	var perr *PartitionError
	switch {
	case errors.Is(err, errBadKey):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	case errors.As(err, &perr):
		if errors.Is(err, ErrNotLocal) && r.URL.Query().Get("local") != "true" {
			if server := qs.ownerOf(r.Context(), store, perr.Partition); server != "" && server != qs.app.cfg.server {
				qs.forward(w, r, store, server)
				return
			}
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "partition": perr.Partition})
	case errors.Is(err, ErrNotLocal):
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
	case !found:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"key": key, "value": v})
	}
}

// ownerOf returns the server of the instance assigned a partition of a
// store's subtopology, or "".
func (qs *QueryServer) ownerOf(ctx context.Context, store string, partition int32) string {
	instances, err := qs.instancesWithStore(ctx, store)
	if err != nil {
		return ""
	}
	sub, _ := qs.app.subOfStore(store)
	for _, in := range instances {
		if in.Server != "" && qs.app.hosts(in, processor.TaskID{Subtopology: sub, Partition: partition}) {
			return in.Server
		}
	}
	return ""
}

// instancesWithStore returns the instances of a store, as read from the
// group at most instancesMaxAge ago.
func (qs *QueryServer) instancesWithStore(ctx context.Context, store string) ([]Instance, error) {
	qs.instMu.Lock()
	defer qs.instMu.Unlock()
	if time.Since(qs.readAt[store]) < instancesMaxAge {
		return qs.instances[store], nil
	}
	instances, err := qs.app.InstancesWithStore(ctx, store)
	if err != nil {
		return nil, err
	}
	qs.instances[store], qs.readAt[store] = instances, time.Now()
	return instances, nil
}

// forget drops the instances read for a store, after a forward failed.
func (qs *QueryServer) forget(store string) {
	qs.instMu.Lock()
	defer qs.instMu.Unlock()
	delete(qs.readAt, store)
}

func (qs *QueryServer) forward(w http.ResponseWriter, r *http.Request, store, server string) {
	u := url.URL{Scheme: "http", Host: server, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: "local=true"}
	resp, err := qs.get(r.Context(), u.String())
	if err != nil {
		qs.forget(store)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		qs.forget(store)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (qs *QueryServer) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return qs.client.Do(req)
}

func (qs *QueryServer) serveAll(w http.ResponseWriter, r *http.Request, store string) {
	h, ok := qs.handler(store)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("store %q is not served", store)})
		return
	}
	out, err := h.all()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	if r.URL.Query().Get("local") != "true" {
		instances, err := qs.instancesWithStore(r.Context(), store)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		for _, in := range instances {
			if in.Server == "" || in.Server == qs.app.cfg.server {
				continue
			}
			u := url.URL{Scheme: "http", Host: in.Server, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: "local=true"}
			remote, err := qs.fetchAll(r.Context(), u.String())
			if err != nil {
				writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
				return
			}
			out = append(out, remote...)
		}
	}
	if out == nil {
		out = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (qs *QueryServer) fetchAll(ctx context.Context, u string) ([]json.RawMessage, error) {
	resp, err := qs.get(ctx, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("%s: %s: %s", u, resp.Status, b)
	}
	var out []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
