package daemon

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/pushsim"
)

// TestMonitoringRendersInChromium loads the asynq web UI in headless
// Chromium (Debian's chromium package) and checks that the React app
// rendered the queue table with campaignd's queue, which only happens when
// its API calls under /monitoring/api/ work.
func TestMonitoringRendersInChromium(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (install it: apt-get install -y chromium): %v", err)
	}
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{}))
	w.publish(t, "campaigns.submit", campaignJSON("ui", ids("ui", 10), ""), "ui")
	r.waitFinal(t, "ui", 30*time.Second)

	resp, err := http.Get(r.base + "/monitoring/")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(raw), "Memory usage") {
		t.Fatal("the raw page already holds the table; this test would prove nothing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=10000", "--dump-dom", r.base+"/monitoring/")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	for _, want := range []string{"Memory", "Processed", ">default<", `href="/campaigns/"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q (%d bytes of DOM)", want, len(dom))
		}
	}
}
