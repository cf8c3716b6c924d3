package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// syncBuffer is a log sink read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Two campaignd processes starting at the same moment against a 3-node
// cluster of Debian's nats-server (2.9) with nats.replicas 3 both start
// and send (issue 21: both exited after 10 s, their concurrent stream
// creations never answered). Then, against a NATS without JetStream, a
// third waits for JetStream with one line saying so, and stops when it
// is told to, without having given up by itself.
func TestTwoProcessesStartTogetherOnANATS29Cluster(t *testing.T) {
	cl := testenv.StartNATSCluster(t, testenv.NATSClusterOptions{Binary: testenv.NATSServerBinary(t)})
	t.Logf("nats-server %s, 3 nodes", cl.Version)
	w := &world{redis: testenv.StartRedis(t), natsURL: cl.URL()}
	w.connect(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	cfg := w.config(t, config.Limits{provider.GroupPushSingle: 50})
	cfg.NATS.Replicas = 3
	cfg.Worker.Concurrency = 5

	type started struct {
		d   *Daemon
		err error
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	res := make([]started, 2)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := New(ctx, cfg, Options{Logger: zerolog.Nop()})
			res[i] = started{d, err}
		}()
	}
	wg.Wait()
	var running []*running
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("process %d: start failed after %s: %v", i, time.Since(begin).Round(time.Millisecond), r.err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		running = append(running, serve(t, rctx, rcancel, r.d))
	}
	t.Logf("both started in %s", time.Since(begin).Round(time.Millisecond))
	for _, name := range []string{intake.StreamCampaigns, intake.StreamStatus, "OBJ_" + intake.AudienceBucket} {
		s, err := w.js.Stream(context.Background(), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if c := s.CachedInfo().Config; c.Replicas != 3 || c.Description == "" {
			t.Errorf("stream %s: %d replicas, description %q; want 3 and one", name, c.Replicas, c.Description)
		}
	}
	w.publish(t, "campaigns.submit", campaignJSON("on-cluster", ids("c", 300), ""), "on-cluster")
	if st := running[0].waitFinal(t, "on-cluster", time.Minute); st.Sent != 300 {
		t.Fatalf("campaign on the cluster: %+v", st)
	}
	if sim := w.sim.Sim().Stats(); sim.Violations != 0 || sim.TargetsPushed != 300 {
		t.Fatalf("pushed %d targets, %d violations", sim.TargetsPushed, sim.Violations)
	}
	for _, r := range running {
		r.stop()
	}

	// A NATS server without JetStream: connected, JetStream never answers.
	// (Two nodes of three stopped is no sure test of that: the one left
	// may still answer stream info from its assignments for a while.)
	port, monitor := testenv.FreePort(t), testenv.FreePort(t)
	plain := testenv.StartProc(t, testenv.NATSServerBinary(t), []string{"-a", "127.0.0.1", "-p", fmt.Sprint(port), "-m", fmt.Sprint(monitor)}, nil)
	cfg.NATS.URL, cfg.NATS.Replicas = fmt.Sprintf("nats://127.0.0.1:%d", port), 1
	waitTCP(t, fmt.Sprintf("127.0.0.1:%d", port), plain)
	logs := &syncBuffer{}
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	done := make(chan error, 1)
	go func() {
		d, err := New(wctx, cfg, Options{Logger: zerolog.New(logs)})
		if d != nil {
			d.Close()
		}
		done <- err
	}()
	const line = "waiting for nats jetstream at nats://127.0.0.1:"
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("a %q line", line), func() (string, bool) {
		select {
		case err := <-done:
			t.Fatalf("start without quorum ended by itself: %v\n%s", err, logs.String())
		default:
		}
		l := logs.String()
		return l, strings.Contains(l, line)
	})
	// Still waiting, not exited: it must stay so for a while, trying again
	// and again (a JetStream request a try, a try every 500 ms; the server
	// counts the requests it receives).
	inMsgs := func() int64 {
		var v struct {
			InMsgs int64 `json:"in_msgs"`
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", monitor))
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		if json.NewDecoder(resp.Body).Decode(&v) != nil {
			return -1
		}
		return v.InMsgs
	}
	from, since := inMsgs(), time.Now()
	tries := testenv.WaitFor(t, 30*time.Second, "4 more JetStream requests while waiting", func() (int64, bool) {
		select {
		case err := <-done:
			t.Fatalf("start without quorum ended by itself: %v\n%s", err, logs.String())
		default:
		}
		n := inMsgs() - from
		return n, from >= 0 && n >= 4
	})
	t.Logf("still waiting: %d JetStream requests in %s", tries, time.Since(since).Round(time.Millisecond))
	select {
	case err := <-done:
		t.Fatalf("start without quorum ended by itself: %v\n%s", err, logs.String())
	default:
	}
	wcancel() // SIGTERM
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("start told to stop returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("start still waiting 5 s after it was told to stop:\n%s", logs.String())
	}
}

// waitTCP waits up to 10 s for addr to accept connections.
func waitTCP(t *testing.T, addr string, p *testenv.Proc) {
	t.Helper()
	testenv.WaitUntil(t, 10*time.Second, "something to listen on "+addr, func() bool {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return true
		}
		if p.Exited() {
			t.Fatalf("nats-server exited:\n%s", p.Log())
		}
		return false
	})
}
