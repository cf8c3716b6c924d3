package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/internal/testenv"
)

// Started before Redis is there, campaignd says once, in one clear line,
// what it waits for (no go-redis retry spam), and its config in YAML key
// names; it stops when told.
func TestStartWithoutRedisSaysWhatItWaitsFor(t *testing.T) {
	bin := testenv.Build(t, "./cmd/campaignd")
	ns := testenv.StartNATS(t)
	port := testenv.FreePort(t) // nothing listens there
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`redis: {url: "redis://:hunter2@127.0.0.1:%d/0"}
nats: {url: %q}
apps:
  default: {provider: easemob, base_url: "http://127.0.0.1:1", org: o, app: a, client_id: id, client_secret: s3cret}
`, port, ns.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProc(t, bin+"/campaignd", []string{"-config", cfg, "-log-level", "info"},
		[]string{fmt.Sprintf("CAMPAIGND_HTTP_ADDR=127.0.0.1:%d", testenv.FreePort(t))})
	time.Sleep(3 * time.Second)
	if _, _, ok := p.Terminate(10 * time.Second); !ok {
		t.Fatal("campaignd did not stop on SIGTERM while waiting for Redis")
	}
	log := p.Log()
	want := fmt.Sprintf("waiting for redis at 127.0.0.1:%d: connection refused", port)
	if n := strings.Count(log, want); n != 1 {
		t.Errorf("%q appears %d times in 3 s, want once (then every 10 s):\n%s", want, n, log)
	}
	for _, bad := range []string{"pool.go", "hunter2", "s3cret", `"PushSingle"`} {
		if strings.Contains(log, bad) {
			t.Errorf("the log holds %q:\n%s", bad, log)
		}
	}
	t.Logf("campaignd said:\n%s", log)
	if !strings.Contains(log, "apps.default.limits.push_single") {
		t.Errorf("the config line lacks the YAML key apps.default.limits.push_single:\n%s", log)
	}
}
