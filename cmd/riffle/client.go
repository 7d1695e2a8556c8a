package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// defaultBrokers is where client commands connect unless --brokers says otherwise.
const defaultBrokers = "127.0.0.1:9092"

// brokersFlag registers the --brokers flag shared by every client command.
func brokersFlag(fs *flag.FlagSet) *string {
	return fs.String("brokers", defaultBrokers, "comma-separated host:port list of brokers to bootstrap from")
}

// splitBrokers splits a --brokers value into addresses, dropping blanks.
func splitBrokers(s string) []string {
	var addrs []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// newAdmin connects an admin client to the comma-separated brokers. The
// admin client wraps the returned kgo client; close the kgo client when done.
func newAdmin(brokers string, opts ...kgo.Opt) (*kadm.Client, *kgo.Client, error) {
	addrs := splitBrokers(brokers)
	if len(addrs) == 0 {
		return nil, nil, errors.New("--brokers is empty")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", brokers, err)
	}
	return kadm.NewClient(cl), cl, nil
}

// listFlag is a flag that may be repeated, collecting every value.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// keyValues parses k=v pairs, as given to --config and --set.
func keyValues(pairs []string) (map[string]*string, error) {
	m := make(map[string]*string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", p)
		}
		m[k] = &v
	}
	return m, nil
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, which the flag package alone stops at, and returns
// the positional arguments. A "--" ends flag parsing.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
