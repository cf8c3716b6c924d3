package intake

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/campaignd/campaignd/internal/testenv"
)

// apiCalls records the JetStream API requests made on a server (a core
// subscription sees them as any subscriber would).
type apiCalls struct {
	nc   *nats.Conn // the subscriber's
	mu   sync.Mutex
	subs []string
}

func watchAPI(t *testing.T, n *testenv.NATS) *apiCalls {
	t.Helper()
	nc, _ := n.Connect(t)
	a := &apiCalls{nc: nc}
	if _, err := nc.Subscribe("$JS.API.>", func(m *nats.Msg) {
		a.mu.Lock()
		a.subs = append(a.subs, strings.TrimPrefix(m.Subject, "$JS.API."))
		a.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

// take returns the requests seen since the last take, after the
// subscription has caught up with conn's.
func (a *apiCalls) take(t *testing.T, conn *nats.Conn) []string {
	t.Helper()
	if err := conn.Flush(); err != nil { // the requests are at the server
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil { // their copies have reached the subscriber's connection
		t.Fatal(err)
	}
	// The subscription's handler runs on a goroutine of its own: a
	// barrier's function runs once it has handled every message before it.
	handled := make(chan struct{})
	if err := a.nc.Barrier(func() { close(handled) }); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 5*time.Second, "the subscriber to handle the requests", func() bool {
		select {
		case <-handled:
			return true
		default:
			return false
		}
	})
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.subs
	a.subs = nil
	return out
}

func kinds(subs []string) map[string]int {
	out := map[string]int{}
	for _, s := range subs {
		parts := strings.Split(s, ".")
		if len(parts) >= 2 {
			out[parts[0]+"."+parts[1]]++
		}
	}
	return out
}

// Each object is read first and changed only when a setting campaignd
// owns differs: a second pass over ready objects only reads; an object
// changed by hand is put back, keeping what campaignd does not own.
func TestEnsureReadsFirstAndUpdatesOnlyWhatDiffers(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	api := watchAPI(t, n)
	ctx := context.Background()
	in := New(js, nil, Options{})
	pass := func() {
		t.Helper()
		if err := EnsureStreams(ctx, js, StreamOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := EnsureAudienceBucket(ctx, js, 1, 0); err != nil {
			t.Fatal(err)
		}
		if err := in.EnsureConsumer(ctx); err != nil {
			t.Fatal(err)
		}
	}

	pass()
	if got := kinds(api.take(t, nc)); got["STREAM.CREATE"] != 3 || got["CONSUMER.CREATE"] != 1 || got["STREAM.UPDATE"] != 0 {
		t.Fatalf("first pass made %v, want 3 streams (2 and the bucket's) and 1 consumer created", got)
	}
	pass()
	if got := kinds(api.take(t, nc)); got["STREAM.CREATE"]+got["STREAM.UPDATE"]+got["CONSUMER.CREATE"] != 0 || got["STREAM.INFO"] < 3 {
		t.Fatalf("second pass over ready objects made %v, want reads only", got)
	}
	for _, name := range []string{StreamCampaigns, StreamStatus, "OBJ_" + AudienceBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if s.CachedInfo().Config.Description == "" {
			t.Errorf("stream %s has no description", name)
		}
	}

	// By hand: a shorter age, no description, and a setting of the
	// operator's own (a message cap).
	s, _ := js.Stream(ctx, StreamStatus)
	cfg := s.CachedInfo().Config
	cfg.MaxAge, cfg.Description, cfg.MaxMsgs = time.Hour, "", 5000
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	api.take(t, nc)
	pass()
	if got := kinds(api.take(t, nc)); got["STREAM.UPDATE"] != 1 {
		t.Fatalf("after a change by hand the pass made %v, want 1 stream update", got)
	}
	s, _ = js.Stream(ctx, StreamStatus)
	if c := s.CachedInfo().Config; c.MaxAge != 7*24*time.Hour || c.Description != descStatus || c.MaxMsgs != 5000 {
		t.Fatalf("status stream after the pass: age %s, description %q, max msgs %d; want 7 days, campaignd's, 5000 kept", c.MaxAge, c.Description, c.MaxMsgs)
	}
}

// Each call has its own deadline: a pass against a JetStream that does
// not answer returns within about one call's timeout, whatever the
// caller's context allows.
func TestEnsureCallsHaveTheirOwnDeadline(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, js := n.Connect(t)
	// A responder that swallows every stream info request.
	if _, err := nc.QueueSubscribe("$JS.API.STREAM.INFO.*", "swallow", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	n.Server.DisableJetStream()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := EnsureStreams(ctx, js, StreamOptions{CallTimeout: 300 * time.Millisecond})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("EnsureStreams against a silent JetStream: %v after %s; want an error well before the caller's minute", err, time.Since(start))
	}
}
