package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
)

// TestHA runs campaignd on high-availability setups of real servers
// (Debian's redis-server, which is also the sentinel): `make ha` (HA=1).
//
// Sentinel failover mid-campaign: one master, one replica, three
// sentinels (quorum 2); the master is SIGKILLed while a 20,000-target
// campaign is sent by two campaignd processes. The sentinels promote the
// replica; the campaign completes, every target pushed at least once,
// duplicates reported (bound: the batches in flight), 0 violations, and
// the pause in sending after the new master answers is reported.
func TestHA(t *testing.T) {
	if os.Getenv("HA") == "" {
		t.Skip("starts a Redis master, a replica and three sentinels and kills the master: run it with `make ha` (HA=1)")
	}
	bin := os.Getenv("CHAOS_BIN")
	if bin == "" {
		bin = testenv.Build(t, "./cmd/campaignd")
	}
	scenario = "sentinel failover mid-campaign"
	t.Run("sentinel failover", func(t *testing.T) { sentinelFailover(t, bin) })
	// The NATS scenarios run on the embedded current server and, when
	// one is installed (make deps installs Debian's 2.9), on the
	// nats-server binary; their two processes start at the same moment.
	type server struct {
		name string
		o    testenv.NATSClusterOptions
	}
	servers := []server{{"embedded " + natsserver.VERSION, testenv.NATSClusterOptions{}}}
	if p, err := exec.LookPath("nats-server"); err == nil {
		servers = append(servers, server{"nats-server binary", testenv.NATSClusterOptions{Binary: p}})
	}
	for _, sv := range servers {
		scenario = "a NATS node lost (3-node cluster, R3, " + sv.name + ")"
		t.Run("nats node lost/"+sv.name, func(t *testing.T) { natsNodeLost(t, bin, sv.o) })
		scenario = "the status stream's leader lost mid-campaign (" + sv.name + ")"
		t.Run("status leader lost/"+sv.name, func(t *testing.T) { statusLeaderLost(t, bin, sv.o) })
	}
	for _, r := range rows {
		t.Logf("| %s | %d | %d | %d | %d | %s | %d | %s | %d (%d, %s) | %s |",
			r.name, r.targets, r.pushes, r.dups, r.viols, r.final, r.failed, r.took, r.probes, r.unanswered, r.slowest, r.extra)
	}
}

