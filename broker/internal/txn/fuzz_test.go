package txn

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRecord feeds arbitrary bytes to the transaction store's
// record decoder, as a damaged store would: it never panics, and a record
// it accepts is valid and encodes to one that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []record{
		{ProducerID: 3, Epoch: 1, TimeoutMs: 60000, State: Ongoing, Partitions: []Partition{{"t", 0}}, Groups: []string{"g"}, Started: 1700000000000, Updated: 1700000000001, PrevProducerID: -1},
		{ProducerID: 0, TimeoutMs: 1, State: CompleteAbort, Started: -1, PrevProducerID: 2},
	} {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"state":9}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if err := r.valid(); err != nil {
			t.Fatalf("accepted an invalid record %+v: %v", r, err)
		}
		b2, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRecord(b2); err != nil {
			t.Fatalf("%+v re-encoded as %s does not decode: %v", r, b2, err)
		}
	})
}
