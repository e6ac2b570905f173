package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/server"
)

// ScreenshotEnv names a file the browser test writes its screenshot of the
// dashboard to (docs/dashboard.png is made this way); unset, it goes to a
// temporary directory.
const ScreenshotEnv = "OCEANHOOKS_DASHBOARD_SCREENSHOT"

// chromium finds Debian's Chromium (.ci/run installs it); the browser test
// fails without it rather than skip.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the dashboard's browser test needs Chromium: apt-get install chromium (.ci/run installs it)")
	return ""
}

// browser starts a headless Chromium for the test, with nothing that reaches
// the network by itself.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start Chromium")
	return ctx
}

// operatorHooks reads the operator listing.
func operatorHooks(t *testing.T, sc *sidecar, token string) []map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+sc.AdminAddr().String()+"/hooks", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var hs []map[string]any
	require.NoError(t, json.Unmarshal(body, &hs))
	return hs
}

func adminToken(t *testing.T, cfg config.Config) string {
	t.Helper()
	token, err := server.ReadAdminToken(cfg.AdminTokenPath())
	require.NoError(t, err)
	return token
}

// TestDashboardInABrowser drives the dashboard in headless Chromium: the
// login form, the queue's figures as the test made them (two deliveries
// waiting for a retry, three dead letters), the failing hook listed first,
// the page readable at a phone's width, and a dead letter redelivered from
// its hook's page reaching the receiver, which now accepts it.
func TestDashboardInABrowser(t *testing.T) {
	ctx := browser(t)
	fake := oceantest.New(t)
	healthy, gone, down := newReceiver(t), newReceiver(t), newReceiver(t)
	gone.setFail(func(*http.Request) int { return http.StatusForbidden })          // final: dead letters at once
	down.setFail(func(*http.Request) int { return http.StatusServiceUnavailable }) // retried, an hour later
	cfg := baseConfig(t, fake.URL, t.TempDir())
	cfg.Delivery.BackoffBase = config.Duration(time.Hour)
	cfg.Delivery.QuickRetries = 0
	sc := startSidecar(t, cfg)
	token := adminToken(t, cfg)

	aliceHook := createHook(t, sc.url(), oceantest.TokenAlice, healthy.URL+"/alice", "note")
	bobHook := createHook(t, sc.url(), oceantest.TokenBob, gone.URL+"/bob/s3cret-path", "note")
	carolHook := createHook(t, sc.url(), oceantest.TokenCarol, down.URL+"/carol", "note")
	for _, post := range []struct {
		token string
		n     int
	}{{oceantest.TokenAlice, 2}, {oceantest.TokenBob, 3}, {oceantest.TokenCarol, 2}} {
		for i := range post.n {
			postNote(t, sc.url(), post.token, map[string]any{"text": "dashboard " + itoa(i)}, http.StatusOK)
		}
		if post.token == oceantest.TokenBob {
			// Bob's hook starts failing before Carol's.
			require.Eventually(t, func() bool { return countFailing(operatorHooks(t, sc, token)) == 1 },
				10*time.Second, 10*time.Millisecond)
		}
	}
	require.Eventually(t, func() bool {
		return len(healthy.deliveries()) == 2 && countFailing(operatorHooks(t, sc, token)) == 2
	}, 10*time.Second, 10*time.Millisecond, "Alice's deliveries arrive; Bob's and Carol's hooks are failing: %d %v", len(healthy.deliveries()), operatorHooks(t, sc, token))

	admin := "http://" + sc.AdminAddr().String()
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		require.NoError(t, chromedp.Do(ctx, steps...))
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return strings.TrimSpace(v)
	}
	do(chromedp.Navigate(admin+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	loginURL, err := chromedp.Run(ctx, chromedp.Location())
	require.NoError(t, err)
	assert.Contains(t, loginURL, "/dash/login", "a browser without a session gets the login form")
	assert.Contains(t, text("#private"), "Private admin listener")
	do(chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Submit(chromedp.CSS("#login")), chromedp.WaitVisible(chromedp.CSS("#queue")))

	assert.Equal(t, "2", text("#q-ready"), "Carol's two deliveries wait for their retry")
	assert.Equal(t, "0", text("#q-leased"))
	assert.Equal(t, "3", text("#q-dead"), "Bob's three deliveries were refused for good")
	assert.Equal(t, "0", text("#q-held"))
	assert.Equal(t, "none", text("#q-oldest"), "nothing is overdue")
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#hooks-table tbody tr')].map(r => r.dataset.hook)`))
	require.NoError(t, err)
	assert.Equal(t, []string{bobHook, carolHook, aliceHook}, rows, "failing hooks first, the longest failing first")
	page, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	require.NoError(t, err)
	assert.NotContains(t, page, "s3cret-path", "no URL path on the page")
	assert.NotContains(t, page, `s3cret"`, "no secret on the page")

	screenshot := os.Getenv(ScreenshotEnv)
	if screenshot == "" {
		screenshot = filepath.Join(t.TempDir(), "dashboard.png")
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(screenshot, png, 0o644))

	// At a phone's width the page needs no sideways scrolling: the wide
	// tables scroll inside their own box.
	do(chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#queue")))
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	require.NoError(t, err)
	assert.False(t, overflow, "the page fits a phone's width")
	do(chromedp.EmulateViewport(1280, 900))

	// Bob's receiver is back; one dead letter is redelivered from the page.
	gone.setFail(nil)
	do(chromedp.Click(chromedp.CSS(`tr[data-hook="`+bobHook+`"] a`)), chromedp.WaitVisible(chromedp.CSS("#hook-facts")))
	assert.Equal(t, "3", text("#hook-dead"))
	do(chromedp.Click(chromedp.CSS("form.redeliver button")), chromedp.WaitVisible(chromedp.CSS("#notice")))
	assert.Contains(t, text("#notice"), "queued again")
	require.Eventually(t, func() bool { return len(gone.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond,
		"the redelivered dead letter reaches the receiver")
	assert.Equal(t, bobHook, gone.deliveries()[0].Header.Get("X-Ocean-Hook-Id"))
	require.Eventually(t, func() bool {
		if chromedp.Do(ctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#hook-dead"))) != nil {
			return false
		}
		d, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#hook-dead")))
		return err == nil && strings.TrimSpace(d) == "2"
	}, 10*time.Second, 100*time.Millisecond, "two dead letters are left")
}

// countFailing counts the hooks the operator listing shows failing.
func countFailing(hs []map[string]any) int {
	n := 0
	for _, h := range hs {
		if h["failingSince"] != nil {
			n++
		}
	}
	return n
}
