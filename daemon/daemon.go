// Package daemon wires campaignd's parts into one process: Redis and NATS
// connections, the shared limiter, the provider clients, the campaign store,
// the asynq workers, the NATS intake and the HTTP side. cmd/campaignd is a
// thin main around it; tests start whole daemons through it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/httpapi"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/natsconn"
	"github.com/campaignd/campaignd/metrics"
	"github.com/campaignd/campaignd/ratelimit"
	"github.com/campaignd/campaignd/scheduler"
	"github.com/campaignd/campaignd/statusq"
	"github.com/campaignd/campaignd/store"
	"github.com/campaignd/campaignd/worker"
)

// Options tune a Daemon beyond its config.
type Options struct {
	Logger      zerolog.Logger
	DevNATS     bool   // run an embedded NATS server with JetStream at nats.url
	DevStoreDir string // its store directory (temp when empty)
	Clock       clock.Clock
}

// statusFlush is how long a stopping daemon keeps publishing the status
// events still queued.
const statusFlush = 5 * time.Second

// workersPerApp is the asynq workers per configured app a process needs
// for every app to send at its limit at once: a batch task holds its
// worker while its calls wait in the app's local queue (about 2 s of
// calls), and the app's next task must be in hand before that queue runs
// dry (make bench-apps: 100 apps on 50 workers reached 45% of their
// limits, on 200 workers 96%).
const workersPerApp = 2

// connectTimeout bounds each try to reach Redis or NATS at start.
const connectTimeout = 3 * time.Second

// Daemon is one running campaignd process.
type Daemon struct {
	cfg  config.Config
	log  zerolog.Logger
	clk  clock.Clock
	stop []func() // run in reverse order by Close

	rdb      *redis.Client
	redis    redisSetup
	redisOpt asynq.RedisConnOpt
	nc       *nats.Conn
	js       jetstream.JetStream
	denials  *natsconn.Denials // NATS permissions violations, to the calls that caused them
	forecast *forecaster

	store   *store.Store
	work    *worker.Worker
	servers worker.Servers
	intake  *intake.Intake
	sched   *scheduler.Scheduler
	api     *httpapi.Server
	httpSrv *http.Server
	ln      net.Listener
}

// New connects to Redis and NATS, prepares the streams and builds every part.
// Nothing runs until Run.
// maxRedisPool bounds a process's go-redis pool, whatever its workers.
const maxRedisPool = 2048

