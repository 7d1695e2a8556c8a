package group

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// Keys in the store. Every variable-length part is length-prefixed, so
// group names may hold any byte and a group's keys form one prefix.
//
//	'o' len16(group) group len16(topic) topic be32(partition) -> committed offset
//	'g' group                                                -> groupRecord (JSON)
const (
	offsetKeyTag = 'o'
	groupKeyTag  = 'g'
)

// store is the durable half of the coordinator: committed offsets and
// group records in Pebble. Every write is synced before it returns.
type store struct {
	db *pebble.DB
}

func openStore(dir string) (*store, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("open group store %s: %w", dir, err)
	}
	return &store{db: db}, nil
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

func appendString16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func groupOffsetsPrefix(group string) []byte {
	return appendString16([]byte{offsetKeyTag}, group)
}

func offsetKey(group string, p tp) []byte {
	b := appendString16(groupOffsetsPrefix(group), p.topic)
	return binary.BigEndian.AppendUint32(b, uint32(p.partition))
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
	g, rest, err := readString16(k[1:])
	if err != nil {
		return "", tp{}, err
	}
	t, rest, err := readString16(rest)
	if err != nil || len(rest) != 4 {
		return "", tp{}, fmt.Errorf("malformed offset key %x", k)
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
	if b[36] == 1 {
		md := string(b[37:])
		o.Metadata = &md
	}
	return o, nil
}

// load reads every group record and committed offset.
func (s *store) load() (map[string]groupRecord, map[string]map[tp]offset, error) {
	groups := make(map[string]groupRecord)
	offsets := make(map[string]map[tp]offset)
	it, err := s.db.NewIter(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("scan group store: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		switch k[0] {
		case groupKeyTag:
			var r groupRecord
			if err := json.Unmarshal(it.Value(), &r); err != nil {
				return nil, nil, fmt.Errorf("decode group %q: %w", k[1:], err)
			}
			groups[string(k[1:])] = r
		case offsetKeyTag:
			g, p, err := parseOffsetKey(k)
			if err != nil {
				return nil, nil, err
			}
			o, err := decodeOffset(it.Value())
			if err != nil {
				return nil, nil, fmt.Errorf("decode offset of group %q %s[%d]: %w", g, p.topic, p.partition, err)
			}
			if offsets[g] == nil {
				offsets[g] = make(map[tp]offset)
			}
			offsets[g][p] = o
		}
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("scan group store: %w", err)
	}
	return groups, offsets, nil
}

// batch collects writes that commit together with one fsync.
type batch struct{ b *pebble.Batch }

func (s *store) batch() batch { return batch{s.db.NewBatch()} }

func (b batch) putOffset(group string, p tp, o offset) {
	_ = b.b.Set(offsetKey(group, p), encodeOffset(o), nil)
}

func (b batch) deleteOffset(group string, p tp) {
	_ = b.b.Delete(offsetKey(group, p), nil)
}

func (b batch) putGroup(group string, r groupRecord) {
	v, _ := json.Marshal(r)
	_ = b.b.Set(append([]byte{groupKeyTag}, group...), v, nil)
}

func (b batch) deleteGroup(group string) {
	_ = b.b.Delete(append([]byte{groupKeyTag}, group...), nil)
}

// commit writes the batch durably.
func (b batch) commit() error {
	defer b.b.Close()
	if b.b.Empty() {
		return nil
	}
	if err := b.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit group store batch: %w", err)
	}
	return nil
}

// quietLogger drops Pebble's informational chatter; errors reach the
// coordinator through return values.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
