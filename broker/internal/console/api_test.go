package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/console"
	"github.com/riffle-stream/riffle/topology"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

type apiTopic struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
	Records    int64  `json:"records"`
	EndOffsets int64  `json:"endOffsets"`
	Size       *int64 `json:"size"`
}

type apiRecord struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp int64  `json:"timestamp"`
	Key       []byte `json:"key"`
	Value     []byte `json:"value"`
	Headers   []struct {
		Key   string `json:"key"`
		Value []byte `json:"value"`
	} `json:"headers"`
}

type apiRecords struct {
	Records  []apiRecord `json:"records"`
	Complete bool        `json:"complete"`
}

type apiMember struct {
	MemberID   string `json:"memberId"`
	ClientID   string `json:"clientId"`
	Assignment []struct {
		Topic      string  `json:"topic"`
		Partitions []int32 `json:"partitions"`
	} `json:"assignment"`
}

type apiGroup struct {
	Type     string      `json:"type"`
	State    string      `json:"state"`
	Protocol string      `json:"protocol"`
	Assignor string      `json:"assignor"`
	Members  []apiMember `json:"members"`
	Lag      []struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Committed *int64 `json:"committed"`
		End       int64  `json:"end"`
		Lag       *int64 `json:"lag"`
	} `json:"lag"`
	TotalLag int64 `json:"totalLag"`
}

func assigned(ms []apiMember, topic string) []int32 {
	var ps []int32
	for _, m := range ms {
		for _, a := range m.Assignment {
			if a.Topic == topic {
				ps = append(ps, a.Partitions...)
			}
		}
	}
	slices.Sort(ps)
	return ps
}

