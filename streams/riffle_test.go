package streams

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/riffle-stream/riffle/broker"
)

func init() { clusters["riffle"] = riffleCluster }

// riffleCluster starts Riffle's own broker in-process.
func riffleCluster(t testing.TB) []string { return []string{riffleBroker(t).Addr()} }

// riffleBroker starts Riffle's own broker in-process with the input and
// output topics.
func riffleBroker(t testing.TB) *broker.Broker {
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()),
		broker.Sync(broker.SyncNone), broker.Logger(testLogger(t).With("component", "broker")))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	versions, err := kadm.NewClient(cl).ApiVersions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	versions.Each(func(v kadm.BrokerApiVersions) {
		_, classic := v.KeyMaxVersion(kmsg.JoinGroup.Int16())
		_, nextGen := v.KeyMaxVersion(kmsg.ConsumerGroupHeartbeat.Int16())
		if !classic && !nextGen {
			t.Skip("Riffle's broker does not offer consumer groups yet (neither JoinGroup nor ConsumerGroupHeartbeat in ApiVersions)")
		}
	})
	createWordCountTopics(t, b.Addr())
	return b
}
