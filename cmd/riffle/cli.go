package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// cmdSpec is one riffle command: a group of subcommands, or a leaf that
// runs. Its help page, its dispatch and its shell completion all come
// from it.
type cmdSpec struct {
	name    string
	summary string
	// synopsis follows the command's path in its help, e.g. "[flags] topic...".
	synopsis string
	// about is the help page's description, one paragraph per entry.
	about    []string
	examples []string
	// setup registers a leaf's flags and returns what runs it.
	setup func(fs *flag.FlagSet) runFunc
	subs  []*cmdSpec
	// values completes a positional argument, e.g. the shells of completion.
	values []string
	// textOnly leaves out --output: the command prints text for people
	// (help, broker's logs) or for a shell (completion), never JSON.
	textOnly bool
}

// runFunc runs a leaf command with its positional arguments, once its
// flags are parsed.
type runFunc func(ctx context.Context, o *output, args []string) error

// flagValues completes the values of flags that take a fixed set.
var flagValues = map[string][]string{
	"output":      {"text", "json"},
	"isolation":   {"read_uncommitted", "read_committed"},
	"acks":        {"all", "1", "0"},
	"compression": {"none", "gzip", "snappy", "lz4", "zstd"},
	"input":       {"text", "json"},
}

// root is the tree of every riffle command.
func root() *cmdSpec {
	r := &cmdSpec{
		name:     "riffle",
		summary:  "run a Riffle broker and drive Kafka-protocol clusters",
		synopsis: "<command> [flags]",
		about: []string{
			"riffle runs a Riffle broker and talks to any Kafka-protocol cluster (Riffle, Apache Kafka, Redpanda): " +
				"it produces and consumes records, administers topics and groups, and measures throughput.",
			"Client commands connect to --brokers (default 127.0.0.1:9092) and print tables sized to the terminal, " +
				"with colour only on a terminal and never when NO_COLOR is set; --output json prints JSON for scripts instead.",
		},
		examples: []string{
			"riffle broker --data-dir /var/lib/riffle",
			"riffle topic create orders --partitions 6",
			"echo 'user1:hello' | riffle produce orders -K :",
			"riffle consume orders -o start -e",
			"riffle help topic describe",
		},
		subs: []*cmdSpec{
			{name: "broker", summary: "run a Riffle broker", synopsis: "[flags]",
				about: []string{"Runs a broker in the foreground until SIGINT or SIGTERM, which shut it down cleanly. " +
					"Its data (partition logs, metadata quorum, group, share-group and transaction state) lives under --data-dir."},
				examples: []string{"riffle broker --data-dir /var/lib/riffle",
					"riffle broker --listen 0.0.0.0:9092 --advertised-addr kafka.example:9092 --http 127.0.0.1:8080"},
				textOnly: true, setup: brokerServe},
			produceCmd(),
			consumeCmd(),
			topicCmds(),
			groupCmds(),
			shareGroupCmds(),
			clusterCmds(),
			transactionCmds(),
			perfCmds(),
		},
	}
	r.subs = append(r.subs, completionCmd(r), helpCmd(r))
	return r
}

