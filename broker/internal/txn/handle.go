package txn

import (
	"regexp"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// apiVersions are the versions served: Kafka 4.x's. EndTxn v5 is the
// transaction version 2 form (KIP-890 part 2), which clients send only
// when the broker advertises that version.
var apiVersions = map[int16][2]int16{
	kmsg.AddPartitionsToTxn.Int16():   {0, 5},
	kmsg.AddOffsetsToTxn.Int16():      {0, 4},
	kmsg.EndTxn.Int16():               {0, 5},
	kmsg.DescribeTransactions.Int16(): {0, 0},
	kmsg.ListTransactions.Int16():     {0, 2},
}

// SupportedVersions reports the versions of key to advertise.
func SupportedVersions(key int16) (minVersion, maxVersion int16) {
	v := apiVersions[key]
	return v[0], v[1]
}

// Handle serves a request of a key apiVersions lists (SupportedVersions
// reports them), and returns its response at the request's version; nil
// for another key.
func (c *Coordinator) Handle(req kmsg.Request) kmsg.Response {
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.AddPartitionsToTxnRequest:
		resp = c.handleAddPartitions(r)
	case *kmsg.AddOffsetsToTxnRequest:
		resp = c.handleAddOffsets(r)
	case *kmsg.EndTxnRequest:
		resp = c.handleEndTxn(r)
	case *kmsg.DescribeTransactionsRequest:
		resp = c.handleDescribe(r)
	case *kmsg.ListTransactionsRequest:
		resp = c.handleList(r)
	default:
		return nil
	}
	resp.SetVersion(req.GetVersion())
	return resp
}

// HandleInitProducerID serves a transactional InitProducerId.
func (c *Coordinator) HandleInitProducerID(req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	pid, epoch := int64(-1), int16(-1)
	if req.Version >= 3 {
		pid, epoch = req.ProducerID, req.ProducerEpoch
	}
	id, ep, err := c.InitProducerID(*req.TransactionalID, time.Duration(req.TransactionTimeoutMillis)*time.Millisecond, pid, epoch)
	if err != nil {
		resp.ErrorCode = compat(err, req.Version, 4).Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, ep
	return resp
}

// compat answers PRODUCER_FENCED as INVALID_PRODUCER_EPOCH to requests
// older than the version that introduced it (KIP-588), as Kafka does.
func compat(err *kerr.Error, version, fencedFrom int16) *kerr.Error {
	if err == kerr.ProducerFenced && version < fencedFrom {
		return kerr.InvalidProducerEpoch
	}
	return err
}

func (c *Coordinator) handleAddPartitions(req *kmsg.AddPartitionsToTxnRequest) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version < 4 {
		var parts []Partition
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				parts = append(parts, Partition{t.Topic, p})
			}
		}
		all, each := c.AddPartitions(req.TransactionalID, req.ProducerID, req.ProducerEpoch, parts)
		if all != nil {
			all = compat(all, req.Version, 2)
		}
		for _, t := range req.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTopicPartition()
				rp.Partition = p
				if err := cmpOr(all, each[Partition{t.Topic, p}]); err != nil {
					rp.ErrorCode = err.Code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	}
	// v4+ is the brokers' form: batched, and verify-only for KIP-890's
	// check of a produce.
	for _, tx := range req.Transactions {
		rtx := kmsg.NewAddPartitionsToTxnResponseTransaction()
		rtx.TransactionalID = tx.TransactionalID
		var all *kerr.Error
		var each map[Partition]*kerr.Error
		if !tx.VerifyOnly {
			var parts []Partition
			for _, t := range tx.Topics {
				for _, p := range t.Partitions {
					parts = append(parts, Partition{t.Topic, p})
				}
			}
			all, each = c.AddPartitions(tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, parts)
		}
		for _, t := range tx.Topics {
			rt := kmsg.NewAddPartitionsToTxnResponseTransactionTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewAddPartitionsToTxnResponseTransactionTopicPartition()
				rp.Partition = p
				err := cmpOr(all, each[Partition{t.Topic, p}])
				if tx.VerifyOnly {
					err = c.Verify(tx.TransactionalID, tx.ProducerID, tx.ProducerEpoch, &Partition{t.Topic, p}, "", false, nil)
				}
				if err != nil {
					rp.ErrorCode = err.Code
				}
				rt.Partitions = append(rt.Partitions, rp)
			}
			rtx.Topics = append(rtx.Topics, rt)
		}
		resp.Transactions = append(resp.Transactions, rtx)
	}
	return resp
}

