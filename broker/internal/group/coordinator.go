// Package group is the broker's consumer group coordinator.
//
// It serves both group protocols Kafka 4.0 serves. In the classic
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) the members
// stop, rejoin, and one of them computes the assignment that the others
// receive through the coordinator; the coordinator drives the generation
// and the rebalance and session timeouts. In the consumer protocol of
// KIP-848 (ConsumerGroupHeartbeat) the coordinator computes the target
// assignment itself with a server-side assignor, uniform or range, and
// every member reconciles towards it on its own: partitions that move are
// first revoked by their owner and only then assigned to the new one, so
// a partition is never owned twice and members whose partitions do not
// move never stop.
//
// Committed offsets and group records live in Pebble in the directory
// Config.Dir; every OffsetCommit is synced to disk before it is answered,
// so commits survive a restart and a kill -9. Group records keep the
// group type, generation or group epoch, and when the group became empty;
// members are not stored and join again after a restart, as they would
// after a coordinator failover in Kafka. Offsets of deleted topics are
// dropped when the broker reports topic changes, and the offsets of a
// group that stayed empty longer than the offsets retention expire with
// the group.
package group

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topic is what the coordinator needs to know of a topic.
type Topic struct {
	Name       string
	ID         [16]byte
	Partitions int32
}

// Client identifies who sent a request: the connection and the client id
// from the request header.
type Client struct {
	ConnID   uint64
	ClientID string
	Host     string
}

// Config configures a Coordinator.
type Config struct {
	// Dir is the Pebble directory holding committed offsets and group
	// records. It is created if missing.
	Dir string
	// FS is the file system the store lives on. Nil means the operating
	// system's; tests pass a vfs.NewStrictMem to simulate power loss.
	FS vfs.FS
	// Topics returns the current topics by name. The map is never
	// modified.
	Topics func() map[string]Topic
	// GroupConfig returns the configs explicitly set on a group, by their
	// Kafka names: consumer.session.timeout.ms (default 45000) and
	// consumer.heartbeat.interval.ms (default 5000). It may be nil.
	GroupConfig func(group string) map[string]string
	// Reserved reports whether another kind of group holds a name, as
	// share groups do, so that no consumer group takes it. It is called
	// without the coordinator's lock held. It may be nil.
	Reserved func(group string) bool
	// OffsetsRetention is how long the offsets of an empty group are kept
	// (Kafka's offsets.retention.minutes). Zero means seven days.
	OffsetsRetention time.Duration
	// Logger receives the coordinator's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Group config names and their defaults, as Kafka's group.consumer.*
// broker settings.
const (
	ConfigSessionTimeout    = "consumer.session.timeout.ms"
	ConfigHeartbeatInterval = "consumer.heartbeat.interval.ms"

	defaultSessionTimeout    = 45 * time.Second
	defaultHeartbeatInterval = 5 * time.Second
	defaultOffsetsRetention  = 7 * 24 * time.Hour
	// maxClassicSessionTimeout mirrors Kafka's group.max.session.timeout.ms.
	maxClassicSessionTimeout = 30 * time.Minute
	// maxMetadataBytes mirrors Kafka's offset.metadata.max.bytes.
	maxMetadataBytes = 4096
)

// tp names one partition of a topic.
type tp struct {
	topic     string
	partition int32
}

func (p tp) compare(q tp) int {
	return cmp.Or(cmp.Compare(p.topic, q.topic), cmp.Compare(p.partition, q.partition))
}

// group is one group of either protocol; exactly one of classic and
// consumer is set.
type group struct {
	name     string
	classic  *classicGroup
	consumer *consumerGroup
	offsets  map[tp]offset
	// pending holds the offsets committed in open transactions, by
	// producer id (txnoffsets.go).
	pending map[int64]map[tp]offset
	// emptySince is when the group last became empty (or was created
	// empty): offsets retention counts from it.
	emptySince time.Time
}

func (g *group) typeName() string {
	if g.consumer != nil {
		return "consumer"
	}
	return "classic"
}

func (g *group) isEmpty() bool {
	if g.consumer != nil {
		return len(g.consumer.members) == 0
	}
	return len(g.classic.members) == 0
}

func (g *group) state() string {
	if g.consumer != nil {
		return g.consumer.state()
	}
	return g.classic.state.String()
}

func (g *group) protocolType() string {
	if g.consumer != nil {
		return "consumer"
	}
	return g.classic.protocolType
}

func (g *group) record() groupRecord {
	r := groupRecord{Type: g.typeName(), EmptySince: g.emptySince}
	if g.consumer != nil {
		r.Generation = g.consumer.epoch
		return r
	}
	r.ProtocolType, r.Protocol, r.Generation = g.classic.protocolType, g.classic.protocol, g.classic.generation
	return r
}

// Coordinator is the group coordinator of one broker. Its methods are
// safe for concurrent use.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	store *store

	mu     sync.Mutex
	groups map[string]*group

	done chan struct{}
	wg   sync.WaitGroup
}

