package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/worker"
)

type world struct {
	redis   *testenv.Redis
	nats    *testenv.NATS // nil on a cluster
	natsURL string
	// natsPasswords, on a NATS run with configs/nats/campaignd-account.conf,
	// are the passwords of its users: campaignd runs as "campaignd" and the
	// test publishes and reads status as "backend", a publisher. Nil on an
	// open NATS.
	natsPasswords map[string]string
	// backendOpts, when set, are how the test connects instead (a
	// credentials file).
	backendOpts []nats.Option
	sim         *pushsim.Server
	js          jetstream.JetStream
}

func newWorld(t testing.TB, sc pushsim.Config) *world {
	t.Helper()
	return newWorldWith(t, testenv.StartRedis(t), sc)
}

// newWorldWith is newWorld on a Redis the test started.
func newWorldWith(t testing.TB, rd *testenv.Redis, sc pushsim.Config) *world {
	t.Helper()
	w := &world{redis: rd}
	w.nats, w.natsPasswords = startLeastPrivilegeNATS(t, nil)
	w.natsURL = w.nats.URL
	w.connect(t, sc)
	return w
}

// newOpenWorld is newWorld on a NATS without users: anyone may do
// anything (what the least-privilege world cannot show, a bucket that
// does not exist, say).
func newOpenWorld(t testing.TB, sc pushsim.Config) *world {
	t.Helper()
	w := &world{redis: testenv.StartRedis(t), nats: testenv.StartNATS(t)}
	w.natsURL = w.nats.URL
	w.connect(t, sc)
	return w
}

// startLeastPrivilegeNATS starts a NATS server with campaignd's account
// of configs/nats/campaignd-account.conf (docs/OPERATIONS.md, "Least
// privilege"), its users' passwords made up here, and returns it with
// them by user. set, when not nil, changes the server's options (TLS).
func startLeastPrivilegeNATS(t testing.TB, set func(*natsserver.Options)) (*testenv.NATS, map[string]string) {
	t.Helper()
	return startAccountNATS(t, accountConf(t), set)
}

// accountConf is the path of configs/nats/campaignd-account.conf.
func accountConf(t testing.TB) string {
	return filepath.Join(testenv.ModuleRoot(t), "configs", "nats", "campaignd-account.conf")
}

// startAccountNATS is startLeastPrivilegeNATS with the configuration file
// conf, which defines the same users.
func startAccountNATS(t testing.TB, conf string, set func(*natsserver.Options)) (*testenv.NATS, map[string]string) {
	t.Helper()
	pw := map[string]string{"campaignd": rand.Text(), "backend": rand.Text()}
	n := testenv.StartNATSConf(t, conf,
		map[string]string{"CAMPAIGND_NATS_PASSWORD": pw["campaignd"], "BACKEND_NATS_PASSWORD": pw["backend"]}, set)
	return n, pw
}

// connect starts the emulator and connects to w.natsURL.
func (w *world) connect(t testing.TB, sc pushsim.Config) {
	t.Helper()
	var err error
	w.sim, err = pushsim.Start(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.sim.Close() })
	opts := w.backendOpts
	if w.natsPasswords != nil {
		opts = append(opts, nats.UserInfo("backend", w.natsPasswords["backend"]))
	}
	nc, err := nats.Connect(w.natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w.js, _ = jetstream.New(nc)
}

func (w *world) config(t testing.TB, limits config.Limits) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Redis.URL = w.redis.URL
	cfg.NATS.URL = w.natsURL
	if w.natsPasswords != nil {
		cfg.NATS.User, cfg.NATS.Password = "campaignd", w.natsPasswords["campaignd"]
	}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Worker.Concurrency = 20
	cfg.Apps = map[string]config.App{"default": {
		Provider: "easemob", BaseURL: w.sim.URL(), Org: "org", App: "app",
		ClientID: "pushsim", ClientSecret: "pushsim-secret", Timezone: "Asia/Shanghai", Limits: limits,
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type running struct {
	d    *Daemon
	stop func()
	base string
}

func start(t testing.TB, cfg config.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lg := zerolog.Nop()
	if os.Getenv("E2E_LOG") != "" {
		lvl := zerolog.InfoLevel
		if os.Getenv("E2E_LOG") == "debug" {
			lvl = zerolog.DebugLevel
		}
		lg = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000000"}).Level(lvl).With().Timestamp().Logger()
	}
	d, err := New(ctx, cfg, Options{Logger: lg})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return serve(t, ctx, cancel, d)
}

// serve runs a daemon New returned until the test ends (or stop).
func serve(t testing.TB, ctx context.Context, cancel context.CancelFunc, d *Daemon) *running {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Errorf("daemon did not stop")
			}
		})
	}
	t.Cleanup(stop)
	r := &running{d: d, stop: stop, base: "http://" + d.Addr()}
	waitHTTP(t, r.base+"/readyz", 200)
	return r
}

