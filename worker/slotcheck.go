package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/sendwindow"
	"github.com/campaignd/campaignd/store"
)

// stateFresh is how long a campaign state read from Redis is trusted by
// the slot checks of this process. A pause or cancel stored before a read
// is seen by every call whose slot comes after it; one stored during the
// last stateFresh (plus one Redis round trip) may let a call start up to
// that much after it.
const stateFresh = 3 * time.Millisecond

// stateStale is how old a state may be for callers that find another
// caller already reading it: they do not queue behind that read (at high
// rates a convoy of due calls would all be late for their slots).
const stateStale = 50 * time.Millisecond

// slotReadBudget bounds the read of a campaign's state at a call's slot:
// a Redis that refuses connections (a restart) fails it at once, a hung
// one after this long. A read that is only slow (a loaded machine) still
// decides: the limiter handles the call's lateness (it moves the schedule
// on, or books another slot).
const slotReadBudget = 250 * time.Millisecond

// errExpired says a call's slot came after its campaign's expires_at: its
// targets are dropped, nothing is sent.
var errExpired = errors.New("campaign expired")

// stateCache keeps each campaign's state, read at most about once per
// stateFresh by this process however many of its calls are due, so that
// the decision at the slot costs nothing that shows at high rates.
type stateCache struct {
	st  *store.Store
	clk clock.Clock

	mu sync.Mutex
	m  map[string]*stateEntry
}

type stateEntry struct {
	state   campaigns.State
	at      time.Time
	reading bool // a read from Redis is on its way
}

func newStateCache(st *store.Store, clk clock.Clock) *stateCache {
	return &stateCache{st: st, clk: clk, m: map[string]*stateEntry{}}
}

const stateCacheSize = 4096

func (c *stateCache) get(ctx context.Context, id string) (campaigns.State, error) {
	now := c.clk.Now()
	c.mu.Lock()
	e := c.m[id]
	if e == nil {
		if len(c.m) >= stateCacheSize {
			clear(c.m)
		}
		e = &stateEntry{}
		c.m[id] = e
	}
	age := now.Sub(e.at)
	switch {
	case e.state != "" && age < stateFresh:
		st := e.state
		c.mu.Unlock()
		return st, nil
	case e.state != "" && e.reading && age < stateStale:
		st := e.state
		c.mu.Unlock()
		return st, nil
	}
	e.reading = true
	c.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, slotReadBudget) // only when Redis is read
	st, err := c.st.State(rctx, id)
	cancel()
	c.mu.Lock()
	e.reading = false
	if err == nil {
		e.state, e.at = st, c.clk.Now()
	}
	c.mu.Unlock()
	return st, err
}

// forget drops what this process knows of a campaign's state (it changed
// it itself).
func (c *stateCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// slotCheck is what the limiter asks at each call's slot of campaign c:
// nothing is sent once c has expired, while it is paused, after it has
// ended (cancelled), or outside its send window.
func (l *ledger) slotCheck(c *campaigns.Campaign) func(context.Context) error {
	w, windowed := c.Window(time.UTC) // a stored campaign names its window's zone
	return l.slotCheckIn(c, w, windowed, false)
}

// zoneCheck is slotCheck for a batch of a local-time campaign, whose
// targets are in zone (an IANA name; "" or unknown: the window's zone).
// Its window closed refuses the call, marked zoned: the batch waits for
// its zone apart, and the campaign goes on (it is made scheduled only when
// every batch left waits, see sender.deferZoned).
func (l *ledger) zoneCheck(c *campaigns.Campaign, zone string) func(context.Context) error {
	w, windowed := l.zoneWindow(c, zone)
	return l.slotCheckIn(c, w, windowed, true)
}

// zoneWindow is local-time campaign c's window in zone ("" or unknown:
// the window's own zone).
func (l *ledger) zoneWindow(c *campaigns.Campaign, zone string) (sendwindow.Window, bool) {
	if loc, ok := l.zones.Load(zone); ok {
		return c.WindowIn(loc)
	}
	return c.Window(time.UTC) // a stored campaign names its window's zone
}

// slotCheckIn is the check at the slot with window w (windowed: there is
// one); zoned: w is a local-time batch's zone's (see zoneCheck).
func (l *ledger) slotCheckIn(c *campaigns.Campaign, w sendwindow.Window, windowed, zoned bool) func(context.Context) error {
	return func(ctx context.Context) error {
		now := l.clock.Now()
		if c.ExpiresAt != nil && !now.Before(*c.ExpiresAt) {
			return errExpired
		}
		st, err := l.states.get(ctx, c.ID)
		if err != nil {
			// Redis does not answer in time: the slot is given up,
			// nothing is sent, and the batch comes back (a call sent
			// late could crowd the provider's window).
			return &retryLater{in: 500 * time.Millisecond, reason: "campaign state unreadable at the slot: " + err.Error()}
		}
		switch {
		case st == campaigns.StatePaused:
			return &retryLater{in: 2 * time.Second, reason: "campaign paused"}
		case st.Final():
			return errCampaignOver
		case windowed && !w.Open(now):
			// The window closed: the slot goes to the next caller, the
			// batch comes back at the opening, and the campaign waits
			// as scheduled until then.
			opens := w.NextOpen(now)
			if st != campaigns.StateScheduled && !zoned {
				l.windowClosed(ctx, c.ID, opens)
			}
			return &retryLater{in: max(opens.Sub(now)-windowLead, 50*time.Millisecond), opens: opens, zoned: zoned,
				reason: "send window closed until " + opens.UTC().Format(time.RFC3339)}
		case windowed && st == campaigns.StateScheduled:
			l.windowOpened(ctx, c.ID) // its window is open again: it runs
		}
		return nil
	}
}

// windowClosed makes a running campaign whose send window closed
// scheduled, starting at opens, and says so (once: the transition is
// atomic, other callers find it made).
func (l *ledger) windowClosed(ctx context.Context, id string, opens time.Time) {
	st, changed, err := l.store.Transition(ctx, id, campaigns.StateScheduled, campaigns.StateRunning)
	l.states.forget(id)
	if err != nil || !changed {
		return
	}
	if st2, moved, err := l.store.SetStartAt(ctx, id, opens, 0); err == nil && moved {
		st = st2
	}
	l.log.Info().Str("campaign", id).Time("opens", opens).Msg("send window closed: the campaign waits for it to open")
	l.publish(ctx, st)
}

// windowOpened makes a campaign waiting for its send window running.
func (l *ledger) windowOpened(ctx context.Context, id string) {
	if _, err := l.change(ctx, id, campaigns.StateRunning, campaigns.StateScheduled); err == nil {
		l.log.Info().Str("campaign", id).Msg("send window open: the campaign runs")
	}
}
