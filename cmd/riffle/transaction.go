package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const transactionUsage = `Usage: riffle transaction <subcommand> [flags] [transactional-id...]

Subcommands:
  list      list transactional ids, their producer ids and states
            (--state S, repeatable; --pattern RE2 on the transactional id)
  describe  show the producer id and epoch, state, timeout, start time
            and partitions of each transactional id (all when none is named)

Run "riffle transaction <subcommand> -h" for its flags.`

func runTransaction(ctx context.Context, args []string) error {
	return transactionCmd(ctx, args, os.Stdout, os.Stderr)
}

// transactionCmd runs a transaction subcommand, writing tables to stdout
// and errors to stderr.
func transactionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, transactionUsage)
		if len(args) == 0 {
			return errors.New("transaction: missing subcommand")
		}
		return nil
	}
	t := transactionRun{stdout: stdout, stderr: stderr}
	sub := map[string]func(context.Context, []string) error{
		"list":     t.list,
		"describe": t.describe,
	}[args[0]]
	if sub == nil {
		fmt.Fprintln(stderr, transactionUsage)
		return fmt.Errorf("transaction: unknown subcommand %q", args[0])
	}
	return sub(ctx, args[1:])
}

// transactionRun carries a transaction subcommand's output streams.
type transactionRun struct {
	stdout, stderr io.Writer
}

func (r *transactionRun) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("riffle transaction "+name, flag.ContinueOnError)
	fs.SetOutput(r.stderr)
	return fs
}

func (r *transactionRun) list(ctx context.Context, args []string) error {
	fs := r.flags("list")
	brokers := brokersFlag(fs)
	var states listFlag
	fs.Var(&states, "state", "list only transactions in this state (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort); repeatable")
	pattern := fs.String("pattern", "", "list only transactional ids matching this RE2 regular expression")
	rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("transaction list: unexpected argument %q", rest[0])
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("transaction list: %w", err)
	}
	defer cl.Close()
	listed, err := adm.ListTransactionsByTxPattern(ctx, nil, states, *pattern)
	if err != nil {
		return fmt.Errorf("transaction list: %w", err)
	}
	w := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TRANSACTIONAL-ID\tPRODUCER-ID\tSTATE")
	for _, l := range listed.Sorted() {
		fmt.Fprintf(w, "%s\t%d\t%s\n", l.TxnID, l.ProducerID, l.State)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("transaction list: %w", err)
	}
	return nil
}

func (r *transactionRun) describe(ctx context.Context, args []string) error {
	fs := r.flags("describe")
	brokers := brokersFlag(fs)
	ids, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	adm, cl, err := newAdmin(*brokers)
	if err != nil {
		return fmt.Errorf("transaction describe: %w", err)
	}
	defer cl.Close()
	if len(ids) == 0 {
		listed, err := adm.ListTransactions(ctx, nil, nil)
		if err != nil {
			return fmt.Errorf("transaction describe: %w", err)
		}
		ids = listed.TransactionalIDs()
		if len(ids) == 0 {
			return nil
		}
	}
	described, err := adm.DescribeTransactions(ctx, ids...)
	if err != nil {
		return fmt.Errorf("transaction describe: %w", err)
	}
	w := tabwriter.NewWriter(r.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "TRANSACTIONAL-ID\tPRODUCER-ID\tEPOCH\tSTATE\tTIMEOUT\tSTARTED\tPARTITIONS")
	var failed []string
	for _, d := range described.Sorted() {
		if d.Err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", d.TxnID, d.Err))
			continue
		}
		started := "-"
		if d.StartTimestamp >= 0 {
			started = time.UnixMilli(d.StartTimestamp).UTC().Format(time.RFC3339)
		}
		var parts []string
		for _, t := range d.Topics.Sorted() {
			for _, p := range t.Partitions {
				parts = append(parts, t.Topic+"-"+strconv.Itoa(int(p)))
			}
		}
		if len(parts) == 0 {
			parts = []string{"-"}
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%v\t%s\t%s\n", d.TxnID, d.ProducerID, d.ProducerEpoch, d.State,
			time.Duration(d.TimeoutMillis)*time.Millisecond, started, strings.Join(parts, ","))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("transaction describe: %w", err)
	}
	if len(failed) > 0 {
		return fmt.Errorf("transaction describe: %s", strings.Join(failed, "; "))
	}
	return nil
}
