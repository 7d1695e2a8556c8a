// Package embedded runs Riffle's broker inside a streams application, so
// that one Go binary is both broker and application:
//
//	app, err := streams.New(top,
//		streams.ApplicationID("wordcount"),
//		streams.StateDir("state"),
//		streams.Embedded(embedded.Broker()))
//
// The broker keeps its data under "<state dir>/broker" and listens on a free
// loopback port unless an address is given.
package embedded

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/streams"
)

// Broker returns a streams.BrokerStarter that starts Riffle's broker with
// opts, after defaults of ListenAddr("127.0.0.1:0"), the directory the
// application chooses, and the application's logger.
func Broker(opts ...broker.Opt) streams.BrokerStarter {
	return func(ctx context.Context, dir string, logger *slog.Logger) (string, func(context.Context) error, error) {
		all := append([]broker.Opt{
			broker.ListenAddr("127.0.0.1:0"),
			broker.DataDir(dir),
			broker.Logger(logger),
		}, opts...)
		b, err := broker.New(all...)
		if err != nil {
			return "", nil, fmt.Errorf("create broker: %w", err)
		}
		if err := b.Start(ctx); err != nil {
			return "", nil, fmt.Errorf("start broker in %s: %w", dir, err)
		}
		return b.Addr(), b.Close, nil
	}
}
