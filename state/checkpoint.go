package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cockroachdb/pebble/vfs"
)

// CheckpointFile is the name of a task's checkpoint file inside its state
// directory (Kafka Streams' ".checkpoint").
const CheckpointFile = ".checkpoint"

// ErrBadCheckpoint marks a checkpoint file that exists but cannot be
// trusted: torn by a crash, or holding something else than offsets. Its
// task's local state must be rebuilt, as if there were no checkpoint.
var ErrBadCheckpoint = errors.New("checkpoint cannot be trusted")

// ReadCheckpoint reads the changelog offsets recorded in dir of fs
// (vfs.Default for the operating system's): for each
// store, the next changelog offset not yet reflected in local state. It
// returns nil and no error when there is no checkpoint, meaning local state
// cannot be trusted, and an error wrapping ErrBadCheckpoint when the file
// does not parse or holds a negative offset.
func ReadCheckpoint(fsys vfs.FS, dir string) (map[string]int64, error) {
	path := fsys.PathJoin(dir, CheckpointFile)
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	b, err := io.ReadAll(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	var offsets map[string]int64
	if err := json.Unmarshal(b, &offsets); err != nil || offsets == nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadCheckpoint, path, err)
	}
	for store, off := range offsets {
		if off < 0 {
			return nil, fmt.Errorf("%w: %s: store %s at offset %d", ErrBadCheckpoint, path, store, off)
		}
	}
	return offsets, nil
}

// WriteCheckpoint records offsets in dir of fs durably: it writes a temporary
// file, fsyncs it, renames it over the checkpoint and fsyncs dir, so that
// after a crash the checkpoint is either the old one or the new one.
func WriteCheckpoint(fsys vfs.FS, dir string, offsets map[string]int64) error {
	b, err := json.Marshal(offsets)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	tmp := fsys.PathJoin(dir, CheckpointFile+".tmp")
	f, err := fsys.Create(tmp)
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := fsys.Rename(tmp, fsys.PathJoin(dir, CheckpointFile)); err != nil {
		return fmt.Errorf("install checkpoint: %w", err)
	}
	return syncDir(fsys, dir)
}

// RemoveCheckpoint deletes the checkpoint in dir of fs durably, marking local
// state as not trusted until the next WriteCheckpoint.
func RemoveCheckpoint(fsys vfs.FS, dir string) error {
	err := fsys.Remove(fsys.PathJoin(dir, CheckpointFile))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove checkpoint: %w", err)
	}
	return syncDir(fsys, dir)
}

func syncDir(fsys vfs.FS, dir string) error {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
