package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestMain lets the test binary act as the riffle command when
// RIFFLE_TEST_AS_RIFFLE is set, so that shell completion scripts can run it.
func TestMain(m *testing.M) {
	if os.Getenv("RIFFLE_TEST_AS_RIFFLE") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// leaves returns every runnable command below c with its path.
func leaves(c *cmdSpec, path []string) map[string]*cmdSpec {
	out := map[string]*cmdSpec{}
	if c.setup != nil {
		out[strings.Join(path, " ")] = c
	}
	for _, s := range c.subs {
		for k, v := range leaves(s, append(slices.Clone(path), s.name)) {
			out[k] = v
		}
	}
	return out
}

func TestHelpForEveryCommand(t *testing.T) {
	ctx := context.Background()
	all := leaves(root(), nil)
	for _, want := range []string{"produce", "consume", "cluster info", "topic describe", "group describe", "perf e2e", "completion", "broker"} {
		if all[want] == nil {
			t.Fatalf("no command %q", want)
		}
	}
	for path, c := range all {
		if c.summary == "" || c.synopsis == "" || len(c.examples) == 0 {
			t.Errorf("%s: summary %q synopsis %q examples %d: every command needs all three", path, c.summary, c.synopsis, len(c.examples))
		}
		out, _, err := runCLI(ctx, append([]string{"help"}, strings.Fields(path)...)...)
		if err != nil {
			t.Fatalf("help %s: %v", path, err)
		}
		for _, section := range []string{"NAME\n    riffle " + path + " - " + c.summary, "SYNOPSIS\n    riffle " + path + " ", "EXAMPLES\n"} {
			if !strings.Contains(out, section) {
				t.Errorf("help %s lacks %q:\n%s", path, section, out)
			}
		}
		if hasOutput := strings.Contains(out, "    --output string (default text)\n"); hasOutput == c.textOnly {
			t.Errorf("help %s: --output listed %v, want %v:\n%s", path, hasOutput, !c.textOnly, out)
		}
		// -h prints the same page to stderr.
		fs, _, _ := leafFlags(c, path, io.Discard)
		flags := 0
		fs.VisitAll(func(*flag.Flag) { flags++ })
		if hasFlags := strings.Contains(out, "FLAGS\n"); hasFlags != (flags > 0) {
			t.Errorf("help %s lacks its flags:\n%s", path, out)
		}
		_, errOut, err := runCLI(ctx, append(strings.Fields(path), "-h")...)
		if !errors.Is(err, flag.ErrHelp) || errOut != out {
			t.Errorf("%s -h: %v, printed\n%s", path, err, errOut)
		}
	}
	out, _, _ := runCLI(ctx, "help", "consume")
	for _, want := range []string{"    -G string\n", "    -o string (default start)\n", "    --isolation string (default read_uncommitted)\n", "%k key", "DESCRIPTION\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("help consume lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = runCLI(ctx, "help", "topic")
	if !strings.Contains(out, "COMMANDS\n    create ") || !strings.Contains(out, `Run "riffle help topic <command>"`) {
		t.Errorf("help topic:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"help", "nosuch"}, `help: no command "nosuch"`},
		{[]string{"topic"}, "topic: missing subcommand"},
		{[]string{"topic", "nosuch"}, `topic: unknown subcommand "nosuch"`},
		{[]string{"cluster", "info", "--output", "yaml"}, "--output must be text or json"},
	} {
		if _, _, err := runCLI(ctx, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("riffle %q: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCompletionCandidates(t *testing.T) {
	r := root()
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, []string{"broker", "cluster", "completion", "consume", "group", "help", "perf", "produce", "share-group", "topic", "transaction"}},
		{[]string{"to"}, []string{"topic"}},
		{[]string{"topic", "de"}, []string{"delete", "describe"}},
		{[]string{"consume", "--iso"}, []string{"--isolation"}},
		{[]string{"consume", "orders", "--isolation", ""}, []string{"read_committed", "read_uncommitted"}},
		{[]string{"topic", "list", "--output", "j"}, []string{"json"}},
		{[]string{"completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"help", "c"}, []string{"cluster", "completion", "consume"}},
		{[]string{"perf", "produce", "--acks", ""}, []string{"0", "1", "all"}},
		{[]string{"group", "describe", "--w"}, []string{"--watch"}},
		{[]string{"produce", "-"}, nil},
	} {
		got := r.candidates(tc.words)
		if tc.want == nil {
			if !slices.Contains(got, "-K") || !slices.Contains(got, "--brokers") {
				t.Errorf("%q: %v lacks -K and --brokers", tc.words, got)
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: candidates %v, want %v", tc.words, got, tc.want)
		}
	}
}

// TestBashCompletion loads the bash script and completes as bash would,
// with this test binary standing in for riffle.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "riffle")); err != nil {
		t.Fatal(err)
	}
	script, _, err := runCLI(context.Background(), "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, "--norc", "-c", script+`
COMP_WORDS=(riffle group des); COMP_CWORD=2; _riffle; echo "${COMPREPLY[*]}"
COMP_WORDS=(riffle consume t --output ''); COMP_CWORD=4; _riffle; echo "${COMPREPLY[*]}"
`)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "RIFFLE_TEST_AS_RIFFLE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	if got := string(out); got != "describe\njson text\n" {
		t.Fatalf("bash completed %q", got)
	}
	for _, shell := range []string{"zsh", "fish"} {
		out, _, err := runCLI(context.Background(), "completion", shell)
		if err != nil || !strings.Contains(out, "riffle "+completeCmd) {
			t.Errorf("completion %s: %v\n%s", shell, err, out)
		}
	}
	if _, _, err := runCLI(context.Background(), "completion", "tcsh"); err == nil {
		t.Error("completion tcsh succeeded")
	}
}

func TestTableFitsWidth(t *testing.T) {
	tab := newTable("NAME", "DESCRIPTION", "N")
	tab.row("short", "a rather long description that will not fit in a narrow terminal", 1)
	tab.row("a-much-longer-name-here", "brief", nil)
	var buf bytes.Buffer
	o := &output{stdout: &buf, width: 40}
	if err := tab.write(o); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", buf.String())
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > 40 {
			t.Errorf("line of %d columns in a 40-column terminal: %q", n, l)
		}
	}
	if !strings.Contains(lines[1], "…") || !strings.HasSuffix(lines[2], "-") || !strings.HasPrefix(lines[0], "NAME ") {
		t.Errorf("table:\n%s", buf.String())
	}

	buf.Reset()
	o = &output{stdout: &buf}
	if err := tab.write(o); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "…") || strings.Contains(buf.String(), "\x1b") {
		t.Errorf("a table on no terminal is cut or coloured:\n%s", buf.String())
	}
	buf.Reset()
	o.color = true
	if err := tab.write(o); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "\x1b[1mNAME") {
		t.Errorf("coloured header: %q", buf.String())
	}
	lag := newTable("LAG", "END")
	lag.row(notableIf(int64(3), true), 9)
	lag.row(notableIf(int64(0), false), 9)
	buf.Reset()
	if err := lag.write(o); err != nil {
		t.Fatal(err)
	}
	if want := "\x1b[1mLAG  END\x1b[0m\n\x1b[33m3\x1b[0m    9\n0    9\n"; buf.String() != want {
		t.Errorf("notable cells: %q, want %q", buf.String(), want)
	}
	buf.Reset()
	if err := (&output{stdout: &buf, json: true}).print(lag); err != nil || !strings.Contains(buf.String(), `"lag": 3`) {
		t.Errorf("notable cell as JSON: %v %s", err, buf.String())
	}

	buf.Reset()
	o = &output{stdout: &buf, json: true}
	if err := o.print(tab); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"n": 1`) || !strings.Contains(buf.String(), `"n": null`) || !strings.Contains(buf.String(), `"name": "short"`) {
		t.Errorf("table as JSON:\n%s", buf.String())
	}
}

func TestNoColor(t *testing.T) {
	t.Setenv("NO_COLOR", "0")
	if colorWanted() {
		t.Error("colour with NO_COLOR=0")
	}
	t.Setenv("NO_COLOR", "")
	if !colorWanted() {
		t.Error("no colour with NO_COLOR empty, which no-color.org says to ignore")
	}
	os.Unsetenv("NO_COLOR")
	if !colorWanted() {
		t.Error("no colour without NO_COLOR")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if o := newOutput(nil, f, f); o.tty || o.color || o.width != 0 {
		t.Errorf("a file is taken for a terminal: %+v", o)
	}
}
