package metadata

import (
	"errors"
	"fmt"
	"math"

	"github.com/twmb/franz-go/pkg/kbin"
)

// frameVersion is the layout version of a frame of records (see doc.go).
const frameVersion = 0

// recordType identifies a metadata record in a frame.
type recordType int16

const (
	clusterIDRecordType      recordType = 1
	registerBrokerRecordType recordType = 2
	topicRecordType          recordType = 3
	partitionRecordType      recordType = 4
	configRecordType         recordType = 5
	removeTopicRecordType    recordType = 6
)

// recordVersions holds the newest version of each record type this build
// writes and reads. A record with a type missing here, or a version above
// the one here, was written by a newer Riffle and cannot be applied.
var recordVersions = map[recordType]int16{
	clusterIDRecordType:      0,
	registerBrokerRecordType: 0,
	topicRecordType:          0,
	partitionRecordType:      0,
	configRecordType:         0,
	removeTopicRecordType:    0,
}

// MaxStringLen is the longest string a metadata record holds: strings are
// encoded with an int16 length, as in the Kafka protocol's non-flexible
// versions.
const MaxStringLen = math.MaxInt16

// checkRecords reports a string of recs longer than MaxStringLen, which
// would encode to a record no one can decode.
func checkRecords(recs []record) error {
	for _, rec := range recs {
		var fields [][2]string
		switch r := rec.(type) {
		case clusterIDRecord:
			fields = [][2]string{{"cluster id", r.ClusterID}}
		case registerBrokerRecord:
			fields = [][2]string{{"broker host", r.Broker.Host}, {"broker rack", r.Broker.Rack}}
		case topicRecord:
			fields = [][2]string{{"topic name", r.Name}}
		case configRecord:
			fields = [][2]string{{"config resource name", r.Resource.Name}, {"config name", r.Key}}
			if r.Value != nil {
				fields = append(fields, [2]string{"value of config " + r.Key, *r.Value})
			}
		}
		for _, f := range fields {
			if len(f[1]) > MaxStringLen {
				return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, f[0], len(f[1]), MaxStringLen)
			}
		}
	}
	return nil
}

// errUnknownRecord marks a record this build cannot decode.
var errUnknownRecord = errors.New("unknown metadata record")

// record is one metadata record: a fact about the cluster.
type record interface {
	recordType() recordType
	// appendFields appends the record's fields, without type or version.
	appendFields(dst []byte) []byte
}

// clusterIDRecord fixes the cluster id. Kafka keeps it in meta.properties;
// Riffle commits it as the first record of a new cluster.
type clusterIDRecord struct {
	ClusterID string
}

// registerBrokerRecord adds a broker or replaces its endpoint, like Kafka's
// RegisterBrokerRecord.
type registerBrokerRecord struct {
	Broker Broker
}

// topicRecord creates a topic with no partitions, like Kafka's TopicRecord.
type topicRecord struct {
	Name string
	ID   [16]byte
}

// partitionRecord adds the next partition of a topic, like Kafka's
// PartitionRecord.
type partitionRecord struct {
	TopicID   [16]byte
	Partition Partition
}

// configRecord sets (Value non-nil) or deletes (Value nil) one config key,
// like Kafka's ConfigRecord.
type configRecord struct {
	Resource ConfigResource
	Key      string
	Value    *string
}

// removeTopicRecord deletes a topic and its configs, like Kafka's
// RemoveTopicRecord.
type removeTopicRecord struct {
	TopicID [16]byte
}

func (clusterIDRecord) recordType() recordType      { return clusterIDRecordType }
func (registerBrokerRecord) recordType() recordType { return registerBrokerRecordType }
func (topicRecord) recordType() recordType          { return topicRecordType }
func (partitionRecord) recordType() recordType      { return partitionRecordType }
func (configRecord) recordType() recordType         { return configRecordType }
func (removeTopicRecord) recordType() recordType    { return removeTopicRecordType }

func (r clusterIDRecord) appendFields(b []byte) []byte {
	return kbin.AppendString(b, r.ClusterID)
}

func (r registerBrokerRecord) appendFields(b []byte) []byte {
	b = kbin.AppendInt32(b, r.Broker.ID)
	b = kbin.AppendString(b, r.Broker.Host)
	b = kbin.AppendInt32(b, r.Broker.Port)
	return kbin.AppendString(b, r.Broker.Rack)
}

func (r topicRecord) appendFields(b []byte) []byte {
	b = kbin.AppendString(b, r.Name)
	return kbin.AppendUuid(b, r.ID)
}

