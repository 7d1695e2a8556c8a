package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// needKcat returns kcat's path, or skips the test when it is not
// installed unless RIFFLE_INTEROP_REQUIRED=1 (.ci/run installs it).
func needKcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err == nil {
		return path
	}
	if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
		t.Fatal("kcat is required (RIFFLE_INTEROP_REQUIRED=1) but not installed: apt-get install kcat")
	}
	t.Skip("kcat not installed (apt-get install kcat); skipping")
	return ""
}

// kcat runs kcat with args and stdin in, returning its stdout.
func kcat(ctx context.Context, t *testing.T, path, in string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader(in)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %q: %v\nstderr: %s", args, err, stderr.String())
	}
	return string(out)
}

// TestKcatSameOutput produces with riffle and with kcat, and reads every
// topic with both: with the same format both print the same bytes, and
// riffle places keyed records where kcat's murmur2 partitioner (the Java
// client's) does.
func TestKcatSameOutput(t *testing.T) {
	path := needKcat(t)
	addr := startCLIBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := "--brokers=" + addr
	mustCLI(ctx, t, "", "topic", "create", "by-riffle", "--partitions", "1", b)
	mustCLI(ctx, t, "", "topic", "create", "by-kcat", "--partitions", "1", b)

	input := "user1:hello\nuser2:a:b\nno key\n:empty key\nuser3:\n"
	mustCLI(ctx, t, input, "produce", "by-riffle", "-K", ":", "-H", "src=cli", "-H", "n=1", b)
	kcat(ctx, t, path, input, "-b", addr, "-P", "-t", "by-kcat", "-K", ":", "-H", "src=cli", "-H", "n=1")

	format := `%t|%p|%o|%k|%K|%s|%S|%h|%T\n`
	for _, topic := range []string{"by-riffle", "by-kcat"} {
		theirs := kcat(ctx, t, path, "", "-b", addr, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", format)
		ours := mustCLI(ctx, t, "", "consume", topic, "-o", "beginning", "-e", "-f", format, b)
		if ours != theirs || strings.Count(ours, "\n") != 5 {
			t.Errorf("topic %s: riffle consume printed\n%s\nkcat printed\n%s", topic, ours, theirs)
		}
		for _, off := range []string{"-2", "3"} {
			theirs := kcat(ctx, t, path, "", "-b", addr, "-C", "-t", topic, "-o", off, "-e", "-q", "-f", `%o %k\n`)
			ours := mustCLI(ctx, t, "", "consume", topic, "-o", off, "-e", "-f", `%o %k\n`, b)
			if ours != theirs {
				t.Errorf("topic %s -o %s: riffle printed %q, kcat %q", topic, off, ours, theirs)
			}
		}
	}
	// The values and keys riffle and kcat produced are the same, except
	// for kcat's timestamps.
	strip := func(s string) string {
		var out []string
		for l := range strings.Lines(s) {
			fields := strings.Split(l, "|")
			out = append(out, strings.Join(fields[2:len(fields)-1], "|"))
		}
		return strings.Join(out, "\n")
	}
	r := mustCLI(ctx, t, "", "consume", "by-riffle", "-e", "-f", format, b)
	k := mustCLI(ctx, t, "", "consume", "by-kcat", "-e", "-f", format, b)
	if strip(r) != strip(k) {
		t.Errorf("riffle produced\n%s\nkcat produced\n%s", r, k)
	}

	mustCLI(ctx, t, "", "topic", "create", "keys-riffle", "--partitions", "6", b)
	mustCLI(ctx, t, "", "topic", "create", "keys-kcat", "--partitions", "6", b)
	var keyed strings.Builder
	for i := range 60 {
		keyed.WriteString("key-" + itoa(int64(i)) + ":v\n")
	}
	mustCLI(ctx, t, keyed.String(), "produce", "keys-riffle", "-K", ":", b)
	kcat(ctx, t, path, keyed.String(), "-b", addr, "-P", "-t", "keys-kcat", "-K", ":", "-X", "partitioner=murmur2_random")
	placement := func(topic string) map[string]string {
		m := map[string]string{}
		for l := range strings.Lines(mustCLI(ctx, t, "", "consume", topic, "-e", "-f", `%k %p\n`, b)) {
			k, p, _ := strings.Cut(strings.TrimSpace(l), " ")
			m[k] = p
		}
		return m
	}
	ours, theirs := placement("keys-riffle"), placement("keys-kcat")
	if len(ours) != 60 {
		t.Fatalf("%d keys in keys-riffle, want 60", len(ours))
	}
	for k, p := range ours {
		if theirs[k] != p {
			t.Errorf("key %s: riffle put it on partition %s, kcat (murmur2) on %s", k, p, theirs[k])
		}
	}
}
