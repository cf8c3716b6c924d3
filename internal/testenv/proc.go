package testenv

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// ModuleRoot is the directory holding go.mod, found from the working
// directory upwards.
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles main packages (import paths relative to the module root,
// like "./cmd/campaignd") into a temporary directory and returns it.
func Build(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = ModuleRoot(tb)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("testenv: build %v: %v\n%s", pkgs, err, out)
	}
	return dir
}

// Proc is a child process started for a test; its output goes to LogPath.
type Proc struct {
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
}

// StartProc starts a program with extra environment; at the test's end it
// is interrupted, and killed if it has not stopped 10 s later.
func StartProc(tb testing.TB, name string, args, env []string) *Proc {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	logPath := filepath.Join(tb.TempDir(), filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("testenv: start %s: %v", name, err)
	}
	p := &Proc{Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	tb.Cleanup(func() {
		if p.Exited() {
			return
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and waits up to within for the process to end:
// its exit code, and how long it took (ok false if it had not ended).
func (p *Proc) Terminate(within time.Duration) (code int, took time.Duration, ok bool) {
	start := time.Now()
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), time.Since(start), true
	case <-time.After(within):
		return -1, time.Since(start), false
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitHTTP waits (up to 10 s) until url answers 200.
func WaitHTTP(tb testing.TB, url string) {
	tb.Helper()
	for i := 0; i < 200; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("testenv: %s never answered 200", url)
}

// WaitReady waits until url answers 200 (a campaignd's /readyz), for at
// most a minute, failing with p's log if p exits or never gets there.
func WaitReady(tb testing.TB, url string, p *Proc) {
	tb.Helper()
	hc := http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.Exited() {
			tb.Fatalf("testenv: %s exited at start:\n%s", p.Cmd.Path, p.Log())
		}
	}
	tb.Fatalf("testenv: %s not ready within a minute:\n%s", p.Cmd.Path, p.Log())
}

// Log returns what the process has written so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	return string(b)
}

// StartSimProc starts the pushsim binary at simBin on a free loopback port
// with args (e.g. "-limit", "push_single=10"), waits until it answers, and
// returns its URL and process.
func StartSimProc(tb testing.TB, simBin string, args ...string) (string, *Proc) {
	tb.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
	p := StartProc(tb, simBin, append([]string{"-addr", addr}, args...), nil)
	url := "http://" + addr
	WaitHTTP(tb, url+"/_sim/stats")
	return url, p
}

// StartCampaignd starts the campaignd binary at bin with the config file
// cfg, JSON logs at logLevel and its HTTP on a free loopback port, waits
// until it is ready, and returns its HTTP root and process.
func StartCampaignd(tb testing.TB, bin, cfg, logLevel string) (string, *Proc) {
	tb.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(tb))
	p := StartProc(tb, bin, []string{"-config", cfg, "-log-level", logLevel, "-log-json"}, []string{"CAMPAIGND_HTTP_ADDR=" + addr})
	root := "http://" + addr
	WaitReady(tb, root+"/readyz", p)
	return root, p
}