func waitHTTP(t testing.TB, url string, want int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%s to answer %d", url, want), func() (error, bool) {
		resp, err := http.Get(url)
		if err != nil {
			return err, false
		}
		resp.Body.Close()
		return fmt.Errorf("answered %d", resp.StatusCode), resp.StatusCode == want
	})
}

func getJSON(t testing.TB, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

func (w *world) publish(t testing.TB, subject string, body []byte, msgID string) {
	t.Helper()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := w.js.Publish(context.Background(), subject, body, opts...); err != nil {
		t.Fatal(err)
	}
}

func (r *running) waitFinal(t testing.TB, id string, within time.Duration) campaigns.Status {
	t.Helper()
	return testenv.WaitFor(t, within, id+" to be final", func() (campaigns.Status, bool) {
		var st campaigns.Status
		return st, getJSON(t, r.base+"/api/campaigns/"+id, &st) == 200 && st.Status.Final()
	})
}

// lastStatus reads the last status event of id from NATS.
func (w *world) lastStatus(t *testing.T, id string) campaigns.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, "CAMPAIGN_STATUS")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "campaigns.status."+id)
	if err != nil {
		t.Fatalf("no status event for %s: %v", id, err)
	}
	var st campaigns.Status
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// waitLastStatus waits up to within for the last status event of id on
// NATS to be in state want, and returns it.
func (w *world) waitLastStatus(t *testing.T, id string, want campaigns.State, within time.Duration) campaigns.Status {
	t.Helper()
	return testenv.WaitFor(t, within, fmt.Sprintf("the last status event of %s on NATS to be %s", id, want), func() (campaigns.Status, bool) {
		st := w.lastStatusOK(id)
		return st, st.Status == want
	})
}

func campaignJSON(id string, targets []string, extra string) []byte {
	tb, _ := json.Marshal(targets)
	return []byte(fmt.Sprintf(`{"id":%q,"kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":%s%s}`, id, tb, extra))
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return out
}

func TestBatchPushEndToEnd(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 50}))
	uniq := ids("u", 4546)
	all := append(append([]string(nil), uniq...), uniq[:454]...) // 5,000 with ~10% repeats
	w.publish(t, "campaigns.submit", campaignJSON("e2e-5000", all, ""), "e2e-5000")
	st := r.waitFinal(t, "e2e-5000", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 4546 || st.Failed != 0 || st.TargetsTotal != 4546 || st.BatchesTotal != 46 {
		t.Fatalf("HTTP status %+v", st)
	}
	// Status events are published asynchronously: the final one may land
	// a moment after the state is stored.
	ns := w.waitLastStatus(t, "e2e-5000", campaigns.StateCompleted, 5*time.Second)
	if ns.Status != campaigns.StateCompleted || ns.Sent != 4546 || ns.BatchesDone != 46 {
		t.Fatalf("NATS status %+v", ns)
	}
	sim := w.sim.Sim().Stats()
	if sim.TargetsPushed != 4546 || sim.MaxPushesOneID != 1 || sim.MaxTargetsPerCall > 100 || sim.Violations != 0 {
		t.Fatalf("pushsim: pushed %d, max per target %d, max per call %d, violations %d",
			sim.TargetsPushed, sim.MaxPushesOneID, sim.MaxTargetsPerCall, sim.Violations)
	}
}

