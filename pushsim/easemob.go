package pushsim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/campaignd/campaignd/provider"
)

const maxBody = 4 << 20

type label struct {
	Name        string
	Description string
	CreatedAt   int64
	members     map[string]int64 // username → added at (ms)
}

// userState is one user an app knows: pushed, put in a label or given
// settings. It also holds the user's push record, kept compact because a
// campaign run makes millions of them: an exact count, the last push inline,
// a few older ones, settings only once set.
type userState struct {
	created  int64
	modified int64
	pushes   int
	last     pushRef
	older    []pushRef // up to maxPushesKept-1, oldest first
	set      *userSettings
}

type userSettings struct {
	nickname string
	style    int
	dnd      bool
	dndStart int
	dndEnd   int
	modes    map[string]NotifyMode // chattype/key
	language string
}

func (u *userState) settings() *userSettings {
	if u.set == nil {
		u.set = &userSettings{}
	}
	return u.set
}

// NotifyMode is a user's notification mode for one chat, as stored and
// answered: IgnoreDuration is the end of the quiet period (Unix ms, 0 for
// none), as the API answers it.
type NotifyMode struct {
	Type           string `json:"type"`
	IgnoreInterval string `json:"ignoreInterval"`
	IgnoreDuration int64  `json:"ignoreDuration"`
}

type template struct {
	Name           string `json:"name"`
	CreateAt       int64  `json:"createAt"`
	UpdateAt       int64  `json:"updateAt"`
	TitlePattern   string `json:"title_pattern"`
	ContentPattern string `json:"content_pattern"`
}

type easemobApp struct {
	org, app  string
	labels    map[string]*label
	users     map[string]*userState
	templates map[string]*template
	tasks     []*Task
}

// easemobKey is how an Easemob app is keyed in Sim.easemob (and named in
// Stats and Push.App): "org/app".
func easemobKey(org, app string) string { return org + "/" + app }

func (s *Sim) easemobAppLocked(org, app string) *easemobApp {
	k := easemobKey(org, app)
	a := s.easemob[k]
	if a == nil {
		a = &easemobApp{org: org, app: app, labels: map[string]*label{}, users: map[string]*userState{}, templates: map[string]*template{}}
		s.easemob[k] = a
	}
	return a
}

func (a *easemobApp) user(name string, now time.Time) *userState {
	u := a.users[name]
	if u == nil {
		ms := now.UnixMilli()
		u = &userState{created: ms, modified: ms}
		a.users[name] = u
	}
	return u
}

// easemobError is the error body shape of the Easemob REST API.
func easemobError(w http.ResponseWriter, status int, typ, desc string, now time.Time) {
	writeJSON(w, status, map[string]any{
		"error":             typ,
		"exception":         "com.easemob.push.exception." + typ,
		"timestamp":         now.UnixMilli(),
		"duration":          0,
		"error_description": desc,
	})
}

func easemobOK(w http.ResponseWriter, now time.Time, fields map[string]any) {
	out := map[string]any{"timestamp": now.UnixMilli(), "duration": 0}
	for k, v := range fields {
		out[k] = v
	}
	writeJSON(w, http.StatusOK, out)
}

type easemobRoute struct {
	group   provider.Group
	handler func(s *Sim, w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time)
	args    []string
}

