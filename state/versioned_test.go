package state_test

import (
	"testing"
	"time"

	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/state"
)

func versionedStore(t *testing.T, raw state.RawStore, retention time.Duration) state.VersionedKeyValueStore[string, string] {
	t.Helper()
	b, err := state.VersionedKeyValueBuilder("v", serde.String(), serde.String(), retention)
	if err != nil {
		t.Fatal(err)
	}
	return b.Build(raw, "app-v-changelog").(state.VersionedKeyValueStore[string, string])
}

// asOf checks what GetAsOf(k, at) finds: want "" for nothing.
func asOf(t *testing.T, s state.VersionedKeyValueStore[string, string], at int64, want string, wantTs int64) {
	t.Helper()
	r, ok, err := s.GetAsOf("k", ms(at))
	if err != nil {
		t.Fatal(err)
	}
	if want == "" {
		if ok {
			t.Fatalf("GetAsOf(%d) = %+v, want nothing", at, r)
		}
		return
	}
	if !ok || r.Value != want || r.Timestamp.UnixMilli() != wantTs {
		t.Fatalf("GetAsOf(%d) = %+v %v, want %s@%d", at, r, ok, want, wantTs)
	}
}

// TestVersionedStore follows KIP-889: versions valid until the next later
// one, out-of-order writes slotted into the history, deletes as versions,
// and history retention counted back from the largest timestamp written.
func TestVersionedStore(t *testing.T) {
	for name, open := range engines(t) {
		t.Run(name, func(t *testing.T) {
			raw := open("v")
			s := versionedStore(t, raw, 100*time.Millisecond)
			for _, p := range []struct {
				v  string
				ts int64
			}{{"a", 10}, {"b", 20}, {"c", 15}} {
				if ok, err := s.Put("k", p.v, ms(p.ts)); !ok || err != nil {
					t.Fatalf("Put(%s@%d) = %v %v", p.v, p.ts, ok, err)
				}
			}
			asOf(t, s, 5, "", 0)
			asOf(t, s, 12, "a", 10)
			asOf(t, s, 15, "c", 15)
			asOf(t, s, 19, "c", 15)
			asOf(t, s, 20, "b", 20)
			if r, ok, err := s.Get("k"); !ok || err != nil || r.Value != "b" || r.Timestamp.UnixMilli() != 20 {
				t.Fatalf("Get = %+v %v %v, want the latest, b@20", r, ok, err)
			}
			if ok, err := s.Delete("k", ms(30)); !ok || err != nil {
				t.Fatalf("Delete@30 = %v %v", ok, err)
			}
			if _, ok, err := s.Get("k"); ok || err != nil {
				t.Fatalf("Get after the delete: %v %v", ok, err)
			}
			asOf(t, s, 25, "b", 20)
			asOf(t, s, 30, "", 0)

			// Stream time 200 with 100 ms of history: times before 100 are
			// gone, and so are the versions that ended before then.
			if ok, err := s.Put("k", "d", ms(200)); !ok || err != nil {
				t.Fatalf("Put(d@200) = %v %v", ok, err)
			}
			asOf(t, s, 99, "", 0)
			asOf(t, s, 150, "", 0) // the delete at 30 is still valid
			asOf(t, s, 200, "d", 200)
			if ok, err := s.Put("k", "late", ms(50)); ok || err != nil {
				t.Fatalf("Put(late@50) = %v %v, want it dropped", ok, err)
			}
			if ok, err := s.Delete("k", ms(99)); ok || err != nil {
				t.Fatalf("Delete@99 = %v %v, want it dropped", ok, err)
			}
			asOf(t, s, 250, "d", 200)
			var entries int
			if err := raw.Scan(nil, nil, func(_, _ []byte) bool { entries++; return true }); err != nil {
				t.Fatal(err)
			}
			if entries != 3 { // the delete at 30, d at 200, the observed stream time
				t.Fatalf("engine holds %d entries, want 3", entries)
			}

			// A store rebuilt from the same bytes (a restored changelog)
			// has the same history and stream time.
			copied := state.NewMemoryStore("v")
			if err := raw.Scan(nil, nil, func(k, v []byte) bool { return copied.Put(k, v) == nil }); err != nil {
				t.Fatal(err)
			}
			restored := versionedStore(t, copied, 100*time.Millisecond)
			asOf(t, restored, 200, "d", 200)
			asOf(t, restored, 99, "", 0)
			if ok, err := restored.Put("k", "late", ms(50)); ok || err != nil {
				t.Fatalf("restored Put(late@50) = %v %v, want it dropped", ok, err)
			}
		})
	}
}

func TestVersionedStoreKeysDoNotMix(t *testing.T) {
	s := versionedStore(t, state.NewMemoryStore("v"), time.Hour)
	// "k" and "k\x00..." share a byte prefix; their versions stay apart.
	if _, err := s.Put("k\x00\x00\x00\x00\x00\x00\x00\x00", "other", ms(5)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put("k", "mine", ms(1)); err != nil {
		t.Fatal(err)
	}
	asOf(t, s, 10, "mine", 1)
	if _, err := state.VersionedKeyValueBuilder("v", serde.String(), serde.String(), -time.Second); err == nil {
		t.Fatal("a negative history retention was accepted")
	}
}