func (r partitionRecord) appendFields(b []byte) []byte {
	p := r.Partition
	b = kbin.AppendUuid(b, r.TopicID)
	b = kbin.AppendInt32(b, p.Index)
	b = kbin.AppendInt32(b, p.Leader)
	b = kbin.AppendInt32(b, p.LeaderEpoch)
	b = appendInt32s(b, p.Replicas)
	return appendInt32s(b, p.ISR)
}

func (r configRecord) appendFields(b []byte) []byte {
	b = kbin.AppendInt8(b, int8(r.Resource.Type))
	b = kbin.AppendString(b, r.Resource.Name)
	b = kbin.AppendString(b, r.Key)
	return kbin.AppendNullableString(b, r.Value)
}

func (r removeTopicRecord) appendFields(b []byte) []byte {
	return kbin.AppendUuid(b, r.TopicID)
}

func appendInt32s(b []byte, vs []int32) []byte {
	b = kbin.AppendArrayLen(b, len(vs))
	for _, v := range vs {
		b = kbin.AppendInt32(b, v)
	}
	return b
}

func readInt32s(r *kbin.Reader) []int32 {
	n := r.ArrayLen()
	if n < 0 {
		return nil
	}
	vs := make([]int32, n)
	for i := range vs {
		vs[i] = r.Int32()
	}
	return vs
}

// appendFrame appends a frame holding recs to dst.
func appendFrame(dst []byte, recs []record) []byte {
	dst = append(dst, frameVersion)
	dst = kbin.AppendArrayLen(dst, len(recs))
	for _, rec := range recs {
		t := rec.recordType()
		dst = kbin.AppendInt16(dst, int16(t))
		dst = kbin.AppendInt16(dst, recordVersions[t])
		dst = rec.appendFields(dst)
	}
	return dst
}

// decodeFrame decodes one frame that makes up all of src.
func decodeFrame(src []byte) ([]record, error) {
	if len(src) == 0 {
		return nil, errors.New("decode record frame: empty")
	}
	if src[0] != frameVersion {
		return nil, fmt.Errorf("decode record frame: %w: frame version %d (this build reads %d)", errUnknownRecord, src[0], frameVersion)
	}
	r := &kbin.Reader{Src: src[1:]}
	n := r.ArrayLen()
	if n < 0 {
		return nil, fmt.Errorf("decode record frame: negative record count %d", n)
	}
	recs := make([]record, 0, n)
	for i := range n {
		rec, err := readRecord(r)
		if err != nil {
			return nil, fmt.Errorf("decode record %d of %d: %w", i, n, err)
		}
		recs = append(recs, rec)
	}
	if err := r.Complete(); err != nil {
		return nil, fmt.Errorf("decode record frame: %w", err)
	}
	if len(r.Src) != 0 {
		return nil, fmt.Errorf("decode record frame: %d trailing bytes", len(r.Src))
	}
	return recs, nil
}

func readRecord(r *kbin.Reader) (record, error) {
	t, v := recordType(r.Int16()), r.Int16()
	if err := r.Complete(); err != nil {
		return nil, err
	}
	latest, known := recordVersions[t]
	if !known {
		return nil, fmt.Errorf("%w: type %d (written by a newer Riffle?)", errUnknownRecord, t)
	}
	if v < 0 || v > latest {
		return nil, fmt.Errorf("%w: type %d version %d, this build reads up to %d (written by a newer Riffle?)", errUnknownRecord, t, v, latest)
	}
	var rec record
	switch t {
	case clusterIDRecordType:
		rec = clusterIDRecord{ClusterID: r.String()}
	case registerBrokerRecordType:
		rec = registerBrokerRecord{Broker: Broker{ID: r.Int32(), Host: r.String(), Port: r.Int32(), Rack: r.String()}}
	case topicRecordType:
		rec = topicRecord{Name: r.String(), ID: r.Uuid()}
	case partitionRecordType:
		var pr partitionRecord
		pr.TopicID = r.Uuid()
		pr.Partition.Index = r.Int32()
		pr.Partition.Leader = r.Int32()
		pr.Partition.LeaderEpoch = r.Int32()
		pr.Partition.Replicas = readInt32s(r)
		pr.Partition.ISR = readInt32s(r)
		rec = pr
	case configRecordType:
		rec = configRecord{
			Resource: ConfigResource{Type: ResourceType(r.Int8()), Name: r.String()},
			Key:      r.String(),
			Value:    r.NullableString(),
		}
	case removeTopicRecordType:
		rec = removeTopicRecord{TopicID: r.Uuid()}
	default:
		return nil, fmt.Errorf("%w: type %d has a version but no decoder", errUnknownRecord, t)
	}
	if err := r.Complete(); err != nil {
		return nil, fmt.Errorf("type %d: %w", t, err)
	}
	return rec, nil
}
