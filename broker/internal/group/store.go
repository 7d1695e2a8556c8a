package group

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/riffle-stream/riffle/broker/internal/pebbledb"
)

// Keys in the store. Every variable-length part is length-prefixed, so
// group names may hold any byte and a group's keys form one prefix.
//
//	'o' len16(group) group len16(topic) topic be32(partition) -> committed offset
//	'g' group                                                -> groupRecord (JSON)
//	'p' len16(group) group be64(producer id) len16(topic) topic be32(partition)
//	                                                         -> offset committed in a transaction (txnoffsets.go)
const (
	offsetKeyTag  = 'o'
	groupKeyTag   = 'g'
	pendingKeyTag = 'p'
)

// MaxGroupIDBytes is the longest group id the coordinator accepts; a
// longer one is answered with INVALID_GROUP_ID before anything is stored.
// Kafka sets no explicit limit, but its own records cannot hold more: the
// group id is a string with an int16 length in the keys of
// __consumer_offsets, so Kafka fails to write a longer one. Riffle's
// offset keys have room for 65,535 bytes; the limit follows Kafka.
const MaxGroupIDBytes = math.MaxInt16

// errStringTooLong is a string that a uint16 length cannot prefix.
var errStringTooLong = errors.New("string longer than 65535 bytes")

// store is the durable half of the coordinator: committed offsets and
// group records in Pebble.
type store struct {
	db  *pebble.DB
	log *slog.Logger
}

func openStore(dir string, fs vfs.FS, log *slog.Logger) (*store, error) {
	db, err := pebbledb.Open(dir, fs, log)
	if err != nil {
		return nil, fmt.Errorf("open group store: %w", err)
	}
	return &store{db: db, log: log}, nil
}

func (s *store) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close group store: %w", err)
	}
	return nil
}

// offset is one committed offset.
type offset struct {
	Offset      int64
	LeaderEpoch int32
	Metadata    *string
	Committed   time.Time
	// TopicID is the id of the topic when the offset was committed, so an
	// offset does not outlive a topic deleted and created again.
	TopicID [16]byte
}

// groupRecord is what survives a restart of a group besides its offsets:
// enough to keep epochs and generations increasing and to apply offset
// retention. Members are not stored; they join again after a restart.
type groupRecord struct {
	Type         string    `json:"type"`
	ProtocolType string    `json:"protocolType,omitempty"`
	Protocol     string    `json:"protocol,omitempty"`
	Generation   int32     `json:"generation"`
	EmptySince   time.Time `json:"emptySince"`
}

// appendString16 appends s with a big-endian uint16 length.
func appendString16(b []byte, s string) ([]byte, error) {
	if len(s) > math.MaxUint16 {
		return nil, fmt.Errorf("%w: %d bytes", errStringTooLong, len(s))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...), nil
}

func groupOffsetsPrefix(group string) ([]byte, error) {
	return appendString16([]byte{offsetKeyTag}, group)
}

func offsetKey(group string, p tp) ([]byte, error) {
	b, err := groupOffsetsPrefix(group)
	if err != nil {
		return nil, fmt.Errorf("offset key of group: %w", err)
	}
	if b, err = appendString16(b, p.topic); err != nil {
		return nil, fmt.Errorf("offset key of topic: %w", err)
	}
	return binary.BigEndian.AppendUint32(b, uint32(p.partition)), nil
}

func groupKey(group string) []byte {
	return append([]byte{groupKeyTag}, group...)
}

func readString16(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errors.New("short key")
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, errors.New("short key")
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

func parseOffsetKey(k []byte) (string, tp, error) {
	if len(k) == 0 || k[0] != offsetKeyTag {
		return "", tp{}, fmt.Errorf("malformed offset key %.32x", k)
	}
	g, rest, err := readString16(k[1:])
	if err != nil {
		return "", tp{}, fmt.Errorf("malformed offset key %.32x: %w", k, err)
	}
	t, rest, err := readString16(rest)
	if err != nil || len(rest) != 4 {
		return "", tp{}, fmt.Errorf("malformed offset key %.32x", k)
	}
	return g, tp{t, int32(binary.BigEndian.Uint32(rest))}, nil
}

// Offset values: be64 offset, be32 leader epoch, be64 commit time in
// milliseconds, 16-byte topic id, then 0 for no metadata or 1 and the
// metadata bytes.
func encodeOffset(o offset) []byte {
	b := make([]byte, 0, 37+8)
	b = binary.BigEndian.AppendUint64(b, uint64(o.Offset))
	b = binary.BigEndian.AppendUint32(b, uint32(o.LeaderEpoch))
	b = binary.BigEndian.AppendUint64(b, uint64(o.Committed.UnixMilli()))
	b = append(b, o.TopicID[:]...)
	if o.Metadata == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return append(b, *o.Metadata...)
}

func decodeOffset(b []byte) (offset, error) {
	if len(b) < 37 {
		return offset{}, fmt.Errorf("offset value of %d bytes", len(b))
	}
	o := offset{
		Offset:      int64(binary.BigEndian.Uint64(b)),
		LeaderEpoch: int32(binary.BigEndian.Uint32(b[8:])),
		Committed:   time.UnixMilli(int64(binary.BigEndian.Uint64(b[12:]))),
	}
	copy(o.TopicID[:], b[20:36])
	switch b[36] {
	case 0:
		if len(b) != 37 {
			return offset{}, fmt.Errorf("offset value without metadata has %d bytes", len(b))
		}
	case 1:
		md := string(b[37:])
		o.Metadata = &md
	default:
		return offset{}, fmt.Errorf("offset value with metadata flag %d", b[36])
	}
	return o, nil
}

func decodeGroupRecord(b []byte) (groupRecord, error) {
	var r groupRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return groupRecord{}, err
	}
	if r.Type != "classic" && r.Type != "consumer" {
		return groupRecord{}, fmt.Errorf("unknown group type %q", r.Type)
	}
	return r, nil
}

