package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
)

// An orchestrator's probe of /readyz: a 1 s client timeout, and an answer
// wanted within 500 ms.
func probeReady(t *testing.T, base string) (int, map[string]string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	start := time.Now()
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string            `json:"status"`
		Failed map[string]string `json:"failed"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /readyz: body: %v", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("GET /readyz answered %d after %s, want within 500ms", resp.StatusCode, took)
	}
	return resp.StatusCode, body.Failed
}

// waitReady probes /readyz until it answers want (every answer within
// 500 ms) and returns the last failed map.
func waitReady(t *testing.T, base string, want int, within time.Duration) map[string]string {
	t.Helper()
	type answer struct {
		code   int
		failed map[string]string
	}
	return testenv.WaitFor(t, within, fmt.Sprintf("/readyz to answer %d", want), func() (answer, bool) {
		code, failed := probeReady(t, base)
		return answer{code, failed}, code == want
	}).failed
}

// restartRedis starts redis-server again on the address of the one that was
// stopped (testenv starts a server on a new port only), and stops it at the
// end of the test.
func restartRedis(t *testing.T, r *testenv.Redis) {
	t.Helper()
	host, port, err := net.SplitHostPort(r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-server", "--port", port, "--bind", host, "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--protected-mode", "yes")
	if err := cmd.Start(); err != nil {
		t.Fatalf("restart redis-server on %s: %v", r.Addr, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	testenv.WaitFor(t, 10*time.Second, "restarted redis-server on "+r.Addr+" to answer PING", func() (error, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		return err, err == nil
	})
}

// /readyz answers 503 naming redis within 500 ms while Redis is hung
// (SIGSTOP: connections open, no answers) or stopped, and 200 again once
// it is back; /healthz answers throughout.
func TestReadyzAnswersWhileRedisIsDown(t *testing.T) {
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{}))
	signal := func(sig syscall.Signal) func(t *testing.T) {
		return func(t *testing.T) {
			pid := w.redis.Pid()
			if err := syscall.Kill(pid, sig); err != nil {
				t.Fatalf("signal redis-server: %v", err)
			}
			if sig == syscall.SIGSTOP { // never leave it stopped
				t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
			}
		}
	}
	tests := []struct {
		name     string
		down, up func(t *testing.T)
	}{
		{"hung (SIGSTOP)", signal(syscall.SIGSTOP), signal(syscall.SIGCONT)},
		{"stopped", func(*testing.T) { w.redis.Stop() }, func(t *testing.T) { restartRedis(t, w.redis) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			waitReady(t, r.base, http.StatusOK, 10*time.Second)
			tt.down(t)
			failed := waitReady(t, r.base, http.StatusServiceUnavailable, 2*time.Second)
			if failed["redis"] == "" {
				t.Fatalf("503 does not name redis: %v", failed)
			}
			if _, ok := failed["nats"]; ok {
				t.Errorf("nats named, but only Redis is down: %v", failed)
			}
			t.Logf("redis %s: %v", tt.name, failed)
			look := time.NewTicker(100 * time.Millisecond) // it must stay so for a while: five looks over half a second
			defer look.Stop()
			for i := range 5 { // it stays so, and every answer comes in time
				if i > 0 {
					<-look.C
				}
				if code, failed := probeReady(t, r.base); code != http.StatusServiceUnavailable || failed["redis"] == "" {
					t.Fatalf("Redis down: /readyz %d %v", code, failed)
				}
				start := time.Now()
				resp, err := http.Get(r.base + "/healthz")
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK || time.Since(start) > 200*time.Millisecond {
					t.Fatalf("/healthz with Redis down: %d after %s", resp.StatusCode, time.Since(start))
				}
			}
			tt.up(t)
			waitReady(t, r.base, http.StatusOK, 10*time.Second)
		})
	}
}
