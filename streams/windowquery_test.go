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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
	"github.com/riffle-stream/riffle/topology"
)

// clickTopology keeps, per key of inputTopic, counts in tumbling windows
// of a second in Pebble and in memory, session counts (gap of a second)
// and a total count in memory.
func clickTopology(t testing.TB) *topology.Topology {
	b := topology.NewBuilder()
	g := topology.FromTopics[string, string](b, []string{inputTopic}).GroupByKey()
	windows := func() topology.TimeWindowedGrouped[string, string] {
		return topology.WindowedBy(g, topology.TumblingWindows(time.Second)).WithRetention(24 * time.Hour)
	}
	windows().Count(topology.Materialized("window-counts"))
	windows().Count(topology.Materialized("mem-window-counts", state.InMemory()))
	topology.SessionWindowedBy(g, topology.SessionWindowsWithGap(time.Second)).WithRetention(24 * time.Hour).
		Count(topology.Materialized("sessions"))
	g.Count(topology.Materialized("mem-counts", state.InMemory()))
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func startClicks(t *testing.T, brokers []string, dir string, opts ...Option) *runningApp {
	t.Helper()
	app, err := New(clickTopology(t), append([]Option{ApplicationID("clicks"), Brokers(brokers...), StateDir(dir),
		CommitInterval(200 * time.Millisecond), Logger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	r := &runningApp{app: app, done: make(chan error, 1)}
	go func() { r.done <- app.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// clickTruth is what produceTimed(start, 0, n) writes: per key, the count
// per window start (ms), the total, and the one session of each key
// (its records are 500 ms apart, within the gap).
type clickTruth struct {
	windows  map[string]map[int64]int64
	total    map[string]int64
	sessions map[string]serde.Window
}

func clicksOf(start time.Time, n int) clickTruth {
	tr := clickTruth{windows: make(map[string]map[int64]int64), total: make(map[string]int64), sessions: make(map[string]serde.Window)}
	for i := range n {
		key, ts := fmt.Sprintf("k%d", i%10), start.Add(time.Duration(i)*50*time.Millisecond).UnixMilli()
		if tr.windows[key] == nil {
			tr.windows[key] = make(map[int64]int64)
		}
		tr.windows[key][ts/1000*1000]++
		tr.total[key]++
		s, ok := tr.sessions[key]
		if !ok {
			s = serde.NewWindow(ts, ts)
		}
		tr.sessions[key] = serde.NewWindow(min(s.StartMs(), ts), max(s.EndMs(), ts))
	}
	return tr
}

// queryClicks reads key from whichever of apps hosts it: its windows of
// the window store named store, with the timestamps of their latest
// records, and its sessions.
func queryClicks(apps []*runningApp, store, key string, from, to time.Time) (map[int64]state.ValueAndTimestamp[int64], []state.KeyValue[serde.Windowed[string], int64], error) {
	var errs []error
	for _, r := range apps {
		ws, err := WindowStore[string, state.ValueAndTimestamp[int64]](r.app, store)
		if err != nil {
			return nil, nil, err
		}
		windows := make(map[int64]state.ValueAndTimestamp[int64])
		var ferr error
		for kv, err := range ws.Fetch(key, from, to) {
			if err != nil {
				ferr = err
				break
			}
			windows[kv.Key.UnixMilli()] = kv.Value
		}
		if ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		ss, err := SessionStore[string, int64](r.app, "sessions")
		if err != nil {
			return nil, nil, err
		}
		var sessions []state.KeyValue[serde.Windowed[string], int64]
		for kv, err := range ss.Fetch(key) {
			if err != nil {
				return nil, nil, fmt.Errorf("sessions of %s where its windows were read: %w", key, err)
			}
			sessions = append(sessions, kv)
		}
		return windows, sessions, nil
	}
	return nil, nil, errors.Join(errs...)
}

// TestWindowAndSessionQueries runs two instances of a windowed click
// count and queries the window stores (Pebble and in memory) and the
// session store while they process: a window never reads above its true
// count, a key is read from the instance owning it and ErrNotLocal from
// the other, and once the input is processed every window and session has
// its true count, FetchAll over the instances yields every window once,
// and the in-memory total is right.
func TestWindowAndSessionQueries(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		apps := []*runningApp{startClicks(t, brokers, t.TempDir()), startClicks(t, brokers, t.TempDir())}
		waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
			return apps[0].app.Metrics().Tasks > 0 && apps[1].app.Metrics().Tasks > 0
		})
		start := time.Now().Add(-time.Hour).Truncate(time.Second)
		const n = 2000
		truth := clicksOf(start, n)
		from, to := start, start.Add(n*50*time.Millisecond)

		var stop atomic.Bool
		var reads atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("k%d", i%10)
				store := []string{"window-counts", "mem-window-counts"}[i%2]
				windows, _, err := queryClicks(apps, store, key, from, to)
				if err != nil {
					if !errors.Is(err, ErrNotLocal) && !errors.Is(err, ErrRestoring) {
						t.Errorf("query %s of %s: %v", key, store, err)
						return
					}
					continue
				}
				reads.Add(1)
				for w, v := range windows {
					if v.Value > truth.windows[key][w] {
						t.Errorf("%s: window %d of %s read %d, above the truth %d", store, w, key, v.Value, truth.windows[key][w])
						return
					}
				}
			}
		}()
		produceTimed(t, brokers, start, 0, n, make(map[string]int64))
		waitFor(t, "every window and session to be queryable with its true count", 60*time.Second, func() bool {
			for key, want := range truth.windows {
				for _, store := range []string{"window-counts", "mem-window-counts"} {
					got, sessions, err := queryClicks(apps, store, key, from, to)
					if err != nil || len(got) != len(want) || len(sessions) != 1 || sessions[0].Value != truth.total[key] {
						return false
					}
					for w, v := range got {
						if v.Value != want[w] {
							return false
						}
					}
				}
			}
			return true
		})
		stop.Store(true)
		wg.Wait()
		if reads.Load() == 0 {
			t.Fatal("no query succeeded during processing")
		}

		seen := make(map[serde.Windowed[string]]bool)
		for _, r := range apps {
			ws, err := WindowStore[string, int64](r.app, "window-counts")
			if err != nil {
				t.Fatal(err)
			}
			for kv, err := range ws.FetchAll(from, to) {
				if err != nil {
					t.Fatal(err)
				}
				w := kv.Key.Window
				if seen[kv.Key] || kv.Value != truth.windows[kv.Key.Key][w.StartMs()] || w.EndMs() != w.StartMs()+1000 {
					t.Fatalf("FetchAll: %v = %d (seen before: %v), truth %d", kv.Key, kv.Value, seen[kv.Key], truth.windows[kv.Key.Key][w.StartMs()])
				}
				seen[kv.Key] = true
			}
			// The other instance's keys are not local here; its own are.
			for key := range truth.windows {
				_, _, err := ws.FetchWindow(key, start)
				if err != nil && !errors.Is(err, ErrNotLocal) {
					t.Fatalf("FetchWindow %s: %v", key, err)
				}
			}
		}
		windows := 0
		for _, ws := range truth.windows {
			windows += len(ws)
		}
		if len(seen) != windows {
			t.Fatalf("FetchAll over the instances: %d windows, want %d", len(seen), windows)
		}
		for key, want := range truth.sessions {
			var found bool
			for _, r := range apps {
				ss, err := SessionStore[string, int64](r.app, "sessions")
				if err != nil {
					t.Fatal(err)
				}
				v, ok, err := ss.FetchSession(key, want.Start, want.End)
				if errors.Is(err, ErrNotLocal) {
					continue
				}
				if err != nil || !ok || v != truth.total[key] || found {
					t.Fatalf("session %v of %s: %d, %v, %v (found twice: %v)", want, key, v, ok, err, found)
				}
				found = true
				for kv, err := range ss.FindSessions(key, want.End.Add(time.Millisecond), maxTime) {
					t.Errorf("FindSessions after the session's end found %v (%v)", kv.Key, err)
				}
			}
			if !found {
				t.Fatalf("session of %s on no instance", key)
			}
		}
		// The key-value store is cached: queries see its writes once the
		// tasks have committed them, which may come after the windows.
		var totals string
		t.Cleanup(func() {
			if t.Failed() && totals != "" {
				t.Logf("in-memory totals: %s", totals)
			}
		})
		waitFor(t, "the in-memory totals", 30*time.Second, func() bool {
			total := make(map[string]int64)
			for _, r := range apps {
				counts, err := KeyValueStore[string, int64](r.app, "mem-counts")
				if err != nil {
					t.Fatal(err)
				}
				for kv, err := range counts.All() {
					if err != nil {
						t.Fatal(err)
					}
					total[kv.Key] += kv.Value
				}
			}
			totals = diff(truth.total, total)
			return totals == ""
		})
		for _, r := range apps {
			stamped, err := TimestampedKeyValueStore[string, int64](r.app, "mem-counts")
			if err != nil {
				t.Fatal(err)
			}
			for kv, err := range stamped.All() {
				last := start.Add(time.Duration(n-10) * 50 * time.Millisecond)
				if err != nil || kv.Value.Timestamp.Before(last) {
					t.Fatalf("%s: timestamp %v of the total, want the last record's, at or after %v (%v)", kv.Key, kv.Value.Timestamp, last, err)
				}
			}
		}
	})
}

