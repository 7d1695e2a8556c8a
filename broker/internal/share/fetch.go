package share

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/riffle-stream/riffle/broker/internal/commitlog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionKey identifies a share session: one per member on this broker.
type sessionKey struct{ group, member string }

// topicIDPartition names a partition by topic id, as share requests do.
type topicIDPartition struct {
	id        [16]byte
	partition int32
}

// session is a share session (KIP-932): the partitions a member fetches,
// sent once and then changed incrementally, and the epoch its next
// request must carry. It belongs to the connection that opened it.
type session struct {
	connID uint64
	epoch  int32
	parts  map[topicIDPartition]bool // true: must appear in the next response
}

// bump advances the epoch after a request, wrapping to 1 as Kafka does.
func (s *session) bump() {
	if s.epoch == 1<<31-1 {
		s.epoch = 1
		return
	}
	s.epoch++
}

// ackBatch is one acknowledgement batch of either request kind.
type ackBatch struct {
	first, last int64
	types       []int8
}

// partitionResult collects what a request did to one partition.
type partitionResult struct {
	errCode    int16
	ackErrCode int16
	records    []byte
	acquired   []offsetRange
	touched    bool
}

// results maps a request's partitions to their results.
type results map[topicIDPartition]*partitionResult

func (r results) get(tp topicIDPartition) *partitionResult {
	pr := r[tp]
	if pr == nil {
		pr = &partitionResult{}
		r[tp] = pr
	}
	pr.touched = true
	return pr
}

// topicsByID indexes topics by id.
func topicsByID(topics map[string]Topic) map[[16]byte]Topic {
	out := make(map[[16]byte]Topic, len(topics))
	for _, t := range topics {
		out[t.ID] = t
	}
	return out
}

// ackErrorCode maps an acknowledgement error to its Kafka code.
func ackErrorCode(err error) int16 {
	if errors.Is(err, errInvalidRequest) {
		return kerr.InvalidRequest.Code
	}
	return kerr.InvalidRecordState.Code
}

// ackLocked validates and applies one partition's acknowledgement batches
// for member: all or none. The write goes into b, which the caller
// commits before answering.
func (c *Coordinator) ackLocked(g *group, byID map[[16]byte]Topic, member string, tp topicIDPartition, batches []ackBatch, maxType int8, b batch) int16 {
	t, ok := byID[tp.id]
	if !ok {
		return kerr.UnknownTopicID.Code
	}
	key := topicPartition{topic: t.Name, partition: tp.partition}
	sp := g.parts[key]
	if sp == nil || sp.topicID != tp.id {
		return kerr.InvalidRecordState.Code
	}
	prevEnd := int64(-1)
	for _, ab := range batches {
		if ab.first <= prevEnd {
			return kerr.InvalidRequest.Code
		}
		if err := sp.win.checkAck(member, ab.first, ab.last, ab.types, maxType); err != nil {
			return ackErrorCode(err)
		}
		prevEnd = ab.last
	}
	gc := c.groupConfig(g.id)
	lockUntil := time.Now().Add(gc.lockDuration)
	freed := false
	for _, ab := range batches {
		freed = sp.win.ack(member, ab.first, ab.last, ab.types, gc.deliveryLimit, lockUntil) || freed
	}
	sp.win.advance()
	b.putPartition(g.id, key, sp)
	if freed {
		c.wakeLocked()
	}
	return 0
}

// groupLocked returns the named group, creating it durably if needed.
func (c *Coordinator) groupLocked(name string) (*group, error) {
	if g := c.groups[name]; g != nil {
		return g, nil
	}
	b := c.store.batch()
	b.putGroup(name)
	if err := b.commit(); err != nil {
		return nil, fmt.Errorf("create share group %s: %w", name, err)
	}
	g := newGroup(name)
	c.groups[name] = g
	return g, nil
}

// checkShareRequest validates what ShareFetch and ShareAcknowledge share.
func (c *Coordinator) checkShareRequest(group, member *string) (string, string, *kerr.Error) {
	if group == nil {
		return "", "", kerr.InvalidGroupID
	}
	if err := checkGroupID(*group); err != nil {
		return "", "", err
	}
	if member == nil || *member == "" || len(*member) > 36 {
		return "", "", kerr.InvalidRequest
	}
	if c.cfg.IsConsumerGroup != nil && c.cfg.IsConsumerGroup(*group) {
		return "", "", kerr.GroupIDNotFound
	}
	return *group, *member, nil
}

