// Package pushsim is a local emulator of the two provider APIs campaignd
// talks to — Easemob / Agora Chat push (any {org}/{app}) and EngageLab device
// API v4 (under /v4/) — with their request validation, response shapes,
// in-memory state and limits: per-endpoint-group calls per second judged on a
// strict sliding 1 s window that counts every arrival, the label cap, the
// push-task window caps, token expiry. It injects faults on request (5xx,
// latency, dropped connections, seeded) and exposes what it received under
// /_sim/.
//
// Use it as a library in tests (Start, then Server.URL and Sim().Stats) or as
// the pushsim binary.
package pushsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/provider"
)

// TaskWindow are the push-task caps.
type TaskWindow struct {
	MaxCreated        int           // task creations in any sliding Window (3)
	Window            time.Duration // 5m
	MaxRunning        int           // tasks counted at once (3)
	LabelTaskDuration time.Duration // how long a label task runs (5m)
}

// Faults injects failures, seeded so runs repeat.
type Faults struct {
	ErrorRate float64       // share of calls answered 500
	Latency   time.Duration // added before every answer
	DropRate  float64       // share of connections closed without an answer
	Seed      int64
}

// Credentials are the secrets the emulated providers accept.
type Credentials struct {
	EasemobClientID, EasemobClientSecret string // default "pushsim" / "pushsim-secret"
	EngageLabKey, EngageLabSecret        string // default "pushsim" / "pushsim-secret"
}

// Config configures a Sim. The zero value is usable.
type Config struct {
	Credentials       Credentials
	Limits            map[provider.Group]float64 // calls/s per group; nil → the documented defaults (rules.go), a missing group → its default, ≤ 0 → not limited
	LimitsOff         bool                       // count and record violations, refuse nothing
	TaskWindow        TaskWindow
	TokenTTL          time.Duration // default 2h
	Faults            Faults
	Zone              *time.Location // the server's zone for startDate; default UTC
	MaxViolationsKept int            // default 1000
	MaxLabels         int            // Easemob labels per app (DefaultMaxLabels, 100); over it a create answers 403 LimitException
	MaxTagsPerApp     int            // EngageLab tags per app (100,000); over it 27013
	MaxDevicesPerTag  int            // EngageLab devices bound to one tag (100,000); over it 27014
	Clock             clock.Clock
	Logger            zerolog.Logger
}

