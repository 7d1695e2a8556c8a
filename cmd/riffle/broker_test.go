package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/testenv"
)

// TestBrokerServesHTTP runs `riffle broker --http` and reads its
// endpoints until SIGTERM's context ends it.
func TestBrokerServesHTTP(t *testing.T) {
	httpAddr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := runCLI(ctx, "broker", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--http", httpAddr, "--log-level", "error")
		done <- err
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(20 * time.Second)
	for code, _ := get("/readyz"); code != http.StatusOK; code, _ = get("/readyz") {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never answered 200")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "riffle_raft_state 2") {
		t.Fatalf("/metrics: %d %.200q", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusOK {
		t.Fatalf("/debug/pprof/ on a loopback address: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the broker did not stop")
	}
	if code, _ := get("/healthz"); code != 0 {
		t.Fatalf("the HTTP endpoint outlived the broker: %d", code)
	}
}

// TestWithoutProfiles checks what a non-loopback --http address serves.
func TestWithoutProfiles(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "served") })
	for path, want := range map[string]int{"/metrics": http.StatusOK, "/debug/pprof/": http.StatusNotFound, "/debug/pprof/heap": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		withoutProfiles(mux).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("GET %s: %d, want %d", path, rec.Code, want)
		}
	}
}
