// Package scheduler fires recurring campaigns from the `schedules` config.
//
// Every campaignd process runs a Scheduler; each cron tick is fired once
// across all of them: the tick's campaign gets a deterministic id
// (`cron-<name>-<tick as yyyymmddHHMMSS UTC>`) and a Redis SET NX claim
// decides which process submits it (the campaign store's own duplicate check
// backs that up). Missed ticks (all processes down) are not backfilled beyond
// a short grace period, as with cron.
package scheduler

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/robfig/cron/v3"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
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
	Redis  redis.UniversalClient // claims of ticks, shared by all processes
	Prefix string                // key prefix, default "campaignd:cron:"
	Grace  time.Duration         // how late a tick may still fire, default 1m
	Clock  clock.Clock
	Logger zerolog.Logger
}

type entry struct {
	Entry
	sched cron.Schedule
	next  time.Time
}

// Scheduler fires entries at their ticks.
type Scheduler struct {
	opts    Options
	submit  SubmitFunc
	mu      sync.Mutex
	entries []*entry
}

// New builds a scheduler; every entry's spec must parse.
func New(entries []Entry, submit SubmitFunc, opts Options) (*Scheduler, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Prefix == "" {
		opts.Prefix = "campaignd:cron:"
	}
	if opts.Grace <= 0 {
		opts.Grace = time.Minute
	}
	s := &Scheduler{opts: opts, submit: submit}
	now := opts.Clock.Now()
	for i, e := range entries {
		loc := e.Location
		if loc == nil {
			loc = time.UTC
		}
		sched, err := Parse(e.Spec, loc)
		if err != nil {
			return nil, fmt.Errorf("schedules[%d] (%s): %w", i, e.Name, err)
		}
		s.entries = append(s.entries, &entry{Entry: e, sched: sched, next: sched.Next(now)})
	}
	return s, nil
}

// TickID is the campaign id of entry name's tick at t.
func TickID(name string, t time.Time) string {
	return "cron-" + name + "-" + t.UTC().Format("20060102150405")
}

// Tick fires every entry whose next tick is due at now, at most once per
// tick across all processes, and advances the entries. Run calls it every
// second; tests call it with a fake clock.
func (s *Scheduler) Tick(ctx context.Context) error {
	now := s.opts.Clock.Now()
	s.mu.Lock()
	var due []struct {
		e *entry
		t time.Time
	}
	for _, e := range s.entries {
		var last time.Time
		for !e.next.After(now) {
			last = e.next
			e.next = e.sched.Next(e.next)
		}
		if !last.IsZero() && now.Sub(last) <= s.opts.Grace {
			due = append(due, struct {
				e *entry
				t time.Time
			}{e, last})
		}
	}
	s.mu.Unlock()

	var errs []string
	for _, d := range due {
		if err := s.fire(ctx, d.e, d.t); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("scheduler: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (s *Scheduler) fire(ctx context.Context, e *entry, tick time.Time) error {
	id := TickID(e.Name, tick)
	log := s.opts.Logger.With().Str("schedule", e.Name).Str("campaign", id).Logger()
	if s.opts.Redis != nil {
		ok, err := s.opts.Redis.SetNX(ctx, s.opts.Prefix+id, "1", 7*24*time.Hour).Result()
		if err != nil {
			return fmt.Errorf("claim tick %s: %w", id, err)
		}
		if !ok {
			log.Debug().Msg("tick fired by another process")
			return nil
		}
	}
	c := e.Campaign
	c.ID = id
	c.StartDate = ""
	if err := s.submit(ctx, &c, tick); err != nil {
		if s.opts.Redis != nil {
			// Release the claim so another process may still fire this tick.
			_ = s.opts.Redis.Del(context.WithoutCancel(ctx), s.opts.Prefix+id).Err()
		}
		return fmt.Errorf("submit %s: %w", id, err)
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
	if len(s.entries) == 0 {
		return
	}
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Tick(ctx); err != nil {
				s.opts.Logger.Warn().Err(err).Msg("scheduler tick")
			}
		}
	}
}