// Open opens the store in cfg.Dir, loads the groups and offsets in it, and
// starts expiring offsets of groups empty for longer than the retention.
func Open(cfg Config) (*Coordinator, error) {
	if cfg.Topics == nil {
		return nil, errors.New("group: Config.Topics is required")
	}
	if cfg.OffsetsRetention <= 0 {
		cfg.OffsetsRetention = defaultOffsetsRetention
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := openStore(cfg.Dir, cfg.FS, cfg.Logger)
	if err != nil {
		return nil, err
	}
	loaded, err := st.load()
	if err != nil {
		return nil, errors.Join(err, st.close())
	}
	records, offsets := loaded.groups, loaded.offsets
	c := &Coordinator{cfg: cfg, log: cfg.Logger, store: st, groups: make(map[string]*group), done: make(chan struct{})}
	for name, r := range records {
		g := &group{name: name, emptySince: r.EmptySince, offsets: offsets[name]}
		if r.Type == "consumer" {
			g.consumer = newConsumerGroup()
			g.consumer.epoch = r.Generation
			g.consumer.assignmentEpoch = r.Generation
		} else {
			g.classic = newClassicGroup()
			g.classic.protocolType, g.classic.protocol, g.classic.generation = r.ProtocolType, r.Protocol, r.Generation
		}
		c.groups[name] = g
	}
	for name, offs := range offsets {
		if _, ok := c.groups[name]; !ok {
			// Offsets committed by a simple consumer before its group
			// record: keep them in an empty classic group.
			c.groups[name] = &group{name: name, classic: newClassicGroup(), offsets: offs, emptySince: time.Now()}
		}
	}
	for name, pend := range loaded.pending {
		if _, ok := c.groups[name]; !ok {
			c.groups[name] = &group{name: name, classic: newClassicGroup(), emptySince: time.Now()}
		}
		c.groups[name].pending = pend
	}
	for _, g := range c.groups {
		if g.offsets == nil {
			g.offsets = make(map[tp]offset)
		}
	}
	c.log.Info("group coordinator open", "dir", cfg.Dir, "groups", len(c.groups), "skipped_records", loaded.skipped)
	c.wg.Add(1)
	go c.expireLoop()
	return c, nil
}

// Close stops the coordinator and closes its store. Requests waiting in
// JoinGroup or SyncGroup are answered with COORDINATOR_NOT_AVAILABLE.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return nil
	default:
	}
	close(c.done)
	for _, g := range c.groups {
		g.stopTimers()
	}
	c.mu.Unlock()
	c.wg.Wait()
	return c.store.close()
}

func (g *group) stopTimers() {
	if g.classic != nil {
		g.classic.stopTimers()
	} else {
		g.consumer.stopTimers()
	}
}

