package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/daemon"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
)

// campaignctl list and schedules against a running campaignd whose
// schedule fires every second.
func TestListAndSchedulesAgainstCampaignd(t *testing.T) {
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
	cfg.Schedules = []config.Schedule{{Name: "every-second", Cron: "* * * * * *",
		CampaignRaw: map[string]any{"app": "default", "kind": "batch_push", "targets": []any{"u1", "u2"},
			"push_message": map[string]any{"title": "t", "content": "c"}}}}
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
	api := "http://" + d.Addr()
	testenv.WaitHTTP(t, api+"/readyz")

	deadline := time.Now().Add(15 * time.Second)
	for {
		code, out, errOut := runCLI(t, "-api", api, "list", "--status", "completed")
		if code == 0 && strings.Contains(out, "cron-every-second-") && strings.Contains(out, "batch_push") {
			t.Logf("campaignctl list:\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no completed cron campaign listed: exit %d\n%s%s", code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
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
