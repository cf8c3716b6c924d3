package pushsim

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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

func easemobNotFound(w http.ResponseWriter, now time.Time) {
	easemobError(w, http.StatusNotFound, "url is invalid", "request path does not exist", now)
}

// emCall is one Easemob call on its way through its route: when it
// arrived and, once it passed the judge, auth and fault injection, its app.
type emCall struct {
	routed
	app *easemobApp
	now time.Time
}

func (c *emCall) ok(fields map[string]any) { easemobOK(c.w, c.now, fields) }

func (c *emCall) fail(status int, typ, desc string) { easemobError(c.w, status, typ, desc, c.now) }

// refuse answers a request that does not parse or breaks a rule: 400
// MessageException for a bad pushMessage, else 400
// IllegalArgumentException (003 常见错误码).
func (c *emCall) refuse(err error) {
	var me *messageError
	if errors.As(err, &me) {
		c.fail(http.StatusBadRequest, "MessageException", err.Error())
		return
	}
	c.fail(http.StatusBadRequest, "IllegalArgumentException", err.Error())
}

// labelMissing answers 000's error for a label that does not exist.
func (c *emCall) labelMissing(name string) {
	c.fail(http.StatusBadRequest, "ResourceNotFoundException", "push label not exists of "+name)
}

// easemobRoutes is the Easemob API's router. It sees canonical paths (see
// routable) and every request carries its *emCall in its context. A route
// judges, authenticates and faults a call in emGate, then runs its handler;
// a path no route takes is answered 404 before the judge.
func (s *Sim) easemobRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	route := func(pattern string, g provider.Group, h func(*emCall)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c := callOf[*emCall](r)
			c.w, c.r = w, r
			s.emGate(c, g, h)
		})
	}
	mux.HandleFunc("POST /{org}/{app}/token", func(w http.ResponseWriter, r *http.Request) {
		c := callOf[*emCall](r)
		c.w, c.r = w, r
		s.emToken(c)
	})
	route("POST /{org}/{app}/push/sync/{target}", provider.GroupPushSync, s.emPushSync)
	route("POST /{org}/{app}/push/async/{target}", provider.GroupPushAsync, s.emPushAsync)
	route("POST /{org}/{app}/push/single", provider.GroupPushSingle, s.emPushSingle)
	route("POST /{org}/{app}/push/list/label", provider.GroupPushLabel, s.emPushLabel)
	route("POST /{org}/{app}/push/task", provider.GroupPushTask, s.emPushTask)
	route("POST /{org}/{app}/push/label", provider.GroupLabel, s.emLabelCreate)
	route("GET /{org}/{app}/push/label", provider.GroupLabel, s.emLabelList)
	route("GET /{org}/{app}/push/label/{label}", provider.GroupLabel, s.emLabelGet)
	route("DELETE /{org}/{app}/push/label/{label}", provider.GroupLabel, s.emLabelDelete)
	route("POST /{org}/{app}/push/label/{label}/user", provider.GroupLabelUser, s.emMembersAdd)
	route("DELETE /{org}/{app}/push/label/{label}/user", provider.GroupLabelUser, s.emMembersRemove)
	route("GET /{org}/{app}/push/label/{label}/user", provider.GroupLabelUser, s.emMembersList)
	route("GET /{org}/{app}/push/label/{label}/user/{username}", provider.GroupLabelUser, s.emMemberGet)
	route("PUT /{org}/{app}/users/{username}", provider.GroupUser, s.emUserPut)
	route("PUT /{org}/{app}/users/{username}/notification/language", provider.GroupNotification, s.emLanguagePut)
	route("GET /{org}/{app}/users/{username}/notification/language", provider.GroupNotification, s.emLanguageGet)
	route("PUT /{org}/{app}/users/{username}/notification/{chattype}/{key}", provider.GroupNotification, s.emModePut)
	route("GET /{org}/{app}/users/{username}/notification/{chattype}/{key}", provider.GroupNotification, s.emModeGet)
	route("POST /{org}/{app}/notification/template", provider.GroupTemplate, s.emTemplateCreate)
	route("GET /{org}/{app}/notification/template/{name}", provider.GroupTemplate, s.emTemplateGet)
	route("DELETE /{org}/{app}/notification/template/{name}", provider.GroupTemplate, s.emTemplateDelete)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		easemobNotFound(w, callOf[*emCall](r).now)
	})
	return mux
}

