package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
)

// noStatus is a StatusReader that knows no campaign (/readyz never reads it).
type noStatus struct{}

func (noStatus) Lookup(context.Context, string) (campaigns.Status, bool, error) {
	return campaigns.Status{}, false, nil
}

func (noStatus) EachFailure(context.Context, string, func(campaigns.Failure) error) (bool, error) {
	return false, nil
}

func newTestServer(t *testing.T, checks []Check) *httptest.Server {
	t.Helper()
	s, err := New(Options{
		Status:   noStatus{},
		RedisOpt: asynq.RedisClientOpt{Addr: testenv.StartRedis(t).Addr},
		Gatherer: prometheus.NewRegistry(),
		Ready:    checks,
		Logger:   zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

type readyBody struct {
	Status string            `json:"status"`
	Failed map[string]string `json:"failed"`
}

// getReady asks /readyz as an orchestrator with a 1 s timeout would, and
// fails the test unless the answer came within 500 ms.
func getReady(t *testing.T, url string) (int, readyBody) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	var body readyBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /readyz: body: %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("GET /readyz answered after %s, want within 500ms", took)
	}
	return resp.StatusCode, body
}

func TestReadyAnswersWithinBudget(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	honest := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	tests := []struct {
		name       string
		checks     []Check
		wantCode   int
		wantFailed map[string]string // name → a substring of its reason
	}{
		{"all up", []Check{{"redis", ok}, {"nats", ok}}, http.StatusOK, nil},
		{"check blocks forever, ignoring its ctx", []Check{{"redis", nil}, {"nats", ok}}, http.StatusServiceUnavailable,
			map[string]string{"redis": "no answer within 400ms"}},
		// its reason: its own error, or "no answer" on a busy machine
		{"check runs into its deadline", []Check{{"redis", ok}, {"nats", honest}}, http.StatusServiceUnavailable,
			map[string]string{"nats": ""}},
		{"both down, secrets scrubbed", []Check{
			{"redis", func(context.Context) error {
				return errors.New("dial redis://app:s3cret@10.0.0.1:6379/0: connection refused")
			}},
			{"nats", func(context.Context) error { return errors.New("nats connection RECONNECTING") }},
		}, http.StatusServiceUnavailable, map[string]string{"redis": "redis://***@10.0.0.1:6379/0", "nats": "RECONNECTING"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			var started atomic.Int32
			checks := append([]Check(nil), tt.checks...)
			for i := range checks {
				if checks[i].Fn == nil { // stuck: ignores ctx until the test ends
					checks[i].Fn = func(context.Context) error {
						started.Add(1)
						<-release
						return nil
					}
				}
			}
			srv := newTestServer(t, checks)
			// Released before the server closes (cleanups run last first).
			t.Cleanup(func() { close(release) })
			// A stuck check holds no later request either.
			for range 3 {
				code, body := getReady(t, srv.URL)
				if code != tt.wantCode {
					t.Fatalf("status %d, want %d (body %+v)", code, tt.wantCode, body)
				}
				if !slices.Equal(slices.Sorted(maps.Keys(body.Failed)), slices.Sorted(maps.Keys(tt.wantFailed))) {
					t.Fatalf("failed %v, want %v named", body.Failed, tt.wantFailed)
				}
				for name, want := range tt.wantFailed {
					if !strings.Contains(body.Failed[name], want) {
						t.Errorf("failed[%s] = %q, want it to contain %q", name, body.Failed[name], want)
					}
					if strings.Contains(body.Failed[name], "s3cret") {
						t.Errorf("failed[%s] = %q: the password is not scrubbed", name, body.Failed[name])
					}
				}
				if tt.wantCode != http.StatusOK && body.Status != "not ready" {
					t.Errorf("status %q, want \"not ready\"", body.Status)
				}
			}
			if n := started.Load(); n > 1 {
				t.Errorf("the stuck check was started %d times: a run in progress is joined, not repeated", n)
			}
			// Liveness answers at once, whatever the checks do.
			start := time.Now()
			resp, err := http.Get(srv.URL + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || time.Since(start) > 200*time.Millisecond {
				t.Errorf("/healthz: %d after %s", resp.StatusCode, time.Since(start))
			}
		})
	}
}