func TestAPI(t *testing.T) {
	f := newFixture(t)

	t.Run("overview", func(t *testing.T) {
		var o struct {
			ClusterID  string `json:"clusterId"`
			Controller int32  `json:"controller"`
			Brokers    []struct {
				NodeID int32 `json:"nodeId"`
				Port   int32 `json:"port"`
			} `json:"brokers"`
			Quorum *struct {
				LeaderID int32 `json:"leaderId"`
				Voters   []struct {
					ReplicaID int32 `json:"replicaId"`
				} `json:"voters"`
			} `json:"quorum"`
			Topics []apiTopic `json:"topics"`
		}
		f.get(t, "/api/overview", http.StatusOK, &o)
		if o.ClusterID == "" || o.Controller != 1 || len(o.Brokers) != 1 || o.Brokers[0].NodeID != 1 {
			t.Fatalf("cluster: %+v", o)
		}
		if !strings.HasSuffix(f.addr, fmt.Sprintf(":%d", o.Brokers[0].Port)) {
			t.Fatalf("broker port %d, broker listens on %s", o.Brokers[0].Port, f.addr)
		}
		if o.Quorum == nil || o.Quorum.LeaderID != 1 || len(o.Quorum.Voters) != 1 {
			t.Fatalf("quorum: %+v", o.Quorum)
		}
		i := slices.IndexFunc(o.Topics, func(t apiTopic) bool { return t.Name == ordersTopic })
		if i < 0 || o.Topics[i].Partitions != 3 || o.Topics[i].Records != fixtureOrders || o.Topics[i].EndOffsets != fixtureOrders {
			t.Fatalf("topics: %+v", o.Topics)
		}
		// Riffle's broker serves DescribeLogDirs: the topic's bytes on disk.
		if o.Topics[i].Size == nil || *o.Topics[i].Size <= 0 {
			t.Fatalf("size %v of a topic with %d records", o.Topics[i].Size, fixtureOrders)
		}
	})

	t.Run("topic", func(t *testing.T) {
		var tp struct {
			Partitions []struct {
				Partition   int32 `json:"partition"`
				Leader      int32 `json:"leader"`
				StartOffset int64 `json:"startOffset"`
				EndOffset   int64 `json:"endOffset"`
			} `json:"partitions"`
			Configs []struct {
				Name   string  `json:"name"`
				Value  *string `json:"value"`
				Source string  `json:"source"`
			} `json:"configs"`
		}
		f.get(t, "/api/topics/"+ordersTopic, http.StatusOK, &tp)
		if len(tp.Partitions) != 3 {
			t.Fatalf("partitions: %+v", tp.Partitions)
		}
		for _, p := range tp.Partitions {
			if p.Leader != 1 || p.StartOffset != 0 || p.EndOffset != fixtureOrders/3 {
				t.Fatalf("partition %+v", p)
			}
		}
		i := slices.IndexFunc(tp.Configs, func(c struct {
			Name   string  `json:"name"`
			Value  *string `json:"value"`
			Source string  `json:"source"`
		}) bool {
			return c.Name == "retention.ms"
		})
		if i < 0 || tp.Configs[i].Value == nil || *tp.Configs[i].Value != "86400000" || tp.Configs[i].Source != "DYNAMIC_TOPIC_CONFIG" {
			t.Fatalf("retention.ms: %+v", tp.Configs)
		}
		f.get(t, "/api/topics/nope", http.StatusNotFound, nil)
	})

	t.Run("records", func(t *testing.T) {
		var rs apiRecords
		f.get(t, "/api/topics/orders/records?partition=1&from=offset&offset=2&limit=3", http.StatusOK, &rs)
		if !rs.Complete || len(rs.Records) != 3 {
			t.Fatalf("records: %+v", rs)
		}
		for j, r := range rs.Records {
			i := 3*(2+j) + 1 // partition 1 holds records 1, 4, 7, ...
			want := order(i, f.firstAt.Add(time.Duration(i)*time.Second))
			if r.Partition != 1 || r.Offset != int64(2+j) || r.Timestamp != want.Timestamp.UnixMilli() ||
				!bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) ||
				len(r.Headers) != 2 || r.Headers[1].Key != "bin" || !bytes.Equal(r.Headers[1].Value, want.Headers[1].Value) {
				t.Fatalf("record %d: %+v, want %+v", j, r, want)
			}
		}

		// The latest records over all partitions are the newest by time.
		f.get(t, "/api/topics/orders/records?limit=4", http.StatusOK, &rs)
		var keys []string
		for _, r := range rs.Records {
			keys = append(keys, string(r.Key))
		}
		if want := []string{"order-26", "order-27", "order-28", "order-29"}; !slices.Equal(keys, want) {
			t.Fatalf("latest: %v, want %v", keys, want)
		}

		// From a time: records at or after it, per partition.
		at := f.firstAt.Add(27 * time.Second).Format(time.RFC3339Nano)
		f.get(t, "/api/topics/orders/records?from=time&time="+at, http.StatusOK, &rs)
		keys = keys[:0]
		for _, r := range rs.Records {
			keys = append(keys, string(r.Key))
		}
		if want := []string{"order-27", "order-28", "order-29"}; !slices.Equal(keys, want) {
			t.Fatalf("from time: %v, want %v", keys, want)
		}

		// Past the end: nothing, at once.
		f.get(t, "/api/topics/orders/records?from=offset&offset=1000", http.StatusOK, &rs)
		if len(rs.Records) != 0 || !rs.Complete {
			t.Fatalf("past the end: %+v", rs)
		}

		for _, q := range []string{"limit=0", "limit=501", "from=nowhere", "from=offset&offset=-1", "from=time&time=yesterday", "partition=x"} {
			f.get(t, "/api/topics/orders/records?"+q, http.StatusBadRequest, nil)
		}
		f.get(t, "/api/topics/orders/records?partition=7", http.StatusNotFound, nil)

		// An answer stops at 4 MiB of keys, values and headers.
		if _, err := f.adm.CreateTopic(testContext(t), 1, 1, nil, "big"); err != nil {
			t.Fatal(err)
		}
		for range 6 {
			f.produce(t, &kgo.Record{Topic: "big", Value: bytes.Repeat([]byte("x"), 900<<10)})
		}
		f.get(t, "/api/topics/big/records?from=offset&offset=0", http.StatusOK, &rs)
		if len(rs.Records) != 5 || rs.Complete {
			t.Fatalf("6 records of 900 KiB: got %d, complete %v", len(rs.Records), rs.Complete)
		}
		f.get(t, "/api/topics/nope/records", http.StatusNotFound, nil)
	})

	t.Run("groups", func(t *testing.T) {
		var gs []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		}
		f.get(t, "/api/groups", http.StatusOK, &gs)
		types := map[string]string{}
		for _, g := range gs {
			types[g.Name] = g.Type
		}
		if types[classicGroup] != "classic" || types[kip848Group] != "consumer" || types[shareGroup] != "share" {
			t.Fatalf("groups: %+v", gs)
		}
		for _, name := range []string{classicGroup, kip848Group} {
			var g apiGroup
			f.get(t, "/api/groups/"+name, http.StatusOK, &g)
			if len(g.Members) != 1 || g.Members[0].ClientID != name+"-client" || !slices.Equal(assigned(g.Members, ordersTopic), []int32{0, 1, 2}) {
				t.Fatalf("%s: members %+v", name, g.Members)
			}
			if len(g.Lag) != 3 || g.TotalLag != 0 {
				t.Fatalf("%s: lag %+v", name, g.Lag)
			}
			if name == classicGroup && (g.Type != "classic" || g.Protocol == "") || name == kip848Group && (g.Type != "consumer" || g.Assignor == "") {
				t.Fatalf("%s: %+v", name, g)
			}
		}
		// Lag follows records produced after the commits.
		f.produce(t, order(100, time.Now()), order(101, time.Now()))
		var g apiGroup
		f.get(t, "/api/groups/"+classicGroup, http.StatusOK, &g)
		if g.TotalLag != 2 {
			t.Fatalf("lag after 2 more records: %+v", g.Lag)
		}
		f.get(t, "/api/groups/nope", http.StatusNotFound, nil)
		// A group id may hold a slash; the page escapes it in the path.
		var e struct {
			Error string `json:"error"`
		}
		f.get(t, "/api/groups/team%2Fa%20b", http.StatusNotFound, &e)
		if !strings.Contains(e.Error, `"team/a b"`) {
			t.Fatalf("error for an escaped group id: %q", e.Error)
		}
	})

	t.Run("share group", func(t *testing.T) {
		var g struct {
			State      string      `json:"state"`
			Members    []apiMember `json:"members"`
			Partitions []struct {
				Topic       string `json:"topic"`
				StartOffset int64  `json:"startOffset"`
				End         int64  `json:"end"`
				Lag         *int64 `json:"lag"`
			} `json:"partitions"`
		}
		f.get(t, "/api/share-groups/"+shareGroup, http.StatusOK, &g)
		if len(g.Members) != 1 || g.Members[0].ClientID != "worker-client" || !slices.Equal(assigned(g.Members, jobsTopic), []int32{0}) {
			t.Fatalf("members: %+v", g.Members)
		}
		p := g.Partitions
		if len(p) != 1 || p[0].StartOffset != fixtureJobs || p[0].End != fixtureJobs || p[0].Lag == nil || *p[0].Lag != 0 {
			t.Fatalf("partitions: %+v", p)
		}
		// Jobs nobody has acknowledged yet are the share partition's lag.
		f.produce(t, &kgo.Record{Topic: jobsTopic, Value: []byte("a")}, &kgo.Record{Topic: jobsTopic, Value: []byte("b")})
		f.get(t, "/api/share-groups/"+shareGroup, http.StatusOK, &g)
		if p := g.Partitions; len(p) != 1 || p[0].End != fixtureJobs+2 || p[0].Lag == nil || *p[0].Lag != 2 {
			t.Fatalf("partitions after 2 more jobs: %+v", p)
		}
	})

	t.Run("unknown API", func(t *testing.T) {
		f.get(t, "/api/nope", http.StatusNotFound, nil)
	})
}

