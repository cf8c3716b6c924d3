// Package scheduler fires recurring campaigns from the `schedules` config.
//
// Every campaignd process runs a Scheduler; each cron tick is fired once
// across all of them. The tick's campaign gets a deterministic id
// (`cron-<name>-<tick as yyyymmddHHMMSS UTC>`), and the submit is idempotent
// by that id (the campaign store refuses an id it holds, and the submit
// answers a duplicate without error), so that submit is what decides: every
// process that sees a tick due submits it, and exactly one campaign results.
// Nothing is claimed before the submit, so a process that crashes or loses
// Redis in the middle leaves the tick to the others, or to its own next Tick.
// A process about to submit takes a short firing lease (it expires by
// itself), so processes that see the tick at the same moment do not all
// submit it; after a successful submit it marks the tick submitted in
// Redis. Lease and mark only spare the others a duplicate submit (and its
// "duplicate" status event); when they cannot be read or written the
// submit still decides.
//
// A tick whose submit failed is retried on the process's next Ticks while it
// is within the grace period (Options.Grace); ticks missed by more than that
// (all processes down) are not backfilled, as with cron.
package scheduler

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/optcheck"
)

// Parser is the cron syntax of the config: 5 fields, or 6 with leading
// seconds, and descriptors such as @hourly.
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse parses a cron spec in the given zone.
func Parse(spec string, loc *time.Location) (cron.Schedule, error) {
	s, err := parser.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", spec, err)
	}
	if ss, ok := s.(*cron.SpecSchedule); ok && loc != nil {
		ss.Location = loc
	}
	return s, nil
}

// Entry is one recurring campaign.
type Entry struct {
	Name     string
	Spec     string
	Location *time.Location
	Campaign campaigns.Campaign // template; ID is set per tick
}

// SubmitFunc hands a tick's campaign to the pipeline (the worker service).
type SubmitFunc func(ctx context.Context, c *campaigns.Campaign, startAt time.Time) error

// Options tune a Scheduler.
type Options struct {
	Redis  redis.UniversalClient // marks of submitted ticks, shared by all processes (optional)
	Prefix string                // key prefix of the marks, default "campaignd:cron:"
	Grace  time.Duration         // how late a tick may still fire, and be retried, default 1m
	// FiringLease is how long a process submitting a tick keeps the others
	// from submitting it too (default 10 s; it ends early when the submit
	// fails, and by itself when the process dies).
	FiringLease time.Duration
	Clock       clock.Clock
	Logger      zerolog.Logger
}

type entry struct {
	Entry
	loc    *time.Location // Location, or UTC when it is nil
	sched  cron.Schedule
	next   time.Time
	seen   time.Time   // the latest tick this Scheduler saw come due (zero: none yet)
	unsent []time.Time // ticks due, within the grace, not yet submitted; oldest first
}

type dueTick struct {
	e *entry
	t time.Time
}

// Scheduler fires entries at their ticks.
type Scheduler struct {
	opts    Options
	submit  SubmitFunc
	mu      sync.Mutex
	entries []*entry
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o Options) WithDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	o.Prefix = cmp.Or(o.Prefix, "campaignd:cron:")
	o.Grace = cmp.Or(o.Grace, time.Minute)
	o.FiringLease = cmp.Or(o.FiringLease, 10*time.Second)
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("scheduler: Options")
	c.Positive(o, "Grace", "FiringLease")
	return c.Err()
}

// New builds a scheduler; every entry's spec must parse, and the options
// must be in range.
func New(entries []Entry, submit SubmitFunc, opts Options) (*Scheduler, error) {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{opts: opts, submit: submit}
	built, err := s.build(entries)
	if err != nil {
		return nil, err
	}
	s.entries = built
	return s, nil
}

func (s *Scheduler) build(entries []Entry) ([]*entry, error) {
	now := s.opts.Clock.Now()
	out := make([]*entry, 0, len(entries))
	for i, e := range entries {
		loc := e.Location
		if loc == nil {
			loc = time.UTC
		}
		sched, err := Parse(e.Spec, loc)
		if err != nil {
			return nil, fmt.Errorf("schedules[%d] (%s): %w", i, e.Name, err)
		}
		out = append(out, &entry{Entry: e, loc: loc, sched: sched, next: sched.Next(now)})
	}
	return out, nil
}

// Changes names the entries a Replace added, removed and changed.
type Changes struct {
	Added, Removed, Changed []string
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added)+len(c.Removed)+len(c.Changed) == 0 }

