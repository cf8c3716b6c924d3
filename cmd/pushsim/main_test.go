package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRunServesAndStopsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"-addr", "127.0.0.1:0", "-limit", "push_single=1", "-engagelab-key", "k", "-engagelab-secret", "s"}, pw, io.Discard)
		_ = pw.Close()
		done <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no URL printed: %v", err)
	}
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "pushsim listening on ")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("first line %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	// The flags reach the Sim: EngageLab credentials k/s are accepted.
	req, _ := http.NewRequest(http.MethodGet, url+"/v4/tags/", nil)
	req.SetBasicAuth("k", "s")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v4/tags/ with -engagelab-key/-secret: %d", resp.StatusCode)
	}
	resp, err = http.Get(url + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		TotalCalls int `json:"total_calls"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || st.TotalCalls != 1 {
		t.Fatalf("stats: %+v %v", st, err)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after a stop, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown group", []string{"-limit", "pushes=3"}, "unknown group"},
		{"limit without rate", []string{"-limit", "push_single"}, "group=R"},
		{"zero rate", []string{"-limit", "push_single=0"}, "positive"},
		{"error rate over 1", []string{"-error-rate", "1.5"}, "-error-rate"},
		{"negative drop rate", []string{"-drop-rate", "-0.1"}, "-drop-rate"},
		{"negative window", []string{"-window", "-1s"}, "-window"},
		{"unknown zone", []string{"-zone", "Mars/Olympus"}, "-zone"},
		{"negative label cap", []string{"-max-labels", "-1"}, "-max-labels"},
		{"negative tag cap", []string{"-max-tags", "-5"}, "-max-tags"},
		{"negative devices per tag", []string{"-max-devices-per-tag", "-1"}, "-max-devices-per-tag"},
		{"label cap not a number", []string{"-max-labels", "many"}, "-max-labels"},
		{"stray argument", []string{"extra"}, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr strings.Builder
			code := run(context.Background(), append([]string{"-addr", "127.0.0.1:0"}, tt.args...), io.Discard, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, stderr.String(), tt.want)
			}
		})
	}
}

func TestRunFailsOnBusyAddress(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, pw, io.Discard); _ = pw.Close() }()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addr := strings.TrimPrefix(strings.TrimSpace(line), "pushsim listening on http://")
	var stderr strings.Builder
	if code := run(context.Background(), []string{"-addr", addr}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "listen") {
		t.Errorf("second listener on %s: exit %d, stderr %q", addr, code, stderr.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("first listener exit %d", code)
	}
}

// startRun runs the binary's run with args on a free port and returns its
// URL; the run is stopped at the end of the test and must exit 0.
func startRun(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		_ = pw.Close()
		done <- code
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("no URL printed: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("exit code %d after a stop, want 0", code)
		}
	})
	return strings.TrimPrefix(strings.TrimSpace(line), "pushsim listening on ")
}

func TestRunCapFlagsReachTheSim(t *testing.T) {
	t.Parallel()
	url := startRun(t, "-max-labels", "1", "-max-tags", "2", "-max-devices-per-tag", "1")
	call := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		} else if strings.HasPrefix(path, "/v4/") {
			req.SetBasicAuth("pushsim", "pushsim-secret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	_, tb := call("POST", "/o/a/token", "", `{"grant_type":"client_credentials","client_id":"pushsim","client_secret":"pushsim-secret"}`)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(tb), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %s", tb)
	}
	tests := []struct {
		name, method, path, token, body string
		want                            int
		contains                        string
	}{
		{"first label", "POST", "/o/a/push/label", tok.AccessToken, `{"name":"l1"}`, 200, `"name":"l1"`},
		{"-max-labels 1", "POST", "/o/a/push/label", tok.AccessToken, `{"name":"l2"}`, 403, "LimitException"},
		{"first device of tag a", "POST", "/v4/tags/a", "", `{"registration_ids":{"add":["r1"]}}`, 200, "success"},
		{"-max-devices-per-tag 1", "POST", "/v4/tags/a", "", `{"registration_ids":{"add":["r2"]}}`, 401, "27014"},
		{"second tag", "POST", "/v4/tags/b", "", `{"registration_ids":{"add":["r1"]}}`, 200, "success"},
		{"-max-tags 2", "POST", "/v4/tags/c", "", `{"registration_ids":{"add":["r1"]}}`, 401, "27013"},
	}
	for _, tt := range tests {
		if c, b := call(tt.method, tt.path, tt.token, tt.body); c != tt.want || !strings.Contains(b, tt.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", tt.name, c, b, tt.want, tt.contains)
		}
	}
}