// contents is what the store holds, as load found it.
type contents struct {
	groups  map[string]groupRecord
	offsets map[string]map[tp]offset
	// pending holds the offsets of open transactions, by group and
	// producer id.
	pending map[string]map[int64]map[tp]offset
	// skipped counts records that did not decode.
	skipped int
}

// add decodes one stored record into c.
func (c *contents) add(k, v []byte) error {
	if len(k) == 0 {
		return errors.New("empty key")
	}
	switch k[0] {
	case groupKeyTag:
		r, err := decodeGroupRecord(v)
		if err != nil {
			return fmt.Errorf("group %.64q: %w", k[1:], err)
		}
		c.groups[string(k[1:])] = r
	case offsetKeyTag:
		g, p, err := parseOffsetKey(k)
		if err != nil {
			return err
		}
		o, err := decodeOffset(v)
		if err != nil {
			return fmt.Errorf("offset of group %.64q %s[%d]: %w", g, p.topic, p.partition, err)
		}
		if c.offsets[g] == nil {
			c.offsets[g] = make(map[tp]offset)
		}
		c.offsets[g][p] = o
	case pendingKeyTag:
		return c.addPending(k, v)
	default:
		return fmt.Errorf("unknown key %.32x", k)
	}
	return nil
}

// load reads every group record and committed offset. A record that does
// not decode is logged and skipped: one bad record must not keep the
// broker from starting, and the other groups' offsets are intact. Only
// an error reading the store itself fails the load.
func (s *store) load() (contents, error) {
	c := contents{groups: make(map[string]groupRecord), offsets: make(map[string]map[tp]offset)}
	it, err := s.db.NewIter(nil)
	if err != nil {
		return contents{}, fmt.Errorf("scan group store: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := c.add(it.Key(), it.Value()); err != nil {
			c.skipped++
			s.log.Error("skipping undecodable record in the group store", "key", fmt.Sprintf("%.32x", it.Key()), "err", err)
		}
	}
	if err := it.Error(); err != nil {
		return contents{}, fmt.Errorf("scan group store: %w", err)
	}
	return c, nil
}

// batch collects writes that commit together. The first write that cannot
// be encoded fails the whole batch when it is applied.
type batch struct {
	b   *pebble.Batch
	err error
}

func (s *store) batch() *batch { return &batch{b: s.db.NewBatch()} }

func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *batch) putOffset(group string, p tp, o offset) {
	k, err := offsetKey(group, p)
	if err != nil {
		b.fail(err)
		return
	}
	b.fail(b.b.Set(k, encodeOffset(o), nil))
}

func (b *batch) deleteOffset(group string, p tp) {
	k, err := offsetKey(group, p)
	if err != nil {
		b.fail(err)
		return
	}
	b.fail(b.b.Delete(k, nil))
}

func (b *batch) putGroup(group string, r groupRecord) {
	v, err := json.Marshal(r)
	if err != nil {
		b.fail(fmt.Errorf("encode group %q: %w", group, err))
		return
	}
	b.fail(b.b.Set(groupKey(group), v, nil))
}

func (b *batch) deleteGroup(group string) {
	b.fail(b.b.Delete(groupKey(group), nil))
}

// apply writes the batch without waiting for the disk: batches reach the
// write-ahead log in the order they are applied, and the next sync makes
// them durable. It reports whether there was anything to write.
func (b *batch) apply() (bool, error) {
	defer b.b.Close()
	if b.err != nil {
		return false, fmt.Errorf("encode group store batch: %w", b.err)
	}
	if b.b.Empty() {
		return false, nil
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return false, fmt.Errorf("apply group store batch: %w", err)
	}
	return true, nil
}

// sync makes every applied batch durable. Callers sync outside the
// coordinator's lock, so that commits of different groups share fsyncs:
// Pebble syncs the write-ahead log once for every sync waiting on it.
func (s *store) sync() error {
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync group store: %w", err)
	}
	return nil
}

// commit writes the batch durably.
func (b *batch) commit() error {
	defer b.b.Close()
	if b.err != nil {
		return fmt.Errorf("encode group store batch: %w", b.err)
	}
	if b.b.Empty() {
		return nil
	}
	if err := b.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit group store batch: %w", err)
	}
	return nil
}
