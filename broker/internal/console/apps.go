package console

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// registration is what a streams application PUTs to /api/apps/{app}:
// its topology's Describe() text and, optionally, the records each node
// has processed so far (the page draws rates from how they move).
type registration struct {
	Topology  string           `json:"topology"`
	Processed map[string]int64 `json:"processed,omitempty"`
}

type app struct {
	ID        string           `json:"id"`
	Graph     graph            `json:"graph"`
	Processed map[string]int64 `json:"processed"`
	Updated   int64            `json:"updated"`
}

type appSummary struct {
	ID            string `json:"id"`
	Subtopologies int    `json:"subtopologies"`
	Nodes         int    `json:"nodes"`
	Updated       int64  `json:"updated"`
}

// Bounds of the registry.
const (
	maxApps              = 100
	maxAppIDLen          = 249
	maxRegistrationBytes = 1 << 20
)

// apps holds the registered applications; each expires ttl after its
// last registration.
type apps struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]app
}

func newApps(ttl time.Duration) *apps { return &apps{ttl: ttl, m: map[string]app{}} }

// live drops expired applications; the caller holds mu.
func (a *apps) live() {
	cutoff := time.Now().Add(-a.ttl).UnixMilli()
	for id, ap := range a.m {
		if ap.Updated < cutoff {
			delete(a.m, id)
		}
	}
}

func (c *console) listApps(*http.Request) (any, error) {
	c.apps.mu.Lock()
	defer c.apps.mu.Unlock()
	c.apps.live()
	out := make([]appSummary, 0, len(c.apps.m))
	for _, ap := range c.apps.m {
		s := appSummary{ID: ap.ID, Subtopologies: len(ap.Graph.Subtopologies), Updated: ap.Updated}
		for _, st := range ap.Graph.Subtopologies {
			s.Nodes += len(st.Nodes)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b appSummary) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (c *console) getApp(r *http.Request) (any, error) {
	id := r.PathValue("app")
	c.apps.mu.Lock()
	defer c.apps.mu.Unlock()
	c.apps.live()
	ap, ok := c.apps.m[id]
	if !ok {
		return nil, notFound(fmt.Errorf("no application %q is registered", id))
	}
	return ap, nil
}

func (c *console) putApp(r *http.Request) (any, error) {
	id := r.PathValue("app")
	if len(id) > maxAppIDLen {
		return nil, badRequest(fmt.Errorf("application id over %d bytes", maxAppIDLen))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRegistrationBytes+1))
	if err != nil {
		return nil, badRequest(fmt.Errorf("read registration: %w", err))
	}
	if len(body) > maxRegistrationBytes {
		return nil, &statusError{http.StatusRequestEntityTooLarge, fmt.Errorf("registration over %d bytes", maxRegistrationBytes)}
	}
	var reg registration
	if err := json.Unmarshal(body, &reg); err != nil {
		return nil, badRequest(fmt.Errorf("registration: %w", err))
	}
	g, err := parseTopology(reg.Topology)
	if err != nil {
		return nil, badRequest(fmt.Errorf("topology: %w", err))
	}
	if reg.Processed == nil {
		reg.Processed = map[string]int64{}
	}
	ap := app{ID: id, Graph: g, Processed: reg.Processed, Updated: nowMillis()}
	c.apps.mu.Lock()
	defer c.apps.mu.Unlock()
	c.apps.live()
	if _, ok := c.apps.m[id]; !ok && len(c.apps.m) >= maxApps {
		return nil, &statusError{http.StatusTooManyRequests, fmt.Errorf("%d applications are registered, the most the console keeps", maxApps)}
	}
	c.apps.m[id] = ap
	return ap, nil
}

func (c *console) deleteApp(r *http.Request) (any, error) {
	id := r.PathValue("app")
	c.apps.mu.Lock()
	defer c.apps.mu.Unlock()
	if _, ok := c.apps.m[id]; !ok {
		return nil, notFound(fmt.Errorf("no application %q is registered", id))
	}
	delete(c.apps.m, id)
	return struct{}{}, nil
}