// cmpOr returns the first non-nil error.
func cmpOr(errs ...*kerr.Error) *kerr.Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (c *Coordinator) handleAddOffsets(req *kmsg.AddOffsetsToTxnRequest) *kmsg.AddOffsetsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	if err := c.AddGroup(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group); err != nil {
		resp.ErrorCode = compat(err, req.Version, 2).Code
	}
	return resp
}

func (c *Coordinator) handleEndTxn(req *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	pid, epoch, err := c.EndTxn(req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit, req.Version >= 5)
	resp.ProducerID, resp.ProducerEpoch = pid, epoch
	if err != nil {
		resp.ErrorCode = compat(err, req.Version, 2).Code
	}
	return resp
}

func (c *Coordinator) handleDescribe(req *kmsg.DescribeTransactionsRequest) *kmsg.DescribeTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		rs := kmsg.NewDescribeTransactionsResponseTransactionState()
		rs.TransactionalID, rs.ProducerID, rs.ProducerEpoch, rs.StartTimestamp = id, -1, -1, -1
		in, ok := c.Describe(id)
		if !ok {
			rs.ErrorCode = kerr.TransactionalIDNotFound.Code
			resp.TransactionStates = append(resp.TransactionStates, rs)
			continue
		}
		rs.State, rs.TimeoutMillis = in.State.String(), int32(in.Timeout.Milliseconds())
		rs.ProducerID, rs.ProducerEpoch = in.ProducerID, in.Epoch
		if !in.Started.IsZero() {
			rs.StartTimestamp = in.Started.UnixMilli()
		}
		for _, p := range in.Partitions {
			if n := len(rs.Topics); n == 0 || rs.Topics[n-1].Topic != p.Topic {
				rt := kmsg.NewDescribeTransactionsResponseTransactionStateTopic()
				rt.Topic = p.Topic
				rs.Topics = append(rs.Topics, rt)
			}
			rt := &rs.Topics[len(rs.Topics)-1]
			rt.Partitions = append(rt.Partitions, p.Partition)
		}
		resp.TransactionStates = append(resp.TransactionStates, rs)
	}
	return resp
}

func (c *Coordinator) handleList(req *kmsg.ListTransactionsRequest) *kmsg.ListTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	var states []State
	for _, name := range req.StateFilters {
		if s, ok := ParseState(name); ok {
			states = append(states, s)
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, name)
		}
	}
	var pattern *regexp.Regexp
	if req.Version >= 2 && req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		re, err := regexp.Compile(*req.TransactionalIDPattern)
		if err != nil {
			resp.ErrorCode = kerr.InvalidRegularExpression.Code
			return resp
		}
		pattern = re
	}
	now := time.Now()
	for _, in := range c.List() {
		switch {
		case len(req.StateFilters) > 0 && !slices.Contains(states, in.State),
			len(req.ProducerIDFilters) > 0 && !slices.Contains(req.ProducerIDFilters, in.ProducerID),
			req.Version >= 1 && req.DurationFilterMillis >= 0 && (in.Started.IsZero() || now.Sub(in.Started).Milliseconds() < req.DurationFilterMillis),
			pattern != nil && !pattern.MatchString(in.TransactionalID):
			continue
		}
		rs := kmsg.NewListTransactionsResponseTransactionState()
		rs.TransactionalID, rs.ProducerID, rs.TransactionState = in.TransactionalID, in.ProducerID, in.State.String()
		resp.TransactionStates = append(resp.TransactionStates, rs)
	}
	return resp
}