// TestWindowQueryErrors holds up the restore of one task of a fresh
// instance: its keys answer ErrRestoring, the keys of the running tasks
// answer, and wrong types or kinds of store are ErrUnknownStore.
func TestWindowQueryErrors(t *testing.T) {
	t.Parallel()
	brokers := kfakeCluster(t)
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	truth := clicksOf(start, 400)
	produceTimed(t, brokers, start, 0, 400, make(map[string]int64))
	first := startClicks(t, brokers, t.TempDir())
	waitFor(t, "the input to be counted", 60*time.Second, func() bool { return first.app.Metrics().RecordsProcessed >= 400 })
	first.stop(t)

	l := newBlockingListener()
	a := startClicks(t, brokers, t.TempDir(), OnRestore(l))
	waitFor(t, "a restore to be held up", 30*time.Second, func() bool { return l.blockedStore() != nil })
	waitFor(t, "every other task to run", 30*time.Second, func() bool { return a.app.Metrics().Tasks == partitions-1 })
	held := l.blockedStore().Task.Partition
	ws, err := WindowStore[string, int64](a.app, "window-counts")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := SessionStore[string, int64](a.app, "sessions")
	if err != nil {
		t.Fatal(err)
	}
	var restoring, answered int
	for key, want := range truth.windows {
		var got map[int64]int64
		var ferr error
		for kv, err := range ws.Fetch(key, start, maxTime) {
			if err != nil {
				ferr = err
				break
			}
			if got == nil {
				got = make(map[int64]int64)
			}
			got[kv.Key.UnixMilli()] = kv.Value
		}
		_, _, serr := ss.FetchSession(key, truth.sessions[key].Start, truth.sessions[key].End)
		if partitionOf([]byte(key), partitions) == held {
			if !errors.Is(ferr, ErrRestoring) || !errors.Is(serr, ErrRestoring) {
				t.Fatalf("key %s of the restoring partition %d: %v, %v", key, held, ferr, serr)
			}
			var perr *PartitionError
			if !errors.As(ferr, &perr) || perr.Partition != held || perr.Store != "window-counts" {
				t.Fatalf("key %s: %#v", key, ferr)
			}
			restoring++
			continue
		}
		if ferr != nil || serr != nil || len(got) != len(want) {
			t.Fatalf("key %s of a running partition: %d windows, want %d: %v, %v", key, len(got), len(want), ferr, serr)
		}
		answered++
	}
	close(l.release)
	if restoring == 0 || answered == 0 {
		t.Fatalf("%d keys restoring, %d answered: the test needs both", restoring, answered)
	}
	waitFor(t, "every task to run", 30*time.Second, func() bool { return a.app.Metrics().Tasks == partitions })

	for name, err := range map[string]error{
		"unknown store":           second(WindowStore[string, int64](a.app, "nope")),
		"a session store":         second(WindowStore[string, int64](a.app, "sessions")),
		"wrong value type":        second(WindowStore[string, string](a.app, "window-counts")),
		"wrong key type":          second(WindowStore[int64, int64](a.app, "window-counts")),
		"a window store":          second(SessionStore[string, int64](a.app, "window-counts")),
		"not timestamped":         second(TimestampedKeyValueStore[string, int64](a.app, "window-counts")),
		"not versioned":           second(VersionedKeyValueStore[string, int64](a.app, "mem-counts")),
		"key-value on a window":   second(KeyValueStore[string, int64](a.app, "window-counts")),
		"session with wrong type": second(SessionStore[string, string](a.app, "sessions")),
	} {
		if !errors.Is(err, ErrUnknownStore) {
			t.Errorf("%s: %v, want ErrUnknownStore", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// startServedClicks is startClicks with a query server serving the window
// and session stores.
func startServedClicks(t *testing.T, brokers []string) *servedApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := startClicks(t, brokers, t.TempDir(), ApplicationServer(ln.Addr().String()))
	qs := NewQueryServer(r.app)
	id := func(s string) (string, error) { return s, nil }
	if err := errors.Join(ServeWindow[string, int64](qs, "window-counts", id), ServeSession[string, int64](qs, "sessions", id),
		ServeKeyValue[string, int64](qs, "mem-counts", id)); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: qs}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &servedApp{runningApp: r, addr: ln.Addr().String()}
}

// getJSON GETs u into v and returns the status.
func getJSON(u string, v any) (int, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(v)
}

// TestQueryServerWindows asks each of two instances' query servers for
// every key's windows in a time range and its sessions: each answers
// every key, forwarding to the owner (with the time range), once the
// input is processed; a bad time is 400, an endpoint of another kind of
// store 404.
func TestQueryServerWindows(t *testing.T) {
	t.Parallel()
	forEachCluster(t, func(t *testing.T, brokers []string) {
		apps := []*servedApp{startServedClicks(t, brokers), startServedClicks(t, brokers)}
		waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
			return apps[0].app.Metrics().Tasks > 0 && apps[1].app.Metrics().Tasks > 0
		})
		start := time.Now().Add(-time.Hour).Truncate(time.Second)
		const n = 1000
		truth := clicksOf(start, n)
		produceTimed(t, brokers, start, 0, n, make(map[string]int64))
		// The windows of the range's first 10 seconds, the range given
		// once in milliseconds and once in RFC 3339.
		from, to := start, start.Add(10*time.Second-time.Millisecond)
		query := []string{
			fmt.Sprintf("from=%d&to=%d", from.UnixMilli(), to.UnixMilli()),
			"from=" + url.QueryEscape(from.Format(time.RFC3339Nano)) + "&to=" + url.QueryEscape(to.Format(time.RFC3339Nano)),
		}
		var last string
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("last answer: %s", last)
			}
		})
		waitFor(t, "every key's windows and sessions from both instances", 60*time.Second, func() bool {
			for i, a := range apps {
				for key, want := range truth.windows {
					var body struct {
						Key     string
						Windows []struct {
							Start int64
							Value int64
						}
					}
					status, err := getJSON("http://"+a.addr+"/stores/window-counts/windows/"+key+"?"+query[i], &body)
					if err != nil || status != http.StatusOK || body.Key != key || len(body.Windows) != 10 {
						last = fmt.Sprintf("%s from %s: %d %v %+v", key, a.addr, status, err, body)
						return false
					}
					for j, w := range body.Windows {
						if w.Start != from.UnixMilli()+int64(j)*1000 || w.Value != want[w.Start] {
							last = fmt.Sprintf("%s from %s: window %d = %+v, want %d", key, a.addr, j, w, want[w.Start])
							return false
						}
					}
					var sessions struct {
						Sessions []struct {
							Start, End, Value int64
						}
					}
					status, err = getJSON("http://"+a.addr+"/stores/sessions/sessions/"+key, &sessions)
					s := truth.sessions[key]
					if err != nil || status != http.StatusOK || len(sessions.Sessions) != 1 || sessions.Sessions[0].Start != s.StartMs() ||
						sessions.Sessions[0].End != s.EndMs() || sessions.Sessions[0].Value != truth.total[key] {
						last = fmt.Sprintf("sessions of %s from %s: %d %v %+v", key, a.addr, status, err, sessions)
						return false
					}
				}
			}
			return true
		})
		var e struct{ Error string }
		if status, _ := getJSON("http://"+apps[0].addr+"/stores/window-counts/windows/k1?from=yesterday", &e); status != http.StatusBadRequest {
			t.Fatalf("bad from: %d %q", status, e.Error)
		}
		if status, _ := getJSON("http://"+apps[0].addr+"/stores/window-counts/keys/k1", &e); status != http.StatusNotFound {
			t.Fatalf("keys of a window store: %d %q", status, e.Error)
		}
		if status, _ := getJSON("http://"+apps[0].addr+"/stores/mem-counts/windows/k1", &e); status != http.StatusNotFound {
			t.Fatalf("windows of a key-value store: %d %q", status, e.Error)
		}
		// The key-value store is cached: a query sees its writes once the
		// task has committed them, which may come after the windows (not
		// cached) are complete.
		waitFor(t, "every key's in-memory total", 30*time.Second, func() bool {
			for key, want := range truth.total {
				var kv struct{ Value int64 }
				if status, err := getJSON("http://"+apps[1].addr+"/stores/mem-counts/keys/"+key, &kv); status != http.StatusOK || kv.Value != want {
					last = fmt.Sprintf("in-memory total of %s: %d %v %d, want %d", key, status, err, kv.Value, want)
					return false
				}
			}
			return true
		})
	})
}

