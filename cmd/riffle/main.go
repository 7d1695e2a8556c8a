// Command riffle runs a Riffle broker and administers Kafka-protocol clusters.
//
// Usage:
//
//	riffle <command> [flags]
//
// Run "riffle help" for the list of commands and "riffle help <command>"
// for the manual of one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "riffle:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == completeCmd {
		return complete(os.Stdout, args[1:])
	}
	if len(args) == 0 || isHelp(args[0]) && len(args) == 1 {
		return root().writeHelp(os.Stdout, "riffle")
	}
	return execute(ctx, newOutput(os.Stdin, os.Stdout, os.Stderr), args)
}
