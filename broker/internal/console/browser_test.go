package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// chromium is Debian's chromium package's browser; RIFFLE_CHROMIUM names
// another.
func chromium(t *testing.T) string {
	t.Helper()
	path := os.Getenv("RIFFLE_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		if os.Getenv("RIFFLE_INTEROP_REQUIRED") == "1" {
			t.Fatalf("chromium is required (RIFFLE_INTEROP_REQUIRED=1) but %s is missing: apt-get install chromium", path)
		}
		t.Skipf("chromium not installed at %s (apt-get install chromium); skipping", path)
	}
	return path
}

// browserPage drives one headless Chromium tab on the console.
type browserPage struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string // screenshots

	mu     sync.Mutex
	errors []string // exceptions and console errors of the page
}

// newBrowser starts headless Chromium with a fresh profile and the flags
// that keep it from reaching out to the network, and opens the console.
func newBrowser(t *testing.T, base string) *browserPage {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// A zone away from UTC, so that a page mixing local time and
		// UTC shows wrong times.
		chromedp.Env("TZ=Asia/Kolkata"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	p := &browserPage{t: t, ctx: ctx, base: base, dir: t.ArtifactDir()}
	t.Logf("screenshots: %s", p.dir)
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if e.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			var parts []string
			for _, a := range e.Args {
				parts = append(parts, string(a.Value))
			}
			msg = "console.error: " + strings.Join(parts, " ")
		default:
			return
		}
		p.mu.Lock()
		p.errors = append(p.errors, msg)
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// The page records what its Content-Security-Policy blocks.
	_, err = chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.cspViolations = [];
			document.addEventListener('securitypolicyviolation', e => window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));`,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Poll every 300 ms so live updates show quickly.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?poll=300#/")); err != nil {
		t.Fatalf("open the console: %v", err)
	}
	return p
}

// eval evaluates a JavaScript expression into T.
func eval[T any](p *browserPage, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// route shows a page of the console, as following a link does.
func (p *browserPage) route(hash string) {
	p.t.Helper()
	eval[chromedp.Void](p, fmt.Sprintf("location.hash = %q", hash))
}

// wait waits until the JavaScript predicate holds.
func (p *browserPage) wait(what, predicate string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 25*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		banner := eval[string](p, `document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`)
		p.t.Fatalf("%s: %v (page error: %q, view: %q)", what, err, banner,
			eval[string](p, `document.getElementById('view').innerText.slice(0, 2000)`))
	}
}

// text is the inner text of the element sel, or "" if there is none.
func (p *browserPage) text(sel string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`document.querySelector(%q)?.innerText ?? ''`, sel))
}

// rowWith is a predicate: some row of table sel contains every text.
func rowWith(sel string, texts ...string) string {
	quoted, _ := json.Marshal(texts)
	return fmt.Sprintf(`[...document.querySelectorAll('%s tbody tr')].some(r => %s.every(x => r.innerText.includes(x)))`, sel, quoted)
}

// rows is a predicate: table sel has n rows.
func rows(sel string, n int) string {
	return fmt.Sprintf(`document.querySelectorAll('%s tbody tr:not(:has(td.empty))').length === %d`, sel, n)
}

// shot saves a full-page screenshot as name.png.
func (p *browserPage) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// noErrors fails the test if the page threw or logged an error, or shows
// its error banner.
func (p *browserPage) noErrors() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errors) > 0 {
		p.t.Fatalf("page errors:\n%s", strings.Join(p.errors, "\n"))
	}
	if banner := eval[string](p, `document.getElementById('error').hidden ? '' : document.getElementById('error').textContent`); banner != "" {
		p.t.Fatalf("error banner: %s", banner)
	}
	if csp := eval[[]string](p, `window.cspViolations`); len(csp) > 0 {
		p.t.Fatalf("Content-Security-Policy violations: %v", csp)
	}
}

// TestBrowser loads every page of the console in headless Chromium
// against a broker with real topics and groups, checks that the tables
// fill with the cluster's data, and that records produced and offsets
// committed during the test show up without a reload. Screenshots go to
// the test's artifact directory (go test -artifacts keeps them under
// -outputdir); RIFFLE_CONSOLE_SCREENSHOT=path also writes the overview
// there (README's image is testdata/overview.png).
func TestBrowser(t *testing.T) {
	chromium(t)
	f := newFixture(t)
	f.do(t, http.MethodPut, "/api/apps/wordcount", registration(t, map[string]int64{sourceNode: 1000}), http.StatusOK, nil)
	p := newBrowser(t, f.srv.URL)
	// A reload would lose this.
	eval[chromedp.Void](p, `window.riffleTestMarker = 42`)

	t.Run("overview", func(t *testing.T) {
		p.t = t
		var o struct {
			ClusterID string `json:"clusterId"`
		}
		f.get(t, "/api/overview", http.StatusOK, &o)
		p.wait("cluster id", fmt.Sprintf(`document.getElementById('cluster-id').innerText === %q`, o.ClusterID))
		p.wait("brokers table", rowWith("#brokers", "1", "127.0.0.1", "controller"))
		p.wait("quorum table", rowWith("#quorum", "1", "leader"))
		p.wait("topics table", rowWith("#topics", ordersTopic, "3", "30"))
		p.wait("jobs topic", rowWith("#topics", jobsTopic, "10"))
		// Records produced now show in the figures without a reload.
		var recs []*kgo.Record
		for i := range 12 {
			recs = append(recs, order(200+i, time.Now()))
		}
		f.produce(t, recs...)
		p.wait("record count after producing", `document.getElementById('record-count').innerText === '52'`)
		p.wait("topic row after producing", rowWith("#topics", ordersTopic, "42"))
		p.wait("produce rate", `document.getElementById('throughput').innerText !== '–'`)
		p.wait("throughput over time", `document.querySelector('#throughput + div polyline') !== null`)
		if shot := os.Getenv("RIFFLE_CONSOLE_SCREENSHOT"); shot != "" {
			png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(shot, png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		p.shot("overview")
		p.noErrors()
	})

	t.Run("topics", func(t *testing.T) {
		p.t = t
		p.route("#/topics")
		p.wait("topic list", rowWith("#topics", ordersTopic, "3", "42"))
		// Riffle's broker serves DescribeLogDirs: a size column.
		if !eval[bool](p, `[...document.querySelectorAll('#topics th')].some(th => th.innerText === 'Size')`) {
			t.Fatal("no size column though the broker serves DescribeLogDirs")
		}
		p.shot("topics")
		p.noErrors()
	})

	t.Run("topic", func(t *testing.T) {
		p.t = t
		eval[chromedp.Void](p, `document.querySelector('#topics a[href="#/topics/orders"]').click()`)
		p.wait("partitions", rows("#partitions", 3))
		p.wait("partition offsets", rowWith("#partitions", "0", "14"))
		p.wait("configs", rowWith("#configs", "retention.ms", "86400000", "DYNAMIC_TOPIC_CONFIG"))
		p.wait("latest records", rowWith("#records", "order-211", `"amount":2110.5`, "source: fixture"))
		// A record produced now appears in the live browser.
		live := &kgo.Record{Topic: ordersTopic, Partition: 2, Key: []byte("live-key"), Value: []byte("hello from the test"),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}}}
		f.produce(t, live)
		p.wait("live record", rowWith("#records", "2", "live-key", "hello from the test", "trace: t-1"))
		// The same bytes as hex.
		eval[chromedp.Void](p, `(s => { s.value = 'hex'; s.dispatchEvent(new Event('change')); })(document.getElementById('rec-format'))`)
		p.wait("hex", rowWith("#records", "6c 69 76 65 2d 6b 65 79")) // "live-key"
		eval[chromedp.Void](p, `(s => { s.value = 'auto'; s.dispatchEvent(new Event('change')); })(document.getElementById('rec-format'))`)
		p.shot("topic")
		// Browse partition 1 from offset 3.
		eval[chromedp.Void](p, `document.getElementById('rec-live').checked = false;
			document.getElementById('rec-offset').value = '3';
			document.getElementById('rec-partition').value = '1';
			(s => { s.value = 'offset'; s.dispatchEvent(new Event('change')); })(document.getElementById('rec-from'))`)
		p.wait("records from offset 3 of partition 1", rowWith("#records", "1", "3", "order-10")+` && !`+rowWith("#records", "order-7"))
		// From a time, in UTC as the timestamps are shown: record 27 on.
		at := f.firstAt.Add(27 * time.Second).UTC()
		eval[chromedp.Void](p, fmt.Sprintf(`document.getElementById('rec-partition').value = 'all';
			document.getElementById('rec-time').value = %q;
			(s => { s.value = 'time'; s.dispatchEvent(new Event('change')); })(document.getElementById('rec-from'))`, at.Format("2006-01-02T15:04:05")))
		p.wait("records from a time", rowWith("#records", "order-27", at.Format("2006-01-02 15:04:05"))+` && `+rowWith("#records", "order-29")+` && !`+rowWith("#records", "order-26"))
		p.noErrors()
	})

	t.Run("groups", func(t *testing.T) {
		p.t = t
		p.route("#/groups")
		p.wait("classic group", rowWith("#groups", classicGroup, "classic", "Stable"))
		p.wait("KIP-848 group", rowWith("#groups", kip848Group, "consumer"))
		p.wait("share group", rowWith("#groups", shareGroup, "share"))
		p.shot("groups")
		p.noErrors()
	})

	t.Run("consumer group", func(t *testing.T) {
		p.t = t
		p.route("#/groups/" + classicGroup)
		p.wait("members", rowWith("#members", classicGroup+"-client", "orders [0, 1, 2]"))
		// The 13 records produced after the group's commit are its lag.
		p.wait("lag", `document.getElementById('total-lag').innerText === '13'`)
		p.wait("lag rows", rows("#lag", 3))
		p.wait("lag of partition 2", rowWith("#lag", "orders", "2", "10", "15", "5"))
		f.produce(t, order(300, time.Now()), order(302, time.Now()))
		p.wait("lag after producing", `document.getElementById('total-lag').innerText === '15'`)
		p.wait("lag drawn over time", `document.querySelectorAll('#total-lag + div polyline').length === 1`)
		p.shot("group")

		p.route("#/groups/" + kip848Group)
		p.wait("KIP-848 members", rowWith("#members", kip848Group+"-client", "orders [0, 1, 2]"))
		p.wait("KIP-848 protocol", `document.getElementById('group-protocol').innerText.includes('consumer / ')`)
		p.noErrors()
	})

	t.Run("share group", func(t *testing.T) {
		p.t = t
		p.route("#/share-groups/" + shareGroup)
		p.wait("members", rowWith("#members", "worker-client", "jobs [0]"))
		p.wait("share partitions", rowWith("#share-partitions", jobsTopic, "10", "0"))
		f.produce(t, &kgo.Record{Topic: jobsTopic, Value: []byte("late job")})
		p.wait("share lag after a new job", rowWith("#share-partitions", jobsTopic, "10", "11", "1"))
		p.shot("share-group")
		p.noErrors()
	})

	t.Run("streams app", func(t *testing.T) {
		p.t = t
		p.route("#/apps")
		p.wait("app list", rowWith("#apps", "wordcount", "2", "8"))
		p.route("#/apps/wordcount")
		// 8 processor nodes, 3 topics, 1 store.
		p.wait("graph", `document.querySelectorAll('#graph g.node').length === 12`)
		for _, name := range []string{sourceNode, "lines", "counts", "word-counts", "counts-repartition"} {
			if n := eval[int](p, fmt.Sprintf(`document.querySelectorAll('#graph g.node[data-name=%q]').length`, name)); n != 1 {
				t.Fatalf("graph has %d nodes named %s", n, name)
			}
		}
		if n := eval[int](p, `document.querySelectorAll('#graph path.edge').length`); n < 11 {
			t.Fatalf("graph has %d edges", n)
		}
		// The application reports again: the graph shows a rate.
		time.Sleep(300 * time.Millisecond)
		f.do(t, http.MethodPut, "/api/apps/wordcount", registration(t, map[string]int64{sourceNode: 5000}), http.StatusOK, nil)
		p.wait("node rate", `[...document.querySelectorAll('#graph g.node[data-name="KSTREAM-SOURCE-0000000000"] text.rate')].some(x => x.textContent.endsWith('/s'))`)
		p.shot("app")
		p.noErrors()
	})

	if got := eval[int](p, `window.riffleTestMarker`); got != 42 {
		t.Fatalf("the page reloaded")
	}
}

// TestBrowserSizes: with a cluster that serves DescribeLogDirs the topic
// pages show the size columns.
func TestBrowserSizes(t *testing.T) {
	chromium(t)
	f := newSizedCluster(t)
	p := newBrowser(t, f.srv.URL)
	p.route("#/topics")
	p.wait("topic size", `[...document.querySelectorAll('#topics th')].some(th => th.innerText === 'Size')`+` && `+rowWith("#topics", "sized", "KiB"))
	p.route("#/topics/sized")
	p.wait("partition sizes", rows("#partitions", 2)+` && `+rowWith("#partitions", "0", "1", "KiB"))
	p.noErrors()
}
