package group

import (
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func txnCommit(t *testing.T, c *Coordinator, group string, pid int64, partition int32, offset int64) {
	t.Helper()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version, req.Group, req.ProducerID, req.Generation = 4, group, pid, -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = partition, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if code := c.TxnOffsetCommit(req).Topics[0].Partitions[0].ErrorCode; code != 0 {
		t.Fatalf("TxnOffsetCommit: %v", kerr.ErrorForCode(code))
	}
}

// fetchStable reads the offset of t[partition] with RequireStable.
func fetchStable(c *Coordinator, group string, partition int32) (int64, int16) {
	code, topics := c.fetchGroupOffsets(group, nil, -1, []fetchTopic{{"t", []int32{partition}}}, true)
	if code != 0 {
		return -1, code
	}
	p := topics[0].Partitions[0]
	return p.Offset, p.ErrorCode
}

// TestTxnOffsets: offsets committed in a transaction stay pending, across
// a restart, until the transaction commits (they become the group's) or
// aborts (they are dropped).
func TestTxnOffsets(t *testing.T) {
	fs := vfs.NewMem()
	c := openCoordinator(t, "groups", fs)
	if err := commit(c, "g", 0, 5); err != nil {
		t.Fatal(err)
	}
	txnCommit(t, c, "g", 7, 0, 10)
	txnCommit(t, c, "g", 8, 1, 20)
	if off, code := fetchStable(c, "g", 0); code != kerr.UnstableOffsetCommit.Code {
		t.Errorf("stable fetch with an offset pending: %d, %v, want UNSTABLE_OFFSET_COMMIT", off, kerr.ErrorForCode(code))
	}
	if code, topics := c.fetchGroupOffsets("g", nil, -1, []fetchTopic{{"t", []int32{0}}}, false); code != 0 || topics[0].Partitions[0].Offset != 5 {
		t.Errorf("plain fetch with an offset pending: %+v, want the committed 5", topics)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openCoordinator(t, "groups", fs)
	defer c.Close()
	if err := c.EndTxn(7, []string{"g"}, true); err != nil {
		t.Fatal(err)
	}
	if err := c.EndTxn(8, []string{"g", "gone"}, false); err != nil {
		t.Fatal(err)
	}
	if off, code := fetchStable(c, "g", 0); code != 0 || off != 10 {
		t.Errorf("after the commit: %d, %v, want 10", off, kerr.ErrorForCode(code))
	}
	if off, code := fetchStable(c, "g", 1); code != 0 || off != -1 {
		t.Errorf("after the abort: %d, %v, want no offset", off, kerr.ErrorForCode(code))
	}
}
