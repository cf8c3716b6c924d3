package pushsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/campaignd/campaignd/provider"
)

type device struct {
	tags  map[string]bool
	alias string
}

type engagelabApp struct {
	devices map[string]*device
	tags    map[string]map[string]bool // tag → registration ids
}

func (s *Sim) engagelabAppLocked(key string) *engagelabApp {
	a := s.engagelab[key]
	if a == nil {
		a = &engagelabApp{devices: map[string]*device{}, tags: map[string]map[string]bool{}}
		s.engagelab[key] = a
	}
	return a
}

func (a *engagelabApp) device(id string) *device {
	d := a.devices[id]
	if d == nil {
		d = &device{tags: map[string]bool{}}
		a.devices[id] = d
	}
	return d
}

// engagelabError writes the EngageLab error body.
func engagelabError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

// writeSuccess writes the plain "success" body EngageLab answers to changes.
func writeSuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("success"))
}

func nilIfEmpty(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return list
}

// elCall is one EngageLab call that passed the judge, auth and fault
// injection. Its handler runs with s.mu held.
type elCall struct {
	routed
	app *engagelabApp
	now time.Time
}

func (c *elCall) fail(status, code int, msg string) { engagelabError(c.w, status, code, msg) }

// refuse answers a request that does not parse or breaks a rule: 400 27002
// "Parámetro no válido" (004 Código de retorno de negocio).
func (c *elCall) refuse(err error) { c.fail(http.StatusBadRequest, 27002, err.Error()) }

// refuseTag answers a tag that breaks 004's rule: 27017 (HTTP 401, as the
// original's table gives) when it is over 40 bytes, else 27002.
func (c *elCall) refuseTag(tag string, err error) {
	if tagTooLong(tag) {
		c.fail(http.StatusUnauthorized, 27017, err.Error())
		return
	}
	c.refuse(err)
}

// refuseIDs answers 27005 with the refused ids in "data", a JSON string as
// in the original (004 Actualizar tags).
func (c *elCall) refuseIDs(ids []string) {
	data, _ := json.Marshal(map[string][]string{"invalid_regids": ids})
	writeJSON(c.w, http.StatusBadRequest, map[string]any{"error": map[string]any{
		"code": 27005, "message": "registration id is illegal", "data": string(data),
	}})
}

