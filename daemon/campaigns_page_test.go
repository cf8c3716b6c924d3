package daemon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// chromiumRun runs headless Chromium (Debian's chromium package) with the
// given extra arguments and returns its standard output.
func chromiumRun(t *testing.T, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (install it: apt-get install -y chromium): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}, extra...)
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", extra, err)
	}
	return string(out)
}

// chromiumDOM is the DOM of url as Chromium rendered it, dumped before the
// page's own 3 s refresh comes due.
func chromiumDOM(t *testing.T, url string) string {
	t.Helper()
	return chromiumRun(t, "--virtual-time-budget=1500", "--dump-dom", url)
}

// progressOf reads the progress bar's value in id's row of the list page.
func progressOf(t *testing.T, dom, id string) int {
	t.Helper()
	re := regexp.MustCompile(`(?s)<tr class="campaign" data-id="` + regexp.QuoteMeta(id) + `".*?<progress max="100" value="(\d+)"`)
	m := re.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no progress bar for %s in the rendered page (%d bytes)", id, len(dom))
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestCampaignsPageInChromium loads /campaigns/ in headless Chromium while
// one campaign has finished and another is running at 4 calls a second:
// both are listed with their state, the page refreshes itself, links to
// the asynq UI, and on a second load the running campaign's progress bar
// has moved. Its detail page links to its queue in the asynq UI.
//
// With CAMPAIGNS_SCREENSHOT=DIR it also saves DIR/campaigns.png (desktop)
// and DIR/campaigns-phone.png (a phone's width), for the README.
func TestCampaignsPageInChromium(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 4}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 4}))
	w.publish(t, "campaigns.submit", campaignJSON("page-done", ids("d", 10), ""), "page-done")
	if st := r.waitFinal(t, "page-done", 30*time.Second); st.Status != campaigns.StateCompleted {
		t.Fatalf("page-done ended %s", st.Status)
	}
	// 6,000 targets: 60 calls at 4 a second, some 15 s.
	w.publish(t, "campaigns.submit", campaignJSON("page-slow", ids("s", 6000), ""), "page-slow")
	testenv.WaitFor(t, 20*time.Second, "page-slow to be sending", func() (campaigns.Status, bool) {
		var st campaigns.Status
		return st, getJSON(t, r.base+"/api/campaigns/page-slow", &st) == 200 && st.Status == campaigns.StateRunning && st.Sent > 0
	})

	dom := chromiumDOM(t, r.base+"/campaigns/")
	for _, want := range []string{
		`data-id="page-done" data-state="completed"`,
		`data-id="page-slow" data-state="running"`,
		`<meta http-equiv="refresh" content="3">`,
		`<a href="/monitoring/">`,
		`<a href="/campaigns/page-slow">`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %s (%d bytes of DOM)", want, len(dom))
		}
	}
	if got := progressOf(t, dom, "page-done"); got != 100 {
		t.Errorf("page-done's progress bar at %d, want 100", got)
	}
	before := progressOf(t, dom, "page-slow")
	if before >= 100 {
		t.Fatalf("page-slow already at %d%%: the test would prove nothing", before)
	}
	// Sending goes on (4 calls a second: ~7 points a second): once the
	// status API is past the bar's value, the page is rendered again.
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("page-slow's progress past %d%%", before), func() (int, bool) {
		var st campaigns.Status
		getJSON(t, r.base+"/api/campaigns/page-slow", &st)
		p := int(st.Progress() * 100)
		return p, p > before
	})
	after := progressOf(t, chromiumDOM(t, r.base+"/campaigns/"), "page-slow")
	if after <= before {
		t.Errorf("page-slow's progress bar did not move: %d%% then %d%%", before, after)
	}

	detail := chromiumDOM(t, r.base+"/campaigns/page-slow")
	for _, want := range []string{`<code id="campaign-id">page-slow</code>`, `<dd id="targets">6000</dd>`,
		`href="/monitoring/queues/default"`, "Refused targets (0)"} {
		if !strings.Contains(detail, want) {
			t.Errorf("rendered detail page lacks %s", want)
		}
	}

	if dir := os.Getenv("CAMPAIGNS_SCREENSHOT"); dir != "" {
		for name, size := range map[string]string{"campaigns.png": "1280,720", "campaigns-phone.png": "390,844"} {
			path, err := filepath.Abs(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			chromiumRun(t, "--virtual-time-budget=1500", "--hide-scrollbars", "--window-size="+size, "--screenshot="+path, r.base+"/campaigns/")
			if _, err := os.Stat(path); err != nil {
				t.Errorf("screenshot %s: %v", path, err)
			}
		}
	}
}
