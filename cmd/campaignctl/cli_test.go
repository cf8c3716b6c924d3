package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
)

// setup starts NATS with campaignd's streams and a responder playing
// campaignd: it answers each submit with accepted (or rejected for ids
// starting with "bad"), then running and completed.
func setup(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := intake.EnsureStreams(ctx, js, intake.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	pub := intake.NewPublisher(js, zerolog.Nop())
	cons, err := js.OrderedConsumer(ctx, intake.StreamCampaigns, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		it, err := cons.Messages()
		if err != nil {
			return
		}
		go func() { <-ctx.Done(); it.Stop() }()
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			var c campaigns.Campaign
			_ = json.Unmarshal(m.Data(), &c)
			if m.Subject() != intake.SubjectSubmit {
				_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateCancelled})
				continue
			}
			if strings.HasPrefix(c.ID, "bad") {
				_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateRejected, Errors: campaigns.FieldErrors{{Field: "kind", Message: "unknown"}}})
				continue
			}
			total := int64(len(c.Targets))
			if c.Audience != nil {
				total = -1 // marks an audience campaign
			}
			_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateAccepted, TargetsTotal: total})
			time.Sleep(50 * time.Millisecond)
			_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateRunning, TargetsTotal: 2, Sent: 1})
			_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateCompleted, TargetsTotal: 2, Sent: 2})
		}
	}()
	return n.URL, js
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSubmitWatchAndCancel(t *testing.T) {
	t.Parallel()
	url, js := setup(t)
	f := writeFile(t, "c.json", `{"id":"c1","kind":"batch_push","push_message":{"t":1},"targets":["a","b"]}`)
	code, out, errs := runCLI(t, "-nats", url, "-timeout", "10s", "submit", "-f", f)
	if code != 0 || !strings.Contains(out, `"status": "accepted"`) {
		t.Fatalf("submit: %d %s %s", code, out, errs)
	}
	code, out, errs = runCLI(t, "-nats", url, "watch", "c1")
	if code != 0 || !strings.Contains(out, `"status": "completed"`) || !strings.Contains(errs, "100.0%") {
		t.Fatalf("watch: %d %s %s", code, out, errs)
	}
	code, out, _ = runCLI(t, "-nats", url, "-timeout", "10s", "cancel", "c1")
	if code != 0 || !strings.Contains(out, `"cancelled"`) {
		t.Fatalf("cancel: %d %s", code, out)
	}
	// The message carried Nats-Msg-Id = id.
	s, _ := js.Stream(context.Background(), intake.StreamCampaigns)
	m, err := s.GetLastMsgForSubject(context.Background(), intake.SubjectSubmit)
	if err != nil || m.Header.Get("Nats-Msg-Id") != "c1" {
		t.Fatalf("Nats-Msg-Id: %v %v", m, err)
	}
}

func TestSubmitRejectedAndBadFiles(t *testing.T) {
	t.Parallel()
	url, _ := setup(t)
	f := writeFile(t, "bad.json", `{"id":"bad1","kind":"fax"}`)
	if code, out, _ := runCLI(t, "-nats", url, "-timeout", "10s", "submit", "-f", f); code != 1 || !strings.Contains(out, "rejected") {
		t.Fatalf("rejected: %d %s", code, out)
	}
	f2 := writeFile(t, "noid.json", `{"kind":"batch_push"}`)
	if code, out, _ := runCLI(t, "-nats", url, "submit", "-f", f2); code != 1 || !strings.Contains(out, `"field": "id"`) {
		t.Fatalf("no id: %d %s", code, out)
	}
	if code, _, _ := runCLI(t, "-nats", url, "submit"); code != 2 {
		t.Fatalf("missing -f: %d", code)
	}
	if code, _, _ := runCLI(t, "status", "not valid!"); code != 2 {
		t.Fatalf("bad id: %d", code)
	}
}

func TestSubmitWithAudience(t *testing.T) {
	t.Parallel()
	url, js := setup(t)
	f := writeFile(t, "c.json", `{"id":"aud1","kind":"batch_push","push_message":{"t":1},"targets":["ignored"]}`)
	a := writeFile(t, "users.txt", "u1\nu2\nu3\n")
	if code, out, errs := runCLI(t, "-nats", url, "-timeout", "10s", "submit", "-f", f, "--audience", a); code != 0 || !strings.Contains(out, `"targets_total": -1`) {
		t.Fatalf("submit: %d %s %s", code, out, errs)
	}
	obs, err := js.ObjectStore(context.Background(), "audiences")
	if err != nil {
		t.Fatal(err)
	}
	b, err := obs.GetBytes(context.Background(), "aud1")
	if err != nil || string(b) != "u1\nu2\nu3\n" {
		t.Fatalf("audience object: %q %v", b, err)
	}
}

func TestStatusOverHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			w.WriteHeader(401)
			return
		}
		switch r.URL.Path {
		case "/api/campaigns/known":
			fmt.Fprint(w, `{"id":"known","status":"running"}`)
			return
		case "/api/campaigns/test-5":
			fmt.Fprint(w, `{"id":"test-5","kind":"single_push","status":"partially_failed","targets_total":5,"sent":4,"failed":1}`)
			return
		case "/api/campaigns/test-5/failures":
			fmt.Fprintln(w, `{"target":"invalid-s3","reason":"FAIL: appUser not exists"}`)
			return
		}
		w.WriteHeader(404)
	}))
	defer srv.Close()
	if code, out, _ := runCLI(t, "-api", srv.URL, "-password", "pw", "status", "known"); code != 0 || !strings.Contains(out, "running") {
		t.Fatalf("status: %d %s", code, out)
	}
	code, out, errs := runCLI(t, "-api", srv.URL, "-password", "pw", "status", "test-5")
	if code != 0 || !strings.Contains(out, `"partially_failed"`) ||
		!strings.Contains(errs, "4 of 5 targets sent, 1 failed") ||
		!regexp.MustCompile(`invalid-s3 +FAIL: appUser not exists`).MatchString(errs) || !strings.Contains(errs, "every other target was sent") {
		t.Fatalf("per-target outcome: %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "-api", srv.URL, "-password", "pw", "status", "unknown"); code != 1 || !strings.Contains(errs, "unknown campaign") {
		t.Fatalf("unknown: %d %s", code, errs)
	}
}
