package pushsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
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

const (
	elMaxTagsPerDevice = 100
	elMaxAliasesPerApp = 100_000
)

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

// engagelabTagError answers a tag that breaks the naming rule: 27017 (HTTP
// 401, as the original's table gives) when it is over 40 bytes, else 27002.
func engagelabTagError(w http.ResponseWriter, tag string, err error) {
	if len(tag) > provider.MaxTagBytes {
		engagelabError(w, http.StatusUnauthorized, 27017, err.Error())
		return
	}
	engagelabError(w, http.StatusBadRequest, 27002, err.Error())
}

// writeSuccess writes the plain "success" body EngageLab answers to changes.
func writeSuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("success"))
}

// writeInvalidRegIDs answers 27005 with the refused ids in "data", a JSON
// string as in the original.
func writeInvalidRegIDs(w http.ResponseWriter, ids []string) {
	data, _ := json.Marshal(map[string][]string{"invalid_regids": ids})
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
		"code": 27005, "message": "registration id is illegal", "data": string(data),
	}})
}

func nilIfEmpty(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return list
}

func validPlatform(p string) bool {
	if p == "" {
		return true
	}
	for _, one := range strings.Split(p, ",") {
		switch one {
		case "android", "ios", "hmos":
		default:
			return false
		}
	}
	return true
}

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
	authed := hasAuth && key == s.cfg.EngageLabKey && secret == s.cfg.EngageLabSecret
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
	case key != s.cfg.EngageLabKey:
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
	p := segs[1:] // after "v4"
	q := r.URL.Query()
	if !validPlatform(q.Get("platform")) {
		engagelabError(w, http.StatusBadRequest, 27002, "platform must be android, ios or hmos")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.engagelabAppLocked(appKey)
	n := len(p)
	switch {
	case n == 2 && p[0] == "devices" && p[1] == "status" && r.Method == http.MethodPost:
		s.elStatus(w, r, a, now)
	case n == 2 && p[0] == "devices" && r.Method == http.MethodGet:
		d, ok := a.devices[p[1]]
		if !ok {
			writeJSON(w, 200, map[string]any{"tags": nil, "alias": nil})
			return
		}
		var alias any
		if d.alias != "" {
			alias = d.alias
		}
		writeJSON(w, 200, map[string]any{"tags": nilIfEmpty(sortedKeys(d.tags)), "alias": alias})
	case n == 2 && p[0] == "devices" && r.Method == http.MethodPost:
		s.elDeviceSet(w, r, a, p[1])
	case n == 2 && p[0] == "devices" && r.Method == http.MethodDelete:
		if d, ok := a.devices[p[1]]; ok {
			for t := range d.tags {
				delete(a.tags[t], p[1])
			}
			delete(a.devices, p[1])
		}
		writeSuccess(w)
	case n == 1 && p[0] == "tags" && r.Method == http.MethodGet:
		writeJSON(w, 200, map[string]any{"tags": nilIfEmpty(sortedKeys(boolSet(a.tags)))})
	case n == 2 && p[0] == "tags" && p[1] == "quota-info" && r.Method == http.MethodGet:
		s.elQuota(w, r, a)
	case n == 2 && p[0] == "tags" && r.Method == http.MethodPost:
		s.elTagUpdate(w, r, a, p[1])
	case n == 2 && p[0] == "tags" && r.Method == http.MethodDelete:
		for id := range a.tags[p[1]] {
			if d := a.devices[id]; d != nil {
				delete(d.tags, p[1])
			}
		}
		delete(a.tags, p[1])
		writeSuccess(w)
	case n == 4 && p[0] == "tags" && p[2] == "registration_ids" && r.Method == http.MethodGet:
		writeJSON(w, 200, map[string]any{"result": a.tags[p[1]][p[3]]})
	case n == 1 && p[0] == "tags_count" && r.Method == http.MethodGet:
		tags := q["tags"]
		if len(tags) == 0 || len(tags) > provider.MaxTagsPerQuery || q.Get("platform") == "" {
			engagelabError(w, http.StatusBadRequest, 27002, "tags (1..1000) and platform are required")
			return
		}
		out := map[string]int{}
		for _, t := range tags {
			out[t] = len(a.tags[t])
		}
		writeJSON(w, 200, map[string]any{"tagsCount": out})
	case n == 2 && p[0] == "aliases" && r.Method == http.MethodGet:
		var ids []string
		for id, d := range a.devices {
			if d.alias == p[1] {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		if ids == nil {
			writeJSON(w, 200, map[string]any{"registration_ids": nil})
			return
		}
		writeJSON(w, 200, map[string]any{"registration_ids": ids})
	case n == 2 && p[0] == "aliases" && r.Method == http.MethodDelete:
		for _, d := range a.devices {
			if d.alias == p[1] {
				d.alias = ""
			}
		}
		writeSuccess(w)
	default:
		engagelabError(w, http.StatusNotFound, 27002, "unknown path")
	}
}

func boolSet(m map[string]map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s *Sim) elDeviceSet(w http.ResponseWriter, r *http.Request, a *engagelabApp, id string) {
	if provider.ValidateTargetID(id) != nil {
		engagelabError(w, http.StatusBadRequest, 27005, "registration id is illegal")
		return
	}
	var b struct {
		Tags  any     `json:"tags"`
		Alias *string `json:"alias"`
	}
	if err := decodeBody(r, &b); err != nil {
		engagelabError(w, http.StatusBadRequest, 27002, err.Error())
		return
	}
	var add, remove []string
	clearTags := false
	switch t := b.Tags.(type) {
	case nil:
	case string:
		if t != "" {
			engagelabError(w, http.StatusBadRequest, 27002, `tags must be an object {add,remove} or "" to clear`)
			return
		}
		clearTags = true
	case map[string]any:
		var ok bool
		if add, ok = stringList(t["add"]); !ok {
			engagelabError(w, http.StatusBadRequest, 27002, "tags.add must be a list of strings")
			return
		}
		if remove, ok = stringList(t["remove"]); !ok {
			engagelabError(w, http.StatusBadRequest, 27002, "tags.remove must be a list of strings")
			return
		}
	default:
		engagelabError(w, http.StatusBadRequest, 27002, "tags has a wrong type")
		return
	}
	for _, t := range append(append([]string{}, add...), remove...) {
		if err := provider.ValidateTagName(t); err != nil {
			engagelabTagError(w, t, err)
			return
		}
	}
	if b.Alias != nil && *b.Alias != "" {
		if err := provider.ValidateAlias(*b.Alias); err != nil {
			engagelabError(w, http.StatusBadRequest, 27002, err.Error())
			return
		}
		for other, d := range a.devices {
			if other != id && d.alias == *b.Alias {
				engagelabError(w, http.StatusBadRequest, 27010, "alias is already bound to another registration id")
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
	if len(cur)+len(newTags) > elMaxTagsPerDevice {
		engagelabError(w, http.StatusUnauthorized, 27011, fmt.Sprintf("a device can bind at most %d tags", elMaxTagsPerDevice))
		return
	}
	if len(newAppTags) > 0 && len(a.tags)+len(newAppTags) > s.cfg.MaxTagsPerApp {
		s.elTooManyTags(w)
		return
	}
	for t := range newTags {
		if !a.tags[t][id] && len(a.tags[t]) >= s.cfg.MaxDevicesPerTag {
			s.elTooManyDevices(w)
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
	writeSuccess(w)
}

// elTooManyTags answers 27013: the app holds Config.MaxTagsPerApp tags.
func (s *Sim) elTooManyTags(w http.ResponseWriter) {
	engagelabError(w, http.StatusUnauthorized, 27013, fmt.Sprintf("an app can create at most %d tags", s.cfg.MaxTagsPerApp))
}

// elTooManyDevices answers 27014: the tag binds Config.MaxDevicesPerTag devices.
func (s *Sim) elTooManyDevices(w http.ResponseWriter) {
	engagelabError(w, http.StatusUnauthorized, 27014, fmt.Sprintf("a tag can bind at most %d devices", s.cfg.MaxDevicesPerTag))
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

func (s *Sim) elTagUpdate(w http.ResponseWriter, r *http.Request, a *engagelabApp, tag string) {
	if err := provider.ValidateTagName(tag); err != nil {
		engagelabTagError(w, tag, err)
		return
	}
	var b struct {
		RegistrationIDs struct {
			Add    []string `json:"add"`
			Remove []string `json:"remove"`
		} `json:"registration_ids"`
	}
	if err := decodeBody(r, &b); err != nil {
		engagelabError(w, http.StatusBadRequest, 27002, err.Error())
		return
	}
	add, remove := b.RegistrationIDs.Add, b.RegistrationIDs.Remove
	s.maxTagIDs = max(s.maxTagIDs, len(add), len(remove))
	if len(add) > provider.MaxTagIDs || len(remove) > provider.MaxTagIDs || len(add)+len(remove) == 0 {
		engagelabError(w, http.StatusBadRequest, 27002, "registration_ids.add and .remove take at most 1000 ids each, and at least one id in all")
		return
	}
	var invalid []string
	for _, id := range append(append([]string{}, add...), remove...) {
		if strings.HasPrefix(id, "invalid-") || provider.ValidateTargetID(id) != nil {
			invalid = append(invalid, id)
		}
	}
	if len(invalid) > 0 {
		writeInvalidRegIDs(w, invalid)
		return
	}
	members := a.tags[tag]
	if members == nil {
		if len(add) > 0 && len(a.tags) >= s.cfg.MaxTagsPerApp {
			s.elTooManyTags(w)
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
		s.elTooManyDevices(w)
		return
	}
	for _, id := range add {
		if d := a.devices[id]; d != nil && !d.tags[tag] && len(d.tags) >= elMaxTagsPerDevice {
			engagelabError(w, http.StatusUnauthorized, 27011, "a device can bind at most 100 tags")
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
	writeSuccess(w)
}

func (s *Sim) elStatus(w http.ResponseWriter, r *http.Request, a *engagelabApp, now time.Time) {
	var b struct {
		RegistrationIDs []string `json:"registration_ids"`
	}
	if err := decodeBody(r, &b); err != nil {
		engagelabError(w, http.StatusBadRequest, 27002, err.Error())
		return
	}
	if len(b.RegistrationIDs) == 0 || len(b.RegistrationIDs) > provider.MaxTagIDs {
		engagelabError(w, http.StatusBadRequest, 27002, "registration_ids takes 1..1000 ids")
		return
	}
	var invalid []string
	for _, id := range b.RegistrationIDs {
		if strings.HasPrefix(id, "invalid-") || provider.ValidateTargetID(id) != nil {
			invalid = append(invalid, id)
		}
	}
	if len(invalid) > 0 {
		writeInvalidRegIDs(w, invalid)
		return
	}
	out := make([]map[string]any, 0, len(b.RegistrationIDs))
	for _, id := range b.RegistrationIDs {
		if _, known := a.devices[id]; known {
			out = append(out, map[string]any{"regid": id, "online": true})
		} else {
			out = append(out, map[string]any{"regid": id, "online": false, "last_online_time": now.Add(-time.Hour).Format("2006-01-02 15:04:05")})
		}
	}
	writeJSON(w, 200, out)
}

func (s *Sim) elQuota(w http.ResponseWriter, r *http.Request, a *engagelabApp) {
	q := r.URL.Query()
	tags := q["tags"]
	if len(tags) == 0 || len(tags) > provider.MaxTagsPerQuery {
		engagelabError(w, http.StatusBadRequest, 27002, "tags takes 1..1000 tags")
		return
	}
	aliases := 0
	for _, d := range a.devices {
		if d.alias != "" {
			aliases++
		}
	}
	detail := make([]map[string]any, 0, len(tags))
	for _, t := range tags {
		detail = append(detail, map[string]any{"tagName": t, "totalUidQuota": s.cfg.MaxDevicesPerTag, "useUidQuota": len(a.tags[t])})
	}
	writeJSON(w, 200, map[string]any{"data": map[string]any{
		"totalTagQuota": s.cfg.MaxTagsPerApp, "useTagQuota": len(a.tags),
		"totalAliasQuota": elMaxAliasesPerApp, "useAliasQuota": aliases,
		"tagUidQuotaDetail": detail,
	}})
}
