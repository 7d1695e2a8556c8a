// Package share is the broker's share-group coordinator (KIP-932): queue
// semantics on top of Kafka topics.
//
// A share group hands each record of its subscribed topics to one of its
// members at a time, with no limit on how many members read a partition.
// The coordinator keeps, per (group, topic, partition), a window of
// in-flight records from the share-partition start offset: each record is
// available, acquired by one member under a lock with a deadline,
// acknowledged, or archived. Members acknowledge records one by one
// (accept, release, reject, renew); a released record, or one whose lock
// expired or whose member went away, is delivered again until its
// delivery count reaches the group's limit, after which it is archived.
//
// The coordinator serves ShareGroupHeartbeat, ShareGroupDescribe,
// ShareFetch, ShareAcknowledge and the share-group offset admin requests
// for the broker, and answers for share groups in ListGroups and
// DeleteGroups. The durable part of every window (its start offset,
// acknowledged and archived records, delivery counts) is written to Pebble
// with an fsync before an acknowledgement is answered, so acknowledged
// records are never delivered again after a restart or a crash; locks are
// not durable, and acquired records become available again.
package share

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topic is what the coordinator needs to know of a topic.
type Topic struct {
	Name       string
	ID         [16]byte
	Partitions int32
}

// Client identifies the connection a request came on.
type Client struct {
	ConnID   uint64
	ClientID string
	Host     string
}

// Log is what the coordinator needs of a partition log.
type Log interface {
	// Read appends whole record batches from the one containing offset,
	// up to maxBytes but at least one batch, to dst.
	Read(offset int64, maxBytes int32, dst []byte) ([]byte, error)
	// StartOffset is the first offset Read may ask for.
	StartOffset() int64
	// HighWatermark is the offset of the first record not yet readable.
	HighWatermark() int64
	// LastStableOffset is the first offset of the earliest open
	// transaction, or HighWatermark if lower.
	LastStableOffset() int64
	// FetchCommitted is Read below the last stable offset, with the
	// aborted transactions among the batches it returns.
	FetchCommitted(offset int64, maxBytes int32, dst []byte) ([]byte, commitlog.Bounds, []commitlog.AbortedTxn, error)
	// Changed is closed when the high watermark next advances.
	Changed() <-chan struct{}
	// OffsetForTimestamp returns the first offset with a timestamp at or
	// after ts, with that timestamp, or false if there is none.
	OffsetForTimestamp(ts int64) (offset, timestamp int64, ok bool)
}

// Logs finds partition logs.
type Logs interface {
	// Partition returns the log of a partition, or nil if it is unknown.
	Partition(topic string, partition int32) Log
}

// Config configures a Coordinator.
type Config struct {
	// Dir is the Pebble directory for durable share-partition state.
	Dir string
	// FS is the file system the store lives on. Nil means the operating
	// system's; tests pass a vfs.NewStrictMem to simulate power loss.
	FS vfs.FS
	// Topics returns the current topics by name.
	Topics func() map[string]Topic
	// Logs gives access to partition logs.
	Logs Logs
	// GroupConfig returns the GROUP resource configs set for a group;
	// keys not set take Kafka's defaults.
	GroupConfig func(group string) map[string]string
	// IsConsumerGroup reports whether a consumer group of that name
	// exists, which a share group may not share its name with.
	IsConsumerGroup func(group string) bool
	// Logger receives the coordinator's logs; nil is slog.Default().
	Logger *slog.Logger
}

// Limits that Kafka sets at broker level; Riffle fixes them.
const (
	// maxRecordLocks caps the acquired records of one share partition
	// (group.share.partition.max.record.locks).
	maxRecordLocks = 2000
	// defaultMaxRecords is what a ShareFetch without MaxRecords gets.
	defaultMaxRecords = 500
	// maxGroupIDBytes is the longest group id accepted, as the consumer
	// group coordinator's limit: the longest string Kafka's own group
	// records can hold (an int16 length). A longer one is answered with
	// INVALID_GROUP_ID before anything is stored.
	maxGroupIDBytes = 1<<15 - 1
	// maxWindowRecords caps the records one share partition tracks from
	// its start offset, acknowledged ones behind a record still locked
	// included; the store refuses to decode a longer window.
	maxWindowRecords = 1 << 20
	// sweepInterval is how often expired locks and members are swept.
	sweepInterval = 100 * time.Millisecond
)

