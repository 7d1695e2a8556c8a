package streams

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/processor"
	"github.com/riffle-stream/riffle/state"
)

// ApplicationServer sets the host:port at which this instance answers
// queries (its QueryServer), advertised to the other instances through the
// consumer group so that they can find it (Kafka Streams'
// application.server). Default: none; the instance then shows in
// AllInstances without a server.
//
// The address travels in each thread's client.id, "<application
// id>-thread-<n>@<host:port>", which both group protocols report for every
// member (DescribeGroups, ConsumerGroupDescribe): KIP-848's
// ConsumerGroupHeartbeat has no field for client data (Kafka carries
// endpoints only in the streams protocol of KIP-1071), and using one
// mechanism keeps classic and KIP-848 members of one group alike.
func ApplicationServer(hostPort string) Option { return func(c *config) { c.server = hostPort } }

// Instance is one instance of the application as the group sees it: the
// partitions its threads are assigned, by topic.
type Instance struct {
	// Server is the instance's ApplicationServer, empty if it has none.
	Server string
	// Partitions are the input partitions its threads are assigned.
	Partitions map[string][]int32
}

// KeyMetadata says where a key of a store lives.
type KeyMetadata struct {
	// Partition is the key's partition (and task partition).
	Partition int32
	// Server is the ApplicationServer of the instance whose task has the
	// partition, empty if no instance is assigned it or it has no server.
	Server string
	// Local reports whether this instance runs the task.
	Local bool
	// Standbys are the ApplicationServers of the instances placed to keep
	// standby replicas of the task (see StandbyReplicas), which a query
	// with StaleStores may read; a standby may still be catching up.
	Standbys []string
}

// PartitionError is the error of a query for a key whose partition this
// instance cannot answer for. It wraps ErrNotLocal or ErrRestoring.
type PartitionError struct {
	Err       error
	Store     string
	Partition int32
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("%v: store %s, partition %d", e.Err, e.Store, e.Partition)
}

func (e *PartitionError) Unwrap() error { return e.Err }

// clientID is the client.id of a thread, carrying the instance's key and
// ApplicationServer: "<application id>-thread-<n>-<instance>@<server>".
func (a *App) clientID(thread int) string {
	id := fmt.Sprintf("%s-thread-%d-%s", a.cfg.appID, thread, a.instanceKey())
	if a.cfg.server != "" {
		id += "@" + a.cfg.server
	}
	return id
}

// instanceKey names this instance (process) among the group's members, for
// the placement of standby replicas: a digest of the StaticMembership id,
// stable across restarts, or else the process id.
func (a *App) instanceKey() string {
	if a.cfg.instanceID != "" {
		sum := sha256.Sum256([]byte(a.cfg.instanceID))
		return "s" + hex.EncodeToString(sum[:8])
	}
	return strings.ReplaceAll(a.processID, "-", "")
}

// parseClientID returns the instance key and ApplicationServer in a
// member's client.id, and whether the member is a thread of this
// application.
func (c *config) parseClientID(clientID string) (instance, server string, ok bool) {
	rest, ok := strings.CutPrefix(clientID, c.appID+"-thread-")
	if !ok {
		return "", "", false
	}
	rest, server, _ = strings.Cut(rest, "@")
	_, instance, _ = strings.Cut(rest, "-")
	if instance == "" {
		instance = rest // no key: each thread counts as an instance
	}
	return instance, server, true
}

// member is one instance of the application as the group describes it:
// its threads merged.
type member struct {
	instance   string // its instance key
	server     string
	partitions map[string][]int32 // assigned input partitions, sorted
}

