package broker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestTransactionsRefusedAtOnce: until transactions are served, looking up
// a transaction coordinator fails with an error clients do not retry, so
// a transactional producer fails at once instead of retrying until its
// timeout.
func TestTransactionsRefusedAtOnce(t *testing.T) {
	b := startBroker(t, "")
	cl := newClient(t, b.Addr())
	ctx := testContext(t)
	for _, version := range []int16{3, 4} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version = version
		req.CoordinatorType = 1
		req.CoordinatorKey = "txn"
		req.CoordinatorKeys = []string{"txn"}
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		code := resp.ErrorCode
		if version >= 4 {
			code = resp.Coordinators[0].ErrorCode
		}
		if err := kerr.ErrorForCode(code); !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			t.Errorf("v%d: FindCoordinator for a transactional id: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", version, err)
		}
	}

	txn := newClient(t, b.Addr(), kgo.TransactionalID("txn"), kgo.DefaultProduceTopic("t"))
	start := time.Now()
	if err := txn.BeginTransaction(); err == nil {
		err = txn.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr()
		if err == nil {
			t.Fatal("a transactional produce succeeded")
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the transactional producer took %v to fail", d)
	}
}