// Coordinator is the share-group coordinator. Its methods are safe for
// concurrent use.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	store *store

	mu       sync.Mutex
	groups   map[string]*group
	sessions map[sessionKey]*session
	wake     chan struct{} // closed when records may have become available
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// topicPartition names a partition by topic name.
type topicPartition struct {
	topic     string
	partition int32
}

// sharePartition is one (group, topic, partition) of a share group.
type sharePartition struct {
	topicID [16]byte
	win     window
	dirty   bool // changed in a way that must be written before answering
}

// Open opens the store in cfg.Dir, loads the share groups in it, and
// starts sweeping expired locks and members.
func Open(cfg Config) (*Coordinator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := openStore(cfg.Dir, cfg.FS, cfg.Logger)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    st,
		groups:   make(map[string]*group),
		sessions: make(map[sessionKey]*session),
		wake:     make(chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	names, parts, skipped, err := st.load()
	if err != nil {
		st.close()
		return nil, fmt.Errorf("load share groups: %w", err)
	}
	for _, name := range names {
		c.groups[name] = newGroup(name)
	}
	for _, sp := range parts {
		g := c.groups[sp.group]
		if g == nil {
			g = newGroup(sp.group)
			c.groups[sp.group] = g
		}
		g.parts[sp.tp] = &sharePartition{topicID: sp.topicID, win: sp.win}
	}
	c.log.Info("share groups loaded", "groups", len(c.groups), "partitions", len(parts), "skipped_records", skipped)
	go c.sweepLoop()
	return c, nil
}

// Close stops the sweeper and closes the store. Acquired records are not
// written: they are available again when the coordinator next opens.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.wakeLocked()
	c.mu.Unlock()
	close(c.stop)
	<-c.done
	return c.store.close()
}

// versions lists the requests the coordinator serves and their versions:
// those of Kafka 4.1+ and franz-go's share consumer.
var versions = map[int16][2]int16{
	kmsg.ShareGroupHeartbeat.Int16():       {1, 1},
	kmsg.ShareGroupDescribe.Int16():        {1, 1},
	kmsg.ShareFetch.Int16():                {1, 2},
	kmsg.ShareAcknowledge.Int16():          {1, 2},
	kmsg.DescribeShareGroupOffsets.Int16(): {0, 1},
	kmsg.AlterShareGroupOffsets.Int16():    {0, 0},
	kmsg.DeleteShareGroupOffsets.Int16():   {0, 0},
}

// Handles reports whether the coordinator serves requests of key.
func (c *Coordinator) Handles(key int16) bool {
	_, ok := versions[key]
	return ok
}

// SupportedVersions returns the versions of key the coordinator serves.
func (c *Coordinator) SupportedVersions(key int16) (lo, hi int16) {
	v := versions[key]
	return v[0], v[1]
}

// Handle serves one request of a key for which Handles is true. ShareFetch
// may wait up to its MaxWaitMillis, or until ctx ends, so the broker should
// run it off the connection's read loop.
func (c *Coordinator) Handle(ctx context.Context, from Client, req kmsg.Request) kmsg.Response {
	switch r := req.(type) {
	case *kmsg.ShareGroupHeartbeatRequest:
		return c.heartbeat(from, r)
	case *kmsg.ShareGroupDescribeRequest:
		return c.describe(r)
	case *kmsg.ShareFetchRequest:
		return c.shareFetch(ctx, from, r)
	case *kmsg.ShareAcknowledgeRequest:
		return c.shareAcknowledge(from, r)
	case *kmsg.DescribeShareGroupOffsetsRequest:
		return c.describeOffsets(r)
	case *kmsg.AlterShareGroupOffsetsRequest:
		return c.alterOffsets(r)
	case *kmsg.DeleteShareGroupOffsetsRequest:
		return c.deleteOffsets(r)
	}
	panic(fmt.Sprintf("share coordinator: unexpected request %T", req))
}

