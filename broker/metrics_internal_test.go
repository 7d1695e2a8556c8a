package broker

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// produceResponse is a Produce response for partitions partitions of one
// topic, the first failing with code.
func produceResponse(partitions int, code int16) *kmsg.ProduceResponse {
	resp := kmsg.NewPtrProduceResponse()
	rt := kmsg.NewProduceResponseTopic()
	rt.Topic = "t"
	for i := range partitions {
		rp := kmsg.NewProduceResponseTopicPartition()
		rp.Partition = int32(i)
		if i == 0 {
			rp.ErrorCode = code
		}
		rt.Partitions = append(rt.Partitions, rp)
	}
	resp.Topics = append(resp.Topics, rt)
	return resp
}

func TestForEachErrorCode(t *testing.T) {
	var got []int16
	resp := produceResponse(3, kerr.NotLeaderForPartition.Code)
	resp.Topics[0].Partitions[2].ErrorCode = kerr.KafkaStorageError.Code
	forEachErrorCode(resp, func(c int16) { got = append(got, c) })
	if len(got) != 2 || got[0] != 6 || got[1] != 56 {
		t.Fatalf("error codes %v, want [6 56]", got)
	}
	// A nested group response: top-level, group and member codes.
	lg := kmsg.NewPtrLeaveGroupResponse()
	lg.ErrorCode = kerr.UnknownMemberID.Code
	m := kmsg.NewLeaveGroupResponseMember()
	m.ErrorCode = kerr.FencedInstanceID.Code
	lg.Members = append(lg.Members, m, kmsg.NewLeaveGroupResponseMember())
	got = nil
	forEachErrorCode(lg, func(c int16) { got = append(got, c) })
	if len(got) != 2 || got[0] != kerr.UnknownMemberID.Code || got[1] != kerr.FencedInstanceID.Code {
		t.Fatalf("leave group error codes %v", got)
	}
	for code, want := range map[int16]string{6: "NOT_LEADER_OR_FOLLOWER", 3: "UNKNOWN_TOPIC_OR_PARTITION", -1: "UNKNOWN_SERVER_ERROR", 9999: "UNKNOWN_ERROR_CODE_9999"} {
		if got := errorName(code); got != want {
			t.Errorf("errorName(%d) = %q, want %q", code, got, want)
		}
	}
}

// BenchmarkRequestMetrics measures what the metrics add to one produce
// request of one partition: the duration histogram, the error walk of the
// response and the topic's two counters.
func BenchmarkRequestMetrics(b *testing.B) {
	m := newSeries(&Broker{})
	tc := m.topic("t")
	resp := produceResponse(1, 0)
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tc.recordsIn.Add(10)
		tc.bytesIn.Add(1000)
		m.responseErrors(kmsg.Produce.Int16(), resp)
		m.requestDone(kmsg.Produce.Int16(), start)
	}
}

// TestErrorWalksAgree checks the direct walks of Produce and Fetch
// responses against the reflective one.
func TestErrorWalksAgree(t *testing.T) {
	fetch := kmsg.NewPtrFetchResponse()
	fetch.ErrorCode = kerr.UnknownServerError.Code
	ft := kmsg.NewFetchResponseTopic()
	for _, c := range []int16{0, kerr.OffsetOutOfRange.Code, kerr.FencedLeaderEpoch.Code} {
		fp := kmsg.NewFetchResponseTopicPartition()
		fp.ErrorCode = c
		ft.Partitions = append(ft.Partitions, fp)
	}
	fetch.Topics = append(fetch.Topics, ft, ft)
	for _, resp := range []kmsg.Response{fetch, produceResponse(4, kerr.MessageTooLarge.Code)} {
		var direct, reflective []int16
		forEachErrorCode(resp, func(c int16) { direct = append(direct, c) })
		v := reflect.ValueOf(resp)
		walkErrorCodes(errorPlanFor(v.Type()), v, func(c int16) { reflective = append(reflective, c) })
		if !slices.Equal(direct, reflective) || len(direct) == 0 {
			t.Errorf("%T: direct walk %v, reflective %v", resp, direct, reflective)
		}
	}
}