func sentinelFailover(t *testing.T, bin string) {
	master := testenv.StartRedisWith(t, testenv.RedisOptions{AppendFsync: "everysec", Args: []string{"--repl-diskless-sync-delay", "0"}})
	replica := testenv.StartRedisWith(t, testenv.RedisOptions{AppendFsync: "everysec",
		Args: []string{"--replicaof", "127.0.0.1", strings.Split(master.Addr, ":")[1]}})
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	var sentinels []string
	for i := range 3 {
		port := testenv.FreePort(t)
		conf := filepath.Join(t.TempDir(), fmt.Sprintf("sentinel-%d.conf", i))
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nsentinel monitor campaignd 127.0.0.1 %s 2\nsentinel down-after-milliseconds campaignd 1000\nsentinel failover-timeout campaignd 5000\n",
			port, strings.Split(master.Addr, ":")[1])
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		testenv.StartProc(t, redisBin, []string{conf, "--sentinel"}, nil)
		sentinels = append(sentinels, fmt.Sprintf("127.0.0.1:%d", port))
	}
	// The replica is in sync before anything is written that matters
	// (a full sync of a new replica comes a moment after it connects).
	rc := replica.Client(t)
	testenv.WaitFor(t, 20*time.Second, "the replica to sync (master_link_status:up)", func() (string, bool) {
		info, _ := rc.Info(context.Background(), "replication").Result()
		return info, strings.Contains(info, "master_link_status:up")
	})
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0]})
	defer sc.Close()
	ctx := context.Background()
	masterAddr := func() string {
		a, err := sc.GetMasterAddrByName(ctx, "campaignd").Result()
		if err != nil || len(a) != 2 {
			return ""
		}
		return a[0] + ":" + a[1]
	}
	testenv.WaitFor(t, 20*time.Second, "the sentinels to see the master "+master.Addr+" and its replica (master, replicas last)", func() (string, bool) {
		reps, _ := sc.Replicas(ctx, "campaignd").Result()
		a := masterAddr()
		return fmt.Sprintf("%q %v", a, reps), a == master.Addr && len(reps) == 1
	})
	w := newWorld(t, bin, opts{procs: 2, rate: 100,
		redisYAML: fmt.Sprintf(`redis: {sentinel: {master: campaignd, addrs: ["%s"]}}`, strings.Join(sentinels, `", "`))})
	start := time.Now()
	const m = 20_000
	w.submit(w.js(), "failover", "f", m)
	w.waitPushes(5_000)
	master.Stop() // SIGKILL
	killed := time.Now()
	testenv.WaitFor(t, 30*time.Second, "the sentinels to promote the replica "+replica.Addr, func() (string, bool) {
		a := masterAddr()
		return "master " + a, a == replica.Addr
	})
	promoted := time.Now()
	before := w.sim.Sim().Stats().TotalPushes
	resumedOK := false
	defer func() { // on the timeout too (Fatal runs it): what the processes and the new master's queues say
		if resumedOK {
			return
		}
		for i, p := range w.live() {
			_ = os.WriteFile(fmt.Sprintf("/tmp/ha-proc-%d.log", i), []byte(p.p.Log()), 0o644)
		}
		insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: replica.Addr})
		for _, q := range []string{"default", "high", "low"} {
			if qi, err := insp.GetQueueInfo(q); err == nil {
				t.Logf("queue %s on the new master: pending %d active %d scheduled %d retry %d archived %d", q, qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived)
			}
		}
		insp.Close()
	}()
	testenv.WaitFor(t, 30*time.Second, "sending to resume after the failover", func() (int, bool) {
		n := w.sim.Sim().Stats().TotalPushes
		return n, n > before
	})
	resumedOK = true
	// When it resumed: the first call pushsim saw after the promotion (one
	// target per call is enough to date the calls).
	var resumed time.Time
	for _, target := range w.submitted {
		for _, p := range w.sim.Sim().Pushes(target) {
			if p.At.After(promoted) && (resumed.IsZero() || p.At.Before(resumed)) {
				resumed = p.At
			}
		}
	}
	if resumed.IsZero() {
		resumed = time.Now()
	}
	st := w.waitFinal("failover", 3*time.Minute)
	inFlight := 2 * 4 * 20 * 100 // processes × InFlight(20) batches × 100 targets
	w.finish(scenario, start, m, inFlight, st, campaigns.StateCompleted,
		fmt.Sprintf("master killed; replica promoted %s later; sending resumed %s after the promotion", promoted.Sub(killed).Round(10*time.Millisecond), resumed.Sub(promoted).Round(10*time.Millisecond)))
}

// clusterWorld is two campaignd processes, started at the same moment,
// at rate calls/s on a 3-node NATS cluster (all three URLs,
// nats.replicas 3) of the servers in o.
func clusterWorld(t *testing.T, bin string, rate float64, o testenv.NATSClusterOptions) (*testenv.NATSCluster, *world) {
	t.Helper()
	cl := testenv.StartNATSCluster(t, o)
	w := newWorld(t, bin, opts{procs: 2, together: true, rate: rate, natsURL: cl.URL(),
		natsYAML: fmt.Sprintf("nats: {url: %q, replicas: 3}", cl.URL())})
	return cl, w
}