// routeEasemob maps method and path segments after /{org}/{app}/ to a route.
func routeEasemob(method string, p []string) (easemobRoute, bool) {
	n := len(p)
	switch {
	case n == 1 && p[0] == "token" && method == http.MethodPost:
		return easemobRoute{group: provider.GroupToken}, true
	case n == 3 && p[0] == "push" && p[1] == "sync" && method == http.MethodPost:
		return easemobRoute{provider.GroupPushSync, (*Sim).emPushSync, p[2:]}, true
	case n == 3 && p[0] == "push" && p[1] == "async" && method == http.MethodPost:
		return easemobRoute{provider.GroupPushAsync, (*Sim).emPushAsync, p[2:]}, true
	case n == 2 && p[0] == "push" && p[1] == "single" && method == http.MethodPost:
		return easemobRoute{provider.GroupPushSingle, (*Sim).emPushSingle, nil}, true
	case n == 3 && p[0] == "push" && p[1] == "list" && p[2] == "label" && method == http.MethodPost:
		return easemobRoute{provider.GroupPushLabel, (*Sim).emPushLabel, nil}, true
	case n == 2 && p[0] == "push" && p[1] == "task" && method == http.MethodPost:
		return easemobRoute{provider.GroupPushTask, (*Sim).emPushTask, nil}, true
	case n == 2 && p[0] == "push" && p[1] == "label":
		switch method {
		case http.MethodPost:
			return easemobRoute{provider.GroupLabel, (*Sim).emLabelCreate, nil}, true
		case http.MethodGet:
			return easemobRoute{provider.GroupLabel, (*Sim).emLabelList, nil}, true
		}
	case n == 3 && p[0] == "push" && p[1] == "label":
		switch method {
		case http.MethodGet:
			return easemobRoute{provider.GroupLabel, (*Sim).emLabelGet, p[2:]}, true
		case http.MethodDelete:
			return easemobRoute{provider.GroupLabel, (*Sim).emLabelDelete, p[2:]}, true
		}
	case n == 4 && p[0] == "push" && p[1] == "label" && p[3] == "user":
		switch method {
		case http.MethodPost:
			return easemobRoute{provider.GroupLabelUser, (*Sim).emMembersAdd, p[2:3]}, true
		case http.MethodDelete:
			return easemobRoute{provider.GroupLabelUser, (*Sim).emMembersRemove, p[2:3]}, true
		case http.MethodGet:
			return easemobRoute{provider.GroupLabelUser, (*Sim).emMembersList, p[2:3]}, true
		}
	case n == 5 && p[0] == "push" && p[1] == "label" && p[3] == "user" && method == http.MethodGet:
		return easemobRoute{provider.GroupLabelUser, (*Sim).emMemberGet, []string{p[2], p[4]}}, true
	case n == 2 && p[0] == "users" && method == http.MethodPut:
		return easemobRoute{provider.GroupUser, (*Sim).emUserPut, p[1:]}, true
	case n == 4 && p[0] == "users" && p[2] == "notification" && p[3] == "language":
		switch method {
		case http.MethodPut:
			return easemobRoute{provider.GroupNotification, (*Sim).emLanguagePut, p[1:2]}, true
		case http.MethodGet:
			return easemobRoute{provider.GroupNotification, (*Sim).emLanguageGet, p[1:2]}, true
		}
	case n == 5 && p[0] == "users" && p[2] == "notification":
		switch method {
		case http.MethodPut:
			return easemobRoute{provider.GroupNotification, (*Sim).emModePut, []string{p[1], p[3], p[4]}}, true
		case http.MethodGet:
			return easemobRoute{provider.GroupNotification, (*Sim).emModeGet, []string{p[1], p[3], p[4]}}, true
		}
	case n == 2 && p[0] == "notification" && p[1] == "template" && method == http.MethodPost:
		return easemobRoute{provider.GroupTemplate, (*Sim).emTemplateCreate, nil}, true
	case n == 3 && p[0] == "notification" && p[1] == "template":
		switch method {
		case http.MethodGet:
			return easemobRoute{provider.GroupTemplate, (*Sim).emTemplateGet, p[2:]}, true
		case http.MethodDelete:
			return easemobRoute{provider.GroupTemplate, (*Sim).emTemplateDelete, p[2:]}, true
		}
	}
	return easemobRoute{}, false
}

func splitPath(escaped string) ([]string, error) {
	raw := strings.Split(strings.Trim(escaped, "/"), "/")
	out := make([]string, len(raw))
	for i, seg := range raw {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return nil, err
		}
		out[i] = u
	}
	return out, nil
}

