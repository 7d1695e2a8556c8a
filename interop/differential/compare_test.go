package differential

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/riffle-stream/riffle/broker"
	"github.com/riffle-stream/riffle/internal/kafkatest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := kafkatest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "stop kafka:", err)
		code = 1
	}
	os.Exit(code)
}

// pair is a client for each broker, both limited to the request versions
// the two brokers have in common, so that each request goes out at the
// same version to both.
type pair struct {
	riffle, kafka *kgo.Client
	// versions are the ApiVersions answers, as seen before pinning.
	riffleVersions, kafkaVersions *kmsg.ApiVersionsResponse
}

// newPair starts a Riffle broker for the test and connects to it and to
// the package's shared Kafka broker (node id 1 both, like Riffle's
// default). Tests on the shared broker keep to topic and group names
// derived from their own name.
func newPair(t *testing.T) *pair {
	t.Helper()
	kafkaAddr := kafkatest.Shared(t).Addr()
	b, err := broker.New(broker.ListenAddr("127.0.0.1:0"), broker.DataDir(t.TempDir()),
		broker.Logger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("close riffle: %v", err)
		}
	})
	p := &pair{
		riffleVersions: apiVersions(t, b.Addr()),
		kafkaVersions:  apiVersions(t, kafkaAddr),
	}
	common := kversion.FromApiVersionsResponse(p.riffleVersions)
	kv := kversion.FromApiVersionsResponse(p.kafkaVersions)
	common.EachMaxKeyVersion(func(key, riffleMax int16) {
		kafkaMax, ok := kv.LookupMaxKeyVersion(key)
		switch {
		case !ok:
			common.SetMaxKeyVersion(key, -1)
		case kafkaMax < riffleMax:
			common.SetMaxKeyVersion(key, kafkaMax)
		}
	})
	for _, c := range []struct {
		addr string
		cl   **kgo.Client
	}{{b.Addr(), &p.riffle}, {kafkaAddr, &p.kafka}} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.MaxVersions(common), kgo.RetryTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		*c.cl = cl
	}
	return p
}

func apiVersions(t *testing.T, addr string) *kmsg.ApiVersionsResponse {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("ApiVersions to %s: %v", addr, err)
	}
	return resp
}

// side names one of the two brokers.
type side int

const (
	onRiffle side = iota
	onKafka
)

func (s side) String() string { return [...]string{"riffle", "kafka"}[s] }

// send sends req straight to the one broker of side s (the client would
// otherwise split requests by partition leader and answer unknown
// partitions itself).
func (p *pair) send(t *testing.T, s side, req kmsg.Request) kmsg.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl := [...]*kgo.Client{p.riffle, p.kafka}[s]
	resp, err := cl.SeedBrokers()[0].Request(ctx, req)
	if err != nil {
		t.Fatalf("%s: %T: %v", s, req, err)
	}
	return resp
}

// bothFor sends the request newReq builds for each side to that broker and
// returns the two responses (Riffle's first), for sequences in which each
// broker's answers (member ids) feed its next request.
func (p *pair) bothFor(t *testing.T, newReq func(side) kmsg.Request) (riffle, kafka kmsg.Response) {
	t.Helper()
	return p.send(t, onRiffle, newReq(onRiffle)), p.send(t, onKafka, newReq(onKafka))
}

// both sends the request newReq builds to each broker and returns the
// responses as generic trees (Riffle's first).
func (p *pair) both(t *testing.T, newReq func() kmsg.Request) (riffle, kafka any) {
	t.Helper()
	r, k := p.bothFor(t, func(side) kmsg.Request { return newReq() })
	return trees(t, r, k)
}

// trees turns both responses into normalized generic trees.
func trees(t *testing.T, r, k kmsg.Response) (any, any) {
	t.Helper()
	return normalize(tree(t, r)), normalize(tree(t, k))
}

