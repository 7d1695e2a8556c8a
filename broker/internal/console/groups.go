package console

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type groupSummary struct {
	Name         string `json:"name"`
	Type         string `json:"type"`
	State        string `json:"state"`
	ProtocolType string `json:"protocolType"`
}

// groups lists every group with ListGroups, whose answer (v5+) names each
// group's type: classic, consumer or share.
func (c *console) groups(r *http.Request) (any, error) {
	req := kmsg.NewPtrListGroupsRequest()
	resp, err := req.RequestWith(r.Context(), c.cl)
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	out := make([]groupSummary, 0, len(resp.Groups))
	for _, g := range resp.Groups {
		typ := g.GroupType
		if typ == "" {
			typ = "classic"
		}
		out = append(out, groupSummary{g.Group, typ, g.GroupState, g.ProtocolType})
	}
	slices.SortFunc(out, func(a, b groupSummary) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

type topicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

func assignment(s kadm.TopicsSet) []topicPartitions {
	out := []topicPartitions{}
	for _, tp := range s.Sorted() {
		out = append(out, topicPartitions{tp.Topic, tp.Partitions})
	}
	return out
}

type memberInfo struct {
	MemberID   string            `json:"memberId"`
	InstanceID *string           `json:"instanceId,omitempty"`
	ClientID   string            `json:"clientId"`
	ClientHost string            `json:"clientHost"`
	Epoch      *int32            `json:"epoch,omitempty"`
	Subscribed []string          `json:"subscribed,omitempty"`
	Assignment []topicPartitions `json:"assignment"`
}

// lagInfo is one partition's committed offset and lag. Committed and Lag
// are null without a committed offset, as Kafka's consumer-groups tool
// shows "-".
type lagInfo struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Member    string `json:"member,omitempty"`
	Committed *int64 `json:"committed"`
	End       int64  `json:"end"`
	Lag       *int64 `json:"lag"`
	Error     string `json:"error,omitempty"`
}

type groupInfo struct {
	Name string `json:"name"`
	// Type is classic (JoinGroup) or consumer (KIP-848).
	Type         string       `json:"type"`
	State        string       `json:"state"`
	ProtocolType string       `json:"protocolType,omitempty"`
	Protocol     string       `json:"protocol,omitempty"`
	Assignor     string       `json:"assignor,omitempty"`
	Epoch        *int32       `json:"epoch,omitempty"`
	Coordinator  int32        `json:"coordinator"`
	Members      []memberInfo `json:"members"`
	Lag          []lagInfo    `json:"lag"`
	TotalLag     int64        `json:"totalLag"`
	Time         int64        `json:"time"`
}

func (c *console) group(r *http.Request) (any, error) {
	ctx := r.Context()
	name := r.PathValue("group")
	g, err := c.describeGroup(ctx, name)
	if err != nil {
		return nil, err
	}
	commits, err := c.adm.FetchOffsets(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of %q: %w", name, err)
	}
	owner := map[string]map[int32]string{}
	topics := kadm.TopicsSet{}
	for _, m := range g.Members {
		for _, tp := range m.Assignment {
			topics.Add(tp.Topic, tp.Partitions...)
			for _, p := range tp.Partitions {
				if owner[tp.Topic] == nil {
					owner[tp.Topic] = map[int32]string{}
				}
				owner[tp.Topic][p] = m.MemberID
			}
		}
	}
	commits.Each(func(o kadm.OffsetResponse) { topics.Add(o.Topic, o.Partition) })
	ends, err := c.adm.ListEndOffsets(ctx, topics.Topics()...)
	if err != nil && len(topics) > 0 {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	g.Lag = []lagInfo{}
	for _, tp := range topics.Sorted() {
		for _, p := range tp.Partitions {
			li := lagInfo{Topic: tp.Topic, Partition: p, Member: owner[tp.Topic][p], End: -1}
			if e, ok := ends.Lookup(tp.Topic, p); ok && e.Err == nil {
				li.End = e.Offset
			} else if ok {
				li.Error = e.Err.Error()
			}
			if o, ok := commits.Lookup(tp.Topic, p); ok {
				if o.Err != nil {
					li.Error = o.Err.Error()
				} else if o.At >= 0 {
					at := o.At
					li.Committed = &at
					if li.End >= 0 {
						lag := max(li.End-at, 0)
						li.Lag = &lag
						g.TotalLag += lag
					}
				}
			}
			g.Lag = append(g.Lag, li)
		}
	}
	g.Time = nowMillis()
	return g, nil
}

// describeGroup describes a group of either protocol: ConsumerGroup-
// Describe first, DescribeGroups when it is not a consumer group.
func (c *console) describeGroup(ctx context.Context, name string) (*groupInfo, error) {
	cgs, err := c.adm.DescribeConsumerGroups(ctx, name)
	var se *kadm.ShardErrors
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) && !errors.As(err, &se) {
		return nil, fmt.Errorf("describe consumer group %q: %w", name, err)
	}
	if d, ok := cgs[name]; ok && d.Err == nil {
		epoch := d.Epoch
		g := &groupInfo{Name: name, Type: "consumer", State: d.State, ProtocolType: "consumer", Assignor: d.AssignorName,
			Epoch: &epoch, Coordinator: d.Coordinator.NodeID, Members: []memberInfo{}}
		for _, m := range d.Members {
			me := m.MemberEpoch
			g.Members = append(g.Members, memberInfo{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID,
				ClientHost: m.ClientHost, Epoch: &me, Subscribed: m.SubscribedTopics, Assignment: assignment(m.Assignment)})
		}
		return g, nil
	}
	gs, err := c.adm.DescribeGroups(ctx, name)
	if err != nil && !errors.As(err, &se) {
		return nil, fmt.Errorf("describe group %q: %w", name, err)
	}
	d, ok := gs[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("describe group %q: missing from the answer", name)
	case d.Err != nil:
		return nil, fmt.Errorf("describe group %q: %w", name, d.Err)
	case d.State == "Dead":
		return nil, notFound(fmt.Errorf("group %q: %w", name, kerr.GroupIDNotFound))
	}
	g := &groupInfo{Name: name, Type: "classic", State: d.State, ProtocolType: d.ProtocolType, Protocol: d.Protocol,
		Coordinator: d.Coordinator.NodeID, Members: []memberInfo{}}
	for _, m := range d.Members {
		mi := memberInfo{MemberID: m.MemberID, InstanceID: m.InstanceID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			Assignment: []topicPartitions{}}
		if a, ok := m.Assigned.AsConsumer(); ok {
			set := kadm.TopicsSet{}
			for _, t := range a.Topics {
				set.Add(t.Topic, t.Partitions...)
			}
			mi.Assignment = assignment(set)
		}
		if j, ok := m.Join.AsConsumer(); ok {
			mi.Subscribed = j.Topics
		}
		g.Members = append(g.Members, mi)
	}
	return g, nil
}

// sharePartitionInfo is what DescribeShareGroupOffsets tells of a share
// partition: records before its start offset are acknowledged or
// archived; from the start offset to the end they are available or in
// flight. Lag is the protocol's (v1+) count of records not yet
// acknowledged, null when the broker does not report it.
type sharePartitionInfo struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	StartOffset int64  `json:"startOffset"`
	End         int64  `json:"end"`
	Lag         *int64 `json:"lag"`
	Error       string `json:"error,omitempty"`
}

