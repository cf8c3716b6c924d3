package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
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
	time.Sleep(3 * time.Second) // the 3 s in which it must say it once (then every 10 s)
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

// Two processes reload their config on SIGHUP a second apart: one
// schedule added, one removed, one changed (its cron), one kept. Each tick
// of each schedule fires once; a config that does not validate is refused
// and the running one stays.
func TestSIGHUPAppliesSchedulesOnce(t *testing.T) {
	bin := testenv.Build(t, "./cmd/campaignd")
	rd := testenv.StartRedis(t)
	ns := testenv.StartNATS(t)
	sim, err := pushsim.Start(pushsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	write := func(schedules string, extra ...string) {
		t.Helper()
		body := strings.Join(extra, "") + fmt.Sprintf(`redis: {url: %q}
nats: {url: %q}
apps:
  default: {provider: easemob, base_url: %q, org: o, app: a, client_id: pushsim, client_secret: pushsim-secret}
schedules:
%s`, rd.URL, ns.URL, sim.URL(), schedules)
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(name, cron string) string {
		return fmt.Sprintf("  - {name: %s, cron: %q, campaign: {kind: batch_push, app: default, targets: [%s-user], push_message: {title: t, content: c}}}\n", name, cron, name)
	}
	write(entry("keep", "*/2 * * * * *") + entry("gone", "*/2 * * * * *") + entry("change", "*/2 * * * * *"))
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	dups := 0
	if _, err := nc.Subscribe("campaigns.status.>", func(m *nats.Msg) {
		if strings.Contains(string(m.Data), `"status":"duplicate"`) {
			mu.Lock()
			dups++
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	var procs []*testenv.Proc
	var api string
	for range 2 {
		port := testenv.FreePort(t)
		p := testenv.StartProc(t, bin+"/campaignd", []string{"-config", cfgPath, "-log-level", "info"},
			[]string{fmt.Sprintf("CAMPAIGND_HTTP_ADDR=127.0.0.1:%d", port)})
		api = fmt.Sprintf("http://127.0.0.1:%d", port)
		testenv.WaitHTTP(t, api+"/readyz")
		procs = append(procs, p)
	}
	readyAt := time.Now()
	// fired lists each schedule's fired ticks, from the campaigns the API
	// lists (a tick's campaign id ends in its time).
	fired := func() map[string][]time.Time {
		t.Helper()
		ticks := map[string][]time.Time{} // schedule → its fired ticks
		resp, err := http.Get(api + "/api/campaigns?limit=500")
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Campaigns []campaigns.Status `json:"campaigns"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		for _, st := range page.Campaigns {
			rest, ok := strings.CutPrefix(st.ID, "cron-")
			if !ok {
				continue
			}
			i := strings.LastIndex(rest, "-")
			at, err := time.Parse("20060102150405", rest[i+1:])
			if err != nil {
				t.Fatalf("tick id %s: %v", st.ID, err)
			}
			ticks[rest[:i]] = append(ticks[rest[:i]], at)
		}
		return ticks
	}
	// since counts the ticks at from or later.
	since := func(ticks []time.Time, from time.Time) int {
		n := 0
		for _, at := range ticks {
			if !at.Before(from) {
				n++
			}
		}
		return n
	}
	// Ticks of the first config fire on the real clock ("keep" is checked
	// from 3 s before the reload): the first two a second and more after
	// both processes are ready.
	first := readyAt.Add(time.Second).Truncate(2 * time.Second).Add(2 * time.Second)
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("keep's ticks at %s and 2 s later", first.UTC().Format(time.TimeOnly)), func() ([]time.Time, bool) {
		keep := fired()["keep"]
		have := map[int64]bool{}
		for _, at := range keep {
			have[at.Unix()] = true
		}
		return keep, have[first.Unix()] && have[first.Unix()+2]
	})

	// A config that does not validate is refused.
	write(entry("keep", "not a cron"))
	_ = procs[0].Cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "the bad config to be refused (config reload refused in the log)", func() (string, bool) {
		log := procs[0].Log()
		return log, strings.Contains(log, "config reload refused")
	})

	write(entry("keep", "*/2 * * * * *")+entry("change", "1/2 * * * * *")+entry("new", "*/2 * * * * *"), "worker: {concurrency: 7}\n")
	_ = procs[0].Cmd.Process.Signal(syscall.SIGHUP)
	reloadedA := time.Now()
	// The second process reloads a second and more later: once the first
	// has fired a tick of its new schedule "new" (the second still on the
	// old config) a second and more after its reload.
	testenv.WaitFor(t, 20*time.Second, `a tick of "new" a second and more after the first reload`, func() ([]time.Time, bool) {
		ticks := fired()["new"]
		return ticks, since(ticks, reloadedA.Add(time.Second)) >= 1
	})
	_ = procs[1].Cmd.Process.Signal(syscall.SIGHUP)
	reloadedB := time.Now()
	// Ticks of the new config fire on the real clock: three of each
	// schedule after both reloads.
	testenv.WaitFor(t, 30*time.Second, "3 ticks of keep, new and change after both reloads", func() (map[string][]time.Time, bool) {
		ticks := fired()
		from := reloadedB.Add(time.Second)
		return ticks, since(ticks["keep"], from) >= 3 && since(ticks["new"], from) >= 3 && since(ticks["change"], from) >= 3
	})
	end := time.Now()

	ticks := fired()
	within := func(name string, from, to time.Time, even bool) {
		t.Helper()
		have := map[int64]bool{}
		for _, at := range ticks[name] {
			have[at.Unix()] = true
		}
		for s := from.Unix() + 1; s < to.Unix(); s++ {
			if (s%2 == 0) == even && !have[s] {
				t.Errorf("schedule %s: tick %s never fired", name, time.Unix(s, 0).UTC().Format(time.TimeOnly))
			}
		}
	}
	within("keep", reloadedA.Add(-3*time.Second), end, true)
	within("new", reloadedA, end, true)
	within("change", reloadedB, end, false)
	for _, at := range ticks["gone"] {
		if at.After(reloadedB.Add(time.Second)) {
			t.Errorf("removed schedule fired at %s, after both reloads", at.Format(time.TimeOnly))
		}
	}
	for _, at := range ticks["change"] {
		if at.Unix()%2 == 0 && at.After(reloadedB.Add(time.Second)) {
			t.Errorf("the changed schedule fired on its old cron at %s, after both reloads", at.Format(time.TimeOnly))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if dups != 0 {
		t.Errorf("%d ticks submitted twice", dups)
	}
	for i, p := range procs {
		if !strings.Contains(p.Log(), "schedules applied") || !strings.Contains(p.Log(), "schedules_added") || !strings.Contains(p.Log(), "worker.concurrency") {
			t.Errorf("process %d did not say what changed:\n%s", i, p.Log())
		}
	}
	for _, line := range strings.Split(procs[0].Log(), "\n") {
		if strings.Contains(line, "reload") {
			t.Log(line)
		}
	}
	t.Logf("ticks fired: keep %d, new %d, change %d, gone %d", len(ticks["keep"]), len(ticks["new"]), len(ticks["change"]), len(ticks["gone"]))
}

// JSON log lines carry their time to the millisecond: calls go out a tenth
// of a second apart, and a second's precision cannot tell them apart.
func TestLogTimesHaveMilliseconds(t *testing.T) {
	bin := testenv.Build(t, "./cmd/campaignd")
	ns := testenv.StartNATS(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`redis: {url: "redis://127.0.0.1:%d/0"}
nats: {url: %q}
apps:
  default: {provider: easemob, base_url: "http://127.0.0.1:1", org: o, app: a, client_id: id, client_secret: s}
`, testenv.FreePort(t), ns.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.StartProc(t, bin+"/campaignd", []string{"-config", cfg, "-log-level", "info", "-log-json"},
		[]string{fmt.Sprintf("CAMPAIGND_HTTP_ADDR=127.0.0.1:%d", testenv.FreePort(t))})
	stamp := regexp.MustCompile(`"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)"`)
	testenv.WaitFor(t, 10*time.Second, "a log time with milliseconds", func() (string, bool) {
		log := p.Log()
		return log, stamp.MatchString(log)
	})
	p.Terminate(10 * time.Second)
}