// unknownIDs returns the ids of lists that name no device pushsim knows.
func unknownIDs(lists ...[]string) []string {
	var out []string
	for _, list := range lists {
		for _, id := range list {
			if !knownID(id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// engagelabRoutes is the EngageLab API's router. It sees canonical paths
// (see routable) and every request carries its *elCall in its context.
func (s *Sim) engagelabRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	route := func(pattern string, h func(*elCall)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c := callOf[*elCall](r)
			c.w, c.r = w, r
			h(c)
		})
	}
	route("POST /v4/devices/status", s.elStatus)
	route("GET /v4/devices/{id}", s.elDeviceGet)
	route("POST /v4/devices/{id}", s.elDeviceSet)
	route("DELETE /v4/devices/{id}", s.elDeviceDelete)
	route("GET /v4/tags", s.elTagList)
	route("GET /v4/tags/quota-info", s.elQuota)
	route("POST /v4/tags/{tag}", s.elTagUpdate)
	route("DELETE /v4/tags/{tag}", s.elTagDelete)
	route("GET /v4/tags/{tag}/registration_ids/{id}", s.elTagHas)
	route("GET /v4/tags_count", s.elTagsCount)
	route("GET /v4/aliases/{alias}", s.elAliasGet)
	route("DELETE /v4/aliases/{alias}", s.elAliasDelete)
	route("/", func(c *elCall) { c.fail(http.StatusNotFound, 27002, "unknown path") })
	return mux
}

// serveEngageLab serves an EngageLab call, /v4/…: every call is judged in
// the tags group and authenticated before its path is looked at.
func (s *Sim) serveEngageLab(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	key, secret, hasAuth := r.BasicAuth()
	appKey := key
	if !hasAuth {
		appKey = "-"
	}
	s.mu.Lock()
	admitted := s.admitLocked("engagelab", appKey, provider.GroupTags, now)
	fault := faultNone
	authed := hasAuth && key == s.cfg.Credentials.EngageLabKey && secret == s.cfg.Credentials.EngageLabSecret
	if admitted && authed {
		fault = s.faultLocked()
	}
	s.mu.Unlock()
	s.sleepLatency(r.Context())
	switch {
	case !admitted:
		w.Header().Set("Retry-After", "1")
		engagelabError(w, http.StatusTooManyRequests, 2002, "API request frequency exceeds the limit")
		return
	case !hasAuth:
		engagelabError(w, http.StatusUnauthorized, 27001, "authentication information is empty")
		return
	case key != s.cfg.Credentials.EngageLabKey:
		engagelabError(w, http.StatusUnauthorized, 21004, "invalid appkey")
		return
	case !authed:
		engagelabError(w, http.StatusUnauthorized, 27004, "authentication failed")
		return
	}
	if s.answerFault(w, fault, true, now) {
		return
	}
	segs, err := splitPath(r.URL.EscapedPath())
	if err != nil || len(segs) < 2 {
		engagelabError(w, http.StatusNotFound, 27002, "unknown path")
		return
	}
	if err := checkPlatform(r.URL.Query().Get("platform")); err != nil {
		engagelabError(w, http.StatusBadRequest, 27002, err.Error())
		return
	}
	// ServeMux lets a GET route take HEAD too; the provider does not.
	if r.Method == http.MethodHead {
		engagelabError(w, http.StatusNotFound, 27002, "unknown path")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	empty := emptyStandIn(segs[1:])
	c := &elCall{routed: routed{empty: empty}, app: s.engagelabAppLocked(appKey), now: now}
	s.engagelabMux.ServeHTTP(w, routable(r, "/v4", segs[1:], empty, c))
}

func (s *Sim) elDeviceGet(c *elCall) {
	d, ok := c.app.devices[c.arg("id")]
	if !ok {
		writeJSON(c.w, http.StatusOK, map[string]any{"tags": nil, "alias": nil})
		return
	}
	var alias any
	if d.alias != "" {
		alias = d.alias
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"tags": nilIfEmpty(sortedKeys(d.tags)), "alias": alias})
}

func (s *Sim) elDeviceDelete(c *elCall) {
	id := c.arg("id")
	if d, ok := c.app.devices[id]; ok {
		for t := range d.tags {
			delete(c.app.tags[t], id)
		}
		delete(c.app.devices, id)
	}
	writeSuccess(c.w)
}

func (s *Sim) elTagList(c *elCall) {
	writeJSON(c.w, http.StatusOK, map[string]any{"tags": nilIfEmpty(sortedKeys(c.app.tags))})
}

func (s *Sim) elTagDelete(c *elCall) {
	tag := c.arg("tag")
	for id := range c.app.tags[tag] {
		if d := c.app.devices[id]; d != nil {
			delete(d.tags, tag)
		}
	}
	delete(c.app.tags, tag)
	writeSuccess(c.w)
}

func (s *Sim) elTagHas(c *elCall) {
	writeJSON(c.w, http.StatusOK, map[string]any{"result": c.app.tags[c.arg("tag")][c.arg("id")]})
}

func (s *Sim) elTagsCount(c *elCall) {
	q := c.r.URL.Query()
	tags := q["tags"]
	if err := firstError(checkQueryTags(len(tags)), checkRequiredPlatform(q.Get("platform"))); err != nil {
		c.refuse(err)
		return
	}
	out := map[string]int{}
	for _, t := range tags {
		out[t] = len(c.app.tags[t])
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"tagsCount": out})
}

