// Command riffle runs a Riffle broker and administers Kafka-protocol clusters.
//
// Usage:
//
//	riffle <command> [flags]
//
// Run "riffle help" for the list of commands.
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

// command is one riffle subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() []command {
	return []command{
		{"broker", "run a Riffle broker", runBroker},
		{"topic", "create, list, describe, delete topics and alter their configs", runTopic},
		{"group", "list, describe, delete consumer groups and reset their offsets", runGroup},
		{"share-group", "list, describe and reset share groups", runShareGroup},
		{"transaction", "list and describe transactions", runTransaction},
		{"perf", "measure produce, consume and end-to-end throughput and latency", runPerf},
	}
}

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
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage()
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:])
		}
	}
	usage()
	return fmt.Errorf("unknown command %q", args[0])
}

func usage() {
	fmt.Fprintln(os.Stderr, "Usage: riffle <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun \"riffle <command> -h\" for a command's flags.")
}
