package share

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/riffle-stream/riffle/broker/internal/pebbledb"
)

// Keys of the share store. A group key marks that the group exists; a
// partition key holds one share partition's window, prefixed by the id of
// the topic it belongs to so a recreated topic starts afresh.
//
//	'g' group                                  -> empty
//	'p' len(group) group len(topic) topic part -> topic id, window
const (
	groupPrefix     = 'g'
	partitionPrefix = 'p'
)

func groupKey(group string) []byte {
	return append([]byte{groupPrefix}, group...)
}

// partitionKeyPrefix is the prefix of every partition key of group.
func partitionKeyPrefix(group string) []byte {
	k := []byte{partitionPrefix}
	k = binary.AppendUvarint(k, uint64(len(group)))
	return append(k, group...)
}

func partitionKey(group string, tp topicPartition) []byte {
	k := partitionKeyPrefix(group)
	k = binary.AppendUvarint(k, uint64(len(tp.topic)))
	k = append(k, tp.topic...)
	return binary.BigEndian.AppendUint32(k, uint32(tp.partition))
}

// parsePartitionKey splits a partition key into its group and partition.
// Lengths must be minimal uvarints, as partitionKey writes them, so that
// one partition has one key.
func parsePartitionKey(k []byte) (string, topicPartition, error) {
	bad := fmt.Errorf("malformed share partition key %.32q", k)
	if len(k) == 0 || k[0] != partitionPrefix {
		return "", topicPartition{}, bad
	}
	k = k[1:]
	var parts [2]string
	for i := range parts {
		n, w := binary.Uvarint(k)
		if w <= 0 || w != len(binary.AppendUvarint(nil, n)) || uint64(len(k)-w) < n {
			return "", topicPartition{}, bad
		}
		parts[i], k = string(k[w:w+int(n)]), k[w+int(n):]
	}
	if len(k) != 4 {
		return "", topicPartition{}, bad
	}
	return parts[0], topicPartition{topic: parts[1], partition: int32(binary.BigEndian.Uint32(k))}, nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// store is the durable side of the coordinator.
type store struct {
	db  *pebble.DB
	log *slog.Logger
}

func openStore(dir string, fs vfs.FS, log *slog.Logger) (*store, error) {
	db, err := pebbledb.Open(dir, fs, log)
	if err != nil {
		return nil, fmt.Errorf("open share store: %w", err)
	}
	return &store{db: db, log: log}, nil
}

func (s *store) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close share store: %w", err)
	}
	return nil
}

// savedPartition is one share partition as stored.
type savedPartition struct {
	group   string
	tp      topicPartition
	topicID [16]byte
	win     window
}

// decodePartition decodes one stored share partition.
func decodePartition(k, v []byte) (savedPartition, error) {
	g, tp, err := parsePartitionKey(k)
	if err != nil {
		return savedPartition{}, err
	}
	if len(v) < 16 {
		return savedPartition{}, fmt.Errorf("share partition %s/%s-%d: value of %d bytes", g, tp.topic, tp.partition, len(v))
	}
	w, err := unmarshalWindow(v[16:])
	if err != nil {
		return savedPartition{}, fmt.Errorf("share partition %s/%s-%d: %w", g, tp.topic, tp.partition, err)
	}
	sp := savedPartition{group: g, tp: tp, win: w}
	copy(sp.topicID[:], v)
	return sp, nil
}

// load returns every stored group and share partition. A record that
// does not decode is logged and skipped, so that one bad record never
// keeps the broker from starting; its share partition starts afresh at
// the group's share.auto.offset.reset position. Only an error reading the
// store itself fails the load.
func (s *store) load() (groups []string, parts []savedPartition, skipped int, err error) {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("iterate share store: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		var err error
		switch {
		case len(k) > 0 && k[0] == groupPrefix:
			groups = append(groups, string(k[1:]))
		case len(k) > 0 && k[0] == partitionPrefix:
			var sp savedPartition
			if sp, err = decodePartition(k, it.Value()); err == nil {
				parts = append(parts, sp)
			}
		default:
			err = fmt.Errorf("unknown share store key %.32q", k)
		}
		if err != nil {
			skipped++
			s.log.Error("skipping undecodable record in the share store", "key", fmt.Sprintf("%.32x", k), "err", err)
		}
	}
	if err := it.Error(); err != nil {
		return nil, nil, 0, fmt.Errorf("iterate share store: %w", err)
	}
	return groups, parts, skipped, nil
}

// batch collects writes that commit together with one fsync.
type batch struct{ b *pebble.Batch }

func (s *store) batch() batch { return batch{s.db.NewBatch()} }

func (b batch) putGroup(group string) {
	b.b.Set(groupKey(group), nil, nil)
}

func (b batch) putPartition(group string, tp topicPartition, sp *sharePartition) {
	v := append(sp.topicID[:0:0], sp.topicID[:]...)
	b.b.Set(partitionKey(group, tp), sp.win.marshal(v), nil)
}

func (b batch) deletePartition(group string, tp topicPartition) {
	b.b.Delete(partitionKey(group, tp), nil)
}

func (b batch) deleteGroup(group string) {
	b.b.Delete(groupKey(group), nil)
	p := partitionKeyPrefix(group)
	b.b.DeleteRange(p, prefixEnd(p), nil)
}

// apply writes the batch without waiting for the disk: batches reach the
// write-ahead log in the order they are applied, and the next sync makes
// them durable. It reports whether there was anything to write.
func (b batch) apply() (bool, error) {
	defer b.b.Close()
	if b.b.Empty() {
		return false, nil
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return false, fmt.Errorf("apply share state: %w", err)
	}
	return true, nil
}

// sync makes every applied batch durable. Callers sync outside the
// coordinator's lock, so that concurrent acknowledgements share fsyncs.
func (s *store) sync() error {
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync share state: %w", err)
	}
	return nil
}

// commit writes the batch durably; an empty batch costs nothing.
func (b batch) commit() error {
	defer b.b.Close()
	if b.b.Empty() {
		return nil
	}
	if err := b.b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit share state: %w", err)
	}
	return nil
}
