// Package kafkatest runs a real Apache Kafka broker for tests: one JVM in
// KRaft combined mode (process.roles=broker,controller) on loopback ports,
// with a fresh directory per run that is removed when the broker stops.
//
// The broker's classpath is the kafka_2.13 jar and its runtime
// dependencies, resolved by Maven from Maven Central into lib/ next to this
// file (pom.xml names the artifacts; .ci/run does this on a fresh machine):
//
//	mvn -q -B -f internal/kafkatest/pom.xml -Dmaven.repo.local=.m2 \
//	    dependency:copy-dependencies -DincludeScope=runtime \
//	    -DoutputDirectory=internal/kafkatest/lib
//
// run from the repository root. RIFFLE_KAFKA_LIB names another directory of
// jars. Without java on the PATH or without the jars, [Start] and [Shared]
// skip the test with the command above, unless RIFFLE_INTEROP_REQUIRED=1,
// which makes them fail it.
//
// The broker's storage is formatted with Kafka's own storage tool
// (kafka.tools.StorageTool format) before kafka.Kafka starts. The JVM gets
// a fixed heap of [DefaultHeap] and [TestJVMOptions] unless [Heap] and
// [JVMOptions] say otherwise.
package kafkatest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultHeap is the JVM heap (-Xms and -Xmx) a broker gets unless [Heap]
// sets another. Kafka's own kafka-server-start.sh uses 1 GiB; half of that
// is plenty for a test broker and keeps a two-core CI machine responsive.
const DefaultHeap = "512m"

// startTimeout bounds how long formatting plus starting the JVM may take.
const startTimeout = 3 * time.Minute

// Broker is a running Kafka broker.
type Broker struct {
	addr string
	dir  string
	cmd  *exec.Cmd

	exited  chan struct{} // closed once the JVM has been waited for
	waitErr error         // the JVM's exit status, set before exited closes
	stop    sync.Once
}

// Addr returns the bootstrap address of the broker's PLAINTEXT listener.
func (b *Broker) Addr() string { return b.addr }

// Dir returns the broker's run directory: server.properties, server.log
// and the data directory (data/).
func (b *Broker) Dir() string { return b.dir }

// Pid returns the process id of the broker's JVM.
func (b *Broker) Pid() int { return b.cmd.Process.Pid }

// config is the broker configuration [Option]s build.
type config struct {
	heap  string
	jvm   []string
	props map[string]string
}

// Option configures a broker started by [Start] or [Launch].
type Option func(*config)

// Heap sets the JVM heap size (as -Xms and -Xmx take it, for example
// "1g"). Default: [DefaultHeap].
func Heap(size string) Option { return func(c *config) { c.heap = size } }

// JVMOptions replaces the options of the broker's java command line
// besides the heap and the classpath (for example with Kafka's own
// KAFKA_JVM_PERFORMANCE_OPTS, [PerformanceJVMOptions], for a benchmark).
// Default: [TestJVMOptions].
func JVMOptions(opts ...string) Option { return func(c *config) { c.jvm = slices.Clone(opts) } }

// TestJVMOptions are the default JVM options of a test broker: only the
// quick C1 compiler, which halves the CPU a broker's start takes on a
// small machine, at the price of slower steady-state code.
var TestJVMOptions = []string{"-XX:TieredStopAtLevel=1"}

// PerformanceJVMOptions are the JVM options Kafka's kafka-run-class.sh
// starts a broker with (KAFKA_JVM_PERFORMANCE_OPTS in Kafka 4).
var PerformanceJVMOptions = []string{
	"-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
	"-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
}

// Config sets a broker property in server.properties, overriding the
// defaults [Launch] writes (for example Config("log.flush.interval.messages",
// "1") to fsync every message).
func Config(key, value string) Option { return func(c *config) { c.props[key] = value } }

