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
