package streams

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ReportToConsole makes the App register with the Riffle web console at
// consoleURL, the address `riffle broker --http` serves (for example
// "http://127.0.0.1:8080"). Every 20 seconds while it runs, well inside
// the minute after which the console forgets an application, it sends its
// topology's description and the records each node has received; the
// console draws the topology as a graph with per-node rates. A failed
// report is logged and tried again at the next one; it never stops the
// App. On stop the App unregisters. Default: no reports.
func ReportToConsole(consoleURL string) Option {
	return func(c *config) { c.consoleURL, c.consoleEvery = consoleURL, 20*time.Second }
}

// consoleReport is the body of a registration (PUT /api/apps/{app}).
type consoleReport struct {
	Topology  string           `json:"topology"`
	Processed map[string]int64 `json:"processed"`
}

// reportToConsole registers the App with the console until ctx ends, and
// unregisters it then.
func (a *App) reportToConsole(ctx context.Context, log *slog.Logger) {
	endpoint := strings.TrimSuffix(a.cfg.consoleURL, "/") + "/api/apps/" + url.PathEscape(a.cfg.appID)
	client := &http.Client{Timeout: 5 * time.Second}
	send := func(ctx context.Context, method string, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, method, endpoint, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s %s: %s", method, endpoint, resp.Status)
		}
		return nil
	}
	topology := a.graph.Describe()
	tick := time.NewTicker(a.cfg.consoleEvery)
	defer tick.Stop()
	for {
		body, err := json.Marshal(consoleReport{Topology: topology, Processed: a.metrics.nodeTotals()})
		if err == nil {
			err = send(ctx, http.MethodPut, body)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("report to the console", "url", a.cfg.consoleURL, "err", err)
		}
		select {
		case <-ctx.Done():
			if err := send(context.WithoutCancel(ctx), http.MethodDelete, nil); err != nil {
				log.Debug("unregister from the console", "err", err)
			}
			return
		case <-tick.C:
		}
	}
}
