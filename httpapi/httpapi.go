// Package httpapi is campaignd's HTTP side (docs/interface.md §6): the asynq web UI
// (asynqmon) under /monitoring/, the status API, the campaign list and
// the schedules, pages for people under /campaigns/, Prometheus metrics
// and health checks, with optional basic auth on everything but /healthz
// and /readyz.
package httpapi

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/scheduler"
)

// StatusReader reads campaign status and failures (store.Store).
type StatusReader interface {
	Lookup(ctx context.Context, id string) (campaigns.Status, bool, error)
	EachFailure(ctx context.Context, id string, fn func(campaigns.Failure) error) (bool, error)
}

// Check is one readiness check. Fn should return once ctx is done; one that
// does not is still never waited for (see ReadyBudget).
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// DefaultReadyBudget is how long /readyz waits for its checks, together.
const DefaultReadyBudget = 400 * time.Millisecond

// Options configure the server.
type Options struct {
	Status StatusReader
	// Campaigns serves GET /api/campaigns and the pages under /campaigns/
	// (store.Store); without it they are not served.
	Campaigns Lister
	// QueueFor names the asynq queue of a campaign's priority
	// (worker.QueueFor), for the detail page's link to its tasks; without
	// it the link goes to every queue.
	QueueFor func(campaigns.Priority) string
	// Schedules reads the recurring campaigns with their next n fire
	// times and last tick ((*scheduler.Scheduler).Schedules), for GET
	// /api/schedules and the schedules on /campaigns/; without it neither
	// is served.
	Schedules func(n int) []scheduler.ScheduleInfo
	// Throttles reads the limits of app a campaign of kind runs below
	// because the provider refuses calls for rate, for the status of
	// campaigns not final (GET /api/campaigns/{id}, the campaign's page);
	// without it (or without Campaigns) nothing is said.
	Throttles func(ctx context.Context, app string, kind campaigns.Kind) ([]campaigns.Throttle, error)
	// Forecast answers POST /api/forecast and gives the ETA of campaigns
	// not final (GET /api/campaigns/{id}, the pages); without it neither.
	Forecast           Forecaster
	RedisOpt           asynq.RedisConnOpt
	Gatherer           prometheus.Gatherer
	Ready              []Check
	ReadyBudget        time.Duration // default DefaultReadyBudget
	BasicAuth          BasicAuth     // every path but /healthz and /readyz, when User is set
	MonitoringReadOnly bool
	Logger             zerolog.Logger
}

// Forecaster answers forecasts and tells how a campaign sending is
// expected to go (the daemon's forecaster).
type Forecaster interface {
	// Forecast answers for a campaign JSON (with its audience's count
	// when the caller made it, else -1).
	Forecast(ctx context.Context, campaign []byte, given campaigns.Counted) (campaigns.Forecast, error)
	// Outlook is a stored campaign's forecast now (DoneAt is its ETA),
	// or nil when nothing can be said.
	Outlook(ctx context.Context, c *campaigns.Campaign, st campaigns.Status) *campaigns.Forecast
}

// BasicAuth is the user and password the HTTP side asks for.
type BasicAuth struct {
	User, Password string
}

// Server is the HTTP handler.
type Server struct {
	o    Options
	mux  *http.ServeMux
	mon  *asynqmon.HTTPHandler
	root http.Handler

	checks []*readyCheck
}

// New builds the handler.
func New(o Options) (*Server, error) {
	if o.Status == nil || o.RedisOpt == nil || o.Gatherer == nil {
		return nil, errors.New("httpapi: Status, RedisOpt and Gatherer are required")
	}
	o.ReadyBudget = cmp.Or(o.ReadyBudget, DefaultReadyBudget)
	if o.ReadyBudget < 0 {
		return nil, fmt.Errorf("httpapi: Options.ReadyBudget out of range: %s", o.ReadyBudget)
	}
	s := &Server{o: o, mux: http.NewServeMux()}
	for _, c := range o.Ready {
		s.checks = append(s.checks, &readyCheck{Check: c})
	}
	s.mon = asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: o.RedisOpt, ReadOnly: o.MonitoringReadOnly})
	s.mux.Handle(s.mon.RootPath()+"/", linkCampaigns(s.mon))
	s.mux.Handle("GET /monitoring", http.RedirectHandler("/monitoring/", http.StatusMovedPermanently))
	s.mux.HandleFunc("GET /api/campaigns/{id}", s.status)
	s.mux.HandleFunc("GET /api/campaigns/{id}/failures", s.failures)
	if o.Campaigns != nil {
		s.mux.HandleFunc("GET /api/campaigns", s.list)
		s.mux.HandleFunc("GET /campaigns/{$}", s.listPage)
		s.mux.HandleFunc("GET /campaigns/{id}", s.detailPage)
		s.mux.Handle("GET /campaigns", http.RedirectHandler("/campaigns/", http.StatusMovedPermanently))
	}
	if o.Schedules != nil {
		s.mux.HandleFunc("GET /api/schedules", s.schedules)
	}
	if o.Forecast != nil {
		s.mux.HandleFunc("POST /api/forecast", s.forecast)
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/monitoring/", http.StatusFound)
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	})
	s.root = s.logged(s.auth(s.mux))
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.root.ServeHTTP(w, r) }

// Close releases asynqmon's Redis connection.
func (s *Server) Close() error { return s.mon.Close() }

