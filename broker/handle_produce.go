package broker

import (
	"context"
	"errors"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// appendError maps a log's append error to its Kafka error; a
// transaction coordinator's refusal is its own.
func appendError(err error) *kerr.Error {
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		return ke
	case errors.Is(err, commitlog.ErrCorruptMessage):
		return kerr.CorruptMessage
	case errors.Is(err, commitlog.ErrInvalidRecord):
		return kerr.InvalidRecord
	case errors.Is(err, commitlog.ErrInvalidTimestamp):
		return kerr.InvalidTimestamp
	case errors.Is(err, commitlog.ErrInvalidTxnState):
		return kerr.InvalidTxnState
	case errors.Is(err, commitlog.ErrUnsupportedMagic):
		return kerr.UnsupportedForMessageFormat
	case errors.Is(err, commitlog.ErrRecordTooLarge):
		return kerr.MessageTooLarge
	case errors.Is(err, commitlog.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber
	case errors.Is(err, commitlog.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch
	case errors.Is(err, commitlog.ErrClosed):
		return kerr.NotLeaderForPartition
	}
	return kerr.KafkaStorageError
}

// handleProduce appends in request order on the connection's goroutine,
// so pipelined batches of an idempotent producer keep their sequence, and
// for acks=all waits for durability in the background, so that the next
// request's append joins the same group commit. An acks=1 request is
// answered once its batches are in the log, as Kafka's leader answers it
// once they are in its log: it never waits for an fsync, and its records
// become visible to consumers with the next group commit.
func (b *Broker) handleProduce(c *conn, hdr requestHeader, req *kmsg.ProduceRequest) *reply {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	type pending struct {
		log *commitlog.Log
		end int64
		rp  *kmsg.ProduceResponseTopicPartition
	}
	var waits []pending
	var reqErr *kerr.Error
	switch {
	case req.Acks != 0 && req.Acks != 1 && req.Acks != -1:
		reqErr = kerr.InvalidRequiredAcks
	case req.TransactionID == nil && hasTransactionalBatch(req):
		// Kafka answers a request carrying transactional batches without
		// a transactional id with TRANSACTIONAL_ID_AUTHORIZATION_FAILED
		// for every partition (KafkaApis.handleProduceRequest).
		reqErr = kerr.TransactionalIDAuthorizationFailed
	}
	img := b.meta.Image()
	now := time.Now()
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		name, topicErr := b.produceTopic(c.ctx, &img, req.Version, t)
		if topicErr == nil {
			topicErr = reqErr
		}
		for i, p := range t.Partitions {
			rp := &rt.Partitions[i]
			*rp = kmsg.NewProduceResponseTopicPartition()
			rp.Partition, rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = p.Partition, -1, -1, -1
			if topicErr != nil {
				rp.ErrorCode = topicErr.Code
				continue
			}
			part, perr := b.parts.lookup(img, name, p.Partition)
			if perr != nil {
				rp.ErrorCode = perr.Code
				continue
			}
			// Produce v3+ carries one batch per partition; Kafka refuses
			// anything else with INVALID_RECORD before appending
			// (ProduceRequest.validateRecords).
			err := commitlog.CheckSingleBatch(p.Records)
			var res commitlog.AppendResult
			switch {
			case err != nil:
			case req.TransactionID != nil && commitlog.Transactional(p.Records):
				res, err = b.appendTransactional(req.Version, *req.TransactionID, part, p.Records, now)
			default:
				res, err = part.log.Append(p.Records, now)
			}
			if err != nil {
				setAppendError(rp, err)
				if !clientError(err) {
					c.log.Debug("produce", "topic", name, "partition", p.Partition, "err", err)
				}
				continue
			}
			rp.BaseOffset, rp.LogAppendTime, rp.LogStartOffset = res.BaseOffset, res.LogAppendTime, res.LogStartOffset
			if !res.Duplicate {
				part.counters.recordsIn.Add(float64(res.LastOffset - res.BaseOffset + 1))
				part.counters.bytesIn.Add(float64(len(p.Records)))
			}
			waits = append(waits, pending{part.log, res.LastOffset + 1, rp})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if req.Acks == 0 {
		return nil
	}
	if len(waits) == 0 || b.cfg.sync == SyncNone || req.Acks == 1 {
		return &reply{hdr: hdr, resp: resp, done: closedDone}
	}
	return c.async(hdr, func(ctx context.Context) kmsg.Response {
		if req.TimeoutMillis > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMillis)*time.Millisecond)
			defer cancel()
		}
		for _, w := range waits {
			if err := w.log.WaitDurable(ctx, w.end); err != nil {
				code := kerr.KafkaStorageError
				if ctx.Err() != nil {
					code = kerr.RequestTimedOut
				}
				w.rp.ErrorCode, w.rp.ErrorMessage = code.Code, kmsg.StringPtr(err.Error())
			}
		}
		return resp
	})
}

// hasTransactionalBatch reports whether any partition's first batch is
// transactional, which is what Kafka checks to demand a transactional id.
func hasTransactionalBatch(req *kmsg.ProduceRequest) bool {
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if commitlog.Transactional(p.Records) {
				return true
			}
		}
	}
	return false
}

// setAppendError answers a partition with the error of its append: the
// Kafka error, its message and, for a batch refused because of some of its
// records, which ones (the RecordErrors of Produce v8+, KIP-467).
func setAppendError(rp *kmsg.ProduceResponseTopicPartition, err error) {
	rp.ErrorCode, rp.ErrorMessage = appendError(err).Code, kmsg.StringPtr(err.Error())
	var re *commitlog.RecordError
	if !errors.As(err, &re) {
		return
	}
	for _, r := range re.Records {
		e := kmsg.NewProduceResponseTopicPartitionErrorRecord()
		e.RelativeOffset, e.ErrorMessage = r.Index, kmsg.StringPtr(r.Message)
		rp.ErrorRecords = append(rp.ErrorRecords, e)
	}
}

// clientError reports an append error caused by what the client sent,
// which is answered but not worth a log line.
func clientError(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return true
	}
	for _, e := range []error{commitlog.ErrCorruptMessage, commitlog.ErrOutOfOrderSequence, commitlog.ErrInvalidRecord, commitlog.ErrInvalidTimestamp, commitlog.ErrInvalidTxnState, commitlog.ErrInvalidProducerEpoch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// produceTopic resolves a produce request's topic, creating it if it is
// unknown and auto-creation is on. It refreshes *img after a creation.
func (b *Broker) produceTopic(ctx context.Context, img **metadata.Image, version int16, t kmsg.ProduceRequestTopic) (string, *kerr.Error) {
	if version >= 13 {
		mt, ok := (*img).TopicsByID[t.TopicID]
		if !ok {
			return "", kerr.UnknownTopicID
		}
		return mt.Name, nil
	}
	if _, ok := (*img).Topics[t.Topic]; ok {
		return t.Topic, nil
	}
	if err := validTopicName(t.Topic); err != nil {
		return "", kerr.InvalidTopicException
	}
	if !b.cfg.autoCreateTopics {
		return "", kerr.UnknownTopicOrPartition
	}
	if err := b.createTopic(ctx, metadata.TopicSpec{Name: t.Topic, Partitions: -1, ReplicationFactor: -1}, false); err != nil {
		var ce *configError
		if !errors.As(err, &ce) || ce.code != kerr.TopicAlreadyExists {
			return "", kerr.UnknownTopicOrPartition
		}
	}
	*img = b.meta.Image()
	return t.Topic, nil
}
