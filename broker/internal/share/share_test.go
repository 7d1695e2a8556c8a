package share

import (
	"context"
	"encoding/binary"
	"hash/crc32"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestWindowLifecycle(t *testing.T) {
	now := time.Now()
	w := window{start: 10}
	w.extend(14, "a", now.Add(time.Second), false)
	if w.end() != 15 || w.acquiredCount() != 5 {
		t.Fatalf("end %d acquired %d, want 15 and 5", w.end(), w.acquiredCount())
	}
	if err := w.checkAck("b", 10, 10, []int8{ackAccept}, ackReject); err == nil {
		t.Fatal("another member acknowledged a record it does not hold")
	}
	if err := w.checkAck("a", 10, 15, []int8{ackAccept}, ackReject); err == nil {
		t.Fatal("acknowledged beyond the end")
	}
	if err := w.checkAck("a", 10, 14, []int8{ackRenew}, ackReject); err == nil {
		t.Fatal("renew accepted where not allowed")
	}
	types := []int8{ackAccept, ackRelease, ackReject, ackAccept, ackRelease}
	if err := w.checkAck("a", 10, 14, types, ackReject); err != nil {
		t.Fatal(err)
	}
	if !w.ack("a", 10, 14, types, 2, now) {
		t.Fatal("release freed nothing")
	}
	w.advance()
	if w.start != 11 {
		t.Fatalf("start %d after accepting 10, want 11", w.start)
	}
	got := w.acquireAvailable("b", 10, now.Add(time.Second))
	want := []offsetRange{{11, 11, 2}, {14, 14, 2}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("redelivered %v, want %v", got, want)
	}
	// A second release at the delivery limit of 2 archives.
	if w.ack("b", 11, 11, []int8{ackRelease}, 2, now) {
		t.Fatal("record released past the delivery limit")
	}
	if w.at(11).state != archived {
		t.Fatalf("state %d, want archived", w.at(11).state)
	}
	// Lock expiry releases offset 14 back to available.
	if !w.expire(now.Add(2*time.Second), 5) || w.at(14).state != available {
		t.Fatal("expired lock not released")
	}
	w.advance()
	if w.start != 14 {
		t.Fatalf("start %d, want 14 (11-13 done)", w.start)
	}

	restored, err := unmarshalWindow(w.marshal(nil))
	if err != nil {
		t.Fatal(err)
	}
	if restored.start != w.start || len(restored.recs) != len(w.recs) || restored.at(14).deliveries != 2 {
		t.Fatalf("restored %+v, want %+v", restored, w)
	}
	if _, err := unmarshalWindow([]byte{windowFormat, 2}); err == nil {
		t.Fatal("truncated state decoded")
	}
}

func TestParseISODuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"PT1H":     time.Hour,
		"P1DT30M":  24*time.Hour + 30*time.Minute,
		"PT0.5S":   500 * time.Millisecond,
		"pt15m10s": 15*time.Minute + 10*time.Second,
	} {
		got, err := parseISODuration(in)
		if err != nil || got != want {
			t.Errorf("parse %q = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1H", "PT", "PTxS", "P1X"} {
		if _, err := parseISODuration(bad); err == nil {
			t.Errorf("parse %q succeeded", bad)
		}
	}
}

// logSet serves real commit logs to the coordinator.
type logSet map[topicPartition]*commitlog.Log

func (s logSet) Partition(topic string, partition int32) Log {
	if l, ok := s[topicPartition{topic, partition}]; ok {
		return l
	}
	return nil
}

// batch encodes a v2 record batch of n records with kmsg.
func recordBatch(n int) []byte {
	var recs []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte("job")}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, LastOffsetDelta: int32(n - 1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(n), Records: recs}
	b.Length = int32(49 + len(recs))
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

type harness struct {
	t     *testing.T
	dir   string
	logs  logSet
	topic Topic
	cfg   map[string]string
	c     *Coordinator
}

func newHarness(t *testing.T) *harness {
	dir := t.TempDir()
	l, err := commitlog.Open(filepath.Join(dir, "jobs-0"), commitlog.Config{RetentionAge: -1, RetentionBytes: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	h := &harness{t: t, dir: dir, logs: logSet{{"jobs", 0}: l}, topic: Topic{Name: "jobs", ID: [16]byte{1}, Partitions: 1},
		cfg: map[string]string{"share.auto.offset.reset": "earliest"}}
	h.open()
	return h
}

func (h *harness) open() {
	c, err := Open(Config{
		Dir:         filepath.Join(h.dir, "share"),
		Topics:      func() map[string]Topic { return map[string]Topic{h.topic.Name: h.topic} },
		Logs:        h.logs,
		GroupConfig: func(string) map[string]string { return h.cfg },
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.c = c
	h.t.Cleanup(func() { c.Close() })
}

// produce appends a batch of n records and waits until it is durable,
// and so below the high watermark the coordinator reads up to.
func (h *harness) produce(n int) {
	l := h.logs[topicPartition{"jobs", 0}]
	res, err := l.Append(recordBatch(n), time.Now())
	if err == nil {
		err = l.WaitDurable(context.Background(), res.LastOffset+1)
	}
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) join(member string) {
	req := kmsg.NewPtrShareGroupHeartbeatRequest()
	req.Version, req.GroupID, req.MemberID, req.SubscribedTopicNames = 1, "g", member, []string{"jobs"}
	resp := h.c.Handle(context.Background(), Client{ConnID: 1}, req).(*kmsg.ShareGroupHeartbeatResponse)
	if resp.ErrorCode != 0 || resp.MemberEpoch < 1 || resp.Assignment == nil || len(resp.Assignment.TopicPartitions) != 1 {
		h.t.Fatalf("join: %+v", resp)
	}
}

// fetch sends a ShareFetch with acks of (first, last, type) triples and
// returns the acquired ranges of partition 0.
func (h *harness) fetch(member string, conn uint64, epoch int32, acks ...[3]int64) []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord {
	req := kmsg.NewPtrShareFetchRequest()
	req.Version, req.GroupID, req.MemberID, req.ShareSessionEpoch = 1, kmsg.StringPtr("g"), kmsg.StringPtr(member), epoch
	req.MaxWaitMillis, req.MaxRecords, req.MaxBytes = 50, 100, 1<<20
	p := kmsg.NewShareFetchRequestTopicPartition()
	for _, a := range acks {
		p.AcknowledgementBatches = append(p.AcknowledgementBatches, kmsg.ShareFetchRequestTopicPartitionAcknowledgementBatch{FirstOffset: a[0], LastOffset: a[1], AcknowledgeTypes: []int8{int8(a[2])}})
	}
	req.Topics = []kmsg.ShareFetchRequestTopic{{TopicID: h.topic.ID, Partitions: []kmsg.ShareFetchRequestTopicPartition{p}}}
	resp := h.c.Handle(context.Background(), Client{ConnID: conn}, req).(*kmsg.ShareFetchResponse)
	if resp.ErrorCode != 0 {
		h.t.Fatalf("share fetch: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.AcknowledgeErrorCode != 0 {
				h.t.Fatalf("partition errors %v / %v", kerr.ErrorForCode(p.ErrorCode), kerr.ErrorForCode(p.AcknowledgeErrorCode))
			}
			if len(p.AcquiredRecords) > 0 && len(p.Records) == 0 {
				h.t.Fatal("acquired records without their batches")
			}
			return p.AcquiredRecords
		}
	}
	return nil
}

func TestCoordinatorAcquireAckRestart(t *testing.T) {
	h := newHarness(t)
	h.produce(4)
	h.produce(4)
	h.join("m1")
	h.join("m2")

	got := h.fetch("m1", 1, 0)
	if len(got) != 1 || got[0].FirstOffset != 0 || got[0].LastOffset != 7 || got[0].DeliveryCount != 1 {
		t.Fatalf("m1 acquired %+v, want 0-7 once", got)
	}
	if got := h.fetch("m2", 2, 0); len(got) != 0 {
		t.Fatalf("m2 acquired %+v while m1 holds everything", got)
	}
	// m1 accepts 0-2, releases 3, rejects 4; 5-7 stay acquired. The
	// released record is available at once, to m1's own fetch too.
	got = h.fetch("m1", 1, 1, [3]int64{0, 2, 1}, [3]int64{3, 3, 2}, [3]int64{4, 4, 3})
	if len(got) != 1 || got[0].FirstOffset != 3 || got[0].LastOffset != 3 || got[0].DeliveryCount != 2 {
		t.Fatalf("m1 acquired %+v, want offset 3 a second time", got)
	}
	if got := h.fetch("m2", 2, 1); len(got) != 0 {
		t.Fatalf("m2 acquired %+v, want nothing", got)
	}
	if st, _ := h.c.Status("g"); len(st) != 1 || st[0].StartOffset != 3 || st[0].InFlight != 4 || st[0].Archived != 1 || st[0].Lag != 4 {
		t.Fatalf("status %+v, want start 3, 4 in flight, 1 archived, lag 4", st)
	}

	// Restart: acknowledged and rejected records stay done, held ones
	// come back.
	if err := h.c.Close(); err != nil {
		t.Fatal(err)
	}
	h.open()
	h.join("m3")
	got = h.fetch("m3", 3, 0)
	if len(got) != 2 || got[0].FirstOffset != 3 || got[0].LastOffset != 3 || got[1].FirstOffset != 5 || got[1].LastOffset != 7 {
		t.Fatalf("after restart acquired %+v, want 3 and 5-7", got)
	}
	if got[0].DeliveryCount != 2 {
		t.Fatalf("offset 3 delivery count %d after restart, want 2", got[0].DeliveryCount)
	}
}

func TestCoordinatorConnCloseAndLockExpiry(t *testing.T) {
	h := newHarness(t)
	h.cfg["share.record.lock.duration.ms"] = "300"
	h.produce(3)
	h.join("m1")
	h.join("m2")
	if got := h.fetch("m1", 1, 0); len(got) != 1 || got[0].LastOffset != 2 {
		t.Fatalf("m1 acquired %+v", got)
	}
	h.c.ConnClosed(1)
	got := h.fetch("m2", 2, 0)
	if len(got) != 1 || got[0].FirstOffset != 0 || got[0].LastOffset != 2 || got[0].DeliveryCount != 2 {
		t.Fatalf("m2 acquired %+v after m1's connection closed, want 0-2 again", got)
	}
	// m2 stops acknowledging: the lock expires and m1 gets the records.
	start := time.Now()
	var again []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
	for epoch := int32(0); len(again) == 0 && time.Since(start) < 5*time.Second; epoch++ {
		again = h.fetch("m1", 3, epoch)
	}
	if len(again) != 1 || again[0].DeliveryCount != 3 {
		t.Fatalf("after lock expiry acquired %+v, want 0-2 a third time", again)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("records came back after %v, before the 300ms lock expired", d)
	}
}

func TestCoordinatorSessionEpochs(t *testing.T) {
	h := newHarness(t)
	h.join("m1")
	req := kmsg.NewPtrShareFetchRequest()
	req.Version, req.GroupID, req.MemberID, req.ShareSessionEpoch = 1, kmsg.StringPtr("g"), kmsg.StringPtr("m1"), 5
	resp := h.c.Handle(context.Background(), Client{ConnID: 1}, req).(*kmsg.ShareFetchResponse)
	if resp.ErrorCode != kerr.ShareSessionNotFound.Code {
		t.Fatalf("epoch 5 without a session: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	h.fetch("m1", 1, 0)
	resp = h.c.Handle(context.Background(), Client{ConnID: 1}, req).(*kmsg.ShareFetchResponse)
	if resp.ErrorCode != kerr.InvalidShareSessionEpoch.Code {
		t.Fatalf("epoch 5 after 0: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if resp.AcquisitionLockTimeoutMillis != 30000 {
		t.Fatalf("lock timeout %d, want the default 30000", resp.AcquisitionLockTimeoutMillis)
	}
}

func TestCoordinatorAdmin(t *testing.T) {
	h := newHarness(t)
	h.produce(6)
	h.join("m1")
	h.fetch("m1", 1, 0)

	alter := kmsg.NewPtrAlterShareGroupOffsetsRequest()
	alter.GroupID = "g"
	alter.Topics = []kmsg.AlterShareGroupOffsetsRequestTopic{{Topic: "jobs", Partitions: []kmsg.AlterShareGroupOffsetsRequestTopicPartition{{Partition: 0, StartOffset: 4}}}}
	if resp := h.c.Handle(context.Background(), Client{}, alter).(*kmsg.AlterShareGroupOffsetsResponse); resp.ErrorCode != kerr.NonEmptyGroup.Code {
		t.Fatalf("alter offsets of a group with a member: %v", kerr.ErrorForCode(resp.ErrorCode))
	}
	if handled, code := h.c.DeleteGroup("g"); !handled || code != kerr.NonEmptyGroup.Code {
		t.Fatalf("delete of a group with a member: %v %v", handled, kerr.ErrorForCode(code))
	}
	leave := kmsg.NewPtrShareGroupHeartbeatRequest()
	leave.Version, leave.GroupID, leave.MemberID, leave.MemberEpoch = 1, "g", "m1", -1
	if resp := h.c.Handle(context.Background(), Client{}, leave).(*kmsg.ShareGroupHeartbeatResponse); resp.ErrorCode != 0 || resp.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", resp)
	}
	if l := h.c.ListGroups(); len(l) != 1 || l[0] != (GroupListing{Group: "g", State: "Empty"}) {
		t.Fatalf("groups %+v, want g Empty", l)
	}
	resp := h.c.Handle(context.Background(), Client{}, alter).(*kmsg.AlterShareGroupOffsetsResponse)
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("alter offsets: %+v", resp)
	}
	describe := kmsg.NewPtrDescribeShareGroupOffsetsRequest()
	describe.Version = 1
	describe.Groups = []kmsg.DescribeShareGroupOffsetsRequestGroup{{GroupID: "g"}, {GroupID: "nope"}}
	dresp := h.c.Handle(context.Background(), Client{}, describe).(*kmsg.DescribeShareGroupOffsetsResponse)
	if p := dresp.Groups[0].Topics[0].Partitions[0]; p.StartOffset != 4 || p.Lag != 2 {
		t.Fatalf("after alter: start %d lag %d, want 4 and 2", p.StartOffset, p.Lag)
	}
	if dresp.Groups[1].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("unknown group: %v", kerr.ErrorForCode(dresp.Groups[1].ErrorCode))
	}

	del := kmsg.NewPtrDeleteShareGroupOffsetsRequest()
	del.GroupID = "g"
	del.Topics = []kmsg.DeleteShareGroupOffsetsRequestTopic{{Topic: "jobs"}}
	if resp := h.c.Handle(context.Background(), Client{}, del).(*kmsg.DeleteShareGroupOffsetsResponse); resp.ErrorCode != 0 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("delete offsets: %+v", resp)
	}
	if st, _ := h.c.Status("g"); len(st) != 0 {
		t.Fatalf("status after deleting offsets: %+v", st)
	}
	if handled, code := h.c.DeleteGroup("g"); !handled || code != 0 {
		t.Fatalf("delete of the empty group: %v %v", handled, kerr.ErrorForCode(code))
	}
	if err := h.c.Close(); err != nil {
		t.Fatal(err)
	}
	h.open()
	if l := h.c.ListGroups(); len(l) != 0 {
		t.Fatalf("groups after delete and restart: %+v", l)
	}
}
