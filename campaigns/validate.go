package campaigns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/sendwindow"
)

// Limits of a campaign message (a kind's own limits are in its file,
// worker/kind_*.go).
const (
	MaxMessageBytes     = 1 << 20 // NATS default max payload
	MaxInlineTargets    = 20_000  // beyond this, use an audience object
	MaxPushMessageBytes = 64 << 10
)

// AppInfo is what validation needs to know of a configured app.
type AppInfo struct {
	Provider string         // "easemob" or "engagelab"
	Location *time.Location // the provider server's zone
}

// Env is the context a campaign is validated in.
type Env struct {
	Apps map[string]AppInfo
	Now  time.Time
	// Kinds are the kinds this campaignd sends, each with its rules
	// (worker.KindRules); a campaign of another kind is rejected, naming
	// its kind, rather than accepted and dropped.
	Kinds map[Kind]KindRules
}

// KindRules is what validation knows of a kind. Each kind declares its
// own beside its sending (worker/kind_*.go), so that a kind lives in one
// file; the common fields (id, app, kind, start_date, strategy, priority,
// rate_limit, expires_at) are checked here for every kind.
type KindRules struct {
	// Providers are the app providers the kind runs on (provider.Names).
	Providers []string
	// Fields are the payload fields the kind reads (PayloadFields names);
	// any other payload field that is set is an error naming it.
	Fields []string
	// Validate lists the problems of the kind's payload, for an app of a
	// provider it runs on; nil: nothing to check.
	Validate func(c *Campaign, app AppInfo) FieldErrors
}

// FieldErrorf is the error of one field, for a kind's Validate.
func FieldErrorf(field, format string, args ...any) FieldError { return fe(field, format, args...) }

var idRule = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidID reports whether id follows the campaign id rule [A-Za-z0-9_-]{1,128}.
func ValidID(id string) bool { return idRule.MatchString(id) }

func fe(field, format string, args ...any) FieldError {
	return FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// PeekID reads the id of a message that may be anything. It returns the id
// as sent (when the message is a JSON object whose id is a string) and what
// is wrong with it; no errors means the id is valid.
func PeekID(data []byte) (*string, FieldErrors) {
	if len(data) > MaxMessageBytes {
		return nil, FieldErrors{fe("", "message is %d bytes, at most %d", len(data), MaxMessageBytes)}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, FieldErrors{fe("", "not a JSON object: %v", trimJSONErr(err))}
	}
	raw, ok := probe["id"]
	if !ok {
		return nil, FieldErrors{fe("id", "is required")}
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		return nil, FieldErrors{fe("id", "must be a string")}
	}
	if !ValidID(id) {
		return &id, FieldErrors{fe("id", "must match [A-Za-z0-9_-]{1,128}")}
	}
	return &id, nil
}

func trimJSONErr(err error) string {
	s := err.Error()
	return strings.TrimPrefix(s, "json: ")
}

// Decode parses a campaign strictly: unknown fields and wrong types are
// errors naming the field. It never panics on any input.
func Decode(data []byte) (*Campaign, FieldErrors) {
	if len(data) > MaxMessageBytes {
		return nil, FieldErrors{fe("", "message is %d bytes, at most %d (use audience for large target lists)", len(data), MaxMessageBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Campaign
	if err := dec.Decode(&c); err != nil {
		e := decodeError(err)
		if e.Message == "unknown field" {
			e.Field = unknownFieldPath(data, e.Field)
		}
		return nil, FieldErrors{e}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, FieldErrors{fe("", "trailing data after the JSON object")}
	}
	if errs := checkRaw(data, &c); len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
}

// unknownFieldPath names an unknown field with the object it is in
// ("send_window.colour"): encoding/json names the key alone. A key the
// top level has is the top level's; else the first nested object that
// has it names it.
func unknownFieldPath(data []byte, key string) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(data, &top) != nil {
		return key
	}
	if _, ok := top[key]; ok {
		return key
	}
	for _, parent := range []string{"send_window", "settings", "template", "audience"} {
		var inner map[string]json.RawMessage
		if raw, ok := top[parent]; ok && json.Unmarshal(raw, &inner) == nil {
			if _, ok := inner[key]; ok {
				return parent + "." + key
			}
		}
	}
	return key
}

func decodeError(err error) FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return fe("", "must be a JSON object, got %s", te.Value)
		}
		return fe(field, "must be %s, got %s", jsonType(te.Type.String()), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fe("", "not valid JSON at byte %d: %s", se.Offset, trimJSONErr(err))
	}
	msg := trimJSONErr(err)
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return fe("expires_at", "must be an RFC 3339 time such as 2026-12-01T12:00:00Z")
	}
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return fe(strings.Trim(f, `"`), "unknown field")
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fe("", "empty or truncated message")
	}
	return fe("", "%s", msg)
}