// Start launches a broker for the test and stops it when the test ends. It
// skips the test if Kafka cannot run here (see the package documentation).
func Start(tb testing.TB, opts ...Option) *Broker {
	tb.Helper()
	cp := classpath(tb)
	b, err := Launch(cp, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return b
}

var shared struct {
	sync.Mutex
	b   *Broker
	err error
}

// Shared returns a broker shared by every test of the package, starting it
// on first use with default options; [StopShared] stops it. Tests sharing
// it must keep to their own topic and group names. It skips the test if
// Kafka cannot run here.
func Shared(tb testing.TB) *Broker {
	tb.Helper()
	cp := classpath(tb)
	shared.Lock()
	defer shared.Unlock()
	if shared.b == nil && shared.err == nil {
		shared.b, shared.err = Launch(cp)
	}
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.b
}

// StopShared stops the broker [Shared] started, if any. Call it from
// TestMain after m.Run.
func StopShared() error {
	shared.Lock()
	defer shared.Unlock()
	if shared.b == nil {
		return nil
	}
	err := shared.b.Stop()
	shared.b = nil
	return err
}

// classpath returns the broker's classpath or skips tb.
func classpath(tb testing.TB) string {
	tb.Helper()
	cp, err := Classpath()
	if err == nil {
		return cp
	}
	if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
		tb.Fatalf("Apache Kafka is required (RIFFLE_INTEROP_REQUIRED=1): %v", err)
	}
	tb.Skipf("Apache Kafka unavailable, skipping: %v", err)
	return ""
}

// Classpath returns the classpath of Kafka's broker and tools: every jar
// in RIFFLE_KAFKA_LIB or, by default, internal/kafkatest/lib of the module
// the working directory is in. It fails if java is not on the PATH or no
// kafka_2.13 jar is there.
func Classpath() (string, error) {
	if _, err := exec.LookPath("java"); err != nil {
		return "", errors.New("java is not on the PATH (install a JDK 17 or newer)")
	}
	dir := os.Getenv("RIFFLE_KAFKA_LIB")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "internal", "kafkatest", "lib")
	}
	jars, err := filepath.Glob(filepath.Join(dir, "*.jar"))
	if err != nil {
		return "", fmt.Errorf("list %s: %w", dir, err)
	}
	if !slices.ContainsFunc(jars, func(j string) bool { return strings.HasPrefix(filepath.Base(j), "kafka_2.13-") }) {
		return "", fmt.Errorf("no kafka_2.13 jar in %s; resolve it from the repository root with: "+
			"mvn -q -B -f internal/kafkatest/pom.xml -Dmaven.repo.local=.m2 dependency:copy-dependencies "+
			"-DincludeScope=runtime -DoutputDirectory=internal/kafkatest/lib", dir)
	}
	return strings.Join(jars, string(os.PathListSeparator)), nil
}

// moduleRoot finds the directory of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; set RIFFLE_KAFKA_LIB")
		}
		dir = parent
	}
}

// Launch formats a fresh run directory and starts a broker from classpath
// cp, returning once it answers Metadata. The caller must call
// [Broker.Stop].
func Launch(cp string, opts ...Option) (*Broker, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	cfg := config{heap: DefaultHeap, jvm: TestJVMOptions, props: defaultProps(ports[0], ports[1])}
	for _, o := range opts {
		o(&cfg)
	}
	dir, err := os.MkdirTemp("", "riffle-kafka-")
	if err != nil {
		return nil, fmt.Errorf("kafka run directory: %w", err)
	}
	cfg.props["log.dirs"] = filepath.Join(dir, "data")
	b, err := launch(cp, dir, cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := b.waitReady(ctx); err != nil {
		log := b.logTail()
		b.Stop()
		return nil, fmt.Errorf("kafka broker did not become ready: %w\n%s", err, log)
	}
	return b, nil
}

// defaultProps is a single-node test broker: both roles in one JVM, every
// internal topic with one replica and one partition (Kafka defaults to 50
// partitions for __consumer_offsets, which only slows a test broker's
// first group down), no delay before the first classic rebalance, and a
// 10 s session timeout for consumer-protocol members instead of 45 s, so
// that a test killing a member does not wait most of a minute.
func defaultProps(brokerPort, controllerPort int) map[string]string {
	host := "127.0.0.1"
	return map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          "1",
		"controller.quorum.voters":                         fmt.Sprintf("1@%s:%d", host, controllerPort),
		"listeners":                                        fmt.Sprintf("PLAINTEXT://%s:%d,CONTROLLER://%s:%d", host, brokerPort, host, controllerPort),
		"advertised.listeners":                             fmt.Sprintf("PLAINTEXT://%s:%d", host, brokerPort),
		"controller.listener.names":                        "CONTROLLER",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"offsets.topic.replication.factor":                 "1",
		"offsets.topic.num.partitions":                     "1",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"transaction.state.log.num.partitions":             "1",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		"share.coordinator.state.topic.num.partitions":     "1",
		"group.initial.rebalance.delay.ms":                 "0",
		"group.consumer.min.session.timeout.ms":            "6000",
		"group.consumer.session.timeout.ms":                "10000",
	}
}

