package streams

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/riffle-stream/riffle/topology"
)

// enrichment joins page views (user -> page) with a users table (user ->
// region code) read from a compacted topic, then with a regions global
// table (code -> name).
func enrichment(t *testing.T) *topology.Topology {
	t.Helper()
	b := topology.NewBuilder()
	users := topology.TableFrom[string, string](b, "users", topology.Materialized("users"))
	regions := topology.GlobalTableFrom[string, string](b, "regions", topology.Materialized("regions"))
	views := topology.FromTopics[string, string](b, []string{"views"})
	type view struct{ Page, Region string }
	withUser := topology.LeftJoin(views, users, func(page, region string, found bool) view {
		if !found {
			region = "?"
		}
		return view{page, region}
	})
	topology.LeftJoinGlobal(withUser, regions, func(_ string, v view) string { return v.Region },
		func(v view, name string, found bool) string {
			if !found {
				name = "unknown"
			}
			return v.Page + "@" + name
		}).To("enriched")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return top
}

func TestTablesAndJoinsAtRuntime(t *testing.T) { testTablesAndJoins(t) }

// TestTablesAndJoinsExactlyOnce is TestTablesAndJoinsAtRuntime under
// exactly_once_v2: source tables, global tables and joins read committed.
func TestTablesAndJoinsExactlyOnce(t *testing.T) {
	testTablesAndJoins(t, ProcessingGuarantee(ExactlyOnceV2))
}

