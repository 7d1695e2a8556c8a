package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// servedApp is an instance with a QueryServer on a loopback port.
type servedApp struct {
	*runningApp
	addr string
}

func startServed(t *testing.T, brokers []string, opts ...Option) *servedApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := startApp(t, brokers, t.TempDir(), append([]Option{ApplicationServer(ln.Addr().String())}, opts...)...)
	qs := NewQueryServer(r.app)
	if err := ServeKeyValue[string, int64](qs, "counts", func(s string) (string, error) { return s, nil }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: qs}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &servedApp{runningApp: r, addr: ln.Addr().String()}
}

// httpCount asks an instance's query server for the count of word.
func httpCount(addr, word string) (int64, int, error) {
	resp, err := http.Get("http://" + addr + "/stores/counts/keys/" + url.PathEscape(word))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Value int64  `json:"value"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, resp.StatusCode, errors.New(body.Error)
	}
	return body.Value, resp.StatusCode, nil
}

// TestQueryServerForwardsToTheOwner runs two, then three instances with
// query servers: any instance answers for any word, forwarding to the
// owner, during processing and the rebalance the third one causes; /all
// gathers every word from every instance; QueryMetadataForKey names the
// instance that answers locally.
func TestQueryServerForwardsToTheOwner(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		apps := []*servedApp{startServed(t, brokers), startServed(t, brokers)}
		waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
			return apps[0].app.Metrics().Tasks > 0 && apps[1].app.Metrics().Tasks > 0
		})
		truth := produceLines(t, brokers, 2000, 5)
		words := slices.Sorted(func(yield func(string) bool) {
			for w := range truth {
				if !yield(w) {
					return
				}
			}
		})
		var mu sync.Mutex
		current := apps
		var stop atomic.Bool
		var ok, unavailable atomic.Int64
		var wg sync.WaitGroup
		defer func() { stop.Store(true); wg.Wait() }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				mu.Lock()
				a := current[i%len(current)]
				mu.Unlock()
				w := words[i%len(words)]
				n, status, err := httpCount(a.addr, w)
				switch {
				case status == http.StatusOK && n <= truth[w]:
					ok.Add(1)
				case status == http.StatusServiceUnavailable || status == http.StatusNotFound:
					unavailable.Add(1) // restoring, moving, or not counted yet
				default:
					t.Errorf("GET %s from %s: %d %d %v", w, a.addr, status, n, err)
					return
				}
			}
		}()
		third := startServed(t, brokers)
		mu.Lock()
		current = append(slices.Clone(apps), third)
		mu.Unlock()
		apps = append(apps, third)
		latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
		var last string
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; i < len(words); {
			w := words[i]
			if n, status, err := httpCount(apps[i%3].addr, w); err != nil || n != truth[w] {
				last = fmt.Sprintf("%s from %s: %d, %d, %v (truth %d)", w, apps[i%3].addr, status, n, err, truth[w])
				if time.Now().After(deadline) {
					all, err := apps[0].app.AllInstances(context.Background())
					t.Fatalf("not every word answered by every instance; last: %s; instances %v, %v", last, all, err)
				}
				time.Sleep(20 * time.Millisecond)
				continue
			}
			i++
		}
		stop.Store(true)
		wg.Wait()
		if ok.Load() == 0 {
			t.Fatal("no query answered during processing")
		}
		t.Logf("%d answers, %d unavailable during processing and the rebalance", ok.Load(), unavailable.Load())

		resp, err := http.Get("http://" + apps[0].addr + "/stores/counts/all")
		if err != nil {
			t.Fatal(err)
		}
		var all []struct {
			Key   string `json:"key"`
			Value int64  `json:"value"`
		}
		err = json.NewDecoder(resp.Body).Decode(&all)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := make(map[string]int64)
		for _, e := range all {
			got[e.Key] = e.Value
		}
		if d := diff(truth, got); d != "" || len(all) != len(truth) {
			t.Fatalf("/all: %d entries, want %d: %s", len(all), len(truth), d)
		}

		w := words[0]
		md, err := QueryMetadataForKey[string, int64](context.Background(), apps[0].app, "counts", w)
		if err != nil {
			t.Fatal(err)
		}
		var owner *servedApp
		for _, a := range apps {
			if a.addr == md.Server {
				owner = a
			}
		}
		if owner == nil {
			t.Fatalf("metadata of %q names %q, not an instance", w, md.Server)
		}
		counts, err := KeyValueStore[string, int64](owner.app, "counts")
		if err != nil {
			t.Fatal(err)
		}
		if n, _, err := counts.Get(w); err != nil || n != truth[w] {
			t.Fatalf("owner named by the metadata: %d, %v", n, err)
		}
		instances, err := apps[1].app.InstancesWithStore(context.Background(), "counts")
		if err != nil {
			t.Fatal(err)
		}
		var hosted []int32
		for _, in := range instances {
			if !slices.ContainsFunc(apps, func(a *servedApp) bool { return a.addr == in.Server }) {
				t.Fatalf("InstancesWithStore names %q", in.Server)
			}
			hosted = append(hosted, in.Partitions["wordcount-counts-repartition"]...)
		}
		if slices.Sort(hosted); !slices.Equal(hosted, []int32{0, 1, 2, 3}) {
			t.Fatalf("InstancesWithStore: %v host partitions %v of the store", instances, hosted)
		}
		if _, status, _ := httpCount(apps[0].addr, "never-counted"); status != http.StatusNotFound {
			t.Fatalf("absent word: status %d", status)
		}
	})
}

// TestQueryLatency measures point lookups: local (KeyValueStore.Get on
// Pebble) and remote (through a query server that forwards to the owner).
// RIFFLE_IQ_BENCH=1 enables it.
func TestQueryLatency(t *testing.T) {
	if os.Getenv("RIFFLE_IQ_BENCH") == "" {
		t.Skip("set RIFFLE_IQ_BENCH=1 to measure query latencies")
	}
	brokers := riffleCluster(t)
	a, b := startServed(t, brokers), startServed(t, brokers)
	waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
		return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0
	})
	truth := produceLines(t, brokers, 20000, 5)
	latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
	counts, err := KeyValueStore[string, int64](a.app, "counts")
	if err != nil {
		t.Fatal(err)
	}
	var local, remote []string
	for w := range truth {
		if _, _, err := counts.Get(w); err == nil {
			local = append(local, w)
		} else {
			remote = append(remote, w)
		}
	}
	measure := func(name string, words []string, n int, get func(string) error) {
		lat := make([]time.Duration, 0, n)
		for i := range n {
			began := time.Now()
			if err := get(words[i%len(words)]); err != nil {
				t.Fatal(err)
			}
			lat = append(lat, time.Since(began))
		}
		slices.Sort(lat)
		t.Logf("%s: %d lookups, p50 %v, p99 %v, max %v", name, n, lat[n/2], lat[n*99/100], lat[n-1])
	}
	measure("local Get", local, 100000, func(w string) error { _, _, err := counts.Get(w); return err })
	measure("remote via query server", remote, 5000, func(w string) error {
		_, status, err := httpCount(a.addr, w)
		if status != http.StatusOK {
			return fmt.Errorf("status %d: %v", status, err)
		}
		return nil
	})
}
