package state_test

import (
	"errors"
	"maps"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"

	"github.com/riffle-stream/riffle/state"
)

// TestCheckpointCrashPoints fails every file system operation of a
// checkpoint write in turn and then cuts the power: the checkpoint read
// after the restart is the old one or the new one, never an error, and a
// write that reported success is always the new one.
func TestCheckpointCrashPoints(t *testing.T) {
	old := map[string]int64{"counts": 10}
	next := map[string]int64{"counts": 20, "other": 5}
	for i := int32(0); ; i++ {
		mem := vfs.NewStrictMem()
		if err := mem.MkdirAll("task", 0o755); err != nil {
			t.Fatal(err)
		}
		syncDir(t, mem, "")
		if err := state.WriteCheckpoint(mem, "task", old); err != nil {
			t.Fatal(err)
		}
		err := state.WriteCheckpoint(errorfs.Wrap(mem, errorfs.OnIndex(i)), "task", next)
		mem.ResetToSyncedState()
		got, rerr := state.ReadCheckpoint(mem, "task")
		if rerr != nil {
			t.Fatalf("failing op %d: read after crash: %v", i, rerr)
		}
		switch {
		case err == nil && !maps.Equal(got, next):
			t.Fatalf("failing op %d: write succeeded, read %v after crash", i, got)
		case !maps.Equal(got, next) && !maps.Equal(got, old):
			t.Fatalf("failing op %d: read %v, neither old nor new", i, got)
		}
		if err == nil {
			if i < 3 {
				t.Fatalf("a checkpoint write took only %d operations", i)
			}
			return
		}
		if !errors.Is(err, errorfs.ErrInjected) {
			t.Fatalf("failing op %d: %v, want the injected error", i, err)
		}
	}
}

func syncDir(t *testing.T, fs vfs.FS, dir string) {
	t.Helper()
	d, err := fs.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCheckpointRemoveSurvivesCrash(t *testing.T) {
	mem := vfs.NewStrictMem()
	if err := mem.MkdirAll("task", 0o755); err != nil {
		t.Fatal(err)
	}
	syncDir(t, mem, "")
	if err := state.WriteCheckpoint(mem, "task", map[string]int64{"s": 1}); err != nil {
		t.Fatal(err)
	}
	if err := state.RemoveCheckpoint(mem, "task"); err != nil {
		t.Fatal(err)
	}
	mem.ResetToSyncedState()
	if got, err := state.ReadCheckpoint(mem, "task"); got != nil || err != nil {
		t.Fatalf("after remove and crash: %v, %v; want no checkpoint", got, err)
	}
	if err := state.RemoveCheckpoint(mem, "task"); err != nil {
		t.Fatalf("removing a missing checkpoint: %v", err)
	}
}

func TestTornCheckpointIsBad(t *testing.T) {
	for name, content := range map[string]string{
		"torn":     `{"counts":12`,
		"empty":    ``,
		"null":     `null`,
		"negative": `{"counts":-3}`,
		"garbage":  "\x00\x00\x00",
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewMem()
			f, err := mem.Create(state.CheckpointFile)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte(content)); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := state.ReadCheckpoint(mem, "")
			if !errors.Is(err, state.ErrBadCheckpoint) || got != nil {
				t.Fatalf("got %v, %v; want ErrBadCheckpoint", got, err)
			}
		})
	}
}
