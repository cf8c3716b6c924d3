package provider

import (
	"net/http"
	"time"
)

// What provider_test cannot see from outside: the spares of a client made
// by NewHTTPClient with warm addresses.

func warmDialerOf(c *http.Client) *warmDialer {
	if wt, ok := c.Transport.(*warmTransport); ok {
		return wt.d
	}
	return nil
}

// Spares counts the spares c holds parked, and how many of them are still
// open (the provider has not closed them, as far as this side has seen).
func Spares(c *http.Client) (parked, open int) {
	d := warmDialerOf(c)
	if d == nil {
		return 0, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.addrs {
		for _, p := range s.parked {
			parked++
			if alive(p.c) {
				open++
			}
		}
	}
	return parked, open
}

// AgeSpares makes the spares c holds parked older by age, as if they had
// been parked that much longer (their parking times move back on the
// dialer's wall clock; the clock itself is not touched).
func AgeSpares(c *http.Client, age time.Duration) {
	d := warmDialerOf(c)
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.addrs {
		for i := range s.parked {
			s.parked[i].at = s.parked[i].at.Add(-age)
		}
	}
}
