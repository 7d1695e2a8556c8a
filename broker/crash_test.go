package broker_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/broker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// childEnv makes the test binary run a broker instead of the tests: the
// crash test starts it as a child process so it can kill -9 it.
const childEnv = "RIFFLE_TEST_CHILD_BROKER_DIR"

// childAddrEnv is the address the child broker listens on; unset means a
// free loopback port.
const childAddrEnv = "RIFFLE_TEST_CHILD_BROKER_ADDR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChildBroker(dir)
		return
	}
	os.Exit(m.Run())
}

func runChildBroker(dir string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	addr := cmp.Or(os.Getenv(childAddrEnv), "127.0.0.1:0")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := broker.New(broker.ListenAddr(addr), broker.DataDir(dir), broker.Logger(log))
	if err == nil {
		err = b.Start(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child broker:", err)
		os.Exit(2)
	}
	fmt.Println("ADDR", b.Addr())
	<-ctx.Done()
	b.Close(context.Background())
}

// startChild runs a broker in a child process and returns it and its address.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	return startChildAt(t, dir, "")
}

// startChildAt runs a broker in a child process listening on addr (a
// free port when empty) and returns it and its address.
func startChildAt(t *testing.T, dir, addr string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childAddrEnv+"="+addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child broker did not start: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if !ok {
		t.Fatalf("child broker said %q", line)
	}
	return cmd, addr
}

// TestKill9LosesNothingAcknowledged produces with acks=all while the
// broker is killed with SIGKILL, restarts it on the same directory, and
// checks that every acknowledged record is there.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	cl := newClient(t, addr, kgo.DefaultProduceTopic("crash"), kgo.AllowAutoTopicCreation(), kgo.RecordRetries(1), kgo.RequiredAcks(kgo.AllISRAcks()))

	var mu sync.Mutex
	acked := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	killed := make(chan struct{})
	go func() {
		time.Sleep(1500 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		close(killed)
	}()
	for i := 0; i < 200_000; i++ {
		select {
		case <-killed:
			i = 200_000
			continue
		default:
		}
		v := strconv.Itoa(i)
		cl.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err == nil {
				mu.Lock()
				acked[v] = true
				mu.Unlock()
			}
		})
	}
	cl.Close() // fails what is still in flight
	cmd.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n == 0 {
		t.Fatal("nothing was acknowledged before the kill; the test proves nothing")
	}

	_, addr = startChild(t, dir)
	consumer := newClient(t, addr, kgo.ConsumeTopics("crash"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(300*time.Millisecond))
	seen := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(context.Background(), time.Second)
		fs := consumer.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		missing := 0
		for v := range acked {
			if !seen[v] {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("%d acknowledged records all present after kill -9 (%d on disk)", n, len(seen))
			return
		}
	}
	t.Fatalf("acknowledged records missing after kill -9 and restart (%d acknowledged, %d read back)", n, len(seen))
}