// The tests that judge the limit run alone (not in parallel with the other
// end-to-end tests): two daemons, the emulator and the test share one process
// and two cores, and CPU starvation there would be judged as the limiter's
// jitter.
func TestTwoProcessesShareStreamAndLimit(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 20}})
	cfg := w.config(t, config.Limits{provider.GroupPushSingle: 20})
	cfg.Worker.Concurrency = 5
	a, b := start(t, cfg), start(t, cfg)
	w.publish(t, "campaigns.submit", campaignJSON("shared-1", ids("a", 3000), ""), "shared-1")
	w.publish(t, "campaigns.submit", campaignJSON("shared-2", ids("b", 3000), ""), "shared-2")
	a.waitFinal(t, "shared-1", 60*time.Second)
	b.waitFinal(t, "shared-2", 60*time.Second)
	sim := w.sim.Sim().Stats()
	if sim.Violations != 0 || sim.RateLimited != 0 {
		t.Fatalf("violations %d, 429s %d: %+v", sim.Violations, sim.RateLimited, sim.ViolationList)
	}
	if sim.TargetsPushed != 6000 || sim.MaxPushesOneID != 1 {
		t.Fatalf("pushed %d distinct, max %d per target", sim.TargetsPushed, sim.MaxPushesOneID)
	}
}

func TestBadInputIsRejectedAndNothingIsSent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{}))
	ctx := context.Background()
	statusCons, err := w.js.OrderedConsumer(ctx, "CAMPAIGN_STATUS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"campaigns.rejected", "campaigns.status.>"}})
	if err != nil {
		t.Fatal(err)
	}
	tooMany := ids("m", worker.MaxSinglePushTargets+1)
	tb, _ := json.Marshal(tooMany)
	cases := []struct {
		name, body, wantSubject, field string
	}{
		{"not JSON", `{nope`, "campaigns.rejected", ""},
		{"missing id", `{"kind":"batch_push"}`, "campaigns.rejected", "id"},
		{"invalid id", `{"id":"has space","kind":"batch_push"}`, "campaigns.rejected", "id"},
		{"unknown kind", `{"id":"bad-kind","kind":"fax"}`, "campaigns.status.bad-kind", "kind"},
		{"unknown app", `{"id":"bad-app","app":"nope","kind":"broadcast","push_message":{"t":1}}`, "campaigns.status.bad-app", "app"},
		{"bad label", `{"id":"bad-label","kind":"label_push","label":"no spaces allowed","push_message":{"t":1}}`, "campaigns.status.bad-label", "label"},
		{"bad start_date", `{"id":"bad-start","kind":"broadcast","start_date":"next week","push_message":{"t":1}}`, "campaigns.status.bad-start", "start_date"},
		{"missing push_message", `{"id":"no-msg","kind":"batch_push","targets":["u1"]}`, "campaigns.status.no-msg", "push_message"},
		{"oversized target list", `{"id":"too-many","kind":"single_push","push_message":{"t":1},"targets":` + string(tb) + `}`, "campaigns.status.too-many", "targets"},
		{"strategy out of range", `{"id":"bad-strategy","kind":"batch_push","push_message":{"t":1},"targets":["u1"],"strategy":9}`, "campaigns.status.bad-strategy", "strategy"},
	}
	for _, c := range cases {
		w.publish(t, "campaigns.submit", []byte(c.body), "")
	}
	it, err := statusCons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	got := map[string]map[string]any{}
	deadline := time.After(20 * time.Second)
	for len(got) < len(cases) {
		type res struct {
			m   jetstream.Msg
			err error
		}
		ch := make(chan res, 1)
		go func() { m, err := it.Next(); ch <- res{m, err} }()
		select {
		case rr := <-ch:
			if rr.err != nil {
				t.Fatal(rr.err)
			}
			var m map[string]any
			_ = json.Unmarshal(rr.m.Data(), &m)
			key := rr.m.Subject()
			if key == "campaigns.rejected" {
				key = fmt.Sprintf("rejected-%v", m["seq"])
			}
			got[key] = m
		case <-deadline:
			t.Fatalf("got %d of %d answers: %v", len(got), len(cases), got)
		}
	}
	for i, c := range cases {
		key := c.wantSubject
		if key == "campaigns.rejected" {
			key = fmt.Sprintf("rejected-%d", i+1)
		}
		m, ok := got[key]
		if !ok {
			t.Errorf("%s: no answer on %s (got %v)", c.name, key, got)
			continue
		}
		if m["status"] != "rejected" {
			t.Errorf("%s: status %v", c.name, m["status"])
		}
		if c.field != "" && !strings.Contains(fmt.Sprint(m["errors"]), "field:"+c.field) {
			t.Errorf("%s: errors %v do not name %s", c.name, m["errors"], c.field)
		}
	}
	// A resubmitted id gets "duplicate" and sends nothing twice.
	w.publish(t, "campaigns.submit", campaignJSON("twice", ids("t", 10), ""), "")
	r.waitFinal(t, "twice", 30*time.Second)
	w.publish(t, "campaigns.submit", campaignJSON("twice", ids("t", 10), ""), "")
	testenv.WaitUntil(t, 10*time.Second, "a duplicate status for a resubmitted id", func() bool {
		return w.lastStatus(t, "twice").Status == campaigns.StateDuplicate
	})
	if st := w.sim.Sim().Stats(); st.TotalPushes != 10 || st.MaxPushesOneID != 1 {
		t.Fatalf("pushes %d (max %d per target): bad input or the resubmission sent something", st.TotalPushes, st.MaxPushesOneID)
	}
	waitHTTP(t, r.base+"/readyz", 200)
}

