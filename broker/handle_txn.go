package broker

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/riffle-stream/riffle/broker/internal/group"
	"github.com/riffle-stream/riffle/broker/internal/txn"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// transactions wires the transaction coordinator into the broker: it
// keeps its state under <data-dir>/transactions/, writes the markers to
// the partition logs and ends transactional offsets in the group
// coordinator.
type transactions struct {
	c *txn.Coordinator
}

// open starts the coordinator after the partition logs and the group
// coordinator, which completing a prepared transaction writes to.
func (t *transactions) open(b *Broker, groups *group.Coordinator) error {
	c, err := txn.Open(txn.Config{
		Dir:           filepath.Join(b.cfg.dataDir, "transactions"),
		MaxTimeout:    b.cfg.txnMaxTimeout,
		AbortInterval: b.cfg.txnAbortInterval,
		ProducerIDs:   b.pids.next,
		PartitionCount: func(topic string) int32 {
			if t, ok := b.meta.Image().Topics[topic]; ok {
				return int32(len(t.Partitions))
			}
			return 0
		},
		Markers: b.writeMarkers,
		Groups:  groups.EndTxn,
		Logger:  b.log.With("component", "transactions"),
	})
	if err != nil {
		return err
	}
	t.c = c
	return nil
}

func (t *transactions) close() error {
	if t.c == nil {
		return nil
	}
	return t.c.Close()
}

// writeMarkers writes the commit or abort marker of producer pid to each
// partition and waits until they are durable. Partitions no longer in the
// metadata are skipped, as is one whose log has seen a newer epoch of the
// producer (a later marker fenced this one); a partition that is offline
// fails the call, and the coordinator tries again later.
func (b *Broker) writeMarkers(ctx context.Context, pid int64, epoch int16, commit bool, parts []txn.Partition) error {
	type written struct {
		log  *commitlog.Log
		next int64
	}
	var done []written
	var errs []error
	img, now := b.meta.Image(), time.Now()
	for _, p := range parts {
		part, kerrv := b.parts.lookup(img, p.Topic, p.Partition)
		if kerrv == kerr.UnknownTopicOrPartition {
			continue
		}
		if kerrv != nil {
			errs = append(errs, fmt.Errorf("marker for %s[%d]: %w", p.Topic, p.Partition, kerrv))
			continue
		}
		off, err := part.log.AppendMarker(pid, epoch, commit, 0, now)
		switch {
		case errors.Is(err, commitlog.ErrInvalidProducerEpoch):
			b.log.Warn("skipping a transaction marker older than the producer's epoch in the log", "topic", p.Topic, "partition", p.Partition, "producer_id", pid, "err", err)
		case errors.Is(err, commitlog.ErrClosed):
			// The partition is being deleted.
		case err != nil:
			errs = append(errs, fmt.Errorf("marker for %s[%d]: %w", p.Topic, p.Partition, err))
		default:
			done = append(done, written{part.log, off + 1})
		}
	}
	for _, w := range done {
		errs = append(errs, w.log.WaitDurable(ctx, w.next))
	}
	return errors.Join(errs...)
}

// handleTxn serves the requests the transaction coordinator answers alone.
func (b *Broker) handleTxn(_ context.Context, req kmsg.Request) kmsg.Response {
	return b.ext.txn.c.Handle(req)
}

// serveTxn is the api serve function of handleTxn.
var serveTxn = inline((*Broker).handleTxn)

// handleTxnOffsetCommit stores the offsets of a transaction as pending in
// their group once the coordinator has checked that the group is in the
// producer's ongoing transaction, or, from v5 on (transaction version 2),
// added it.
func (b *Broker) handleTxnOffsetCommit(_ context.Context, req *kmsg.TxnOffsetCommitRequest) kmsg.Response {
	var resp *kmsg.TxnOffsetCommitResponse
	err := b.ext.txn.c.Verify(req.TransactionalID, req.ProducerID, req.ProducerEpoch, nil, req.Group, req.Version >= 5, func() {
		resp = b.ext.groups.TxnOffsetCommit(req)
	})
	if err == nil {
		return resp
	}
	if err == kerr.InvalidProducerEpoch && req.Version >= 3 {
		err = kerr.ProducerFenced
	}
	resp = req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, t := range req.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, err.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// appendTransactional appends a transactional producer's records to part
// once the coordinator has verified that the partition is in the
// producer's ongoing transaction (KIP-890 part 1) or, for a Produce v12+
// under transaction version 2, added it (part 2), with the coordinator
// holding off the end of the transaction until the append is done. A
// failed verification is its *kerr.Error.
func (b *Broker) appendTransactional(version int16, txnID string, part *partition, records []byte, now time.Time) (commitlog.AppendResult, error) {
	pid, epoch := commitlog.BatchProducer(records)
	var res commitlog.AppendResult
	var err error
	add := version >= 12 && b.cfg.txnVersion >= 2
	if kerrv := b.ext.txn.c.Verify(txnID, pid, epoch, &txn.Partition{Topic: part.topic, Partition: part.index}, "", add, func() {
		res, err = part.log.AppendTransactional(records, now)
	}); kerrv != nil {
		return res, kerrv
	}
	return res, err
}

// handleDescribeProducers lists the producers each partition's log
// remembers, with their open transactions.
func (b *Broker) handleDescribeProducers(_ context.Context, req *kmsg.DescribeProducersRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeProducersResponse)
	img := b.meta.Image()
	for _, t := range req.Topics {
		rt := kmsg.NewDescribeProducersResponseTopic()
		rt.Topic = t.Topic
		for _, idx := range t.Partitions {
			rp := kmsg.NewDescribeProducersResponseTopicPartition()
			rp.Partition = idx
			part, kerrv := b.parts.lookup(img, t.Topic, idx)
			if kerrv == nil && part.offline() {
				kerrv = kerr.KafkaStorageError
			}
			if kerrv != nil {
				rp.ErrorCode = kerrv.Code
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			for _, p := range part.log.Producers() {
				ap := kmsg.NewDescribeProducersResponseTopicPartitionActiveProducer()
				ap.ProducerID, ap.ProducerEpoch, ap.LastSequence = p.ProducerID, int32(p.Epoch), p.LastSequence
				ap.LastTimestamp, ap.CoordinatorEpoch, ap.CurrentTxnStartOffset = p.LastTimestamp, -1, p.TxnStartOffset
				if p.TxnStartOffset >= 0 {
					ap.CoordinatorEpoch = 0
				}
				rp.ActiveProducers = append(rp.ActiveProducers, ap)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
