package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/forecast"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/ratelimit"
	"github.com/campaignd/campaignd/sendwindow"
	"github.com/campaignd/campaignd/statusq"
	"github.com/campaignd/campaignd/store"
	"github.com/campaignd/campaignd/worker"
)

// forecaster answers campaigns.forecast and POST /api/forecast
// (docs/interface.md §7) and the ETA of the campaigns sending: it reads
// what decides when calls go (the app's limits as the limiter paces them,
// the campaigns already queued, the task caps) and runs the model of
// package forecast on it. It stores, queues and sends nothing.
type forecaster struct {
	cfg   config.Config
	store *store.Store
	lim   *ratelimit.Limiter
	tasks *taskQueues
	aud   *intake.AudienceStore
	clk   clock.Clock
	// count lets one audience be counted at a time (plan memory is the
	// planner's; a forecast takes at most as much again).
	count chan struct{}

	mu    sync.Mutex
	comps compsRead          // every app's queued campaigns, read at most once a second
	metas map[string]*meta   // campaign → what the model reads of it (it never changes)
	zones sendwindow.Zones   // local-time targets' zones, loaded once
	etas  map[string]etaRead // campaign → its outlook, computed at most once a second
}

// meta is what the model reads of a stored campaign: the campaign
// without its inline targets, and how many it had. A campaign never
// changes once stored, so it is read once (not its whole JSON at each
// status event).
type meta struct {
	c      *campaigns.Campaign
	inline int64
}

// maxCached bounds the campaigns whose meta and outlook are kept.
const maxCached = 10_000

// compsRead is an app's queued campaigns as read at a time.
type compsRead struct {
	at   time.Time
	list []competitor
}

// etaRead is a campaign's outlook as computed at a time.
type etaRead struct {
	at time.Time
	fc *campaigns.Forecast
}

// refreshEvery is how often a campaign's ETA, and an app's queue, are
// read again at most.
const refreshEvery = time.Second

func newForecaster(cfg config.Config, st *store.Store, lim *ratelimit.Limiter, tasks *taskQueues, aud *intake.AudienceStore, clk clock.Clock) *forecaster {
	return &forecaster{cfg: cfg, store: st, lim: lim, tasks: tasks, aud: aud, clk: clk, count: make(chan struct{}, 1),
		metas: map[string]*meta{}, etas: map[string]etaRead{}}
}

// maxCompetitors bounds how many queued campaigns of each state a
// forecast reads (oldest first).
const maxCompetitors = 500

// defaultPlanMemory is the audience count's memory when worker.plan_memory
// is unset (the planner's default).
const defaultPlanMemory = 64 << 20

// Forecast answers for the campaign JSON data. given, when counted, is
// its audience's count made by the caller (campaignctl counts a local
// file), instead of reading the object. An
// error is campaignd's (Redis, NATS), not the campaign's.
func (f *forecaster) Forecast(ctx context.Context, data []byte, given campaigns.Counted) (campaigns.Forecast, error) {
	now := f.clk.Now()
	c, errs := campaigns.Check(data, envFor(f.cfg, now))
	if len(errs) > 0 {
		fc := campaigns.Forecast{Status: string(campaigns.StateRejected), Errors: errs}
		if id, _ := campaigns.PeekID(data); id != nil {
			fc.ID = *id
		}
		return fc, nil
	}
	fc := campaigns.Forecast{ID: c.ID, App: c.App, Kind: c.Kind, Status: campaigns.ForecastOK,
		Calls: map[string]int64{}, Ahead: campaigns.Ahead{Calls: map[string]int64{}}, Rates: map[string]float64{}}
	targets, zones, err := f.targets(ctx, c, given)
	if err != nil {
		var fe *fieldFailure
		if errors.As(err, &fe) {
			return campaigns.Forecast{ID: c.ID, Status: string(campaigns.StateRejected),
				Errors: campaigns.FieldErrors{{Field: fe.field, Message: fe.msg}}}, nil
		}
		return fc, err
	}
	fc.TargetsTotal = targets
	app := f.cfg.Apps[c.App]
	calls := worker.Calls(c, app.Provider, targets)
	for g, n := range calls {
		fc.Calls[string(g)] = n
	}
	start, _, _ := c.StartTime(appLocation(f.cfg, c.App), now)
	if opening := c.FirstOpening(appLocation(f.cfg, c.App), start); opening.After(start) {
		fc.Notes = append(fc.Notes, "waits for its send window to open at "+clockTime(opening, now))
		start = opening
	} else if start.After(now) {
		fc.Notes = append(fc.Notes, "starts at "+clockTime(start, now)+" (start_date)")
	}
	if c.Kind == campaigns.KindLabelPush || c.Kind == campaigns.KindBroadcast {
		return f.taskForecast(ctx, c, fc, start)
	}
	m := me{id: c.ID, rank: c.Priority.Rank(), rateLimit: c.RateLimit, start: start, targets: targets, calls: calls,
		gate: gateOf(c, appLocation(f.cfg, c.App)), parts: f.partsOf(c, zones)}
	if m.parts != nil {
		m.gate = nil                  // each zone has its own
		m.calls = partsCalls(m.parts) // each zone's batches are its own
		clear(fc.Calls)
		for g, n := range m.calls {
			fc.Calls[string(g)] = n
		}
	}
	if err := f.model(ctx, c.App, m, c.ExpiresAt, &fc, now); err != nil {
		return fc, err
	}
	fc.Notes = append(fc.Notes, zoneNotes(m.parts, start, now)...)
	return fc, nil
}