// sourceNode is the name of wordCount's source node.
const sourceNode = "KSTREAM-SOURCE-0000000000"

// wordCount is the README's word count topology.
func wordCount(t testing.TB) string {
	t.Helper()
	b := topology.NewBuilder()
	lines := topology.FromTopics[string, string](b, []string{"lines"})
	words := topology.FlatMapValues(lines, func(_, line string) []string { return strings.Fields(line) })
	counts := topology.GroupBy(words, func(_, word string) string { return word }).Count(topology.Materialized("counts"))
	counts.ToStream().To("word-counts")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return top.Describe()
}

// registration is the body a streams application PUTs.
func registration(t testing.TB, processed map[string]int64) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"topology": wordCount(t), "processed": processed})
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestApps(t *testing.T) {
	srv := newConsoleOnly(t, console.AppTTL(300*time.Millisecond))
	var ap struct {
		Graph struct {
			Subtopologies []struct {
				Nodes []struct {
					Name     string   `json:"name"`
					Kind     string   `json:"kind"`
					Topics   []string `json:"topics"`
					Stores   []string `json:"stores"`
					Children []string `json:"children"`
				} `json:"nodes"`
			} `json:"subtopologies"`
		} `json:"graph"`
		Processed map[string]int64 `json:"processed"`
	}
	srv.do(t, http.MethodPut, "/api/apps/wordcount", registration(t, map[string]int64{sourceNode: 42}), http.StatusOK, nil)
	srv.get(t, "/api/apps/wordcount", http.StatusOK, &ap)
	subs := ap.Graph.Subtopologies
	if len(subs) != 2 || subs[0].Nodes[0].Kind != "source" || !slices.Equal(subs[0].Nodes[0].Topics, []string{"lines"}) ||
		ap.Processed[sourceNode] != 42 {
		t.Fatalf("app: %+v", ap)
	}
	var stores []string
	for _, n := range subs[1].Nodes {
		stores = append(stores, n.Stores...)
	}
	if !slices.Equal(stores, []string{"counts"}) {
		t.Fatalf("stores of sub-topology 1: %v", stores)
	}
	var list []struct {
		ID    string `json:"id"`
		Nodes int    `json:"nodes"`
	}
	srv.get(t, "/api/apps", http.StatusOK, &list)
	if len(list) != 1 || list[0].ID != "wordcount" || list[0].Nodes != 8 {
		t.Fatalf("apps: %+v", list)
	}

	for _, body := range []string{`{`, `{"topology": "nonsense"}`, `{"topology": ""}`,
		`{"topology": "Sub-topology: 0\n Source: s (topics: [a])\n --> missing\n"}`} {
		srv.do(t, http.MethodPut, "/api/apps/bad", body, http.StatusBadRequest, nil)
	}
	srv.do(t, http.MethodPut, "/api/apps/big", `{"topology":"`+strings.Repeat("x", 1<<20)+`"}`, http.StatusRequestEntityTooLarge, nil)

	srv.do(t, http.MethodPut, "/api/apps/"+strings.Repeat("a", 250), registration(t, nil), http.StatusBadRequest, nil)

	// Without a new registration within the TTL the application goes.
	time.Sleep(400 * time.Millisecond)
	srv.get(t, "/api/apps/wordcount", http.StatusNotFound, nil)
	srv.do(t, http.MethodPut, "/api/apps/wordcount", registration(t, nil), http.StatusOK, nil)
	srv.do(t, http.MethodDelete, "/api/apps/wordcount", "", http.StatusOK, nil)
	srv.do(t, http.MethodDelete, "/api/apps/wordcount", "", http.StatusNotFound, nil)
}