// apiVersions are the versions served, those of Kafka 4.0 capped at what
// kmsg encodes. OffsetCommit and OffsetFetch stop before v10, which names
// topics by id.
var apiVersions = map[int16][2]int16{
	kmsg.OffsetCommit.Int16():           {2, 9},
	kmsg.OffsetFetch.Int16():            {1, 9},
	kmsg.JoinGroup.Int16():              {0, 9},
	kmsg.Heartbeat.Int16():              {0, 4},
	kmsg.LeaveGroup.Int16():             {0, 5},
	kmsg.SyncGroup.Int16():              {0, 5},
	kmsg.DescribeGroups.Int16():         {0, 6},
	kmsg.ListGroups.Int16():             {0, 5},
	kmsg.DeleteGroups.Int16():           {0, 2},
	kmsg.OffsetDelete.Int16():           {0, 0},
	kmsg.ConsumerGroupHeartbeat.Int16(): {0, 1},
	kmsg.ConsumerGroupDescribe.Int16():  {0, 1},
}

// Handles reports whether the coordinator serves requests with API key key.
func (c *Coordinator) Handles(key int16) bool {
	_, ok := apiVersions[key]
	return ok
}

// SupportedVersions reports the versions of key to advertise in
// ApiVersions.
func (c *Coordinator) SupportedVersions(key int16) (minVersion, maxVersion int16) {
	v := apiVersions[key]
	return v[0], v[1]
}

// Handle serves one request and returns its response at the request's
// version. JoinGroup and SyncGroup wait for the rest of the group; ctx
// ends the wait when the connection closes or the broker stops.
func (c *Coordinator) Handle(ctx context.Context, from Client, req kmsg.Request) kmsg.Response {
	var resp kmsg.Response
	switch r := req.(type) {
	case *kmsg.OffsetCommitRequest:
		resp = c.offsetCommit(r)
	case *kmsg.OffsetFetchRequest:
		resp = c.offsetFetch(r)
	case *kmsg.OffsetDeleteRequest:
		resp = c.offsetDelete(r)
	case *kmsg.JoinGroupRequest:
		resp = c.joinGroup(ctx, from, r)
	case *kmsg.SyncGroupRequest:
		resp = c.syncGroup(ctx, r)
	case *kmsg.HeartbeatRequest:
		resp = c.heartbeat(r)
	case *kmsg.LeaveGroupRequest:
		resp = c.leaveGroup(r)
	case *kmsg.DescribeGroupsRequest:
		resp = c.describeGroups(r)
	case *kmsg.ListGroupsRequest:
		resp = c.listGroups(r)
	case *kmsg.DeleteGroupsRequest:
		resp = c.deleteGroups(r)
	case *kmsg.ConsumerGroupHeartbeatRequest:
		resp = c.consumerHeartbeat(from, r)
	case *kmsg.ConsumerGroupDescribeRequest:
		resp = c.consumerDescribe(r)
	default:
		c.log.Error("request not served by the group coordinator", "key", req.Key())
		return nil
	}
	resp.SetVersion(req.GetVersion())
	return resp
}

// checkGroupID rejects a group id that cannot be stored: an empty one,
// as Kafka does, and one longer than MaxGroupIDBytes.
func checkGroupID(name string) *kerr.Error {
	if name == "" || len(name) > MaxGroupIDBytes {
		return kerr.InvalidGroupID
	}
	return nil
}

// reserved reports whether another kind of group holds name.
func (c *Coordinator) reserved(name string) bool {
	return c.cfg.Reserved != nil && c.cfg.Reserved(name)
}

// Exists reports whether a consumer or classic group of that name exists,
// so that a share group cannot take its name.
func (c *Coordinator) Exists(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.groups[name]
	return ok
}

// ConnClosed is called when a client connection goes away. Members of
// either protocol outlive their connection: they leave or time out.
func (c *Coordinator) ConnClosed(uint64) {}

