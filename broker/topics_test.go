package broker_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/riffle-stream/riffle/broker"
)

// request sends req to broker 1 as it is, not split by partition
// leaders, and fails the test on a transport error.
func request[R kmsg.Response](t testing.TB, cl *kgo.Client, req kmsg.Request) R {
	t.Helper()
	resp, err := cl.Broker(1).Request(testContext(t), req)
	if err != nil {
		t.Fatalf("%T: %v", req, err)
	}
	return resp.(R)
}

// byName caps a client at Kafka 2.8's versions, whose Produce and Fetch
// name topics rather than give their ids.
var byName = kgo.MaxVersions(kversion.V2_8_0())

func createTopicsReq(validateOnly bool, topics map[string]int32) *kmsg.CreateTopicsRequest {
	req := kmsg.NewPtrCreateTopicsRequest()
	req.ValidateOnly = validateOnly
	req.TimeoutMillis = 30_000
	for name, n := range topics {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, n, 1
		req.Topics = append(req.Topics, rt)
	}
	return req
}

func TestPartitionLimits(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		b := startBroker(t, "")
		cl := newClient(t, b.Addr())
		for _, validateOnly := range []bool{true, false} {
			start := time.Now()
			resp := request[*kmsg.CreateTopicsResponse](t, cl, createTopicsReq(validateOnly, map[string]int32{"huge": math.MaxInt32}))
			if code := resp.Topics[0].ErrorCode; code != kerr.PolicyViolation.Code {
				t.Fatalf("validate_only %v: 2^31-1 partitions answered %v, want POLICY_VIOLATION", validateOnly, kerr.ErrorForCode(code))
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("rejecting 2^31-1 partitions took %v", d)
			}
		}
		for n, want := range map[int32]int16{10_000: 0, 10_001: kerr.PolicyViolation.Code} {
			resp := request[*kmsg.CreateTopicsResponse](t, cl, createTopicsReq(true, map[string]int32{"max": n}))
			if code := resp.Topics[0].ErrorCode; code != want {
				t.Fatalf("%d partitions (the default limit is 10,000) answered %v", n, kerr.ErrorForCode(code))
			}
		}
	})

	t.Run("options", func(t *testing.T) {
		b := startBroker(t, "", broker.MaxTopicPartitions(8), broker.MaxPartitions(12))
		cl := newClient(t, b.Addr())
		// As in Kafka, the cap bounds the whole request: 5 + 5 fails both.
		both := request[*kmsg.CreateTopicsResponse](t, cl, createTopicsReq(false, map[string]int32{"x": 5, "y": 5}))
		for _, rt := range both.Topics {
			if rt.ErrorCode != kerr.PolicyViolation.Code {
				t.Fatalf("topic %s of a request for 10 partitions: %v, want POLICY_VIOLATION", rt.Topic, kerr.ErrorForCode(rt.ErrorCode))
			}
		}
		for _, c := range []struct {
			n            int32
			validateOnly bool
			want         *kerr.Error
		}{
			{9, true, kerr.PolicyViolation},
			{9, false, kerr.PolicyViolation},
			{0, false, kerr.InvalidPartitions},
			{8, true, nil},
			{8, false, nil},
		} {
			resp := request[*kmsg.CreateTopicsResponse](t, cl, createTopicsReq(c.validateOnly, map[string]int32{"a": c.n}))
			if got := kerr.ErrorForCode(resp.Topics[0].ErrorCode); got != error(c.want) && !(c.want == nil && got == nil) {
				t.Fatalf("%d partitions (validate_only %v): %v, want %v", c.n, c.validateOnly, got, c.want)
			}
		}
		// 8 exist; 5 more would make 13 of 12.
		resp := request[*kmsg.CreateTopicsResponse](t, cl, createTopicsReq(false, map[string]int32{"b": 5}))
		if code := resp.Topics[0].ErrorCode; code != kerr.PolicyViolation.Code {
			t.Fatalf("13 partitions in all answered %v, want POLICY_VIOLATION", kerr.ErrorForCode(code))
		}
		for _, c := range []struct {
			count        int32
			validateOnly bool
			want         *kerr.Error
		}{
			{math.MaxInt32, true, kerr.PolicyViolation},
			{math.MaxInt32, false, kerr.PolicyViolation},
			{9, false, kerr.PolicyViolation},
		} {
			req := kmsg.NewPtrCreatePartitionsRequest()
			req.ValidateOnly, req.TimeoutMillis = c.validateOnly, 30_000
			rt := kmsg.NewCreatePartitionsRequestTopic()
			rt.Topic, rt.Count = "a", c.count
			req.Topics = append(req.Topics, rt)
			resp := request[*kmsg.CreatePartitionsResponse](t, cl, req)
			if got := resp.Topics[0].ErrorCode; got != c.want.Code {
				t.Fatalf("grow to %d (validate_only %v): %v, want %v", c.count, c.validateOnly, kerr.ErrorForCode(got), c.want)
			}
		}
		adm := kadm.NewClient(cl)
		td, err := adm.ListTopics(testContext(t), "a")
		if err != nil || len(td["a"].Partitions) != 8 {
			t.Fatalf("topic a after refused growth: %v partitions, %v", len(td["a"].Partitions), err)
		}
	})
}

