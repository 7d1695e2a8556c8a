package streams

import (
	"context"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestStaticMembershipRestartMovesNoTask restarts one of two static
// instances: the other keeps every task throughout, and the restarted one
// gets back exactly the partitions it had.
func TestStaticMembershipRestartMovesNoTask(t *testing.T) {
	t.Parallel()
	for _, protocol := range []GroupProtocol{GroupProtocolClassic, GroupProtocolConsumer} {
		t.Run(map[GroupProtocol]string{GroupProtocolClassic: "classic", GroupProtocolConsumer: "kip848"}[protocol], func(t *testing.T) {
			forEachCluster(t, func(t *testing.T, brokers []string) {
				if protocol == GroupProtocolConsumer && strings.HasSuffix(t.Name(), "/kafka") {
					t.Skip("known difference: Apache Kafka answers the restarted KIP-848 static member " +
						"UNRELEASED_INSTANCE_ID, because the stopped instance's leave does not release its " +
						"instance id; Riffle's broker and kfake let it rejoin (README, Restore and checkpoints)")
				}
				dirA := t.TempDir()
				a := startApp(t, brokers, dirA, StaticMembership("a"), WithGroupProtocol(protocol))
				b := startApp(t, brokers, t.TempDir(), StaticMembership("b"), WithGroupProtocol(protocol))
				waitFor(t, "both instances to own tasks", 30*time.Second, func() bool {
					return a.app.Metrics().Tasks > 0 && b.app.Metrics().Tasks > 0 &&
						a.app.Metrics().Tasks+b.app.Metrics().Tasks == 2*partitions
				})
				before, err := b.app.AllInstances(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				tasksA, tasksB := a.app.Metrics().Tasks, b.app.Metrics().Tasks
				var stop atomic.Bool
				lowest := make(chan int64, 1)
				go func() {
					low := tasksB
					for !stop.Load() {
						low = min(low, b.app.Metrics().Tasks)
						time.Sleep(5 * time.Millisecond)
					}
					lowest <- low
				}()
				a.stop(t)
				time.Sleep(time.Second)
				a2 := startApp(t, brokers, dirA, StaticMembership("a"), WithGroupProtocol(protocol))
				waitFor(t, "the restarted instance to take its tasks back", 30*time.Second, func() bool {
					return a2.app.Metrics().Tasks == tasksA
				})
				truth := produceLines(t, brokers, 500, 3)
				latest(t, brokers, outputTopic, 60*time.Second, atLeast(truth))
				stop.Store(true)
				if low := <-lowest; low != tasksB {
					t.Fatalf("the other instance went down to %d tasks of %d during the restart", low, tasksB)
				}
				after, err := b.app.AllInstances(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(before, after) {
					t.Fatalf("assignment changed: before %v, after %v", before, after)
				}
			})
		})
	}
}
