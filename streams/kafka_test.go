package streams

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/internal/kafkatest"
)

func init() { clusters["kafka"] = kafkaCluster }

func TestMain(m *testing.M) {
	if runEOSChild() || runFailoverChild() {
		return
	}
	code := m.Run()
	if err := kafkatest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "stop kafka:", err)
		code = 1
	}
	os.Exit(code)
}

// kafkaTurn serializes the tests on the shared Kafka broker: they all use
// the same topic names and application id.
var kafkaTurn sync.Mutex

// kafkaCluster hands a test the package's Apache Kafka broker with the
// input and output topics created, and deletes every topic and group the
// test left once it ends.
func kafkaCluster(t testing.TB) []string {
	addr := kafkatest.Shared(t).Addr()
	kafkaTurn.Lock()
	t.Cleanup(func() {
		defer kafkaTurn.Unlock()
		if err := resetKafka(addr); err != nil {
			t.Errorf("reset the Kafka broker: %v", err)
		}
	})
	createWordCountTopics(t, addr)
	return []string{addr}
}

// kafkaBenchCluster is kafkaCluster for benchmarks, which run one at a
// time and call it once per iteration: it resets the broker first.
func kafkaBenchCluster(b testing.TB) []string {
	addr := kafkatest.Shared(b).Addr()
	if err := resetKafka(addr); err != nil {
		b.Fatalf("reset the Kafka broker: %v", err)
	}
	createWordCountTopics(b, addr)
	return []string{addr}
}

// resetKafka deletes every group and every topic but Kafka's own, and waits
// until they are gone. A group still holding a crashed member cannot be
// deleted before its session times out, so it retries until then.
func resetKafka(addr string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		groups, err := adm.ListGroups(ctx)
		if err != nil {
			return fmt.Errorf("list groups: %w", err)
		}
		if len(groups) == 0 {
			break
		}
		deleted, err := adm.DeleteGroups(ctx, groups.Groups()...)
		if err != nil {
			return fmt.Errorf("delete groups: %w", err)
		}
		if deleted.Error() == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete groups: %w", deleted.Error())
		case <-time.After(500 * time.Millisecond):
		}
	}
	// Deleting the topics has a deadline of its own: a group can hold
	// its crashed members for most of the first one.
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	if names := topics.Names(); len(names) > 0 {
		resps, err := adm.DeleteTopics(ctx, names...)
		if err != nil {
			return fmt.Errorf("delete topics: %w", err)
		}
		if err := resps.Error(); err != nil {
			return fmt.Errorf("delete topics: %w", err)
		}
	}
	for {
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			return fmt.Errorf("list topics: %w", err)
		}
		if len(topics) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v still listed: %w", topics.Names(), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