// sessionLocked validates a request's session epoch against the member's
// session: 0 opens a new one, -1 closes it, anything else must match.
func (c *Coordinator) sessionLocked(key sessionKey, epoch int32, connID uint64) (*session, *kerr.Error) {
	switch epoch {
	case 0:
		s := &session{connID: connID, parts: make(map[topicIDPartition]bool)}
		c.sessions[key] = s
		return s, nil
	}
	s := c.sessions[key]
	if s == nil {
		return nil, kerr.ShareSessionNotFound
	}
	if epoch != -1 && epoch != s.epoch {
		return nil, kerr.InvalidShareSessionEpoch
	}
	return s, nil
}

// shareFetch serves ShareFetch: acknowledgements first, then the session
// update, then records acquired from the session's partitions, waiting up
// to MaxWaitMillis for some to be available.
func (c *Coordinator) shareFetch(ctx context.Context, from Client, req *kmsg.ShareFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ShareFetchResponse)
	groupID, memberID, kerrv := c.checkShareRequest(req.GroupID, req.MemberID)
	if kerrv != nil {
		resp.ErrorCode = kerrv.Code
		return resp
	}
	renew := req.Version >= 2 && req.IsRenewAck
	maxType := ackReject
	if renew {
		maxType = ackRenew
		if req.MaxBytes != 0 || req.MinBytes != 0 || req.MaxRecords != 0 || req.MaxWaitMillis != 0 {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return resp
		}
	}
	acks := make(map[topicIDPartition][]ackBatch)
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			for _, ab := range p.AcknowledgementBatches {
				tp := topicIDPartition{t.TopicID, p.Partition}
				acks[tp] = append(acks[tp], ackBatch{ab.FirstOffset, ab.LastOffset, ab.AcknowledgeTypes})
			}
		}
	}
	if req.ShareSessionEpoch == 0 && len(acks) > 0 {
		resp.ErrorCode = kerr.InvalidRequest.Code
		return resp
	}
	topics := c.cfg.Topics()
	byID := topicsByID(topics)
	key := sessionKey{groupID, memberID}
	res := make(results)

	c.mu.Lock()
	gc := c.groupConfig(groupID)
	resp.AcquisitionLockTimeoutMillis = int32(gc.lockDuration.Milliseconds())
	g, err := c.groupLocked(groupID)
	if err != nil {
		c.mu.Unlock()
		c.log.Error("share fetch", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	s, kerrv := c.sessionLocked(key, req.ShareSessionEpoch, from.ConnID)
	if kerrv != nil {
		c.mu.Unlock()
		resp.ErrorCode = kerrv.Code
		return resp
	}
	b := c.store.batch()
	for tp, batches := range acks {
		res.get(tp).ackErrCode = c.ackLocked(g, byID, memberID, tp, batches, maxType, b)
	}
	if req.ShareSessionEpoch == -1 {
		delete(c.sessions, key)
		c.releaseMemberLocked(g, memberID, b)
		c.wakeLocked()
	} else {
		for _, t := range req.Topics {
			for _, p := range t.Partitions {
				tp := topicIDPartition{t.TopicID, p.Partition}
				if _, ok := s.parts[tp]; !ok && !renew {
					s.parts[tp] = true
				}
			}
		}
		for _, f := range req.ForgottenTopicsData {
			for _, p := range f.Partitions {
				delete(s.parts, topicIDPartition{f.TopicID, p})
			}
		}
		s.bump()
	}
	dirty, err := b.apply()
	if err != nil {
		c.mu.Unlock()
		c.log.Error("share fetch: write acknowledgements", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		return resp
	}
	if req.ShareSessionEpoch == -1 || renew {
		c.mu.Unlock()
		return c.syncedResponse(resp, res, dirty)
	}

	maxRecords := int(req.MaxRecords)
	if maxRecords <= 0 {
		maxRecords = defaultMaxRecords
	}
	deadline := time.Now().Add(time.Duration(req.MaxWaitMillis) * time.Millisecond)
	var timer *time.Timer
	for {
		n, wrote, wait := c.acquireLocked(g, topics, byID, memberID, s, res, maxRecords, req.MaxBytes, gc)
		dirty = dirty || wrote
		if n > 0 || c.closed || c.sessions[key] != s || time.Until(deadline) <= 0 {
			break
		}
		wait = append(wait, c.wake)
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		cases := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)},
		}
		for _, ch := range wait {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		i, _, _ := reflect.Select(cases)
		c.mu.Lock()
		if i < 2 {
			break
		}
	}
	for tp, need := range s.parts {
		if need {
			res.get(tp)
			s.parts[tp] = false
		}
	}
	c.mu.Unlock()
	return c.syncedResponse(resp, res, dirty)
}