func testTablesAndJoins(t *testing.T, opts ...Option) {
	forEachCluster(t, func(t *testing.T, brokers []string) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
		for topic, n := range map[string]int32{"users": partitions, "views": partitions, "regions": 1, "enriched": 1} {
			configs := compact
			if topic == "views" || topic == "enriched" {
				configs = nil
			}
			if _, err := adm.CreateTopic(ctx, n, 1, configs, topic); err != nil {
				t.Fatal(err)
			}
		}
		produce := func(topic string, kvs ...string) {
			t.Helper()
			var recs []*kgo.Record
			for i := 0; i < len(kvs); i += 2 {
				r := &kgo.Record{Topic: topic, Key: []byte(kvs[i])}
				if kvs[i+1] != "<null>" {
					r.Value = []byte(kvs[i+1])
				}
				recs = append(recs, r)
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		produce("regions", "eu", "Europe", "us", "Americas", "old", "Gone", "old", "<null>")
		var users []string
		for i := range 20 {
			region := "eu"
			if i%2 == 1 {
				region = "us"
			}
			users = append(users, fmt.Sprintf("u%d", i), region)
		}
		produce("users", users...)
		produce("users", "u0", "old")

		want := make(map[string]string)
		var views []string
		for i := range 20 {
			u := fmt.Sprintf("u%d", i)
			views = append(views, u, "p"+u)
			want["p"+u] = map[bool]string{true: "Europe", false: "Americas"}[i%2 == 0]
		}
		want["pu0"] = "unknown"
		views = append(views, "stranger", "px")
		want["px"] = "unknown"

		run := func(dir string) *App {
			app, err := New(enrichment(t), append([]Option{ApplicationID("enrich"), Brokers(brokers...), StateDir(dir),
				CommitInterval(100 * time.Millisecond), Logger(testLogger(t))}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- app.Run(context.Background()) }()
			t.Cleanup(func() {
				app.Close()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			return app
		}
		app := run(t.TempDir())
		// The users table holds every user before the views arrive.
		waitFor(t, "the users table", 30*time.Second, func() bool { return app.Metrics().RecordsProcessed >= 21 })
		produce("views", views...)
		consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("enriched"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer consumer.Close()
		got := make(map[string]string)
		readUntil := func(n int) {
			t.Helper()
			for len(got) < n {
				fetches := consumer.PollFetches(ctx)
				if ctx.Err() != nil {
					t.Fatalf("timed out with %d of %d results: %v", len(got), n, got)
				}
				fetches.EachRecord(func(r *kgo.Record) {
					page, region, _ := strings.Cut(string(r.Value), "@")
					got[page] = region
				})
			}
		}
		readUntil(len(want))
		for page, region := range want {
			if got[page] != region {
				t.Fatalf("view %s enriched with %q, want %q (all: %v)", page, got[page], region, got)
			}
		}

		// Another instance with no local state takes over: it restores the
		// users table from the users topic itself and reloads the global
		// table before new views are joined.
		app.Close()
		run(t.TempDir())
		produce("views", "u3", "again", "u4", "more")
		want["again"], want["more"] = "Americas", "Europe"
		readUntil(len(want))
		if got["again"] != "Americas" || got["more"] != "Europe" {
			t.Fatalf("after the takeover: again@%s more@%s, want Americas and Europe", got["again"], got["more"])
		}
	})
}

// TestForeignKeyJoinAcrossPartitionCounts joins orders (4 partitions) with
// products (2 partitions) by the product id in each order.
func TestForeignKeyJoinAcrossPartitionCounts(t *testing.T) {
	brokers := riffleCluster(t)
	runForeignKeyJoin(t, brokers, 40, 10)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	parts, err := kadm.NewClient(cl).ListTopics(context.Background(), "fk-lines-subscription-registration-topic", "fk-lines-subscription-response-topic")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parts["fk-lines-subscription-registration-topic"].Partitions); n != 2 {
		t.Fatalf("subscription topic has %d partitions, want 2 (those of products)", n)
	}
	if n := len(parts["fk-lines-subscription-response-topic"].Partitions); n != 4 {
		t.Fatalf("response topic has %d partitions, want 4 (those of orders)", n)
	}
}

// BenchmarkForeignKeyJoin joins 100,000 orders with 1,000 products on
// Riffle's broker, one single-threaded instance with Pebble stores, and
// reports orders joined per second, from the first record produced to the
// last result read.
func BenchmarkForeignKeyJoin(b *testing.B) {
	for range b.N {
		b.StopTimer()
		brokers := riffleCluster(b)
		b.StartTimer()
		elapsed := runForeignKeyJoin(b, brokers, 100000, 1000)
		b.ReportMetric(100000/elapsed.Seconds(), "orders/s")
	}
}

// runForeignKeyJoin produces products and then orders naming them, runs a
// foreign-key join of the two tables until every order's line is read, and
// returns how long that took.
func runForeignKeyJoin(tb testing.TB, brokers []string, orders, products int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for topic, n := range map[string]int32{"orders": 4, "products": 2, "order-lines": 1} {
		if _, err := adm.CreateTopic(ctx, n, 1, nil, topic); err != nil {
			tb.Fatal(err)
		}
	}
	b := topology.NewBuilder()
	orderTable := topology.TableFrom[string, string](b, "orders")
	productTable := topology.TableFrom[string, string](b, "products")
	topology.JoinForeignKey(orderTable, productTable, func(o string) string { p, _, _ := strings.Cut(o, ":"); return p },
		func(o, p string) string { return o + "/" + p }, topology.Named("lines")).ToStream().To("order-lines")
	top, err := b.Build()
	if err != nil {
		tb.Fatal(err)
	}
	began := time.Now()
	app, err := New(top, ApplicationID("fk"), Brokers(brokers...), StateDir(tb.TempDir()),
		CommitInterval(100*time.Millisecond), Logger(testLogger(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	defer func() {
		app.Close()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	}()
	var recs []*kgo.Record
	want := make(map[string]string, orders)
	for i := range products {
		recs = append(recs, &kgo.Record{Topic: "products", Key: fmt.Appendf(nil, "p%d", i), Value: fmt.Appendf(nil, "product-%d", i)})
	}
	for i := range orders {
		o := fmt.Sprintf("o%d", i)
		recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte(o), Value: fmt.Appendf(nil, "p%d:%d", i%products, i)})
		want[o] = fmt.Sprintf("p%d:%d/product-%d", i%products, i, i%products)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("order-lines"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer consumer.Close()
	got := make(map[string]string, orders)
	for len(got) < len(want) || !maps.Equal(got, want) {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("timed out: got %d of %d lines", len(got), len(want))
		}
		fetches.EachRecord(func(r *kgo.Record) { got[string(r.Key)] = string(r.Value) })
	}
	return time.Since(began)
}

// TestJoinRepartitionTakesTheTablePartitionCount joins clicks re-keyed by
// user (4 partitions) with a users table (2 partitions): the repartition
// topic in between must have the table's 2 partitions.
func TestJoinRepartitionTakesTheTablePartitionCount(t *testing.T) {
	brokers := riffleCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for topic, n := range map[string]int32{"clicks": 4, "users": 2, "named-clicks": 1} {
		if _, err := adm.CreateTopic(ctx, n, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
	}
	b := topology.NewBuilder()
	users := topology.TableFrom[string, string](b, "users")
	clicks := topology.FromTopics[string, string](b, []string{"clicks"}) // page -> user
	byUser := topology.SelectKey(clicks, func(_, user string) string { return user })
	topology.Join(byUser, users, func(user, name string) string { return name }, topology.Named("by-user")).To("named-clicks")
	top, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	app, err := New(top, ApplicationID("clicks"), Brokers(brokers...), StateDir(t.TempDir()),
		CommitInterval(100*time.Millisecond), Logger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(context.Background()) }()
	defer func() {
		app.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: "users", Key: fmt.Appendf(nil, "u%d", i), Value: fmt.Appendf(nil, "name%d", i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	recs = nil
	want := make(map[string]bool)
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: "clicks", Key: fmt.Appendf(nil, "page%d", i), Value: fmt.Appendf(nil, "u%d", i)})
		want[fmt.Sprintf("name%d", i)] = true
	}
	// The table holds every user before the clicks arrive.
	waitFor(t, "the users table", 30*time.Second, func() bool { return app.Metrics().RecordsProcessed >= 20 })
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	consumer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("named-clicks"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	got := make(map[string]bool)
	for len(got) < len(want) {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("timed out: joined %d of %d clicks", len(got), len(want))
		}
		fetches.EachRecord(func(r *kgo.Record) { got[string(r.Value)] = true })
	}
	parts, err := adm.ListTopics(ctx, "clicks-by-user-repartition")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parts["clicks-by-user-repartition"].Partitions); n != 2 {
		t.Fatalf("repartition topic has %d partitions, want the table's 2", n)
	}
}
