package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testLogger keeps broker logs out of passing test output unless -v.
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("test", t.Name())
}

// startBroker runs a broker on a free loopback port with its data in dir
// (a fresh temporary directory when dir is empty) until the test ends.
func startBroker(t testing.TB, dir string, opts ...broker.Opt) *broker.Broker {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts = append([]broker.Opt{broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir), broker.Logger(testLogger(t))}, opts...)
	b, err := broker.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return b
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

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(testContext(t), partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// consumeN reads n records from the start of topic.
func consumeN(t testing.TB, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx := testContext(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records from %s before timeout", len(out), n, topic)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestTopicAdmin(t *testing.T) {
	b := startBroker(t, "")
	adm := kadm.NewClient(newClient(t, b.Addr()))
	ctx := testContext(t)

	createTopic(t, adm, "orders", 3, map[string]*string{"retention.ms": kadm.StringPtr("3600000")})
	if resp, _ := adm.CreateTopic(ctx, 1, 1, nil, "orders"); !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		t.Fatalf("second create: got %v, want TOPIC_ALREADY_EXISTS", resp.Err)
	}
	// In order: orders_v2 collides with the orders.v2 created before it.
	for _, tc := range []struct {
		name string
		want error
	}{
		{"bad/name", kerr.InvalidTopicException},
		{"orders.v2", nil},
		{"orders_v2", kerr.InvalidTopicException},
		{"", kerr.InvalidTopicException},
		{string(make([]byte, 300)), kerr.InvalidTopicException},
	} {
		resp, _ := adm.CreateTopic(ctx, 1, 1, nil, tc.name)
		if !errors.Is(resp.Err, tc.want) && !(tc.want == nil && resp.Err == nil) {
			t.Errorf("create %.20q: got %v, want %v", tc.name, resp.Err, tc.want)
		}
	}
	if resp, _ := adm.CreateTopic(ctx, 0, 1, nil, "zero"); !errors.Is(resp.Err, kerr.InvalidPartitions) {
		t.Errorf("zero partitions: got %v, want INVALID_PARTITIONS", resp.Err)
	}
	if resp, _ := adm.CreateTopic(ctx, 1, 3, nil, "rf3"); !errors.Is(resp.Err, kerr.InvalidReplicationFactor) {
		t.Errorf("replication factor 3: got %v, want INVALID_REPLICATION_FACTOR", resp.Err)
	}
	if resp, _ := adm.CreateTopic(ctx, 1, 1, map[string]*string{"retention.ms": kadm.StringPtr("soon")}, "badcfg"); !errors.Is(resp.Err, kerr.InvalidConfig) {
		t.Errorf("bad config: got %v, want INVALID_CONFIG", resp.Err)
	}
	if resp, _ := adm.CreateTopic(ctx, 1, 1, map[string]*string{"no.such.key": kadm.StringPtr("1")}, "badkey"); !errors.Is(resp.Err, kerr.InvalidConfig) {
		t.Errorf("unknown config: got %v, want INVALID_CONFIG", resp.Err)
	}

	details, err := adm.ListTopics(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if d := details["orders"]; d.Err != nil || len(d.Partitions) != 3 || d.ID == [16]byte{} {
		t.Fatalf("orders: %+v", d)
	}

	if _, err := adm.CreatePartitions(ctx, 2, "orders"); err != nil {
		t.Fatal(err)
	}
	details, _ = adm.ListTopics(ctx, "orders")
	if n := len(details["orders"].Partitions); n != 5 {
		t.Fatalf("after adding 2 partitions: %d partitions, want 5", n)
	}
	if rs, _ := adm.UpdatePartitions(ctx, 2, "orders"); rs["orders"].Err == nil || !errors.Is(rs["orders"].Err, kerr.InvalidPartitions) {
		t.Errorf("shrinking partitions: got %v, want INVALID_PARTITIONS", rs["orders"].Err)
	}

	rcs, err := adm.DescribeTopicConfigs(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On("orders", nil)
	got := map[string]string{}
	for _, c := range rc.Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["retention.ms"] != "3600000" || got["cleanup.policy"] != "delete" {
		t.Fatalf("orders configs: retention.ms=%q cleanup.policy=%q", got["retention.ms"], got["cleanup.policy"])
	}
	alter := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "message.timestamp.type", Value: kadm.StringPtr("LogAppendTime")}, {Op: kadm.DeleteConfig, Name: "retention.ms"}}
	if rs, err := adm.AlterTopicConfigs(ctx, alter, "orders"); err != nil || rs[0].Err != nil {
		t.Fatalf("alter configs: %v %v", err, rs)
	}
	bad := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.bytes", Value: kadm.StringPtr("1")}}
	if rs, _ := adm.AlterTopicConfigs(ctx, bad, "orders"); !errors.Is(rs[0].Err, kerr.InvalidConfig) {
		t.Errorf("segment.bytes=1: got %v, want INVALID_CONFIG", rs[0].Err)
	}
	rcs, _ = adm.DescribeTopicConfigs(ctx, "orders")
	rc, _ = rcs.On("orders", nil)
	for _, c := range rc.Configs {
		switch c.Key {
		case "retention.ms":
			if c.MaybeValue() != "604800000" || c.Source != 5 {
				t.Errorf("retention.ms after delete = %q (source %v), want the default", c.MaybeValue(), c.Source)
			}
		case "message.timestamp.type":
			if c.MaybeValue() != "LogAppendTime" {
				t.Errorf("message.timestamp.type = %q", c.MaybeValue())
			}
		}
	}

	if _, err := adm.DescribeBrokerConfigs(ctx); err != nil {
		t.Fatalf("describe broker configs: %v", err)
	}

	dr, err := adm.DeleteTopics(ctx, "orders", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if dr["orders"].Err != nil || !errors.Is(dr["missing"].Err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete: orders %v, missing %v", dr["orders"].Err, dr["missing"].Err)
	}
	details, _ = adm.ListTopics(ctx)
	if _, ok := details["orders"]; ok {
		t.Fatal("orders still listed after delete")
	}
}

func TestProduceFetchEachCodec(t *testing.T) {
	b := startBroker(t, "")
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "codec-" + name
			cl := newClient(t, b.Addr(), kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
			const n = 500
			ctx := testContext(t)
			for i := range n {
				cl.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(fmt.Sprintf("value %d of %s %s", i, name, make([]byte, 100)))}, nil)
			}
			if err := cl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			recs := consumeN(t, b.Addr(), topic, n)
			for i, r := range recs[:n] {
				if string(r.Key) != strconv.Itoa(i) || r.Offset != int64(i) {
					t.Fatalf("record %d: key %q offset %d", i, r.Key, r.Offset)
				}
			}
		})
	}
}