// sub returns the subcommand called name.
func (c *cmdSpec) sub(name string) *cmdSpec {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// resolve walks args down the tree as far as they name commands and
// returns the command reached, its path and the arguments left.
func (c *cmdSpec) resolve(args []string) (*cmdSpec, []string, []string) {
	path := []string{c.name}
	for len(args) > 0 {
		s := c.sub(args[0])
		if s == nil {
			break
		}
		c, path, args = s, append(path, s.name), args[1:]
	}
	return c, path, args
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "help" || arg == "-h" || arg == "-help" || arg == "--help"
}

// execute runs the command args name, writing to o.
func execute(ctx context.Context, o *output, args []string) error {
	c, path, rest := root().resolve(args)
	name := strings.Join(path, " ")
	switch {
	case c.setup != nil:
		return runLeaf(ctx, o, c, name, rest)
	case len(rest) > 0 && isHelp(rest[0]):
		return c.writeHelp(o.stdout, name)
	}
	c.writeHelp(o.stderr, name)
	what, sub := strings.Join(path[1:], " ")+": ", "sub"
	if len(path) == 1 {
		what, sub = "", ""
	}
	if len(rest) == 0 {
		return fmt.Errorf("%smissing %scommand", what, sub)
	}
	return fmt.Errorf("%sunknown %scommand %q", what, sub, rest[0])
}

// leafFlags builds the flag set of a leaf with its common --output flag.
func leafFlags(c *cmdSpec, name string, stderr io.Writer) (*flag.FlagSet, runFunc, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	run := c.setup(fs)
	format := new(string)
	*format = "text"
	if !c.textOnly {
		fs.StringVar(format, "output", "text", "output format: text (tables) or json (for scripts)")
	}
	fs.Usage = func() { c.writeHelp(stderr, name, fs) }
	return fs, run, format
}

func runLeaf(ctx context.Context, o *output, c *cmdSpec, name string, args []string) error {
	fs, run, format := leafFlags(c, name, o.stderr)
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch *format {
	case "text":
	case "json":
		o.json = true
	default:
		return fmt.Errorf("%s: --output must be text or json, not %q", name, *format)
	}
	return run(ctx, o, positional)
}

// writeHelp writes c's manual page. A leaf lists its flags; a group its
// subcommands.
func (c *cmdSpec) writeHelp(w io.Writer, name string, fs ...*flag.FlagSet) error {
	var b strings.Builder
	fmt.Fprintf(&b, "NAME\n    %s - %s\n\nSYNOPSIS\n    %s %s\n", name, c.summary, name, c.synopsis)
	if len(c.about) > 0 {
		b.WriteString("\nDESCRIPTION\n")
		for i, p := range c.about {
			if i > 0 {
				b.WriteString("\n")
			}
			b.WriteString(indent(wrap(p, 72), "    "))
		}
	}
	if len(c.subs) > 0 {
		b.WriteString("\nCOMMANDS\n")
		for _, s := range c.subs {
			fmt.Fprintf(&b, "    %-14s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(&b, "\n    Run \"riffle help %s<command>\" for a command's manual.\n", strings.TrimPrefix(name+" ", "riffle "))
	}
	if c.setup != nil {
		if len(fs) == 0 {
			f, _, _ := leafFlags(c, name, io.Discard)
			fs = append(fs, f)
		}
		heading := "\nFLAGS\n"
		fs[0].VisitAll(func(f *flag.Flag) {
			b.WriteString(heading)
			heading = ""
			typ, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(&b, "    %s", flagName(f.Name))
			if typ != "" {
				fmt.Fprintf(&b, " %s", typ)
			}
			if !isZeroDefault(f) {
				fmt.Fprintf(&b, " (default %s)", f.DefValue)
			}
			b.WriteString("\n")
			b.WriteString(indent(wrap(usage, 68), "        "))
		})
	}
	if len(c.examples) > 0 {
		b.WriteString("\nEXAMPLES\n")
		for _, e := range c.examples {
			fmt.Fprintf(&b, "    %s\n", e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// flagName spells a flag as it is usually typed: -K, --brokers.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// isZeroDefault reports whether a flag's default says nothing worth
// printing (false, 0, empty).
func isZeroDefault(f *flag.Flag) bool {
	switch f.DefValue {
	case "", "0", "false", "0s", "[]":
		return true
	}
	return false
}

// wrap breaks text into lines of at most width bytes at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	line := 0
	for w := range strings.FieldsSeq(text) {
		if line > 0 && line+1+len(w) > width {
			b.WriteString("\n")
			line = 0
		} else if line > 0 {
			b.WriteString(" ")
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\n")
	return b.String()
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func helpCmd(r *cmdSpec) *cmdSpec {
	var names []string
	for _, s := range r.subs {
		names = append(names, s.name)
	}
	return &cmdSpec{
		name:     "help",
		summary:  "show the manual of a command",
		synopsis: "[command...]",
		examples: []string{"riffle help consume", "riffle help group describe"},
		values:   append(names, "completion", "help"),
		textOnly: true,
		setup: func(*flag.FlagSet) runFunc {
			return func(_ context.Context, o *output, args []string) error {
				c, path, rest := r.resolve(args)
				if len(rest) > 0 {
					return fmt.Errorf("help: no command %q", strings.Join(args, " "))
				}
				return c.writeHelp(o.stdout, strings.Join(path, " "))
			}
		},
	}
}

// candidates returns the completions of the last of words, the words of
// a command line after "riffle".
func (c *cmdSpec) candidates(words []string) []string {
	if len(words) == 0 {
		words = []string{""}
	}
	cur, before := words[len(words)-1], words[:len(words)-1]
	node, _, rest := c.resolve(before)
	var fs *flag.FlagSet
	if node.setup != nil {
		fs, _, _ = leafFlags(node, node.name, io.Discard)
	}
	if fs != nil && len(rest) > 0 && strings.HasPrefix(rest[len(rest)-1], "-") && !strings.Contains(rest[len(rest)-1], "=") {
		name := strings.TrimLeft(rest[len(rest)-1], "-")
		if f := fs.Lookup(name); f != nil && !isBoolFlag(f) {
			return withPrefix(flagValues[name], cur)
		}
	}
	var out []string
	switch {
	case strings.HasPrefix(cur, "-") && fs != nil:
		fs.VisitAll(func(f *flag.Flag) { out = append(out, flagName(f.Name)) })
	case len(node.subs) > 0 && len(rest) == 0:
		for _, s := range node.subs {
			out = append(out, s.name)
		}
	default:
		out = node.values
	}
	return withPrefix(out, cur)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// withPrefix keeps the words that start with prefix.
func withPrefix(words []string, prefix string) []string {
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}