func (s *Server) auth(next http.Handler) http.Handler {
	if s.o.BasicAuth.User == "" {
		return next
	}
	user, pass := []byte(s.o.BasicAuth.User), []byte(s.o.BasicAuth.Password)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), user) != 1 || subtle.ConstantTimeCompare([]byte(p), pass) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="campaignd", charset="UTF-8"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "authentication required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wall clock.Real // a request's duration, for the debug line
		start := wall.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
			return
		}
		s.o.Logger.Debug().Str("method", r.Method).Str("path", r.URL.Path).Int("status", rec.code).
			Dur("took", wall.Now().Sub(start)).Msg("http")
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !campaigns.ValidID(id) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id must match [A-Za-z0-9_-]{1,128}"})
		return
	}
	st, found, err := s.o.Status.Lookup(r.Context(), id)
	switch {
	case err != nil:
		s.o.Logger.Warn().Err(err).Str("campaign", id).Msg("status lookup")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "status store unavailable"})
	case !found:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown campaign", "id": id})
	default:
		if !st.Status.Final() && s.o.Campaigns != nil {
			if c, err := s.o.Campaigns.Campaign(r.Context(), id); err == nil {
				st.Throttled = s.throttled(r.Context(), c.App, st)
				if fc := s.outlook(r.Context(), c, st); fc != nil {
					st.ETA = fc.DoneAt
				}
			}
		}
		writeJSON(w, http.StatusOK, st)
	}
}

// outlook is what Options.Forecast says of a campaign not final (nil
// when it cannot say).
func (s *Server) outlook(ctx context.Context, c *campaigns.Campaign, st campaigns.Status) *campaigns.Forecast {
	if s.o.Forecast == nil || st.Status.Final() {
		return nil
	}
	return s.o.Forecast.Outlook(ctx, c, st)
}

// throttled is what Options.Throttles says for a campaign of app (nothing
// when it cannot say).
func (s *Server) throttled(ctx context.Context, app string, st campaigns.Status) []campaigns.Throttle {
	if s.o.Throttles == nil {
		return nil
	}
	if app == "" {
		app = "default"
	}
	th, err := s.o.Throttles(ctx, app, st.Kind)
	if err != nil {
		s.o.Logger.Debug().Err(err).Str("campaign", st.ID).Msg("effective limits not read")
		return nil
	}
	return th
}

func (s *Server) failures(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !campaigns.ValidID(id) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id must match [A-Za-z0-9_-]{1,128}"})
		return
	}
	if _, found, err := s.o.Status.Lookup(r.Context(), id); err != nil || !found {
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "status store unavailable"})
			return
		}
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown campaign", "id": id})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	_, err := s.o.Status.EachFailure(r.Context(), id, func(f campaigns.Failure) error { return enc.Encode(f) })
	if err != nil {
		s.o.Logger.Warn().Err(err).Str("campaign", id).Msg("failures listing cut short")
	}
}

// ready answers within the budget: the checks run concurrently, each with a
// deadline within the budget, and one that has not answered by then counts
// as failed. A check still running from an earlier request is joined, not
// started again, so a check that ignores its context holds one goroutine at
// most, never the handler.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	budget := s.o.ReadyBudget
	timer := time.NewTimer(budget)
	defer timer.Stop()
	runs := make([]*checkRun, len(s.checks))
	for i, c := range s.checks {
		runs[i] = c.start(r.Context(), budget)
	}
	failed := map[string]string{}
	expired := false
	for i, run := range runs {
		if !expired {
			select {
			case <-run.done:
			case <-timer.C:
				expired = true
			case <-r.Context().Done():
				return // the client is gone
			}
		}
		select {
		case <-run.done:
			if run.err != nil {
				failed[s.checks[i].Name] = scrub(run.err.Error())
			}
		default:
			failed[s.checks[i].Name] = fmt.Sprintf("no answer within %s", budget)
		}
	}
	if len(failed) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failed": failed})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// readyCheck is a Check and its run in progress, if any.
type readyCheck struct {
	Check
	mu  sync.Mutex
	cur *checkRun
}

// checkRun is one run of a check; err is set before done is closed.
type checkRun struct {
	done chan struct{}
	err  error
}

// start runs the check in a goroutine, or returns the run still in
// progress. Its deadline is 3/4 of budget from now, so that a check that
// honours its ctx gives its own reason (an i/o timeout) before the handler
// stops waiting.
func (c *readyCheck) start(ctx context.Context, budget time.Duration) *checkRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		select {
		case <-c.cur.done:
		default:
			return c.cur
		}
	}
	run := &checkRun{done: make(chan struct{})}
	c.cur = run
	// The run may outlive this request (and serve the next): not cancelled with it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget*3/4)
	go func() {
		defer close(run.done)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				run.err = fmt.Errorf("check panicked: %v", p)
			}
		}()
		run.err = c.Fn(cctx)
	}()
	return run
}

// scrub removes user info (passwords) from any URL in a message.
func scrub(msg string) string {
	fields := strings.Fields(msg)
	for i, f := range fields {
		if u, err := url.Parse(strings.Trim(f, `"',;()`)); err == nil && u.User != nil {
			fields[i] = strings.Replace(f, u.User.String()+"@", "***@", 1)
		}
	}
	return fmt.Sprint(strings.Join(fields, " "))
}