// syncedResponse makes what the request wrote durable, then fills the
// response; if the write fails, nothing the request acknowledged stands.
func (c *Coordinator) syncedResponse(resp *kmsg.ShareFetchResponse, res results, dirty bool) kmsg.Response {
	if dirty {
		if err := c.store.sync(); err != nil {
			c.log.Error("share fetch: sync", "err", err)
			resp.ErrorCode = kerr.KafkaStorageError.Code
			return resp
		}
	}
	return c.fetchResponse(resp, res)
}

// fetchResponse fills a ShareFetch response from the partition results.
func (c *Coordinator) fetchResponse(resp *kmsg.ShareFetchResponse, res results) kmsg.Response {
	byTopic := make(map[[16]byte][]topicIDPartition)
	for tp, pr := range res {
		if pr.touched {
			byTopic[tp.id] = append(byTopic[tp.id], tp)
		}
	}
	for _, id := range slices.SortedFunc(maps.Keys(byTopic), func(a, b [16]byte) int { return slices.Compare(a[:], b[:]) }) {
		rt := kmsg.NewShareFetchResponseTopic()
		rt.TopicID = id
		tps := byTopic[id]
		slices.SortFunc(tps, func(a, b topicIDPartition) int { return int(a.partition - b.partition) })
		for _, tp := range tps {
			pr := res[tp]
			rp := kmsg.NewShareFetchResponseTopicPartition()
			rp.Partition, rp.ErrorCode, rp.AcknowledgeErrorCode = tp.partition, pr.errCode, pr.ackErrCode
			rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = -1, -1
			rp.Records = pr.records
			if rp.Records == nil {
				rp.Records = []byte{}
			}
			for _, r := range pr.acquired {
				ar := kmsg.NewShareFetchResponseTopicPartitionAcquiredRecord()
				ar.FirstOffset, ar.LastOffset, ar.DeliveryCount = r.first, r.last, r.deliveries
				rp.AcquiredRecords = append(rp.AcquiredRecords, ar)
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// acquireLocked acquires up to maxRecords records for member from the
// session's partitions, starting at a partition that rotates with the
// session epoch. It returns how many it acquired, whether it applied
// writes that need a sync, and, when it acquired none, the channels that
// signal appends to those partitions.
func (c *Coordinator) acquireLocked(g *group, topics map[string]Topic, byID map[[16]byte]Topic, member string, s *session, res results, maxRecords int, maxBytes int32, gc groupSettings) (int, bool, []<-chan struct{}) {
	tps := slices.SortedFunc(maps.Keys(s.parts), func(a, b topicIDPartition) int {
		if d := slices.Compare(a.id[:], b.id[:]); d != 0 {
			return d
		}
		return int(a.partition - b.partition)
	})
	var wait []<-chan struct{}
	total := 0
	now := time.Now()
	b := c.store.batch()
	for i := range tps {
		tp := tps[(i+int(s.epoch))%len(tps)]
		t, ok := byID[tp.id]
		if !ok {
			res.get(tp).errCode = kerr.UnknownTopicID.Code
			continue
		}
		key := topicPartition{t.Name, tp.partition}
		l := c.cfg.Logs.Partition(t.Name, tp.partition)
		if l == nil || tp.partition >= topics[t.Name].Partitions {
			res.get(tp).errCode = kerr.UnknownTopicOrPartition.Code
			continue
		}
		wait = append(wait, l.Changed())
		if total >= maxRecords {
			continue
		}
		sp := c.partitionLocked(g, key, t.ID, l, gc, now, b)
		recs, ranges, err := acquire(sp, l, member, maxRecords-total, maxBytes, gc, now)
		if err != nil {
			c.log.Error("share fetch: read log", "group", g.id, "topic", t.Name, "partition", tp.partition, "err", err)
			res.get(tp).errCode = kerr.KafkaStorageError.Code
			continue
		}
		if len(ranges) == 0 {
			continue
		}
		pr := res.get(tp)
		pr.records, pr.acquired = recs, ranges
		for _, r := range ranges {
			total += int(r.last - r.first + 1)
		}
	}
	wrote, err := b.apply()
	if err != nil {
		c.log.Error("share fetch: write share partition state", "group", g.id, "err", err)
	}
	if total > 0 {
		return total, wrote, nil
	}
	return 0, wrote, wait
}

// partitionLocked returns a group's share partition, creating it at the
// group's share.auto.offset.reset position if it has none, and keeping it
// within the log.
func (c *Coordinator) partitionLocked(g *group, key topicPartition, id [16]byte, l Log, gc groupSettings, now time.Time, b batch) *sharePartition {
	sp := g.parts[key]
	if sp == nil || sp.topicID != id {
		sp = &sharePartition{topicID: id, win: window{start: initialOffset(l, gc.offsetReset, now)}}
		g.parts[key] = sp
		b.putPartition(g.id, key, sp)
	}
	changed := false
	if ls := l.StartOffset(); ls > sp.win.start {
		sp.win.skipTo(ls)
		changed = true
	}
	if le := l.HighWatermark(); le < sp.win.start {
		sp.win.reset(le)
		changed = true
	}
	if sp.win.expire(now, gc.deliveryLimit) {
		sp.win.advance()
		changed = true
	}
	if changed {
		b.putPartition(g.id, key, sp)
	}
	return sp
}

// Record batch header fields (magic v2) the coordinator reads.
const (
	batchHeaderSize = 61
	offBatchLength  = 8
	offAttributes   = 21
	offLastDelta    = 23
	offProducerID   = 43

	transactionalAttribute = 0x10
	controlAttribute       = 0x20
	batchLengthPrefix      = 12
)

// batchBounds returns the size, base and last offset of the batch at the
// start of data, and whether it is a control batch.
func batchBounds(data []byte) (size int, base, last int64, control bool, err error) {
	if len(data) < batchHeaderSize {
		return 0, 0, 0, false, fmt.Errorf("record batch header of %d bytes", len(data))
	}
	size = batchLengthPrefix + int(binary.BigEndian.Uint32(data[offBatchLength:]))
	if size < batchHeaderSize || size > len(data) {
		return 0, 0, 0, false, fmt.Errorf("record batch of %d bytes in %d", size, len(data))
	}
	base = int64(binary.BigEndian.Uint64(data))
	last = base + int64(int32(binary.BigEndian.Uint32(data[offLastDelta:])))
	control = binary.BigEndian.Uint16(data[offAttributes:])&controlAttribute != 0
	return size, base, last, control, nil
}

// inAborted reports whether the batch at the start of data, at offset
// base, is transactional and of one of the aborted transactions: one of
// its producer, begun at or before it, whose abort marker follows it.
func inAborted(data []byte, base int64, aborted []commitlog.AbortedTxn) bool {
	if len(aborted) == 0 || binary.BigEndian.Uint16(data[offAttributes:])&transactionalAttribute == 0 {
		return false
	}
	pid := int64(binary.BigEndian.Uint64(data[offProducerID:]))
	for _, a := range aborted {
		if a.ProducerID == pid && a.FirstOffset <= base && base < a.LastOffset {
			return true
		}
	}
	return false
}

// acquire locks up to budget records of sp for member: available records
// first, then records never delivered, never more than maxRecordLocks at
// once. Acquisition is by record, not by batch, so that many members can
// share one large batch. It returns the whole batches holding the
// acquired records and the acquired ranges.
func acquire(sp *sharePartition, l Log, member string, budget int, maxBytes int32, gc groupSettings, now time.Time) ([]byte, []offsetRange, error) {
	budget = min(budget, maxRecordLocks-sp.win.acquiredCount())
	if budget <= 0 {
		return nil, nil, nil
	}
	lockUntil := now.Add(gc.lockDuration)
	ranges := sp.win.acquireAvailable(member, budget, lockUntil)
	var out []byte
	lastOut := int64(-1)
	for _, r := range ranges {
		budget -= int(r.last - r.first + 1)
		for off := max(r.first, lastOut+1); off <= r.last; off = lastOut + 1 {
			data, err := l.Read(off, 1, nil)
			if err != nil {
				return nil, nil, fmt.Errorf("read offset %d: %w", off, err)
			}
			if len(data) == 0 {
				return nil, nil, fmt.Errorf("read offset %d: no batch", off)
			}
			size, _, last, _, err := batchBounds(data)
			if err != nil {
				return nil, nil, fmt.Errorf("read offset %d: %w", off, err)
			}
			out = append(out, data[:size]...)
			lastOut = last
		}
	}
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	// Under read_committed the window grows only below the last stable
	// offset, and the records of aborted transactions are archived as
	// they join it, like control records: they are never delivered.
	visible := l.HighWatermark
	if gc.readCommitted {
		visible = l.LastStableOffset
	}
	for tries := 0; budget > 0 && len(sp.win.recs) < maxWindowRecords && sp.win.end() < visible() && tries < 8 && int32(len(out)) < maxBytes; tries++ {
		var data []byte
		var aborted []commitlog.AbortedTxn
		var err error
		if gc.readCommitted {
			data, _, aborted, err = l.FetchCommitted(sp.win.end(), maxBytes-int32(len(out)), nil)
		} else {
			data, err = l.Read(sp.win.end(), maxBytes-int32(len(out)), nil)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read offset %d: %w", sp.win.end(), err)
		}
		for len(data) > 0 && budget > 0 && len(sp.win.recs) < maxWindowRecords {
			size, base, last, control, err := batchBounds(data)
			if err != nil {
				return nil, nil, fmt.Errorf("read offset %d: %w", sp.win.end(), err)
			}
			control = control || inAborted(data, base, aborted)
			if first := sp.win.end(); last >= first {
				last = min(last, first+int64(maxWindowRecords-len(sp.win.recs))-1)
				if !control {
					last = min(last, first+int64(budget)-1)
				}
				sp.win.extend(last, member, lockUntil, control)
				if !control {
					ranges = appendRange(ranges, offsetRange{first: first, last: last, deliveries: 1})
					budget -= int(last - first + 1)
					if last > lastOut {
						out = append(out, data[:size]...)
						lastOut = last
					}
				}
			}
			data = data[size:]
		}
	}
	sp.win.advance()
	return out, ranges, nil
}

// shareAcknowledge serves ShareAcknowledge: acknowledgements only, within
// the member's share session.
func (c *Coordinator) shareAcknowledge(from Client, req *kmsg.ShareAcknowledgeRequest) kmsg.Response {
	resp := c.applyAcknowledge(from, req)
	if resp.ErrorCode == 0 {
		if err := c.store.sync(); err != nil {
			c.log.Error("share acknowledge: sync", "err", err)
			resp.ErrorCode = kerr.KafkaStorageError.Code
		}
	}
	return resp
}

// applyAcknowledge applies a ShareAcknowledge under the coordinator's
// lock; the caller syncs.
func (c *Coordinator) applyAcknowledge(from Client, req *kmsg.ShareAcknowledgeRequest) *kmsg.ShareAcknowledgeResponse {
	resp := req.ResponseKind().(*kmsg.ShareAcknowledgeResponse)
	groupID, memberID, kerrv := c.checkShareRequest(req.GroupID, req.MemberID)
	if kerrv != nil {
		resp.ErrorCode = kerrv.Code
		return resp
	}
	if req.ShareSessionEpoch == 0 {
		resp.ErrorCode = kerr.InvalidShareSessionEpoch.Code
		return resp
	}
	maxType := ackReject
	if req.Version >= 2 && req.IsRenewAck {
		maxType = ackRenew
	}
	byID := topicsByID(c.cfg.Topics())
	key := sessionKey{groupID, memberID}
	c.mu.Lock()
	defer c.mu.Unlock()
	gc := c.groupConfig(groupID)
	resp.AcquisitionLockTimeoutMillis = int32(gc.lockDuration.Milliseconds())
	s, kerrv := c.sessionLocked(key, req.ShareSessionEpoch, from.ConnID)
	if kerrv != nil {
		resp.ErrorCode = kerrv.Code
		return resp
	}
	g, err := c.groupLocked(groupID)
	if err != nil {
		c.log.Error("share acknowledge", "err", err)
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	b := c.store.batch()
	for _, t := range req.Topics {
		rt := kmsg.NewShareAcknowledgeResponseTopic()
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			batches := make([]ackBatch, 0, len(p.AcknowledgementBatches))
			for _, ab := range p.AcknowledgementBatches {
				batches = append(batches, ackBatch{ab.FirstOffset, ab.LastOffset, ab.AcknowledgeTypes})
			}
			rp := kmsg.NewShareAcknowledgeResponseTopicPartition()
			rp.Partition = p.Partition
			rp.CurrentLeader.LeaderID, rp.CurrentLeader.LeaderEpoch = -1, -1
			rp.ErrorCode = c.ackLocked(g, byID, memberID, topicIDPartition{t.TopicID, p.Partition}, batches, maxType, b)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if req.ShareSessionEpoch == -1 {
		delete(c.sessions, key)
		c.releaseMemberLocked(g, memberID, b)
		c.wakeLocked()
	} else {
		s.bump()
	}
	if _, err := b.apply(); err != nil {
		c.log.Error("share acknowledge: write", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
	}
	return resp
}