func TestCreatingManyPartitionsDoesNotStallTraffic(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("hot"), kgo.ProducerLinger(0), byName)
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "hot", 1, nil)
	ctx := testContext(t)
	if err := cl.ProduceSync(ctx, kgo.StringRecord("warm up")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	other := newClient(t, b.Addr())
	if _, err := kadm.NewClient(other).BrokerMetadata(ctx); err != nil {
		t.Fatal(err)
	}
	const wide = 2000
	created := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		resp := request[*kmsg.CreateTopicsResponse](t, cl, createTopicsReq(false, map[string]int32{"wide": wide}))
		if code := resp.Topics[0].ErrorCode; code != 0 {
			t.Errorf("create %d partitions: %v", wide, kerr.ErrorForCode(code))
		}
		created <- time.Since(start)
	}()

	var worstProduce, worstFetch time.Duration
	ops := 0
	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxWaitMillis, fetch.MaxBytes = 0, 1<<20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "hot"
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.PartitionMaxBytes = 1 << 20
	ft.Partitions = append(ft.Partitions, fp)
	fetch.Topics = append(fetch.Topics, ft)
	var took, small time.Duration
loop:
	for {
		select {
		case took = <-created:
			break loop
		default:
		}
		if ops == 20 {
			// Another topic's creation does not wait for the wide one
			// (from another connection: requests on one are served in
			// order).
			start := time.Now()
			resp := request[*kmsg.CreateTopicsResponse](t, other, createTopicsReq(false, map[string]int32{"small": 1}))
			if code := resp.Topics[0].ErrorCode; code != 0 {
				t.Fatalf("create a small topic meanwhile: %v", kerr.ErrorForCode(code))
			}
			small = time.Since(start)
		}
		start := time.Now()
		if err := cl.ProduceSync(ctx, kgo.StringRecord("during create")).FirstErr(); err != nil {
			t.Fatal(err)
		}
		worstProduce = max(worstProduce, time.Since(start))
		start = time.Now()
		resp := request[*kmsg.FetchResponse](t, cl, fetch)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.Fatalf("fetch: %v", kerr.ErrorForCode(code))
		}
		worstFetch = max(worstFetch, time.Since(start))
		ops++
	}
	t.Logf("creating %d partitions took %v; meanwhile a one-partition topic was created in %v, and %d produce+fetch pairs on another partition took at worst %v (produce) and %v (fetch)",
		wide, took, small, ops, worstProduce, worstFetch)
	// Before, the whole creation held the partition-set lock: a request
	// arriving meanwhile waited for all of it.
	if limit := min(3*time.Second, took/3); worstProduce > limit || worstFetch > limit || small == 0 || small > limit {
		t.Fatalf("worst produce %v, worst fetch %v, small topic creation %v during a creation of %v: want each below %v", worstProduce, worstFetch, small, took, limit)
	}
	td, err := adm.ListTopics(ctx, "wide")
	if err != nil || len(td["wide"].Partitions) != wide {
		t.Fatalf("wide topic: %d partitions, %v", len(td["wide"].Partitions), err)
	}
	manual := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := manual.ProduceSync(ctx, &kgo.Record{Topic: "wide", Partition: wide - 1, Value: []byte("last")}).FirstErr(); err != nil {
		t.Fatalf("produce to the last new partition: %v", err)
	}
}

