// Package pebbledb opens the broker's Pebble databases (the group store,
// the share store and the metadata quorum's log) one way: in a directory
// that survives a power cut, on a file system tests can replace, with
// Pebble's log lines in the broker's slog logger.
package pebbledb

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Open opens the Pebble database in dir on fs (vfs.Default when nil),
// creating it if missing. A directory it creates is synced into its
// parent, so that a power cut after the first writes cannot take the
// directory away with every file Pebble synced in it. Pebble's
// informational lines go to log at Debug level, its fatal ones at Error
// before the panic Pebble requires.
func Open(dir string, fs vfs.FS, log *slog.Logger) (*pebble.DB, error) {
	if fs == nil {
		fs = vfs.Default
	}
	if err := createDir(fs, dir); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: logger{log}})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return db, nil
}

func createDir(fs vfs.FS, dir string) error {
	if _, err := fs.Stat(dir); err == nil {
		return nil
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	parent, err := fs.OpenDir(fs.PathDir(dir))
	if err != nil {
		return err
	}
	return errors.Join(parent.Sync(), parent.Close())
}

// logger routes Pebble's printf-style log lines into slog.
type logger struct{ log *slog.Logger }

func (l logger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l logger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
