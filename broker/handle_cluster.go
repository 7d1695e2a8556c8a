package broker

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (b *Broker) apiVersions() *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	for key := range int16(kmsg.MaxKey + 1) {
		if lo, hi, ok := b.versions(key); ok {
			k := kmsg.NewApiVersionsResponseApiKey()
			k.ApiKey, k.MinVersion, k.MaxVersion = key, lo, hi
			resp.ApiKeys = append(resp.ApiKeys, k)
		}
	}
	// transaction.version tells clients which transaction flow to use
	// (TransactionVersion). It never changes while the broker runs, so
	// the epoch of the finalized features is fixed.
	sf := kmsg.NewApiVersionsResponseSupportedFeature()
	sf.Name, sf.MinVersion, sf.MaxVersion = transactionVersionFeature, 0, 2
	ff := kmsg.NewApiVersionsResponseFinalizedFeature()
	ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = transactionVersionFeature, b.cfg.txnVersion, b.cfg.txnVersion
	resp.SupportedFeatures = append(resp.SupportedFeatures, sf)
	resp.FinalizedFeaturesEpoch = 1
	resp.FinalizedFeatures = append(resp.FinalizedFeatures, ff)
	return resp
}

// transactionVersionFeature is the feature of the transaction protocol.
const transactionVersionFeature = "transaction.version"

func (b *Broker) handleApiVersions(_ context.Context, req *kmsg.ApiVersionsRequest) kmsg.Response {
	resp := b.apiVersions()
	resp.Version = req.Version
	return resp
}

func (b *Broker) handleDescribeCluster(_ context.Context, req *kmsg.DescribeClusterRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	img := b.meta.Image()
	resp.ClusterID, resp.ControllerID = img.ClusterID, b.meta.Quorum().LeaderID
	resp.EndpointType = req.EndpointType
	if req.EndpointType > 1 {
		resp.ErrorCode, resp.ErrorMessage = kerr.UnsupportedEndpointType.Code, kmsg.StringPtr("only broker endpoints are served")
		return resp
	}
	for _, br := range img.Brokers {
		rb := kmsg.NewDescribeClusterResponseBroker()
		rb.NodeID, rb.Host, rb.Port = br.ID, br.Host, br.Port
		if br.Rack != "" {
			rb.Rack = kmsg.StringPtr(br.Rack)
		}
		resp.Brokers = append(resp.Brokers, rb)
	}
	return resp
}

// metadataTopic is the name KRaft gives the metadata log in DescribeQuorum.
const metadataTopic = "__cluster_metadata"

func (b *Broker) handleDescribeQuorum(_ context.Context, req *kmsg.DescribeQuorumRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeQuorumResponse)
	q := b.meta.Quorum()
	for _, t := range req.Topics {
		rt := kmsg.NewDescribeQuorumResponseTopic()
		rt.Topic = t.Topic
		for _, tp := range t.Partitions {
			rp := kmsg.NewDescribeQuorumResponseTopicPartition()
			rp.Partition = tp.Partition
			if t.Topic != metadataTopic || tp.Partition != 0 {
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
				rt.Partitions = append(rt.Partitions, rp)
				continue
			}
			rp.LeaderID, rp.LeaderEpoch, rp.HighWatermark = q.LeaderID, int32(q.Term), q.HighWatermark
			for _, v := range q.Voters {
				rv := kmsg.NewDescribeQuorumResponseTopicPartitionReplicaState()
				rv.ReplicaID, rv.LogEndOffset = v.ID, v.LogEndOffset
				rp.CurrentVoters = append(rp.CurrentVoters, rv)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	for _, v := range q.Voters {
		br, ok := b.meta.Image().Brokers[v.ID]
		if !ok {
			continue
		}
		n := kmsg.NewDescribeQuorumResponseNode()
		n.NodeID = v.ID
		l := kmsg.NewDescribeQuorumResponseNodeListener()
		l.Name, l.Host, l.Port = "PLAINTEXT", br.Host, uint16(br.Port)
		n.Listeners = append(n.Listeners, l)
		resp.Nodes = append(resp.Nodes, n)
	}
	return resp
}

// Coordinator types of FindCoordinator (KIP-932 adds share).
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

// handleFindCoordinator names this broker as the coordinator of every
// group and every transactional id.
func (b *Broker) handleFindCoordinator(_ context.Context, req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key, c.NodeID, c.Host, c.Port = key, b.cfg.nodeID, b.host, b.port
		switch {
		case key == "" && req.CoordinatorType == coordinatorTransaction:
			c.ErrorCode, c.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr("empty transactional id")
		case key == "" && req.CoordinatorType == coordinatorGroup:
			c.ErrorCode, c.ErrorMessage = kerr.InvalidGroupID.Code, kmsg.StringPtr("empty group id")
		}
		if c.ErrorCode != 0 {
			c.NodeID, c.Host, c.Port = -1, "", -1
		}
		resp.Coordinators = append(resp.Coordinators, c)
	}
	if req.Version < 4 {
		c := resp.Coordinators[0]
		resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.ErrorMessage, c.NodeID, c.Host, c.Port
		resp.Coordinators = nil
	}
	return resp
}

// handleInitProducerID gives idempotent producers a fresh id at epoch 0,
// and hands transactional ones to the transaction coordinator. As in
// Kafka, a producer without a transactional id gets a new id even when it
// presents its current id and epoch (KIP-360's recovery from an unknown
// producer id): only the transaction coordinator bumps epochs.
func (b *Broker) handleInitProducerID(_ context.Context, req *kmsg.InitProducerIDRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		if *req.TransactionalID == "" {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return resp
		}
		return b.ext.txn.c.HandleInitProducerID(req)
	}
	id, err := b.pids.next()
	if err != nil {
		b.log.Error("allocate producer id", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return resp
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp
}
