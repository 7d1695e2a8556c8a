package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxTopicName is Kafka's limit on topic name length.
const maxTopicName = 249

// validTopicName reports why name cannot be a topic, or nil.
func validTopicName(name string) error {
	switch {
	case name == "":
		return errors.New("topic name is empty")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > maxTopicName:
		return fmt.Errorf("topic name is %d characters, more than %d", len(name), maxTopicName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q has %q: only ASCII letters, digits, '.', '_' and '-' are allowed", name, r)
		}
	}
	return nil
}

// collides reports an existing topic whose name equals name once '.' and
// '_' are treated alike: Kafka refuses such pairs since metric names
// cannot tell them apart.
func collides(img *metadata.Image, name string) string {
	norm := func(s string) string { return strings.ReplaceAll(s, ".", "_") }
	for other := range img.Topics {
		if other != name && norm(other) == norm(name) {
			return other
		}
	}
	return ""
}

// requestLimit refuses a request that creates total partitions, more than
// one topic may have, with the error Kafka's controller gives.
func (b *Broker) requestLimit(total int64) error {
	if total <= int64(b.cfg.maxTopicPartitions) {
		return nil
	}
	return &configError{kerr.PolicyViolation, fmt.Sprintf("Excessively large number of partitions per request: %d, more than %d.", total, b.cfg.maxTopicPartitions)}
}

// limits are the partition limits of the broker's options.
func (b *Broker) limits() metadata.Limits {
	return metadata.Limits{TopicPartitions: b.cfg.maxTopicPartitions, Partitions: b.cfg.maxPartitions}
}

// withDefaults gives a spec whose partition count or replication factor
// is -1 the broker's default for it.
func (b *Broker) withDefaults(spec metadata.TopicSpec) metadata.TopicSpec {
	if spec.Partitions == -1 {
		spec.Partitions = b.cfg.numPartitions
	}
	if spec.ReplicationFactor == -1 {
		spec.ReplicationFactor = 1
	}
	return spec
}

// createTopic validates a topic spec and creates it, or only validates it.
func (b *Broker) createTopic(ctx context.Context, spec metadata.TopicSpec, validateOnly bool) error {
	spec = b.withDefaults(spec)
	img := b.meta.Image()
	if err := validTopicName(spec.Name); err != nil {
		return &configError{kerr.InvalidTopicException, err.Error()}
	}
	if other := collides(img, spec.Name); other != "" {
		return &configError{kerr.InvalidTopicException, fmt.Sprintf("topic %q collides with existing topic %q ('.' and '_' are alike in metric names)", spec.Name, other)}
	}
	if _, ok := img.Topics[spec.Name]; ok {
		return &configError{kerr.TopicAlreadyExists, fmt.Sprintf("topic %q already exists", spec.Name)}
	}
	if spec.Partitions < 1 {
		return &configError{kerr.InvalidPartitions, fmt.Sprintf("partition count %d is below 1", spec.Partitions)}
	}
	if err := b.limits().Check(img, spec.Name, spec.Partitions); err != nil {
		return err
	}
	if n := int16(len(img.Brokers)); spec.ReplicationFactor < 1 || spec.ReplicationFactor > n {
		return &configError{kerr.InvalidReplicationFactor, fmt.Sprintf("replication factor %d is outside [1, %d]: the cluster has %d broker(s)", spec.ReplicationFactor, n, n)}
	}
	kv := make(map[string]*string, len(spec.Configs))
	for k, v := range spec.Configs {
		kv[k] = &v
	}
	if err := validateConfigs(topicConfigs, kv); err != nil {
		return invalidConfig(err)
	}
	if validateOnly {
		return nil
	}
	t, err := b.meta.CreateTopic(ctx, spec)
	if err != nil {
		return err
	}
	return b.parts.await(ctx, t.Name, t.ID, len(t.Partitions))
}

