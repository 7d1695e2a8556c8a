package streams

import (
	"context"
	"testing"
	"time"

	"github.com/riffle-stream/riffle/internal/testenv"
)

// TestBrokerRestartKeepsCounting restarts Riffle's broker under a running
// word count, with each group protocol: the thread loses its connections
// and its group membership (the restarted coordinator may not know its
// member), rejoins and counts what comes after, instead of stopping.
func TestBrokerRestartKeepsCounting(t *testing.T) {
	t.Parallel()
	for name, protocol := range map[string]GroupProtocol{"classic": GroupProtocolClassic, "kip848": GroupProtocolConsumer} {
		t.Run(name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			dir := t.TempDir()
			b := startChaosBroker(t, dir, addr)
			t.Cleanup(func() { b.Close(context.Background()) })
			brokers := []string{addr}
			createWordCountTopics(t, addr)
			r := startApp(t, brokers, t.TempDir(), WithGroupProtocol(protocol))
			truth := produceLines(t, brokers, 2000, 5)
			latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
			if err := b.Close(context.Background()); err != nil {
				t.Fatalf("close broker: %v", err)
			}
			b = startChaosBroker(t, dir, addr)
			for w, n := range produceLines(t, brokers, 2000, 5) {
				truth[w] += n
			}
			got := latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
			select {
			case err := <-r.done:
				r.done <- err // for the cleanup's stop
				t.Fatalf("the application stopped after the restart: %v", err)
			default:
			}
			for w, n := range truth {
				if got[w] < n { // at-least-once: a restart may count twice
					t.Fatalf("%s: count %d after the restart, want at least %d", w, got[w], n)
				}
			}
		})
	}
}