func jsonType(goType string) string {
	switch {
	case strings.Contains(goType, "[]"):
		return "a list"
	case strings.Contains(goType, "int"), strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "string"), goType == "campaigns.Kind", goType == "campaigns.Priority":
		return "a string"
	case strings.Contains(goType, "bool"):
		return "true or false"
	case strings.Contains(goType, "time.Time"):
		return "an RFC 3339 time"
	default:
		return "an object"
	}
}

// Normalize fills the defaults: app "default", priority "normal".
func (c *Campaign) Normalize() {
	if c.App == "" {
		c.App = "default"
	}
	if c.Priority == "" {
		c.Priority = PriorityNormal
	}
}

func validKind(k Kind) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Validate lists every problem of a (normalized) campaign: the common
// fields here, the payload by the rules of its kind (env.Kinds).
func (c *Campaign) Validate(env Env) FieldErrors {
	var errs FieldErrors
	if !ValidID(c.ID) {
		errs = append(errs, fe("id", "must match [A-Za-z0-9_-]{1,128}"))
	}
	app, appOK := env.Apps[c.App]
	if !appOK {
		errs = append(errs, fe("app", "unknown app %q", c.App))
	}
	rules, handled := env.Kinds[c.Kind]
	switch {
	case c.Kind == "":
		errs = append(errs, fe("kind", "is required"))
	case !validKind(c.Kind):
		errs = append(errs, fe("kind", "unknown kind %q (want one of %s)", c.Kind, joinKinds(Kinds)))
	case !handled:
		errs = append(errs, fe("kind", "%s is not handled by this campaignd version yet", c.Kind))
	}
	// The payload is judged by the app's provider's rules; an unknown
	// app's (named above) by the zero AppInfo (Easemob's rules).
	runs := handled && (!appOK || slices.Contains(rules.Providers, app.Provider))
	if handled && !runs {
		errs = append(errs, fe("kind", "%s is not available for %s apps (they run %s)", c.Kind, app.Provider, joinKinds(kindsOn(env.Kinds, app.Provider))))
	}
	switch c.Priority {
	case PriorityHigh, PriorityNormal, PriorityLow, "":
	default:
		errs = append(errs, fe("priority", "must be high, normal or low"))
	}
	if c.Strategy != nil {
		if err := provider.ValidateStrategy(*c.Strategy); err != nil {
			errs = append(errs, fe("strategy", "must be 0..4, got %d", *c.Strategy))
		}
	}
	if c.RateLimit != 0 && (c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0)) {
		errs = append(errs, fe("rate_limit", "must be a positive number of calls per second"))
	}
	loc := time.UTC
	if appOK && app.Location != nil {
		loc = app.Location
	}
	start, _, startErr := c.StartTime(loc, env.Now)
	if startErr != nil {
		errs = append(errs, fe("start_date", "%v", startErr))
	}
	errs = append(errs, c.checkSendWindow(loc)...)
	if c.ExpiresAt != nil {
		switch {
		case !c.ExpiresAt.After(env.Now):
			errs = append(errs, fe("expires_at", "is in the past"))
		case startErr == nil && !c.ExpiresAt.After(start):
			errs = append(errs, fe("expires_at", "is before the start"))
		}
	}
	if !handled {
		return errs // the payload of an unknown kind cannot be judged
	}
	for _, f := range PayloadFields {
		if !f.Ignored && f.Set(c) && !slices.Contains(rules.Fields, f.Name) {
			errs = append(errs, fe(f.Name, "%s", unusedField(f, c.Kind, env.Kinds)))
		}
	}
	if runs && rules.Validate != nil {
		errs = append(errs, rules.Validate(c, app)...)
	}
	return errs
}

// unusedField says that payload field f is not used by kind k.
func unusedField(f PayloadField, k Kind, kinds map[Kind]KindRules) string {
	verb := "is"
	if f.Plural {
		verb = "are"
	}
	var users []Kind
	for _, kk := range Kinds {
		if r, ok := kinds[kk]; ok && slices.Contains(r.Fields, f.Name) {
			users = append(users, kk)
		}
	}
	if len(users) == 1 {
		return fmt.Sprintf("%s only used by %s", verb, users[0])
	}
	return fmt.Sprintf("%s not used by %s", verb, k)
}

// kindsOn lists the kinds that run on provider p, in contract order.
func kindsOn(kinds map[Kind]KindRules, p string) []Kind {
	var out []Kind
	for _, k := range Kinds {
		if r, ok := kinds[k]; ok && slices.Contains(r.Providers, p) {
			out = append(out, k)
		}
	}
	return out
}

