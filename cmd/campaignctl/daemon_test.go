package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/daemon"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
)

// startCampaignd runs a campaignd (with pushsim as its provider, Redis and
// NATS of its own) until the test ends; more changes cfg first. It returns
// the HTTP base URL and the NATS URL.
func startCampaignd(t *testing.T, more func(*config.Config)) (api, natsURL string) {
	t.Helper()
	sim, err := pushsim.Start(pushsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	cfg := config.Default()
	cfg.Redis.URL = testenv.StartRedis(t).URL
	cfg.NATS.URL = testenv.StartNATS(t).URL
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Apps = map[string]config.App{"default": {Provider: "easemob", BaseURL: sim.URL(), Org: "o", App: "a",
		ClientID: "pushsim", ClientSecret: "pushsim-secret"}}
	if more != nil {
		more(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, daemon.Options{Logger: zerolog.Nop()})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	api = "http://" + d.Addr()
	testenv.WaitHTTP(t, api+"/readyz")
	return api, cfg.NATS.URL
}

// campaignctl list and schedules against a running campaignd whose
// schedule fires every second.
func TestListAndSchedulesAgainstCampaignd(t *testing.T) {
	api, _ := startCampaignd(t, func(cfg *config.Config) {
		cfg.Schedules = []config.Schedule{{Name: "every-second", Cron: "* * * * * *",
			CampaignRaw: map[string]any{"app": "default", "kind": "batch_push", "targets": []any{"u1", "u2"},
				"push_message": map[string]any{"title": "t", "content": "c"}}}}
	})

	type result struct {
		code        int
		out, errOut string
	}
	listed := testenv.WaitFor(t, 15*time.Second, "a completed cron campaign listed by campaignctl list", func() (result, bool) {
		code, out, errOut := runCLI(t, "-api", api, "list", "--status", "completed")
		return result{code, out, errOut}, code == 0 && strings.Contains(out, "cron-every-second-") && strings.Contains(out, "batch_push")
	})
	t.Logf("campaignctl list:\n%s", listed.out)
	code, out, errOut := runCLI(t, "-api", api, "schedules")
	if code != 0 || !strings.Contains(out, "every-second") || !strings.Contains(out, "* * * * * *") || !strings.Contains(out, "cron-every-second-") {
		t.Fatalf("campaignctl schedules: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("campaignctl schedules:\n%s", out)
	// The asynq web UI's Schedulers tab (its API) lists the schedule.
	resp, err := http.Get(api + "/monitoring/api/scheduler_entries")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"spec":"* * * * * *"`) || !strings.Contains(string(body), "campaignd-cron-every-second") {
		t.Fatalf("asynq UI scheduler entries: %d %s", resp.StatusCode, body)
	}
}

// submit --audience against a running campaignd: the file is streamed to
// the object store as it is, stdout is the accepted answer, and stderr
// tells the upload and then the plan: distinct ids, duplicates and invalid
// lines left out.
func TestSubmitAudienceAgainstCampaignd(t *testing.T) {
	api, natsURL := startCampaignd(t, nil)
	// 5,000 lines: 4,000 distinct ids, 998 repeats, an invalid id and a
	// blank line.
	var aud strings.Builder
	for i := range 4000 {
		fmt.Fprintf(&aud, "user%05d\n", i)
		if i == 2000 {
			aud.WriteString("bad/id\n\n")
		}
	}
	for i := range 998 {
		fmt.Fprintf(&aud, "user%05d\n", i*4)
	}
	a := writeFile(t, "users.txt", aud.String())
	f := writeFile(t, "c.json", `{"id":"aud-plan","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"}}`)

	code, out, errOut := runCLI(t, "-nats", natsURL, "-api", api, "-timeout", "20s", "submit", "-f", f, "--audience", a)
	t.Logf("stderr:\n%s", errOut)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s%s", code, out, errOut)
	}
	var st campaigns.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.ID != "aud-plan" || st.Status != campaigns.StateAccepted {
		t.Fatalf("stdout is not the accepted answer: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stderr: want the upload line and the plan line, got %q", errOut)
	}
	up := regexp.MustCompile(`^uploaded ([0-9.]+) kB, ([0-9,]+) lines in \S+$`).FindStringSubmatch(lines[0])
	if up == nil || up[1] != fmt.Sprintf("%.1f", float64(aud.Len())/1e3) || up[2] != "5,000" {
		t.Errorf("upload line %q", lines[0])
	}
	m := regexp.MustCompile(`^planned: ([0-9,]+) distinct ids from ([0-9,]+) lines; ([0-9,]+) duplicates and ([0-9,]+) invalid lines? left out \(1 blank line skipped\)$`).FindStringSubmatch(lines[1])
	if m == nil {
		t.Fatalf("plan line %q", lines[1])
	}
	if m[1] != "4,000" || m[2] != "5,000" || m[3] != "998" || m[4] != "1" {
		t.Errorf("plan line %q: want 4,000 distinct of 5,000 lines, 998 duplicates, 1 invalid", lines[1])
	}

	// The object is the file, byte for byte.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	obs, err := js.ObjectStore(context.Background(), "audiences")
	if err != nil {
		t.Fatal(err)
	}
	b, err := obs.GetBytes(context.Background(), "aud-plan")
	if err != nil || string(b) != aud.String() {
		t.Fatalf("audience object: %d bytes (file %d), %v", len(b), aud.Len(), err)
	}

	// The same id again with another file: answered duplicate, and the
	// campaign's audience is not replaced.
	other := writeFile(t, "other.txt", "someone-else\n")
	code, out, errOut = runCLI(t, "-nats", natsURL, "-timeout", "20s", "submit", "-f", f, "--audience", other)
	if code != 0 || !strings.Contains(out, `"status": "duplicate"`) || !strings.Contains(errOut, "exists already; its audience is not uploaded again") {
		t.Fatalf("resubmit: exit %d\n%s\nstderr %q", code, out, errOut)
	}
	if b, err := obs.GetBytes(context.Background(), "aud-plan"); err != nil || string(b) != aud.String() {
		t.Fatalf("audience object after a resubmit: %d bytes (file %d), %v", len(b), aud.Len(), err)
	}

	// --no-wait: the answer alone after the upload line.
	f2 := writeFile(t, "c2.json", `{"id":"aud-nowait","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"}}`)
	code, out, errOut = runCLI(t, "-nats", natsURL, "-timeout", "20s", "submit", "-f", f2, "--audience", a, "--no-wait", "--no-progress")
	if code != 0 || !strings.Contains(out, `"status": "accepted"`) || errOut != "" {
		t.Fatalf("--no-wait --no-progress: exit %d\n%s\nstderr %q", code, out, errOut)
	}
}

// TestCorrectedResubmitIsTaken: a rejected campaign corrected and sent
// again under the same id reaches campaignd (the message id carries the
// content), and the same message again is answered duplicate.
func TestCorrectedResubmitIsTaken(t *testing.T) {
	api, natsURL := startCampaignd(t, nil)
	bad := writeFile(t, "bad.json", `{"id":"fixme","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["a/b"]}`)
	if code, out, errOut := runCLI(t, "-nats", natsURL, "-api", api, "-timeout", "20s", "submit", "-f", bad); code != 1 || !strings.Contains(out, `"rejected"`) {
		t.Fatalf("bad campaign: exit %d\n%s%s", code, out, errOut)
	}
	good := writeFile(t, "good.json", `{"id":"fixme","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["a","b"]}`)
	if code, out, errOut := runCLI(t, "-nats", natsURL, "-api", api, "-timeout", "20s", "submit", "-f", good); code != 0 || !strings.Contains(out, `"accepted"`) {
		t.Fatalf("corrected campaign: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCLI(t, "-nats", natsURL, "-api", api, "-timeout", "20s", "submit", "-f", good)
	if code != 0 || !strings.Contains(out, `"duplicate"`) || !strings.Contains(errOut, "same content") {
		t.Fatalf("same message again: exit %d\n%s%s", code, out, errOut)
	}
}
