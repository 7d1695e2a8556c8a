package broker_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitRaw sends one OffsetCommit of offset for partition 0 of topic as
// an administrative commit (no member, generation -1) at the newest
// version both sides speak, which is flexible: group ids of any length
// fit on the wire.
func commitRaw(t *testing.T, cl *kgo.Client, group, topic string, offset int64) int16 {
	t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.Generation = group, -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testContext(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// TestStoreLongGroupIDsRejected sends group ids longer than the stores
// hold, in every request that creates a group, and checks that each is
// answered with INVALID_GROUP_ID, that the longest accepted id is stored,
// and that the broker starts again on its data.
func TestStoreLongGroupIDsRejected(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr())
	createTopic(t, kadm.NewClient(cl), "t", 1, nil)

	longest := strings.Repeat("g", 32767)
	for _, n := range []int{32768, 70_000} {
		group := strings.Repeat("x", n)
		if code := commitRaw(t, cl, group, "t", 5); code != kerr.InvalidGroupID.Code {
			t.Errorf("OffsetCommit with a %d-byte group id: %v, want INVALID_GROUP_ID", n, kerr.ErrorForCode(code))
		}

		join := kmsg.NewPtrJoinGroupRequest()
		join.Group, join.SessionTimeoutMillis, join.RebalanceTimeoutMillis, join.ProtocolType = group, 10_000, 10_000, "consumer"
		join.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range"}}
		if resp, err := join.RequestWith(testContext(t), cl); err != nil || resp.ErrorCode != kerr.InvalidGroupID.Code {
			t.Errorf("JoinGroup with a %d-byte group id: %v %v, want INVALID_GROUP_ID", n, resp, err)
		}

		hb := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		hb.Group, hb.MemberID, hb.MemberEpoch, hb.SubscribedTopicNames, hb.RebalanceTimeoutMillis = group, "m", 0, []string{"t"}, 10_000
		if resp, err := hb.RequestWith(testContext(t), cl); err != nil || resp.ErrorCode != kerr.InvalidGroupID.Code {
			t.Errorf("ConsumerGroupHeartbeat with a %d-byte group id: %v %v, want INVALID_GROUP_ID", n, resp, err)
		}

		shb := kmsg.NewPtrShareGroupHeartbeatRequest()
		shb.GroupID, shb.MemberID, shb.MemberEpoch, shb.SubscribedTopicNames = group, "0123456789abcdef0123456789abcd", 0, []string{"t"}
		if resp, err := shb.RequestWith(testContext(t), cl); err != nil || resp.ErrorCode != kerr.InvalidGroupID.Code {
			t.Errorf("ShareGroupHeartbeat with a %d-byte group id: %v %v, want INVALID_GROUP_ID", n, resp, err)
		}

		alter := kmsg.NewPtrAlterShareGroupOffsetsRequest()
		alter.GroupID = group
		if resp, err := alter.RequestWith(testContext(t), cl); err != nil || resp.ErrorCode != kerr.InvalidGroupID.Code {
			t.Errorf("AlterShareGroupOffsets with a %d-byte group id: %v %v, want INVALID_GROUP_ID", n, resp, err)
		}
	}
	if code := commitRaw(t, cl, longest, "t", 7); code != 0 {
		t.Fatalf("OffsetCommit with a 32767-byte group id: %v", kerr.ErrorForCode(code))
	}
	if code := commitRaw(t, cl, "short", "t", 3); code != 0 {
		t.Fatalf("OffsetCommit: %v", kerr.ErrorForCode(code))
	}
	cl.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	b = startBroker(t, dir)
	adm := kadm.NewClient(newClient(t, b.Addr()))
	for group, want := range map[string]int64{longest: 7, "short": 3} {
		offs, err := adm.FetchOffsets(testContext(t), group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup("t", 0); !ok || o.At != want {
			t.Errorf("%d-byte group after restart: offset %+v, want %d", len(group), o, want)
		}
	}
}

// TestStoreSkipsUndecodableRecords writes records that do not decode
// straight into the group and share stores of a stopped broker, starts a
// broker on that data directory, and checks that it starts and that the
// other groups' offsets are intact.
func TestStoreSkipsUndecodableRecords(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr())
	createTopic(t, kadm.NewClient(cl), "t", 1, nil)
	for group, off := range map[string]int64{"a": 11, "b": 22} {
		if code := commitRaw(t, cl, group, "t", off); code != 0 {
			t.Fatalf("commit %s: %v", group, kerr.ErrorForCode(code))
		}
	}
	cl.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	badFlag := make([]byte, 38) // an offset whose metadata flag is neither 0 nor 1
	badFlag[36] = 7
	garbage := map[string][][2][]byte{
		"groups": {
			{[]byte("o\xff"), []byte("x")},                                      // key cut short
			{[]byte("o\x00\x01c\x00\x01t\x00\x00\x00\x00"), []byte("short")},    // offset value cut short
			{[]byte("gbroken"), []byte("{not json")},                            // group record
			{[]byte("gworse"), []byte(`{"type":"unknown"}`)},                    // group of no known type
			{[]byte("\x7f"), []byte("?")},                                       // unknown key tag
			{[]byte("o\x00\x01a\x00\x01t\x00\x00\x00\x01"), make([]byte, 37+1)}, // bad metadata flag... follows
		},
		"share": {
			{[]byte("p\x05ab"), []byte("x")},                                              // key cut short
			{[]byte("p\x01s\x01t\x00\x00\x00\x00"), make([]byte, 16)},                     // no window
			{[]byte("p\x01s\x01t\x00\x00\x00\x01"), append(make([]byte, 16), 1, 0, 0xff)}, // window cut short
			{[]byte("z"), nil}, // unknown key tag
		},
	}
	for store, kvs := range garbage {
		db, err := pebble.Open(filepath.Join(dir, store), &pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range kvs {
			if err := db.Set(kv[0], kv[1], pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	b = startBroker(t, dir)
	adm := kadm.NewClient(newClient(t, b.Addr()))
	for group, want := range map[string]int64{"a": 11, "b": 22} {
		offs, err := adm.FetchOffsets(testContext(t), group)
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := offs.Lookup("t", 0); !ok || o.At != want {
			t.Errorf("group %s after restart over bad records: offset %+v, want %d", group, o, want)
		}
	}
}