// tree turns a kmsg response into maps, slices and scalars.
func tree(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// keyBy replaces the list at path (dot-separated field names, "*" for
// every element of a list or map on the way) by a map from each element's
// key field to the element, so that comparisons pair elements by name
// rather than by position. The keys are written "[name]".
func keyBy(v any, path, key string) {
	var walk func(v any, parts []string)
	walk = func(v any, parts []string) {
		if parts[0] == "*" {
			switch x := v.(type) {
			case []any:
				for _, e := range x {
					walk(e, parts[1:])
				}
			case map[string]any:
				for _, e := range x {
					walk(e, parts[1:])
				}
			}
			return
		}
		x, ok := v.(map[string]any)
		if !ok {
			return
		}
		if len(parts) > 1 {
			walk(x[parts[0]], parts[1:])
			return
		}
		list, ok := x[parts[0]].([]any)
		if !ok {
			return
		}
		m := make(map[string]any, len(list))
		for _, e := range list {
			if em, ok := e.(map[string]any); ok {
				m["["+fmt.Sprint(em[key])+"]"] = em
			}
		}
		x[parts[0]] = m
	}
	walk(v, strings.Split(path, "."))
}

// normalize rewrites what may legitimately differ in form: ids become
// "zero" or "set" (the two brokers generate different ones), and an empty
// list equals a null one.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "TopicID" || k == "ClusterID" || k == "MemberID" || k == "LeaderID" && isString(e) {
				x[k] = idState(e)
				continue
			}
			x[k] = normalize(e)
		}
		return x
	case []any:
		if len(x) == 0 {
			return nil
		}
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	}
	return v
}

func isString(v any) bool { _, ok := v.(string); return ok }

func idState(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		if x == "" {
			return "empty"
		}
		return "set"
	case []any:
		for _, b := range x {
			if fmt.Sprint(b) != "0" {
				return "set"
			}
		}
		return "zero"
	}
	return "set"
}

// difference is one field that differs between the two brokers.
type difference struct {
	path          string
	riffle, kafka string
}

func (d difference) String() string {
	return fmt.Sprintf("%s: riffle %s, kafka %s", d.path, d.riffle, d.kafka)
}

const absent = "(absent)"

func show(v any) string {
	if v == nil {
		return "null"
	}
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// diffTrees lists the fields in which r and k differ.
func diffTrees(path string, r, k any) []difference {
	join := func(key string) string {
		if strings.HasPrefix(key, "[") || path == "" {
			return path + key
		}
		return path + "." + key
	}
	switch rv := r.(type) {
	case map[string]any:
		kv, ok := k.(map[string]any)
		if !ok {
			break
		}
		keys := make(map[string]bool)
		for key := range rv {
			keys[key] = true
		}
		for key := range kv {
			keys[key] = true
		}
		sorted := make([]string, 0, len(keys))
		for key := range keys {
			sorted = append(sorted, key)
		}
		sort.Strings(sorted)
		var out []difference
		for _, key := range sorted {
			re, rok := rv[key]
			ke, kok := kv[key]
			switch {
			case !rok:
				out = append(out, difference{join(key), absent, show(ke)})
			case !kok:
				out = append(out, difference{join(key), show(re), absent})
			default:
				out = append(out, diffTrees(join(key), re, ke)...)
			}
		}
		return out
	case []any:
		kv, ok := k.([]any)
		if !ok {
			break
		}
		var out []difference
		for i := range max(len(rv), len(kv)) {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(rv):
				out = append(out, difference{p, absent, show(kv[i])})
			case i >= len(kv):
				out = append(out, difference{p, show(rv[i]), absent})
			default:
				out = append(out, diffTrees(p, rv[i], kv[i])...)
			}
		}
		return out
	}
	if reflect.DeepEqual(r, k) {
		return nil
	}
	return []difference{{path, show(r), show(k)}}
}

// glob matches a path against a pattern in which "*" stands for any run
// of characters.
func glob(pattern, path string) bool {
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, `.*`) + "$"
	return regexp.MustCompile(re).MatchString(path)
}

// volatile are the fields that differ between any two brokers and say
// nothing about compatibility: addresses, generated ids, throttling, and
// free-text error messages (error codes are compared).
var volatile = []string{
	"*ThrottleMillis",
	"*UnknownTags",
	"*Port",
	"*ErrorMessage",
}

// compare fails the test for every field in which the responses differ,
// except the volatile ones and those documented: a map from path pattern
// to the reason the difference is Riffle's deliberate choice, logged.
func compare(t *testing.T, what string, r, k any, documented map[string]string) {
	t.Helper()
	patterns := slices.Sorted(func(yield func(string) bool) {
		for p := range documented {
			if !yield(p) {
				return
			}
		}
	})
next:
	for _, d := range diffTrees("", r, k) {
		for _, v := range volatile {
			if glob(v, d.path) {
				continue next
			}
		}
		for _, p := range patterns {
			if glob(p, d.path) {
				t.Logf("%s: documented difference %s (%s)", what, d, documented[p])
				continue next
			}
		}
		t.Errorf("%s: %s", what, d)
	}
}