func (s *Sim) serveEasemob(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	segs, err := splitPath(r.URL.EscapedPath())
	if err != nil || len(segs) < 3 {
		easemobError(w, http.StatusNotFound, "url is invalid", "request path does not exist", now)
		return
	}
	org, app := segs[0], segs[1]
	route, ok := routeEasemob(r.Method, segs[2:])
	if !ok {
		easemobError(w, http.StatusNotFound, "url is invalid", "request path does not exist", now)
		return
	}
	appKey := easemobKey(org, app)

	if route.group == provider.GroupToken {
		s.mu.Lock()
		s.admitLocked("easemob", appKey, provider.GroupToken, now)
		fault := s.faultLocked()
		s.mu.Unlock()
		s.sleepLatency(r.Context())
		if s.answerFault(w, fault, false, now) {
			return
		}
		s.emToken(w, r, appKey, now)
		return
	}

	s.mu.Lock()
	admitted := s.admitLocked("easemob", appKey, route.group, now)
	var authed bool
	if admitted {
		authed = s.authEasemobLocked(r, appKey, now)
	}
	fault := faultNone
	if admitted && authed {
		fault = s.faultLocked()
	}
	s.mu.Unlock()
	s.sleepLatency(r.Context())
	switch {
	case !admitted:
		w.Header().Set("Retry-After", "1")
		easemobError(w, http.StatusTooManyRequests, "TooManyRequests", "request limit exceeded for "+string(route.group), now)
		return
	case !authed:
		writeJSON(w, http.StatusUnauthorized, map[string]any{
			"error": "unauthorized", "exception": "EasemobUnauthorizedException",
			"timestamp": now.UnixMilli(), "duration": 0,
			"error_description": "Unable to authenticate due to expired or invalid access token",
		})
		return
	}
	if s.answerFault(w, fault, false, now) {
		return
	}
	s.mu.Lock()
	a := s.easemobAppLocked(org, app)
	s.runDueTasksLocked(now)
	s.mu.Unlock()
	route.handler(s, w, r, a, route.args, now)
}

// answerFault writes an injected fault; it reports whether one was written.
func (s *Sim) answerFault(w http.ResponseWriter, f faultKind, engagelab bool, now time.Time) bool {
	switch f {
	case faultDrop:
		drop(w)
		return true
	case faultError:
		if engagelab {
			engagelabError(w, http.StatusInternalServerError, 27000, "internal error (injected)")
		} else {
			easemobError(w, http.StatusInternalServerError, "InternalServerError", "internal error (injected)", now)
		}
		return true
	}
	return false
}

func (s *Sim) authEasemobLocked(r *http.Request, appKey string, now time.Time) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return false
	}
	ti, ok := s.tokens[tok]
	return ok && ti.app == appKey && now.Before(ti.expires)
}

func (s *Sim) emToken(w http.ResponseWriter, r *http.Request, appKey string, now time.Time) {
	var req struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := decodeBody(r, &req); err != nil {
		easemobError(w, http.StatusBadRequest, "json_parse", err.Error(), now)
		return
	}
	if req.GrantType != "client_credentials" {
		easemobError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials", now)
		return
	}
	if req.ClientID != s.cfg.EasemobClientID || req.ClientSecret != s.cfg.EasemobClientSecret {
		easemobError(w, http.StatusUnauthorized, "invalid_client", "invalid client credentials", now)
		return
	}
	s.mu.Lock()
	s.tokenSeq++
	tok := fmt.Sprintf("YWMt-pushsim-%d-%d", s.tokenSeq, now.UnixNano())
	s.tokens[tok] = tokenInfo{app: appKey, expires: now.Add(s.cfg.TokenTTL)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int64(s.cfg.TokenTTL / time.Second),
		"application":  "pushsim-" + appKey,
	})
}

func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("body over %d bytes", maxBody)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

type pushBody struct {
	Targets     []string        `json:"targets"`
	Strategy    *int            `json:"strategy"`
	PushMessage json.RawMessage `json:"pushMessage"`
	StartDate   *string         `json:"startDate"`
}

// checkPush validates strategy and pushMessage; it writes the error and
// returns false when they are wrong.
func checkPush(w http.ResponseWriter, b *pushBody, now time.Time) bool {
	if b.Strategy != nil {
		if err := provider.ValidateStrategy(*b.Strategy); err != nil {
			easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
			return false
		}
	}
	var obj map[string]any
	if len(b.PushMessage) == 0 || json.Unmarshal(b.PushMessage, &obj) != nil || len(obj) == 0 {
		easemobError(w, http.StatusBadRequest, "MessageException", "bad_request: pushMessage must be a non-empty object", now)
		return false
	}
	return true
}

