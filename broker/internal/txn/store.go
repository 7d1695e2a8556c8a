package txn

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/riffle-stream/riffle/broker/internal/pebbledb"
)

// txnKeyTag starts the key of a transactional id's record in the store:
//
//	't' transactional id -> record (JSON)
const txnKeyTag = 't'

// record is the durable state of one transactional id.
type record struct {
	ProducerID int64 `json:"producerId"`
	Epoch      int16 `json:"epoch"`
	// PrevProducerID is the producer id an EndTxn of transaction
	// version 2 replaced when its epochs ran out, so that a retry of that
	// EndTxn is recognized; -1 when there is none.
	PrevProducerID int64       `json:"prevProducerId"`
	TimeoutMs      int32       `json:"timeoutMs"`
	State          State       `json:"state"`
	Partitions     []Partition `json:"partitions,omitempty"` // sorted
	Groups         []string    `json:"groups,omitempty"`     // sorted
	// Started is when the transaction began, in Unix milliseconds, -1
	// when none is in progress.
	Started int64 `json:"started"`
	// Updated is when the record last changed, in Unix milliseconds.
	Updated int64 `json:"updated"`
}

func (r *record) valid() error {
	switch {
	case r.State < Empty || r.State > CompleteAbort:
		return fmt.Errorf("state %d", r.State)
	case r.ProducerID < 0 || r.Epoch < 0:
		return fmt.Errorf("producer %d epoch %d", r.ProducerID, r.Epoch)
	case r.TimeoutMs <= 0:
		return fmt.Errorf("timeout %d ms", r.TimeoutMs)
	}
	return nil
}

// store keeps the records in Pebble.
type store struct {
	db  *pebble.DB
	log *slog.Logger
}

func openStore(dir string, fs vfs.FS, log *slog.Logger) (*store, error) {
	db, err := pebbledb.Open(dir, fs, log)
	if err != nil {
		return nil, fmt.Errorf("open transaction store: %w", err)
	}
	return &store{db: db, log: log}, nil
}

func (s *store) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close transaction store: %w", err)
	}
	return nil
}

func txnKey(id string) []byte { return append([]byte{txnKeyTag}, id...) }

// put writes the record of id, durably if sync; otherwise it becomes
// durable with the next synced write.
func (s *store) put(id string, r *record, sync bool) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode transaction %q: %w", id, err)
	}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := s.db.Set(txnKey(id), v, opt); err != nil {
		return fmt.Errorf("write transaction %q: %w", id, err)
	}
	return nil
}

// decodeRecord decodes a stored record value.
func decodeRecord(v []byte) (record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, err
	}
	if err := r.valid(); err != nil {
		return record{}, fmt.Errorf("invalid record: %s", err)
	}
	return r, nil
}

// load reads every record. A record that does not decode is logged and
// skipped, as the group store does: its transactional id starts afresh
// with a new producer id, which fences nothing it should not.
func (s *store) load() (map[string]record, error) {
	out := make(map[string]record)
	it, err := s.db.NewIter(nil)
	if err != nil {
		return nil, fmt.Errorf("scan transaction store: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) == 0 || k[0] != txnKeyTag {
			s.log.Error("skipping an unknown key in the transaction store", "key", fmt.Sprintf("%.32x", k))
			continue
		}
		r, err := decodeRecord(it.Value())
		if err != nil {
			s.log.Error("skipping an undecodable record in the transaction store", "transactional_id", string(k[1:]), "err", err)
			continue
		}
		out[string(k[1:])] = r
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("scan transaction store: %w", err)
	}
	return out, nil
}