func joinKinds(ks []Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func msgOf(err error) string {
	var f FieldError
	if errors.As(err, &f) {
		return f.Message
	}
	return err.Error()
}

// MessageOf is the message of a provider rule's error without its field
// (the caller names the field).
func MessageOf(err error) string { return msgOf(err) }

// CheckPushMessage checks push_message, which push kinds require: a
// non-empty JSON object of at most MaxPushMessageBytes.
func CheckPushMessage(c *Campaign) FieldErrors {
	switch {
	case len(c.PushMessage) == 0 || string(c.PushMessage) == "null":
		return FieldErrors{fe("push_message", "is required for %s", c.Kind)}
	case len(c.PushMessage) > MaxPushMessageBytes:
		return FieldErrors{fe("push_message", "is over %d bytes", MaxPushMessageBytes)}
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(c.PushMessage, &obj) != nil {
		return FieldErrors{fe("push_message", "must be a JSON object")}
	} else if len(obj) == 0 {
		return FieldErrors{fe("push_message", "is empty")}
	}
	return nil
}

// CheckLabel checks label (required) and label_description: an Easemob
// push label, or an EngageLab tag for an engagelab app.
func CheckLabel(c *Campaign, app AppInfo) FieldErrors {
	var errs FieldErrors
	if c.Label == "" {
		errs = append(errs, fe("label", "is required for %s", c.Kind))
	} else if app.Provider == provider.EngageLab {
		if err := provider.ValidateTagName(c.Label); err != nil {
			errs = append(errs, fe("label", "%s", msgOf(err)))
		}
	} else if err := provider.ValidateLabelName(c.Label); err != nil {
		errs = append(errs, fe("label", "%s", msgOf(err)))
	}
	if err := provider.ValidateLabelDescription(c.LabelDescription); err != nil {
		errs = append(errs, fe("label_description", "%s", msgOf(err)))
	}
	return errs
}

// CheckTargets checks targets or audience (one of them is required), with
// at most max inline targets, each a valid target id.
func CheckTargets(c *Campaign, max int) FieldErrors {
	var errs FieldErrors
	switch {
	case len(c.Targets) > 0 && c.Audience != nil:
		errs = append(errs, fe("targets", "give targets or audience, not both"))
	case len(c.Targets) == 0 && c.Audience == nil:
		errs = append(errs, fe("targets", "is required for %s (or audience)", c.Kind))
	case c.Audience != nil:
		if c.Audience.Bucket == "" {
			errs = append(errs, fe("audience.bucket", "is required"))
		}
		if c.Audience.Object == "" {
			errs = append(errs, fe("audience.object", "is required"))
		}
	}
	if len(c.Targets) > max {
		errs = append(errs, fe("targets", "%d targets, at most %d inline for %s (use audience for more)", len(c.Targets), max, c.Kind))
		return errs
	}
	bad := 0
	var zones sendwindow.Zones // local time: each target's zone, loaded once
	for i, t := range c.Targets {
		msg := ""
		if c.LocalTime() {
			id, zone, given := SplitZone(t)
			if err := provider.ValidateTargetID(id); err != nil {
				msg = msgOf(err)
			} else if _, ok := zones.Load(zone); given && !ok {
				msg = fmt.Sprintf("unknown time zone %q after the id's last comma (an IANA name such as Asia/Tokyo; local_time reads \"id,Zone\")", zone)
			}
		} else if err := provider.ValidateTargetID(t); err != nil {
			msg = msgOf(err)
		}
		if msg != "" {
			if bad < 20 {
				errs = append(errs, fe(fmt.Sprintf("targets[%d]", i), "%s", msg))
			}
			bad++
		}
	}
	if bad > 20 {
		errs = append(errs, fe("targets", "%d invalid ids in all (first 20 listed)", bad))
	}
	return errs
}

// StartTime reads start_date: "yyyy-MM-dd HH:mm:ss" in loc (the app's
// provider zone) or RFC 3339 with an offset. Absent or past means now
// (delayed false).
func (c *Campaign) StartTime(loc *time.Location, now time.Time) (time.Time, bool, error) {
	if c.StartDate == "" {
		return now, false, nil
	}
	t, err := time.ParseInLocation(provider.StartDateLayout, c.StartDate, loc)
	if err != nil {
		t, err = time.Parse(time.RFC3339, c.StartDate)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("%q is neither yyyy-MM-dd HH:mm:ss (app time zone) nor RFC 3339 with an offset", c.StartDate)
		}
	}
	if t.Year() > 9999 || t.Year() < 1970 {
		return time.Time{}, false, fmt.Errorf("%q is out of range", c.StartDate)
	}
	if !t.After(now) {
		return now, false, nil
	}
	return t, true, nil
}

// Dedup returns ids without repeats, keeping first occurrences in order.
func Dedup(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out
}