func (c *Config) defaults() {
	if c.Credentials.EasemobClientID == "" {
		c.Credentials.EasemobClientID = "pushsim"
	}
	if c.Credentials.EasemobClientSecret == "" {
		c.Credentials.EasemobClientSecret = "pushsim-secret"
	}
	if c.Credentials.EngageLabKey == "" {
		c.Credentials.EngageLabKey = "pushsim"
	}
	if c.Credentials.EngageLabSecret == "" {
		c.Credentials.EngageLabSecret = "pushsim-secret"
	}
	lim := defaultLimits()
	for g, r := range c.Limits {
		lim[g] = r
	}
	c.Limits = lim
	if c.TaskWindow.MaxCreated <= 0 {
		c.TaskWindow.MaxCreated = 3
	}
	if c.TaskWindow.Window <= 0 {
		c.TaskWindow.Window = 5 * time.Minute
	}
	if c.TaskWindow.MaxRunning <= 0 {
		c.TaskWindow.MaxRunning = 3
	}
	if c.TaskWindow.LabelTaskDuration <= 0 {
		c.TaskWindow.LabelTaskDuration = 5 * time.Minute
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = 2 * time.Hour
	}
	if c.Zone == nil {
		c.Zone = time.UTC
	}
	if c.MaxViolationsKept <= 0 {
		c.MaxViolationsKept = 1000
	}
	if c.MaxLabels <= 0 {
		c.MaxLabels = DefaultMaxLabels
	}
	if c.MaxTagsPerApp <= 0 {
		c.MaxTagsPerApp = DefaultMaxTagsPerApp
	}
	if c.MaxDevicesPerTag <= 0 {
		c.MaxDevicesPerTag = DefaultMaxDevicesPerTag
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// Push is one push that reached a target.
type Push struct {
	Target   string          `json:"target"`
	Provider string          `json:"provider"`
	App      string          `json:"app"`
	Via      string          `json:"via"` // push/single, push/sync, push/async, label:<name>, broadcast
	At       time.Time       `json:"at"`
	TaskID   string          `json:"task_id,omitempty"`
	Message  json.RawMessage `json:"message,omitempty"`
}

// maxPushesKept bounds the pushes kept per target (counts are exact).
const maxPushesKept = 8

// pushCall is what the pushes of one call (or one task run) share.
type pushCall struct {
	app, via, taskID string
	message          json.RawMessage
}

// pushRef is one kept push: its call and time (Unix ns).
type pushRef struct {
	call *pushCall
	at   int64
}

func (r pushRef) push(target string) Push {
	return Push{Target: target, Provider: "easemob", App: r.call.app, Via: r.call.via,
		At: time.Unix(0, r.at).UTC(), TaskID: r.call.taskID, Message: r.call.message}
}

// Sim is the emulator; it is an http.Handler.
type Sim struct {
	cfg  Config
	caps taskCaps

	easemobMux   *http.ServeMux // routes /{org}/{app}/…
	engagelabMux *http.ServeMux // routes /v4/…

	latency atomic.Int64 // Faults.Latency, changed by SetFaults

	mu            sync.Mutex
	rng           *rand.Rand
	windows       map[string]*window // provider/app/group → arrivals
	calls         map[string]int     // provider/app/group → arrivals
	spans         map[string]*Span   // provider/app/group → first and last arrival
	statuses      map[int]int
	violations    []Violation
	nViolations   int
	rateLimited   int
	limitExc      int
	faulted       int
	dropped       int
	maxTargets    int
	maxLabelUsers int // most usernames in one label member call
	maxTagIDs     int // most ids in one list of a POST /tags/{tag}
	tokens        map[string]tokenInfo
	tokenSeq      int
	taskSeq       int64
	taskLog       []*Task                // every task created, oldest first (the last maxTaskLog)
	easemob       map[string]*easemobApp // org/app
	engagelab     map[string]*engagelabApp
	nTargets      int // distinct (app, target) pushed
	maxPushes     int // most pushes to one (app, target)
	totalPushes   int
}

type tokenInfo struct {
	app     string // org/app
	expires time.Time
}

// New returns a Sim for cfg.
func New(cfg Config) *Sim {
	cfg.defaults()
	s := &Sim{cfg: cfg, caps: taskCaps{cfg: cfg.TaskWindow}}
	s.easemobMux = s.easemobRoutes()
	s.engagelabMux = s.engagelabRoutes()
	s.resetLocked()
	return s
}

func (s *Sim) resetLocked() {
	s.rng = rand.New(rand.NewSource(s.cfg.Faults.Seed))
	s.latency.Store(int64(s.cfg.Faults.Latency))
	s.windows = map[string]*window{}
	s.calls = map[string]int{}
	s.spans = map[string]*Span{}
	s.statuses = map[int]int{}
	s.violations = nil
	s.nViolations, s.rateLimited, s.limitExc, s.faulted, s.dropped, s.maxTargets = 0, 0, 0, 0, 0, 0
	s.maxLabelUsers, s.maxTagIDs = 0, 0
	s.tokens = map[string]tokenInfo{}
	s.easemob = map[string]*easemobApp{}
	s.taskLog = nil
	s.engagelab = map[string]*engagelabApp{}
	s.nTargets, s.maxPushes = 0, 0
	s.totalPushes = 0
}

// Reset clears all state and counters.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetLocked()
}

// ExpireTokens invalidates every issued Easemob token.
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]tokenInfo{}
}

func (s *Sim) now() time.Time { return s.cfg.Clock.Now() }

// admitLocked counts an arrival on provider/app/group stamped at now (when
// its request reached the handler, before any lock: waiting for the
// emulator's own lock must not bunch arrivals up), judges it and reports
// whether it is within the limit. Called with s.mu held.
func (s *Sim) admitLocked(prov, app string, g provider.Group, now time.Time) bool {
	key := prov + "/" + app + "/" + string(g)
	s.calls[key]++
	if sp := s.spans[key]; sp == nil {
		s.spans[key] = &Span{First: now, Last: now}
	} else {
		sp.First, sp.Last = minTime(sp.First, now), maxTime(sp.Last, now)
	}
	limit, limited := s.cfg.Limits[g]
	if !limited || limit <= 0 {
		return true
	}
	w := s.windows[key]
	if w == nil {
		w = &window{}
		s.windows[key] = w
	}
	span, allowed := judgeSpan(limit)
	n := w.arrive(now, span)
	if float64(n) <= allowed {
		return true
	}
	s.nViolations++
	if len(s.violations) < s.cfg.MaxViolationsKept {
		s.violations = append(s.violations, Violation{Provider: prov, App: app, Group: string(g), At: now, InWindow: n, Limit: limit})
	}
	if s.cfg.LimitsOff {
		return true
	}
	s.rateLimited++
	return false
}

type faultKind int

const (
	faultNone faultKind = iota
	faultError
	faultDrop
)