// TopicsChanged is called after topics are created, deleted or grow
// partitions: assignments follow, and state of deleted topics goes.
func (c *Coordinator) TopicsChanged() {
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.store.batch()
	for name, g := range c.groups {
		for tp, sp := range g.parts {
			if t, ok := topics[tp.topic]; ok && t.ID == sp.topicID && tp.partition < t.Partitions {
				continue
			}
			delete(g.parts, tp)
			b.deletePartition(name, tp)
		}
		g.assign(topics)
	}
	if err := b.commit(); err != nil {
		c.log.Error("drop share state of deleted topics", "err", err)
	}
	c.wakeLocked()
}

// checkGroupID rejects a group id that cannot be stored: empty, or
// longer than maxGroupIDBytes.
func checkGroupID(group string) *kerr.Error {
	if group == "" || len(group) > maxGroupIDBytes {
		return kerr.InvalidGroupID
	}
	return nil
}

// wakeLocked wakes every ShareFetch waiting for records.
func (c *Coordinator) wakeLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// sweepLoop releases expired locks and removes members whose session
// timed out.
func (c *Coordinator) sweepLoop() {
	defer close(c.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.sweep(now)
		}
	}
}

func (c *Coordinator) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	freed := false
	b := c.store.batch()
	for name, g := range c.groups {
		gc := c.groupConfig(name)
		for id, m := range g.members {
			if now.Sub(m.lastSeen) > gc.sessionTimeout {
				c.log.Info("share group member timed out", "group", name, "member", id)
				c.removeMemberLocked(g, id)
				freed = true
			}
		}
		for tp, sp := range g.parts {
			if sp.win.expire(now, gc.deliveryLimit) {
				sp.win.advance()
				b.putPartition(name, tp, sp)
				freed = true
			}
		}
	}
	if err := b.commit(); err != nil {
		c.log.Error("write share state after lock expiry", "err", err)
	}
	if freed {
		c.wakeLocked()
	}
}

// ConnClosed ends the share sessions of a connection: the records their
// members hold become available to others.
func (c *Coordinator) ConnClosed(connID uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.store.batch()
	for k, s := range c.sessions {
		if s.connID != connID {
			continue
		}
		delete(c.sessions, k)
		if g := c.groups[k.group]; g != nil {
			c.releaseMemberLocked(g, k.member, b)
		}
	}
	if err := b.commit(); err != nil {
		c.log.Error("write share state after connection close", "err", err)
	}
	c.wakeLocked()
}

// releaseMemberLocked releases every record member holds in g.
func (c *Coordinator) releaseMemberLocked(g *group, member string, b batch) {
	limit := c.groupConfig(g.id).deliveryLimit
	for tp, sp := range g.parts {
		if sp.win.releaseMember(member, limit) {
			sp.win.advance()
			b.putPartition(g.id, tp, sp)
		}
	}
}

// removeMemberLocked takes a member out of its group, ending its sessions
// and releasing its records.
func (c *Coordinator) removeMemberLocked(g *group, member string) {
	delete(g.members, member)
	delete(c.sessions, sessionKey{group: g.id, member: member})
	b := c.store.batch()
	c.releaseMemberLocked(g, member, b)
	if err := b.commit(); err != nil {
		c.log.Error("write share state after member left", "group", g.id, "member", member, "err", err)
	}
	g.epoch++
	g.assign(c.cfg.Topics())
}

// groupSettings are a group's effective share configs.
type groupSettings struct {
	lockDuration      time.Duration // share.record.lock.duration.ms
	deliveryLimit     int16         // share.delivery.count.limit
	sessionTimeout    time.Duration // share.session.timeout.ms
	heartbeatInterval time.Duration // share.heartbeat.interval.ms
	offsetReset       string        // share.auto.offset.reset
	readCommitted     bool          // share.isolation.level=read_committed
}