// AllInstances describes the application's consumer group and returns its
// instances, merging the threads of each (Kafka Streams'
// metadataForAllStreamsClients). Instances without an ApplicationServer
// are merged into one entry with an empty Server.
func (a *App) AllInstances(ctx context.Context) ([]Instance, error) {
	members, err := a.members(ctx)
	if err != nil {
		return nil, err
	}
	byServer := make(map[string]map[string][]int32)
	for _, m := range members {
		if byServer[m.server] == nil {
			byServer[m.server] = make(map[string][]int32)
		}
		for topic, ps := range m.partitions {
			byServer[m.server][topic] = append(byServer[m.server][topic], ps...)
		}
	}
	var out []Instance
	for _, server := range slices.Sorted(maps.Keys(byServer)) {
		parts := byServer[server]
		for _, ps := range parts {
			slices.Sort(ps)
		}
		out = append(out, Instance{Server: server, Partitions: parts})
	}
	return out, nil
}

// members describes the application's consumer group and returns its
// instances, sorted by instance key.
func (a *App) members(ctx context.Context) ([]member, error) {
	cl, adm, nextGen := a.local.admin()
	if adm == nil {
		return nil, errors.New("streams: AllInstances: the application is not running")
	}
	byInstance := make(map[string]*member)
	add := func(clientID string, assigned func(func(topic string, p int32))) {
		instance, server, ok := a.cfg.parseClientID(clientID)
		if !ok {
			return
		}
		m := byInstance[instance]
		if m == nil {
			m = &member{instance: instance, server: server, partitions: make(map[string][]int32)}
			byInstance[instance] = m
		}
		assigned(func(topic string, p int32) { m.partitions[topic] = append(m.partitions[topic], p) })
	}
	if nextGen {
		// Described with kmsg rather than kadm: a broker may name the
		// assigned topics by id only, which kadm's TopicsSet loses.
		req := kmsg.NewPtrConsumerGroupDescribeRequest()
		req.Groups = []string{a.cfg.appID}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return nil, fmt.Errorf("streams: describe group: %w", err)
		}
		names, err := a.topicNames(ctx, adm)
		if err != nil {
			return nil, err
		}
		for _, g := range resp.Groups {
			if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
				return nil, fmt.Errorf("streams: describe group: %w", err)
			}
			for _, m := range g.Members {
				add(m.ClientID, func(yield func(string, int32)) {
					for _, t := range m.Assignment.TopicPartitions {
						topic := t.Topic
						if topic == "" {
							topic = names[t.TopicID]
						}
						for _, p := range t.Partitions {
							yield(topic, p)
						}
					}
				})
			}
		}
	} else {
		groups, err := adm.DescribeGroups(ctx, a.cfg.appID)
		if err != nil {
			return nil, fmt.Errorf("streams: describe group: %w", err)
		}
		g := groups[a.cfg.appID]
		if g.Err != nil {
			return nil, fmt.Errorf("streams: describe group: %w", g.Err)
		}
		for _, m := range g.Members {
			add(m.ClientID, func(yield func(string, int32)) {
				if c, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range c.Topics {
						for _, p := range t.Partitions {
							yield(t.Topic, p)
						}
					}
				}
			})
		}
	}
	out := make([]member, 0, len(byInstance))
	for _, key := range slices.Sorted(maps.Keys(byInstance)) {
		m := byInstance[key]
		for _, ps := range m.partitions {
			slices.Sort(ps)
		}
		out = append(out, *m)
	}
	return out, nil
}

// InstancesWithStore returns the instances running a task of the store's
// subtopology (Kafka Streams' streamsMetadataForStore).
func (a *App) InstancesWithStore(ctx context.Context, store string) ([]Instance, error) {
	sub, err := a.subOfStore(store)
	if err != nil {
		return nil, err
	}
	all, err := a.AllInstances(ctx)
	if err != nil {
		return nil, err
	}
	var out []Instance
	for _, in := range all {
		if a.hosts(in, processor.TaskID{Subtopology: sub, Partition: -1}) {
			out = append(out, in)
		}
	}
	return out, nil
}

// hosts reports whether in is assigned an input partition of task id (any
// partition of its subtopology when id.Partition is -1).
func (a *App) hosts(in Instance, id processor.TaskID) bool {
	subOf := a.local.topics()
	for topic, parts := range in.Partitions {
		if sub, ok := subOf[topic]; !ok || sub != id.Subtopology {
			continue
		}
		if id.Partition < 0 || slices.Contains(parts, id.Partition) {
			return true
		}
	}
	return false
}

