package broker_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestInitProducerIDHandsOutNewIDs checks, on the wire, that a
// non-transactional InitProducerId gets a new producer id at epoch 0
// even when it presents an id and epoch, as Kafka answers, and that ids
// are never reused across a restart.
func TestInitProducerIDHandsOutNewIDs(t *testing.T) {
	dir := t.TempDir()
	b := startBroker(t, dir)
	cl := newClient(t, b.Addr())
	initPID := func(cl *kgo.Client, id int64, epoch int16) *kmsg.InitProducerIDResponse {
		t.Helper()
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = 4
		req.ProducerID, req.ProducerEpoch = id, epoch
		resp, err := req.RequestWith(testContext(t), cl)
		if err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != 0 {
			t.Fatalf("InitProducerId(%d, %d): error %d", id, epoch, resp.ErrorCode)
		}
		return resp
	}
	seen := map[int64]bool{}
	first := initPID(cl, -1, -1)
	seen[first.ProducerID] = true
	for _, presented := range [][2]int64{{first.ProducerID, 0}, {first.ProducerID, 7}, {123456, 3}} {
		resp := initPID(cl, presented[0], int16(presented[1]))
		if seen[resp.ProducerID] || resp.ProducerEpoch != 0 {
			t.Fatalf("InitProducerId presenting %d/%d: got %d/%d, want a new id at epoch 0", presented[0], presented[1], resp.ProducerID, resp.ProducerEpoch)
		}
		seen[resp.ProducerID] = true
	}
	cl.Close()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b = startBroker(t, dir)
	resp := initPID(newClient(t, b.Addr()), -1, -1)
	if seen[resp.ProducerID] {
		t.Fatalf("producer id %d handed out again after a restart", resp.ProducerID)
	}
}
