package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func clusterCmds() *cmdSpec {
	return &cmdSpec{
		name:     "cluster",
		summary:  "show the cluster: brokers, controller and metadata quorum",
		synopsis: "<subcommand> [flags]",
		subs: []*cmdSpec{
			{name: "info", summary: "show the cluster id, brokers, controller and metadata quorum", synopsis: "[flags]",
				about: []string{"Asks DescribeCluster for the cluster id, the controller and the brokers, and " +
					"DescribeQuorum for the KRaft metadata quorum: its leader, epoch, high watermark and each voter's " +
					"and observer's log end offset and lag. A cluster that does not answer DescribeQuorum is shown " +
					"without its quorum."},
				examples: []string{"riffle cluster info", "riffle cluster info --output json"},
				setup:    clusterInfo},
		},
	}
}

// clusterDescription is what cluster info shows.
type clusterDescription struct {
	ClusterID  string          `json:"cluster_id"`
	Controller int32           `json:"controller"`
	Brokers    []clusterBroker `json:"brokers"`
	Quorum     *quorum         `json:"quorum"`
	// QuorumError says why Quorum is missing.
	QuorumError string `json:"quorum_error,omitempty"`
}

// clusterBroker is one broker of a clusterDescription.
type clusterBroker struct {
	ID   int32   `json:"id"`
	Host string  `json:"host"`
	Port int32   `json:"port"`
	Rack *string `json:"rack"`
}

// quorum is the metadata quorum of a clusterDescription.
type quorum struct {
	Leader        int32     `json:"leader"`
	Epoch         int32     `json:"epoch"`
	HighWatermark int64     `json:"high_watermark"`
	Voters        []replica `json:"voters"`
	Observers     []replica `json:"observers"`
}

// replica is a voter or observer of the quorum.
type replica struct {
	ID           int32 `json:"id"`
	LogEndOffset int64 `json:"log_end_offset"`
	// Lag is how far the replica's log end is behind the high watermark.
	Lag int64 `json:"lag"`
}

func clusterInfo(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	return func(ctx context.Context, o *output, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("cluster info: unexpected argument %q", args[0])
		}
		_, cl, err := newAdmin(*brokers)
		if err != nil {
			return fmt.Errorf("cluster info: %w", err)
		}
		defer cl.Close()
		d, err := describeCluster(ctx, cl)
		if err != nil {
			return fmt.Errorf("cluster info: %w", err)
		}
		if o.json {
			return o.emit(d)
		}
		return writeCluster(o, d)
	}
}

// describeCluster asks for the cluster and its quorum.
func describeCluster(ctx context.Context, cl *kgo.Client) (clusterDescription, error) {
	resp, err := kmsg.NewPtrDescribeClusterRequest().RequestWith(ctx, cl)
	if err != nil {
		return clusterDescription{}, fmt.Errorf("describe cluster: %w", err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return clusterDescription{}, fmt.Errorf("describe cluster: %w", err)
	}
	d := clusterDescription{ClusterID: resp.ClusterID, Controller: resp.ControllerID, Brokers: []clusterBroker{}}
	for _, b := range resp.Brokers {
		d.Brokers = append(d.Brokers, clusterBroker{b.NodeID, b.Host, b.Port, b.Rack})
	}
	q, err := describeQuorum(ctx, cl)
	if err != nil {
		d.QuorumError = err.Error()
	} else {
		d.Quorum = q
	}
	return d, nil
}

// metadataLog is the topic KRaft calls its metadata log in DescribeQuorum.
const metadataLog = "__cluster_metadata"

func describeQuorum(ctx context.Context, cl *kgo.Client) (*quorum, error) {
	req := kmsg.NewPtrDescribeQuorumRequest()
	t := kmsg.NewDescribeQuorumRequestTopic()
	t.Topic = metadataLog
	p := kmsg.NewDescribeQuorumRequestTopicPartition()
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return nil, errors.New("the answer lacks the metadata log")
	}
	rp := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
		return nil, err
	}
	q := &quorum{Leader: rp.LeaderID, Epoch: rp.LeaderEpoch, HighWatermark: rp.HighWatermark, Voters: []replica{}, Observers: []replica{}}
	for _, v := range rp.CurrentVoters {
		q.Voters = append(q.Voters, replica{v.ReplicaID, v.LogEndOffset, max(0, rp.HighWatermark-v.LogEndOffset)})
	}
	for _, v := range rp.Observers {
		q.Observers = append(q.Observers, replica{v.ReplicaID, v.LogEndOffset, max(0, rp.HighWatermark-v.LogEndOffset)})
	}
	return q, nil
}

func writeCluster(o *output, d clusterDescription) error {
	fmt.Fprintf(o.stdout, "%s %s  CONTROLLER %d  BROKERS %d\n", o.bold("CLUSTER"), d.ClusterID, d.Controller, len(d.Brokers))
	tab := newTable("BROKER", "HOST", "PORT", "RACK", "ROLE")
	for _, b := range d.Brokers {
		role := "broker"
		if b.ID == d.Controller {
			role = "broker, controller"
		}
		tab.row(b.ID, b.Host, b.Port, deref(b.Rack), role)
	}
	if err := tab.write(o); err != nil {
		return err
	}
	fmt.Fprintln(o.stdout)
	if d.Quorum == nil {
		_, err := fmt.Fprintf(o.stdout, "%s not described: %s\n", o.bold("QUORUM"), d.QuorumError)
		return err
	}
	q := d.Quorum
	fmt.Fprintf(o.stdout, "%s leader %d  epoch %d  high watermark %d\n", o.bold("QUORUM"), q.Leader, q.Epoch, q.HighWatermark)
	tab = newTable("REPLICA", "STATUS", "LOG-END-OFFSET", "LAG")
	for _, v := range q.Voters {
		status := "voter"
		if v.ID == q.Leader {
			status = "leader"
		}
		tab.row(v.ID, status, v.LogEndOffset, v.Lag)
	}
	for _, v := range q.Observers {
		tab.row(v.ID, "observer", v.LogEndOffset, v.Lag)
	}
	return tab.write(o)
}