// Replace swaps the entries for a new list (a config reload). An entry
// whose name, spec, zone and campaign are unchanged keeps its state (its
// next tick, ticks still to submit); a changed one starts from its next
// tick after now; a removed one fires no more. Every spec must parse, or
// nothing changes. A tick is still fired once across processes that
// replace at different moments: its campaign id is the entry's name and
// the tick's time, and the submit is idempotent by it.
func (s *Scheduler) Replace(entries []Entry) (Changes, error) {
	built, err := s.build(entries)
	if err != nil {
		return Changes{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := make(map[string]*entry, len(s.entries))
	for _, e := range s.entries {
		old[e.Name] = e
	}
	var ch Changes
	for i, e := range built {
		o, ok := old[e.Name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, e.Name)
		case sameEntry(o, e):
			built[i] = o
		default:
			ch.Changed = append(ch.Changed, e.Name)
		}
		delete(old, e.Name)
	}
	for _, o := range s.entries {
		if _, gone := old[o.Name]; gone {
			ch.Removed = append(ch.Removed, o.Name)
		}
	}
	s.entries = built
	return ch, nil
}

func sameEntry(a, b *entry) bool {
	ca, _ := json.Marshal(a.Campaign)
	cb, _ := json.Marshal(b.Campaign)
	return a.Spec == b.Spec && a.loc.String() == b.loc.String() && bytes.Equal(ca, cb)
}

// TickID is the campaign id of entry name's tick at t.
func TickID(name string, t time.Time) string {
	return "cron-" + name + "-" + t.UTC().Format("20060102150405")
}

// ProbeID is an id of the shape entry name's ticks have (TickID at
// 2000-01-01 00:00 UTC), for validating its campaign before any tick.
func ProbeID(name string) string {
	return TickID(name, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
}

// Tick fires every entry's ticks that are due at now and within the grace
// (including ticks whose submit failed on an earlier Tick), and advances the
// entries. A tick fires once across all processes: the submit is idempotent.
// Run calls it every second; tests call it with a fake clock.
func (s *Scheduler) Tick(ctx context.Context) error {
	now := s.opts.Clock.Now()
	s.mu.Lock()
	var due []dueTick
	for _, e := range s.entries {
		// A spec that never matches again (30 February) has a zero next.
		for !e.next.IsZero() && !e.next.After(now) {
			if now.Sub(e.next) <= s.opts.Grace {
				e.unsent = append(e.unsent, e.next)
			}
			e.seen = e.next
			e.next = e.sched.Next(e.next)
		}
		kept := e.unsent[:0]
		for _, t := range e.unsent {
			if now.Sub(t) > s.opts.Grace {
				s.opts.Logger.Error().Str("schedule", e.Name).Str("campaign", TickID(e.Name, t)).
					Dur("grace", s.opts.Grace).Msg("recurring campaign not submitted within the grace: this process gives the tick up")
				continue
			}
			kept = append(kept, t)
			due = append(due, dueTick{e, t})
		}
		e.unsent = kept
	}
	s.mu.Unlock()

	var errs []string
	for _, d := range due {
		if err := s.fire(ctx, d.e, d.t); err != nil {
			if !errors.Is(err, errFiring) {
				errs = append(errs, err.Error())
			}
			continue // still unsent: the next Tick retries it (or sees it marked)
		}
		s.mu.Lock()
		d.e.unsent = slices.DeleteFunc(d.e.unsent, d.t.Equal)
		s.mu.Unlock()
	}
	if len(errs) > 0 {
		return fmt.Errorf("scheduler: %s", strings.Join(errs, "; "))
	}
	return nil
}

// errFiring says another process is submitting the tick right now.
var errFiring = errors.New("another process is submitting the tick")

// fire submits entry e's tick, unless the tick is marked submitted already.
// A nil answer means the tick's campaign exists: submitted now, by another
// process, or by an earlier Tick.
func (s *Scheduler) fire(ctx context.Context, e *entry, tick time.Time) error {
	id := TickID(e.Name, tick)
	log := s.opts.Logger.With().Str("schedule", e.Name).Str("campaign", id).Logger()
	// Not the key of the claims older versions took before submitting: one
	// of those left by a crash must not pass for a submitted tick.
	key := s.opts.Prefix + "submitted:" + id
	lease := s.opts.Prefix + "firing:" + id
	if s.opts.Redis != nil {
		n, err := s.opts.Redis.Exists(ctx, key).Result()
		switch {
		case err != nil:
			// The mark only spares a duplicate submit; the submit decides.
			log.Debug().Err(err).Msg("read the mark of the tick; submitting")
		case n > 0:
			log.Debug().Msg("tick submitted already")
			return nil
		}
		// A short lease (not a claim: it expires) keeps processes that
		// see the tick at the same moment from all submitting it, which
		// would publish a "duplicate" status for the campaign. If its
		// holder dies before submitting, the lease ends and the tick is
		// submitted by whoever sees it next, within the grace.
		ok, err := s.opts.Redis.SetNX(ctx, lease, "1", s.opts.FiringLease).Result()
		switch {
		case err != nil:
			log.Debug().Err(err).Msg("take the firing lease of the tick; submitting")
		case !ok:
			return errFiring
		}
	}
	c := e.Campaign
	c.ID = id
	c.StartDate = ""
	if err := s.submit(ctx, &c, tick); err != nil {
		if s.opts.Redis != nil {
			_ = s.opts.Redis.Del(ctx, lease).Err() // anyone may try again at once
		}
		return fmt.Errorf("submit %s: %w", id, err)
	}
	if s.opts.Redis != nil {
		// Outlives the grace, with room for clocks that disagree.
		if err := s.opts.Redis.Set(ctx, key, "submitted", s.opts.Grace+time.Hour).Err(); err != nil {
			log.Warn().Err(err).Msg("mark the tick submitted (other processes submit it again, and are refused as a duplicate)")
		}
	}
	if err := s.recordUI(ctx, e.Name, id, tick); err != nil {
		log.Debug().Err(err).Msg("tick not shown in the asynq UI's history")
	}
	log.Info().Time("tick", tick).Msg("recurring campaign submitted")
	return nil
}

// Next returns each entry's next tick, by name.
func (s *Scheduler) Next() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.entries))
	for _, e := range s.entries {
		out[e.Name] = e.next
	}
	return out
}

// Run calls Tick every interval (default 1 s) until ctx is done.
func (s *Scheduler) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	ui := time.NewTicker(uiRefresh)
	defer ui.Stop()
	publish := func() {
		if err := s.publishUI(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Debug().Err(err).Msg("schedules not shown in the asynq UI")
		}
	}
	publish()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ui.C:
			publish()
		case <-t.C:
			if err := s.Tick(ctx); err != nil {
				s.opts.Logger.Warn().Err(err).Msg("scheduler tick")
			}
		}
	}
}