func TestAppsLimit(t *testing.T) {
	srv := newConsoleOnly(t)
	body := registration(t, nil)
	for i := range 100 {
		srv.do(t, http.MethodPut, fmt.Sprintf("/api/apps/app-%d", i), body, http.StatusOK, nil)
	}
	srv.do(t, http.MethodPut, "/api/apps/one-too-many", body, http.StatusTooManyRequests, nil)
	// A registered application still refreshes.
	srv.do(t, http.MethodPut, "/api/apps/app-7", body, http.StatusOK, nil)
}

// TestClusterDown: with the cluster unreachable the API answers 502 with
// the client's error within the request timeout, and the pages still load.
func TestClusterDown(t *testing.T) {
	srv := newConsoleOnly(t, console.RequestTimeout(500*time.Millisecond))
	start := time.Now()
	var e struct {
		Error string `json:"error"`
	}
	srv.get(t, "/api/overview", http.StatusBadGateway, &e)
	if took := time.Since(start); took > 5*time.Second || e.Error == "" {
		t.Fatalf("took %v, error %q", took, e.Error)
	}
	srv.get(t, "/api/topics/orders/records", http.StatusBadGateway, nil)
	srv.do(t, http.MethodGet, "/", "", http.StatusOK, nil)
}

// TestBrowseReachesLikeTheClient: the consumer that browses records dials
// with the console client's dialer.
func TestBrowseReachesLikeTheClient(t *testing.T) {
	f := newFixture(t)
	var dials atomic.Int32
	var d net.Dialer
	cl := newClient(t, f.addr, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, network, host)
	}))
	srv := httptest.NewServer(console.New(cl))
	t.Cleanup(srv.Close)
	g := &fixture{srv: srv}
	g.get(t, "/api/topics/orders", http.StatusOK, nil)
	before := dials.Load()
	var rs apiRecords
	g.get(t, "/api/topics/orders/records?limit=3", http.StatusOK, &rs)
	if len(rs.Records) != 3 || dials.Load() == before {
		t.Fatalf("%d records, dials %d then %d", len(rs.Records), before, dials.Load())
	}
}