func (s *Sim) elAliasGet(c *elCall) {
	alias := c.arg("alias")
	var ids []string
	for id, d := range c.app.devices {
		if d.alias == alias {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	writeJSON(c.w, http.StatusOK, map[string]any{"registration_ids": ids}) // null when none, as the original
}

func (s *Sim) elAliasDelete(c *elCall) {
	alias := c.arg("alias")
	for _, d := range c.app.devices {
		if d.alias == alias {
			d.alias = ""
		}
	}
	writeSuccess(c.w)
}

// deviceTags reads a device body's tags (004 Establecer el alias y la
// etiqueta del dispositivo): an object {add, remove} of tag lists, or "" to
// clear every tag.
func deviceTags(v any) (add, remove []string, clear bool, err error) {
	switch t := v.(type) {
	case nil:
		return nil, nil, false, nil
	case string:
		if t != "" {
			return nil, nil, false, ruleErr("tags", `must be an object {add,remove} or "" to clear`)
		}
		return nil, nil, true, nil
	case map[string]any:
		var ok bool
		if add, ok = stringList(t["add"]); !ok {
			return nil, nil, false, ruleErr("tags.add", "must be a list of strings")
		}
		if remove, ok = stringList(t["remove"]); !ok {
			return nil, nil, false, ruleErr("tags.remove", "must be a list of strings")
		}
		return add, remove, false, nil
	default:
		return nil, nil, false, ruleErr("tags", "has a wrong type")
	}
}

func (s *Sim) elDeviceSet(c *elCall) {
	id, a := c.arg("id"), c.app
	if !validID(id) {
		c.fail(http.StatusBadRequest, 27005, "registration id is illegal")
		return
	}
	b, ok := decodeAs[struct {
		Tags  any     `json:"tags"`
		Alias *string `json:"alias"`
	}](c, nil)
	if !ok {
		return
	}
	add, remove, clearTags, err := deviceTags(b.Tags)
	if err != nil {
		c.refuse(err)
		return
	}
	for _, list := range [][]string{add, remove} {
		for _, t := range list {
			if err := checkTag(t); err != nil {
				c.refuseTag(t, err)
				return
			}
		}
	}
	if b.Alias != nil && *b.Alias != "" {
		if err := checkAlias(*b.Alias); err != nil {
			c.refuse(err)
			return
		}
		for other, d := range a.devices {
			if other != id && d.alias == *b.Alias {
				c.fail(http.StatusBadRequest, 27010, "alias is already bound to another registration id")
				return
			}
		}
	}
	// The caps are checked before anything changes, so a refused call
	// leaves no trace.
	var cur map[string]bool
	if d := a.devices[id]; d != nil && !clearTags {
		cur = d.tags
	}
	newTags, newAppTags := map[string]bool{}, map[string]bool{}
	for _, t := range add {
		if cur[t] {
			continue
		}
		newTags[t] = true
		if a.tags[t] == nil {
			newAppTags[t] = true
		}
	}
	if len(cur)+len(newTags) > maxTagsPerDevice {
		c.tooManyTagsOnDevice()
		return
	}
	if len(newAppTags) > 0 && len(a.tags)+len(newAppTags) > s.cfg.MaxTagsPerApp {
		s.elTooManyTags(c)
		return
	}
	for t := range newTags {
		if !a.tags[t][id] && len(a.tags[t]) >= s.cfg.MaxDevicesPerTag {
			s.elTooManyDevices(c)
			return
		}
	}
	d := a.device(id)
	if clearTags {
		for t := range d.tags {
			delete(a.tags[t], id)
		}
		d.tags = map[string]bool{}
	}
	for _, t := range add {
		if a.tags[t] == nil {
			a.tags[t] = map[string]bool{}
		}
		a.tags[t][id] = true
		d.tags[t] = true
	}
	for _, t := range remove {
		delete(d.tags, t)
		delete(a.tags[t], id)
	}
	if b.Alias != nil {
		d.alias = *b.Alias
	}
	writeSuccess(c.w)
}

// tooManyTagsOnDevice answers 27011: a device binds at most 100 tags (004).
func (c *elCall) tooManyTagsOnDevice() {
	c.fail(http.StatusUnauthorized, 27011, fmt.Sprintf("a device can bind at most %d tags", maxTagsPerDevice))
}

// elTooManyTags answers 27013: the app holds Config.MaxTagsPerApp tags.
func (s *Sim) elTooManyTags(c *elCall) {
	c.fail(http.StatusUnauthorized, 27013, fmt.Sprintf("an app can create at most %d tags", s.cfg.MaxTagsPerApp))
}

// elTooManyDevices answers 27014: the tag binds Config.MaxDevicesPerTag devices.
func (s *Sim) elTooManyDevices(c *elCall) {
	c.fail(http.StatusUnauthorized, 27014, fmt.Sprintf("a tag can bind at most %d devices", s.cfg.MaxDevicesPerTag))
}

func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func (s *Sim) elTagUpdate(c *elCall) {
	tag, a := c.arg("tag"), c.app
	if err := checkTag(tag); err != nil {
		c.refuseTag(tag, err)
		return
	}
	b, ok := decodeAs[struct {
		RegistrationIDs struct {
			Add    []string `json:"add"`
			Remove []string `json:"remove"`
		} `json:"registration_ids"`
	}](c, nil)
	if !ok {
		return
	}
	add, remove := b.RegistrationIDs.Add, b.RegistrationIDs.Remove
	s.maxTagIDs = max(s.maxTagIDs, len(add), len(remove))
	if err := checkTagIDs(len(add), len(remove)); err != nil {
		c.refuse(err)
		return
	}
	if bad := unknownIDs(add, remove); len(bad) > 0 {
		c.refuseIDs(bad)
		return
	}
	members := a.tags[tag]
	if members == nil {
		if len(add) > 0 && len(a.tags) >= s.cfg.MaxTagsPerApp {
			s.elTooManyTags(c)
			return
		}
		members = map[string]bool{}
	}
	newIDs := map[string]bool{} // ids the call binds anew
	for _, id := range add {
		if !members[id] {
			newIDs[id] = true
		}
	}
	if len(members)+len(newIDs) > s.cfg.MaxDevicesPerTag {
		s.elTooManyDevices(c)
		return
	}
	for _, id := range add {
		if d := a.devices[id]; d != nil && !d.tags[tag] && len(d.tags) >= maxTagsPerDevice {
			c.tooManyTagsOnDevice()
			return
		}
	}
	for _, id := range add {
		members[id] = true
		a.device(id).tags[tag] = true
	}
	for _, id := range remove {
		delete(members, id)
		if d := a.devices[id]; d != nil {
			delete(d.tags, tag)
		}
	}
	if len(members) > 0 || a.tags[tag] != nil {
		a.tags[tag] = members
	}
	writeSuccess(c.w)
}

func (s *Sim) elStatus(c *elCall) {
	b, ok := decodeAs(c, func(b *struct {
		RegistrationIDs []string `json:"registration_ids"`
	}) error {
		return checkStatusIDs(len(b.RegistrationIDs))
	})
	if !ok {
		return
	}
	if bad := unknownIDs(b.RegistrationIDs); len(bad) > 0 {
		c.refuseIDs(bad)
		return
	}
	out := make([]map[string]any, 0, len(b.RegistrationIDs))
	for _, id := range b.RegistrationIDs {
		if _, known := c.app.devices[id]; known {
			out = append(out, map[string]any{"regid": id, "online": true})
		} else {
			out = append(out, map[string]any{"regid": id, "online": false, "last_online_time": c.now.Add(-time.Hour).Format("2006-01-02 15:04:05")})
		}
	}
	writeJSON(c.w, http.StatusOK, out)
}

func (s *Sim) elQuota(c *elCall) {
	tags := c.r.URL.Query()["tags"]
	if err := checkQueryTags(len(tags)); err != nil {
		c.refuse(err)
		return
	}
	aliases := 0
	for _, d := range c.app.devices {
		if d.alias != "" {
			aliases++
		}
	}
	detail := make([]map[string]any, 0, len(tags))
	for _, t := range tags {
		detail = append(detail, map[string]any{"tagName": t, "totalUidQuota": s.cfg.MaxDevicesPerTag, "useUidQuota": len(c.app.tags[t])})
	}
	writeJSON(c.w, http.StatusOK, map[string]any{"data": map[string]any{
		"totalTagQuota": s.cfg.MaxTagsPerApp, "useTagQuota": len(c.app.tags),
		"totalAliasQuota": maxAliasesPerApp, "useAliasQuota": aliases,
		"tagUidQuotaDetail": detail,
	}})
}