func (s *Sim) emPushSingle(w http.ResponseWriter, r *http.Request, a *easemobApp, _ []string, now time.Time) {
	var b pushBody
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if len(b.Targets) == 0 || len(b.Targets) > provider.MaxPushTargets {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException",
			fmt.Sprintf("targets must hold 1 to %d user ids, got %d", provider.MaxPushTargets, len(b.Targets)), now)
		return
	}
	if !checkPush(w, &b, now) {
		return
	}
	// This is the emulator's hottest path: ids are checked and the answer is
	// written by hand outside the lock; the lock covers only the records.
	known := make([]bool, len(b.Targets))
	for i, t := range b.Targets {
		known[i] = !strings.HasPrefix(t, "invalid-") && provider.ValidateTargetID(t) == nil
	}
	call := &pushCall{app: a.org + "/" + a.app, via: "push/single", message: b.PushMessage}
	s.mu.Lock()
	s.maxTargets = max(s.maxTargets, len(b.Targets))
	for i, t := range b.Targets {
		if known[i] {
			s.recordPushLocked(a.user(t, now), call, now)
		}
	}
	s.mu.Unlock()
	out := make([]byte, 0, 64+80*len(b.Targets))
	out = append(out, `{"timestamp":`...)
	out = strconv.AppendInt(out, now.UnixMilli(), 10)
	out = append(out, `,"duration":0,"data":[`...)
	for i, t := range b.Targets {
		if i > 0 {
			out = append(out, ',')
		}
		id, _ := json.Marshal(t)
		out = append(out, `{"id":`...)
		out = append(out, id...)
		if known[i] {
			out = append(out, `,"pushStatus":"ASYNC_SUCCESS","desc":"async success."}`...)
		} else {
			out = append(out, `,"pushStatus":"FAIL","desc":"appUser not exists"}`...)
		}
	}
	out = append(out, "]}\n"...)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

func (s *Sim) emPushSync(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	s.emPushOne(w, r, a, args[0], now, true)
}

func (s *Sim) emPushAsync(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	s.emPushOne(w, r, a, args[0], now, false)
}

func (s *Sim) emPushOne(w http.ResponseWriter, r *http.Request, a *easemobApp, target string, now time.Time, sync bool) {
	var b pushBody
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if !checkPush(w, &b, now) {
		return
	}
	if strings.HasPrefix(target, "invalid-") || provider.ValidateTargetID(target) != nil {
		status := "FAIL"
		if !sync {
			status = "ASYNC_SUCCESS" // async only accepts; failures happen later
		}
		easemobOK(w, now, map[string]any{"data": []map[string]any{{"pushStatus": status, "desc": "appUser not exists"}}})
		return
	}
	via := "push/async"
	if sync {
		via = "push/sync"
	}
	s.mu.Lock()
	s.recordPushLocked(a.user(target, now), &pushCall{app: a.org + "/" + a.app, via: via, message: b.PushMessage}, now)
	s.mu.Unlock()
	if sync {
		easemobOK(w, now, map[string]any{"data": []map[string]any{{
			"pushStatus": "SUCCESS",
			"data":       map[string]any{"code": 200, "message": "Success", "data": map[string]any{"sendResult": true, "msgCode": 200, "failTokens": []string{}, "expireTokens": []string{}}},
		}}})
		return
	}
	easemobOK(w, now, map[string]any{"data": []map[string]any{{"pushStatus": "ASYNC_SUCCESS", "data": "", "desc": "success"}}})
}

// taskStart validates an optional startDate (server zone, 1 h..30 d ahead).
func (s *Sim) taskStart(w http.ResponseWriter, b *pushBody, now time.Time) (time.Time, bool) {
	if b.StartDate == nil || *b.StartDate == "" {
		return now, true
	}
	if err := provider.ValidateStartDate(*b.StartDate, s.cfg.Zone, now); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return time.Time{}, false
	}
	t, _ := provider.ParseStartDate(*b.StartDate, s.cfg.Zone)
	return t, true
}

// maxTaskLog bounds the task history Stats.TaskLog keeps.
const maxTaskLog = 10_000