// groupConfig reads a group's configs, with Kafka's defaults for keys not
// set.
func (c *Coordinator) groupConfig(group string) groupSettings {
	var kv map[string]string
	if c.cfg.GroupConfig != nil {
		kv = c.cfg.GroupConfig(group)
	}
	num := func(key string, def int64) int64 {
		if v, ok := kv[key]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				return n
			}
		}
		return def
	}
	s := groupSettings{
		lockDuration:      time.Duration(num("share.record.lock.duration.ms", 30000)) * time.Millisecond,
		deliveryLimit:     int16(min(num("share.delivery.count.limit", 5), 1<<15-1)),
		sessionTimeout:    time.Duration(num("share.session.timeout.ms", 45000)) * time.Millisecond,
		heartbeatInterval: time.Duration(num("share.heartbeat.interval.ms", 5000)) * time.Millisecond,
		offsetReset:       "latest",
	}
	if v, ok := kv["share.auto.offset.reset"]; ok {
		s.offsetReset = v
	}
	s.readCommitted = kv["share.isolation.level"] == "read_committed"
	return s
}

// initialOffset is where a share partition without state starts, by the
// group's share.auto.offset.reset.
func initialOffset(l Log, reset string, now time.Time) int64 {
	switch {
	case reset == "earliest":
		return l.StartOffset()
	case strings.HasPrefix(reset, "by_duration:"):
		d, err := parseISODuration(strings.TrimPrefix(reset, "by_duration:"))
		if err != nil {
			return l.HighWatermark()
		}
		if off, _, ok := l.OffsetForTimestamp(now.Add(-d).UnixMilli()); ok {
			return off
		}
	}
	return l.HighWatermark()
}

// parseISODuration parses the ISO-8601 durations Kafka accepts for
// by_duration: PnDTnHnMnS, each part optional.
func parseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok || rest == "" {
		return 0, fmt.Errorf("duration %q does not start with P", s)
	}
	var d time.Duration
	inTime, parts := false, 0
	for rest != "" {
		if rest[0] == 'T' {
			inTime, rest = true, rest[1:]
			continue
		}
		i := strings.IndexFunc(rest, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i <= 0 {
			return 0, fmt.Errorf("duration %q: expected a number", s)
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		unit := map[bool]map[byte]time.Duration{
			false: {'D': 24 * time.Hour, 'W': 7 * 24 * time.Hour},
			true:  {'H': time.Hour, 'M': time.Minute, 'S': time.Second},
		}[inTime][rest[i]]
		if unit == 0 {
			return 0, fmt.Errorf("duration %q: unknown unit %q", s, rest[i])
		}
		d += time.Duration(n * float64(unit))
		rest = rest[i+1:]
		parts++
	}
	if parts == 0 {
		return 0, fmt.Errorf("duration %q has no parts", s)
	}
	return d, nil
}

// GroupListing is a share group as ListGroups shows it.
type GroupListing struct {
	Group string
	State string // Empty or Stable
}

// ListGroups lists the share groups, sorted by name.
func (c *Coordinator) ListGroups() []GroupListing {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]GroupListing, 0, len(c.groups))
	for _, name := range slices.Sorted(maps.Keys(c.groups)) {
		out = append(out, GroupListing{Group: name, State: c.groups[name].state()})
	}
	return out
}

// IsShareGroup reports whether a share group of that name exists, which
// a consumer group may not share its name with.
func (c *Coordinator) IsShareGroup(group string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.groups[group]
	return ok
}

// DeleteGroup deletes a share group with no members and its state. It
// reports handled false if no share group has that name, so the broker
// can ask the consumer-group coordinator; otherwise errorCode is 0 or
// NON_EMPTY_GROUP.
func (c *Coordinator) DeleteGroup(group string) (handled bool, errorCode int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[group]
	if g == nil {
		return false, 0
	}
	if len(g.members) > 0 {
		return true, kerr.NonEmptyGroup.Code
	}
	b := c.store.batch()
	b.deleteGroup(group)
	if err := b.commit(); err != nil {
		c.log.Error("delete share group", "group", group, "err", err)
		return true, kerr.KafkaStorageError.Code
	}
	delete(c.groups, group)
	return true, 0
}
