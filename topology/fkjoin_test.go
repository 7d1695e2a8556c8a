package topology_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/riffle-stream/riffle/internal/engine"
	"github.com/riffle-stream/riffle/serde"
	"github.com/riffle-stream/riffle/streams/streamstest"
	"github.com/riffle-stream/riffle/topology"
)

func TestForeignKeyJoin(t *testing.T) {
	product := func(order string) string { p, _, _ := strings.Cut(order, ":"); return p }
	for name, c := range map[string]struct {
		join func(orders, products topology.Table[string, string]) topology.Table[string, string]
		want []string
	}{
		"inner": {func(orders, products topology.Table[string, string]) topology.Table[string, string] {
			return topology.JoinForeignKey(orders, products, product, func(o, p string) string { return o + "/" + p },
				topology.Named("orders-products"))
		}, []string{"o1=p1:1/Apple", "o2=p3:5/Plum", "o1=p2:1/Pear", "o1=p2:2/Pear", "o1=<null>", "o2=<null>"}},
		"left": {func(orders, products topology.Table[string, string]) topology.Table[string, string] {
			return topology.LeftJoinForeignKey(orders, products, product, func(o, p string, found bool) string {
				if !found {
					p = "null"
				}
				return o + "/" + p
			}, topology.Named("orders-products"))
		}, []string{"o1=p1:1/Apple", "o2=p3:5/null", "o2=p3:5/Plum", "o1=p2:1/Pear", "o1=p2:2/Pear", "o1=p2:2/null", "o3=:1/null", "o2=<null>"}},
	} {
		t.Run(name, func(t *testing.T) {
			b := topology.NewBuilder()
			orders := topology.TableFrom[string, string](b, "orders")
			products := topology.TableFrom[string, string](b, "products")
			c.join(orders, products).ToStream().To("out")
			top, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			var readerPartitioned []string
			for _, st := range engine.Of(top).Subtopologies("app") {
				readerPartitioned = append(readerPartitioned, st.ReaderPartitioned...)
			}
			slices.Sort(readerPartitioned)
			if !slices.Equal(readerPartitioned, []string{"app-orders-products-subscription-registration-topic", "app-orders-products-subscription-response-topic"}) {
				t.Fatalf("co-partitioned internal topics = %v", readerPartitioned)
			}
			d, err := streamstest.New(top)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			o := streamstest.NewInputTopic(d, "orders", serde.String(), serde.String())
			p := streamstest.NewInputTopic(d, "products", serde.String(), serde.String())
			pipe(t, p, kv("p1", "Apple"), kv("p2", "Pear"))
			pipe(t, o, kv("o1", "p1:1"), kv("o2", "p3:5")) // p3 does not exist yet
			pipe(t, p, kv("p3", "Plum"))
			pipe(t, o, kv("o1", "p2:1"), kv("o1", "p2:2")) // o1 moves to p2, then changes
			if err := p.PipeTombstone("p2"); err != nil {
				t.Fatal(err)
			}
			pipe(t, o, kv("o3", ":1")) // an empty foreign key is a key like any other
			if err := o.PipeTombstone("o2"); err != nil {
				t.Fatal(err)
			}
			expect(t, readChanges(t, d, "out"), c.want...)
		})
	}
}
