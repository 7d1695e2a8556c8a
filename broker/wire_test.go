package broker_test

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn is a bare TCP connection for sending frames no client would.
type rawConn struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t, nc}
}

// send writes a size-prefixed frame holding a request header and body.
func (c *rawConn) send(key, version int16, flexibleHeader bool, body []byte) {
	frame := kbin.AppendInt16(nil, key)
	frame = kbin.AppendInt16(frame, version)
	frame = kbin.AppendInt32(frame, 7)
	frame = kbin.AppendNullableString(frame, nil)
	if flexibleHeader {
		frame = append(frame, 0)
	}
	frame = append(frame, body...)
	c.sendFrame(frame)
}

func (c *rawConn) sendFrame(frame []byte) {
	if _, err := c.nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(frame)))); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(frame); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next response frame (correlation id first).
func (c *rawConn) read() ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err := io.ReadFull(c.nc, buf)
	return buf, err
}

// expectClosed asserts the broker hung up on the connection.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	if _, err := c.read(); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if !errors.As(err, &ne) || ne.Timeout() {
			c.t.Fatalf("expected the broker to close the connection, got %v", err)
		}
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	b := startBroker(t, "")
	healthy := newClient(t, b.Addr())
	check := func() {
		t.Helper()
		if _, err := kmsg.NewPtrApiVersionsRequest().RequestWith(testContext(t), healthy); err != nil {
			t.Fatalf("broker stopped serving: %v", err)
		}
	}

	t.Run("unknown api key", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		c.send(30000, 0, false, nil)
		c.expectClosed()
		check()
	})
	t.Run("unsupported version", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		c.send(kmsg.Metadata.Int16(), 99, true, nil)
		c.expectClosed()
		check()
	})
	t.Run("api versions too new gets v0 answer", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		c.send(kmsg.ApiVersions.Int16(), 99, true, nil)
		frame, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		if err := resp.ReadFrom(frame[4:]); err != nil {
			t.Fatal(err)
		}
		if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) == 0 {
			t.Fatalf("error %d with %d keys, want UNSUPPORTED_VERSION and the key list", resp.ErrorCode, len(resp.ApiKeys))
		}
	})
	t.Run("malformed body", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		c.send(kmsg.Metadata.Int16(), 12, true, []byte{0xff, 0xff, 0xff})
		c.expectClosed()
		check()
	})
	t.Run("truncated header", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		c.sendFrame([]byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 50})
		c.expectClosed()
		check()
	})
	t.Run("oversized request", func(t *testing.T) {
		c := dialRaw(t, b.Addr())
		if _, err := c.nc.Write(binary.BigEndian.AppendUint32(nil, 1<<30)); err != nil {
			t.Fatal(err)
		}
		c.expectClosed()
		check()
	})
	t.Run("bad crc", func(t *testing.T) {
		batch := recordBatch(-1, -1, 0, 3)
		batch[len(batch)-1] ^= 0xff // flip a bit in the last record, after the CRC was computed
		resp := produceRaw(t, healthy, "crc", batch)
		if resp.ErrorCode != kerr.CorruptMessage.Code {
			t.Fatalf("bad CRC: error %v, want CORRUPT_MESSAGE", kerr.ErrorForCode(resp.ErrorCode))
		}
		good := produceRaw(t, healthy, "crc", recordBatch(-1, -1, 0, 3))
		if good.ErrorCode != 0 || good.BaseOffset != 0 {
			t.Fatalf("good batch after a bad one: error %v offset %d, want offset 0 (nothing of the bad batch written)", kerr.ErrorForCode(good.ErrorCode), good.BaseOffset)
		}
	})
}

// TestIdempotentSequences drives the sequence checks directly: a retried
// batch gets its original offset, a gap is OUT_OF_ORDER_SEQUENCE_NUMBER.
func TestIdempotentSequences(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	pid, err := kmsg.NewPtrInitProducerIDRequest().RequestWith(testContext(t), cl)
	if err != nil || pid.ErrorCode != 0 {
		t.Fatalf("init producer id: %v %v", err, pid)
	}
	first := produceRaw(t, cl, "seq", recordBatch(pid.ProducerID, pid.ProducerEpoch, 0, 5))
	second := produceRaw(t, cl, "seq", recordBatch(pid.ProducerID, pid.ProducerEpoch, 5, 5))
	retry := produceRaw(t, cl, "seq", recordBatch(pid.ProducerID, pid.ProducerEpoch, 5, 5))
	gap := produceRaw(t, cl, "seq", recordBatch(pid.ProducerID, pid.ProducerEpoch, 20, 5))
	if first.ErrorCode != 0 || second.ErrorCode != 0 || first.BaseOffset != 0 || second.BaseOffset != 5 {
		t.Fatalf("first %+v second %+v", first, second)
	}
	if retry.ErrorCode != 0 || retry.BaseOffset != 5 {
		t.Fatalf("retried batch: error %v offset %d, want its original offset 5", kerr.ErrorForCode(retry.ErrorCode), retry.BaseOffset)
	}
	if gap.ErrorCode != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("sequence gap: %v, want OUT_OF_ORDER_SEQUENCE_NUMBER", kerr.ErrorForCode(gap.ErrorCode))
	}
	next := produceRaw(t, cl, "seq", recordBatch(pid.ProducerID, pid.ProducerEpoch, 10, 5))
	if next.ErrorCode != 0 || next.BaseOffset != 10 {
		t.Fatalf("in-order batch after the gap: %v offset %d", kerr.ErrorForCode(next.ErrorCode), next.BaseOffset)
	}
}

// recordBatch builds a valid magic-2 batch of n small records.
func recordBatch(producerID int64, epoch int16, seq int32, n int) []byte {
	now := time.Now().UnixMilli()
	var records []byte
	for i := range n {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte{'v', byte('0' + i)}}
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		records = r.AppendTo(records)
	}
	batch := kmsg.RecordBatch{
		Magic: 2, LastOffsetDelta: int32(n - 1), FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: producerID, ProducerEpoch: epoch, FirstSequence: seq, NumRecords: int32(n), Records: records,
	}
	raw := batch.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// produceRaw sends one batch to partition 0 of topic with acks=all.
func produceRaw(t *testing.T, cl *kgo.Client, topic string, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics, mreq.AllowAutoTopicCreation = append(mreq.Topics, mt), true
	meta, err := mreq.RequestWith(testContext(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, meta.Topics[0].TopicID // v13 names topics by id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(testContext(t), cl)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Topics[0].Partitions[0]
}