func TestUnopenablePartitionGoesOfflineAlone(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 3, nil)
	ctx := testContext(t)
	for p := range int32(3) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: p, Value: []byte("before")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Partition 1's segment file becomes a directory: its log cannot open.
	seg := filepath.Join(dir, "logs", "t-1", "00000000000000000000.log")
	if err := os.Remove(seg); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(seg, 0o755); err != nil {
		t.Fatal(err)
	}

	b = startBroker(t, dir)
	cl = newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()), byName)
	for _, p := range []int32{0, 2} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: p, Value: []byte("after")}).FirstErr(); err != nil {
			t.Fatalf("produce to healthy partition %d: %v", p, err)
		}
	}

	produce := kmsg.NewPtrProduceRequest()
	produce.Acks, produce.TimeoutMillis = -1, 5000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = "t"
	for p := range int32(3) {
		pp := kmsg.NewProduceRequestTopicPartition()
		pp.Partition, pp.Records = p, recordBatch(-1, -1, -1, 1)
		pt.Partitions = append(pt.Partitions, pp)
	}
	produce.Topics = append(produce.Topics, pt)
	presp := request[*kmsg.ProduceResponse](t, cl, produce)

	fetch := kmsg.NewPtrFetchRequest()
	fetch.MaxBytes = 1 << 20
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = "t"
	list := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = "t"
	for p := range int32(3) {
		fp := kmsg.NewFetchRequestTopicPartition()
		fp.Partition, fp.PartitionMaxBytes = p, 1<<20
		ft.Partitions = append(ft.Partitions, fp)
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = p, -1
		lt.Partitions = append(lt.Partitions, lp)
	}
	fetch.Topics = append(fetch.Topics, ft)
	list.Topics = append(list.Topics, lt)
	fresp := request[*kmsg.FetchResponse](t, cl, fetch)
	lresp := request[*kmsg.ListOffsetsResponse](t, cl, list)
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr("t")
	mreq.Topics = append(mreq.Topics, mt)
	mresp := request[*kmsg.MetadataResponse](t, cl, mreq)

	for p := range 3 {
		want := int16(0)
		if p == 1 {
			want = kerr.KafkaStorageError.Code
		}
		if got := presp.Topics[0].Partitions[p].ErrorCode; got != want {
			t.Errorf("produce to partition %d: %v, want %v", p, kerr.ErrorForCode(got), kerr.ErrorForCode(want))
		}
		if got := fresp.Topics[0].Partitions[p].ErrorCode; got != want {
			t.Errorf("fetch of partition %d: %v, want %v", p, kerr.ErrorForCode(got), kerr.ErrorForCode(want))
		}
		if got := lresp.Topics[0].Partitions[p].ErrorCode; got != want {
			t.Errorf("list offsets of partition %d: %v, want %v", p, kerr.ErrorForCode(got), kerr.ErrorForCode(want))
		}
		if p != 1 {
			if off := lresp.Topics[0].Partitions[p].Offset; off != 3 {
				t.Errorf("partition %d end offset %d, want 3", p, off)
			}
		}
		mp := mresp.Topics[0].Partitions[p]
		if p == 1 && (mp.ErrorCode != kerr.LeaderNotAvailable.Code || mp.Leader != -1 || len(mp.OfflineReplicas) != 1) {
			t.Errorf("metadata of the offline partition: error %v, leader %d, offline replicas %v", kerr.ErrorForCode(mp.ErrorCode), mp.Leader, mp.OfflineReplicas)
		}
		if p != 1 && (mp.ErrorCode != 0 || mp.Leader != 1) {
			t.Errorf("metadata of partition %d: error %v, leader %d", p, kerr.ErrorForCode(mp.ErrorCode), mp.Leader)
		}
	}
	if _, err := os.Stat(seg); err != nil {
		t.Fatalf("the offline partition's files were touched: %v", err)
	}
}

