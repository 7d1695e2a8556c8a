package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Offsets committed in a transaction (TxnOffsetCommit) are kept apart from
// the group's committed offsets, by producer id, stored as soon as they
// are committed; EndTxn, called by the transaction coordinator when the
// transaction ends, moves them into the group's offsets or drops them.
// OffsetFetch with RequireStable answers UNSTABLE_OFFSET_COMMIT for a
// partition with offsets pending, as Kafka does (KIP-447).

func pendingKey(group string, pid int64, p tp) ([]byte, error) {
	b, err := appendString16([]byte{pendingKeyTag}, group)
	if err != nil {
		return nil, fmt.Errorf("pending offset key of group: %w", err)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	if b, err = appendString16(b, p.topic); err != nil {
		return nil, fmt.Errorf("pending offset key of topic: %w", err)
	}
	return binary.BigEndian.AppendUint32(b, uint32(p.partition)), nil
}

func parsePendingKey(k []byte) (string, int64, tp, error) {
	g, rest, err := readString16(k[1:])
	if err != nil || len(rest) < 8 {
		return "", 0, tp{}, fmt.Errorf("malformed pending offset key %.32x", k)
	}
	pid := int64(binary.BigEndian.Uint64(rest))
	t, rest, err := readString16(rest[8:])
	if err != nil || len(rest) != 4 || pid < 0 {
		return "", 0, tp{}, fmt.Errorf("malformed pending offset key %.32x", k)
	}
	return g, pid, tp{t, int32(binary.BigEndian.Uint32(rest))}, nil
}

// addPending decodes one stored pending offset into c.
func (c *contents) addPending(k, v []byte) error {
	g, pid, p, err := parsePendingKey(k)
	if err != nil {
		return err
	}
	o, err := decodeOffset(v)
	if err != nil {
		return fmt.Errorf("pending offset of group %.64q %s[%d]: %w", g, p.topic, p.partition, err)
	}
	if c.pending == nil {
		c.pending = make(map[string]map[int64]map[tp]offset)
	}
	if c.pending[g] == nil {
		c.pending[g] = make(map[int64]map[tp]offset)
	}
	if c.pending[g][pid] == nil {
		c.pending[g][pid] = make(map[tp]offset)
	}
	c.pending[g][pid][p] = o
	return nil
}

func (b *batch) putPending(group string, pid int64, p tp, o offset) {
	k, err := pendingKey(group, pid, p)
	if err != nil {
		b.fail(err)
		return
	}
	b.fail(b.b.Set(k, encodeOffset(o), nil))
}

func (b *batch) deletePending(group string, pid int64, p tp) {
	k, err := pendingKey(group, pid, p)
	if err != nil {
		b.fail(err)
		return
	}
	b.fail(b.b.Delete(k, nil))
}

// TxnOffsetCommit stores the offsets of a TxnOffsetCommit as pending for
// the request's producer, durably; the caller has checked the
// transaction. A commit naming a member or a generation is checked
// against the group as an OffsetCommit is; one naming neither (the
// sendOffsetsToTransaction form without group metadata) is not.
func (c *Coordinator) TxnOffsetCommit(req *kmsg.TxnOffsetCommitRequest) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	err := checkGroupID(req.Group)
	if err == nil && c.reserved(req.Group) {
		err = kerr.GroupIDNotFound
	}
	if err == nil {
		err = c.applyTxnCommit(req, codes)
	}
	for i, t := range req.Topics {
		rt := kmsg.NewTxnOffsetCommitResponseTopic()
		rt.Topic = t.Topic
		for j, p := range t.Partitions {
			rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
			rp.Partition, rp.ErrorCode = p.Partition, codes[i][j]
			if err != nil {
				rp.ErrorCode = err.Code
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	resp.SetVersion(req.Version)
	return resp
}

func (c *Coordinator) applyTxnCommit(req *kmsg.TxnOffsetCommitRequest, codes [][]int16) *kerr.Error {
	topics := c.cfg.Topics()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing() {
		return kerr.CoordinatorNotAvailable
	}
	g := c.groups[req.Group]
	created := false
	if g == nil {
		if req.Generation >= 0 || req.MemberID != "" {
			return kerr.IllegalGeneration
		}
		g = &group{name: req.Group, classic: newClassicGroup(), offsets: make(map[tp]offset), emptySince: time.Now()}
		created = true
	}
	now := time.Now()
	accepted := make(map[tp]offset)
	for i, t := range req.Topics {
		topic, ok := topics[t.Topic]
		for j, p := range t.Partitions {
			switch {
			case !ok || p.Partition < 0 || p.Partition >= topic.Partitions:
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > maxMetadataBytes:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			default:
				accepted[tp{t.Topic, p.Partition}] = offset{Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, Committed: now, TopicID: topic.ID}
			}
		}
	}
	if req.Generation >= 0 || req.MemberID != "" {
		if err := c.validateCommitLocked(g, req.MemberID, req.InstanceID, req.Generation, maps.Keys(accepted)); err != nil {
			return err
		}
	}
	b := c.store.batch()
	for key, o := range accepted {
		b.putPending(g.name, req.ProducerID, key, o)
	}
	if created {
		b.putGroup(g.name, g.record())
	}
	if err := b.commit(); err != nil {
		c.log.Error("commit transactional offsets", "group", g.name, "err", err)
		return kerr.CoordinatorNotAvailable
	}
	if created {
		c.groups[g.name] = g
	}
	if g.pending == nil {
		g.pending = make(map[int64]map[tp]offset)
	}
	if g.pending[req.ProducerID] == nil {
		g.pending[req.ProducerID] = make(map[tp]offset)
	}
	maps.Copy(g.pending[req.ProducerID], accepted)
	return nil
}

// EndTxn ends producer pid's transaction in groups: its pending offsets
// become the groups' committed offsets if commit, and are dropped
// otherwise, durably. Groups since deleted are skipped.
func (c *Coordinator) EndTxn(pid int64, groups []string, commit bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing() {
		return errors.New("group coordinator closing")
	}
	b := c.store.batch()
	for _, name := range groups {
		g := c.groups[name]
		if g == nil {
			continue
		}
		for p, o := range g.pending[pid] {
			b.deletePending(name, pid, p)
			if commit {
				b.putOffset(name, p, o)
			}
		}
	}
	if err := b.commit(); err != nil {
		return fmt.Errorf("end transactional offsets of producer %d: %w", pid, err)
	}
	for _, name := range groups {
		if g := c.groups[name]; g != nil {
			if commit {
				maps.Copy(g.offsets, g.pending[pid])
			}
			delete(g.pending, pid)
		}
	}
	return nil
}

// unstableLocked reports whether an open transaction holds an offset of
// p for g.
func (g *group) unstableLocked(p tp) bool {
	for _, offs := range g.pending {
		if _, ok := offs[p]; ok {
			return true
		}
	}
	return false
}