// TopicsChanged recomputes what depends on the topics after topics were
// created, deleted or grew: consumer groups' target assignments and regex
// subscriptions, and committed offsets of topics that no longer exist.
func (c *Coordinator) TopicsChanged() {
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.store.batch()
	for _, g := range c.groups {
		for p, o := range g.offsets {
			t, ok := topics[p.topic]
			if ok && (o.TopicID == [16]byte{} || t.ID == o.TopicID) && p.partition < t.Partitions {
				continue
			}
			delete(g.offsets, p)
			b.deleteOffset(g.name, p)
		}
		if g.consumer != nil {
			c.updateTargetLocked(g, topics)
		}
	}
	if err := b.commit(); err != nil {
		c.log.Error("drop offsets of deleted topics", "err", err)
	}
}

// expireLoop periodically drops the offsets of groups empty for longer
// than the retention, and the groups with them.
func (c *Coordinator) expireLoop() {
	defer c.wg.Done()
	every := min(max(c.cfg.OffsetsRetention/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case now := <-t.C:
			c.expireOffsets(now)
		}
	}
}

// expireOffsets applies the offsets retention: Kafka's rule since KIP-211
// is that the offsets of a group expire together once the group has been
// empty for the retention; a group without a protocol (offsets committed
// by simple consumers or tools) expires each offset from its commit.
func (c *Coordinator) expireOffsets(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.store.batch()
	var expired []string
	for _, g := range c.groups {
		if !g.isEmpty() {
			continue
		}
		simple := g.classic != nil && g.classic.protocolType == ""
		for p, o := range g.offsets {
			since := g.emptySince
			if simple || o.Committed.After(since) {
				since = o.Committed
			}
			if now.Sub(since) >= c.cfg.OffsetsRetention {
				delete(g.offsets, p)
				b.deleteOffset(g.name, p)
			}
		}
		if len(g.offsets) == 0 && now.Sub(g.emptySince) >= c.cfg.OffsetsRetention {
			expired = append(expired, g.name)
			c.removeGroupLocked(g, b)
		}
	}
	if err := b.commit(); err != nil {
		c.log.Error("expire offsets", "err", err)
		return
	}
	if len(expired) > 0 {
		slices.Sort(expired)
		c.log.Info("expired empty groups", "groups", expired)
	}
}

// removeGroupLocked forgets a group and queues the deletion of its state.
func (c *Coordinator) removeGroupLocked(g *group, b *batch) {
	g.stopTimers()
	if g.classic != nil {
		g.classic.state = stateDead
	}
	for p := range g.offsets {
		b.deleteOffset(g.name, p)
	}
	for pid, offs := range g.pending {
		for p := range offs {
			b.deletePending(g.name, pid, p)
		}
	}
	b.deleteGroup(g.name)
	delete(c.groups, g.name)
}

// persistLocked writes the group record.
func (c *Coordinator) persistLocked(g *group) {
	b := c.store.batch()
	b.putGroup(g.name, g.record())
	if err := b.commit(); err != nil {
		c.log.Error("persist group", "group", g.name, "err", err)
	}
}

// closing reports whether Close has begun.
func (c *Coordinator) closing() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// newMemberID returns a member id as Kafka forms them: the client id, a
// dash and a random UUID.
func newMemberID(clientID string) string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	id := h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	if clientID == "" {
		return id
	}
	return clientID + "-" + id
}

// groupConfigDuration reads a millisecond group config, falling back to def.
func (c *Coordinator) groupConfigDuration(group, name string, def time.Duration) time.Duration {
	if c.cfg.GroupConfig == nil {
		return def
	}
	v, ok := c.cfg.GroupConfig(group)[name]
	if !ok {
		return def
	}
	ms, err := strconv.ParseInt(v, 10, 32)
	if err != nil || ms <= 0 {
		c.log.Warn("ignoring invalid group config", "group", group, "config", name, "value", v)
		return def
	}
	return time.Duration(ms) * time.Millisecond
}

// errMessage formats an error message for responses that carry one.
func errMessage(format string, args ...any) *string {
	s := fmt.Sprintf(format, args...)
	return &s
}
