package raftstore

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func entries(from, to uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, &raft.Log{
			Index:      i,
			Term:       i / 3,
			Type:       raft.LogCommand,
			Data:       []byte{byte(i), 'd'},
			Extensions: []byte{'x', byte(i)},
			AppendedAt: time.Unix(1700000000, int64(i)),
		})
	}
	return ls
}

func assertBounds(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("bounds = [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

func TestLogStore(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	assertBounds(t, s, 0, 0)
	var got raft.Log
	if err := s.GetLog(1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store = %v, want ErrLogNotFound", err)
	}

	if err := s.StoreLog(&raft.Log{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf")}); err != nil {
		t.Fatal(err)
	}
	// Index 256 sorts after 255 only with big-endian keys.
	if err := s.StoreLogs(entries(2, 300)); err != nil {
		t.Fatal(err)
	}
	assertBounds(t, s, 1, 300)

	if err := s.GetLog(1, &got); err != nil {
		t.Fatal(err)
	}
	if got.Index != 1 || got.Term != 1 || got.Type != raft.LogConfiguration || string(got.Data) != "conf" ||
		got.Extensions != nil || !got.AppendedAt.IsZero() {
		t.Fatalf("entry 1 = %+v", got)
	}
	want := entries(257, 257)[0]
	if err := s.GetLog(257, &got); err != nil {
		t.Fatal(err)
	}
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) ||
		!bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("entry 257 = %+v, want %+v", got, *want)
	}

	// Compaction from the front, then a conflicting-suffix truncation.
	if err := s.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	assertBounds(t, s, 101, 300)
	if err := s.DeleteRange(251, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	assertBounds(t, s, 101, 250)
	for _, i := range []uint64{100, 251} {
		if err := s.GetLog(i, &got); !errors.Is(err, raft.ErrLogNotFound) {
			t.Fatalf("GetLog(%d) after delete = %v, want ErrLogNotFound", i, err)
		}
	}

	// Everything survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	assertBounds(t, s, 101, 250)
	if err := s.GetLog(200, &got); err != nil || got.Term != 200/3 || got.Data[0] != 200 {
		t.Fatalf("GetLog(200) after reopen = %+v, %v", got, err)
	}
}

func TestStableStore(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	// hashicorp/raft tells a missing key from a failure by this exact text.
	if _, err := s.Get([]byte("k")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get(missing) = %v, want \"not found\"", err)
	}
	if _, err := s.GetUint64([]byte("term")); err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64(missing) = %v, want \"not found\"", err)
	}
	if err := s.Set([]byte("k"), []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("k"), []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("term"), 1<<40+7); err != nil {
		t.Fatal(err)
	}
	// Stable keys live apart from log keys.
	if err := s.StoreLogs(entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if v, err := s.Get([]byte("k")); err != nil || string(v) != "v2" {
		t.Fatalf("Get(k) = %q, %v; want v2", v, err)
	}
	if v, err := s.GetUint64([]byte("term")); err != nil || v != 1<<40+7 {
		t.Fatalf("GetUint64(term) = %d, %v", v, err)
	}
	if _, err := s.GetUint64([]byte("k")); err == nil {
		t.Fatal("GetUint64 of a 2-byte value succeeded")
	}
	assertBounds(t, s, 0, 0)
}

func TestDecodeEntryRejectsCorruption(t *testing.T) {
	good := encodeEntry(entries(5, 5)[0])
	var l raft.Log
	if err := decodeEntry(good, &l); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string][]byte{
		"short":    good[:entryHeaderLen-1],
		"version":  append([]byte{9}, good[1:]...),
		"truncate": good[:len(good)-1],
		"trailing": append(bytes.Clone(good), 0),
	} {
		if err := decodeEntry(v, &l); err == nil {
			t.Errorf("%s: decode succeeded", name)
		}
	}
}

// TestRaftConformance runs a single raft node on the store and checks raft
// can bootstrap, write and read back through it.
func TestRaftConformance(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	conf := raft.DefaultConfig()
	conf.LocalID = "1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.LogOutput = new(bytes.Buffer)
	addr, trans := raft.NewInmemTransport("")
	snaps := raft.NewInmemSnapshotStore()
	cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
	if err := raft.BootstrapCluster(conf, s, s, snaps, trans, cfg); err != nil {
		t.Fatal(err)
	}
	fsm := &countFSM{}
	r, err := raft.NewRaft(conf, fsm, s, s, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	select {
	case <-r.LeaderCh():
	case <-time.After(5 * time.Second):
		t.Fatal("no leader after 5s")
	}
	for i := 0; i < 5; i++ {
		if err := r.Apply([]byte{byte(i)}, 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	// Bootstrap configuration, the new leader's no-op, five commands and
	// the barrier.
	if last != 8 || fsm.n != 5 {
		t.Fatalf("last index %d with %d commands applied, want 8 and 5", last, fsm.n)
	}
	term, err := s.GetUint64([]byte("CurrentTerm"))
	if err != nil || term < 2 {
		t.Fatalf("raft's current term = %d, %v", term, err)
	}
}

type countFSM struct{ n int }

func (f *countFSM) Apply(*raft.Log) any { f.n++; return nil }

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) {
	return nil, errors.New("countFSM does not snapshot")
}

func (f *countFSM) Restore(rc io.ReadCloser) error { return rc.Close() }