func (s *Sim) faultLocked() faultKind {
	f := s.cfg.Faults
	if f.DropRate > 0 && s.rng.Float64() < f.DropRate {
		s.dropped++
		return faultDrop
	}
	if f.ErrorRate > 0 && s.rng.Float64() < f.ErrorRate {
		s.faulted++
		return faultError
	}
	return faultNone
}

// recordPushLocked records a push of call to user u at at.
func (s *Sim) recordPushLocked(u *userState, call *pushCall, at time.Time) {
	if u.pushes == 0 {
		s.nTargets++
	} else {
		if len(u.older) >= maxPushesKept-1 {
			copy(u.older, u.older[1:])
			u.older = u.older[:maxPushesKept-2]
		}
		u.older = append(u.older, u.last)
	}
	u.last = pushRef{call: call, at: at.UnixNano()}
	u.pushes++
	s.totalPushes++
	s.maxPushes = max(s.maxPushes, u.pushes)
}

// Pushes returns the pushes kept for a target (the last few; counts in
// Stats and PushCount are exact), across apps, oldest first.
func (s *Sim) Pushes(target string) []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runDueTasksLocked(s.now())
	var out []Push
	for _, a := range s.easemob {
		u := a.users[target]
		if u == nil || u.pushes == 0 {
			continue
		}
		for _, r := range u.older {
			out = append(out, r.push(target))
		}
		out = append(out, u.last.push(target))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// PushCount returns how many pushes reached target, across apps.
func (s *Sim) PushCount(target string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runDueTasksLocked(s.now())
	n := 0
	for _, a := range s.easemob {
		if u := a.users[target]; u != nil {
			n += u.pushes
		}
	}
	return n
}

// Stats is a snapshot of what the Sim received and answered.
type Stats struct {
	Calls                map[string]int  `json:"calls"` // "provider/app/group" → arrivals
	Spans                map[string]Span `json:"spans"` // "provider/app/group" → first and last arrival
	TotalCalls           int             `json:"total_calls"`
	Statuses             map[int]int     `json:"statuses"` // HTTP status → answers
	Violations           int             `json:"violations"`
	ViolationList        []Violation     `json:"violation_list,omitempty"`
	RateLimited          int             `json:"rate_limited"`             // 429s answered
	LimitExceptions      int             `json:"limit_exceptions"`         // 403 LimitException answered
	Faulted              int             `json:"faulted"`                  // injected 5xx
	Dropped              int             `json:"dropped"`                  // injected dropped connections
	MaxTargetsPerCall    int             `json:"max_targets_per_call"`     // push/single, accepted calls
	MaxLabelUsersPerCall int             `json:"max_label_users_per_call"` // usernames in one label member add/remove call whose body parsed (refused ones included)
	MaxTagIDsPerCall     int             `json:"max_tag_ids_per_call"`     // registration ids in one list (add or remove) of a POST /v4/tags/{tag} whose body parsed (refused ones included)
	TargetsPushed        int             `json:"targets_pushed"`           // distinct targets
	TotalPushes          int             `json:"total_pushes"`
	MaxPushesOneID       int             `json:"max_pushes_one_target"`
	Tasks                []Task          `json:"tasks"`
	TaskLog              []Task          `json:"task_log"` // every task created since the last reset (up to 10,000), oldest first
}

// Stats returns a snapshot.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runDueTasksLocked(s.now())
	st := Stats{
		Calls:                map[string]int{},
		Statuses:             map[int]int{},
		Violations:           s.nViolations,
		ViolationList:        append([]Violation(nil), s.violations...),
		RateLimited:          s.rateLimited,
		LimitExceptions:      s.limitExc,
		Faulted:              s.faulted,
		Dropped:              s.dropped,
		MaxTargetsPerCall:    s.maxTargets,
		MaxLabelUsersPerCall: s.maxLabelUsers,
		MaxTagIDsPerCall:     s.maxTagIDs,
		TargetsPushed:        s.nTargets,
		TotalPushes:          s.totalPushes,
		MaxPushesOneID:       s.maxPushes,
		Tasks:                []Task{},
	}
	for k, v := range s.calls {
		st.Calls[k] = v
		st.TotalCalls += v
	}
	st.Spans = make(map[string]Span, len(s.spans))
	for k, sp := range s.spans {
		st.Spans[k] = *sp
	}
	for k, v := range s.statuses {
		st.Statuses[k] = v
	}
	for _, a := range s.easemob {
		for _, t := range a.tasks {
			st.Tasks = append(st.Tasks, *t)
		}
	}
	sort.Slice(st.Tasks, func(i, j int) bool { return st.Tasks[i].CreatedAt.Before(st.Tasks[j].CreatedAt) })
	st.TaskLog = make([]Task, 0, len(s.taskLog))
	for _, t := range s.taskLog {
		st.TaskLog = append(st.TaskLog, *t)
	}
	return st
}

