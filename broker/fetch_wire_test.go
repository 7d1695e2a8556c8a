package broker_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchResponseWire fetches, over a raw connection, partitions large
// enough for their records to go out of the segment files by sendfile,
// beside an empty one and an unknown one, at every Fetch version the
// broker serves, and checks that each response is exactly kmsg's encoding
// of what it decodes to and holds every record produced.
func TestFetchResponseWire(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "wire", 4, nil)
	const perPartition = 200 // of 1 KiB: ~200 KiB a partition
	var rs []*kgo.Record
	for p := range int32(3) {
		for i := range perPartition {
			rs = append(rs, &kgo.Record{Topic: "wire", Partition: p, Value: fmt.Appendf(nil, "%d-%d-%01000d", p, i, i)})
		}
	}
	cl2 := newClient(t, b.Addr(), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(16<<10), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err := cl2.ProduceSync(testContext(t), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	topics, err := adm.ListTopics(testContext(t), "wire")
	if err != nil {
		t.Fatal(err)
	}
	id := topics["wire"].ID

	rc := dialRaw(t, b.Addr())
	for v := int16(4); v <= 16; v++ {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(v)
		req.ReplicaID, req.MaxWaitMillis, req.MaxBytes = -1, 0, 64<<20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = "wire", id
		for p := range int32(5) { // partition 3 is empty, 4 does not exist
			rp := kmsg.NewFetchRequestTopicPartition()
			rp.Partition, rp.PartitionMaxBytes = p, 1<<20
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		rc.send(kmsg.Fetch.Int16(), v, req.IsFlexible(), req.AppendTo(nil))
		frame, err := rc.read()
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		body := frame[4:]
		if req.IsFlexible() {
			body = body[1:] // the header's empty tagged fields
		}
		resp := kmsg.NewPtrFetchResponse()
		resp.SetVersion(v)
		if err := resp.ReadFrom(body); err != nil {
			t.Fatalf("v%d: decode: %v", v, err)
		}
		if again := resp.AppendTo(nil); !bytes.Equal(again, body) {
			t.Fatalf("v%d: the %d bytes received are not kmsg's encoding of their decoding (%d bytes)", v, len(body), len(again))
		}
		parts := resp.Topics[0].Partitions
		if len(parts) != 5 || parts[4].ErrorCode == 0 || parts[3].ErrorCode != 0 || len(parts[3].RecordBatches) != 0 {
			t.Fatalf("v%d: partitions %+v", v, parts)
		}
		for p := range 3 {
			got := 0
			for raw := parts[p].RecordBatches; len(raw) > 0; {
				var batch kmsg.RecordBatch
				if err := batch.ReadFrom(raw); err != nil {
					t.Fatalf("v%d partition %d: batch: %v", v, p, err)
				}
				raw = raw[12+batch.Length:]
				recs := batch.Records
				for range batch.NumRecords {
					var r kmsg.Record
					r.ReadFrom(recs)
					recs = recs[kbin.VarintLen(r.Length)+int(r.Length):]
					if want := fmt.Appendf(nil, "%d-%d-%01000d", p, got, got); !bytes.Equal(r.Value, want) {
						t.Fatalf("v%d partition %d record %d: %.20q", v, p, got, r.Value)
					}
					got++
				}
			}
			if got != perPartition {
				t.Fatalf("v%d partition %d: %d records, want %d", v, p, got, perPartition)
			}
		}
	}
}
