package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/broker/internal/console"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Names the fixture creates.
const (
	ordersTopic  = "orders" // 3 partitions, fixtureOrders records
	jobsTopic    = "jobs"   // 1 partition, fixtureJobs records
	classicGroup = "billing"
	kip848Group  = "audit"
	shareGroup   = "workers"

	fixtureOrders = 30
	fixtureJobs   = 10
)

// fixture is a broker on loopback with topics, a classic and a KIP-848
// consumer group, and a share group, each with a live member, and the
// console serving them over HTTP.
type fixture struct {
	addr string
	cl   *kgo.Client
	adm  *kadm.Client
	srv  *httptest.Server
	// firstAt is the timestamp of orders' first record, to browse by time.
	firstAt time.Time
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func newFixture(t testing.TB, opts ...console.Opt) *fixture {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()), broker.Logger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	f := &fixture{addr: b.Addr()}
	f.cl = newClient(t, f.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	f.adm = kadm.NewClient(f.cl)
	ctx := testContext(t)
	retention := "86400000"
	if _, err := f.adm.CreateTopic(ctx, 3, 1, map[string]*string{"retention.ms": &retention}, ordersTopic); err != nil {
		t.Fatal(err)
	}
	if _, err := f.adm.CreateTopic(ctx, 1, 1, nil, jobsTopic); err != nil {
		t.Fatal(err)
	}
	f.firstAt = time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
	var recs []*kgo.Record
	for i := range fixtureOrders {
		recs = append(recs, order(i, f.firstAt.Add(time.Duration(i)*time.Second)))
	}
	f.produce(t, recs...)
	recs = nil
	for i := range fixtureJobs {
		recs = append(recs, &kgo.Record{Topic: jobsTopic, Value: []byte(fmt.Sprintf("job-%d", i))})
	}
	f.produce(t, recs...)

	// A classic group and a KIP-848 group read orders and commit; they
	// stay members until the test ends.
	for _, g := range []struct {
		name string
		opts []kgo.Opt
	}{
		{classicGroup, nil},
		{kip848Group, []kgo.Opt{kgo.ServerSideBalancer()}},
	} {
		cons := newClient(t, f.addr, append([]kgo.Opt{kgo.ConsumerGroup(g.name), kgo.ConsumeTopics(ordersTopic),
			kgo.ClientID(g.name + "-client"), kgo.FetchMaxWait(200 * time.Millisecond), kgo.DisableAutoCommit()}, g.opts...)...)
		consume(t, cons, fixtureOrders)
		if err := cons.CommitUncommittedOffsets(ctx); err != nil {
			t.Fatalf("%s: commit: %v", g.name, err)
		}
	}
	// A share group reads and acknowledges every job.
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	r := kmsg.NewIncrementalAlterConfigsRequestResource()
	r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeGroupConfig, shareGroup
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Value = "share.auto.offset.reset", kmsg.StringPtr("earliest")
	r.Configs = append(r.Configs, c)
	req.Resources = append(req.Resources, r)
	if resp, err := req.RequestWith(ctx, f.cl); err != nil || resp.Resources[0].ErrorCode != 0 {
		t.Fatalf("set share group config: %v %+v", err, resp)
	}
	sc := newClient(t, f.addr, kgo.ShareGroup(shareGroup), kgo.ConsumeTopics(jobsTopic), kgo.ClientID("worker-client"),
		kgo.FetchMaxWait(200*time.Millisecond))
	seen := 0
	deadline := time.Now().Add(20 * time.Second)
	for seen < fixtureJobs && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := sc.PollFetches(pctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { r.Ack(kgo.AckAccept); seen++ })
	}
	if seen < fixtureJobs {
		t.Fatalf("share consumer read %d of %d jobs", seen, fixtureJobs)
	}
	if err := sc.FlushAcks(ctx); err != nil {
		t.Fatalf("share acks: %v", err)
	}

	f.srv = httptest.NewServer(console.New(f.cl, append([]console.Opt{console.Logger(quiet)}, opts...)...))
	t.Cleanup(f.srv.Close)
	return f
}

// order is record i of the orders topic: a key, a JSON value and two
// headers, on partition i%3.
func order(i int, at time.Time) *kgo.Record {
	return &kgo.Record{
		Topic: ordersTopic, Partition: int32(i % 3), Timestamp: at,
		Key:   []byte(fmt.Sprintf("order-%d", i)),
		Value: []byte(fmt.Sprintf(`{"id":%d,"amount":%d.5}`, i, i*10)),
		Headers: []kgo.RecordHeader{
			{Key: "source", Value: []byte("fixture")},
			{Key: "bin", Value: []byte{0x00, 0xff, byte(i)}},
		},
	}
}

func (f *fixture) produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	if err := f.cl.ProduceSync(testContext(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// consume polls cl until it has read n records.
func consume(t testing.TB, cl *kgo.Client, n int) {
	t.Helper()
	got := 0
	deadline := time.Now().Add(30 * time.Second)
	for got < n && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		got += fs.NumRecords()
	}
	if got < n {
		t.Fatalf("consumed %d of %d records", got, n)
	}
}

// get fetches an API path and decodes its JSON into v, failing unless the
// status is want.
func (f *fixture) get(t testing.TB, path string, want int, v any) {
	t.Helper()
	f.do(t, http.MethodGet, path, "", want, v)
}

func (f *fixture) do(t testing.TB, method, path, body string, want int, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, data)
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}