const log4jConfig = `status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
`

func launch(cp, dir string, cfg config) (*Broker, error) {
	var props strings.Builder
	keys := make([]string, 0, len(cfg.props))
	for k := range cfg.props {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&props, "%s=%s\n", k, cfg.props[k])
	}
	propsFile := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(propsFile, []byte(props.String()), 0o644); err != nil {
		return nil, fmt.Errorf("write server.properties: %w", err)
	}
	log4jFile := filepath.Join(dir, "log4j2.properties")
	if err := os.WriteFile(log4jFile, []byte(log4jConfig), 0o644); err != nil {
		return nil, fmt.Errorf("write log4j2.properties: %w", err)
	}
	jvm := append([]string{
		"-Xms" + cfg.heap, "-Xmx" + cfg.heap,
		"-Dlog4j2.configurationFile=" + log4jFile,
		"-Dkafka.logs.dir=" + dir,
		"-cp", cp,
	}, cfg.jvm...)
	clusterID, err := newClusterID()
	if err != nil {
		return nil, err
	}
	if err := format(cp, log4jFile, dir, clusterID, propsFile); err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, fmt.Errorf("kafka stderr file: %w", err)
	}
	defer stderr.Close()
	cmd := exec.Command("java", append(jvm, "kafka.Kafka", propsFile)...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kafka: %w", err)
	}
	b := &Broker{dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	return b, nil
}

// format formats the broker's storage with Kafka's storage tool.
func format(cp, log4jFile, dir, clusterID, propsFile string) error {
	// A short-lived tool: the C1 compiler and the serial collector start it
	// in half the time.
	cmd := exec.Command("java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
		"-Dlog4j2.configurationFile="+log4jFile, "-Dkafka.logs.dir="+dir,
		"-cp", cp, "kafka.tools.StorageTool", "format", "--cluster-id", clusterID, "--config", propsFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafka storage format: %w:\n%s", err, out)
	}
	return nil
}

// newClusterID returns a random cluster id as Kafka spells a Uuid: 16
// bytes in unpadded URL-safe base64. Like Kafka's Uuid.randomUuid it never
// starts with '-', which the storage tool's argument parser would take for
// a flag.
func newClusterID() (string, error) {
	var id [16]byte
	for {
		if _, err := rand.Read(id[:]); err != nil {
			return "", fmt.Errorf("cluster id: %w", err)
		}
		if s := base64.RawURLEncoding.EncodeToString(id[:]); s[0] != '-' {
			return s, nil
		}
	}
}

// freePorts reserves n loopback ports by listening on port 0, then frees
// them for the broker.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls until the broker answers ApiVersions and lists itself
// in Metadata, or the JVM exits, or ctx ends.
func (b *Broker) waitReady(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.RetryTimeout(time.Second))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer cl.Close()
	var last error
	for {
		select {
		case <-b.exited:
			return fmt.Errorf("the JVM exited: %v", b.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := kmsg.NewPtrMetadataRequest().RequestWith(reqCtx, cl)
		cancel()
		switch {
		case err != nil:
			last = err
		case len(resp.Brokers) == 0 || resp.ControllerID < 0:
			last = errors.New("metadata lists no broker or controller yet")
		default:
			return nil
		}
	}
}

// logTail returns the end of the broker's logs, for error messages.
func (b *Broker) logTail() string {
	var out strings.Builder
	for _, name := range []string{"stderr.log", "server.log"} {
		f, err := os.Open(filepath.Join(b.dir, name))
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines) > 40 {
				lines = lines[1:]
			}
		}
		f.Close()
		fmt.Fprintf(&out, "--- %s (last lines)\n%s\n", name, strings.Join(lines, "\n"))
	}
	return out.String()
}

// Stop kills the broker's JVM, waits for it to exit and removes its run
// directory. Nothing of a test broker needs a clean shutdown.
func (b *Broker) Stop() error {
	var err error
	b.stop.Do(func() {
		if kerr := b.cmd.Process.Kill(); kerr != nil && !errors.Is(kerr, os.ErrProcessDone) {
			err = fmt.Errorf("kill kafka %d: %w", b.cmd.Process.Pid, kerr)
		}
		<-b.exited
		if rerr := os.RemoveAll(b.dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove kafka run directory: %w", rerr))
		}
	})
	return err
}