// createTaskLocked applies the task-window caps; it writes a LimitException
// and returns nil when a cap is reached.
func (s *Sim) createTaskLocked(w http.ResponseWriter, a *easemobApp, kind, labelName string, start time.Time, msg []byte, now time.Time) *Task {
	if ok, why := s.caps.check(a.tasks, now); !ok {
		s.limitExc++
		s.cfg.Logger.Debug().Str("app", a.org+"/"+a.app).Str("kind", kind).Str("reason", why).Msg("pushsim: task refused")
		easemobError(w, http.StatusForbidden, "LimitException", "limit request", now)
		return nil
	}
	s.taskSeq++
	t := &Task{
		ID:        strconv.FormatInt(900_000_000_000_000_000+s.taskSeq, 10),
		Kind:      kind,
		Label:     labelName,
		CreatedAt: now,
		StartAt:   start,
		app:       a.org + "/" + a.app,
		message:   msg,
	}
	if kind == "label" {
		t.EndsAt = start.Add(s.cfg.TaskWindow.LabelTaskDuration)
	} else {
		t.EndsAt = now.Add(s.cfg.TaskWindow.Window)
	}
	a.tasks = append(a.tasks, t)
	if len(s.taskLog) >= maxTaskLog {
		s.taskLog = s.taskLog[1:]
	}
	s.taskLog = append(s.taskLog, t)
	// Forget tasks that no longer count for anything.
	keep := a.tasks[:0]
	for _, old := range a.tasks {
		if !old.Executed || now.Sub(old.CreatedAt) < s.cfg.TaskWindow.Window || now.Before(old.EndsAt) {
			keep = append(keep, old)
		}
	}
	a.tasks = keep
	return t
}

// runDueTasksLocked executes tasks whose start has come: a label task pushes
// to the label's members, a broadcast to every known user of the app.
func (s *Sim) runDueTasksLocked(now time.Time) {
	for _, a := range s.easemob {
		for _, t := range a.tasks {
			if t.Executed || now.Before(t.StartAt) {
				continue
			}
			t.Executed = true
			var targets []string
			if t.Kind == "label" {
				if l := a.labels[t.Label]; l != nil {
					for u := range l.members {
						targets = append(targets, u)
					}
				}
			} else {
				for u := range a.users {
					targets = append(targets, u)
				}
			}
			sort.Strings(targets)
			via := "broadcast"
			if t.Kind == "label" {
				via = "label:" + t.Label
			}
			call := &pushCall{app: t.app, via: via, taskID: t.ID, message: t.message}
			for _, u := range targets {
				s.recordPushLocked(a.user(u, now), call, t.StartAt)
			}
			t.Reached = len(targets)
		}
	}
}

func (s *Sim) emPushLabel(w http.ResponseWriter, r *http.Request, a *easemobApp, _ []string, now time.Time) {
	var b pushBody
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if len(b.Targets) != 1 {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "targets must hold exactly one label name", now)
		return
	}
	if !checkPush(w, &b, now) {
		return
	}
	start, ok := s.taskStart(w, &b, now)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.labels[b.Targets[0]] == nil {
		easemobError(w, http.StatusBadRequest, "ResourceNotFoundException", "push label not exists of "+b.Targets[0], now)
		return
	}
	t := s.createTaskLocked(w, a, "label", b.Targets[0], start, b.PushMessage, now)
	if t == nil {
		return
	}
	s.runDueTasksLocked(now)
	id, _ := strconv.ParseInt(t.ID, 10, 64)
	easemobOK(w, now, map[string]any{"data": map[string]any{"taskId": id}})
}

func (s *Sim) emPushTask(w http.ResponseWriter, r *http.Request, a *easemobApp, _ []string, now time.Time) {
	var b pushBody
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if !checkPush(w, &b, now) {
		return
	}
	start, ok := s.taskStart(w, &b, now)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.createTaskLocked(w, a, "broadcast", "", start, b.PushMessage, now)
	if t == nil {
		return
	}
	s.runDueTasksLocked(now)
	id, _ := strconv.ParseInt(t.ID, 10, 64)
	easemobOK(w, now, map[string]any{"data": id})
}

func labelJSON(l *label, withCount bool) map[string]any {
	m := map[string]any{"name": l.Name, "description": l.Description, "createdAt": l.CreatedAt}
	if withCount {
		m["count"] = len(l.members)
	}
	return m
}

