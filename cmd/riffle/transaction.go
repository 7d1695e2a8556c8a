package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

func transactionCmds() *cmdSpec {
	return &cmdSpec{
		name:     "transaction",
		summary:  "list and describe transactions",
		synopsis: "<subcommand> [flags] [transactional-id...]",
		subs: []*cmdSpec{
			{name: "list", summary: "list transactional ids, their producer ids and states", synopsis: "[flags]",
				about: []string{"Asks every broker for the transactional ids its transaction coordinator owns " +
					"(ListTransactions), filtered by --state and --pattern."},
				examples: []string{"riffle transaction list", "riffle transaction list --state Ongoing --pattern '^orders-'"},
				setup:    transactionList},
			{name: "describe", summary: "show the producer, state, timeout, start and partitions of transactions", synopsis: "[flags] [transactional-id...]",
				about: []string{"Describes each named transactional id (every one when none is named): its producer id " +
					"and epoch, its state, its timeout, when its open transaction started and the partitions it holds " +
					"(DescribeTransactions)."},
				examples: []string{"riffle transaction describe orders-tx"},
				setup:    transactionDescribe},
		},
	}
}

func transactionList(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	var states listFlag
	fs.Var(&states, "state", "list only transactions in this `state` (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort); repeatable")
	pattern := fs.String("pattern", "", "list only transactional ids matching this RE2 `regexp`")
	return func(ctx context.Context, o *output, rest []string) error {
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
		tab := newTable("TRANSACTIONAL-ID", "PRODUCER-ID", "STATE")
		for _, l := range listed.Sorted() {
			tab.row(l.TxnID, l.ProducerID, l.State)
		}
		if err := o.print(tab); err != nil {
			return fmt.Errorf("transaction list: %w", err)
		}
		return nil
	}
}

func transactionDescribe(fs *flag.FlagSet) runFunc {
	brokers := brokersFlag(fs)
	return func(ctx context.Context, o *output, ids []string) error {
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
		}
		tab := newTable("TRANSACTIONAL-ID", "PRODUCER-ID", "EPOCH", "STATE", "TIMEOUT", "STARTED", "PARTITIONS")
		var failed []string
		if len(ids) > 0 {
			described, err := adm.DescribeTransactions(ctx, ids...)
			if err != nil {
				return fmt.Errorf("transaction describe: %w", err)
			}
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
				tab.row(d.TxnID, d.ProducerID, d.ProducerEpoch, d.State,
					time.Duration(d.TimeoutMillis)*time.Millisecond, started, strings.Join(parts, ","))
			}
		}
		if err := o.print(tab); err != nil {
			return fmt.Errorf("transaction describe: %w", err)
		}
		if len(failed) > 0 {
			return fmt.Errorf("transaction describe: %s", strings.Join(failed, "; "))
		}
		return nil
	}
}