type shareGroupInfo struct {
	Name        string               `json:"name"`
	State       string               `json:"state"`
	Epoch       int32                `json:"epoch"`
	Assignor    string               `json:"assignor"`
	Coordinator int32                `json:"coordinator"`
	Members     []memberInfo         `json:"members"`
	Partitions  []sharePartitionInfo `json:"partitions"`
	Time        int64                `json:"time"`
}

func (c *console) shareGroup(r *http.Request) (any, error) {
	ctx := r.Context()
	name := r.PathValue("group")
	ds, err := c.adm.DescribeShareGroups(ctx, name)
	var se *kadm.ShardErrors
	if err != nil && !errors.As(err, &se) {
		return nil, fmt.Errorf("describe share group %q: %w", name, err)
	}
	d, ok := ds[name]
	switch {
	case !ok:
		return nil, fmt.Errorf("describe share group %q: missing from the answer", name)
	case d.Err != nil:
		return nil, fmt.Errorf("describe share group %q: %w", name, d.Err)
	}
	out := shareGroupInfo{Name: name, State: d.GroupState, Epoch: d.GroupEpoch, Assignor: d.Assignor,
		Coordinator: d.Coordinator.NodeID, Members: []memberInfo{}, Partitions: []sharePartitionInfo{}}
	for _, m := range d.Members {
		me := m.MemberEpoch
		out.Members = append(out.Members, memberInfo{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost,
			Epoch: &me, Subscribed: m.SubscribedTopicNames, Assignment: assignment(m.Assignment)})
	}
	offs, err := c.adm.DescribeShareGroupOffsets(ctx, name)
	if err != nil && !errors.As(err, &se) {
		return nil, fmt.Errorf("describe share group offsets of %q: %w", name, err)
	}
	g := offs[name]
	if g.Err != nil {
		return nil, fmt.Errorf("describe share group offsets of %q: %w", name, g.Err)
	}
	var topics []string
	for t := range g.Offsets {
		topics = append(topics, t)
	}
	ends, err := c.adm.ListEndOffsets(ctx, topics...)
	if err != nil && len(topics) > 0 {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	for t, ps := range g.Offsets {
		for p, o := range ps {
			sp := sharePartitionInfo{Topic: t, Partition: p, StartOffset: o.StartOffset, End: -1}
			if o.Err != nil {
				sp.Error = o.Err.Error()
			}
			if o.Lag >= 0 {
				lag := o.Lag
				sp.Lag = &lag
			}
			if e, ok := ends.Lookup(t, p); ok && e.Err == nil {
				sp.End = e.Offset
			}
			out.Partitions = append(out.Partitions, sp)
		}
	}
	slices.SortFunc(out.Partitions, func(a, b sharePartitionInfo) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	out.Time = nowMillis()
	return out, nil
}
