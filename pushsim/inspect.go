package pushsim

import (
	"maps"
	"net/http"
	"slices"
	"time"
)

// This file is the inspection of the state non-push campaigns change:
// Easemob labels, per-user settings and templates, EngageLab tags. Every
// call takes the lock, answers copies and never creates the app it looks at.

// LabelInfo is one Easemob label and its members.
type LabelInfo struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	Members     []string  `json:"members"` // usernames, sorted
	Count       int       `json:"count"`
}

// DNDInfo is a user's legacy do-not-disturb setting (hours 0..23).
type DNDInfo struct {
	Enabled bool `json:"enabled"`
	Start   int  `json:"start"`
	End     int  `json:"end"`
}

// UserSettingsInfo is what an Easemob user was given by PUT /users/{u},
// PUT /users/{u}/notification/{chattype}/{key} and
// PUT /users/{u}/notification/language.
type UserSettingsInfo struct {
	User         string                `json:"user"`
	Nickname     string                `json:"nickname"`
	DisplayStyle int                   `json:"notification_display_style"`
	DND          DNDInfo               `json:"dnd"`
	Modes        map[string]NotifyMode `json:"modes"` // "chattype/key", e.g. "user/u2", "chatgroup/g1"
	Language     string                `json:"language"`
}

// TemplateInfo is one Easemob push template.
type TemplateInfo struct {
	Name           string    `json:"name"`
	TitlePattern   string    `json:"title_pattern"`
	ContentPattern string    `json:"content_pattern"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// sortedKeys is m's keys in order, an empty list (never nil: JSON []) for
// an empty map.
func sortedKeys[V any](m map[string]V) []string {
	return append([]string{}, slices.Sorted(maps.Keys(m))...)
}

// Labels returns the names of the labels of Easemob app org/app, sorted
// (empty for an app never called).
func (s *Sim) Labels(org, app string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.easemob[easemobKey(org, app)]; a != nil {
		return sortedKeys(a.labels)
	}
	return []string{}
}

// Label returns the label name of Easemob app org/app; false if there is none.
func (s *Sim) Label(org, app, name string) (LabelInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.easemob[easemobKey(org, app)]
	if a == nil || a.labels[name] == nil {
		return LabelInfo{}, false
	}
	l := a.labels[name]
	members := sortedKeys(l.members)
	return LabelInfo{Name: l.Name, Description: l.Description, CreatedAt: msTime(l.CreatedAt),
		Members: members, Count: len(members)}, true
}

// UserSettings returns the settings user was given in Easemob app org/app;
// false if it was given none (a user only pushed, labelled or looked up has
// none).
func (s *Sim) UserSettings(org, app, user string) (UserSettingsInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.easemob[easemobKey(org, app)]
	if a == nil || a.users[user] == nil || a.users[user].set == nil {
		return UserSettingsInfo{}, false
	}
	set := a.users[user].set
	modes := make(map[string]NotifyMode, len(set.modes))
	for k, m := range set.modes {
		modes[k] = m
	}
	return UserSettingsInfo{
		User: user, Nickname: set.nickname, DisplayStyle: set.style,
		DND:   DNDInfo{Enabled: set.dnd, Start: set.dndStart, End: set.dndEnd},
		Modes: modes, Language: set.language,
	}, true
}

// Templates returns the names of the push templates of Easemob app
// org/app, sorted.
func (s *Sim) Templates(org, app string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.easemob[easemobKey(org, app)]; a != nil {
		return sortedKeys(a.templates)
	}
	return []string{}
}

// Template returns the push template name of Easemob app org/app; false if
// there is none.
func (s *Sim) Template(org, app, name string) (TemplateInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.easemob[easemobKey(org, app)]
	if a == nil || a.templates[name] == nil {
		return TemplateInfo{}, false
	}
	t := a.templates[name]
	return TemplateInfo{Name: t.Name, TitlePattern: t.TitlePattern, ContentPattern: t.ContentPattern,
		CreatedAt: msTime(t.CreateAt), UpdatedAt: msTime(t.UpdateAt)}, true
}

// TagMembers returns the registration ids bound to EngageLab tag of app
// appKey, sorted; false if the app has no such tag. A tag whose devices
// were all removed or deleted stays, empty, until DELETE /v4/tags/{tag}.
func (s *Sim) TagMembers(appKey, tag string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.engagelab[appKey]
	if a == nil || a.tags[tag] == nil {
		return nil, false
	}
	return sortedKeys(a.tags[tag]), true
}

// queryParams reads the named query parameters; it answers 400 and reports
// false when one is missing or empty.
func queryParams(w http.ResponseWriter, r *http.Request, names ...string) ([]string, bool) {
	q := r.URL.Query()
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = q.Get(n)
		if out[i] == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": n + " query parameter required"})
			return nil, false
		}
	}
	return out, true
}

func notFound(w http.ResponseWriter, what string) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": what + " not found"})
}

// answerFound answers v, or 404 naming what when it was not found.
func answerFound[T any](w http.ResponseWriter, what string, v T, found bool) {
	if !found {
		notFound(w, what)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// serveInspect answers the GET /_sim/ state paths; it reports false for a
// path it does not know.
func (s *Sim) serveInspect(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case "/_sim/labels":
		if p, ok := queryParams(w, r, "org", "app"); ok {
			writeJSON(w, http.StatusOK, map[string]any{"org": p[0], "app": p[1], "labels": s.Labels(p[0], p[1])})
		}
	case "/_sim/label":
		if p, ok := queryParams(w, r, "org", "app", "name"); ok {
			v, found := s.Label(p[0], p[1], p[2])
			answerFound(w, "label", v, found)
		}
	case "/_sim/user":
		if p, ok := queryParams(w, r, "org", "app", "user"); ok {
			v, found := s.UserSettings(p[0], p[1], p[2])
			answerFound(w, "user settings", v, found)
		}
	case "/_sim/templates":
		if p, ok := queryParams(w, r, "org", "app"); ok {
			writeJSON(w, http.StatusOK, map[string]any{"org": p[0], "app": p[1], "templates": s.Templates(p[0], p[1])})
		}
	case "/_sim/template":
		if p, ok := queryParams(w, r, "org", "app", "name"); ok {
			v, found := s.Template(p[0], p[1], p[2])
			answerFound(w, "template", v, found)
		}
	case "/_sim/tag":
		if p, ok := queryParams(w, r, "app_key", "tag"); ok {
			if ids, found := s.TagMembers(p[0], p[1]); found {
				writeJSON(w, http.StatusOK, map[string]any{"app_key": p[0], "tag": p[1], "registration_ids": ids, "count": len(ids)})
			} else {
				notFound(w, "tag")
			}
		}
	default:
		return false
	}
	return true
}
