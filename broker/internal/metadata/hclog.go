package metadata

import (
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger returns an hclog.Logger, the logger hashicorp/raft wants,
// that forwards Warn and Error lines to log and drops the rest.
func newHCLogger(log *slog.Logger) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: io.Discard})
	l.RegisterSink(slogSink{log: log})
	return l
}

// slogSink is an hclog.SinkAdapter writing to slog.
type slogSink struct{ log *slog.Logger }

// Accept logs one hclog line; its key-value args become slog attributes.
func (s slogSink) Accept(name string, level hclog.Level, msg string, args ...any) {
	if level < hclog.Warn || level == hclog.Off {
		return
	}
	lvl := slog.LevelWarn
	if level >= hclog.Error {
		lvl = slog.LevelError
	}
	s.log.Log(context.Background(), lvl, msg, append(args, "logger", name)...)
}
