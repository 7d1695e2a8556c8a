package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/riffle-stream/riffle/processor"
)

// QueryServer answers interactive queries over HTTP with JSON, from any
// instance: a key this instance does not host is forwarded to the instance
// that does, found through the group (see ApplicationServer), and a scan of
// a whole store gathers the entries of every instance. Register stores with
// ServeKeyValue, ServeWindow and ServeSession, then serve it with net/http
// on the address given to ApplicationServer:
//
//	GET /stores/{store}/keys/{key}      {"key": K, "value": V}; 404 when absent
//	GET /stores/{store}/all             [{"key": K, "value": V}, ...] of every instance
//	GET /stores/{store}/windows/{key}   {"key": K, "windows": [{"start": ms, "value": V}, ...]}
//	GET /stores/{store}/sessions/{key}  {"key": K, "sessions": [{"start": ms, "end": ms, "value": V}, ...]}
//	GET /instances                      the instances and their partitions
//
// The windows of a key are those starting from ?from= to ?to= (both
// inclusive, each in milliseconds since the epoch or RFC 3339; default
// every window), oldest first, as ReadOnlyWindowStore.Fetch reads them.
// The sessions of a key are those ending at or after ?from= and starting
// at or before ?to= (default all of them), as FindSessions reads them.
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

// storeHandler answers the requests of one store; an endpoint the store's
// kind does not have is nil.
type storeHandler struct {
	get      keyHandler
	windows  keyHandler
	sessions keyHandler
	all      func() ([]json.RawMessage, error)
}

// keyHandler answers a request about one key, given its query
// parameters, with the body to send and whether the key was found.
type keyHandler func(key string, params url.Values) (body any, found bool, err error)

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
		get: func(raw string, _ url.Values) (any, bool, error) {
			k, err := parseKey(raw)
			if err != nil {
				return nil, false, fmt.Errorf("%w: %v", errBadKey, err)
			}
			v, found, err := kv.Get(k)
			return map[string]any{"key": raw, "value": v}, found, err
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
	qs.register(store, h)
	return nil
}

func (qs *QueryServer) register(store string, h storeHandler) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	qs.stores[store] = h
}

// windowJSON is one window of a key as the query server writes it.
type windowJSON struct {
	Start int64 `json:"start"`
	Value any   `json:"value"`
}

// keyInTime returns the handler of requests for a key over a time range
// (?from= and ?to=, see timeRange): it parses both, a bad one being the
// client's error, and answers with what read returns.
func keyInTime[K any](parseKey func(string) (K, error), read func(raw string, k K, from, to time.Time) (any, error)) keyHandler {
	return func(raw string, params url.Values) (any, bool, error) {
		k, err := parseKey(raw)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", errBadKey, err)
		}
		from, to, err := timeRange(params)
		if err != nil {
			return nil, false, err
		}
		v, err := read(raw, k, from, to)
		if err != nil {
			return nil, false, err
		}
		return v, true, nil
	}
}

// sessionJSON is one session of a key as the query server writes it.
type sessionJSON struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	Value any   `json:"value"`
}

// ServeWindow exposes a window store (see WindowStore for K and V) at
// /stores/{store}/windows/{key}. parseKey turns the key in a request's
// path into a K; values are written with encoding/json.
func ServeWindow[K, V any](qs *QueryServer, store string, parseKey func(string) (K, error)) error {
	ws, err := WindowStore[K, V](qs.app, store)
	if err != nil {
		return err
	}
	qs.register(store, storeHandler{windows: keyInTime(parseKey, func(raw string, k K, from, to time.Time) (any, error) {
		windows := []windowJSON{}
		for kv, err := range ws.Fetch(k, from, to) {
			if err != nil {
				return nil, err
			}
			windows = append(windows, windowJSON{Start: kv.Key.UnixMilli(), Value: kv.Value})
		}
		return map[string]any{"key": raw, "windows": windows}, nil
	})})
	return nil
}

// ServeSession exposes a session store (see SessionStore for K and V) at
// /stores/{store}/sessions/{key}. parseKey turns the key in a request's
// path into a K; values are written with encoding/json.
func ServeSession[K, V any](qs *QueryServer, store string, parseKey func(string) (K, error)) error {
	ss, err := SessionStore[K, V](qs.app, store)
	if err != nil {
		return err
	}
	qs.register(store, storeHandler{sessions: keyInTime(parseKey, func(raw string, k K, from, to time.Time) (any, error) {
		sessions := []sessionJSON{}
		for kv, err := range ss.FindSessions(k, from, to) {
			if err != nil {
				return nil, err
			}
			w := kv.Key.Window
			sessions = append(sessions, sessionJSON{Start: w.StartMs(), End: w.EndMs(), Value: kv.Value})
		}
		return map[string]any{"key": raw, "sessions": sessions}, nil
	})})
	return nil
}

// timeRange reads the from and to parameters of a request, each in
// milliseconds since the epoch or RFC 3339; missing ones are unbounded.
func timeRange(params url.Values) (from, to time.Time, err error) {
	parse := func(name string, unset time.Time) (time.Time, error) {
		v := params.Get(name)
		if v == "" {
			return unset, nil
		}
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.UnixMilli(ms), nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, fmt.Errorf("%w: %s=%q is neither milliseconds nor RFC 3339", errBadKey, name, v)
		}
		return t, nil
	}
	if from, err = parse("from", minTime); err != nil {
		return from, to, err
	}
	to, err = parse("to", maxTime)
	return from, to, err
}

var errBadKey = errors.New("bad request")

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
	case len(parts) == 4 && parts[0] == "stores" && (parts[2] == "keys" || parts[2] == "windows" || parts[2] == "sessions"):
		store, err1 := url.PathUnescape(parts[1])
		key, err2 := url.PathUnescape(parts[3])
		if err := errors.Join(err1, err2); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		qs.serveKey(w, r, store, parts[2], key)
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

// serveKey answers a request about one key: endpoint is keys, windows or
// sessions.
func (qs *QueryServer) serveKey(w http.ResponseWriter, r *http.Request, store, endpoint, key string) {
	h, ok := qs.handler(store)
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("store %q is not served", store)})
		return
	}
	get := map[string]keyHandler{"keys": h.get, "windows": h.windows, "sessions": h.sessions}[endpoint]
	if get == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("store %q has no %s", store, endpoint)})
		return
	}
	body, found, err := get(key, r.URL.Query())
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
		writeJSON(w, http.StatusOK, body)
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

// forward sends a request about a key to the instance at server, with its
// query parameters and local=true.
func (qs *QueryServer) forward(w http.ResponseWriter, r *http.Request, store, server string) {
	params := r.URL.Query()
	params.Set("local", "true")
	u := url.URL{Scheme: "http", Host: server, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: params.Encode()}
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
	if !ok || h.all == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("store %q is not served as a key-value store", store)})
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