func New(ctx context.Context, cfg config.Config, opts Options) (_ *Daemon, err error) {
	cfg = cfg.WithDefaults()
	d := &Daemon{cfg: cfg, log: opts.Logger, clk: opts.Clock}
	if d.clk == nil {
		d.clk = clock.Real{}
	}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	if need := workersPerApp * len(cfg.Apps); cfg.Worker.Concurrency < need {
		d.log.Warn().Int("worker_concurrency", cfg.Worker.Concurrency).Int("apps", len(cfg.Apps)).Int("advised", need).
			Msg("worker.concurrency is below 2 per configured app: when every app sends at once, apps wait for workers and fall short of their limits (docs/OPERATIONS.md, Sizing)")
	}
	if err := checkSchedules(cfg, d.clk.Now()); err != nil {
		return nil, err
	}
	if opts.DevNATS {
		stopNATS, err := startDevNATS(cfg.NATS.URL, opts.DevStoreDir)
		if err != nil {
			return nil, err
		}
		d.stop = append(d.stop, stopNATS)
		d.log.Info().Str("url", config.RedactURL(cfg.NATS.URL)).Msg("dev mode: embedded NATS with JetStream")
	}

	// Redis: go-redis for the store and limiter, asynq's own connection
	// for queues; both from one setup (a URL, or Sentinel).
	rs := redisSetup{cfg: cfg.Redis}
	d.redis = rs
	d.rdb, err = rs.client(func(o *redis.UniversalOptions) {
		// batches in flight each hold a limiter call, plus reads and records;
		// at most maxRedisPool (the limiter's calls of a process share
		// round trips, and Redis takes 10,000 clients by default)
		o.PoolSize = min(worker.InFlight(cfg.Worker.Concurrency)+2*cfg.Worker.Concurrency+16, maxRedisPool)
		// go-redis gives each connection 32 KiB read and write buffers
		// (128 KiB for pipelines): with hundreds of connections that is
		// tens of MiB, doubled by the GC's heap goal. campaignd's commands
		// and answers are a few KiB; the biggest (a chunk of batches, a
		// task's batches) just take a few more reads or writes.
		o.ReadBufferSize, o.WriteBufferSize = 8<<10, 8<<10
		o.PipelineReadBufferSize, o.PipelineWriteBufferSize = 32<<10, 32<<10
		// Context deadlines bound Redis calls (the decision at a call's
		// slot waits for Redis only so long, never a 3 s read timeout).
		o.ContextTimeoutEnabled = true
	})
	if err != nil {
		return nil, err
	}
	d.stop = append(d.stop, func() { _ = d.rdb.Close() })
	if err := waitFor(ctx, d.clk, d.log, "redis at "+rs.where(), connectTimeout, func(ctx context.Context) error {
		err := d.rdb.Ping(ctx).Err()
		if why := natsconn.TLSReason(err); why != "" {
			return &permanentError{why: why, err: err}
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := refuseCluster(ctx, d.rdb, rs.where()); err != nil {
		return nil, err
	}
	d.redisOpt, err = rs.asynq(0)
	if err != nil {
		return nil, err
	}

	// NATS.
	auth := cfg.NATS.Auth()
	natsOpts, err := auth.Options()
	if err != nil {
		return nil, fmt.Errorf("nats.%w", err)
	}
	if auth.TLS.InsecureSkipVerify {
		d.log.Warn().Msg("nats.tls.insecure_skip_verify is set: any server certificate is accepted, the connection can be intercepted")
	}
	d.denials = &natsconn.Denials{}
	natsOpts = append(natsOpts,
		nats.ErrorHandler(d.denials.Handler(natsErrorLogger(d.log, d.clk))),
		nats.Name("campaignd"),
		nats.CustomInboxPrefix(natsconn.InboxPrefix),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.Timeout(2*time.Second),
	)
	err = waitFor(ctx, d.clk, d.log, "nats at "+config.RedactURL(cfg.NATS.URL), connectTimeout, func(ctx context.Context) error {
		nc, err := nats.Connect(cfg.NATS.URL, natsOpts...)
		d.nc = nc
		if why := auth.Permanent(err); why != "" {
			return &permanentError{why: why, err: err}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	d.stop = append(d.stop, func() { _ = d.nc.Drain() })
	d.js, err = jetstream.New(d.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// The streams and the bucket: a cluster slow to agree (two processes
	// creating one R3 stream at once on NATS 2.9) is waited for, never a
	// reason to exit; each call has its own deadline, and a pass that
	// timed out is run again (intake/ensure.go).
	jsWhere := "nats jetstream at " + config.RedactURL(cfg.NATS.URL)
	err = waitFor(ctx, d.clk, d.log, jsWhere, 0, d.permitted(auth, func(ctx context.Context) error {
		if err := intake.EnsureStreams(ctx, d.js, intake.StreamOptions{Replicas: cfg.NATS.Replicas}); err != nil {
			return err
		}
		return intake.EnsureAudienceBucket(ctx, d.js, cfg.NATS.Replicas, 0)
	}))
	if err != nil {
		return nil, fmt.Errorf("nats streams: %w", err)
	}

	// Metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)

	// Limiter and provider clients.
	lim := ratelimit.New(d.rdb, ratelimit.Options{Logger: d.log})
	tasks := newTaskQueues(cfg, lim)
	provs, err := newProviders(cfg, lim, m, d.clk, d.log)
	if err != nil {
		return nil, err
	}
	d.stop = append(d.stop, provs.close)

	// Store, service, workers.
	d.store = store.New(d.rdb, store.Options{Clock: d.clk})
	if err := d.store.Migrate(ctx); err != nil {
		return nil, err
	}
	pub := intake.NewPublisher(d.js, d.log)
	// Status events go out through an ordered queue, so that sending never
	// waits for the status stream (a stream without a leader, NATS
	// reconnecting); rejections are published by intake itself, before it
	// terminates their message. Close (before NATS is drained) flushes it.
	aud := intake.NewAudienceStore(d.js, intake.AudienceOptions{Denials: d.denials})
	d.forecast = newForecaster(cfg, d.store, lim, tasks, aud, d.clk)
	statusQ := statusq.New(etaSink{next: pub, f: d.forecast, store: d.store}, statusq.Options{Logger: d.log, Counters: m, Clock: d.clk})
	statusQ.Start()
	d.stop = append(d.stop, func() { statusQ.Close(statusFlush) })
	asynqClient := asynq.NewClient(d.redisOpt)
	d.stop = append(d.stop, func() { _ = asynqClient.Close() })
	insp := asynq.NewInspector(d.redisOpt)
	d.stop = append(d.stop, func() { _ = insp.Close() })
	d.work = worker.New(worker.Options{
		Client:      asynqClient,
		Store:       d.store,
		Sink:        statusQ,
		Provider:    provs,
		CallContext: provs.callContext,
		Clock:       d.clk,
		Logger:      d.log,
		Inspector:   insp,
		Concurrency: cfg.Worker.Concurrency,
		Plan: worker.PlanOptions{
			Audience: aud,
			Memory:   int64(cfg.Worker.PlanMemory),
			SpillDir: cfg.Worker.PlanSpillDir,
			SpillOff: cfg.Worker.PlanSpillDir == config.PlanSpillOff,
		},
		Tasks:     worker.TaskOptions{Queue: tasks, Apps: tasks.names()},
		Reconcile: worker.ReconcileOptions{StallAfter: cfg.Worker.StallAfter.D(), Counters: m},
	})
	d.servers = worker.NewServers(d.redisOpt, worker.ServerOptions{
		Concurrency: cfg.Worker.Concurrency,
		Logger:      d.log,
	}, 0)
	reg.MustRegister(metrics.NewCampaignCollector(d.store, 2*time.Second, d.log))
	reg.MustRegister(newTaskCollector(tasks))
	reg.MustRegister(newETACollector(d.forecast))
	reg.MustRegister(metrics.NewLimitCollector(provs, 2*time.Second, d.log))
	reg.MustRegister(metrics.NewQueueCollector(insp))

	// Recurring campaigns.
	d.sched, err = scheduler.New(scheduleEntries(cfg), func(ctx context.Context, c *campaigns.Campaign, startAt time.Time) error {
		c.Normalize()
		if errs := c.Validate(envFor(cfg, d.clk.Now())); len(errs) > 0 {
			return fmt.Errorf("schedule campaign %s: %w", c.ID, errs)
		}
		_, err := d.work.Control.Submit(ctx, c, c.FirstOpening(appLocation(cfg, c.App), startAt))
		return err
	}, scheduler.Options{Redis: d.rdb, Clock: d.clk, Logger: d.log})
	if err != nil {
		return nil, err
	}

	// Intake.
	d.intake = intake.New(d.js, d.work.Control, intake.Options{
		Env:        func() campaigns.Env { return envFor(cfg, d.clk.Now()) },
		Location:   func(app string) *time.Location { return appLocation(cfg, app) },
		Publisher:  pub,
		Status:     statusQ,
		IsNotFound: func(err error) bool { return errors.Is(err, store.ErrNotFound) },
		Logger:     d.log,
		Clock:      d.clk,
	})
	if err := waitFor(ctx, d.clk, d.log, jsWhere, 0, d.permitted(auth, d.intake.EnsureConsumer)); err != nil {
		return nil, fmt.Errorf("nats consumer: %w", err)
	}

	// HTTP.
	d.api, err = httpapi.New(httpapi.Options{
		Status:    d.store,
		Campaigns: d.store,
		QueueFor:  worker.QueueFor,
		Schedules: d.sched.Schedules,
		Throttles: provs.Throttles,
		Forecast:  d.forecast,
		RedisOpt:  d.redisOpt,
		Gatherer:  reg,
		Ready:     d.readyChecks(),
		BasicAuth: httpapi.BasicAuth{User: cfg.HTTP.BasicAuth.User, Password: cfg.HTTP.BasicAuth.Password},
		// read-only unless http.ui_allow_changes: a queue deleted from the
		// UI loses every campaign queued in it
		MonitoringReadOnly: !cfg.HTTP.UIAllowChanges,
		Logger:             d.log,
	})
	if err != nil {
		return nil, fmt.Errorf("http api: %w", err)
	}
	d.stop = append(d.stop, func() { _ = d.api.Close() })
	d.ln, err = net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr %s: %w", cfg.HTTP.Addr, err)
	}
	d.httpSrv = &http.Server{Handler: d.api, ReadHeaderTimeout: 10 * time.Second}
	return d, nil
}

// Addr is the HTTP listen address (useful with port 0).
func (d *Daemon) Addr() string { return d.ln.Addr().String() }

func (d *Daemon) readyChecks() []httpapi.Check {
	// The Redis check has a client of its own: the shared one's reads ignore
	// the context (ReadTimeout 5 s), it retries, and while Redis hangs its
	// connections are all taken by stuck calls. This one gives up with the
	// check's deadline, and its socket timeouts bound it too.
	ping := func(ctx context.Context) error { return d.rdb.Ping(ctx).Err() }
	health, err := d.redis.client(func(o *redis.UniversalOptions) {
		o.PoolSize, o.MinIdleConns, o.MaxRetries = 1, 0, -1
		o.DialTimeout = httpapi.DefaultReadyBudget
		o.ReadTimeout, o.WriteTimeout = httpapi.DefaultReadyBudget, httpapi.DefaultReadyBudget
		o.PoolTimeout = httpapi.DefaultReadyBudget
		o.ContextTimeoutEnabled = true
	})
	if err == nil {
		d.stop = append(d.stop, func() { _ = health.Close() })
		ping = func(ctx context.Context) error { return health.Ping(ctx).Err() }
	}
	return []httpapi.Check{
		{Name: "redis", Fn: ping},
		{Name: "nats", Fn: func(ctx context.Context) error {
			if s := d.nc.Status(); s != nats.CONNECTED {
				return fmt.Errorf("nats connection %s", s)
			}
			return nil
		}},
	}
}

// Run serves until ctx is done, then shuts down gracefully: intake stops
// pulling, in-flight batches finish (or are requeued after the shutdown
// timeout), the HTTP server drains, connections close.
func (d *Daemon) Run(ctx context.Context) error {
	defer d.Close()
	if err := d.servers.Start(d.work.Mux()); err != nil {
		return fmt.Errorf("asynq server: %w", err)
	}
	// Forecasts are answered before the HTTP server says ready.
	forecasts, err := intake.SubscribeForecasts(d.nc, d.forecast.Forecast, d.log)
	if err != nil {
		return fmt.Errorf("forecasts on %s: %w", intake.SubjectForecast, err)
	}
	d.log.Info().Str("http", d.Addr()).Str("ui", "http://"+d.Addr()+"/monitoring/").Msg("campaignd running")

	// Every goroutine Run starts is in g: none outlives Run. The first
	// error (the HTTP server's, the intake's) stops them all, as SIGTERM
	// does.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := d.httpSrv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error { return d.work.Dispatcher.Run(gctx) })
	g.Go(func() error { d.sched.Run(gctx, time.Second); return nil })
	g.Go(func() error { return d.work.Reconciler.Run(gctx) })
	g.Go(func() error { forecasts.Serve(gctx); return nil })
	g.Go(func() error {
		if err := d.intake.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("intake: %w", err)
		}
		return nil
	})

	<-gctx.Done()
	d.log.Info().Msg("shutting down: intake stops, in-flight batches finish")
	d.servers.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = d.httpSrv.Shutdown(sctx)
	cancel()
	err = g.Wait()
	d.work.Close()
	return err
}

// Close releases everything New acquired. Safe to call twice.
func (d *Daemon) Close() {
	for i := len(d.stop) - 1; i >= 0; i-- {
		d.stop[i]()
	}
	d.stop = nil
}

// envFor is the validation context of a campaign: the configured apps and
// the kinds the worker sends (worker.Kinds: a valid campaign of another kind
// is rejected rather than accepted and never sent).
func envFor(cfg config.Config, now time.Time) campaigns.Env {
	return campaigns.Env{Apps: cfg.AppInfos(), Now: now, Kinds: worker.Kinds()}
}

// checkSchedules validates every schedule's campaign against its app and
// the kinds this campaignd sends, so that a schedule whose ticks would all
// be rejected stops campaignd at start, naming schedules[i].campaign.
func checkSchedules(cfg config.Config, now time.Time) error {
	for i, sc := range cfg.Schedules {
		c := sc.Campaign
		c.ID = scheduler.ProbeID(sc.Name)
		c.Normalize()
		if errs := c.Validate(envFor(cfg, now)); len(errs) > 0 {
			key := fmt.Sprintf("schedules[%d].campaign", i)
			if errs[0].Field != "" {
				key += "." + errs[0].Field
			}
			return fmt.Errorf("%s: %s", key, errs[0].Message)
		}
	}
	return nil
}

func appLocation(cfg config.Config, app string) *time.Location {
	if a, ok := cfg.Apps[app]; ok && a.Location != nil {
		return a.Location
	}
	return time.UTC
}

// scheduleEntries are the scheduler's entries for cfg's schedules.
func scheduleEntries(cfg config.Config) []scheduler.Entry {
	var entries []scheduler.Entry
	for _, sc := range cfg.Schedules {
		loc := time.UTC
		if sc.Timezone != "" {
			loc, _ = time.LoadLocation(sc.Timezone)
		}
		entries = append(entries, scheduler.Entry{Name: sc.Name, Spec: sc.Cron, Location: loc, Campaign: sc.Campaign})
	}
	return entries
}

// Reload applies a reread config (SIGHUP): its schedules replace the
// running ones. A config that does not validate changes nothing (the
// error says why). Everything else needs a restart: the keys that differ
// are named in the log line.
func (d *Daemon) Reload(cfg *config.Config, loadErr error) error {
	if loadErr != nil {
		d.log.Error().Err(loadErr).Msg("config reload refused; the running config stays")
		return loadErr
	}
	if err := checkSchedules(*cfg, d.clk.Now()); err != nil {
		d.log.Error().Err(err).Msg("config reload refused; the running config stays")
		return err
	}
	ch, err := d.sched.Replace(scheduleEntries(*cfg))
	if err != nil {
		d.log.Error().Err(err).Msg("config reload refused; the running config stays")
		return err
	}
	ev := d.log.Info().Strs("schedules_added", ch.Added).Strs("schedules_removed", ch.Removed).Strs("schedules_changed", ch.Changed)
	if keys := restartKeys(d.cfg, *cfg); len(keys) > 0 {
		ev = ev.Strs("need_a_restart", keys)
	}
	if ch.Empty() {
		ev.Msg("config reloaded: schedules unchanged")
	} else {
		ev.Msg("config reloaded: schedules applied")
	}
	return nil
}

// restartKeys names the config keys (YAML paths) outside schedules that
// differ between the running config and a reread one.
func restartKeys(running, reread config.Config) []string {
	a, errA := running.Sanitized().Fields()
	b, errB := reread.Sanitized().Fields()
	if errA != nil || errB != nil {
		return nil
	}
	// Both are sanitized: a changed secret alone is not named (it needs a
	// restart too).
	av, bv := map[string]string{}, map[string]string{}
	for _, f := range a {
		av[f[0]] = f[1]
	}
	for _, f := range b {
		bv[f[0]] = f[1]
	}
	var keys []string
	seen := map[string]bool{}
	for k, v := range av {
		if strings.HasPrefix(k, "schedules") {
			continue
		}
		if bv[k] != v {
			keys, seen[k] = append(keys, k), true
		}
	}
	for k := range bv {
		if !strings.HasPrefix(k, "schedules") && !seen[k] && av[k] != bv[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
