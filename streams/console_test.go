package streams

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestReportToConsole runs word count with ReportToConsole against the
// console a real broker serves, and checks that the console learns the
// topology and the records its nodes received, and forgets the
// application when it stops.
func TestReportToConsole(t *testing.T) {
	t.Parallel()
	b := riffleBroker(t)
	srv := httptest.NewServer(b.HTTPHandler())
	t.Cleanup(srv.Close)
	brokers := []string{b.Addr()}

	fast := func(c *config) { c.consoleEvery = 100 * time.Millisecond }
	r := startApp(t, brokers, t.TempDir(), ReportToConsole(srv.URL), fast)
	produceLines(t, brokers, 200, 5)

	type registered struct {
		Graph struct {
			Subtopologies []struct {
				Nodes []json.RawMessage `json:"nodes"`
			} `json:"subtopologies"`
		} `json:"graph"`
		Processed map[string]int64 `json:"processed"`
	}
	get := func() (int, registered) {
		var reg registered
		resp, err := http.Get(srv.URL + "/api/apps/wordcount")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&reg); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, reg
	}
	waitFor(t, "the console to show the topology and the records of its nodes", 30*time.Second, func() bool {
		code, reg := get()
		var total int64
		for _, n := range reg.Processed {
			total += n
		}
		return code == http.StatusOK && len(reg.Graph.Subtopologies) == 2 && total >= 200
	})
	r.stop(t)
	if code, _ := get(); code != http.StatusNotFound {
		t.Errorf("after the App stopped, GET /api/apps/wordcount: %d, want 404", code)
	}
}
