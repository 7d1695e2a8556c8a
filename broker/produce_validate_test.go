package broker_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// signed fixes the length and CRC-32C of a batch a test changed.
func signed(raw []byte) []byte {
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// changed returns a signed copy of batch with fn applied to its fields.
func changed(batch []byte, fn func(b *kmsg.RecordBatch)) []byte {
	var b kmsg.RecordBatch
	if err := b.ReadFrom(batch); err != nil {
		panic(err)
	}
	fn(&b)
	return signed(b.AppendTo(nil))
}

// produceTo sends one records field per partition of topic, partition i
// getting records[i], and returns the partitions' answers.
func produceTo(t *testing.T, cl *kgo.Client, topic string, txnID *string, records ...[]byte) []kmsg.ProduceResponseTopicPartition {
	t.Helper()
	id := topicID(t, cl, topic)
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis, req.TransactionID = -1, 5000, txnID
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	for i, r := range records {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition, rp.Records = int32(i), r
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testContext(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions
}

func topicID(t *testing.T, cl *kgo.Client, topic string) [16]byte {
	t.Helper()
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	meta, err := mreq.RequestWith(testContext(t), cl)
	if err != nil || meta.Topics[0].ErrorCode != 0 {
		t.Fatalf("metadata of %s: %v %v", topic, err, meta)
	}
	return meta.Topics[0].TopicID
}

// fetchAll fetches partition p of topic from offset 0 without waiting and
// returns its high watermark and the bytes of its batches.
func fetchAll(t *testing.T, cl *kgo.Client, topic string, p int32) (int64, int) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis, req.MaxBytes, req.ReplicaID = 0, 1<<20, -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic, ft.TopicID = topic, topicID(t, cl, topic)
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition, fp.PartitionMaxBytes = p, 1<<20
	ft.Partitions = append(ft.Partitions, fp)
	req.Topics = append(req.Topics, ft)
	resp, err := req.RequestWith(testContext(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	rp := resp.Topics[0].Partitions[0]
	if rp.ErrorCode != 0 {
		t.Fatalf("fetch %s/%d: %v", topic, p, kerr.ErrorForCode(rp.ErrorCode))
	}
	return rp.HighWatermark, len(rp.RecordBatches)
}

// TestProduceValidation sends batches that Kafka's broker refuses through a
// real broker and checks the error codes, that nothing was appended, and
// that the other partitions of the same request are unaffected.
func TestProduceValidation(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	good := recordBatch(-1, -1, 0, 3)
	hour := time.Hour.Milliseconds()
	for i, tc := range []struct {
		name  string
		batch []byte
		want  *kerr.Error
		index int32 // of the bad record in ErrorRecords, -1 for none
	}{
		{"61 bytes claiming 2^31-1 records", changed(good, func(b *kmsg.RecordBatch) {
			b.NumRecords, b.LastOffsetDelta, b.Records = math.MaxInt32, math.MaxInt32-1, nil
		}), kerr.InvalidRecord, 0},
		{"count above the records", changed(good, func(b *kmsg.RecordBatch) { b.NumRecords, b.LastOffsetDelta = 4, 3 }), kerr.InvalidRecord, 3},
		{"control batch", changed(good, func(b *kmsg.RecordBatch) { b.Attributes |= 0x20 }), kerr.InvalidRecord, -1},
		{"two batches", append(bytes.Clone(good), good...), kerr.InvalidRecord, -1},
		{"garbage zstd", changed(good, func(b *kmsg.RecordBatch) { b.Attributes |= 4 }), kerr.InvalidRecord, 0},
		{"timestamp 2 hours ahead", changed(good, func(b *kmsg.RecordBatch) {
			b.FirstTimestamp += 2 * hour
			b.MaxTimestamp = b.FirstTimestamp
		}), kerr.InvalidTimestamp, -1},
		{"one record 2 hours ahead", changed(good, func(b *kmsg.RecordBatch) {
			var r kmsg.Record
			r.TimestampDelta64, r.OffsetDelta = 2*hour, 3
			r.Length = int32(len(r.AppendTo(nil)) - 1)
			b.Records = r.AppendTo(bytes.Clone(b.Records))
			b.NumRecords, b.LastOffsetDelta = 4, 3
		}), kerr.InvalidTimestamp, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("validate-%d", i)
			createTopic(t, adm, topic, 2, nil)
			resp := produceTo(t, cl, topic, nil, tc.batch, good)
			bad, other := resp[0], resp[1]
			if bad.ErrorCode != tc.want.Code {
				t.Fatalf("error %v (%v), want %v", kerr.ErrorForCode(bad.ErrorCode), bad.ErrorMessage, tc.want)
			}
			if bad.ErrorMessage == nil || *bad.ErrorMessage == "" {
				t.Error("no error message")
			}
			if tc.index >= 0 && (len(bad.ErrorRecords) != 1 || bad.ErrorRecords[0].RelativeOffset != tc.index) {
				t.Errorf("error records %+v, want one for record %d", bad.ErrorRecords, tc.index)
			}
			if other.ErrorCode != 0 || other.BaseOffset != 0 {
				t.Errorf("the good partition of the same request: %v at offset %d", kerr.ErrorForCode(other.ErrorCode), other.BaseOffset)
			}
			if hw, n := fetchAll(t, cl, topic, 0); hw != 0 || n != 0 {
				t.Fatalf("refused batch appended: high watermark %d, %d bytes fetched", hw, n)
			}
			if again := produceTo(t, cl, topic, nil, good)[0]; again.ErrorCode != 0 || again.BaseOffset != 0 {
				t.Fatalf("good batch after the refused one: %v at offset %d", kerr.ErrorForCode(again.ErrorCode), again.BaseOffset)
			}
		})
	}
}

// TestProduceTransactionalRefused checks Kafka's answer to transactional
// batches from a producer without a transactional id: the whole request
// fails with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
func TestProduceTransactionalRefused(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	createTopic(t, kadm.NewClient(cl), "txn", 2, nil)
	txn := changed(recordBatch(-1, -1, 0, 3), func(b *kmsg.RecordBatch) {
		b.Attributes |= 0x10
		b.ProducerID, b.ProducerEpoch, b.FirstSequence = 1, 0, 0
	})
	for i, rp := range produceTo(t, cl, "txn", nil, recordBatch(-1, -1, 0, 3), txn) {
		if rp.ErrorCode != kerr.TransactionalIDAuthorizationFailed.Code {
			t.Errorf("partition %d: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", i, kerr.ErrorForCode(rp.ErrorCode))
		}
	}
	for p := range int32(2) {
		if hw, n := fetchAll(t, cl, "txn", p); hw != 0 || n != 0 {
			t.Fatalf("partition %d: high watermark %d, %d bytes fetched", p, hw, n)
		}
	}
}

// TestProduceTopicConfigs checks that the topic's timestamp window is
// enforced, follows config changes, and does not apply to LogAppendTime,
// and that a compacted topic refuses records without a key.
func TestProduceTopicConfigs(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	adm := kadm.NewClient(cl)
	createTopic(t, adm, "window", 1, map[string]*string{"message.timestamp.before.max.ms": kadm.StringPtr("60000")})
	createTopic(t, adm, "stamped", 1, map[string]*string{"message.timestamp.type": kadm.StringPtr("LogAppendTime")})
	createTopic(t, adm, "compacted", 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")})
	if rp := produceTo(t, cl, "compacted", nil, recordBatch(-1, -1, 0, 2))[0]; rp.ErrorCode != kerr.InvalidRecord.Code || len(rp.ErrorRecords) != 2 {
		t.Fatalf("records without keys to a compacted topic: %v, %d error records", kerr.ErrorForCode(rp.ErrorCode), len(rp.ErrorRecords))
	}
	old := changed(recordBatch(-1, -1, 0, 2), func(b *kmsg.RecordBatch) {
		b.FirstTimestamp -= 120_000
		b.MaxTimestamp = b.FirstTimestamp
	})
	if rp := produceTo(t, cl, "window", nil, old)[0]; rp.ErrorCode != kerr.InvalidTimestamp.Code || len(rp.ErrorRecords) != 2 {
		t.Fatalf("2-minute-old records, 1-minute window: %v, %d error records", kerr.ErrorForCode(rp.ErrorCode), len(rp.ErrorRecords))
	}
	alter := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "message.timestamp.before.max.ms", Value: kadm.StringPtr("600000")}}
	if _, err := adm.AlterTopicConfigs(testContext(t), alter, "window"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rp := produceTo(t, cl, "window", nil, old)[0]
		if rp.ErrorCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after widening the window to 10 minutes: %v", kerr.ErrorForCode(rp.ErrorCode))
		}
		time.Sleep(20 * time.Millisecond)
	}
	future := changed(recordBatch(-1, -1, 0, 2), func(b *kmsg.RecordBatch) {
		b.FirstTimestamp += 10 * time.Hour.Milliseconds()
		b.MaxTimestamp = b.FirstTimestamp
	})
	if rp := produceTo(t, cl, "stamped", nil, future)[0]; rp.ErrorCode != 0 || rp.LogAppendTime <= 0 {
		t.Fatalf("LogAppendTime topic: %v, append time %d", kerr.ErrorForCode(rp.ErrorCode), rp.LogAppendTime)
	}
}

// TestProduceEveryCodec produces and consumes with franz-go's compressors:
// real clients' batches pass validation.
func TestProduceEveryCodec(t *testing.T) {
	b := startBroker(t, "")
	for name, codec := range map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()} {
		topic := "codec-" + name
		cl := newClient(t, b.Addr(), kgo.ProducerBatchCompression(codec), kgo.AllowAutoTopicCreation())
		var recs []*kgo.Record
		for i := range 50 {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte{byte(i)}, Value: bytes.Repeat([]byte("riffle "), 100), Headers: []kgo.RecordHeader{{Key: "i", Value: []byte{byte(i)}}}})
		}
		if err := cl.ProduceSync(testContext(t), recs...).FirstErr(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := consumeN(t, b.Addr(), topic, 50); len(got) != 50 || got[49].Headers[0].Value[0] != 49 {
			t.Fatalf("%s: consumed %d records", name, len(got))
		}
	}
}