// serveEasemob routes an Easemob call: /{org}/{app}/….
func (s *Sim) serveEasemob(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	segs, err := splitPath(r.URL.EscapedPath())
	// ServeMux lets a GET route take HEAD too; the provider does not.
	if err != nil || len(segs) < 3 || r.Method == http.MethodHead {
		easemobNotFound(w, now)
		return
	}
	empty := emptyStandIn(segs)
	c := &emCall{routed: routed{empty: empty}, now: now}
	s.easemobMux.ServeHTTP(w, routable(r, "", segs, empty, c))
}

// emGate judges, authenticates and faults c as a call of group g and, when
// it passes, runs h with c's app (created on its first call).
func (s *Sim) emGate(c *emCall, g provider.Group, h func(*emCall)) {
	org, app := c.arg("org"), c.arg("app")
	appKey := easemobKey(org, app)
	s.mu.Lock()
	admitted := s.admitLocked("easemob", appKey, g, c.now)
	authed := admitted && s.authEasemobLocked(c.r, appKey, c.now)
	fault := faultNone
	if authed {
		fault = s.faultLocked()
	}
	s.mu.Unlock()
	s.sleepLatency(c.r.Context())
	switch {
	case !admitted:
		c.w.Header().Set("Retry-After", "1")
		c.fail(http.StatusTooManyRequests, "TooManyRequests", "request limit exceeded for "+string(g))
		return
	case !authed:
		writeJSON(c.w, http.StatusUnauthorized, map[string]any{
			"error": "unauthorized", "exception": "EasemobUnauthorizedException",
			"timestamp": c.now.UnixMilli(), "duration": 0,
			"error_description": "Unable to authenticate due to expired or invalid access token",
		})
		return
	}
	if s.answerFault(c.w, fault, false, c.now) {
		return
	}
	s.mu.Lock()
	c.app = s.easemobAppLocked(org, app)
	s.runDueTasksLocked(c.now)
	s.mu.Unlock()
	h(c)
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

// emToken issues an app token. The call is counted and judged in the token
// group but never refused, and needs no token.
func (s *Sim) emToken(c *emCall) {
	appKey := easemobKey(c.arg("org"), c.arg("app"))
	s.mu.Lock()
	s.admitLocked("easemob", appKey, provider.GroupToken, c.now)
	fault := s.faultLocked()
	s.mu.Unlock()
	s.sleepLatency(c.r.Context())
	if s.answerFault(c.w, fault, false, c.now) {
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if err := decodeBody(c.r, &req); err != nil {
		c.fail(http.StatusBadRequest, "json_parse", err.Error())
		return
	}
	if req.GrantType != "client_credentials" {
		c.fail(http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	if req.ClientID != s.cfg.Credentials.EasemobClientID || req.ClientSecret != s.cfg.Credentials.EasemobClientSecret {
		c.fail(http.StatusUnauthorized, "invalid_client", "invalid client credentials")
		return
	}
	s.mu.Lock()
	s.tokenSeq++
	tok := fmt.Sprintf("YWMt-pushsim-%d-%d", s.tokenSeq, c.now.UnixNano())
	s.tokens[tok] = tokenInfo{app: appKey, expires: c.now.Add(s.cfg.TokenTTL)}
	s.mu.Unlock()
	writeJSON(c.w, http.StatusOK, map[string]any{
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

// check applies the rules every push body shares (003): strategy, then
// pushMessage.
func (b *pushBody) check() error {
	if b.Strategy != nil {
		if err := checkStrategy(*b.Strategy); err != nil {
			return err
		}
	}
	return checkPushMessage(b.PushMessage)
}

func (s *Sim) emPushSingle(c *emCall) {
	b, ok := decodeAs(c, func(b *pushBody) error {
		return firstError(checkPushTargets(len(b.Targets)), b.check())
	})
	if !ok {
		return
	}
	// This is the emulator's hottest path: ids are checked and the answer is
	// written by hand outside the lock; the lock covers only the records.
	known := make([]bool, len(b.Targets))
	for i, t := range b.Targets {
		known[i] = knownID(t)
	}
	call := &pushCall{app: easemobKey(c.app.org, c.app.app), via: "push/single", message: b.PushMessage}
	s.mu.Lock()
	s.maxTargets = max(s.maxTargets, len(b.Targets))
	for i, t := range b.Targets {
		if known[i] {
			s.recordPushLocked(c.app.user(t, c.now), call, c.now)
		}
	}
	s.mu.Unlock()
	out := make([]byte, 0, 64+80*len(b.Targets))
	out = append(out, `{"timestamp":`...)
	out = strconv.AppendInt(out, c.now.UnixMilli(), 10)
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
	c.w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(out)
}

func (s *Sim) emPushSync(c *emCall) { s.emPushOne(c, true) }

func (s *Sim) emPushAsync(c *emCall) { s.emPushOne(c, false) }

func (s *Sim) emPushOne(c *emCall, sync bool) {
	b, ok := decodeAs(c, (*pushBody).check)
	if !ok {
		return
	}
	target := c.arg("target")
	if !knownID(target) {
		status := "FAIL"
		if !sync {
			status = "ASYNC_SUCCESS" // async only accepts; failures happen later
		}
		c.ok(map[string]any{"data": []map[string]any{{"pushStatus": status, "desc": "appUser not exists"}}})
		return
	}
	via := "push/async"
	if sync {
		via = "push/sync"
	}
	s.mu.Lock()
	s.recordPushLocked(c.app.user(target, c.now), &pushCall{app: easemobKey(c.app.org, c.app.app), via: via, message: b.PushMessage}, c.now)
	s.mu.Unlock()
	if sync {
		c.ok(map[string]any{"data": []map[string]any{{
			"pushStatus": "SUCCESS",
			"data":       map[string]any{"code": 200, "message": "Success", "data": map[string]any{"sendResult": true, "msgCode": 200, "failTokens": []string{}, "expireTokens": []string{}}},
		}}})
		return
	}
	c.ok(map[string]any{"data": []map[string]any{{"pushStatus": "ASYNC_SUCCESS", "data": "", "desc": "success"}}})
}

// taskStart is when a task created by b starts: its startDate (003), or
// now without one. A bad startDate is refused and ok is false.
func (s *Sim) taskStart(c *emCall, b *pushBody) (start time.Time, ok bool) {
	if b.StartDate == nil || *b.StartDate == "" {
		return c.now, true
	}
	t, err := parseStartDate(*b.StartDate, s.cfg.Zone, c.now)
	if err != nil {
		c.refuse(err)
		return time.Time{}, false
	}
	return t, true
}

// maxTaskLog bounds the task history Stats.TaskLog keeps.
const maxTaskLog = 10_000

// createTaskLocked applies the task-window caps; it writes a LimitException
// and returns nil when a cap is reached.
func (s *Sim) createTaskLocked(c *emCall, kind, labelName string, start time.Time, msg []byte) *Task {
	a, now := c.app, c.now
	if ok, why := s.caps.check(a.tasks, now); !ok {
		s.limitExc++
		s.cfg.Logger.Debug().Str("app", easemobKey(a.org, a.app)).Str("kind", kind).Str("reason", why).Msg("pushsim: task refused")
		c.fail(http.StatusForbidden, "LimitException", "limit request")
		return nil
	}
	s.taskSeq++
	t := &Task{
		ID:        strconv.FormatInt(900_000_000_000_000_000+s.taskSeq, 10),
		Kind:      kind,
		Label:     labelName,
		CreatedAt: now,
		StartAt:   start,
		app:       easemobKey(a.org, a.app),
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

func (s *Sim) emPushLabel(c *emCall) {
	b, ok := decodeAs(c, func(b *pushBody) error {
		return firstError(checkLabelPushTargets(len(b.Targets)), b.check())
	})
	if !ok {
		return
	}
	start, ok := s.taskStart(c, b)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.app.labels[b.Targets[0]] == nil {
		c.labelMissing(b.Targets[0])
		return
	}
	t := s.createTaskLocked(c, "label", b.Targets[0], start, b.PushMessage)
	if t == nil {
		return
	}
	s.runDueTasksLocked(c.now)
	id, _ := strconv.ParseInt(t.ID, 10, 64)
	c.ok(map[string]any{"data": map[string]any{"taskId": id}})
}

func (s *Sim) emPushTask(c *emCall) {
	b, ok := decodeAs(c, (*pushBody).check)
	if !ok {
		return
	}
	start, ok := s.taskStart(c, b)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.createTaskLocked(c, "broadcast", "", start, b.PushMessage)
	if t == nil {
		return
	}
	s.runDueTasksLocked(c.now)
	id, _ := strconv.ParseInt(t.ID, 10, 64)
	c.ok(map[string]any{"data": id})
}

func labelJSON(l *label, withCount bool) map[string]any {
	m := map[string]any{"name": l.Name, "description": l.Description, "createdAt": l.CreatedAt}
	if withCount {
		m["count"] = len(l.members)
	}
	return m
}

func (s *Sim) emLabelCreate(c *emCall) {
	type labelBody struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	b, ok := decodeAs(c, func(b *labelBody) error {
		return firstError(checkLabelName(b.Name), checkLabelDescription(b.Description))
	})
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := c.app
	if a.labels[b.Name] != nil {
		c.fail(http.StatusBadRequest, "IllegalArgumentException", "push label already exists: "+b.Name)
		return
	}
	if len(a.labels) >= s.cfg.MaxLabels {
		s.limitExc++
		s.cfg.Logger.Debug().Str("app", easemobKey(a.org, a.app)).Int("labels", len(a.labels)).Msg("pushsim: label cap reached")
		c.fail(http.StatusForbidden, "LimitException", "limit request")
		return
	}
	l := &label{Name: b.Name, Description: b.Description, CreatedAt: c.now.UnixMilli(), members: map[string]int64{}}
	a.labels[b.Name] = l
	c.ok(map[string]any{"data": labelJSON(l, false)})
}

// labelLocked returns the label the path names, or answers that it does not
// exist and returns nil. Called with s.mu held.
func (c *emCall) labelLocked() *label {
	name := c.arg("label")
	l := c.app.labels[name]
	if l == nil {
		c.labelMissing(name)
	}
	return l
}

func (s *Sim) emLabelGet(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := c.labelLocked(); l != nil {
		c.ok(map[string]any{"data": labelJSON(l, true)})
	}
}

// page cuts sorted names by the query's limit and opaque cursor and answers
// them, with the cursor of the next page if there is one, as data made by
// item.
func (c *emCall) page(names []string, item func(string) map[string]any) {
	q := c.r.URL.Query()
	limit, err := parseListLimit(q.Get("limit"))
	if err != nil {
		c.refuse(err)
		return
	}
	start := 0
	if cur := q.Get("cursor"); cur != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cur)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "pushsim:cursor:"))
		if err != nil || err2 != nil || n < 0 {
			c.refuse(ruleErr("cursor", "is not a cursor this API gave"))
			return
		}
		start = min(n, len(names))
	}
	end := min(start+limit, len(names))
	data := make([]map[string]any, 0, end-start)
	for _, n := range names[start:end] {
		data = append(data, item(n))
	}
	fields := map[string]any{"data": data}
	if end < len(names) {
		fields["cursor"] = base64.RawURLEncoding.EncodeToString([]byte("pushsim:cursor:" + strconv.Itoa(end)))
	}
	c.ok(fields)
}

func (s *Sim) emLabelList(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(c.app.labels))
	for n := range c.app.labels {
		names = append(names, n)
	}
	sort.Strings(names)
	c.page(names, func(n string) map[string]any { return labelJSON(c.app.labels[n], true) })
}

func (s *Sim) emLabelDelete(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := c.labelLocked(); l != nil {
		delete(c.app.labels, l.Name)
		c.ok(map[string]any{"data": "success"})
	}
}

// members reads a member add or remove body (000): its usernames are
// counted in Stats.MaxLabelUsersPerCall whether or not the call is taken.
func (s *Sim) members(c *emCall) ([]string, bool) {
	b, ok := decodeAs[struct {
		Usernames []string `json:"usernames"`
	}](c, nil)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	s.maxLabelUsers = max(s.maxLabelUsers, len(b.Usernames))
	s.mu.Unlock()
	if err := checkLabelUsers(len(b.Usernames)); err != nil {
		c.refuse(err)
		return nil, false
	}
	return b.Usernames, true
}

func (s *Sim) emMembersAdd(c *emCall) {
	s.emMembersEdit(c, func(l *label, u string) string {
		if !knownID(u) {
			return "user not exists"
		}
		if _, in := l.members[u]; !in {
			l.members[u] = c.now.UnixMilli()
		}
		c.app.user(u, c.now)
		return ""
	})
}

func (s *Sim) emMembersRemove(c *emCall) {
	s.emMembersEdit(c, func(l *label, u string) string {
		if _, in := l.members[u]; !in {
			return "user not in label"
		}
		delete(l.members, u)
		return ""
	})
}

// emMembersEdit runs edit (under the lock) for each user of a member add
// or remove call on its label, and answers with the users edit succeeded
// for and, for the others, the reason it gave.
func (s *Sim) emMembersEdit(c *emCall, edit func(l *label, user string) (reason string)) {
	users, ok := s.members(c)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := c.labelLocked()
	if l == nil {
		return
	}
	success, fail := []string{}, map[string]string{}
	for _, u := range users {
		if reason := edit(l, u); reason != "" {
			fail[u] = reason
			continue
		}
		success = append(success, u)
	}
	c.ok(map[string]any{"data": map[string]any{"success": success, "fail": fail}})
}

func (s *Sim) emMemberGet(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := c.labelLocked()
	if l == nil {
		return
	}
	user := c.arg("username")
	at, in := l.members[user]
	if !in {
		// The original answers without the user's fields when it is not a member.
		c.ok(map[string]any{"data": map[string]any{}})
		return
	}
	c.ok(map[string]any{"data": map[string]any{"username": user, "created": at}})
}

func (s *Sim) emMembersList(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := c.labelLocked()
	if l == nil {
		return
	}
	names := make([]string, 0, len(l.members))
	for u := range l.members {
		names = append(names, u)
	}
	sort.Strings(names)
	c.page(names, func(u string) map[string]any { return map[string]any{"username": u, "created": l.members[u]} })
}

// userBody is PUT /users/{username}: push nickname, display style and the
// legacy DND (001).
type userBody struct {
	Nickname     *string  `json:"nickname"`
	Style        *flexInt `json:"notification_display_style"`
	DND          *bool    `json:"notification_no_disturbing"`
	DNDStart     *flexInt `json:"notification_no_disturbing_start"`
	DNDEnd       *flexInt `json:"notification_no_disturbing_end"`
	NotifierName *string  `json:"notifier_name"`
}

// check applies 001's rules to the fields given, in order.
func (b *userBody) check() error {
	hour := func(field string) func(flexInt) error {
		return func(v flexInt) error { return checkDNDHour(field, int(v)) }
	}
	return firstError(
		given(b.Nickname, checkNickname),
		given(b.Style, func(v flexInt) error { return checkDisplayStyle(int(v)) }),
		given(b.DNDStart, hour("notification_no_disturbing_start")),
		given(b.DNDEnd, hour("notification_no_disturbing_end")),
	)
}

// given checks *v with check when the field was given (v not nil).
func given[T any](v *T, check func(T) error) error {
	if v == nil {
		return nil
	}
	return check(*v)
}

func (s *Sim) emUserPut(c *emCall) {
	b, ok := decodeAs(c, (*userBody).check)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	name := c.arg("username")
	u := c.app.user(name, c.now)
	u.modified = c.now.UnixMilli()
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
		"uuid": "pushsim-" + name, "type": "user", "created": u.created, "modified": u.modified,
		"username": name, "activated": true, "nickname": set.nickname,
		"notification_display_style": set.style, "notification_no_disturbing": set.dnd,
		"notification_no_disturbing_start": set.dndStart, "notification_no_disturbing_end": set.dndEnd,
	}
	c.ok(map[string]any{"action": "put", "path": "/users", "entities": []any{ent},
		"organization": c.app.org, "applicationName": c.app.app})
}

// modeBody is PUT /users/{username}/notification/{chattype}/{key} (001).
type modeBody struct {
	Type           *string `json:"type"`
	IgnoreInterval *string `json:"ignoreInterval"`
	IgnoreDuration *int64  `json:"ignoreDuration"`
}

// check applies 001's rules to the fields given, in order.
func (b *modeBody) check() error {
	return firstError(
		given(b.Type, checkNotifyType),
		given(b.IgnoreInterval, checkIgnoreInterval),
		given(b.IgnoreDuration, checkIgnoreDuration),
	)
}

// modeKey is the chat a mode call names, "chattype/key", once its chattype
// passes 001's rule; else it refuses the call and ok is false.
func (c *emCall) modeKey() (key string, ok bool) {
	chatType := c.arg("chattype")
	if err := checkChatType(chatType); err != nil {
		c.refuse(err)
		return "", false
	}
	return chatType + "/" + c.arg("key"), true
}

func (s *Sim) emModePut(c *emCall) {
	key, ok := c.modeKey()
	if !ok {
		return
	}
	b, ok := decodeAs(c, (*modeBody).check)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := c.app.user(c.arg("username"), c.now).settings()
	m, ok := set.modes[key]
	if !ok {
		m = NotifyMode{Type: notifyTypeDefault}
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
			m.IgnoreDuration = c.now.UnixMilli() + *b.IgnoreDuration // the API answers the end time
		}
	}
	if set.modes == nil {
		set.modes = map[string]NotifyMode{}
	}
	set.modes[key] = m
	c.ok(map[string]any{"action": "put", "path": "/users", "data": m, "organization": c.app.org, "applicationName": c.app.app})
}

func (s *Sim) emModeGet(c *emCall) {
	key, ok := c.modeKey()
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := NotifyMode{Type: notifyTypeDefault}
	if u := c.app.users[c.arg("username")]; u != nil && u.set != nil {
		if set, ok := u.set.modes[key]; ok {
			m = set
		}
	}
	c.ok(map[string]any{"action": "get", "path": "/users", "data": m, "organization": c.app.org, "applicationName": c.app.app})
}

func (s *Sim) emLanguagePut(c *emCall) {
	type languageBody struct {
		TranslationLanguage *string `json:"translationLanguage"`
	}
	b, ok := decodeAs(c, func(b *languageBody) error { return checkTranslationLanguage(b.TranslationLanguage) })
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := c.app.user(c.arg("username"), c.now).settings()
	set.language = *b.TranslationLanguage
	c.ok(map[string]any{"action": "put", "path": "/users", "data": map[string]string{"language": set.language}})
}

func (s *Sim) emLanguageGet(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lang := ""
	if u := c.app.users[c.arg("username")]; u != nil && u.set != nil {
		lang = u.set.language
	}
	c.ok(map[string]any{"action": "get", "path": "/users", "data": map[string]string{"language": lang}})
}

func (s *Sim) emTemplateCreate(c *emCall) {
	type templateBody struct {
		Name           string `json:"name"`
		TitlePattern   string `json:"title_pattern"`
		ContentPattern string `json:"content_pattern"`
	}
	b, ok := decodeAs(c, func(b *templateBody) error { return checkTemplate(b.Name, b.TitlePattern, b.ContentPattern) })
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.app.templates[b.Name] != nil {
		c.fail(http.StatusBadRequest, "IllegalArgumentException", "template already exists: "+b.Name)
		return
	}
	t := &template{Name: b.Name, CreateAt: c.now.UnixMilli(), UpdateAt: c.now.UnixMilli(), TitlePattern: b.TitlePattern, ContentPattern: b.ContentPattern}
	c.app.templates[b.Name] = t
	c.ok(map[string]any{"action": "post", "data": t})
}

// templateLocked returns the template the path names, or answers that it
// does not exist and returns nil (the originals document no answer for it).
// Called with s.mu held.
func (c *emCall) templateLocked() *template {
	name := c.arg("name")
	t := c.app.templates[name]
	if t == nil {
		c.fail(http.StatusBadRequest, "ResourceNotFoundException", "template not exists of "+name)
	}
	return t
}

func (s *Sim) emTemplateGet(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := c.templateLocked(); t != nil {
		c.ok(map[string]any{"action": "get", "data": t})
	}
}

func (s *Sim) emTemplateDelete(c *emCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := c.templateLocked(); t != nil {
		delete(c.app.templates, t.Name)
		c.ok(map[string]any{"action": "delete", "data": t})
	}
}

// flexInt is an integer field the API accepts as a JSON number or a numeric
// string: 001 types notification_no_disturbing_start/_end as String and its
// examples send "notification_display_style": "1".
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
