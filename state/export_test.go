package state

import (
	"errors"
	"log/slog"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// OpenPebbleFS opens the Pebble instance in dir on fs, so tests can cut the
// power with vfs.NewStrictMem. It syncs a directory it creates into its
// parent, so that the directory survives the cut.
func OpenPebbleFS(fs vfs.FS, dir string) (*PebbleDB, error) {
	if _, err := fs.Stat(dir); err != nil {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		parent, err := fs.OpenDir(fs.PathDir(dir))
		if err != nil {
			return nil, err
		}
		if err := errors.Join(parent.Sync(), parent.Close()); err != nil {
			return nil, err
		}
	}
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Logger: pebbleLogger{slog.Default()}})
	if err != nil {
		return nil, err
	}
	return newPebbleDB(db), nil
}
