package provider

import (
	"net"
	"net/http"
	"time"
)

// HTTPOptions tunes NewHTTPClient.
type HTTPOptions struct {
	Timeout         time.Duration // whole request; default 15s
	MaxConnsPerHost int           // pool size per provider host; default 128
}

// NewHTTPClient returns an http.Client tuned for many concurrent calls to one
// provider host: keep-alive, a connection pool as large as the worker
// concurrency, and timeouts on every phase.
func NewHTTPClient(o HTTPOptions) *http.Client {
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.MaxConnsPerHost <= 0 {
		o.MaxConnsPerHost = 128
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
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
	return &http.Client{Transport: tr, Timeout: o.Timeout}
}
