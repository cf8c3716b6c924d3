package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
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
	apps      map[string]config.App
	groups    map[campaigns.Kind][]provider.Group // the limit groups of each kind's calls
	log       zerolog.Logger
	httpc     *http.Client
	// pushResults recycles push/single's results (*[]easemob.TargetResult).
	pushResults sync.Pool
}

func newProviders(cfg config.Config, lim *ratelimit.Limiter, m *metrics.Metrics, clk clock.Clock, log zerolog.Logger) (*providers, error) {
	p := &providers{
		easemob:     map[string]*easemob.Client{},
		engagelab:   map[string]*engagelab.Client{},
		lim:         lim,
		apps:        cfg.Apps,
		groups:      map[campaigns.Kind][]provider.Group{},
		log:         log,
		pushResults: sync.Pool{New: func() any { return new([]easemob.TargetResult) }},
	}
	for _, k := range worker.KindInfos() {
		p.groups[k.Kind] = k.Groups
	}
	var bases []string
	for _, a := range cfg.Apps {
		bases = append(bases, a.BaseURL)
	}
	// Spare connections to plain-HTTP providers: about one per app (a
	// call on a connection opened for it counts late at the limiter).
	httpc := provider.NewHTTPClient(provider.HTTPOptions{MaxConnsPerHost: worker.InFlight(cfg.Worker.Concurrency) + 16,
		Warm: bases, SpareConns: min(max(len(cfg.Apps), 8), 64)})
	p.httpc = httpc
	gate := lim.Gate(func(app string, g provider.Group) (float64, bool) {
		a, ok := cfg.Apps[app]
		if !ok {
			return 0, false
		}
		return a.Limit(g), true
	})
	gate.Adaptive = func(app string) bool { return cfg.Apps[app].Adapts() }
	gate.Observer = m
	obs := observers{m.Observer(), backoffObserver{lim: lim, apps: cfg.Apps, log: log}}
	for name, a := range cfg.Apps {
		hooks := provider.Hooks{App: name, Gate: gate, Observer: obs}
		switch a.Provider {
		case provider.Easemob:
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
		case provider.EngageLab:
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

// close closes the clients' idle and spare connections.
func (p *providers) close() { p.httpc.CloseIdleConnections() }

var _ worker.Providers = (*providers)(nil)

// ProviderOf implements worker.Providers.
func (p *providers) ProviderOf(app string) string {
	if _, ok := p.easemob[app]; ok {
		return provider.Easemob
	}
	if _, ok := p.engagelab[app]; ok {
		return provider.EngageLab
	}
	return ""
}

// em returns the Easemob client of app, or a permanent error naming the
// operation an app of another provider cannot do.
func (p *providers) em(app, op string) (*easemob.Client, error) {
	c, ok := p.easemob[app]
	if !ok {
		return nil, &provider.Error{Provider: "campaignd", Op: op, Class: provider.ClassPermanent,
			Description: fmt.Sprintf("app %q is not an easemob app (%s is an easemob call)", app, op)}
	}
	return c, nil
}

func pushResult(r easemob.TargetResult) worker.TargetResult {
	out := worker.TargetResult{ID: r.ID, OK: r.OK()}
	if !r.OK() {
		out.Reason = r.PushStatus
		if r.Desc != "" {
			out.Reason += ": " + r.Desc
		}
	}
	return out
}

// PushSingle implements worker.Pusher with POST /push/single. The
// provider's own results are read into a recycled buffer and converted
// into buf's storage.
func (p *providers) PushSingle(ctx context.Context, app string, targets []string, strategy *int, msg json.RawMessage, buf []worker.TargetResult) ([]worker.TargetResult, error) {
	c, err := p.em(app, "push/single")
	if err != nil {
		return nil, err
	}
	raw := p.pushResults.Get().(*[]easemob.TargetResult)
	defer p.pushResults.Put(raw)
	res, err := c.PushSingleInto(ctx, targets, easemob.PushRequest{Strategy: strategy, PushMessage: msg}, (*raw)[:0])
	if err != nil {
		return nil, err
	}
	out := buf[:0]
	if cap(out) < len(res) {
		out = make([]worker.TargetResult, 0, len(res))
	}
	for _, r := range res {
		out = append(out, pushResult(r))
	}
	if cap(res) <= provider.MaxPushTargets {
		clear(res) // drop the strings while the buffer waits in the pool
		*raw = res[:0]
	}
	return out, nil
}

// PushSync implements worker.SyncPusher with POST /push/sync/{target}.
func (p *providers) PushSync(ctx context.Context, app, target string, strategy *int, msg json.RawMessage) (worker.TargetResult, error) {
	c, err := p.em(app, "push/sync")
	if err != nil {
		return worker.TargetResult{}, err
	}
	r, err := c.PushSync(ctx, target, easemob.PushRequest{Strategy: strategy, PushMessage: msg})
	if err != nil {
		return worker.TargetResult{}, err
	}
	return pushResult(r), nil
}

// LabelExists implements worker.LabelEditor with GET /push/label/{l}.
func (p *providers) LabelExists(ctx context.Context, app, label string) (bool, error) {
	c, err := p.em(app, "push/label")
	if err != nil {
		return false, err
	}
	_, err = c.GetLabel(ctx, label)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Type == "ResourceNotFoundException" {
		return false, nil
	}
	return err == nil, err
}

// CreateLabel implements worker.LabelEditor with POST /push/label; a label
// created meanwhile by someone else is not an error.
func (p *providers) CreateLabel(ctx context.Context, app, label, description string) error {
	c, err := p.em(app, "push/label")
	if err != nil {
		return err
	}
	_, err = c.CreateLabel(ctx, label, description)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Status == 400 && strings.Contains(pe.Description, "already exists") {
		return nil
	}
	return err
}

// LabelMembers implements worker.LabelEditor with POST or DELETE
// /push/label/{l}/user.
func (p *providers) LabelMembers(ctx context.Context, app, label string, add bool, usernames []string) ([]worker.TargetResult, error) {
	c, err := p.em(app, "push/label/{label}/user")
	if err != nil {
		return nil, err
	}
	var r easemob.MemberResult
	if add {
		r, err = c.AddLabelUsers(ctx, label, usernames)
	} else {
		r, err = c.RemoveLabelUsers(ctx, label, usernames)
	}
	if err != nil {
		return nil, err
	}
	ok := make(map[string]bool, len(r.Success))
	for _, u := range r.Success {
		ok[u] = true
	}
	out := make([]worker.TargetResult, 0, len(usernames))
	for _, u := range usernames {
		switch reason, failed := r.Fail[u]; {
		case failed:
			out = append(out, worker.TargetResult{ID: u, Reason: reason})
		case ok[u]:
			out = append(out, worker.TargetResult{ID: u, OK: true})
		}
	}
	return out, nil
}

// TagMembers implements worker.TagEditor with POST /v4/tags/{t}. When the
// provider names invalid registration ids (27005, which refuses the whole
// call), those are failed results and the rest is sent once more.
func (p *providers) TagMembers(ctx context.Context, app, tag string, add bool, ids []string) ([]worker.TargetResult, error) {
	c, ok := p.engagelab[app]
	if !ok {
		return nil, &provider.Error{Provider: "campaignd", Op: "tags", Class: provider.ClassPermanent,
			Description: fmt.Sprintf("app %q is not an engagelab app (tags are engagelab's labels)", app)}
	}
	var out []worker.TargetResult
	for attempt := 0; ; attempt++ {
		var err error
		if add {
			err = c.UpdateTag(ctx, tag, ids, nil)
		} else {
			err = c.UpdateTag(ctx, tag, nil, ids)
		}
		var pe *provider.Error
		if err != nil && errors.As(err, &pe) && len(pe.InvalidIDs) > 0 && attempt == 0 {
			bad := make(map[string]bool, len(pe.InvalidIDs))
			for _, id := range pe.InvalidIDs {
				bad[id] = true
			}
			rest := ids[:0:0]
			for _, id := range ids {
				if bad[id] {
					out = append(out, worker.TargetResult{ID: id, Reason: "invalid registration id (27005)"})
				} else {
					rest = append(rest, id)
				}
			}
			if len(rest) == 0 || len(rest) == len(ids) {
				return out, nil
			}
			ids = rest
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			out = append(out, worker.TargetResult{ID: id, OK: true})
		}
		return out, nil
	}
}

// UpdateUser implements worker.SettingsEditor with one PUT /users/{u}.
func (p *providers) UpdateUser(ctx context.Context, app, user string, nickname *string, displayStyle *int) error {
	c, err := p.em(app, "users/{username}")
	if err != nil {
		return err
	}
	return c.UpdateUser(ctx, user, nickname, displayStyle)
}

// SetPushMode implements worker.SettingsEditor: the app-wide mode is chat
// type "user" with the user's own id as key (file 001).
func (p *providers) SetPushMode(ctx context.Context, app, user string, typ, ignoreInterval *string, ignoreDuration *int64) error {
	c, err := p.em(app, "users/{username}/notification")
	if err != nil {
		return err
	}
	m := easemob.NotificationMode{IgnoreInterval: ignoreInterval, IgnoreDuration: ignoreDuration}
	if typ != nil {
		m.Type = *typ
	}
	_, err = c.SetNotificationMode(ctx, user, "user", user, m)
	return err
}

// SetLanguage implements worker.SettingsEditor.
func (p *providers) SetLanguage(ctx context.Context, app, user, language string) error {
	c, err := p.em(app, "users/{username}/notification/language")
	if err != nil {
		return err
	}
	return c.SetLanguage(ctx, user, language)
}

// CreateTemplate implements worker.TemplateEditor.
func (p *providers) CreateTemplate(ctx context.Context, app, name, titlePattern, contentPattern string) error {
	c, err := p.em(app, "notification/template")
	if err != nil {
		return err
	}
	_, err = c.CreateTemplate(ctx, easemob.Template{Name: name, TitlePattern: titlePattern, ContentPattern: contentPattern})
	return err
}

// DeleteTemplate implements worker.TemplateEditor.
func (p *providers) DeleteTemplate(ctx context.Context, app, name string) error {
	c, err := p.em(app, "notification/template")
	if err != nil {
		return err
	}
	return c.DeleteTemplate(ctx, name)
}

// callContext attaches to a campaign's provider calls its own rate_limit,
// its priority and flow in the limiter's local queues (high before normal
// before low; campaigns of one priority in turn), and the worker's check
// run at each call's slot. The batch's give-up signal is not passed on:
// a call admitted to its app's queue is sent (worker.CallHints).
func (p *providers) callContext(ctx context.Context, c *campaigns.Campaign, h worker.CallHints) context.Context {
	ctx = ratelimit.WithOrder(ctx, c.Priority.Rank(), c.ID)
	if h.Check != nil {
		ctx = ratelimit.WithCheck(ctx, h.Check)
	}
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

// backoffObserver acts on the provider's refusals for rate (another client
// on the same app key, a plan below the configured limits, the provider's
// own clock). An adaptive app's group lowers its effective rate for every
// process (ratelimit.Limiter.Refused) and its next call comes two
// intervals of that rate later; otherwise, or when the provider asked for more than
// its one-second window, the group's next free slot moves past the
// provider's Retry-After (1 s when none) for every process.
type backoffObserver struct {
	lim  *ratelimit.Limiter
	apps map[string]config.App
	log  zerolog.Logger
}

func (b backoffObserver) Observe(app string, g provider.Group, op string, _ time.Duration, err error) {
	d, ok := provider.IsRateLimited(err)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	log := b.log.With().Str("app", app).Str("group", string(g)).Str("op", op).Logger()
	a, known := b.apps[app]
	adapted := false
	if known && a.Adapts() && adaptsOn(g, err) {
		ad, aerr := b.lim.Refused(ctx, ratelimit.Rate{Key: ratelimit.GroupKey(app, g), PerSecond: a.Limit(g), Adaptive: true})
		switch {
		case aerr != nil:
			log.Warn().Err(aerr).Msg("refusal for rate not recorded")
		case ad.Lowered:
			log.Info().Float64("rate", ad.Effective).Float64("limit", ad.Limit).Int("refusals_last_minute", ad.Refusals).
				Msg("provider refused a call for rate; the group's rate lowered for every process")
		default:
			log.Debug().Float64("rate", ad.Effective).Msg("provider refused a call for rate; lowered less than a second ago")
		}
		if aerr == nil && d <= time.Second && ad.Effective > 0 {
			// The refused call counts in the provider's window too: two
			// intervals let the window fall below the limit again.
			d, adapted = time.Duration(2*float64(time.Second)/ad.Effective), true
		}
	}
	if d <= 0 {
		d = time.Second
	}
	if berr := b.lim.Backoff(ctx, ratelimit.GroupKey(app, g), d); berr != nil {
		log.Warn().Err(berr).Msg("limiter back-off failed")
	}
	if !adapted {
		log.Warn().Dur("backoff", d).Msg("provider refused a call over its limit; group backed off")
	}
}

// adaptsOn says whether a refusal on group g is one for rate: on the task
// calls (push/list/label, push/task) a 403 LimitException is the task
// caps' (the task queue handles it), only a 429 is for rate.
func adaptsOn(g provider.Group, err error) bool {
	if g != provider.GroupPushLabel && g != provider.GroupPushTask {
		return true
	}
	var pe *provider.Error
	return errors.As(err, &pe) && pe.Status == http.StatusTooManyRequests
}

// providerGroups are the limit groups each provider's calls use.
var providerGroups = map[string][]provider.Group{
	provider.Easemob: {provider.GroupPushSingle, provider.GroupPushSync, provider.GroupPushAsync, provider.GroupPushLabel,
		provider.GroupPushTask, provider.GroupLabel, provider.GroupLabelUser, provider.GroupUser, provider.GroupNotification,
		provider.GroupTemplate, provider.GroupToken},
	provider.EngageLab: {provider.GroupTags},
}

// Throttles says which limit groups of app that a campaign of kind uses
// run below their configured limit because the provider refuses calls for
// rate, or were refused in the last minute (httpapi.Options.Throttles).
func (p *providers) Throttles(ctx context.Context, app string, kind campaigns.Kind) ([]campaigns.Throttle, error) {
	a, ok := p.apps[app]
	if !ok || !a.Adapts() {
		return nil, nil
	}
	var rates []ratelimit.Rate
	var groups []provider.Group
	for _, g := range p.groups[kind] {
		if l := a.Limit(g); l > 0 && g != provider.GroupToken {
			rates = append(rates, ratelimit.Rate{Key: ratelimit.GroupKey(app, g), PerSecond: l, Adaptive: true})
			groups = append(groups, g)
		}
	}
	ads, err := p.lim.Effective(ctx, rates...)
	if err != nil {
		return nil, err
	}
	var out []campaigns.Throttle
	for i, ad := range ads {
		if ad.Effective >= ad.Limit && ad.Refusals == 0 {
			continue
		}
		rate, limit := math.Round(ad.Effective*10)/10, math.Round(ad.Limit*10)/10
		calls := "calls"
		if ad.Refusals == 1 {
			calls = "call"
		}
		out = append(out, campaigns.Throttle{Group: string(groups[i]), Rate: rate, Limit: limit, Refused: ad.Refusals,
			Note: fmt.Sprintf("%s at %s/s of %s: the provider refused %d %s in the last minute", groups[i],
				strconv.FormatFloat(rate, 'f', -1, 64), strconv.FormatFloat(limit, 'f', -1, 64), ad.Refusals, calls)})
	}
	return out, nil
}

// EffectiveLimits implements metrics.EffectiveLimits: every adaptive app's
// groups, as the limiter books them now.
func (p *providers) EffectiveLimits(ctx context.Context) ([]metrics.EffectiveLimit, error) {
	var rates []ratelimit.Rate
	var out []metrics.EffectiveLimit
	for name, a := range p.apps {
		if !a.Adapts() {
			continue
		}
		for _, g := range providerGroups[a.Provider] {
			if l := a.Limit(g); l > 0 {
				rates = append(rates, ratelimit.Rate{Key: ratelimit.GroupKey(name, g), PerSecond: l, Adaptive: true})
				out = append(out, metrics.EffectiveLimit{App: name, Group: string(g), Limit: l})
			}
		}
	}
	ads, err := p.lim.Effective(ctx, rates...)
	if err != nil {
		return nil, err
	}
	for i, ad := range ads {
		out[i].Rate = ad.Effective
	}
	return out, nil
}

// PushLabel implements worker.TaskCreator with POST /push/list/label
// (created now: campaignd holds a task until its start itself, so that it
// never holds a running slot before it runs).
func (p *providers) PushLabel(ctx context.Context, app, label string, strategy *int, msg json.RawMessage) (string, error) {
	c, err := p.em(app, "push/list/label")
	if err != nil {
		return "", err
	}
	return c.PushLabel(ctx, label, nil, easemob.PushRequest{Strategy: strategy, PushMessage: msg})
}

// PushTask implements worker.TaskCreator with POST /push/task.
func (p *providers) PushTask(ctx context.Context, app string, strategy *int, msg json.RawMessage) (string, error) {
	c, err := p.em(app, "push/task")
	if err != nil {
		return "", err
	}
	return c.PushTask(ctx, nil, easemob.PushRequest{Strategy: strategy, PushMessage: msg})
}
