package dashboard_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/weftmesh/weft/dashboard"
	"github.com/weftmesh/weft/telemetry"
	"github.com/weftmesh/weft/telemetry/promsource/promsourcetest"
)

// chromium finds Debian's chromium; without it the browser tests are skipped, except
// under CI, where a missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH (apt install chromium)")
	}
	t.Skip("no chromium on PATH (apt install chromium)")
	return ""
}

// artifacts is where screenshots go for a person to look at: test-artifacts/dashboard
// at the root of the checkout (gitignored).
func artifacts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "test-artifacts", "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserErrors collects what the page reports as broken: console errors, uncaught
// exceptions and the browser's own log errors (a failed load, a 404 sub-resource).
type browserErrors struct {
	mu   sync.Mutex
	errs []string
}

func (b *browserErrors) listen(ctx context.Context) error {
	return chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, cmp.Or(string(a.Value), a.Description))
				}
				b.errs = append(b.errs, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			b.errs = append(b.errs, fmt.Sprintf("exception: %s at %d:%d", ev.ExceptionDetails.Text, ev.ExceptionDetails.LineNumber, ev.ExceptionDetails.ColumnNumber))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				b.errs = append(b.errs, fmt.Sprintf("browser log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL))
			}
		}
	})
}

func (b *browserErrors) take() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errs
	b.errs = nil
	return e
}

// TestDashboardInBrowser loads every page in headless Chromium over both paths fed by
// promsourcetest's stand-in Envoy proxies (shop/web calls shop/api): the control plane's
// embedded store, which the proxies' metrics_service stream fills, and Prometheus, which
// scrapes them. It follows the links from page to page, checks what a person would read
// and that the topology draws the web -> api edge, fails on any console error, and saves
// a screenshot of each page under test-artifacts/dashboard/<path>.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium(t)
	for _, tc := range []struct {
		name string
		src  telemetry.Source
	}{
		{"embedded", promsourcetest.ShopEmbedded(t)},
		{"prometheus", promsourcetest.ShopSource(t)},
	} {
		t.Run(tc.name, func(t *testing.T) { browse(t, exe, tc.name, tc.src) })
	}
}

// startBrowser starts headless Chromium for the test, with its console and log
// collected; it ends with the test.
func startBrowser(t *testing.T, exe string) (context.Context, *browserErrors) {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	errs := &browserErrors{}
	if err := errs.listen(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	for _, enable := range []func() error{
		func() error { _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); return err },
		func() error { _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); return err },
	} {
		if err := enable(); err != nil {
			t.Fatalf("enabling the browser's log: %v", err)
		}
	}
	return ctx, errs
}

func browse(t *testing.T, exe, name string, src telemetry.Source) {
	h, err := dashboard.New(src, dashboard.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close) // after the browser, which Cleanup ends first
	ctx, errs := startBrowser(t, exe)
	dir := filepath.Join(artifacts(t), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		// reach is how a person gets to the page: a URL, or a click on the previous page.
		url, click string
		wantPath   string
		// want are texts the page must show; sel are elements it must have.
		want []string
		sel  []string
	}{
		{name: "namespaces", url: srv.URL + "/", wantPath: "/",
			want: []string{"Namespaces", "shop", "92.00%", "25.0rps", "other", "100.00%", "1.0rps"}},
		{name: "namespace", click: `a[href="/namespaces/shop"]`, wantPath: "/namespaces/shop",
			want: []string{"Namespace shop", "Deployments", "api", "web", "90.00%", "20.0rps", "18ms", "Services", "Edges", "6.0rps"},
			sel: []string{`svg.topology path.edge[data-src="shop/web"][data-dst="shop/api"]`,
				`svg.topology g.node[data-id="shop/web"]`, `svg.topology g.node[data-id="shop/api"]`}},
		{name: "deployment", click: `td a[href="/namespaces/shop/deployments/web"]`, wantPath: "/namespaces/shop/deployments/web",
			want: []string{"Deployment web", "Golden metrics", "Pods", "web-7d9c-1", "web-7d9c-2", "5ms", "24ms"}},
		{name: "service", url: srv.URL + "/namespaces/shop/services/api", wantPath: "/namespaces/shop/services/api",
			want: []string{"Service api", "Routes", "GET /items", "80.00%", "5.0rps", "71.43%", "5.6rps"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.url != "" {
				err = chromedp.Do(ctx, chromedp.Navigate(tc.url))
			} else {
				err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(tc.click)), chromedp.WaitReady(chromedp.CSS("body")))
			}
			if err != nil {
				t.Fatalf("reaching the page: %v", err)
			}
			if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("main"))); err != nil {
				t.Fatalf("loading the page: %v", err)
			}
			loc, err := chromedp.Run(ctx, chromedp.Location())
			if err != nil {
				t.Fatal(err)
			}
			text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			if err != nil {
				t.Fatal(err)
			}
			shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 is PNG, less is JPEG
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, tc.name+".png"), shot, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimPrefix(loc, srv.URL); got != tc.wantPath {
				t.Errorf("at %s, want %s", got, tc.wantPath)
			}
			for _, w := range tc.want {
				// CSS upper-cases headings in what innerText returns.
				if !strings.Contains(strings.ToLower(text), strings.ToLower(w)) {
					t.Errorf("page does not show %q; it shows:\n%s", w, text)
				}
			}
			if strings.Contains(text, "{\"") {
				t.Errorf("page shows raw JSON:\n%s", text)
			}
			for _, s := range tc.sel {
				n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, s)))
				if err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Errorf("%d elements match %s, want 1", n, s)
				}
			}
			if e := errs.take(); len(e) > 0 {
				t.Errorf("the browser reported errors:\n%s", strings.Join(e, "\n"))
			}
		})
	}
}
