// Package crashtest kills campaignd processes in the middle of their work
// and checks that nothing is lost: `make crash` (CRASH=1), about 3 minutes,
// because asynq hands a killed worker's tasks to others only after their
// lease has expired (60–120 s).
package crashtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/judge"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/store"
)

const (
	rate        = 500 // push_single calls/s, judged by pushsim
	concurrency = 20
)

type cluster struct {
	bin, cfg string
	procs    []*testenv.Proc
	apis     []string
}

// start (re)starts campaignd number i.
func (c *cluster) start(t *testing.T, i int) {
	t.Helper()
	port := testenv.FreePort(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := testenv.StartProc(t, c.bin+"/campaignd", []string{"-config", c.cfg, "-log-level", "warn"},
		[]string{fmt.Sprintf("CAMPAIGND_HTTP_ADDR=127.0.0.1:%d", port)})
	testenv.WaitHTTP(t, api+"/readyz")
	for len(c.procs) <= i {
		c.procs, c.apis = append(c.procs, nil), append(c.apis, "")
	}
	c.procs[i], c.apis[i] = p, api
}

// setup starts pushsim judging push_single at rate, Redis, NATS and two
// campaignd processes whose config has the worker line given, and
// connects to NATS.
func setup(t *testing.T, worker string) (*cluster, *pushsim.Server, jetstream.JetStream, *testenv.Redis) {
	t.Helper()
	bin := testenv.Build(t, "./cmd/campaignd")
	sim, err := pushsim.Start(pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: rate}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	rd := testenv.StartRedis(t)
	ns := testenv.StartNATS(t)
	cfg := filepath.Join(t.TempDir(), "crash.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`redis: {url: %q}
nats: {url: %q}
%s
apps:
  default:
    provider: easemob
    base_url: %q
    org: crash
    app: crash
    client_id: pushsim
    client_secret: pushsim-secret
    limits: {push_single: %d}
`, rd.URL, ns.URL, worker, sim.URL(), rate)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cluster{bin: bin, cfg: cfg}
	c.start(t, 0)
	c.start(t, 1)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return c, sim, js, rd
}

// status asks any live process for a campaign's status.
func (c *cluster) status(id string) (campaigns.Status, bool) {
	return judge.CampaignStatus(http.DefaultClient, c.apis, id)
}

func TestKilledProcessesLoseNothing(t *testing.T) {
	if os.Getenv("CRASH") == "" {
		t.Skip("kills campaignd mid-work and waits out asynq's leases (~3 min): run it with `make crash` (CRASH=1)")
	}
	// A small plan_memory plans each audience in several passes, the later
	// ones from spill files: the kill mid-plan hits a plan reading them.
	spill := t.TempDir()
	c, sim, js, rd := setup(t, fmt.Sprintf("worker: {concurrency: %d, plan_memory: 1MiB, plan_spill_dir: %q}", concurrency, spill))
	ctx := context.Background()
	sizes := map[string]int{"sending": 100_000, "planning": 300_000}
	for id, n := range sizes {
		// every id once, out of order (a sorted audience is planned in one
		// pass, without the set and the spill files this test kills)
		var aud bytes.Buffer
		for i := 0; i < n; i++ {
			fmt.Fprintf(&aud, "%s-%07d\n", id, (i*7919)%n) // 7919 is prime, so coprime with n
		}
		if err := intake.UploadAudience(ctx, js, "audiences", id, &aud); err != nil {
			t.Fatal(err)
		}
	}
	submit := func(id string) {
		body := fmt.Sprintf(`{"id":%q,"kind":"batch_push","push_message":{"title":"t","content":"c"},"audience":{"bucket":"audiences","object":%q}}`, id, id)
		if _, err := js.Publish(ctx, intake.SubjectSubmit, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Kill process 0 while the first campaign is being sent.
	t.Logf("%s submit the first campaign", time.Now().Format(time.StampMicro))
	submit("sending")
	testenv.WaitFor(t, time.Minute, "the first campaign to make 20,000 pushes", func() (pushsim.Stats, bool) {
		st := sim.Sim().Stats()
		return st, st.TotalPushes >= 20_000
	})
	c.procs[0].Kill()
	t.Logf("%s killed process 0 after %d pushes", time.Now().Format(time.StampMicro), sim.Sim().Stats().TotalPushes)

	// 2. Kill process 1 while the second campaign is planned (300,000
	// lines in several passes) or its first batches are sent: once it is
	// running, its first batches stored.
	submit("planning")
	published := time.Now()
	running := testenv.WaitFor(t, time.Minute, "the second campaign to be running (planned in part)", func() (campaigns.Status, bool) {
		st, ok := c.status("planning")
		return st, ok && st.Status != campaigns.StateAccepted && st.Status != campaigns.StateScheduled
	})
	c.procs[1].Kill()
	t.Logf("%s killed process 1 %s after publishing the second campaign, seen %s with %d targets so far, planned %v (%d pushes so far)",
		time.Now().Format(time.StampMicro), time.Since(published).Round(time.Millisecond), running.Status, running.TargetsTotal, running.Planned,
		sim.Sim().Stats().TotalPushes)

	// 3. Bring both back; everything must finish.
	c.start(t, 0)
	c.start(t, 1)
	t.Logf("%s both processes running again", time.Now().Format(time.StampMicro))
	deadline := time.Now().Add(5 * time.Minute)
	for id, n := range sizes {
		st := testenv.WaitFor(t, time.Until(deadline), id+" to finish", func() (campaigns.Status, bool) {
			st, ok := c.status(id)
			return st, ok && st.Status.Final()
		})
		if st.Status != campaigns.StateCompleted || st.Sent != int64(n) || st.TargetsTotal != int64(n) {
			t.Fatalf("%s ended %+v", id, st)
		}
		for i := 0; i < n; i++ {
			if target := fmt.Sprintf("%s-%07d", id, i); sim.Sim().PushCount(target) == 0 {
				t.Fatalf("%s was never pushed", target)
			}
		}
	}
	st := sim.Sim().Stats()
	total := sizes["sending"] + sizes["planning"]
	resent := st.TotalPushes - st.TargetsPushed
	t.Logf("%d targets, %d pushes: %d sent twice (in flight when a process was killed); violations %d, max %d targets per call",
		st.TargetsPushed, st.TotalPushes, resent, st.Violations, st.MaxTargetsPerCall)
	if st.TargetsPushed != total || st.Violations != 0 || st.MaxTargetsPerCall > 100 {
		t.Fatalf("stats %+v", st)
	}
	// At least once: only batches in flight at a kill may go twice (at most
	// 4 × concurrency batches of 100 per killed process).
	if limit := 2 * 4 * concurrency * 100; resent > limit {
		t.Fatalf("%d targets sent twice, more than the %d that can be in flight at two kills", resent, limit)
	}
	// The spill files were unlinked when made: none is left by the kills.
	if left, err := os.ReadDir(spill); err != nil || len(left) != 0 {
		t.Fatalf("spill directory after the kills: %d files, %v", len(left), err)
	}
	plans := store.New(rd.Client(t), store.Options{})
	for id := range sizes {
		p, err := plans.PlanParams(ctx, id, func() (store.PlanParams, error) { return store.PlanParams{}, fmt.Errorf("no plan parameters stored") })
		if err != nil || p.Parts < 2 {
			t.Fatalf("%s planned in %d part(s), %v: plan_memory does not make the test use spill files", id, p.Parts, err)
		}
	}
}
