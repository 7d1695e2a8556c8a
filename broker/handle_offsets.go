package broker

import (
	"context"
	"errors"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Special ListOffsets timestamps (KIP-734, KIP-1005).
const (
	offsetLatest        = -1
	offsetEarliest      = -2
	offsetMaxTimestamp  = -3
	offsetEarliestLocal = -4
	offsetTiered        = -5
)

// lookupPartition finds a partition as img describes it and checks the
// client's leader epoch against img. The partition and img are read
// together: a partition is returned only if img has its topic, with the
// same id, and its index, so a topic deleted or recreated meanwhile
// answers an error rather than pairing one incarnation's log with
// another's metadata.
func (b *Broker) lookupPartition(img *metadata.Image, topic string, partition, epoch int32) (*partition, int16) {
	p, err := b.parts.lookup(img, topic, partition)
	if err != nil {
		return nil, err.Code
	}
	if code := checkLeaderEpoch(img, topic, partition, epoch); code != 0 {
		return nil, code
	}
	return p, 0
}

func (b *Broker) handleListOffsets(_ context.Context, req *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	img := b.meta.Image()
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition, rp.Timestamp, rp.Offset = tp.Partition, -1, -1
			p, code := b.lookupPartition(img, t.Topic, tp.Partition, tp.CurrentLeaderEpoch)
			rp.ErrorCode = code
			if p != nil {
				switch ts := tp.Timestamp; ts {
				case offsetLatest:
					rp.Offset = p.log.HighWatermark()
					if req.IsolationLevel == isolationReadCommitted {
						rp.Offset = p.log.LastStableOffset()
					}
				case offsetEarliest, offsetEarliestLocal:
					rp.Offset = p.log.StartOffset()
				case offsetTiered:
					// Nothing is tiered: like Kafka without remote
					// storage, no offset.
				case offsetMaxTimestamp:
					rp.Offset, rp.Timestamp = p.log.MaxTimestamp()
				default:
					if ts < 0 {
						// Kafka's answer to a special timestamp it does
						// not know.
						rp.ErrorCode = kerr.UnsupportedVersion.Code
						break
					}
					if off, at, ok := p.log.OffsetForTimestamp(ts); ok {
						rp.Offset, rp.Timestamp = off, at
					}
				}
				// A record found by its timestamp from the last stable
				// offset on is not there yet for read_committed.
				if ts := tp.Timestamp; (ts >= 0 || ts == offsetMaxTimestamp) && req.IsolationLevel == isolationReadCommitted && rp.Offset >= p.log.LastStableOffset() {
					rp.Offset, rp.Timestamp = -1, -1
				}
				// Every batch is written in epoch 0; no offset found has
				// no epoch either (-1), as in Kafka.
				if rp.Offset >= 0 {
					rp.LeaderEpoch = 0
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// handleOffsetForLeaderEpoch answers with the end offset of the asked
// epoch. Partitions here have had one leader epoch, 0, so every epoch up
// to it ends at the log end offset.
func (b *Broker) handleOffsetForLeaderEpoch(_ context.Context, req *kmsg.OffsetForLeaderEpochRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
	img := b.meta.Image()
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetForLeaderEpochResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
			rp.Partition, rp.LeaderEpoch, rp.EndOffset = tp.Partition, -1, -1
			p, code := b.lookupPartition(img, t.Topic, tp.Partition, tp.CurrentLeaderEpoch)
			rp.ErrorCode = code
			if p != nil {
				// lookupPartition checked that img has this partition.
				cur := img.Topics[t.Topic].Partitions[tp.Partition].LeaderEpoch
				if tp.LeaderEpoch <= cur {
					rp.LeaderEpoch, rp.EndOffset = cur, p.log.EndOffset()
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (b *Broker) handleDeleteRecords(_ context.Context, req *kmsg.DeleteRecordsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteRecordsResponse)
	img := b.meta.Image()
	for _, t := range req.Topics {
		rt := kmsg.NewDeleteRecordsResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewDeleteRecordsResponseTopicPartition()
			rp.Partition, rp.LowWatermark = tp.Partition, -1
			p, code := b.lookupPartition(img, t.Topic, tp.Partition, -1)
			rp.ErrorCode = code
			if p != nil {
				before := tp.Offset
				if before == -1 {
					before = p.log.HighWatermark()
				}
				low, err := p.log.DeleteRecords(before)
				switch {
				case errors.Is(err, commitlog.ErrOffsetOutOfRange):
					rp.ErrorCode = kerr.OffsetOutOfRange.Code
				case err != nil:
					b.log.Error("delete records", "topic", t.Topic, "partition", tp.Partition, "err", err)
					rp.ErrorCode = kerr.KafkaStorageError.Code
				default:
					rp.LowWatermark = low
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
