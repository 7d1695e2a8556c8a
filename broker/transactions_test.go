package broker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/internal/testenv"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// txnProducer is a transactional franz-go producer writing to topic.
func txnProducer(t testing.TB, addr, id, topic string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return newClient(t, addr, append([]kgo.Opt{kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.TransactionTimeout(10 * time.Second)}, opts...)...)
}

// produceTxn produces values in one transaction and ends it.
func produceTxn(t testing.TB, cl *kgo.Client, commit bool, values ...string) {
	t.Helper()
	ctx := testContext(t)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// readValues reads topic from the start up to the partitions' latest
// offsets at the isolation level and returns the values read, sorted.
func readValues(t testing.TB, addr, topic string, level kgo.IsolationLevel) []string {
	t.Helper()
	ctx := testContext(t)
	cl := newClient(t, addr)
	adm := kadm.NewClient(cl)
	var ends kadm.ListedOffsets
	var err error
	if level == kgo.ReadCommitted() {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topic)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	parts := make(map[int32]kgo.Offset)
	want := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		parts[o.Partition] = kgo.NewOffset().AtStart()
		want[o.Partition] = o.Offset
	})
	consumer := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}),
		kgo.FetchIsolationLevel(level), kgo.FetchMaxWait(100*time.Millisecond), kgo.KeepControlRecords())
	var values []string
	next := make(map[int32]int64)
	for {
		done := true
		for p, end := range want {
			done = done && next[p] >= end
		}
		if done {
			break
		}
		fs := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s at %v: got to %v, want %v", topic, level, next, want)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s[%d]: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			next[r.Partition] = r.Offset + 1
			if r.Attrs.IsControl() {
				return
			}
			values = append(values, string(r.Value))
		})
	}
	slices.Sort(values)
	return values
}

// eachTxnVersion runs test against a broker option for each transaction
// version: 1, the flow with AddPartitionsToTxn and AddOffsetsToTxn, and
// 2 (KIP-890 part 2), where franz-go adds partitions and groups with the
// produce and the offset commit, and every EndTxn bumps the epoch.
func eachTxnVersion(t *testing.T, test func(t *testing.T, version broker.Opt)) {
	for _, v := range []int16{1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { test(t, broker.TransactionVersion(v)) })
	}
}

func values(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%03d", prefix, i))
	}
	return out
}

func sortedUnion(sets ...[]string) []string {
	out := slices.Concat(sets...)
	slices.Sort(out)
	return out
}

// TestTransactionCommitAndAbort: read_committed consumers see the records
// of committed transactions only, read_uncommitted ones see them all.
func TestTransactionCommitAndAbort(t *testing.T) {
	eachTxnVersion(t, func(t *testing.T, version broker.Opt) {
		b := startBroker(t, "", version)
		createTopic(t, kadm.NewClient(newClient(t, b.Addr())), "t", 3, nil)
		cl := txnProducer(t, b.Addr(), "tx", "t")
		committed, aborted, later := values("commit", 20), values("abort", 20), values("later", 10)
		produceTxn(t, cl, true, committed...)
		produceTxn(t, cl, false, aborted...)
		produceTxn(t, cl, true, later...)
		// Only transaction version 2 bumps the epoch at every EndTxn: this
		// tells that franz-go took the flow of the version.
		d, err := kadm.NewClient(cl).DescribeTransactions(testContext(t), "tx")
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int16{false: 0, true: 3}[t.Name() == "TestTransactionCommitAndAbort/v2"]; d["tx"].ProducerEpoch != want {
			t.Errorf("epoch %d after three transactions, want %d", d["tx"].ProducerEpoch, want)
		}

		if got, want := readValues(t, b.Addr(), "t", kgo.ReadCommitted()), sortedUnion(committed, later); !slices.Equal(got, want) {
			t.Errorf("read_committed read %d records %v\nwant %d %v", len(got), got, len(want), want)
		}
		if got, want := readValues(t, b.Addr(), "t", kgo.ReadUncommitted()), sortedUnion(committed, aborted, later); !slices.Equal(got, want) {
			t.Errorf("read_uncommitted read %d records, want %d", len(got), len(want))
		}
	})
}

