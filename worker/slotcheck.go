package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/store"
)

// stateFresh is how long a campaign state read from Redis is trusted by
// the slot checks of this process. A pause or cancel stored before a read
// is seen by every call whose slot comes after it; one stored during the
// last stateFresh may let a call start up to that much after it.
const stateFresh = 2 * time.Millisecond

// errExpired says a call's slot came after its campaign's expires_at: its
// targets are dropped, nothing is sent.
var errExpired = errors.New("campaign expired")

// stateCache keeps each campaign's state, read at most once per stateFresh
// by this process however many of its calls are due, so that the decision
// at the slot costs nothing that shows at high rates.
type stateCache struct {
	st  *store.Store
	clk clock.Clock

	mu sync.Mutex
	m  map[string]*stateEntry
}

type stateEntry struct {
	mu    sync.Mutex // one read at a time per campaign
	state campaigns.State
	at    time.Time
}

func newStateCache(st *store.Store, clk clock.Clock) *stateCache {
	if clk == nil {
		clk = clock.Real{}
	}
	return &stateCache{st: st, clk: clk, m: map[string]*stateEntry{}}
}

const stateCacheSize = 4096

func (c *stateCache) get(ctx context.Context, id string) (campaigns.State, error) {
	c.mu.Lock()
	e := c.m[id]
	if e == nil {
		if len(c.m) >= stateCacheSize {
			clear(c.m)
		}
		e = &stateEntry{}
		c.m[id] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.state != "" && now.Sub(e.at) < stateFresh {
		return e.state, nil
	}
	st, err := c.st.State(ctx, id)
	if err != nil {
		return "", err
	}
	e.state, e.at = st, time.Now()
	return st, nil
}

// forget drops what this process knows of a campaign's state (it changed
// it itself).
func (c *stateCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// slotCheck is what the limiter asks at each call's slot of campaign c:
// nothing is sent once c has expired, while it is paused, or after it has
// ended (cancelled).
func (s *Service) slotCheck(c *campaigns.Campaign) func(context.Context) error {
	return func(ctx context.Context) error {
		if c.ExpiresAt != nil && !s.o.Clock.Now().Before(*c.ExpiresAt) {
			return errExpired
		}
		st, err := s.states.get(ctx, c.ID)
		if err != nil {
			return err
		}
		switch {
		case st == campaigns.StatePaused:
			return &retryLater{in: 2 * time.Second, reason: "campaign paused"}
		case st.Final():
			return errCampaignOver
		}
		return nil
	}
}