// QueryMetadataForKey returns where key of a key-value store lives: its
// partition, the instance assigned it and those keeping standbys of it
// (Kafka Streams' queryMetadataForKey). K and V must be the store's key and value types.
func QueryMetadataForKey[K, V any](ctx context.Context, a *App, store string, key K) (KeyMetadata, error) {
	entry, ok := a.graph.Stores[store]
	sub, err := a.subOfStore(store)
	if !ok || err != nil {
		return KeyMetadata{}, fmt.Errorf("%w: %q", ErrUnknownStore, store)
	}
	capture := &keyCapture{name: store}
	kv, ok := entry.Builder.Build(capture, state.ChangelogTopic(a.cfg.appID, store)).(state.KeyValueStore[K, V])
	if !ok {
		return KeyMetadata{}, fmt.Errorf("%w: %q is not a KeyValueStore[%T, %T]", ErrUnknownStore, store, *new(K), *new(V))
	}
	if _, _, err := kv.Get(key); err != nil {
		return KeyMetadata{}, err
	}
	n := a.local.partitionCount(sub)
	if n <= 0 {
		return KeyMetadata{}, errors.New("streams: QueryMetadataForKey: the application is not running")
	}
	md := KeyMetadata{Partition: partitionOf(capture.key, n)}
	id := processor.TaskID{Subtopology: sub, Partition: md.Partition}
	_, lerr := a.local.lookup(id, store)
	md.Local = lerr == nil
	members, err := a.members(ctx)
	if err != nil {
		return md, err
	}
	for _, m := range members {
		if a.hosts(Instance{Server: m.server, Partitions: m.partitions}, id) {
			md.Server = m.server
		}
	}
	if a.cfg.standbys > 0 {
		md.Standbys = a.standbyServers(members, id)
	}
	if md.Local && md.Server == "" {
		md.Server = a.cfg.server
	}
	return md, nil
}

func (a *App) subOfStore(store string) (int, error) {
	for _, s := range a.subs {
		for _, sc := range s.Stores {
			if sc.Name == store {
				return s.ID, nil
			}
		}
	}
	return -1, fmt.Errorf("%w: %q", ErrUnknownStore, store)
}

// keyCapture is a RawStore that remembers the serialized key it is asked
// for, to place a typed key in its partition.
type keyCapture struct {
	name string
	key  []byte
}

func (c *keyCapture) Name() string { return c.name }
func (c *keyCapture) Get(key []byte) ([]byte, error) {
	c.key = bytes.Clone(key)
	return nil, nil
}
func (c *keyCapture) Put(_, _ []byte) error { return ErrReadOnly }
func (c *keyCapture) Delete(_ []byte) error { return ErrReadOnly }
func (c *keyCapture) Scan(_, _ []byte, _ func(key, value []byte) bool) error {
	return ErrReadOnly
}
func (c *keyCapture) ApproximateNumEntries() (int64, error) { return 0, nil }
func (c *keyCapture) Flush() error                          { return nil }

// admin returns the running App's admin clients and whether its group
// uses the KIP-848 protocol.
func (l *localTasks) admin() (*kgo.Client, *kadm.Client, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.admCl, l.adm, l.nextGen
}

// topicNames maps the ids of the application's source topics to their
// names.
func (a *App) topicNames(ctx context.Context, adm *kadm.Client) (map[[16]byte]string, error) {
	topics := slices.Collect(maps.Keys(a.local.topics()))
	tds, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("streams: list topics: %w", err)
	}
	names := make(map[[16]byte]string, len(tds))
	for _, td := range tds {
		names[td.ID] = td.Topic
	}
	return names, nil
}

// topics returns the source topic -> subtopology map of the running App.
func (l *localTasks) topics() map[string]int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.subOf
}
