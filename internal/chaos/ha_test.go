package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
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
	for deadline := time.Now().Add(20 * time.Second); ; {
		info, _ := rc.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never synced: %s", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	for deadline := time.Now().Add(20 * time.Second); ; {
		reps, _ := sc.Replicas(ctx, "campaignd").Result()
		if masterAddr() == master.Addr && len(reps) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinels never saw the master and its replica: %q %v", masterAddr(), reps)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w := newWorld(t, bin, opts{procs: 2, rate: 100,
		redisYAML: fmt.Sprintf(`redis: {sentinel: {master: campaignd, addrs: ["%s"]}}`, strings.Join(sentinels, `", "`))})
	start := time.Now()
	const m = 20_000
	w.submit(w.js(), "failover", "f", m)
	w.waitPushes(5_000)
	master.Stop() // SIGKILL
	killed := time.Now()
	var promoted time.Time
	for deadline := time.Now().Add(30 * time.Second); ; {
		if a := masterAddr(); a == replica.Addr {
			promoted = time.Now()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failover: master %q", masterAddr())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := w.sim.Sim().Stats().TotalPushes
	var resumed time.Time
	for deadline := time.Now().Add(30 * time.Second); resumed.IsZero(); {
		if w.sim.Sim().Stats().TotalPushes > before {
			resumed = time.Now()
		}
		if time.Now().After(deadline) {
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
			t.Fatal("sending never resumed after the failover")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := w.waitFinal("failover", 3*time.Minute)
	inFlight := 2 * 4 * 20 * 100 // processes × InFlight(20) batches × 100 targets
	w.finish(scenario, start, m, inFlight, st, campaigns.StateCompleted,
		fmt.Sprintf("master killed; replica promoted %s later; sending resumed %s after the promotion", promoted.Sub(killed).Round(10*time.Millisecond), resumed.Sub(promoted).Round(10*time.Millisecond)))
}