// TestVersionedQuery reads a versioned table's store: the latest version
// of each key and the version valid at a time between its two updates.
func TestVersionedQuery(t *testing.T) {
	t.Parallel()
	brokers := kfakeCluster(t)
	b := topology.NewBuilder()
	topology.VersionedTableFrom[string, string](b, inputTopic, "versions", time.Hour)
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(top, ApplicationID("versions"), Brokers(brokers...), StateDir(t.TempDir()),
		CommitInterval(200*time.Millisecond), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := &runningApp{app: app, done: make(chan error, 1)}
	go func() { r.done <- app.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for i := range 10 {
		key := fmt.Sprintf("k%d", i)
		for j, ts := range []time.Time{t0, t0.Add(10 * time.Second)} {
			rec := &kgo.Record{Topic: inputTopic, Key: []byte(key), Value: []byte(fmt.Sprintf("v%d", j+1)), Timestamp: ts}
			if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	vs, err := VersionedKeyValueStore[string, string](app, "versions")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every key's versions", 30*time.Second, func() bool {
		for i := range 10 {
			key := fmt.Sprintf("k%d", i)
			latest, ok, err := vs.Get(key)
			if err != nil || !ok || latest.Value != "v2" || !latest.Timestamp.Equal(t0.Add(10*time.Second)) {
				return false
			}
			old, ok, err := vs.GetAsOf(key, t0.Add(5*time.Second))
			if err != nil || !ok || old.Value != "v1" {
				return false
			}
			if _, ok, err := vs.GetAsOf(key, t0.Add(-time.Second)); err != nil || ok {
				return false
			}
		}
		return true
	})
}

// TestWindowQueryLatency measures window fetches of one key over its last
// five minutes of one-second windows: local (WindowStore.Fetch on Pebble)
// and remote (through a query server that forwards to the owner).
// RIFFLE_IQ_BENCH=1 enables it.
func TestWindowQueryLatency(t *testing.T) {
	if os.Getenv("RIFFLE_IQ_BENCH") == "" {
		t.Skip("set RIFFLE_IQ_BENCH=1 to measure window query latencies")
	}
	brokers := riffleCluster(t)
	a, b := startServedClicks(t, brokers), startServedClicks(t, brokers)
	waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
		return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0
	})
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	const n = 20000 // 2,000 per key, two in each of 1,000 one-second windows
	produceTimed(t, brokers, start, 0, n, make(map[string]int64))
	waitFor(t, "the input to be counted", 120*time.Second, func() bool {
		return a.app.Metrics().RecordsProcessed+b.app.Metrics().RecordsProcessed >= n
	})
	ws, err := WindowStore[string, int64](a.app, "window-counts")
	if err != nil {
		t.Fatal(err)
	}
	to := start.Add(n * 50 * time.Millisecond)
	from := to.Add(-5 * time.Minute)
	var local, remote []string
	for i := range 10 {
		key := fmt.Sprintf("k%d", i)
		if _, _, err := ws.FetchWindow(key, start); err == nil {
			local = append(local, key)
		} else {
			remote = append(remote, key)
		}
	}
	if len(local) == 0 || len(remote) == 0 {
		t.Fatalf("keys local %v, remote %v: the test needs both", local, remote)
	}
	measure := func(name string, keys []string, count int, fetch func(string) (int, error)) {
		lat := make([]time.Duration, 0, count)
		for i := range count {
			began := time.Now()
			windows, err := fetch(keys[i%len(keys)])
			if err != nil || windows != 300 {
				t.Fatalf("%s: %d windows, %v", name, windows, err)
			}
			lat = append(lat, time.Since(began))
		}
		slices.Sort(lat)
		t.Logf("%s: %d fetches of 300 windows, p50 %v, p99 %v, max %v", name, count, lat[count/2], lat[count*99/100], lat[count-1])
	}
	measure("local Fetch", local, 20000, func(key string) (int, error) {
		windows := 0
		for _, err := range ws.Fetch(key, from, to) {
			if err != nil {
				return windows, err
			}
			windows++
		}
		return windows, nil
	})
	u := fmt.Sprintf("http://%s/stores/window-counts/windows/%%s?from=%d&to=%d", a.addr, from.UnixMilli(), to.UnixMilli())
	measure("remote via query server", remote, 3000, func(key string) (int, error) {
		var body struct{ Windows []json.RawMessage }
		status, err := getJSON(fmt.Sprintf(u, key), &body)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d", status)
		}
		return len(body.Windows), err
	})
}