func (s *Sim) emLabelCreate(w http.ResponseWriter, r *http.Request, a *easemobApp, _ []string, now time.Time) {
	var b struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if err := provider.ValidateLabelName(b.Name); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if err := provider.ValidateLabelDescription(b.Description); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.labels[b.Name] != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "push label already exists: "+b.Name, now)
		return
	}
	if len(a.labels) >= s.cfg.MaxLabels {
		s.limitExc++
		s.cfg.Logger.Debug().Str("app", a.org+"/"+a.app).Int("labels", len(a.labels)).Msg("pushsim: label cap reached")
		easemobError(w, http.StatusForbidden, "LimitException", "limit request", now)
		return
	}
	l := &label{Name: b.Name, Description: b.Description, CreatedAt: now.UnixMilli(), members: map[string]int64{}}
	a.labels[b.Name] = l
	easemobOK(w, now, map[string]any{"data": labelJSON(l, false)})
}

// labelOf returns the named label, or writes the provider's "not exists"
// error and returns nil. Called with s.mu held.
func labelOf(w http.ResponseWriter, a *easemobApp, name string, now time.Time) *label {
	l := a.labels[name]
	if l == nil {
		easemobError(w, http.StatusBadRequest, "ResourceNotFoundException", "push label not exists of "+name, now)
	}
	return l
}

func (s *Sim) emLabelGet(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := labelOf(w, a, args[0], now)
	if l == nil {
		return
	}
	easemobOK(w, now, map[string]any{"data": labelJSON(l, true)})
}

// page cuts sorted names by limit and an opaque cursor.
func page(w http.ResponseWriter, r *http.Request, names []string, now time.Time) (out []string, next string, ok bool) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > provider.MaxListLimit {
			easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "limit must be 1..100", now)
			return nil, "", false
		}
		limit = n
	}
	start := 0
	if c := r.URL.Query().Get("cursor"); c != "" {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "pushsim:cursor:"))
		if err != nil || err2 != nil || n < 0 {
			easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "invalid cursor", now)
			return nil, "", false
		}
		start = n
	}
	if start > len(names) {
		start = len(names)
	}
	end := min(start+limit, len(names))
	if end < len(names) {
		next = base64.RawURLEncoding.EncodeToString([]byte("pushsim:cursor:" + strconv.Itoa(end)))
	}
	return names[start:end], next, true
}

func (s *Sim) emLabelList(w http.ResponseWriter, r *http.Request, a *easemobApp, _ []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(a.labels))
	for n := range a.labels {
		names = append(names, n)
	}
	sort.Strings(names)
	pg, next, ok := page(w, r, names, now)
	if !ok {
		return
	}
	data := make([]map[string]any, 0, len(pg))
	for _, n := range pg {
		data = append(data, labelJSON(a.labels[n], true))
	}
	fields := map[string]any{"data": data}
	if next != "" {
		fields["cursor"] = next
	}
	easemobOK(w, now, fields)
}

func (s *Sim) emLabelDelete(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.labels[args[0]] == nil {
		easemobError(w, http.StatusBadRequest, "ResourceNotFoundException", "push label not exists of "+args[0], now)
		return
	}
	delete(a.labels, args[0])
	easemobOK(w, now, map[string]any{"data": "success"})
}

func (s *Sim) membersBody(w http.ResponseWriter, r *http.Request, now time.Time) ([]string, bool) {
	var b struct {
		Usernames []string `json:"usernames"`
	}
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return nil, false
	}
	s.mu.Lock()
	s.maxLabelUsers = max(s.maxLabelUsers, len(b.Usernames))
	s.mu.Unlock()
	if len(b.Usernames) == 0 || len(b.Usernames) > provider.MaxLabelUsers {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException",
			fmt.Sprintf("usernames must hold 1 to %d user ids, got %d", provider.MaxLabelUsers, len(b.Usernames)), now)
		return nil, false
	}
	return b.Usernames, true
}

func (s *Sim) emMembersAdd(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	users, ok := s.membersBody(w, r, now)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := labelOf(w, a, args[0], now)
	if l == nil {
		return
	}
	success, fail := []string{}, map[string]string{}
	for _, u := range users {
		if strings.HasPrefix(u, "invalid-") || provider.ValidateTargetID(u) != nil {
			fail[u] = "user not exists"
			continue
		}
		if _, in := l.members[u]; !in {
			l.members[u] = now.UnixMilli()
		}
		a.user(u, now)
		success = append(success, u)
	}
	easemobOK(w, now, map[string]any{"data": map[string]any{"success": success, "fail": fail}})
}

