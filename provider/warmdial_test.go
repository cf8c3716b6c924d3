package provider_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
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
	info := do(t, c, url)
	return info.Reused, provider.WarmConn(info.Conn)
}

// do sends a GET to url and returns the connection it went on.
func do(t *testing.T, c *http.Client, url string) httptrace.GotConnInfo {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got httptrace.GotConnInfo
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { got = info },
	}))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return got
}

// A plain-HTTP provider gets spare connections opened ahead of need: the
// first request goes on one, warm (the provider accepted it long ago);
// spares the provider closed meanwhile are passed over, and a request
// then still goes through.
func TestSpareConnectionsToAPlainHTTPProvider(t *testing.T) {
	t.Parallel()
	srv, opened := countingServer(t, false)
	c := provider.NewHTTPClient(provider.HTTPOptions{Warm: []string{srv.URL + "/base"}, SpareConns: 2})
	t.Cleanup(c.CloseIdleConnections)
	testenv.WaitFor(t, 5*time.Second, "2 spare connections opened and parked", func() (string, bool) {
		parked, _ := provider.Spares(c)
		return fmt.Sprintf("%d opened, %d parked", opened.Load(), parked), opened.Load() >= 2 && parked == 2
	})
	// A spare is warm once parked 100 ms: these were parked 150 ms more.
	provider.AgeSpares(c, 150*time.Millisecond)
	if reused, warm := get(t, c, srv.URL); reused || !warm {
		t.Fatalf("first request: reused %v, warm %v; want a warm spare", reused, warm)
	}
	second := do(t, c, srv.URL)
	if !second.Reused {
		t.Fatal("second request did not reuse the idle connection")
	}
	// The spare the first request took is replaced: a third connection,
	// parked (and so among those the provider drops next).
	testenv.WaitFor(t, 5*time.Second, "the spare taken to be replaced", func() (string, bool) {
		parked, _ := provider.Spares(c)
		return fmt.Sprintf("%d opened, %d parked", opened.Load(), parked), opened.Load() >= 3 && parked == 2
	})

	srv.CloseClientConnections() // the provider drops every connection, spares included
	// The closes reach the client's side: its spares see end of file, and
	// the transport closes its idle connection (a deadline can no longer be
	// set on it).
	testenv.WaitUntil(t, 5*time.Second, "the client to see the provider's closes", func() bool {
		_, open := provider.Spares(c)
		return open == 0 && second.Conn.SetReadDeadline(time.Time{}) != nil
	})
	if reused, warm := get(t, c, srv.URL); reused || warm {
		t.Fatalf("after the provider closed the spares: reused %v, warm %v; want a fresh connection", reused, warm)
	}
}

// TLS providers get no spares: the handshake shows the provider accepted
// the connection.
func TestNoSparesOverTLS(t *testing.T) {
	t.Parallel()
	srv, opened := countingServer(t, true)
	c := provider.NewHTTPClient(provider.HTTPOptions{Warm: []string{srv.URL}, SpareConns: 2})
	t.Cleanup(c.CloseIdleConnections)
	time.Sleep(200 * time.Millisecond) // a window for spares to be opened (they must not be)
	if n := opened.Load(); n != 0 {
		t.Fatalf("%d connections opened to a TLS provider before any request", n)
	}
}