func TestLongPollWakesOnAppend(t *testing.T) {
	b := startBroker(t, "")
	adm := kadm.NewClient(newClient(t, b.Addr()))
	createTopic(t, adm, "wake", 1, nil)
	consumer := newClient(t, b.Addr(), kgo.ConsumeTopics("wake"), kgo.FetchMaxWait(10*time.Second))
	got := make(chan time.Time, 1)
	go func() {
		for {
			fs := consumer.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			if fs.NumRecords() > 0 {
				got <- time.Now()
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // let the consumer park in a long poll
	producer := newClient(t, b.Addr())
	sent := time.Now()
	if err := producer.ProduceSync(testContext(t), &kgo.Record{Topic: "wake", Value: []byte("ping")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if d := at.Sub(sent); d > 5*time.Second {
			t.Fatalf("record arrived %v after produce: the long poll did not wake on append", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("consumer never received the record within the 10s long poll")
	}
}

func TestListOffsetsByTime(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("times"), kgo.AllowAutoTopicCreation())
	ctx := testContext(t)
	base := time.UnixMilli(1_700_000_000_000)
	for i := range 10 {
		r := &kgo.Record{Value: []byte{byte(i)}, Timestamp: base.Add(time.Duration(i) * time.Minute)}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	offs, err := adm.ListOffsetsAfterMilli(ctx, base.Add(4*time.Minute+time.Second).UnixMilli(), "times")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := offs.Lookup("times", 0); o.Offset != 5 {
		t.Fatalf("first offset after minute 4: %d, want 5", o.Offset)
	}
	ends, _ := adm.ListEndOffsets(ctx, "times")
	starts, _ := adm.ListStartOffsets(ctx, "times")
	if e, _ := ends.Lookup("times", 0); e.Offset != 10 {
		t.Fatalf("end offset %d, want 10", e.Offset)
	}
	if s, _ := starts.Lookup("times", 0); s.Offset != 0 {
		t.Fatalf("start offset %d, want 0", s.Offset)
	}
	if _, err := adm.DeleteRecords(ctx, kadm.Offsets{"times": {0: {Topic: "times", Partition: 0, At: 3}}}); err != nil {
		t.Fatal(err)
	}
	starts, _ = adm.ListStartOffsets(ctx, "times")
	if s, _ := starts.Lookup("times", 0); s.Offset != 3 {
		t.Fatalf("start offset after DeleteRecords(3): %d", s.Offset)
	}
}

func TestRestartKeepsTopicsAndRecords(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir), broker.Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("keep"), kgo.AllowAutoTopicCreation())
	ctx := testContext(t)
	for i := range 100 {
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cluster := b.ClusterID()
	cl.Close()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}

	b2 := startBroker(t, dir)
	if b2.ClusterID() != cluster {
		t.Fatalf("cluster id changed across restart: %s -> %s", cluster, b2.ClusterID())
	}
	recs := consumeN(t, b2.Addr(), "keep", 100)
	for i, r := range recs[:100] {
		if string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("record %d = %q after restart", i, r.Value)
		}
	}
}

func TestIdempotentProducer(t *testing.T) {
	b := startBroker(t, "")
	// franz-go is idempotent by default; many concurrent small batches
	// with retries enabled must come out exactly once and in order.
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("idem"), kgo.AllowAutoTopicCreation(), kgo.MaxBufferedRecords(10000), kgo.ProducerLinger(0))
	ctx := testContext(t)
	const n = 5000
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	recs := consumeN(t, b.Addr(), "idem", n)
	if len(recs) != n {
		t.Fatalf("consumed %d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if string(r.Value) != strconv.Itoa(i) {
			t.Fatalf("record %d = %q: duplicates or reordering", i, r.Value)
		}
	}
}
