package interop

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
)

// TestJava runs the JUnit tests of the Maven module in interop/java:
// Apache Kafka's own Java clients, Kafka Streams and Kafka's command-line
// tools against a Riffle broker. The broker runs in this process on a
// loopback port with a fresh data directory; Maven gets its address in
// RIFFLE_BOOTSTRAP. Maven's output is streamed into the test log, and
// every JUnit test becomes a subtest named after its class and method, so
// a failure reads like a Go one. RIFFLE_JAVA_TESTS, if set, is passed as
// Surefire's -Dtest selection (e.g. ProducerTest or AdminTest#topics).
//
// Maven's local repository is .m2 at the root of the checkout (.ci/run
// fills it from Maven Central).
func TestJava(t *testing.T) {
	need(t, "java", "install a JDK, version 17 or newer")
	mvn := need(t, "mvn", "install Apache Maven")
	module, err := filepath.Abs("java")
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(filepath.Dir(module), "..", ".m2")
	reports := filepath.Join(module, "target", "surefire-reports")
	if err := os.RemoveAll(reports); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(t.TempDir(), "broker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()),
		broker.Logger(slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	if err != nil {
		t.Fatal(err)
	}
	startCtx, cancelStart := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStart()
	if err := b.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())

	args := []string{"-B", "--no-transfer-progress", "-Dstyle.color=never", "-Dmaven.repo.local=" + filepath.Clean(repo), "test"}
	if sel := os.Getenv("RIFFLE_JAVA_TESTS"); sel != "" {
		args = append(args, "-Dtest="+sel, "-Dsurefire.failIfNoSpecifiedTests=false")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mvn, args...)
	cmd.Dir = module
	cmd.Env = append(os.Environ(), "RIFFLE_BOOTSTRAP="+b.Addr())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		t.Log(strings.ReplaceAll(sc.Text(), "\x1b[0m", ""))
	}
	mvnErr := cmd.Wait()
	t.Logf("mvn test took %v", time.Since(start).Round(time.Millisecond))

	suites, err := readSurefireReports(reports)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range suites {
		t.Run(strings.TrimPrefix(s.Name, "riffle.interop."), func(t *testing.T) {
			for _, c := range s.Cases {
				t.Run(c.Name, c.report)
			}
		})
	}
	switch {
	case mvnErr != nil:
		t.Errorf("mvn %s: %v", strings.Join(args, " "), mvnErr)
	case len(suites) == 0:
		t.Errorf("mvn test ran no JUnit tests (no reports in %s)", reports)
	}
	if t.Failed() {
		logFile.Close()
		tail(t, logPath, 400)
	}
}

// surefireSuite is the part of a Surefire XML report (TEST-<class>.xml)
// the test reads.
type surefireSuite struct {
	Name  string         `xml:"name,attr"`
	Cases []surefireCase `xml:"testcase"`
}

type surefireCase struct {
	Name    string           `xml:"name,attr"`
	Time    string           `xml:"time,attr"`
	Failure []surefireDetail `xml:"failure"`
	Error   []surefireDetail `xml:"error"`
	Skipped *surefireDetail  `xml:"skipped"`
}

type surefireDetail struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// report turns one JUnit result into the outcome of the running subtest.
func (c surefireCase) report(t *testing.T) {
	for _, f := range append(c.Failure, c.Error...) {
		t.Errorf("%s: %s\n%s", f.Type, f.Message, strings.TrimSpace(f.Text))
	}
	if c.Skipped != nil && !t.Failed() {
		t.Skipf("skipped in JUnit: %s", c.Skipped.Message)
	}
	t.Logf("%ss in JUnit", c.Time)
}

func readSurefireReports(dir string) ([]surefireSuite, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "TEST-*.xml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var suites []surefireSuite
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var s surefireSuite
		if err := xml.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("surefire report %s: %w", p, err)
		}
		suites = append(suites, s)
	}
	return suites, nil
}

// tail logs the last n lines of a file.
func tail(t *testing.T, path string, n int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Log(err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of the broker's log:\n%s", len(lines), strings.Join(lines, "\n"))
}
