package provider

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer starts a server answering 200 to everything (over TLS
// when tls), counting the connections it was opened.
func countingServer(t *testing.T, tls bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	opened := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, opened
}

// get sends a GET to url and tells whether it went on a new connection
// and whether that one was a warm spare.
func get(t *testing.T, c *http.Client, url string) (reused, warm bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused, warm = info.Reused, WarmConn(info.Conn) },
	}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return reused, warm
}

// A plain-HTTP provider gets spare connections opened ahead of need: the
// first request goes on one, warm (the provider accepted it long ago);
// spares the provider closed meanwhile are passed over, and a request
// then still goes through.
func TestSpareConnectionsToAPlainHTTPProvider(t *testing.T) {
	t.Parallel()
	srv, opened := countingServer(t, false)
	c := NewHTTPClient(HTTPOptions{Warm: []string{srv.URL + "/base"}, SpareConns: 2})
	t.Cleanup(c.CloseIdleConnections)
	for deadline := time.Now().Add(5 * time.Second); opened.Load() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d spare connections opened, want 2", opened.Load())
		}
	}
	time.Sleep(150 * time.Millisecond) // warm
	if reused, warm := get(t, c, srv.URL); reused || !warm {
		t.Fatalf("first request: reused %v, warm %v; want a warm spare", reused, warm)
	}
	if reused, _ := get(t, c, srv.URL); !reused {
		t.Fatal("second request did not reuse the idle connection")
	}

	srv.CloseClientConnections() // the provider drops every connection, spares included
	time.Sleep(50 * time.Millisecond)
	if reused, warm := get(t, c, srv.URL); reused || warm {
		t.Fatalf("after the provider closed the spares: reused %v, warm %v; want a fresh connection", reused, warm)
	}
}

// TLS providers get no spares: the handshake shows the provider accepted
// the connection.
func TestNoSparesOverTLS(t *testing.T) {
	t.Parallel()
	srv, opened := countingServer(t, true)
	c := NewHTTPClient(HTTPOptions{Warm: []string{srv.URL}, SpareConns: 2})
	t.Cleanup(c.CloseIdleConnections)
	time.Sleep(200 * time.Millisecond)
	if n := opened.Load(); n != 0 {
		t.Fatalf("%d connections opened to a TLS provider before any request", n)
	}
}
