package metadata

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// ResourceType is the kind of resource a config belongs to. Its values
// equal Kafka's ConfigResourceType.
type ResourceType int8

// The resource types that carry configs.
const (
	// ResourceTopic is a topic; the resource name is the topic name.
	ResourceTopic ResourceType = 2
	// ResourceBroker is a broker; the resource name is the broker id in
	// decimal, or "" for the cluster-wide default.
	ResourceBroker ResourceType = 4
	// ResourceGroup is a consumer group; the resource name is the group id.
	ResourceGroup ResourceType = 32
)

func (t ResourceType) valid() bool {
	return t == ResourceTopic || t == ResourceBroker || t == ResourceGroup
}

// ConfigResource names a resource that has configs. A broker resource with
// Name "" is the cluster-wide default; otherwise Name is the broker id.
type ConfigResource struct {
	Type ResourceType
	Name string
}

// Image is the cluster metadata at one point of the metadata log. An Image
// is immutable: it is shared by every reader and must never be modified.
type Image struct {
	// ClusterID is the cluster's id: 22 characters of base64url.
	ClusterID string
	// Brokers holds the registered brokers by id.
	Brokers map[int32]Broker
	// Topics holds the topics by name.
	Topics map[string]*Topic
	// TopicsByID holds the same topics by id.
	TopicsByID map[[16]byte]*Topic
	// Configs holds, per resource, only the keys explicitly set on it.
	Configs map[ConfigResource]map[string]string
	// PartitionCount is the number of partitions of all topics.
	PartitionCount int
	// Index is the raft index of the last log entry that changed the image.
	Index uint64
}

// Broker is a registered broker and the endpoint clients reach it at.
type Broker struct {
	ID   int32
	Host string
	Port int32
	Rack string
}

// Topic is a topic and its partitions, in partition order. A Topic reached
// through an Image is immutable.
type Topic struct {
	Name       string
	ID         [16]byte
	Partitions []Partition
}

// Partition is one partition's placement: its replicas, in preference
// order, the in-sync subset, and the current leader with its epoch.
type Partition struct {
	Index       int32
	Leader      int32
	LeaderEpoch int32
	Replicas    []int32
	ISR         []int32
}

func emptyImage() *Image {
	return &Image{
		Brokers:    map[int32]Broker{},
		Topics:     map[string]*Topic{},
		TopicsByID: map[[16]byte]*Topic{},
		Configs:    map[ConfigResource]map[string]string{},
	}
}

// records returns the records that rebuild img from an empty image: the
// cluster id, brokers, topics with their partitions, then configs, each in
// a fixed order so that equal images encode to equal bytes.
func (img *Image) records() []record {
	var recs []record
	if img.ClusterID != "" {
		recs = append(recs, clusterIDRecord{ClusterID: img.ClusterID})
	}
	for _, id := range slices.Sorted(maps.Keys(img.Brokers)) {
		recs = append(recs, registerBrokerRecord{Broker: img.Brokers[id]})
	}
	for _, name := range slices.Sorted(maps.Keys(img.Topics)) {
		t := img.Topics[name]
		recs = append(recs, topicRecord{Name: t.Name, ID: t.ID})
		for _, p := range t.Partitions {
			recs = append(recs, partitionRecord{TopicID: t.ID, Partition: p})
		}
	}
	resources := slices.SortedFunc(maps.Keys(img.Configs), func(a, b ConfigResource) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name))
	})
	for _, r := range resources {
		kv := img.Configs[r]
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			v := kv[k]
			recs = append(recs, configRecord{Resource: r, Key: k, Value: &v})
		}
	}
	return recs
}

// change builds the image that follows base by copy-on-write: it copies a
// map of base only when a record changes it, and a Topic only when a record
// changes that topic. base is never modified.
type change struct {
	base *Image
	next *Image

	brokersOwned bool
	topicsOwned  bool
	configsOwned bool
	// ownTopics and ownConfigs hold the values created by this change,
	// which it may still modify in place.
	ownTopics  map[[16]byte]*Topic
	ownConfigs map[ConfigResource]bool
}

// applyRecords returns the image that results from applying recs to base,
// atomically: if any record does not apply, it returns the error and no
// image. The result's Index is index.
func applyRecords(base *Image, recs []record, index uint64) (*Image, error) {
	next := *base
	c := &change{base: base, next: &next, ownTopics: map[[16]byte]*Topic{}, ownConfigs: map[ConfigResource]bool{}}
	for _, rec := range recs {
		if err := c.apply(rec); err != nil {
			return nil, err
		}
	}
	next.Index = index
	return &next, nil
}