func (s *Sim) emMembersRemove(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	users, ok := s.membersBody(w, r, now)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := labelOf(w, a, args[0], now)
	if l == nil {
		return
	}
	success, fail := []string{}, map[string]string{}
	for _, u := range users {
		if _, in := l.members[u]; !in {
			fail[u] = "user not in label"
			continue
		}
		delete(l.members, u)
		success = append(success, u)
	}
	easemobOK(w, now, map[string]any{"data": map[string]any{"success": success, "fail": fail}})
}

func (s *Sim) emMemberGet(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := labelOf(w, a, args[0], now)
	if l == nil {
		return
	}
	at, in := l.members[args[1]]
	if !in {
		// The original answers without the user's fields when it is not a member.
		easemobOK(w, now, map[string]any{"data": map[string]any{}})
		return
	}
	easemobOK(w, now, map[string]any{"data": map[string]any{"username": args[1], "created": at}})
}

func (s *Sim) emMembersList(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := labelOf(w, a, args[0], now)
	if l == nil {
		return
	}
	names := make([]string, 0, len(l.members))
	for u := range l.members {
		names = append(names, u)
	}
	sort.Strings(names)
	pg, next, ok := page(w, r, names, now)
	if !ok {
		return
	}
	data := make([]map[string]any, 0, len(pg))
	for _, u := range pg {
		data = append(data, map[string]any{"username": u, "created": l.members[u]})
	}
	fields := map[string]any{"data": data}
	if next != "" {
		fields["cursor"] = next
	}
	easemobOK(w, now, fields)
}

