package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/metrics"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/provider/easemob"
	"github.com/campaignd/campaignd/provider/engagelab"
	"github.com/campaignd/campaignd/ratelimit"
	"github.com/campaignd/campaignd/worker"
)

// providers holds one client per configured app and adapts them to the
// worker's interfaces. Every client asks the shared limiter before each HTTP
// request and reports each outcome to metrics and to the limiter's back-off.
type providers struct {
	easemob   map[string]*easemob.Client
	engagelab map[string]*engagelab.Client
	lim       *ratelimit.Limiter
	log       zerolog.Logger
}

func newProviders(cfg config.Config, lim *ratelimit.Limiter, m *metrics.Metrics, clk clock.Clock, log zerolog.Logger) (*providers, error) {
	p := &providers{
		easemob:   map[string]*easemob.Client{},
		engagelab: map[string]*engagelab.Client{},
		lim:       lim,
		log:       log,
	}
	httpc := provider.NewHTTPClient(provider.HTTPOptions{MaxConnsPerHost: worker.InFlight(cfg.Worker.Concurrency) + 16})
	gate := lim.Gate(func(app string, g provider.Group) (float64, bool) {
		a, ok := cfg.Apps[app]
		if !ok || g == provider.GroupToken {
			return 0, false
		}
		return a.Limit(g), true
	})
	gate.Observer = m
	obs := observers{m.Observer(), backoffObserver{lim: lim, log: log}}
	for name, a := range cfg.Apps {
		hooks := provider.Hooks{App: name, Gate: gate, Observer: obs}
		switch a.Provider {
		case config.ProviderEasemob:
			c, err := easemob.New(easemob.Config{
				BaseURL: a.BaseURL, Org: a.Org, App: a.App,
				ClientID: a.ClientID, ClientSecret: a.ClientSecret, AppToken: a.AppToken,
				HTTPClient: httpc, Hooks: hooks, Location: a.Location, Clock: clk,
				Logger: log.With().Str("app", name).Logger(),
			})
			if err != nil {
				return nil, fmt.Errorf("apps.%s: %w", name, err)
			}
			p.easemob[name] = c
		case config.ProviderEngageLab:
			c, err := engagelab.New(engagelab.Config{
				BaseURL: a.BaseURL, AppKey: a.AppKey, AppSecret: a.AppSecret,
				HTTPClient: httpc, Hooks: hooks, Clock: clk,
				Logger: log.With().Str("app", name).Logger(),
			})
			if err != nil {
				return nil, fmt.Errorf("apps.%s: %w", name, err)
			}
			p.engagelab[name] = c
		}
	}
	return p, nil
}

// PushSingle implements worker.Pusher with POST /push/single.
func (p *providers) PushSingle(ctx context.Context, app string, targets []string, strategy *int, msg json.RawMessage) ([]worker.TargetResult, error) {
	c, ok := p.easemob[app]
	if !ok {
		return nil, &provider.Error{Provider: "campaignd", Op: "push/single", Kind: provider.KindPermanent,
			Description: fmt.Sprintf("app %q has no push API (only easemob apps can push)", app)}
	}
	res, err := c.PushSingle(ctx, targets, easemob.PushRequest{Strategy: strategy, PushMessage: msg})
	if err != nil {
		return nil, err
	}
	out := make([]worker.TargetResult, len(res))
	for i, r := range res {
		out[i] = worker.TargetResult{ID: r.ID, OK: r.OK()}
		if !r.OK() {
			out[i].Reason = r.PushStatus
			if r.Desc != "" {
				out[i].Reason += ": " + r.Desc
			}
		}
	}
	return out, nil
}

// callContext attaches a campaign's own rate_limit to its provider calls.
func (p *providers) callContext(ctx context.Context, c *campaigns.Campaign) context.Context {
	if c.RateLimit <= 0 {
		return ctx
	}
	return ratelimit.WithExtraRate(ctx, ratelimit.Rate{Key: "campaign:" + c.ID, PerSecond: c.RateLimit})
}

// observers fans one outcome out to several observers.
type observers []provider.Observer

func (os observers) Observe(app string, g provider.Group, op string, took time.Duration, err error) {
	for _, o := range os {
		o.Observe(app, g, op, took, err)
	}
}

// backoffObserver pushes a group's next free slot back for every process when
// the provider still answers 429 / LimitException (its own clock, or another
// client on the same app key).
type backoffObserver struct {
	lim *ratelimit.Limiter
	log zerolog.Logger
}

func (b backoffObserver) Observe(app string, g provider.Group, op string, _ time.Duration, err error) {
	d, ok := provider.IsRateLimited(err)
	if !ok {
		return
	}
	if d <= 0 {
		d = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if berr := b.lim.Backoff(ctx, ratelimit.GroupKey(app, g), d); berr != nil {
		b.log.Warn().Err(berr).Str("app", app).Str("group", string(g)).Msg("limiter back-off failed")
	}
	b.log.Warn().Str("app", app).Str("group", string(g)).Str("op", op).Dur("backoff", d).Msg("provider refused a call over its limit; group backed off")
}
