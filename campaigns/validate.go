package campaigns

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/campaignd/campaignd/provider"
)

// Limits of a campaign message.
const (
	MaxMessageBytes       = 1 << 20 // NATS default max payload
	MaxInlineTargets      = 20_000  // beyond this, use an audience object
	MaxSinglePushTargets  = 1_000   // push/sync is 1 call/s by default
	MaxPushMessageBytes   = 64 << 10
	MaxLanguageLen        = 32
	MaxTemplateNameLen    = 64
	MaxTemplatePatternLen = 1024
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
	// Kinds, when not nil, are the kinds this campaignd can send; a valid
	// campaign of another kind is rejected rather than accepted and dropped.
	Kinds map[Kind]bool
}

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
		return nil, FieldErrors{decodeError(err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, FieldErrors{fe("", "trailing data after the JSON object")}
	}
	if errs := checkRaw(data, &c); len(errs) > 0 {
		return nil, errs
	}
	return &c, nil
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

func isPush(k Kind) bool {
	return k == KindBatchPush || k == KindSinglePush || k == KindLabelPush || k == KindBroadcast
}

func validKind(k Kind) bool {
	for _, x := range Kinds {
		if x == k {
			return true
		}
	}
	return false
}

// Validate lists every problem of a (normalized) campaign.
func (c *Campaign) Validate(env Env) FieldErrors {
	var errs FieldErrors
	if !ValidID(c.ID) {
		errs = append(errs, fe("id", "must match [A-Za-z0-9_-]{1,128}"))
	}
	app, appOK := env.Apps[c.App]
	if !appOK {
		errs = append(errs, fe("app", "unknown app %q", c.App))
	}
	if c.Kind == "" {
		errs = append(errs, fe("kind", "is required"))
	} else if !validKind(c.Kind) {
		errs = append(errs, fe("kind", "unknown kind %q (want one of batch_push, single_push, label_push, broadcast, label_members, user_settings, template)", c.Kind))
	}
	if env.Kinds != nil && validKind(c.Kind) && !env.Kinds[c.Kind] {
		errs = append(errs, fe("kind", "%s is not handled by this campaignd version yet", c.Kind))
	}
	engagelab := appOK && app.Provider == provider.EngageLab
	if engagelab && c.Kind != KindLabelMembers && validKind(c.Kind) {
		errs = append(errs, fe("kind", "%s is not available for engagelab apps (only label_members: tags)", c.Kind))
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
	if c.ExpiresAt != nil {
		switch {
		case !c.ExpiresAt.After(env.Now):
			errs = append(errs, fe("expires_at", "is in the past"))
		case startErr == nil && !c.ExpiresAt.After(start):
			errs = append(errs, fe("expires_at", "is before the start"))
		}
	}

	if isPush(c.Kind) {
		switch {
		case len(c.PushMessage) == 0 || string(c.PushMessage) == "null":
			errs = append(errs, fe("push_message", "is required for %s", c.Kind))
		case len(c.PushMessage) > MaxPushMessageBytes:
			errs = append(errs, fe("push_message", "is over %d bytes", MaxPushMessageBytes))
		default:
			var obj map[string]json.RawMessage
			if json.Unmarshal(c.PushMessage, &obj) != nil {
				errs = append(errs, fe("push_message", "must be a JSON object"))
			} else if len(obj) == 0 {
				errs = append(errs, fe("push_message", "is empty"))
			}
		}
	} else if len(c.PushMessage) > 0 {
		errs = append(errs, fe("push_message", "is not used by %s", c.Kind))
	}

	needsTargets := c.Kind == KindBatchPush || c.Kind == KindSinglePush || c.Kind == KindLabelMembers || c.Kind == KindUserSettings
	switch {
	case needsTargets:
		errs = append(errs, c.validateAudience()...)
	case len(c.Targets) > 0 || c.Audience != nil:
		if validKind(c.Kind) {
			errs = append(errs, fe("targets", "are not used by %s", c.Kind))
		}
	}

	switch c.Kind {
	case KindLabelPush, KindLabelMembers:
		if c.Label == "" {
			errs = append(errs, fe("label", "is required for %s", c.Kind))
		} else if engagelab {
			if err := provider.ValidateTagName(c.Label); err != nil {
				errs = append(errs, fe("label", "%s", msgOf(err)))
			}
		} else if err := provider.ValidateLabelName(c.Label); err != nil {
			errs = append(errs, fe("label", "%s", msgOf(err)))
		}
		if err := provider.ValidateLabelDescription(c.LabelDescription); err != nil {
			errs = append(errs, fe("label_description", "%s", msgOf(err)))
		}
	default:
		if c.Label != "" && validKind(c.Kind) {
			errs = append(errs, fe("label", "is not used by %s", c.Kind))
		}
	}
	if c.Kind == KindLabelMembers {
		if c.Action != "add" && c.Action != "remove" {
			errs = append(errs, fe("action", "must be add or remove"))
		}
	} else if c.Action != "" && validKind(c.Kind) {
		errs = append(errs, fe("action", "is only used by label_members"))
	}
	if c.Kind == KindUserSettings {
		errs = append(errs, c.validateSettings()...)
	} else if c.Settings != nil && validKind(c.Kind) {
		errs = append(errs, fe("settings", "is only used by user_settings"))
	}
	if c.Kind == KindTemplate {
		errs = append(errs, c.validateTemplate()...)
	} else if c.Template != nil && validKind(c.Kind) {
		errs = append(errs, fe("template", "is only used by template"))
	}
	return errs
}

func msgOf(err error) string {
	var f FieldError
	if errors.As(err, &f) {
		return f.Message
	}
	return err.Error()
}

func (c *Campaign) validateAudience() FieldErrors {
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
	max := MaxInlineTargets
	if c.Kind == KindSinglePush {
		max = MaxSinglePushTargets
	}
	if len(c.Targets) > max {
		errs = append(errs, fe("targets", "%d targets, at most %d inline for %s (use audience for more)", len(c.Targets), max, c.Kind))
		return errs
	}
	bad := 0
	for i, t := range c.Targets {
		if err := provider.ValidateTargetID(t); err != nil {
			if bad < 20 {
				errs = append(errs, fe(fmt.Sprintf("targets[%d]", i), "%s", msgOf(err)))
			}
			bad++
		}
	}
	if bad > 20 {
		errs = append(errs, fe("targets", "%d invalid ids in all (first 20 listed)", bad))
	}
	return errs
}

func (c *Campaign) validateSettings() FieldErrors {
	var errs FieldErrors
	s := c.Settings
	if s == nil {
		return FieldErrors{fe("settings", "is required for user_settings")}
	}
	if s.Nickname == nil && s.NotificationDisplayStyle == nil && s.Type == nil && s.IgnoreInterval == nil && s.IgnoreDuration == nil && s.Language == nil {
		errs = append(errs, fe("settings", "sets nothing"))
	}
	if s.Nickname != nil {
		if err := provider.ValidateNickname(*s.Nickname); err != nil {
			errs = append(errs, fe("settings.nickname", "%s", msgOf(err)))
		}
	}
	if s.NotificationDisplayStyle != nil {
		if err := provider.ValidateDisplayStyle(*s.NotificationDisplayStyle); err != nil {
			errs = append(errs, fe("settings.notification_display_style", "%s", msgOf(err)))
		}
	}
	if s.Type != nil {
		if err := provider.ValidateNotifyType(*s.Type); err != nil {
			errs = append(errs, fe("settings.type", "%s", msgOf(err)))
		}
	}
	if s.IgnoreInterval != nil {
		if err := provider.ValidateIgnoreInterval(*s.IgnoreInterval); err != nil {
			errs = append(errs, fe("settings.ignoreInterval", "%s", msgOf(err)))
		}
	}
	if s.IgnoreDuration != nil {
		if err := provider.ValidateIgnoreDuration(*s.IgnoreDuration); err != nil {
			errs = append(errs, fe("settings.ignoreDuration", "%s", msgOf(err)))
		}
	}
	if s.Language != nil && len(*s.Language) > MaxLanguageLen {
		errs = append(errs, fe("settings.language", "is over %d bytes", MaxLanguageLen))
	}
	return errs
}

func (c *Campaign) validateTemplate() FieldErrors {
	t := c.Template
	if t == nil {
		return FieldErrors{fe("template", "is required for the template kind")}
	}
	var errs FieldErrors
	if t.Name == "" || len(t.Name) > MaxTemplateNameLen {
		errs = append(errs, fe("template.name", "must be 1..%d bytes", MaxTemplateNameLen))
	} else if strings.IndexFunc(t.Name, unicode.IsControl) >= 0 || !utf8.ValidString(t.Name) {
		errs = append(errs, fe("template.name", "must be valid UTF-8 without control characters"))
	}
	if !t.Delete {
		if t.TitlePattern == "" {
			errs = append(errs, fe("template.title_pattern", "is required to create a template"))
		}
		if t.ContentPattern == "" {
			errs = append(errs, fe("template.content_pattern", "is required to create a template"))
		}
	}
	if len(t.TitlePattern) > MaxTemplatePatternLen || len(t.ContentPattern) > MaxTemplatePatternLen {
		errs = append(errs, fe("template", "patterns are limited to %d bytes", MaxTemplatePatternLen))
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