// zoneNotes say, of a local-time campaign's zones (parts), how many wait
// for their window at start, and when the next of them opens.
func zoneNotes(parts []part, start, now time.Time) []string {
	if len(parts) == 0 {
		return nil
	}
	closed := 0
	var next time.Time
	for _, p := range parts {
		if open, change := p.gate(start); !open {
			closed++
			if next.IsZero() || change.Before(next) {
				next = change
			}
		}
	}
	note := "local time: 1 zone"
	if len(parts) > 1 {
		note = fmt.Sprintf("local time: %d zones", len(parts))
	}
	if closed > 0 {
		note += fmt.Sprintf(", %d waiting for their window (the next opens at %s)", closed, clockTime(next, now))
	}
	return []string{note}
}

// fieldFailure is a campaign problem found only by reading (a missing
// audience): the forecast answers it as intake's plan would fail it.
type fieldFailure struct{ field, msg string }

func (e *fieldFailure) Error() string { return e.field + ": " + e.msg }

// targets counts c's distinct valid targets: inline, or its audience
// object read as a plan would (or given counted); for a local-time
// campaign also by zone (its window's zone for the targets without one).
func (f *forecaster) targets(ctx context.Context, c *campaigns.Campaign, given campaigns.Counted) (int64, map[string]int64, error) {
	if c.Audience == nil {
		if c.LocalTime() {
			zones := map[string]int64{}
			seen := make(map[string]struct{}, len(c.Targets))
			for _, t := range c.Targets {
				id, zone, given := campaigns.SplitZone(t)
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
				if !given {
					zone = c.SendWindow.Timezone
				}
				zones[zone]++
			}
			return int64(len(seen)), zones, nil
		}
		seen := make(map[string]struct{}, len(c.Targets))
		for _, t := range c.Targets {
			seen[t] = struct{}{}
		}
		return int64(len(seen)), nil, nil
	}
	if given.Targets >= 0 {
		return given.Targets, windowZone(c, given.Zones), nil
	}
	select {
	case f.count <- struct{}{}:
		defer func() { <-f.count }()
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	size, _, err := f.aud.Stat(ctx, c.Audience.Bucket, c.Audience.Object)
	if errors.Is(err, campaigns.ErrAudienceNotFound) || errors.Is(err, campaigns.ErrAudienceDenied) {
		return 0, nil, &fieldFailure{field: "audience", msg: strings.TrimPrefix(err.Error(), "intake: ")}
	}
	if err != nil {
		return 0, nil, err
	}
	mem := int64(f.cfg.Worker.PlanMemory)
	if mem <= 0 {
		mem = defaultPlanMemory
	}
	open := func(ctx context.Context) (io.ReadCloser, error) {
		return f.aud.Open(ctx, c.Audience.Bucket, c.Audience.Object)
	}
	count, err := worker.CountAudience(ctx, c, open, size, mem)
	if err != nil {
		return 0, nil, fmt.Errorf("forecast: count audience %s/%s: %w", c.Audience.Bucket, c.Audience.Object, err)
	}
	return count.Unique, windowZone(c, count.Zones), nil
}

// zonesLeft is a stored local-time campaign's targets left by zone
// (store.ZonesLeft, scaled to left, what its status says it has left);
// nil when its plan has not counted them yet, or they cannot be read.
func (f *forecaster) zonesLeft(ctx context.Context, c *campaigns.Campaign, left int64) []part {
	zones, err := f.store.ZonesLeft(ctx, c.ID)
	if err != nil || len(zones) == 0 {
		return nil
	}
	var sum int64
	for _, n := range zones {
		sum += n
	}
	if sum <= 0 {
		return nil
	}
	for z, n := range zones {
		zones[z] = int64(math.Round(float64(n) * float64(left) / float64(sum)))
	}
	return f.partsOf(c, zones)
}

// windowZone is zones with the targets counted without a zone ("") in
// the window's own.
func windowZone(c *campaigns.Campaign, zones map[string]int64) map[string]int64 {
	if n, ok := zones[""]; ok && c.SendWindow != nil {
		delete(zones, "")
		zones[c.SendWindow.Timezone] += n
	}
	return zones
}

// part is some of a local-time campaign's targets, those of one zone:
// their calls per group, and the zone's window.
type part struct {
	calls map[provider.Group]int64
	gate  func(time.Time) (bool, time.Time)
}

// partsOf is a local-time campaign's targets by zone (zones: zone →
// targets), each with its zone's window; nil for other campaigns. An
// unknown zone (a count given by the caller) is the window's.
func (f *forecaster) partsOf(c *campaigns.Campaign, zones map[string]int64) []part {
	if !c.LocalTime() || len(zones) == 0 {
		return nil
	}
	var out []part
	for _, z := range slices.Sorted(maps.Keys(zones)) {
		w, ok := c.Window(appLocation(f.cfg, c.App))
		if loc, known := f.zones.Load(z); known {
			w, ok = c.WindowIn(loc)
		}
		if !ok || zones[z] <= 0 {
			continue
		}
		calls := worker.Calls(c, f.cfg.Apps[c.App].Provider, zones[z])
		out = append(out, part{calls: calls, gate: windowGate(w)})
	}
	return out
}

// me is the campaign a model is run for.
type me struct {
	id        string
	rank      int
	rateLimit float64
	start     time.Time
	held      bool
	targets   int64 // its targets left
	calls     map[provider.Group]int64
	gate      func(time.Time) (bool, time.Time) // its send window (nil: none)
	parts     []part                            // local time: its targets by zone (gate not used)
}

// competitor is a queued campaign of the same app.
type competitor struct {
	id    string
	app   string
	state campaigns.State
	rank  int
	cap   float64
	from  time.Time
	calls map[provider.Group]int64
	gate  func(time.Time) (bool, time.Time)
	parts []part // local time: its targets left by zone
}

// partsCalls is the calls of a local-time campaign's zones together
// (each zone's batches are its own: 3 zones of 50 targets are 3 calls).
func partsCalls(parts []part) map[provider.Group]int64 {
	out := map[provider.Group]int64{}
	for _, p := range parts {
		for g, n := range p.calls {
			out[g] += n
		}
	}
	return out
}

// flowParts are parts as the model's, for group g (nil without parts).
func flowParts(parts []part, g provider.Group) []forecast.Part {
	if len(parts) == 0 {
		return nil
	}
	out := make([]forecast.Part, 0, len(parts))
	for _, p := range parts {
		out = append(out, forecast.Part{Calls: float64(p.calls[g]), Gate: p.gate})
	}
	return out
}

// gateOf is c's send window as the model's gate, or nil.
func gateOf(c *campaigns.Campaign, appLoc *time.Location) func(time.Time) (bool, time.Time) {
	w, ok := c.Window(appLoc)
	if !ok {
		return nil
	}
	return windowGate(w)
}

// windowGate is a send window as the model's gate.
func windowGate(w sendwindow.Window) func(time.Time) (bool, time.Time) {
	return func(t time.Time) (bool, time.Time) {
		if w.Open(t) {
			return true, w.NextClose(t)
		}
		return false, w.NextOpen(t)
	}
}

// model runs the model for m on each group it spends and fills fc's
// start, end, ahead, rates, dropped and notes.
func (f *forecaster) model(ctx context.Context, app string, m me, expires *time.Time, fc *campaigns.Forecast, now time.Time) error {
	a := f.cfg.Apps[app]
	others, err := f.competitors(ctx, app, m.id, now)
	if err != nil {
		return err
	}
	groups := slices.Sorted(func(yield func(provider.Group) bool) {
		for g, n := range m.calls {
			if n > 0 && !yield(g) {
				return
			}
		}
	})
	var until time.Time
	if expires != nil {
		until = *expires
	}
	var first, last time.Time
	doneShare := 1.0
	finished := true
	aheadIDs := map[string]bool{}
	for _, g := range groups {
		limit := a.Limit(g)
		var effective float64
		if a.Adapts() {
			ads, err := f.lim.Effective(ctx, ratelimit.Rate{Key: ratelimit.GroupKey(app, g), PerSecond: limit, Adaptive: true})
			if err != nil {
				return fmt.Errorf("forecast: %w", err)
			}
			effective = ads[0].Effective
			if effective < limit {
				fc.Notes = append(fc.Notes, fmt.Sprintf("%s runs at %s/s of %s/s: the provider refused calls for rate", g, num(effective), num(limit)))
			}
		}
		pace := f.lim.Pace(limit, effective)
		flows := []forecast.Flow{{ID: m.id, Rank: m.rank, Calls: float64(m.calls[g]), Cap: f.lim.Pace(m.rateLimit, 0), From: m.start, Held: m.held, Gate: m.gate,
			Parts: flowParts(m.parts, g)}}
		var rivals []competitor // not paused, of its priority or higher
		for _, o := range others {
			n := o.calls[g]
			if n <= 0 {
				continue
			}
			flows = append(flows, forecast.Flow{ID: o.id, Rank: o.rank, Calls: float64(n), Cap: f.lim.Pace(o.cap, 0),
				From: o.from, Held: o.state == campaigns.StatePaused, Gate: o.gate, Parts: flowParts(o.parts, g)})
			if o.state != campaigns.StatePaused && o.rank <= m.rank {
				rivals = append(rivals, o)
			}
		}
		if pace <= 0 { // no limit on the group: as fast as it is sent
			first, last = earliest(first, m.start), latest(last, m.start)
			continue
		}
		r := forecast.Run(forecast.Options{Now: now, Pace: pace, Until: until}, flows, m.id)
		// What goes before it or shares its rate: the campaigns of its
		// priority or higher that start before it is done; and the
		// paused ones, which would share it when resumed.
		end := r.Last
		if end.IsZero() {
			end = latest(now, m.start).Add(24 * time.Hour)
		}
		higher, same, held := 0, 0, 0
		for _, o := range rivals {
			if o.from.After(end) {
				continue
			}
			if o.rank < m.rank {
				higher++
			} else {
				same++
			}
			aheadIDs[o.id] = true
			fc.Ahead.Calls[string(g)] += o.calls[g]
		}
		for _, o := range others {
			if o.calls[g] > 0 && o.state == campaigns.StatePaused && o.rank <= m.rank {
				held++
			}
		}
		if r.First.IsZero() {
			finished = false
			continue
		}
		fc.Rates[string(g)] = math.Round(r.Rate*1000) / 1000
		first = earliest(first, r.First)
		if r.Finished() {
			last = latest(last, r.Last)
		} else {
			finished = false
		}
		if m.calls[g] > 0 {
			doneShare = math.Min(doneShare, r.DoneBy/float64(m.calls[g]))
		}
		if higher > 0 {
			fc.Notes = append(fc.Notes, fmt.Sprintf("waits on %s for %s of higher priority", g, campaignsWord(higher)))
		}
		if same > 0 {
			fc.Notes = append(fc.Notes, fmt.Sprintf("shares %s with %s of the same priority", g, campaignsWord(same)))
		}
		if held > 0 {
			fc.Notes = append(fc.Notes, fmt.Sprintf("%s paused on %s would share it when resumed", campaignsWord(held), g))
		}
		if m.rateLimit > 0 && f.lim.Pace(m.rateLimit, 0) < pace {
			fc.Notes = append(fc.Notes, fmt.Sprintf("held to its rate_limit: %s calls/s at most", num(f.lim.Pace(m.rateLimit, 0))))
		}
	}
	fc.Ahead.Campaigns = len(aheadIDs)
	if !first.IsZero() {
		fc.StartAt = utc(first)
	}
	if finished && !last.IsZero() {
		fc.DoneAt = utc(last)
	}
	if m.gate != nil && !first.IsZero() {
		if _, closes := m.gate(first); !closes.IsZero() && (fc.DoneAt == nil || fc.DoneAt.After(closes)) {
			fc.Notes = append(fc.Notes, "its send window closes at "+clockTime(closes, now)+": it waits for the next opening")
		}
	}
	if expires != nil && doneShare < 1 {
		fc.Dropped = m.targets - int64(math.Floor(doneShare*float64(m.targets)))
		fc.Notes = append(fc.Notes, fmt.Sprintf("%s targets would miss expires_at (%s)", thousands(fc.Dropped), clockTime(*expires, now)))
	}
	if m.held {
		fc.Notes = append(fc.Notes, "paused: nothing goes until it is resumed")
	}
	return nil
}

// competitors are the running, scheduled and paused campaigns of app
// other than id, with the calls they have left per group.
func (f *forecaster) competitors(ctx context.Context, app, id string, now time.Time) ([]competitor, error) {
	f.mu.Lock()
	r := f.comps
	f.mu.Unlock()
	if r.at.IsZero() || now.Sub(r.at) >= refreshEvery || now.Before(r.at) {
		list, err := f.readCompetitors(ctx, now)
		if err != nil {
			return nil, err
		}
		r = compsRead{at: now, list: list}
		f.mu.Lock()
		f.comps = r
		f.mu.Unlock()
	}
	var out []competitor
	for _, c := range r.list {
		if c.app == app && c.id != id {
			out = append(out, c)
		}
	}
	return out, nil
}

// readCompetitors reads the running, scheduled and paused campaigns
// (task kinds aside: their one call is the task queue's) from the store:
// their progress, and their meta when not known yet.
func (f *forecaster) readCompetitors(ctx context.Context, now time.Time) ([]competitor, error) {
	var out []competitor
	for _, state := range []campaigns.State{campaigns.StateRunning, campaigns.StateScheduled, campaigns.StatePaused} {
		ids, err := f.store.InState(ctx, state, maxCompetitors)
		if err != nil {
			return nil, fmt.Errorf("forecast: %w", err)
		}
		for _, oid := range ids {
			m, err := f.meta(ctx, oid)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("forecast: %w", err)
			}
			c := m.c
			app, ok := f.cfg.Apps[c.App]
			if !ok || c.Kind == campaigns.KindLabelPush || c.Kind == campaigns.KindBroadcast {
				continue
			}
			st, err := f.store.Status(ctx, oid)
			if err != nil {
				return nil, fmt.Errorf("forecast: %w", err)
			}
			from := now
			if st.StartAt != nil && st.StartAt.After(now) {
				from = *st.StartAt
			}
			left := remainingTargets(m, st)
			o := competitor{id: oid, app: c.App, state: st.Status, rank: c.Priority.Rank(), cap: c.RateLimit, from: from,
				calls: worker.Calls(c, app.Provider, left), gate: gateOf(c, appLocation(f.cfg, c.App))}
			if c.LocalTime() {
				if o.parts = f.zonesLeft(ctx, c, left); o.parts != nil {
					o.gate, o.calls = nil, partsCalls(o.parts)
				}
			}
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, nil
}

// meta reads a stored campaign's meta once.
func (f *forecaster) meta(ctx context.Context, id string) (*meta, error) {
	f.mu.Lock()
	m, ok := f.metas[id]
	f.mu.Unlock()
	if ok {
		return m, nil
	}
	c, err := f.store.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	m = metaOf(c)
	f.mu.Lock()
	if len(f.metas) >= maxCached {
		clear(f.metas)
	}
	f.metas[id] = m
	f.mu.Unlock()
	return m, nil
}

// metaOf keeps of c what the model reads.
func metaOf(c *campaigns.Campaign) *meta {
	lean := *c
	lean.Targets = nil
	return &meta{c: &lean, inline: int64(len(c.Targets))}
}

// Outlook is a stored campaign's forecast at the current queue and
// limits (its end in DoneAt, its rates, why it waits), computed at most
// once a second; nil when nothing can be said: the campaign is final or
// unknown to the model. A paused campaign has no DoneAt.
func (f *forecaster) Outlook(ctx context.Context, c *campaigns.Campaign, st campaigns.Status) *campaigns.Forecast {
	switch st.Status {
	case campaigns.StateScheduled, campaigns.StateRunning, campaigns.StatePaused:
	default:
		f.forget(st.ID)
		return nil
	}
	app, ok := f.cfg.Apps[c.App]
	if !ok {
		return nil
	}
	now := f.clk.Now()
	f.mu.Lock()
	r, ok := f.etas[st.ID]
	f.mu.Unlock()
	if ok && now.Sub(r.at) < refreshEvery && !now.Before(r.at) && r.fc.Status == string(st.Status) {
		return r.fc
	}
	fc := &campaigns.Forecast{ID: c.ID, App: c.App, Kind: c.Kind, Status: string(st.Status),
		Calls: map[string]int64{}, Ahead: campaigns.Ahead{Calls: map[string]int64{}}, Rates: map[string]float64{}}
	switch {
	case c.Kind == campaigns.KindLabelPush || c.Kind == campaigns.KindBroadcast:
		// The dispatcher keeps a waiting task's start_at at its estimated
		// creation, the task's one call.
		if st.Status == campaigns.StateScheduled && st.StartAt != nil {
			fc.StartAt, fc.DoneAt = st.StartAt, st.StartAt
		}
	default:
		kept, err := f.meta(ctx, c.ID) // the inline targets' count, kept
		if err != nil {
			kept = metaOf(c)
		}
		left := remainingTargets(kept, st)
		calls := worker.Calls(c, app.Provider, left)
		for g, n := range calls {
			fc.Calls[string(g)] = n
		}
		start := now
		if st.StartAt != nil && st.StartAt.After(now) {
			start = *st.StartAt
		}
		m := me{id: c.ID, rank: c.Priority.Rank(), rateLimit: c.RateLimit, start: start, held: st.Status == campaigns.StatePaused,
			targets: left, calls: calls, gate: gateOf(c, appLocation(f.cfg, c.App))}
		if c.LocalTime() {
			if m.parts = f.zonesLeft(ctx, c, left); m.parts != nil {
				m.gate, m.calls = nil, partsCalls(m.parts)
				clear(fc.Calls)
				for g, n := range m.calls {
					fc.Calls[string(g)] = n
				}
			}
		}
		if err := f.model(ctx, c.App, m, c.ExpiresAt, fc, now); err != nil {
			return nil
		}
		fc.Notes = append(fc.Notes, zoneNotes(m.parts, now, now)...) // its zones as they are now
	}
	f.mu.Lock()
	if len(f.etas) >= maxCached {
		clear(f.etas)
	}
	f.etas[st.ID] = etaRead{at: now, fc: fc}
	f.mu.Unlock()
	return fc
}

// Cached is the last outlook computed for a campaign, however old (nil:
// none).
func (f *forecaster) Cached(id string) *campaigns.Forecast {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.etas[id].fc
}

// forget drops what is kept of a campaign (it is final).
func (f *forecaster) forget(id string) {
	f.mu.Lock()
	delete(f.etas, id)
	delete(f.metas, id)
	f.mu.Unlock()
}

// etaSink adds the ETA to the status events of campaigns not final
// before they are published (in the status queue's goroutines: sending
// never waits for it), and drops those of campaigns that have ended
// since they were queued.
type etaSink struct {
	next  statusq.Sink
	f     *forecaster
	store *store.Store
}

// etaBudget bounds the ETA's reads for one event: a slow Redis delays
// the event by at most this, and it goes without an ETA.
const etaBudget = 500 * time.Millisecond

func (s etaSink) Publish(ctx context.Context, st campaigns.Status) error {
	if st.Status.Final() {
		s.f.forget(st.ID)
	} else if st.Status == campaigns.StateScheduled || st.Status == campaigns.StateRunning || st.Status == campaigns.StatePaused {
		ectx, cancel := context.WithTimeout(ctx, etaBudget)
		// An event that waited (the status stream without a leader) for a
		// campaign that has ended since is dropped: published now, it
		// could land after the final event, which another process
		// publishes, and a reader of the last event would see the campaign
		// running again. Asked at each attempt.
		if cur, err := s.store.State(ectx, st.ID); err == nil && cur.Final() {
			cancel()
			return nil
		}
		if m, err := s.f.meta(ectx, st.ID); err == nil {
			if fc := s.f.Outlook(ectx, m.c, st); fc != nil {
				st.ETA = fc.DoneAt
			}
		}
		cancel()
	}
	return s.next.Publish(ctx, st)
}

// remainingTargets is what a stored campaign has left to send: its
// targets less those sent, failed or dropped (before its plan has counted
// them: its inline targets).
func remainingTargets(m *meta, st campaigns.Status) int64 {
	total := st.TargetsTotal
	if !st.Planned && m.inline > total {
		total = m.inline
	}
	return max(total-st.Sent-st.Failed-st.Dropped, 0)
}

// taskForecast answers for a label push or a broadcast: one task, created
// when the task caps let it (after the tasks queued before it).
func (f *forecaster) taskForecast(ctx context.Context, c *campaigns.Campaign, fc campaigns.Forecast, start time.Time) (campaigns.Forecast, error) {
	tw, err := f.tasks.tw(c.App)
	if err != nil {
		return fc, err
	}
	st, err := tw.State(ctx, c.App)
	if err != nil {
		return fc, fmt.Errorf("forecast: %w", err)
	}
	kind := ratelimit.TaskLabel
	if c.Kind == campaigns.KindBroadcast {
		kind = ratelimit.TaskBroadcast
	}
	score := ratelimit.TaskScore(c.Priority.Rank(), start)
	at := tw.EstimateNew(st, ratelimit.TaskMember(kind, c.ID), score)
	if at.Before(start) {
		at = start
	}
	if w, ok := c.Window(appLocation(f.cfg, c.App)); ok && !w.Open(at) {
		// Its slot would come after its window closed: it is created at
		// the next opening (the caps are free again by then).
		fc.Notes = append(fc.Notes, "its task slot comes after its send window closes: created when it opens again, "+clockTime(w.NextOpen(at), st.Now))
		at = w.NextOpen(at)
	}
	fc.StartAt, fc.DoneAt = utc(at), utc(at)
	ahead := 0
	for i, m := range st.Waiting {
		if !st.Held[m] && i < len(st.Scores) && st.Scores[i] <= score {
			ahead++
		}
	}
	fc.Ahead.Campaigns = ahead
	if ahead > 0 {
		group := provider.GroupPushLabel
		if kind == ratelimit.TaskBroadcast {
			group = provider.GroupPushTask
		}
		fc.Ahead.Calls[string(group)] = int64(ahead)
	}
	cfg := tw.Config()
	if at.After(st.Now.Add(time.Second)) && at.After(start) {
		fc.Notes = append(fc.Notes, fmt.Sprintf("waits for a task slot: %d created in the last %s and %d running, next at %s",
			len(st.Created), cfg.Window, len(st.Running), clockTime(at, st.Now)))
	}
	if ahead > 0 {
		fc.Notes = append(fc.Notes, fmt.Sprintf("%s queued before it for the task caps", campaignsWord(ahead)))
	}
	if c.ExpiresAt != nil && at.After(*c.ExpiresAt) {
		fc.Notes = append(fc.Notes, "its task would not be created before expires_at ("+clockTime(*c.ExpiresAt, st.Now)+")")
	}
	return fc, nil
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func utc(t time.Time) *time.Time {
	u := t.UTC().Truncate(time.Millisecond)
	return &u
}

// clockTime is t for a note: its time of day in UTC, with the date when
// it is not now's.
func clockTime(t, now time.Time) string {
	t, now = t.UTC(), now.UTC()
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04:05") + " UTC"
	}
	return t.Format("2006-01-02 15:04:05") + " UTC"
}

func campaignsWord(n int) string {
	if n == 1 {
		return "1 campaign"
	}
	return fmt.Sprintf("%d campaigns", n)
}

func num(v float64) string { return fmt.Sprintf("%.3g", v) }

// thousands writes n with a comma every three digits.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// etaCollector exposes campaignd_campaign_eta_seconds: for each running
// campaign this process has an ETA for (its last status events'), the
// seconds until it, from the cache (a scrape computes nothing).
type etaCollector struct {
	f    *forecaster
	desc *prometheus.Desc
}

func newETACollector(f *forecaster) *etaCollector {
	return &etaCollector{f: f, desc: prometheus.NewDesc("campaignd_campaign_eta_seconds",
		"Seconds until a running campaign is expected to end (its ETA), as this process last computed it.", []string{"campaign", "app"}, nil)}
}

func (c *etaCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *etaCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.f.clk.Now()
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	for id, r := range c.f.etas {
		if r.fc.Status != string(campaigns.StateRunning) || r.fc.DoneAt == nil || now.Sub(r.at) > time.Minute {
			continue // not running, or not heard of lately (finished in another process)
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, math.Max(0, r.fc.DoneAt.Sub(now).Seconds()), id, r.fc.App)
	}
}