// Span is when the first and the last arrival on one provider/app/group
// came.
type Span struct {
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// CallsFor returns the arrivals counted on one provider/app/group.
func (st Stats) CallsFor(prov, app string, g provider.Group) int {
	return st.Calls[prov+"/"+app+"/"+string(g)]
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ServeHTTP serves both provider APIs and the /_sim/ inspection API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/_sim/"):
		s.serveSim(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	if strings.HasPrefix(path, "/v4/") {
		s.serveEngageLab(sw, r)
	} else {
		s.serveEasemob(sw, r)
	}
	if sw.status != 0 {
		s.mu.Lock()
		s.statuses[sw.status]++
		s.mu.Unlock()
	}
}

// drop closes the client connection without an answer.
func drop(w http.ResponseWriter) {
	if sw, ok := w.(*statusWriter); ok {
		w = sw.ResponseWriter
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// SetFaults replaces the faults injected from now on (an outage:
// ErrorRate 1; a slow provider: Latency).
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	s.cfg.Faults.ErrorRate, s.cfg.Faults.DropRate = f.ErrorRate, f.DropRate
	s.latency.Store(int64(f.Latency))
	s.mu.Unlock()
}

func (s *Sim) sleepLatency(ctx context.Context) {
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Sim) serveSim(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_sim/stats" && r.Method == http.MethodGet:
		writeJSON(w, 200, s.Stats())
	case r.URL.Path == "/_sim/pushes" && r.Method == http.MethodGet:
		t := r.URL.Query().Get("target")
		if t == "" {
			writeJSON(w, 400, map[string]string{"error": "target query parameter required"})
			return
		}
		writeJSON(w, 200, map[string]any{"target": t, "count": s.PushCount(t), "pushes": s.Pushes(t)})
	case r.URL.Path == "/_sim/tasks" && r.Method == http.MethodGet:
		log := s.Stats().TaskLog
		if r.URL.Query().Get("format") != "text" {
			writeJSON(w, 200, log)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%-4s %-9s %-12s %-12s %-12s %s\n", "#", "kind", "label", "created", "ends", "reached")
		for i, t := range log {
			fmt.Fprintf(w, "%-4d %-9s %-12s %-12s %-12s %d\n", i+1, t.Kind, t.Label,
				t.CreatedAt.Format("15:04:05.000"), t.EndsAt.Format("15:04:05.000"), t.Reached)
		}
	case r.URL.Path == "/_sim/reset" && r.Method == http.MethodPost:
		s.Reset()
		writeJSON(w, 200, map[string]string{"status": "reset"})
	case r.URL.Path == "/_sim/faults" && r.Method == http.MethodPost:
		var f struct {
			ErrorRate float64 `json:"error_rate"`
			DropRate  float64 `json:"drop_rate"`
			LatencyMS int64   `json:"latency_ms"`
		}
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil || f.ErrorRate < 0 || f.ErrorRate > 1 || f.DropRate < 0 || f.DropRate > 1 || f.LatencyMS < 0 {
			writeJSON(w, 400, map[string]string{"error": `want {"error_rate": 0..1, "drop_rate": 0..1, "latency_ms": ≥ 0}`})
			return
		}
		s.SetFaults(Faults{ErrorRate: f.ErrorRate, DropRate: f.DropRate, Latency: time.Duration(f.LatencyMS) * time.Millisecond})
		writeJSON(w, 200, map[string]string{"status": "faults set"})
	case r.URL.Path == "/_sim/expire-tokens" && r.Method == http.MethodPost:
		s.ExpireTokens()
		writeJSON(w, 200, map[string]string{"status": "tokens expired"})
	default:
		if r.Method == http.MethodGet && s.serveInspect(w, r) { // labels, label, user, templates, template, tag
			return
		}
		writeJSON(w, 404, map[string]string{"error": "unknown /_sim/ path"})
	}
}

// Server is a Sim listening on a TCP address.
type Server struct {
	sim *Sim
	srv *http.Server
	ln  net.Listener
}

// Start serves a new Sim on a free port of 127.0.0.1.
func Start(cfg Config) (*Server, error) { return Listen(cfg, "127.0.0.1:0") }

// Listen serves a new Sim on addr.
func Listen(cfg Config, addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pushsim: listen %s: %w", addr, err)
	}
	sim := New(cfg)
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sim.cfg.Logger.Error().Err(err).Msg("pushsim: serve")
		}
	}()
	return &Server{sim: sim, srv: srv, ln: ln}, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:9900.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Sim is the emulator behind the server.
func (s *Server) Sim() *Sim { return s.sim }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}
