package console

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metadataTopic is the KRaft metadata log DescribeQuorum asks about.
const metadataTopic = "__cluster_metadata"

type brokerInfo struct {
	NodeID int32   `json:"nodeId"`
	Host   string  `json:"host"`
	Port   int32   `json:"port"`
	Rack   *string `json:"rack,omitempty"`
}

type voterInfo struct {
	ReplicaID             int32 `json:"replicaId"`
	LogEndOffset          int64 `json:"logEndOffset"`
	LastFetchTimestamp    int64 `json:"lastFetchTimestamp"`
	LastCaughtUpTimestamp int64 `json:"lastCaughtUpTimestamp"`
}

type quorumInfo struct {
	LeaderID      int32       `json:"leaderId"`
	LeaderEpoch   int32       `json:"leaderEpoch"`
	HighWatermark int64       `json:"highWatermark"`
	Voters        []voterInfo `json:"voters"`
	Observers     []voterInfo `json:"observers"`
}

// topicSummary is a topic as the overview and the topic list show it.
type topicSummary struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Internal   bool   `json:"internal"`
	Partitions int    `json:"partitions"`
	Replicas   int    `json:"replicas"`
	// Records counts the offsets between the start and the end of every
	// partition (compaction and aborted data make it an upper bound).
	Records int64 `json:"records"`
	// EndOffsets sums the partitions' end offsets; the browser takes
	// throughput from how it moves between polls.
	EndOffsets int64  `json:"endOffsets"`
	Size       *int64 `json:"size,omitempty"`
	Error      string `json:"error,omitempty"`
}

type overviewInfo struct {
	ClusterID  string         `json:"clusterId"`
	Controller int32          `json:"controller"`
	Brokers    []brokerInfo   `json:"brokers"`
	Quorum     *quorumInfo    `json:"quorum,omitempty"`
	QuorumErr  string         `json:"quorumError,omitempty"`
	Topics     []topicSummary `json:"topics"`
	Time       int64          `json:"time"`
}

func (c *console) overview(r *http.Request) (any, error) {
	ctx := r.Context()
	md, err := c.adm.Metadata(ctx)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	out := overviewInfo{ClusterID: md.Cluster, Controller: md.Controller, Brokers: []brokerInfo{}, Time: nowMillis()}
	for _, b := range md.Brokers {
		out.Brokers = append(out.Brokers, brokerInfo{b.NodeID, b.Host, b.Port, b.Rack})
	}
	if q, err := c.quorum(ctx); err != nil {
		out.QuorumErr = err.Error()
	} else {
		out.Quorum = q
	}
	if out.Topics, err = c.summarize(ctx, md.Topics); err != nil {
		return nil, err
	}
	return out, nil
}

type topicsInfo struct {
	Topics []topicSummary `json:"topics"`
	Time   int64          `json:"time"`
}

func (c *console) topics(r *http.Request) (any, error) {
	md, err := c.adm.Metadata(r.Context())
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	ts, err := c.summarize(r.Context(), md.Topics)
	if err != nil {
		return nil, err
	}
	return topicsInfo{ts, nowMillis()}, nil
}

// quorum describes the metadata quorum with DescribeQuorum.
func (c *console) quorum(ctx context.Context) (*quorumInfo, error) {
	req := kmsg.NewPtrDescribeQuorumRequest()
	t := kmsg.NewDescribeQuorumRequestTopic()
	t.Topic = metadataTopic
	p := kmsg.NewDescribeQuorumRequestTopicPartition()
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, c.cl)
	if err != nil {
		return nil, fmt.Errorf("describe quorum: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("describe quorum: %w", err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return nil, fmt.Errorf("describe quorum: %w", err)
			}
			q := &quorumInfo{LeaderID: rp.LeaderID, LeaderEpoch: rp.LeaderEpoch, HighWatermark: rp.HighWatermark,
				Voters: voters(rp.CurrentVoters), Observers: voters(rp.Observers)}
			return q, nil
		}
	}
	return nil, fmt.Errorf("describe quorum: no answer for %s", metadataTopic)
}