// TestTransactionLastStableOffset: an open transaction holds
// read_committed consumers and ListOffsets at its first offset, even for
// records produced after it outside any transaction.
func TestTransactionLastStableOffset(t *testing.T) {
	b := startBroker(t, "")
	adm := kadm.NewClient(newClient(t, b.Addr()))
	createTopic(t, adm, "lso", 1, nil)
	ctx := testContext(t)
	plain := newClient(t, b.Addr(), kgo.DefaultProduceTopic("lso"))
	hour := time.Now().Add(-time.Hour)
	if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte("before"), Timestamp: hour.Add(-2 * time.Hour)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl := txnProducer(t, b.Addr(), "lso-tx", "lso")
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("in-txn"), Timestamp: hour.Add(-time.Hour)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(ctx, &kgo.Record{Value: []byte("after"), Timestamp: hour}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso, err := adm.ListCommittedOffsets(ctx, "lso")
	if err != nil {
		t.Fatal(err)
	}
	end, err := adm.ListEndOffsets(ctx, "lso")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lso.Lookup("lso", 0); o.Offset != 1 {
		t.Errorf("read_committed latest offset %d with a transaction open at 1, want 1", o.Offset)
	}
	if o, _ := end.Lookup("lso", 0); o.Offset != 3 {
		t.Errorf("read_uncommitted latest offset %d, want 3", o.Offset)
	}
	// By time, read_committed finds nothing from the open transaction on.
	byTime := func(level int8, at time.Time) int64 {
		t.Helper()
		req := kmsg.NewPtrListOffsetsRequest()
		req.IsolationLevel = level
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "lso"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = at.UnixMilli()
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Topics[0].Partitions[0].Offset
	}
	if uncommitted, committed := byTime(0, hour), byTime(1, hour); uncommitted != 2 || committed != -1 {
		t.Errorf("the offset of the record after the open transaction by its time: read_uncommitted %d, read_committed %d, want 2 and -1", uncommitted, committed)
	}
	if committed := byTime(1, hour.Add(-3*time.Hour)); committed != 0 {
		t.Errorf("by a time before the first record, read_committed: %d, want 0", committed)
	}
	if got := readValues(t, b.Addr(), "lso", kgo.ReadCommitted()); !slices.Equal(got, []string{"before"}) {
		t.Errorf("read_committed below the open transaction read %v", got)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := readValues(t, b.Addr(), "lso", kgo.ReadCommitted()); !slices.Equal(got, []string{"after", "before", "in-txn"}) {
		t.Errorf("read_committed after the commit read %v", got)
	}
}

// TestTransactionFencesZombie: a second producer with the same
// transactional id fences the first, whose open transaction is aborted.
func TestTransactionFencesZombie(t *testing.T) {
	eachTxnVersion(t, func(t *testing.T, version broker.Opt) {
		b := startBroker(t, "", version)
		createTopic(t, kadm.NewClient(newClient(t, b.Addr())), "z", 2, nil)
		ctx := testContext(t)
		zombie := txnProducer(t, b.Addr(), "same", "z")
		if err := zombie.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range values("zombie", 4) {
			if err := zombie.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		successor := txnProducer(t, b.Addr(), "same", "z")
		produceTxn(t, successor, true, values("successor", 4)...)

		err := zombie.ProduceSync(ctx, &kgo.Record{Value: []byte("zombie-late")}).FirstErr()
		if err == nil {
			err = zombie.EndTransaction(ctx, kgo.TryCommit)
		}
		if !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
			t.Errorf("the zombie's produce or commit: %v, want PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", err)
		}
		if got := readValues(t, b.Addr(), "z", kgo.ReadCommitted()); !slices.Equal(got, values("successor", 4)) {
			t.Errorf("read_committed read %v, want the successor's records only", got)
		}
	})
}

// TestTransactionTimeoutAborts: a transaction open past its timeout is
// aborted by the coordinator, and its producer is fenced.
func TestTransactionTimeoutAborts(t *testing.T) {
	eachTxnVersion(t, func(t *testing.T, version broker.Opt) {
		b := startBroker(t, "", version, broker.TransactionAbortInterval(50*time.Millisecond))
		createTopic(t, kadm.NewClient(newClient(t, b.Addr())), "slow", 1, nil)
		ctx := testContext(t)
		cl := txnProducer(t, b.Addr(), "slow-tx", "slow", kgo.TransactionTimeout(300*time.Millisecond))
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("expired")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(newClient(t, b.Addr()))
		deadline := time.Now().Add(10 * time.Second)
		for {
			d, err := adm.DescribeTransactions(ctx, "slow-tx")
			if err != nil {
				t.Fatal(err)
			}
			if s := d["slow-tx"].State; s == "CompleteAbort" {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("transaction still %s long after its timeout", s)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
			t.Error("committing a transaction the coordinator aborted succeeded")
		}
		if got := readValues(t, b.Addr(), "slow", kgo.ReadCommitted()); len(got) != 0 {
			t.Errorf("read_committed read %v from an expired transaction", got)
		}
		if got := readValues(t, b.Addr(), "slow", kgo.ReadUncommitted()); !slices.Equal(got, []string{"expired"}) {
			t.Errorf("read_uncommitted read %v", got)
		}
	})
}

// TestGroupTransactSession: consume-transform-produce with franz-go's
// GroupTransactSession commits the output and the input offsets together;
// an aborted round leaves neither.
func TestGroupTransactSession(t *testing.T) {
	eachTxnVersion(t, func(t *testing.T, version broker.Opt) {
		b := startBroker(t, "", version)
		adm := kadm.NewClient(newClient(t, b.Addr()))
		createTopic(t, adm, "in", 2, nil)
		createTopic(t, adm, "out", 2, nil)
		ctx := testContext(t)
		in := newClient(t, b.Addr(), kgo.DefaultProduceTopic("in"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		input := values("in", 40)
		for _, v := range input {
			if err := in.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("eos"), kgo.ConsumerGroup("eos-g"),
			kgo.ConsumeTopics("in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.DefaultProduceTopic("out"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond), kgo.TransactionTimeout(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		seen, round := 0, 0
		for seen < len(input) {
			fs := sess.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("consumed %d of %d input records", seen, len(input))
			}
			fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s[%d]: %v", tp, p, err) })
			recs := fs.Records()
			if len(recs) == 0 {
				continue
			}
			if err := sess.Begin(); err != nil {
				t.Fatal(err)
			}
			// The first round is aborted: its output must vanish and its
			// input be consumed again.
			abort := round == 0
			round++
			for _, r := range recs {
				sess.Produce(ctx, &kgo.Record{Value: []byte(strings.Replace(string(r.Value), "in", "out", 1))}, nil)
			}
			committed, err := sess.End(ctx, kgo.TransactionEndTry(!abort))
			if err != nil {
				t.Fatal(err)
			}
			if committed {
				seen += len(recs)
			}
		}
		if got, want := readValues(t, b.Addr(), "out", kgo.ReadCommitted()), values("out", 40); !slices.Equal(got, want) {
			t.Errorf("read_committed output: %d records %v, want the %d transformed inputs once", len(got), got, len(want))
		}
		offs, err := adm.FetchOffsets(ctx, "eos-g")
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		offs.Each(func(o kadm.OffsetResponse) { total += o.At })
		if total != int64(len(input)) {
			t.Errorf("the group committed offsets summing to %d, want %d", total, len(input))
		}
	})
}

// TestTransactionRestart: the coordinator's state and the open
// transactions in the logs survive a broker restart: a transaction begun
// before it commits after it, and one aborted before it stays aborted.
func TestTransactionRestart(t *testing.T) {
	eachTxnVersion(t, func(t *testing.T, version broker.Opt) {
		dir := t.TempDir()
		b := startBroker(t, dir, version)
		addr := b.Addr()
		createTopic(t, kadm.NewClient(newClient(t, addr)), "r", 2, nil)
		ctx := testContext(t)
		cl := txnProducer(t, addr, "r-tx", "r")
		produceTxn(t, cl, false, values("aborted", 4)...)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range values("across", 4) {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		b = startBroker(t, dir, version, broker.ListenAddr(addr))
		if got := readValues(t, addr, "r", kgo.ReadCommitted()); len(got) != 0 {
			t.Errorf("read_committed after the restart, the transaction still open: %v", got)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
		if got := readValues(t, addr, "r", kgo.ReadCommitted()); !slices.Equal(got, values("across", 4)) {
			t.Errorf("read_committed after the commit across the restart: %v", got)
		}
	})
}

// TestTransactionAdmin: DescribeTransactions, ListTransactions and
// DescribeProducers through kadm.
func TestTransactionAdmin(t *testing.T) {
	b := startBroker(t, "")
	adm := kadm.NewClient(newClient(t, b.Addr()))
	createTopic(t, adm, "adm", 1, nil)
	ctx := testContext(t)
	cl := txnProducer(t, b.Addr(), "adm-tx", "adm")
	produceTxn(t, cl, true, "one")
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("two")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	d, err := adm.DescribeTransactions(ctx, "adm-tx", "nope")
	if err != nil {
		t.Fatal(err)
	}
	got := d["adm-tx"]
	if got.Err != nil || got.State != "Ongoing" || got.TimeoutMillis != 10000 || len(got.Topics["adm"]) != 1 || got.StartTimestamp <= 0 {
		t.Errorf("describe adm-tx: %+v", got)
	}
	if !errors.Is(d["nope"].Err, kerr.TransactionalIDNotFound) {
		t.Errorf("describe an unknown id: %v, want TRANSACTIONAL_ID_NOT_FOUND", d["nope"].Err)
	}
	listed, err := adm.ListTransactions(ctx, nil, []string{"Ongoing"})
	if err != nil {
		t.Fatal(err)
	}
	if ids := listed.TransactionalIDs(); !slices.Equal(ids, []string{"adm-tx"}) {
		t.Errorf("ongoing transactions %v", ids)
	}
	if listed, err = adm.ListTransactions(ctx, nil, []string{"CompleteCommit"}); err != nil || len(listed) != 0 {
		t.Errorf("CompleteCommit transactions while adm-tx is ongoing: %v, %v", listed.TransactionalIDs(), err)
	}
	producers, err := adm.DescribeProducers(ctx, kadm.TopicsSet{"adm": {0: {}}})
	if err != nil {
		t.Fatal(err)
	}
	active := producers.SortedProducers()
	// Under transaction version 2 the commit bumped the epoch, and the
	// sequence started again.
	if len(active) != 1 || active[0].ProducerID != got.ProducerID || int16(active[0].ProducerEpoch) != got.ProducerEpoch || active[0].CurrentTxnStartOffset != 2 || active[0].LastSequence != 0 {
		t.Errorf("described producers %+v, want producer %d at epoch %d with its transaction open at 2 (after one record and its marker) and last sequence 0", active, got.ProducerID, got.ProducerEpoch)
	}
}

// TestTransactionProtocolErrors: the coordinator's answers to requests
// out of place, at the wire level.
func TestTransactionProtocolErrors(t *testing.T) {
	// The raw requests are those of transaction version 1.
	b := startBroker(t, "", broker.TransactionVersion(1), broker.TransactionMaxTimeout(time.Minute))
	v1 := kversion.Stable()
	v1.SetMaxKeyVersion(kmsg.EndTxn.Int16(), 4) // v5 is the transaction version 2 form
	cl := newClient(t, b.Addr(), kgo.MaxVersions(v1))
	createTopic(t, kadm.NewClient(cl), "e", 1, nil)
	ctx := testContext(t)

	fc := kmsg.NewPtrFindCoordinatorRequest()
	fc.CoordinatorType, fc.CoordinatorKeys = 1, []string{"txn"}
	if resp, err := fc.RequestWith(ctx, cl); err != nil || resp.Coordinators[0].ErrorCode != 0 || resp.Coordinators[0].NodeID != 1 {
		t.Fatalf("FindCoordinator for a transactional id: %+v, %v", resp, err)
	}

	init := func(id string, timeout int32) *kmsg.InitProducerIDResponse {
		t.Helper()
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID, req.TransactionTimeoutMillis = kmsg.StringPtr(id), timeout
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := init("e-tx", 61_000); resp.ErrorCode != kerr.InvalidTransactionTimeout.Code {
		t.Errorf("a timeout over TransactionMaxTimeout: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	first := init("e-tx", 5000)
	second := init("e-tx", 5000)
	if first.ErrorCode != 0 || second.ProducerID != first.ProducerID || second.ProducerEpoch != first.ProducerEpoch+1 {
		t.Fatalf("two inits: %+v then %+v, want the same id and the epoch bumped", first, second)
	}
	pid, epoch := second.ProducerID, second.ProducerEpoch

	// kgo rewrites a v3 AddPartitionsToTxn it sends, so each is new.
	add := func(epoch int16, topics ...string) *kmsg.AddPartitionsToTxnResponse {
		t.Helper()
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.Version = 3
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = "e-tx", pid, epoch
		for _, topic := range topics {
			rt := kmsg.NewAddPartitionsToTxnRequestTopic()
			rt.Topic, rt.Partitions = topic, []int32{0}
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := add(epoch-1, "e"); resp.Topics[0].Partitions[0].ErrorCode != kerr.ProducerFenced.Code {
		t.Errorf("AddPartitionsToTxn at an old epoch: %+v, want PRODUCER_FENCED", resp)
	}
	if resp := add(epoch, "e", "missing"); resp.Topics[0].Partitions[0].ErrorCode != kerr.OperationNotAttempted.Code || resp.Topics[1].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("AddPartitionsToTxn with an unknown topic: %+v, want OPERATION_NOT_ATTEMPTED and UNKNOWN_TOPIC_OR_PARTITION", resp)
	}

	// KIP-890's verification: the partition is not in the transaction.
	verify := kmsg.NewPtrAddPartitionsToTxnRequest()
	verify.Version = 4
	tx := kmsg.NewAddPartitionsToTxnRequestTransaction()
	tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, tx.VerifyOnly = "e-tx", pid, epoch, true
	vt := kmsg.NewAddPartitionsToTxnRequestTransactionTopic()
	vt.Topic, vt.Partitions = "e", []int32{0}
	tx.Topics = []kmsg.AddPartitionsToTxnRequestTransactionTopic{vt}
	verify.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{tx}
	if resp, err := verify.RequestWith(ctx, cl); err != nil || resp.Transactions[0].Topics[0].Partitions[0].ErrorCode != kerr.InvalidTxnState.Code {
		t.Errorf("verify a partition outside the transaction: %+v, %v, want INVALID_TXN_STATE", resp, err)
	}
	// The same for a produce: a transactional batch to a partition never
	// added is refused, and one from an old epoch too.
	batch := func(epoch int16) []byte {
		return changed(recordBatch(pid, epoch, 0, 2), func(b *kmsg.RecordBatch) { b.Attributes |= 0x10 })
	}
	txnID := kmsg.StringPtr("e-tx")
	if rp := produceTo(t, cl, "e", txnID, batch(epoch))[0]; rp.ErrorCode != kerr.InvalidTxnState.Code {
		t.Errorf("produce to a partition outside the transaction: %v, want INVALID_TXN_STATE", kerr.ErrorForCode(rp.ErrorCode))
	}
	if resp := add(epoch, "e"); resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("AddPartitionsToTxn: %+v", resp)
	}
	if rp := produceTo(t, cl, "e", txnID, batch(epoch-1))[0]; rp.ErrorCode != kerr.InvalidProducerEpoch.Code {
		t.Errorf("produce from an old epoch: %v, want INVALID_PRODUCER_EPOCH", kerr.ErrorForCode(rp.ErrorCode))
	}
	if rp := produceTo(t, cl, "e", txnID, batch(epoch))[0]; rp.ErrorCode != 0 {
		t.Errorf("produce in the transaction: %v", kerr.ErrorForCode(rp.ErrorCode))
	}
	if rp := produceTo(t, cl, "e", nil, batch(epoch))[0]; rp.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
		t.Errorf("transactional batch without a transactional id: %v", kerr.ErrorForCode(rp.ErrorCode))
	}

	end := kmsg.NewPtrEndTxnRequest()
	end.TransactionalID, end.ProducerID, end.ProducerEpoch, end.Commit = "unknown", 1, 0, true
	if resp, err := end.RequestWith(ctx, cl); err != nil || resp.ErrorCode != kerr.InvalidProducerIDMapping.Code {
		t.Errorf("EndTxn of an unknown transactional id: %v, %v", kerr.ErrorForCode(resp.ErrorCode), err)
	}
	end.TransactionalID, end.ProducerID, end.ProducerEpoch = "e-tx", pid, epoch
	for i, want := range []*kerr.Error{nil, nil, kerr.InvalidTxnState} {
		// A commit, its retry, and an abort of the committed transaction.
		end.Commit = i < 2
		wantCode := int16(0)
		if want != nil {
			wantCode = want.Code
		}
		if resp, err := end.RequestWith(ctx, cl); err != nil || resp.ErrorCode != wantCode {
			t.Errorf("EndTxn %d (commit %v): %v, %v, want %v", i, end.Commit, kerr.ErrorForCode(resp.ErrorCode), err, want)
		}
	}
	if got := readValues(t, b.Addr(), "e", kgo.ReadCommitted()); len(got) != 2 {
		t.Errorf("read_committed read %v, want the two committed records", got)
	}
}

// TestTransactionKill9 kills the broker with SIGKILL at random moments
// while a transactional producer commits and aborts transactions of four
// records over two partitions, so that kills land in every phase: between
// transactions, while records are produced and, for every other kill,
// within 3 ms of an EndTxn being sent: while it prepares, while the
// markers are written and while it completes. A new producer instance (same
// transactional id) takes over after every kill, fencing what its
// predecessor left open. At the end every acknowledged commit is visible
// to read_committed whole, no transaction that was not committed shows,
// a commit whose answer was lost shows whole or not at all, and no
// transaction is left open: the last stable offset is the high
// watermark. RIFFLE_CHAOS_ROUNDS sets the number of kills (default 20).
func TestTransactionKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	rounds := 20
	if os.Getenv("RIFFLE_CHAOS_ROUNDS") != "" {
		rounds = chaosRounds(t)
	}
	dir, addr := t.TempDir(), testenv.FreeAddr(t)
	cmd, _ := startChildAt(t, dir, addr)
	createTopic(t, kadm.NewClient(newClient(t, addr, kgo.RetryTimeout(5*time.Second))), "kt", 2, nil)

	const perTxn = 4
	type outcome int
	const (
		notCommitted outcome = iota
		committed
		unknown // the commit was sent, its answer lost
	)
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	// ending tells the killer that an EndTxn is about to be sent.
	ending := make(chan struct{})
	go func() {
		defer close(done)
		newProducer := func() *kgo.Client {
			cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("kill9"), kgo.DefaultProduceTopic("kt"),
				kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.TransactionTimeout(time.Minute),
				kgo.RequestTimeoutOverhead(time.Second), kgo.RetryTimeout(2*time.Second), kgo.RecordDeliveryTimeout(2*time.Second))
			if err != nil {
				panic(err)
			}
			return cl
		}
		cl := newProducer()
		defer func() { cl.Close() }()
		for n := 0; ctx.Err() == nil; n++ {
			mu.Lock()
			outcomes = append(outcomes, notCommitted)
			mu.Unlock()
			commit := n%3 != 2
			err := cl.BeginTransaction()
			for i := 0; err == nil && i < perTxn; i++ {
				err = cl.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "%d/%d", n, i)}).FirstErr()
			}
			if err == nil {
				if commit {
					mu.Lock()
					outcomes[n] = unknown
					mu.Unlock()
				}
				select {
				case ending <- struct{}{}:
				default:
				}
				ectx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err = cl.EndTransaction(ectx, kgo.TransactionEndTry(commit))
				cancel()
				if err == nil && commit {
					mu.Lock()
					outcomes[n] = committed
					mu.Unlock()
				}
			}
			if err != nil {
				// Start over with a new instance, which fences this one.
				cl.Close()
				cl = newProducer()
			}
		}
	}()

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d, %d kills", seed, rounds)
	endKills := 0
	for i := range rounds {
		time.Sleep(100*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond))))
		if i%2 == 1 {
			// Every other kill lands while a transaction ends: while
			// EndTxn prepares, writes markers or completes.
			select {
			case <-ending:
				time.Sleep(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
				endKills++
			case <-time.After(2 * time.Second):
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		cmd, _ = startChildAt(t, dir, addr)
	}
	time.Sleep(time.Second)
	stop()
	<-done

	// A last producer instance aborts whatever the previous left open.
	last := newClient(t, addr, kgo.TransactionalID("kill9"), kgo.DefaultProduceTopic("kt"))
	produceTxn(t, last, true, "final")

	mu.Lock()
	defer mu.Unlock()
	seen := make(map[int]int)
	for _, v := range readValues(t, addr, "kt", kgo.ReadCommitted()) {
		var n, i int
		if v == "final" {
			continue
		}
		if _, err := fmt.Sscanf(v, "%d/%d", &n, &i); err != nil {
			t.Fatalf("record %q", v)
		}
		seen[n]++
	}
	counts := make(map[outcome]int)
	for n, o := range outcomes {
		counts[o]++
		switch got := seen[n]; {
		case got != 0 && got != perTxn:
			t.Errorf("transaction %d (%v) shows %d of its %d records", n, o, got, perTxn)
		case o == committed && got == 0:
			t.Errorf("committed transaction %d is not visible", n)
		case o == notCommitted && got != 0:
			t.Errorf("transaction %d was never committed, yet it is visible", n)
		}
	}
	if counts[committed] == 0 {
		t.Fatal("no transaction committed: the test proves nothing")
	}
	t.Logf("%d kills, %d of them as a transaction ended; %d transactions committed, %d not, %d with the commit's answer lost",
		rounds, endKills, counts[committed], counts[notCommitted], counts[unknown])
	adm := kadm.NewClient(newClient(t, addr))
	lso, err := adm.ListCommittedOffsets(testContext(t), "kt")
	if err != nil {
		t.Fatal(err)
	}
	end, err := adm.ListEndOffsets(testContext(t), "kt")
	if err != nil {
		t.Fatal(err)
	}
	lso.Each(func(o kadm.ListedOffset) {
		if e, _ := end.Lookup(o.Topic, o.Partition); e.Offset != o.Offset {
			t.Errorf("partition %d: last stable offset %d below the high watermark %d: a transaction is stuck open", o.Partition, o.Offset, e.Offset)
		}
	})
}

// TestTransactionThroughput compares transactional produce with
// idempotent produce under the same load: 1 KiB records to three
// partitions, acks=all, fsync before the ack, transactions of 1,000
// records. Set RIFFLE_TXN_PERF=1 to run it; RIFFLE_TXN_PERF_RECORDS sets
// the records per run (default 200,000).
func TestTransactionThroughput(t *testing.T) {
	if os.Getenv("RIFFLE_TXN_PERF") != "1" {
		t.Skip("set RIFFLE_TXN_PERF=1 to measure")
	}
	n := 200_000
	if v := os.Getenv("RIFFLE_TXN_PERF_RECORDS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			t.Fatal(err)
		}
	}
	const perTxn = 1000
	value := make([]byte, 1024)
	run := func(name string, txn bool) {
		b := startBroker(t, "")
		createTopic(t, kadm.NewClient(newClient(t, b.Addr())), "perf", 3, nil)
		opts := []kgo.Opt{kgo.DefaultProduceTopic("perf"), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.MaxBufferedRecords(10_000)}
		if txn {
			opts = append(opts, kgo.TransactionalID("perf"))
		}
		cl := newClient(t, b.Addr(), opts...)
		ctx := testContext(t)
		var failed error
		var mu sync.Mutex
		done := func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				failed = err
				mu.Unlock()
			}
		}
		start := time.Now()
		for i := 0; i < n; i += perTxn {
			if txn {
				if err := cl.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
			}
			for range perTxn {
				cl.Produce(ctx, &kgo.Record{Value: value}, done)
			}
			if txn {
				if err := cl.Flush(ctx); err != nil {
					t.Fatal(err)
				}
				if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if failed != nil {
			t.Fatal(failed)
		}
		t.Logf("%s: %d records in %v: %.0f records/s", name, n, d.Round(time.Millisecond), float64(n)/d.Seconds())
	}
	run("idempotent", false)
	run("transactional", true)
}

// TestShareGroupReadCommitted: a share group with
// share.isolation.level=read_committed is handed records below the last
// stable offset only, and never the records of aborted transactions; a
// read_uncommitted one is handed them all.
func TestShareGroupReadCommitted(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr(), kgo.DefaultProduceTopic("jobs"))
	skipWithoutShareGroups(t, cl)
	createTopic(t, kadm.NewClient(cl), "jobs", 1, nil)
	setGroupConfigs(t, cl, "committed", map[string]string{"share.auto.offset.reset": "earliest", "share.isolation.level": "read_committed"})
	setGroupConfigs(t, cl, "uncommitted", map[string]string{"share.auto.offset.reset": "earliest"})
	ctx := testContext(t)
	tx := txnProducer(t, b.Addr(), "share-tx", "jobs")
	produceTxn(t, tx, true, "c1", "c2")
	produceTxn(t, tx, false, "a1", "a2")
	produce := func(v string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("p1")
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, &kgo.Record{Value: []byte("o1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce("p2")

	consume := func(group string, want []string) {
		t.Helper()
		c := shareConsumer(t, b.Addr(), "jobs", group)
		var got []string
		pollUntil(t, c, 5*time.Second, func(r *kgo.Record) {
			r.Ack(kgo.AckAccept)
			got = append(got, string(r.Value))
		}, func() bool { return len(got) >= len(want) })
		// Anything more that would come comes now.
		pollUntil(t, c, 500*time.Millisecond, func(r *kgo.Record) { got = append(got, string(r.Value)) }, func() bool { return false })
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("share group %s was handed %v, want %v", group, got, want)
		}
		c.Close()
	}
	consume("committed", []string{"c1", "c2", "p1"})
	consume("uncommitted", []string{"a1", "a2", "c1", "c2", "o1", "p1", "p2"})
	if err := tx.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	consume("committed", []string{"o1", "p2"})
}