// startErr starts a broker on dir and returns its start error.
func startErr(t *testing.T, dir string, opts ...broker.Opt) error {
	t.Helper()
	b, err := broker.New(append([]broker.Opt{broker.ListenAddr("127.0.0.1:0"), broker.DataDir(dir), broker.Logger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(testContext(t))
	if err == nil {
		b.Close(context.Background())
	}
	return err
}

// produceAndClose creates topic with one record per partition and stops
// the broker.
func produceAndClose(t *testing.T, dir, topic string, partitions int32) {
	t.Helper()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	createTopic(t, kadm.NewClient(cl), topic, partitions, nil)
	for p := range partitions {
		if err := cl.ProduceSync(testContext(t), &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func segmentSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "00000000000000000000.log"))
	if err != nil {
		t.Fatalf("log %s: %v", dir, err)
	}
	return fi.Size()
}

func TestLostMetadataRefusesStart(t *testing.T) {
	dir := t.TempDir()
	produceAndClose(t, dir, "kept", 2)
	props, err := os.ReadFile(filepath.Join(dir, "meta.properties"))
	if err != nil || !strings.Contains(string(props), "cluster.id=") || !strings.Contains(string(props), "node.id=1") {
		t.Fatalf("meta.properties = %q, %v", props, err)
	}
	size := segmentSize(t, filepath.Join(dir, "logs", "kept-0"))

	if err := os.RemoveAll(filepath.Join(dir, "metadata")); err != nil {
		t.Fatal(err)
	}
	err = startErr(t, dir)
	if err == nil || !strings.Contains(err.Error(), "metadata/ is empty") || !strings.Contains(err.Error(), "Restore") {
		t.Fatalf("start with an empty metadata/: %v, want a refusal naming the fix", err)
	}
	// Without meta.properties the logs alone still refuse.
	if err := os.Remove(filepath.Join(dir, "meta.properties")); err != nil {
		t.Fatal(err)
	}
	err = startErr(t, dir)
	if err == nil || !strings.Contains(err.Error(), "has partition logs") {
		t.Fatalf("start with logs and an empty metadata/: %v, want a refusal", err)
	}
	for _, p := range []string{"kept-0", "kept-1"} {
		if got := segmentSize(t, filepath.Join(dir, "logs", p)); p == "kept-0" && got != size {
			t.Fatalf("log %s is %d bytes after the refused starts, was %d", p, got, size)
		}
	}
}

func TestForeignMetadataRefusesStart(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	produceAndClose(t, dir, "mine", 1)
	produceAndClose(t, other, "theirs", 1)
	if err := startErr(t, dir, broker.NodeID(2)); err == nil || !strings.Contains(err.Error(), "belongs to node 1") {
		t.Fatalf("start as node 2 on node 1's data: %v, want a refusal", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "metadata")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(other, "metadata"), filepath.Join(dir, "metadata")); err != nil {
		t.Fatal(err)
	}
	err := startErr(t, dir)
	if err == nil || !strings.Contains(err.Error(), "metadata of another cluster") {
		t.Fatalf("start with another cluster's metadata: %v, want a refusal", err)
	}
	segmentSize(t, filepath.Join(dir, "logs", "mine-0"))
	if _, err := os.Stat(filepath.Join(dir, "logs", "theirs-0")); err == nil {
		t.Fatal("the foreign metadata's topic got a log")
	}
}

func TestUnknownLogDirectorySurvives(t *testing.T) {
	dir := t.TempDir()
	produceAndClose(t, dir, "known", 1)
	stray := filepath.Join(dir, "logs", "unknown-0")
	if err := os.MkdirAll(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stray, "00000000000000000000.log"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory of a known topic's name beyond its partitions, too.
	beyond := filepath.Join(dir, "logs", "known-5")
	if err := os.MkdirAll(beyond, 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		b := startBroker(t, dir)
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if data, err := os.ReadFile(filepath.Join(stray, "00000000000000000000.log")); err != nil || string(data) != "precious" {
		t.Fatalf("unknown log directory after restarts: %q, %v", data, err)
	}
	if _, err := os.Stat(beyond); err != nil {
		t.Fatalf("directory beyond a topic's partitions after restarts: %v", err)
	}
}

func TestDeleteTopicRemovesLogs(t *testing.T) {
	dir := t.TempDir()
	produceAndClose(t, dir, "doomed", 2)
	logs := filepath.Join(dir, "logs")
	// Keep a copy to put back: the state a crash between committing the
	// removal and deleting the files leaves.
	backup := t.TempDir()
	if err := os.CopyFS(filepath.Join(backup, "doomed-0"), os.DirFS(filepath.Join(logs, "doomed-0"))); err != nil {
		t.Fatal(err)
	}

	b := startBroker(t, dir)
	adm := kadm.NewClient(newClient(t, b.Addr()))
	resp, err := adm.DeleteTopics(testContext(t), "doomed")
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"doomed-0", "doomed-1"} {
		if _, err := os.Stat(filepath.Join(logs, p)); !os.IsNotExist(err) {
			t.Fatalf("%s after DeleteTopics: %v, want it gone", p, err)
		}
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(logs, "doomed-0"), os.DirFS(filepath.Join(backup, "doomed-0"))); err != nil {
		t.Fatal(err)
	}

	b = startBroker(t, dir)
	if _, err := os.Stat(filepath.Join(logs, "doomed-0")); !os.IsNotExist(err) {
		t.Fatalf("log of a removed topic after restart: %v, want the replayed removal to delete it", err)
	}
	td, err := kadm.NewClient(newClient(t, b.Addr())).ListTopics(testContext(t))
	if err != nil || td.Has("doomed") {
		t.Fatalf("topics after restart: %v, %v", td.Names(), err)
	}
}

func TestDeleteRecreateUnderLoad(t *testing.T) {
	b := startBroker(t, "", broker.AutoCreateTopics(false))
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	ctx := testContext(t)
	topics := []string{"churn-a", "churn-b"}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			hc := newClient(t, b.Addr(), byName)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				topic := topics[(w+i)%len(topics)]
				var req kmsg.Request
				switch i % 4 {
				case 0:
					r := kmsg.NewPtrListOffsetsRequest()
					rt := kmsg.NewListOffsetsRequestTopic()
					rt.Topic = topic
					for p := range int32(4) {
						rp := kmsg.NewListOffsetsRequestTopicPartition()
						rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p, -1, 0
						rt.Partitions = append(rt.Partitions, rp)
					}
					r.Topics = append(r.Topics, rt)
					req = r
				case 1:
					r := kmsg.NewPtrOffsetForLeaderEpochRequest()
					r.ReplicaID = -1
					rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
					rt.Topic = topic
					for p := range int32(4) {
						rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
						rp.Partition, rp.CurrentLeaderEpoch, rp.LeaderEpoch = p, 0, 0
						rt.Partitions = append(rt.Partitions, rp)
					}
					r.Topics = append(r.Topics, rt)
					req = r
				case 2:
					r := kmsg.NewPtrProduceRequest()
					r.Acks, r.TimeoutMillis = 1, 5000
					rt := kmsg.NewProduceRequestTopic()
					rt.Topic = topic
					for p := range int32(4) {
						rp := kmsg.NewProduceRequestTopicPartition()
						rp.Partition, rp.Records = p, recordBatch(-1, -1, -1, 1)
						rt.Partitions = append(rt.Partitions, rp)
					}
					r.Topics = append(r.Topics, rt)
					req = r
				case 3:
					r := kmsg.NewPtrFetchRequest()
					r.MaxBytes = 1 << 16
					rt := kmsg.NewFetchRequestTopic()
					rt.Topic = topic
					for p := range int32(4) {
						rp := kmsg.NewFetchRequestTopicPartition()
						rp.Partition, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch = p, 1<<16, 0
						rt.Partitions = append(rt.Partitions, rp)
					}
					r.Topics = append(r.Topics, rt)
					req = r
				}
				if _, err := hc.Broker(1).Request(ctx, req); err != nil {
					t.Errorf("%T: %v", req, err)
					return
				}
				served.Add(1)
			}
		})
	}
	deadline := time.Now().Add(3 * time.Second)
	rounds := 0
	for ; time.Now().Before(deadline); rounds++ {
		topic := topics[rounds%len(topics)]
		// Alternate partition counts so a recreated topic differs.
		n := int32(1 + 3*(rounds/len(topics)%2))
		if _, err := adm.CreateTopic(ctx, n, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		if _, err := adm.DeleteTopics(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d create/delete rounds, %d requests served meanwhile", rounds, served.Load())
	if served.Load() == 0 {
		t.Fatal("no request was served during the churn")
	}
}

func TestLongStringsRefusedAtTheRequest(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 1, nil)
	// share.auto.offset.reset takes any by_duration: suffix, so only the
	// length limit stands between this value and an undecodable record.
	long := "by_duration:" + strings.Repeat("P", 40_000)

	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType, res.ResourceName = kmsg.ConfigResourceTypeGroupConfig, "g"
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name, c.Op, c.Value = "share.auto.offset.reset", kmsg.IncrementalAlterConfigOpSet, &long
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	res.ResourceName = strings.Repeat("g", 40_000)
	c.Value = kmsg.StringPtr("earliest")
	res.Configs = []kmsg.IncrementalAlterConfigsRequestResourceConfig{c}
	req.Resources = append(req.Resources, res)
	resp := request[*kmsg.IncrementalAlterConfigsResponse](t, cl, req)
	if got := resp.Resources[0].ErrorCode; got != kerr.InvalidConfig.Code {
		t.Fatalf("config value of %d bytes: %v, want INVALID_CONFIG", len(long), kerr.ErrorForCode(got))
	}
	if got := resp.Resources[1].ErrorCode; got != kerr.InvalidGroupID.Code {
		t.Fatalf("group id of 40,000 bytes: %v, want INVALID_GROUP_ID", kerr.ErrorForCode(got))
	}

	ct := createTopicsReq(false, map[string]int32{"u": 1})
	cc := kmsg.NewCreateTopicsRequestTopicConfig()
	cc.Name, cc.Value = "cleanup.policy", kmsg.StringPtr(strings.Repeat("delete,", 6000)+"delete")
	ct.Topics[0].Configs = append(ct.Topics[0].Configs, cc)
	if got := request[*kmsg.CreateTopicsResponse](t, cl, ct).Topics[0].ErrorCode; got != kerr.InvalidConfig.Code {
		t.Fatalf("topic config value of 42,000 bytes: %v, want INVALID_CONFIG", kerr.ErrorForCode(got))
	}
	cl.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	startBroker(t, dir)
}

func TestBrokerDynamicDefaultsReachLogs(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("t"), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "t", 1, nil)
	ctx := testContext(t)
	segments := func() int {
		entries, err := os.ReadDir(filepath.Join(dir, "logs", "t-0"))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".log") {
				n++
			}
		}
		return n
	}
	produce := func(n int) {
		for range n {
			if err := cl.ProduceSync(ctx, kgo.SliceRecord(make([]byte, 200))).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce(5)
	if n := segments(); n != 1 {
		t.Fatalf("%d segments before any dynamic default, want 1", n)
	}
	// A segment.bytes default set on this broker, then cluster-wide,
	// reaches the open log.
	alter := func(op kadm.IncrementalOp, value *string, brokers ...int32) {
		t.Helper()
		resp, err := adm.AlterBrokerConfigs(ctx, []kadm.AlterConfig{{Op: op, Name: "log.segment.bytes", Value: value}}, brokers...)
		if err == nil {
			for _, r := range resp {
				err = errors.Join(err, r.Err)
			}
		}
		if err != nil {
			t.Fatalf("alter log.segment.bytes on %v: %v", brokers, err)
		}
	}
	for _, brokers := range [][]int32{{1}, nil} {
		alter(kadm.SetConfig, kmsg.StringPtr("1024"), brokers...)
		before := segments()
		produce(12)
		if after := segments(); after < before+2 {
			t.Fatalf("log.segment.bytes=1024 on %v: %d segments after 12 records of 200 bytes, %d before: the default did not reach the log", brokers, after, before)
		}
		alter(kadm.DeleteConfig, nil, brokers...)
		before = segments()
		produce(12)
		if after := segments(); after != before {
			t.Fatalf("log.segment.bytes deleted on %v: %d segments after 12 more records, %d before", brokers, after, before)
		}
	}
}
