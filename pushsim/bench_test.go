package pushsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPushSingle measures how many POST /push/single calls (100 targets
// each) pushsim serves per second over loopback HTTP with limits off: the
// ceiling of the emulator, so throughput figures of campaignd can tell it is
// not the bottleneck.
func BenchmarkPushSingle(b *testing.B) { benchPushSingle(b, false) }

// BenchmarkPushSingleDistinct is BenchmarkPushSingle with 100 new targets in
// every call, as a campaign sends: the Sim's records grow with the run.
func BenchmarkPushSingleDistinct(b *testing.B) { benchPushSingle(b, true) }

func benchPushSingle(b *testing.B, distinct bool) {
	srv, err := Start(Config{LimitsOff: true})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Post(srv.URL()+"/bench/app/token", "application/json",
		bytes.NewReader([]byte(`{"grant_type":"client_credentials","client_id":"pushsim","client_secret":"pushsim-secret"}`)))
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	targets := make([]string, 100)
	for i := range targets {
		targets[i] = fmt.Sprintf("user%06d", i)
	}
	body, _ := json.Marshal(map[string]any{"targets": targets, "pushMessage": map[string]string{"title": "t", "content": "c"}})
	url := srv.URL() + "/bench/app/push/single"
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	var seq atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			callBody := body
			if distinct {
				buf = distinctBody(buf[:0], seq.Add(1), len(targets))
				callBody = buf
			}
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(callBody))
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer() // leave the server's shutdown out of ns/op
	tr.CloseIdleConnections()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(b.N*100)/elapsed.Seconds(), "targets/s")
	if st := srv.Sim().Stats(); st.TotalPushes != b.N*100 && !b.Failed() {
		b.Fatalf("recorded %d pushes for %d calls of 100 targets", st.TotalPushes, b.N)
	}
	if distinct {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/float64(b.N*100), "heap-B/target")
		runtime.KeepAlive(srv)
	}
}

// distinctBody appends a push/single body for targets u<call>-0 … u<call>-(n-1).
func distinctBody(buf []byte, call int64, n int) []byte {
	buf = append(buf, `{"targets":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `"u`...)
		buf = strconv.AppendInt(buf, call, 10)
		buf = append(buf, '-')
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, '"')
	}
	return append(buf, `],"pushMessage":{"title":"t","content":"c"}}`...)
}