func (c *change) apply(rec record) error {
	switch r := rec.(type) {
	case clusterIDRecord:
		if c.next.ClusterID != "" && c.next.ClusterID != r.ClusterID {
			return fmt.Errorf("cluster id is already %q, cannot become %q", c.next.ClusterID, r.ClusterID)
		}
		c.next.ClusterID = r.ClusterID
	case registerBrokerRecord:
		c.ownBrokers()
		c.next.Brokers[r.Broker.ID] = r.Broker
	case topicRecord:
		if _, ok := c.next.Topics[r.Name]; ok {
			return fmt.Errorf("topic %q: %w", r.Name, ErrTopicExists)
		}
		if t, ok := c.next.TopicsByID[r.ID]; ok {
			return fmt.Errorf("topic %q: id %x is taken by topic %q: %w", r.Name, r.ID, t.Name, ErrTopicExists)
		}
		t := &Topic{Name: r.Name, ID: r.ID}
		c.putTopic(t)
		c.ownTopics[t.ID] = t
	case partitionRecord:
		t, ok := c.next.TopicsByID[r.TopicID]
		if !ok {
			return fmt.Errorf("partition %d of topic id %x: %w", r.Partition.Index, r.TopicID, ErrUnknownTopic)
		}
		if want := int32(len(t.Partitions)); r.Partition.Index != want {
			return fmt.Errorf("topic %q has %d partitions, cannot add partition %d: %w", t.Name, want, r.Partition.Index, ErrInvalidPartitions)
		}
		t = c.ownTopic(t)
		t.Partitions = append(t.Partitions, r.Partition)
		c.next.PartitionCount++
	case configRecord:
		return c.applyConfig(r)
	case removeTopicRecord:
		t, ok := c.next.TopicsByID[r.TopicID]
		if !ok {
			return fmt.Errorf("remove topic id %x: %w", r.TopicID, ErrUnknownTopic)
		}
		c.ownTopicMaps()
		c.next.PartitionCount -= len(t.Partitions)
		delete(c.next.Topics, t.Name)
		delete(c.next.TopicsByID, t.ID)
		delete(c.ownTopics, t.ID)
		res := ConfigResource{Type: ResourceTopic, Name: t.Name}
		if _, ok := c.next.Configs[res]; ok {
			c.ownConfigMap()
			delete(c.next.Configs, res)
			delete(c.ownConfigs, res)
		}
	default:
		return fmt.Errorf("apply %T: %w", rec, errUnknownRecord)
	}
	return nil
}

func (c *change) applyConfig(r configRecord) error {
	if !r.Resource.Type.valid() {
		return fmt.Errorf("config %q: resource type %d is not topic, broker or group", r.Key, r.Resource.Type)
	}
	if r.Resource.Type == ResourceTopic {
		if _, ok := c.next.Topics[r.Resource.Name]; !ok {
			return fmt.Errorf("config %q of topic %q: %w", r.Key, r.Resource.Name, ErrUnknownTopic)
		}
	}
	kv, exists := c.next.Configs[r.Resource]
	if r.Value == nil {
		if _, ok := kv[r.Key]; !ok {
			return nil
		}
	}
	c.ownConfigMap()
	if !c.ownConfigs[r.Resource] {
		kv = maps.Clone(kv)
		if !exists {
			kv = map[string]string{}
		}
		c.next.Configs[r.Resource] = kv
		c.ownConfigs[r.Resource] = true
	}
	if r.Value == nil {
		delete(kv, r.Key)
		if len(kv) == 0 {
			delete(c.next.Configs, r.Resource)
			delete(c.ownConfigs, r.Resource)
		}
		return nil
	}
	kv[r.Key] = *r.Value
	return nil
}

func (c *change) ownBrokers() {
	if !c.brokersOwned {
		c.next.Brokers = maps.Clone(c.base.Brokers)
		c.brokersOwned = true
	}
}

func (c *change) ownTopicMaps() {
	if !c.topicsOwned {
		c.next.Topics = maps.Clone(c.base.Topics)
		c.next.TopicsByID = maps.Clone(c.base.TopicsByID)
		c.topicsOwned = true
	}
}

func (c *change) ownConfigMap() {
	if !c.configsOwned {
		c.next.Configs = maps.Clone(c.base.Configs)
		c.configsOwned = true
	}
}

// putTopic stores t under its name and id in the next image.
func (c *change) putTopic(t *Topic) {
	c.ownTopicMaps()
	c.next.Topics[t.Name] = t
	c.next.TopicsByID[t.ID] = t
}

// ownTopic returns a copy of t that this change may modify, stored in the
// next image in place of t.
func (c *change) ownTopic(t *Topic) *Topic {
	if own, ok := c.ownTopics[t.ID]; ok {
		return own
	}
	own := &Topic{Name: t.Name, ID: t.ID, Partitions: slices.Clip(t.Partitions)}
	c.putTopic(own)
	c.ownTopics[own.ID] = own
	return own
}