// newConsoleOnly serves the console for a client of a broker that was
// never started: the apps API needs no cluster.
func newConsoleOnly(t *testing.T, opts ...console.Opt) *fixture {
	t.Helper()
	f := &fixture{cl: newClient(t, "127.0.0.1:1")}
	f.srv = httptest.NewServer(console.New(f.cl, opts...))
	t.Cleanup(f.srv.Close)
	return f
}

func TestAssets(t *testing.T) {
	f := newConsoleOnly(t)
	for _, path := range []string{"/", "/style.css", "/js/app.js", "/js/graph.js", "/js/views/topic.js"} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", path, resp.Status)
		}
	}
}

// newSizedCluster serves the console for franz-go's kfake cluster, which
// serves DescribeLogDirs, with topic "sized": 2 partitions of one
// uncompressed 1000-byte record each.
func newSizedCluster(t *testing.T) *fixture {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "sized"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl := newClient(t, c.ListenAddrs()[0], kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchCompression(kgo.NoCompression()))
	for p := range int32(2) {
		if err := cl.ProduceSync(testContext(t), &kgo.Record{Topic: "sized", Partition: p, Value: bytes.Repeat([]byte("v"), 1000)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(console.New(cl))
	t.Cleanup(srv.Close)
	return &fixture{srv: srv}
}

// TestSizes: against a cluster that serves DescribeLogDirs the topics
// carry sizes.
func TestSizes(t *testing.T) {
	f := newSizedCluster(t)
	var ts struct {
		Topics []apiTopic `json:"topics"`
	}
	f.get(t, "/api/topics", http.StatusOK, &ts)
	if len(ts.Topics) != 1 || ts.Topics[0].Size == nil || *ts.Topics[0].Size < 2000 {
		t.Fatalf("topics: %+v", ts.Topics)
	}
	var tp struct {
		Partitions []struct {
			Size *int64 `json:"size"`
		} `json:"partitions"`
	}
	f.get(t, "/api/topics/sized", http.StatusOK, &tp)
	if len(tp.Partitions) != 2 || tp.Partitions[0].Size == nil || *tp.Partitions[0].Size < 1000 || tp.Partitions[1].Size == nil {
		t.Fatalf("partitions: %+v", tp.Partitions)
	}
}