func (b *Broker) handleCreateTopics(ctx context.Context, req *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	seen := make(map[string]int)
	var total int64
	for _, t := range req.Topics {
		seen[t.Topic]++
		switch {
		case len(t.ReplicaAssignment) > 0:
			total += int64(len(t.ReplicaAssignment))
		case t.NumPartitions == -1:
			total += int64(b.cfg.numPartitions)
		case t.NumPartitions > 0:
			total += int64(t.NumPartitions)
		}
	}
	// Like Kafka's controller, bound the partitions one request creates,
	// and so the work of answering it.
	tooMany := b.requestLimit(total)
	answered := make(map[string]bool)
	for _, t := range req.Topics {
		// Kafka answers a topic named twice once, with INVALID_REQUEST.
		if answered[t.Topic] {
			continue
		}
		answered[t.Topic] = true
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = t.Topic
		var err error
		switch {
		case tooMany != nil:
			err = tooMany
		case seen[t.Topic] > 1:
			err = &configError{kerr.InvalidRequest, fmt.Sprintf("topic %q appears more than once in the request", t.Topic)}
		case len(t.ReplicaAssignment) > 0:
			err = b.checkAssignment(t)
		}
		spec := metadata.TopicSpec{Name: t.Topic, Partitions: t.NumPartitions, ReplicationFactor: t.ReplicationFactor, Configs: map[string]string{}}
		if len(t.ReplicaAssignment) > 0 {
			spec.Partitions, spec.ReplicationFactor = int32(len(t.ReplicaAssignment)), int16(len(t.ReplicaAssignment[0].Replicas))
		}
		spec = b.withDefaults(spec)
		for _, c := range t.Configs {
			if c.Value != nil {
				spec.Configs[c.Name] = *c.Value
			}
		}
		if err == nil {
			err = b.createTopic(ctx, spec, req.ValidateOnly)
		}
		rt.ErrorCode, rt.ErrorMessage = errorCode(err)
		if err == nil {
			b.describeCreated(&rt, spec)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// checkAssignment accepts a manual assignment only if it names this
// cluster's brokers once per partition.
func (b *Broker) checkAssignment(t kmsg.CreateTopicsRequestTopic) error {
	if t.NumPartitions != -1 || t.ReplicationFactor != -1 {
		return &configError{kerr.InvalidRequest, "a replica assignment needs partitions and replication factor of -1"}
	}
	brokers := b.meta.Image().Brokers
	for _, a := range t.ReplicaAssignment {
		if len(a.Replicas) != len(t.ReplicaAssignment[0].Replicas) {
			return &configError{kerr.InvalidReplicaAssignment, "partitions have different replica counts"}
		}
		for _, r := range a.Replicas {
			if _, ok := brokers[r]; !ok {
				return &configError{kerr.InvalidReplicaAssignment, fmt.Sprintf("broker %d does not exist", r)}
			}
		}
	}
	return nil
}

// describeCreated fills the v5+ fields describing a created topic, or
// one validated only; spec has the broker's defaults applied.
func (b *Broker) describeCreated(rt *kmsg.CreateTopicsResponseTopic, spec metadata.TopicSpec) {
	img := b.meta.Image()
	rt.NumPartitions, rt.ReplicationFactor = spec.Partitions, spec.ReplicationFactor
	if t, ok := img.Topics[spec.Name]; ok {
		rt.TopicID = t.ID
		rt.NumPartitions = int32(len(t.Partitions))
		rt.ReplicationFactor = int16(len(t.Partitions[0].Replicas))
	}
	for _, d := range topicConfigs {
		c := kmsg.NewCreateTopicsResponseTopicConfig()
		c.Name = d.name
		val, src := brokerDefault(img, b.cfg.nodeID, &d)
		if v, ok := spec.Configs[d.name]; ok {
			val, src = v, kmsg.ConfigSourceDynamicTopicConfig
		}
		c.Value, c.Source = kmsg.StringPtr(val), int8(src)
		rt.Configs = append(rt.Configs, c)
	}
}

func (b *Broker) handleDeleteTopics(ctx context.Context, req *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	topics := req.Topics
	if req.Version < 6 {
		for _, name := range req.TopicNames {
			t := kmsg.NewDeleteTopicsRequestTopic()
			t.Topic = kmsg.StringPtr(name)
			topics = append(topics, t)
		}
	}
	for _, t := range topics {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		img := b.meta.Image()
		var err error
		switch {
		case t.Topic != nil:
			if mt, ok := img.Topics[*t.Topic]; ok {
				rt.TopicID = mt.ID
			}
			err = b.meta.DeleteTopic(ctx, *t.Topic)
		case t.TopicID != [16]byte{}:
			mt, ok := img.TopicsByID[t.TopicID]
			if !ok {
				err = &configError{kerr.UnknownTopicID, "no topic has that id"}
				break
			}
			rt.Topic = kmsg.StringPtr(mt.Name)
			err = b.meta.DeleteTopic(ctx, mt.Name)
		default:
			err = &configError{kerr.InvalidRequest, "neither topic name nor id given"}
		}
		rt.ErrorCode, rt.ErrorMessage = errorCode(err)
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (b *Broker) handleCreatePartitions(ctx context.Context, req *kmsg.CreatePartitionsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	var added int64
	before := b.meta.Image()
	for _, t := range req.Topics {
		if mt, ok := before.Topics[t.Topic]; ok && int(t.Count) > len(mt.Partitions) {
			added += int64(t.Count) - int64(len(mt.Partitions))
		}
	}
	tooMany := b.requestLimit(added)
	for _, t := range req.Topics {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = t.Topic
		img := b.meta.Image()
		mt, ok := img.Topics[t.Topic]
		var err error
		switch {
		case tooMany != nil:
			err = tooMany
		case !ok:
			err = &configError{kerr.UnknownTopicOrPartition, fmt.Sprintf("topic %q does not exist", t.Topic)}
		case t.Count <= int32(len(mt.Partitions)):
			err = &configError{kerr.InvalidPartitions, fmt.Sprintf("topic %q has %d partitions; the new count %d must be larger", t.Topic, len(mt.Partitions), t.Count)}
		case len(t.Assignment) > 0 && len(t.Assignment) != int(t.Count)-len(mt.Partitions):
			err = &configError{kerr.InvalidReplicaAssignment, "the assignment must list each new partition"}
		default:
			err = b.limits().Check(img, t.Topic, t.Count)
		}
		if err == nil && !req.ValidateOnly {
			err = b.meta.CreatePartitions(ctx, t.Topic, t.Count)
			if err == nil {
				err = b.parts.await(ctx, t.Topic, mt.ID, int(t.Count))
			}
		}
		rt.ErrorCode, rt.ErrorMessage = errorCode(err)
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// byTopicID reports whether a Metadata request names t by its id: a topic
// id, when set, names the topic (Kafka's Java client sends an empty name
// beside it), and so does a null name.
func byTopicID(t kmsg.MetadataRequestTopic) bool {
	return t.TopicID != [16]byte{} || t.Topic == nil
}

func (b *Broker) handleMetadata(ctx context.Context, req *kmsg.MetadataRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	img := b.meta.Image()
	autoCreate := b.cfg.autoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	created := false
	for _, t := range req.Topics {
		if byTopicID(t) {
			continue
		}
		if _, ok := img.Topics[*t.Topic]; !ok && autoCreate && validTopicName(*t.Topic) == nil {
			// A failure (say, a concurrent create) shows as the topic's
			// error code below.
			created = b.createTopic(ctx, metadata.TopicSpec{Name: *t.Topic, Partitions: -1, ReplicationFactor: -1}, false) == nil || created
		}
	}
	if created {
		img = b.meta.Image()
	}
	resp.ClusterID = kmsg.StringPtr(img.ClusterID)
	resp.ControllerID = b.meta.Quorum().LeaderID
	for _, br := range img.Brokers {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = br.ID, br.Host, br.Port
		if br.Rack != "" {
			mb.Rack = kmsg.StringPtr(br.Rack)
		}
		resp.Brokers = append(resp.Brokers, mb)
	}
	describe := func(mt *metadata.Topic) kmsg.MetadataResponseTopic {
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic, rt.TopicID = kmsg.StringPtr(mt.Name), mt.ID
		offline := b.parts.offline(mt)
		for _, p := range mt.Partitions {
			rp := kmsg.NewMetadataResponseTopicPartition()
			rp.Partition, rp.Leader, rp.LeaderEpoch = p.Index, p.Leader, p.LeaderEpoch
			rp.Replicas, rp.ISR = p.Replicas, p.ISR
			if offline[p.Index] {
				// As a Kafka cluster shows a partition whose only
				// replica is on a failed log directory.
				rp.ErrorCode, rp.Leader = kerr.LeaderNotAvailable.Code, -1
				rp.OfflineReplicas = []int32{b.cfg.nodeID}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		return rt
	}
	if req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0) {
		for _, mt := range img.Topics {
			resp.Topics = append(resp.Topics, describe(mt))
		}
		return resp
	}
	for _, t := range req.Topics {
		byID := byTopicID(t)
		var mt *metadata.Topic
		if byID {
			mt = img.TopicsByID[t.TopicID]
		} else {
			mt = img.Topics[*t.Topic]
		}
		if mt != nil {
			resp.Topics = append(resp.Topics, describe(mt))
			continue
		}
		rt := kmsg.NewMetadataResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		rt.ErrorCode = kerr.UnknownTopicOrPartition.Code
		switch {
		case byID:
			rt.Topic = nil
			rt.ErrorCode = kerr.UnknownTopicID.Code
		case validTopicName(*t.Topic) != nil:
			rt.ErrorCode = kerr.InvalidTopicException.Code
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
