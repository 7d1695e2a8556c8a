package broker

import (
	"context"
	"errors"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
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

// lookupPartition finds a partition and checks the client's leader epoch.
func (b *Broker) lookupPartition(topic string, partition, epoch int32) (*partition, int16) {
	p := b.parts.get(topic, partition)
	if p == nil {
		return nil, kerr.UnknownTopicOrPartition.Code
	}
	if code := checkLeaderEpoch(b.meta.Image(), topic, partition, epoch); code != 0 {
		return nil, code
	}
	return p, 0
}

func (b *Broker) handleListOffsets(_ context.Context, req *kmsg.ListOffsetsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewListOffsetsResponseTopicPartition()
			rp.Partition, rp.Timestamp, rp.Offset = tp.Partition, -1, -1
			p, code := b.lookupPartition(t.Topic, tp.Partition, tp.CurrentLeaderEpoch)
			rp.ErrorCode = code
			if p != nil {
				switch ts := tp.Timestamp; ts {
				case offsetLatest:
					rp.Offset = p.log.HighWatermark()
				case offsetEarliest, offsetEarliestLocal, offsetTiered:
					rp.Offset = p.log.StartOffset()
				case offsetMaxTimestamp:
					rp.Offset, rp.Timestamp = p.log.MaxTimestamp()
				default:
					if ts < 0 {
						rp.ErrorCode = kerr.InvalidRequest.Code
						break
					}
					if off, at, ok := p.log.OffsetForTimestamp(ts); ok {
						rp.Offset, rp.Timestamp = off, at
					}
				}
				rp.LeaderEpoch = 0
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
			p, code := b.lookupPartition(t.Topic, tp.Partition, tp.CurrentLeaderEpoch)
			rp.ErrorCode = code
			if p != nil {
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
	for _, t := range req.Topics {
		rt := kmsg.NewDeleteRecordsResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewDeleteRecordsResponseTopicPartition()
			rp.Partition, rp.LowWatermark = tp.Partition, -1
			p, code := b.lookupPartition(t.Topic, tp.Partition, -1)
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
