package provider

import (
	"context"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/campaignd/campaignd/internal/clock"
)

// warmDialer keeps a few connections to each plain-HTTP provider address
// opened ahead of need (spares), and hands one out when the transport
// needs a new connection. A provider reads the first request of a new
// connection only once it has accepted the connection, which the client
// cannot see (over TLS the handshake shows it); a spare opened a while
// ago has been accepted, so a request on it reaches the provider as
// promptly as one on a reused connection, and the limiter need not count
// it late (Grant.Written, ratelimit's NewConnLate). make bench-apps
// measured 21 ms between the write and the provider's stamp on new
// connections with 100 apps starting at once.
type warmDialer struct {
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	spares int           // kept per address
	after  time.Duration // a spare is warm once parked this long
	maxAge time.Duration // older spares are closed (servers close idle connections)
	clk    clock.Clock   // ages the spares (the wall clock)

	mu      sync.Mutex
	addrs   map[string]*spareSet // the warm addresses ("host:port")
	closing bool
	renewal bool          // the renewing goroutine runs
	done    chan struct{} // closed by close
}

type spareSet struct {
	parked  []parkedConn // oldest first
	dialing int
}

type parkedConn struct {
	c  net.Conn
	at time.Time
}

// warmConn is a connection handed out warm (see WarmConn).
type warmConn struct{ net.Conn }

// WarmConn tells whether c (httptrace.GotConnInfo.Conn) was opened ahead
// of its first request long enough that the provider has accepted it.
func WarmConn(c net.Conn) bool {
	_, ok := c.(warmConn)
	return ok
}

func newWarmDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), spares int) *warmDialer {
	return &warmDialer{dial: dial, spares: spares, after: 100 * time.Millisecond, maxAge: 30 * time.Second, clk: clock.Real{},
		addrs: map[string]*spareSet{}, done: make(chan struct{})}
}

// warm makes rawURL's address warm when it is plain HTTP, and opens its
// spares.
func (d *warmDialer) warm(rawURL string) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	d.mu.Lock()
	if d.addrs[addr] == nil {
		d.addrs[addr] = &spareSet{}
	}
	renew := !d.renewal && !d.closing
	d.renewal = d.renewal || renew
	d.mu.Unlock()
	d.refill(addr)
	if renew {
		go d.renew()
	}
}

// renew replaces spares about to grow stale, every quarter of maxAge,
// until close: a deployment idle for a while still has warm spares for
// its next calls.
func (d *warmDialer) renew() {
	tk := time.NewTicker(d.maxAge / 4)
	defer tk.Stop()
	for {
		select {
		case <-d.done:
			return
		case <-tk.C:
		}
		var stale []net.Conn
		var addrs []string
		d.mu.Lock()
		for addr, s := range d.addrs {
			keep := s.parked[:0]
			for _, p := range s.parked {
				if d.clk.Now().Sub(p.at) > d.maxAge*3/4 {
					stale = append(stale, p.c)
				} else {
					keep = append(keep, p)
				}
			}
			s.parked = keep
			addrs = append(addrs, addr)
		}
		d.mu.Unlock()
		for _, c := range stale {
			c.Close()
		}
		for _, addr := range addrs {
			d.refill(addr)
		}
	}
}

// DialContext hands out the oldest live spare of a warm address (warm
// when parked long enough), opening another in its place; other
// addresses, and a warm one without spares, are dialled as usual.
func (d *warmDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network == "tcp" {
		if c, ok := d.take(addr); ok {
			d.refill(addr)
			return c, nil
		}
		d.refill(addr)
	}
	return d.dial(ctx, network, addr)
}

// take pops the oldest live spare of addr, closing the stale ones.
func (d *warmDialer) take(addr string) (net.Conn, bool) {
	for {
		d.mu.Lock()
		s := d.addrs[addr]
		if s == nil || len(s.parked) == 0 {
			d.mu.Unlock()
			return nil, false
		}
		p := s.parked[0]
		s.parked = s.parked[1:]
		d.mu.Unlock()
		age := d.clk.Now().Sub(p.at)
		if age > d.maxAge || !alive(p.c) {
			p.c.Close()
			continue
		}
		if age < d.after {
			return p.c, true
		}
		return warmConn{p.c}, true
	}
}

// refill opens spares for addr (a warm one) up to d.spares, in the
// background.
func (d *warmDialer) refill(addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.addrs[addr]
	if s == nil || d.closing {
		return
	}
	for ; len(s.parked)+s.dialing < d.spares; s.dialing++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := d.dial(ctx, "tcp", addr)
			cancel()
			d.mu.Lock()
			defer d.mu.Unlock()
			s.dialing--
			switch {
			case err != nil:
			case d.closing:
				c.Close()
			default:
				s.parked = append(s.parked, parkedConn{c, d.clk.Now()})
			}
		}()
	}
}

// close closes every spare; none are opened after it.
func (d *warmDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closing {
		close(d.done)
	}
	d.closing = true
	for _, s := range d.addrs {
		for _, p := range s.parked {
			p.c.Close()
		}
		s.parked = nil
	}
}
