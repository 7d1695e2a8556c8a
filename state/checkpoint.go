package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckpointFile is the name of a task's checkpoint file inside its state
// directory (Kafka Streams' ".checkpoint").
const CheckpointFile = ".checkpoint"

// ReadCheckpoint reads the changelog offsets recorded in dir: for each
// store, the next changelog offset not yet reflected in local state. It
// returns nil and no error when there is no checkpoint, meaning local state
// cannot be trusted.
func ReadCheckpoint(dir string) (map[string]int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, CheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var offsets map[string]int64
	if err := json.Unmarshal(b, &offsets); err != nil {
		return nil, fmt.Errorf("parse checkpoint %s: %w", filepath.Join(dir, CheckpointFile), err)
	}
	return offsets, nil
}

// WriteCheckpoint atomically records offsets in dir.
func WriteCheckpoint(dir string, offsets map[string]int64) error {
	b, err := json.Marshal(offsets)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	tmp := filepath.Join(dir, CheckpointFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, CheckpointFile)); err != nil {
		return fmt.Errorf("install checkpoint: %w", err)
	}
	return nil
}

// RemoveCheckpoint deletes the checkpoint in dir, marking local state as
// not trusted until the next WriteCheckpoint.
func RemoveCheckpoint(dir string) error {
	err := os.Remove(filepath.Join(dir, CheckpointFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove checkpoint: %w", err)
	}
	return nil
}
