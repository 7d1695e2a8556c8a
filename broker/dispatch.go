package broker

import (
	"context"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/riffle-stream/riffle/broker/internal/txn"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// api is how the broker serves one request key: the versions it
// advertises and the handler.
type api struct {
	min, max int16
	serve    func(b *Broker, c *conn, hdr requestHeader, req kmsg.Request) *reply
}

// inline serves a request on the connection's goroutine: later requests
// of the connection see its effects.
func inline[R kmsg.Request](fn func(*Broker, context.Context, R) kmsg.Response) func(*Broker, *conn, requestHeader, kmsg.Request) *reply {
	return func(b *Broker, c *conn, hdr requestHeader, req kmsg.Request) *reply {
		return &reply{hdr: hdr, resp: fn(b, c.ctx, req.(R)), done: closedDone}
	}
}

// apis lists the requests the broker itself serves, at the versions
// Kafka 4.x brokers serve them; extensions (the group coordinator) add
// theirs. It is filled by init because ApiVersions reads it.
var apis map[int16]api

func init() {
	apis = map[int16]api{
		kmsg.Produce.Int16(): {3, 13, func(b *Broker, c *conn, hdr requestHeader, req kmsg.Request) *reply {
			return b.handleProduce(c, hdr, req.(*kmsg.ProduceRequest))
		}},
		kmsg.Fetch.Int16(): {4, 16, func(b *Broker, c *conn, hdr requestHeader, req kmsg.Request) *reply {
			return b.serveFetch(c, hdr, req.(*kmsg.FetchRequest))
		}},
		kmsg.ListOffsets.Int16():             {1, 10, inline((*Broker).handleListOffsets)},
		kmsg.Metadata.Int16():                {0, 13, inline((*Broker).handleMetadata)},
		kmsg.FindCoordinator.Int16():         {0, 6, inline((*Broker).handleFindCoordinator)},
		kmsg.ApiVersions.Int16():             {0, 4, inline((*Broker).handleApiVersions)},
		kmsg.CreateTopics.Int16():            {2, 7, inline((*Broker).handleCreateTopics)},
		kmsg.DeleteTopics.Int16():            {1, 6, inline((*Broker).handleDeleteTopics)},
		kmsg.DeleteRecords.Int16():           {0, 2, inline((*Broker).handleDeleteRecords)},
		kmsg.InitProducerID.Int16():          {0, 5, inline((*Broker).handleInitProducerID)},
		kmsg.OffsetForLeaderEpoch.Int16():    {2, 4, inline((*Broker).handleOffsetForLeaderEpoch)},
		kmsg.DescribeConfigs.Int16():         {1, 4, inline((*Broker).handleDescribeConfigs)},
		kmsg.AlterConfigs.Int16():            {0, 2, inline((*Broker).handleAlterConfigs)},
		kmsg.CreatePartitions.Int16():        {0, 3, inline((*Broker).handleCreatePartitions)},
		kmsg.IncrementalAlterConfigs.Int16(): {0, 1, inline((*Broker).handleIncrementalAlterConfigs)},
		kmsg.DescribeCluster.Int16():         {0, 2, inline((*Broker).handleDescribeCluster)},
		kmsg.DescribeQuorum.Int16():          {0, 2, inline((*Broker).handleDescribeQuorum)},
		kmsg.DescribeLogDirs.Int16():         {1, 5, inline((*Broker).handleDescribeLogDirs)},
		kmsg.TxnOffsetCommit.Int16():         {0, 5, inline((*Broker).handleTxnOffsetCommit)},
		kmsg.DescribeProducers.Int16():       {0, 0, inline((*Broker).handleDescribeProducers)},
	}
	for _, key := range []kmsg.Key{kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn, kmsg.EndTxn, kmsg.DescribeTransactions, kmsg.ListTransactions} {
		lo, hi := txn.SupportedVersions(key.Int16())
		apis[key.Int16()] = api{lo, hi, serveTxn}
	}
}

// versions reports the versions of key the broker serves.
func (b *Broker) versions(key int16) (lo, hi int16, ok bool) {
	if a, ok := apis[key]; ok {
		return a.min, a.max, true
	}
	return b.ext.versions(key)
}

func (b *Broker) dispatch(c *conn, hdr requestHeader, req kmsg.Request) *reply {
	b.capWaits(req)
	if a, ok := apis[hdr.key]; ok {
		return a.serve(b, c, hdr, req)
	}
	return b.ext.serve(c, hdr, req)
}

// capWaits cuts the waits a request asks for to MaxWait, so that no
// request holds its connection's resources for days.
func (b *Broker) capWaits(req kmsg.Request) {
	limit := int32(b.cfg.maxWait / time.Millisecond)
	switch r := req.(type) {
	case *kmsg.FetchRequest:
		r.MaxWaitMillis = min(r.MaxWaitMillis, limit)
	case *kmsg.ShareFetchRequest:
		r.MaxWaitMillis = min(r.MaxWaitMillis, limit)
	case *kmsg.ProduceRequest:
		r.TimeoutMillis = min(r.TimeoutMillis, limit)
	}
}

// metadataChanged is the metadata store's OnChange hook: the partition
// logs follow the new image, then the extensions learn of it.
func (b *Broker) metadataChanged(prev, next *metadata.Image) {
	if err := b.parts.reconcile(prev, next); err != nil {
		b.log.Error("apply metadata to partition logs", "err", err)
	}
	b.ext.topicsChanged(next)
}