// A 3-node NATS cluster with R3 streams; the node with the most clients
// (campaignd's) is shut down while 40 campaigns are submitted: every one
// is accepted once and completes.
func natsNodeLost(t *testing.T, bin string, o testenv.NATSClusterOptions) {
	cl, w := clusterWorld(t, bin, 100, o)
	js := w.js()
	for _, name := range []string{intake.StreamCampaigns, intake.StreamStatus, "OBJ_" + intake.AudienceBucket} {
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3 (nats.replicas)", name, r)
		}
	}
	start := time.Now()
	const count, each = 40, 500
	killed := ""
	pace := time.NewTicker(100 * time.Millisecond) // paces the submits: some go after the node is down
	defer pace.Stop()
	for i := range count {
		if i == 15 {
			busiest := cl.Nodes[0]
			for _, n := range cl.Nodes {
				if n.Clients() > busiest.Clients() {
					busiest = n
				}
			}
			killed = fmt.Sprintf("%s (%d clients)", busiest.Name(), busiest.Clients())
			busiest.Stop()
		}
		w.submit(js, fmt.Sprintf("natsha-%02d", i), fmt.Sprintf("h%02d", i), each)
		<-pace.C
	}
	last, completed := w.waitCompleted("natsha-%02d", count, each)
	w.finish(scenario, start, count*each, 0, last, campaigns.StateCompleted, fmt.Sprintf("node %s shut down after 15 submits; %d/%d campaigns completed once", killed, completed, count))
}

// Two of the three nodes, the one leading CAMPAIGN_STATUS among them, are
// shut down near the end of a campaign and started again 6 s later: the
// status stream has no leader meanwhile (issue 12 saw a campaign taken
// then stay running with nothing sent, and status events lost). Sending
// goes on, the campaign completes while the stream is down, and its final
// status event, queued and retried, arrives on the stream once it is back.
func statusLeaderLost(t *testing.T, bin string, o testenv.NATSClusterOptions) {
	cl, w := clusterWorld(t, bin, 20, o)
	js := w.js()
	start := time.Now()
	const m = 20_000 // 10 s at 20 calls/s
	w.submit(js, "leader", "l", m)
	w.waitPushes(14_000)
	stream, err := js.Stream(context.Background(), intake.StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil || info.Cluster == nil {
		t.Fatalf("status stream info: %+v %v", info, err)
	}
	leader := info.Cluster.Leader
	var down []int
	for i, n := range cl.Nodes {
		if n.Name() == leader {
			down = append(down, i)
		}
	}
	for i := range cl.Nodes {
		if len(down) < 2 && i != down[0] {
			down = append(down, i)
		}
	}
	var names []string
	for _, i := range down {
		names = append(names, cl.Nodes[i].Name())
		cl.Nodes[i].Stop()
	}
	lost := time.Now()
	before := w.sim.Sim().Stats().TotalPushes
	var gap time.Duration
	// The longest gap between pushes over the 2 s after the loss, sampled
	// every 5 ms.
	sample := time.NewTicker(5 * time.Millisecond)
	defer sample.Stop()
	for last, at := before, time.Now(); time.Since(lost) < 2*time.Second; <-sample.C {
		if n := w.sim.Sim().Stats().TotalPushes; n > last {
			gap = max(gap, time.Since(at))
			last, at = n, time.Now()
		}
	}
	if after := w.sim.Sim().Stats().TotalPushes; after-before < 2_000 {
		t.Errorf("%d pushes in the 2 s after the status stream lost its leader (20 calls/s: about 4,000)", after-before)
	}
	st := w.waitFinal("leader", time.Minute) // from the API: Redis has it
	// The nodes stay down 6 s of real time.
	time.Sleep(time.Until(lost.Add(6 * time.Second)))
	for _, i := range down {
		cl.Nodes[i].Start(t)
	}
	back := time.Now()
	event := testenv.WaitFor(t, time.Minute, "a final status event on the stream after it came back", func() (campaigns.Status, bool) {
		var event campaigns.Status
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if s, err := js.Stream(ctx, intake.StreamStatus); err == nil {
			if msg, err := s.GetLastMsgForSubject(ctx, intake.StatusSubject("leader")); err == nil {
				_ = json.Unmarshal(msg.Data, &event)
			}
		}
		cancel()
		return event, event.Status.Final()
	})
	if event.Status != st.Status || event.Sent != m {
		t.Errorf("final event %+v, status %+v", event, st)
	}
	w.finish(scenario, start, m, 0, st, campaigns.StateCompleted,
		fmt.Sprintf("nodes %s (the status leader first) shut down after 14,000 pushes, back 6 s later; longest pause in sending %s; completed while the stream was down; the final event on the stream %s after it came back",
			strings.Join(names, ", "), gap.Round(time.Millisecond), time.Since(back).Round(100*time.Millisecond)))
}