func (s *Sim) emUserPut(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	var b struct {
		Nickname     *string  `json:"nickname"`
		Style        *flexInt `json:"notification_display_style"`
		DND          *bool    `json:"notification_no_disturbing"`
		DNDStart     *flexInt `json:"notification_no_disturbing_start"`
		DNDEnd       *flexInt `json:"notification_no_disturbing_end"`
		NotifierName *string  `json:"notifier_name"`
	}
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	bad := func(msg string) { easemobError(w, http.StatusBadRequest, "IllegalArgumentException", msg, now) }
	if b.Nickname != nil {
		if err := provider.ValidateNickname(*b.Nickname); err != nil {
			bad(err.Error())
			return
		}
	}
	if b.Style != nil {
		if err := provider.ValidateDisplayStyle(int(*b.Style)); err != nil {
			bad(err.Error())
			return
		}
	}
	for _, h := range []*flexInt{b.DNDStart, b.DNDEnd} {
		if h != nil && (*h < 0 || *h > 23) {
			bad("notification_no_disturbing_start/_end must be hours 0..23")
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := a.user(args[0], now)
	u.modified = now.UnixMilli()
	set := u.settings()
	if b.Nickname != nil {
		set.nickname = *b.Nickname
	}
	if b.Style != nil {
		set.style = int(*b.Style)
	}
	if b.DND != nil {
		set.dnd = *b.DND
	}
	if b.DNDStart != nil {
		set.dndStart = int(*b.DNDStart)
	}
	if b.DNDEnd != nil {
		set.dndEnd = int(*b.DNDEnd)
	}
	ent := map[string]any{
		"uuid": "pushsim-" + args[0], "type": "user", "created": u.created, "modified": u.modified,
		"username": args[0], "activated": true, "nickname": set.nickname,
		"notification_display_style": set.style, "notification_no_disturbing": set.dnd,
		"notification_no_disturbing_start": set.dndStart, "notification_no_disturbing_end": set.dndEnd,
	}
	easemobOK(w, now, map[string]any{"action": "put", "path": "/users", "entities": []any{ent},
		"organization": a.org, "applicationName": a.app})
}

func (s *Sim) emModePut(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	if err := provider.ValidateChatType(args[1]); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	var b struct {
		Type           *string `json:"type"`
		IgnoreInterval *string `json:"ignoreInterval"`
		IgnoreDuration *int64  `json:"ignoreDuration"`
	}
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	var errs []error
	if b.Type != nil {
		errs = append(errs, provider.ValidateNotifyType(*b.Type))
	}
	if b.IgnoreInterval != nil {
		errs = append(errs, provider.ValidateIgnoreInterval(*b.IgnoreInterval))
	}
	if b.IgnoreDuration != nil {
		errs = append(errs, provider.ValidateIgnoreDuration(*b.IgnoreDuration))
	}
	for _, err := range errs {
		if err != nil {
			easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := a.user(args[0], now)
	key := args[1] + "/" + args[2]
	set := u.settings()
	m, ok := set.modes[key]
	if !ok {
		m = NotifyMode{Type: provider.NotifyTypeDefault}
	}
	if b.Type != nil {
		m.Type = *b.Type
	}
	if b.IgnoreInterval != nil {
		m.IgnoreInterval = *b.IgnoreInterval
	}
	if b.IgnoreDuration != nil {
		m.IgnoreDuration = 0
		if *b.IgnoreDuration > 0 {
			m.IgnoreDuration = now.UnixMilli() + *b.IgnoreDuration // the API answers the end time
		}
	}
	if set.modes == nil {
		set.modes = map[string]NotifyMode{}
	}
	set.modes[key] = m
	easemobOK(w, now, map[string]any{"action": "put", "path": "/users", "data": m, "organization": a.org, "applicationName": a.app})
}

func (s *Sim) emModeGet(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	if err := provider.ValidateChatType(args[1]); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := NotifyMode{Type: provider.NotifyTypeDefault}
	if u := a.users[args[0]]; u != nil && u.set != nil {
		if set, ok := u.set.modes[args[1]+"/"+args[2]]; ok {
			m = set
		}
	}
	easemobOK(w, now, map[string]any{"action": "get", "path": "/users", "data": m, "organization": a.org, "applicationName": a.app})
}

func (s *Sim) emLanguagePut(w http.ResponseWriter, r *http.Request, a *easemobApp, args []string, now time.Time) {
	var b struct {
		TranslationLanguage *string `json:"translationLanguage"`
	}
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if b.TranslationLanguage == nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "translationLanguage is required", now)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := a.user(args[0], now).settings()
	set.language = *b.TranslationLanguage
	easemobOK(w, now, map[string]any{"action": "put", "path": "/users", "data": map[string]string{"language": set.language}})
}

func (s *Sim) emLanguageGet(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lang := ""
	if u := a.users[args[0]]; u != nil && u.set != nil {
		lang = u.set.language
	}
	easemobOK(w, now, map[string]any{"action": "get", "path": "/users", "data": map[string]string{"language": lang}})
}

func (s *Sim) emTemplateCreate(w http.ResponseWriter, r *http.Request, a *easemobApp, _ []string, now time.Time) {
	var b struct {
		Name           string `json:"name"`
		TitlePattern   string `json:"title_pattern"`
		ContentPattern string `json:"content_pattern"`
	}
	if err := decodeBody(r, &b); err != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", err.Error(), now)
		return
	}
	if b.Name == "" || b.TitlePattern == "" || b.ContentPattern == "" {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "name, title_pattern and content_pattern are required", now)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.templates[b.Name] != nil {
		easemobError(w, http.StatusBadRequest, "IllegalArgumentException", "template already exists: "+b.Name, now)
		return
	}
	t := &template{Name: b.Name, CreateAt: now.UnixMilli(), UpdateAt: now.UnixMilli(), TitlePattern: b.TitlePattern, ContentPattern: b.ContentPattern}
	a.templates[b.Name] = t
	easemobOK(w, now, map[string]any{"action": "post", "data": t})
}

func (s *Sim) emTemplateGet(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := a.templates[args[0]]
	if t == nil {
		easemobError(w, http.StatusBadRequest, "ResourceNotFoundException", "template not exists of "+args[0], now)
		return
	}
	easemobOK(w, now, map[string]any{"action": "get", "data": t})
}

func (s *Sim) emTemplateDelete(w http.ResponseWriter, _ *http.Request, a *easemobApp, args []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := a.templates[args[0]]
	if t == nil {
		easemobError(w, http.StatusBadRequest, "ResourceNotFoundException", "template not exists of "+args[0], now)
		return
	}
	delete(a.templates, args[0])
	easemobOK(w, now, map[string]any{"action": "delete", "data": t})
}

// flexInt is an integer field the API accepts as a JSON number or a numeric
// string (its own examples send "notification_display_style": "1").
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	raw := strings.TrimSpace(string(b))
	if unq, err := strconv.Unquote(raw); err == nil {
		raw = strings.TrimSpace(unq)
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*f = flexInt(n)
	return nil
}
