package share

import (
	"errors"
	"testing"
	"time"
)

// TestAckBelowStart: once a record is done (here accepted by another
// member after the first one's lock expired), acknowledging it again is
// refused with INVALID_RECORD_STATE, as Kafka does, so the late member
// learns its work was redone; a batch straddling the start still applies
// to its offsets at and above the start.
func TestAckBelowStart(t *testing.T) {
	now := time.Now()
	w := window{start: 0}
	w.extend(0, "slow", now.Add(time.Second), false)
	if !w.expire(now.Add(2*time.Second), 5) {
		t.Fatal("lock did not expire")
	}
	if got := w.acquireAvailable("other", 10, now.Add(time.Minute)); len(got) != 1 {
		t.Fatalf("redelivered %v, want offset 0", got)
	}
	if err := w.checkAck("other", 0, 0, []int8{ackAccept}, ackReject); err != nil {
		t.Fatal(err)
	}
	w.ack("other", 0, 0, []int8{ackAccept}, 5, now)
	w.advance()
	if err := w.checkAck("slow", 0, 0, []int8{ackAccept}, ackReject); !errors.Is(err, errInvalidRecordState) {
		t.Fatalf("late accept of a done record: %v, want errInvalidRecordState", err)
	}

	w.extend(2, "other", now.Add(time.Minute), false)
	if err := w.checkAck("other", 0, 2, []int8{ackAccept}, ackReject); err != nil {
		t.Fatalf("batch straddling the start: %v", err)
	}
}
