package metadata

import (
	"errors"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kbin"
)

func allRecords() []record {
	v := "compact"
	return []record{
		clusterIDRecord{ClusterID: "MkU3OEVBNTcwNTJENDM2Qg"},
		registerBrokerRecord{Broker: Broker{ID: 7, Host: "b7.example", Port: 9092, Rack: "r1"}},
		registerBrokerRecord{Broker: Broker{ID: 8, Host: "127.0.0.1", Port: 1}},
		topicRecord{Name: "orders", ID: [16]byte{1, 2, 3, 15: 9}},
		partitionRecord{TopicID: [16]byte{1, 2, 3, 15: 9}, Partition: Partition{Index: 0, Leader: 7, LeaderEpoch: 3, Replicas: []int32{7, 8}, ISR: []int32{7}}},
		partitionRecord{TopicID: [16]byte{1, 2, 3, 15: 9}, Partition: Partition{Index: 1, Leader: 8, Replicas: []int32{}, ISR: []int32{}}},
		configRecord{Resource: ConfigResource{Type: ResourceTopic, Name: "orders"}, Key: "cleanup.policy", Value: &v},
		configRecord{Resource: ConfigResource{Type: ResourceBroker}, Key: "log.retention.ms"},
		removeTopicRecord{TopicID: [16]byte{1, 2, 3, 15: 9}},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	want := allRecords()
	got, err := decodeFrame(appendFrame(nil, want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", got, want)
	}
	seen := map[recordType]bool{}
	for _, r := range got {
		seen[r.recordType()] = true
	}
	if len(seen) != len(recordVersions) {
		t.Fatalf("round trip covers %d of %d record types", len(seen), len(recordVersions))
	}
}

// TestFrameLayout pins the documented layout of one record.
func TestFrameLayout(t *testing.T) {
	got := appendFrame(nil, []record{clusterIDRecord{ClusterID: "ab"}})
	want := []byte{0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 2, 'a', 'b'}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("frame = %v, want %v", got, want)
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	good := appendFrame(nil, allRecords())
	oneRecord := func(typ, version int16, fields []byte) []byte {
		b := append([]byte{frameVersion}, kbin.AppendArrayLen(nil, 1)...)
		b = kbin.AppendInt16(b, typ)
		b = kbin.AppendInt16(b, version)
		return append(b, fields...)
	}
	topic := topicRecord{Name: "t"}.appendFields(nil)
	for _, tc := range []struct {
		name    string
		data    []byte
		unknown bool
	}{
		{"newer frame version", append([]byte{frameVersion + 1}, good[1:]...), true},
		{"unknown record type", oneRecord(99, 0, topic), true},
		{"newer record version", oneRecord(int16(topicRecordType), 1, topic), true},
		{"negative record version", oneRecord(int16(topicRecordType), -1, topic), true},
		{"empty", nil, false},
		{"truncated", good[:len(good)-3], false},
		{"trailing bytes", append(append([]byte{}, good...), 0), false},
		{"count beyond data", oneRecord(int16(topicRecordType), 0, nil), false},
	} {
		_, err := decodeFrame(tc.data)
		if err == nil {
			t.Errorf("%s: decoded", tc.name)
			continue
		}
		if errors.Is(err, errUnknownRecord) != tc.unknown {
			t.Errorf("%s: error %q, errUnknownRecord = %v, want %v", tc.name, err, !tc.unknown, tc.unknown)
		}
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	recs := allRecords()
	img, err := applyRecords(emptyImage(), recs[:len(recs)-1], 42)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeSnapshot(encodeSnapshot(img))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, img) {
		t.Fatalf("restored\n%+v\nwant\n%+v", got, img)
	}
	if _, err := decodeSnapshot(encodeSnapshot(img)[:5]); err == nil {
		t.Fatal("decoded a truncated snapshot")
	}
}

func TestApplyIsAtomicAndCopyOnWrite(t *testing.T) {
	id := [16]byte{15: 1}
	base, err := applyRecords(emptyImage(), []record{
		topicRecord{Name: "a", ID: id},
		partitionRecord{TopicID: id, Partition: Partition{Index: 0, Replicas: []int32{1}, ISR: []int32{1}}},
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	before := base.Topics["a"]

	// The third record does not fit, so nothing of the batch applies.
	_, err = applyRecords(base, []record{
		topicRecord{Name: "b", ID: [16]byte{15: 2}},
		partitionRecord{TopicID: id, Partition: Partition{Index: 1}},
		partitionRecord{TopicID: id, Partition: Partition{Index: 5}},
	}, 2)
	if !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("misnumbered partition: %v, want ErrInvalidPartitions", err)
	}
	if len(base.Topics) != 1 || len(base.Topics["a"].Partitions) != 1 {
		t.Fatalf("rejected batch changed the base image: %+v", base.Topics)
	}

	v := "1"
	next, err := applyRecords(base, []record{
		partitionRecord{TopicID: id, Partition: Partition{Index: 1}},
		configRecord{Resource: ConfigResource{Type: ResourceGroup, Name: "g"}, Key: "k", Value: &v},
	}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if base.Topics["a"] != before || len(before.Partitions) != 1 || len(base.Configs) != 0 || base.Index != 1 {
		t.Fatalf("applying changed the base image: %+v", base)
	}
	if len(next.Topics["a"].Partitions) != 2 || next.TopicsByID[id] != next.Topics["a"] || next.Configs[ConfigResource{Type: ResourceGroup, Name: "g"}]["k"] != "1" {
		t.Fatalf("next image = %+v", next)
	}
	if reflect.ValueOf(next.Brokers).UnsafePointer() != reflect.ValueOf(base.Brokers).UnsafePointer() {
		t.Fatal("an unchanged map was copied")
	}

	for name, rec := range map[string]record{
		"duplicate topic":        topicRecord{Name: "a", ID: [16]byte{15: 3}},
		"duplicate topic id":     topicRecord{Name: "c", ID: id},
		"config of absent topic": configRecord{Resource: ConfigResource{Type: ResourceTopic, Name: "zz"}, Key: "k", Value: &v},
		"remove absent topic":    removeTopicRecord{TopicID: [16]byte{15: 9}},
		"other cluster id":       clusterIDRecord{ClusterID: "x"},
	} {
		img := next
		if name == "other cluster id" {
			img, _ = applyRecords(next, []record{clusterIDRecord{ClusterID: "y"}}, 4)
		}
		if _, err := applyRecords(img, []record{rec}, 5); err == nil {
			t.Errorf("%s: applied", name)
		}
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the decoder of raft entries and
// snapshots. It must never panic or allocate more than a small multiple
// of the input's size, and
// whatever it accepts must re-encode to bytes that decode to the same
// records: the state machine skips what fails to decode, so anything it
// accepts has to mean one thing.
func FuzzDecodeFrame(f *testing.F) {
	all := appendFrame(nil, allRecords())
	f.Add(all)
	for _, rec := range allRecords() {
		f.Add(appendFrame(nil, []record{rec}))
	}
	f.Add(all[:len(all)-1])
	f.Add([]byte{frameVersion, 0, 0, 0, 0})
	f.Add([]byte{frameVersion, 0x7f, 0xff, 0xff, 0xff})
	f.Add(append([]byte{frameVersion}, 0, 0, 0, 1, 0, 99, 0, 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := decodeFrame(data)
		if err != nil {
			return
		}
		enc := appendFrame(nil, recs)
		again, err := decodeFrame(enc)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		if !reflect.DeepEqual(appendFrame(nil, again), enc) {
			t.Fatalf("frame changes meaning when re-encoded:\n%#v\n%#v", recs, again)
		}
		// Applying must not panic either; rejection is fine.
		applyRecords(emptyImage(), recs, 1)
	})
}
