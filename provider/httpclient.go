package provider

import (
	"cmp"
	"github.com/campaignd/campaignd/internal/optcheck"
	"net"
	"net/http"
	"time"
)

// HTTPOptions tunes NewHTTPClient.
type HTTPOptions struct {
	Timeout         time.Duration // whole request; default 15s
	MaxConnsPerHost int           // pool size per provider host; default 128
	// Warm lists provider base URLs; for the plain-HTTP ones, SpareConns
	// connections are kept open ahead of need (see warmDialer), so that a
	// call never waits for the provider to accept its connection.
	Warm       []string
	SpareConns int // per warm address; default 8
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o HTTPOptions) WithDefaults() HTTPOptions {
	o.Timeout = cmp.Or(o.Timeout, 15*time.Second)
	o.MaxConnsPerHost = cmp.Or(o.MaxConnsPerHost, 128)
	o.SpareConns = cmp.Or(o.SpareConns, 8)
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o HTTPOptions) validate() error {
	c := optcheck.New("provider: HTTPOptions")
	c.Positive(o, "Timeout", "MaxConnsPerHost", "SpareConns")
	return c.Err()
}

// NewHTTPClient returns an http.Client tuned for many concurrent calls to one
// provider host: keep-alive, a connection pool as large as the worker
// concurrency, spare connections to plain-HTTP providers, and timeouts on
// every phase. CloseIdleConnections closes the spares too.
//
// Options out of range are a caller's bug: it panics on them, naming the
// field.
func NewHTTPClient(o HTTPOptions) *http.Client {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		panic(err)
	}
	dial := (&net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
	}).DialContext
	var wd *warmDialer
	if len(o.Warm) > 0 {
		wd = newWarmDialer(dial, o.SpareConns)
		dial = wd.DialContext
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          o.MaxConnsPerHost * 2,
		MaxIdleConnsPerHost:   o.MaxConnsPerHost,
		MaxConnsPerHost:       o.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        16 << 10,
	}
	if wd == nil {
		return &http.Client{Transport: tr, Timeout: o.Timeout}
	}
	for _, u := range o.Warm {
		wd.warm(u)
	}
	return &http.Client{Transport: &warmTransport{tr, wd}, Timeout: o.Timeout}
}

// warmTransport closes its spare connections with its idle ones.
type warmTransport struct {
	*http.Transport
	d *warmDialer
}

// CloseIdleConnections closes the idle connections and the spares; no
// spares are opened after it (http.Client.CloseIdleConnections calls it).
func (t *warmTransport) CloseIdleConnections() {
	t.d.close()
	t.Transport.CloseIdleConnections()
}
