package streams

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/internal/testenv"
)

// eosChildEnv makes the test binary run the word count under
// exactly_once_v2 with its state in the named directory instead of the
// tests; eosChildBrokersEnv names the broker. The chaos test starts such
// children to kill them with SIGKILL.
const (
	eosChildEnv        = "RIFFLE_TEST_EOS_CHILD_DIR"
	eosChildBrokersEnv = "RIFFLE_TEST_EOS_CHILD_BROKERS"
)

// runEOSChild runs the child application when the environment asks for
// one and reports whether it did.
func runEOSChild() bool {
	dir := os.Getenv(eosChildEnv)
	if dir == "" {
		return false
	}
	runWordCountChild("eos child", ApplicationID("eoschaos"), Brokers(os.Getenv(eosChildBrokersEnv)),
		StateDir(dir), ProcessingGuarantee(ExactlyOnceV2),
		// A killed member's tasks move after 6 s, Kafka's
		// group.min.session.timeout.ms, instead of franz-go's 45 s.
		WithGroupProtocol(GroupProtocolClassic),
		ClientOpts(kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond)))
	return true
}

// runWordCountChild runs the word count with opts, in a child process of
// the test binary, until SIGTERM, logging errors only; if it fails, it
// says so on stderr, prefixed with what, and exits with status 2.
func runWordCountChild(what string, opts ...Option) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	app, err := New(wordCount(nil), append(opts, Logger(log))...)
	if err == nil {
		err = app.Run(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, what+":", err)
		os.Exit(2)
	}
}

// eosChaosRounds is how many times the chaos test kills an instance:
// RIFFLE_EOS_CHAOS_ROUNDS, or 3.
func eosChaosRounds(t *testing.T) int { return testenv.Int(t, "RIFFLE_EOS_CHAOS_ROUNDS", 3) }

func startEOSChild(t *testing.T, dir, brokers string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), eosChildEnv+"="+dir, eosChildBrokersEnv+"="+brokers)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// startChaosBroker starts Riffle's broker on addr with its data in dir.
func startChaosBroker(t *testing.T, dir, addr string) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.ListenAddr(addr), broker.DataDir(dir),
		broker.TransactionAbortInterval(500*time.Millisecond),
		broker.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExactlyOnceChaos runs the word count under exactly_once_v2 in two
// child processes on Riffle's broker and, while lines keep coming, kills
// one of them with SIGKILL every round and starts it again on the same
// state directory; halfway through the broker is restarted. At the end
// the output topic read with read_committed holds, for every word, the
// updates 1, 2, ..., its true count: nothing counted twice, nothing lost.
// RIFFLE_EOS_CHAOS_ROUNDS sets the number of kills (default 3).
func TestExactlyOnceChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	rounds := eosChaosRounds(t)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()
	addr := testenv.FreeAddr(t)
	brokerDir := t.TempDir()
	b := startChaosBroker(t, brokerDir, addr)
	defer func() { b.Close(context.Background()) }()
	brokers := []string{addr}
	createWordCountTopics(t, addr)

	dirs := []string{t.TempDir(), t.TempDir()}
	children := []*exec.Cmd{startEOSChild(t, dirs[0], addr), startEOSChild(t, dirs[1], addr)}
	truth := make(map[string]int64)
	produce := func() {
		for w, n := range produceLines(t, brokers, 2000, 8) {
			truth[w] += n
		}
	}
	for round := range rounds {
		produce()
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		if round == rounds/2 {
			if err := b.Close(context.Background()); err != nil {
				t.Fatalf("close broker: %v", err)
			}
			b = startChaosBroker(t, brokerDir, addr)
		}
		i := rng.IntN(len(children))
		if err := children[i].Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		children[i].Wait()
		children[i] = startEOSChild(t, dirs[i], addr)
	}
	produce()
	var total int64
	for _, n := range truth {
		total += n
	}
	updates := committedUpdates(t, brokers, outputTopic, time.Minute, updatesReach(truth))
	if err := exactlyOnce(truth, updates); err != nil {
		if err.Word != "" {
			traceWord(t, addr, err.Word)
		}
		t.Fatalf("seed %d: %v", seed, err)
	}
	t.Logf("seed %d: %d kills, 1 broker restart, %d words counted exactly once in %v",
		seed, rounds, total, time.Since(began).Round(time.Second))
}

// traceWord logs how often word is in the input lines, in the committed
// repartition records and in the committed output, to tell which of the
// word count's steps counted it twice (or lost it).
func traceWord(t *testing.T, addr, word string) {
	t.Helper()
	occurrences := func(topic string, isolation kgo.IsolationLevel, n func(r *kgo.Record) int) int {
		total := 0
		readQuietly(t, []string{addr}, topic, isolation, 3*time.Second,
			func(r *kgo.Record) { total += n(r) }, func() bool { return false })
		return total
	}
	inLines := occurrences(inputTopic, kgo.ReadUncommitted(), func(r *kgo.Record) int {
		n := 0
		for _, w := range words(string(r.Value)) {
			if w == word {
				n++
			}
		}
		return n
	})
	byKey := func(r *kgo.Record) int {
		if string(r.Key) == word {
			return 1
		}
		return 0
	}
	repartitioned := occurrences(engine.InternalTopic("eoschaos", "counts-repartition"), kgo.ReadCommitted(), byKey)
	output := occurrences(outputTopic, kgo.ReadCommitted(), byKey)
	t.Logf("%s: %d in the input lines, %d committed repartition records (less what purges deleted), %d committed output records",
		word, inLines, repartitioned, output)
}