func TestServerErrorsStillCompleteEveryTarget(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{LimitsOff: true, Faults: pushsim.Faults{ErrorRate: 0.1, Seed: 7}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 200}))
	w.publish(t, "campaigns.submit", campaignJSON("flaky", ids("f", 5000), ""), "flaky")
	st := r.waitFinal(t, "flaky", 120*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 5000 {
		t.Fatalf("%+v", st)
	}
	sim := w.sim.Sim().Stats()
	if sim.Faulted == 0 || sim.TargetsPushed != 5000 {
		t.Fatalf("faulted %d, pushed %d", sim.Faulted, sim.TargetsPushed)
	}
}

func TestHTTPSide(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	cfg := w.config(t, config.Limits{})
	cfg.HTTP.BasicAuth = config.BasicAuth{User: "admin", Password: "s3cret-ui-pass"}
	r := start(t, cfg)
	get := func(path string, auth bool) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, r.base+path, nil)
		if auth {
			req.SetBasicAuth("admin", "s3cret-ui-pass")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/monitoring/", "/metrics", "/api/campaigns/x"} {
		if code, _ := get(p, false); code != 401 {
			t.Errorf("%s without auth: %d", p, code)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, _ := get(p, false); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
	if code, body := get("/monitoring/", true); code != 200 || !strings.Contains(body, "<html") {
		t.Errorf("asynqmon page: %d %.200s", code, body)
	}
	if code, body := get("/monitoring/api/queues", true); code != 200 || !strings.Contains(body, "queues") {
		t.Errorf("asynqmon API: %d %.200s", code, body)
	}
	// The asynq UI is read-only by default: a queue cannot be deleted.
	del, _ := http.NewRequest(http.MethodDelete, r.base+"/monitoring/api/queues/default", nil)
	del.SetBasicAuth("admin", "s3cret-ui-pass")
	if resp, err := http.DefaultClient.Do(del); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE a queue through the UI: %v %v, want 405", resp, err)
	} else {
		resp.Body.Close()
	}
	if code, _ := get("/api/campaigns/unknown", true); code != 404 {
		t.Errorf("unknown campaign: %d", code)
	}
	if code, _ := get("/api/campaigns/bad%20id", true); code != 400 {
		t.Errorf("bad id: %d", code)
	}
	w.publish(t, "campaigns.submit", []byte(`{"id":"h1","kind":"batch_push","push_message":{"t":1},"targets":["u1","invalid-u2"]}`), "")
	testenv.WaitFor(t, 20*time.Second, "h1 to be partially_failed", func() (string, bool) {
		code, body := get("/api/campaigns/h1", true)
		return fmt.Sprintf("%d %s", code, body), code == 200 && strings.Contains(body, "partially_failed")
	})
	code, body := get("/api/campaigns/h1/failures", true)
	if code != 200 || !strings.Contains(body, `"target":"invalid-u2"`) || strings.Count(body, "\n") != 1 {
		t.Errorf("failures: %d %s", code, body)
	}
	code, body = get("/metrics", true)
	for _, m := range []string{`campaignd_provider_calls_total{app="default",group="push_single",result="ok"}`, "campaignd_campaigns{status=", "asynq_queue_size", `campaignd_tasks_waiting{app="default"} 0`, `campaignd_task_slots_running{app="default"}`} {
		if code != 200 || !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	if strings.Contains(body, "pushsim-secret") || strings.Contains(body, "s3cret-ui-pass") {
		t.Error("a secret is in /metrics")
	}
	// Readiness follows Redis.
	w.redis.Stop()
	testenv.WaitFor(t, 10*time.Second, "readyz to answer 503 naming redis with Redis down", func() (string, bool) {
		code, body := get("/readyz", false)
		return fmt.Sprintf("%d %s", code, body), code == 503 && strings.Contains(body, "redis")
	})
}