func voters(rs []kmsg.DescribeQuorumResponseTopicPartitionReplicaState) []voterInfo {
	out := make([]voterInfo, 0, len(rs))
	for _, r := range rs {
		out = append(out, voterInfo{r.ReplicaID, r.LogEndOffset, r.LastFetchTimestamp, r.LastCaughtUpTimestamp})
	}
	return out
}

// partitionOffsets are the start and end offsets of a set of topics, and
// their sizes when the caller looked them up with sizes.
type partitionOffsets struct {
	start, end kadm.ListedOffsets
	sizes      map[string]map[int32]int64 // nil: sizes unknown
}

func (c *console) offsets(ctx context.Context, topics []string) (partitionOffsets, error) {
	var po partitionOffsets
	if len(topics) == 0 {
		return po, nil
	}
	var err error
	if po.start, err = c.adm.ListStartOffsets(ctx, topics...); err != nil {
		return po, fmt.Errorf("list start offsets: %w", err)
	}
	if po.end, err = c.adm.ListEndOffsets(ctx, topics...); err != nil {
		return po, fmt.Errorf("list end offsets: %w", err)
	}
	return po, nil
}

// sizes asks DescribeLogDirs for the sizes of the topics' partitions, or
// returns nil when the cluster does not serve it (Riffle's broker does
// not) or it fails: the pages then leave sizes out.
func (c *console) sizes(ctx context.Context, topics kadm.TopicDetails) map[string]map[int32]int64 {
	set := topics.TopicsSet()
	if len(set) == 0 {
		return nil
	}
	all, err := c.adm.DescribeAllLogDirs(ctx, set)
	if err != nil {
		return nil
	}
	out := map[string]map[int32]int64{}
	ok := false
	all.Each(func(d kadm.DescribedLogDir) {
		if d.Err != nil {
			return
		}
		for t, ps := range d.Topics {
			for p, dp := range ps {
				if out[t] == nil {
					out[t] = map[int32]int64{}
				}
				// One replica's size: the first seen, as replicas of
				// a partition hold the same log.
				if _, seen := out[t][p]; !seen {
					out[t][p] = dp.Size
					ok = true
				}
			}
		}
	})
	if !ok {
		return nil
	}
	return out
}

// size is a partition's size, or nil when unknown.
func (po partitionOffsets) size(topic string, p int32) *int64 {
	s, ok := po.sizes[topic][p]
	if !ok {
		return nil
	}
	return &s
}

func (c *console) summarize(ctx context.Context, details kadm.TopicDetails) ([]topicSummary, error) {
	names := details.Names()
	po, err := c.offsets(ctx, names)
	if err != nil {
		return nil, err
	}
	po.sizes = c.sizes(ctx, details)
	out := make([]topicSummary, 0, len(names))
	for _, name := range names {
		d := details[name]
		ts := topicSummary{Name: name, ID: d.ID.String(), Internal: d.IsInternal, Partitions: len(d.Partitions)}
		if d.Err != nil {
			ts.Error = d.Err.Error()
		}
		for p, pd := range d.Partitions {
			ts.Replicas = max(ts.Replicas, len(pd.Replicas))
			start, sok := po.start.Lookup(name, p)
			end, eok := po.end.Lookup(name, p)
			if sok && eok && start.Err == nil && end.Err == nil {
				ts.Records += end.Offset - start.Offset
				ts.EndOffsets += end.Offset
			}
			if s := po.size(name, p); s != nil {
				ts.Size = addSize(ts.Size, *s)
			}
		}
		out = append(out, ts)
	}
	slices.SortFunc(out, func(a, b topicSummary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func addSize(total *int64, n int64) *int64 {
	if total == nil {
		return &n
	}
	s := *total + n
	return &s
}
