package state_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/state"
)

// versionModel is the reference for a versioned store: every accepted
// version of every key, never dropped, and the observed stream time.
type versionModel struct {
	versions  map[string]map[int64]*string
	observed  int64
	written   bool
	retention int64
}

func (m *versionModel) accepts(ts int64) bool { return !m.written || ts >= m.observed-m.retention }

func (m *versionModel) write(key string, ts int64, v *string) bool {
	if !m.accepts(ts) {
		return false
	}
	if m.versions[key] == nil {
		m.versions[key] = make(map[int64]*string)
	}
	m.versions[key][ts] = v
	if !m.written || ts > m.observed {
		m.observed, m.written = ts, true
	}
	return true
}

// asOf returns the version of key valid at at, nil for none.
func (m *versionModel) asOf(key string, at int64) (*string, int64) {
	best, bestTs := (*string)(nil), int64(-1)
	for ts, v := range m.versions[key] {
		if ts <= at && ts > bestTs {
			best, bestTs = v, ts
		}
	}
	return best, bestTs
}

// FuzzVersionedStore runs puts, deletes and reads from the input against a
// Pebble versioned store (which drops versions that have left the
// history) and the model (which keeps them), and checks every read that
// the history still covers agrees, as does each key's latest version.
func FuzzVersionedStore(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 0, 20, 1, 0, 15, 2, 0, 12, 0, 1, 200, 2, 0, 100, 2, 0, 160, 3, 0, 0})
	f.Add([]byte{0, 1, 100, 1, 1, 90, 0, 1, 30, 2, 1, 95, 3, 1, 0})
	db, err := state.OpenPebble(f.TempDir(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	run := 0
	f.Fuzz(func(t *testing.T, ops []byte) {
		run++
		name := fmt.Sprintf("v%d", run)
		s := versionedStore(t, db.Store(name), 50*time.Millisecond)
		m := &versionModel{versions: make(map[string]map[int64]*string), retention: 50}
		for i := 0; i+2 < len(ops); i += 3 {
			key, ts := fmt.Sprint(ops[i+1]%3), int64(ops[i+2])
			switch ops[i] % 4 {
			case 0:
				v := fmt.Sprintf("v%d", i)
				ok, err := s.Put(key, v, ms(ts))
				if err != nil || ok != m.write(key, ts, &v) {
					t.Fatalf("op %d: Put(%s, %d) = %v %v", i, key, ts, ok, err)
				}
			case 1:
				ok, err := s.Delete(key, ms(ts))
				if err != nil || ok != m.write(key, ts, nil) {
					t.Fatalf("op %d: Delete(%s, %d) = %v %v", i, key, ts, ok, err)
				}
			case 2:
				r, ok, err := s.GetAsOf(key, ms(ts))
				if err != nil {
					t.Fatal(err)
				}
				want, wantTs := m.asOf(key, ts)
				if m.written && ts < m.observed-m.retention {
					want = nil
				}
				if ok != (want != nil) || ok && (r.Value != *want || r.Timestamp.UnixMilli() != wantTs) {
					t.Fatalf("op %d: GetAsOf(%s, %d) = %+v %v, want %v@%d", i, key, ts, r, ok, want, wantTs)
				}
			case 3:
				r, ok, err := s.Get(key)
				if err != nil {
					t.Fatal(err)
				}
				want, wantTs := m.asOf(key, 1<<62)
				if ok != (want != nil) || ok && (r.Value != *want || r.Timestamp.UnixMilli() != wantTs) {
					t.Fatalf("op %d: Get(%s) = %+v %v, want %v@%d", i, key, r, ok, want, wantTs)
				}
			}
		}
	})
}
