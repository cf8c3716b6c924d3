package provider

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Documented provider limits (../shared/provider-docs). Where the digest and
// an original differ, the original's value is used.
const (
	MaxPushTargets       = 100         // POST /push/single targets per call
	MaxLabelUsers        = 100         // label member add/remove usernames per call
	MaxLabels            = 100         // labels per app
	MaxLabelNameLen      = 64          // characters
	MaxLabelDescLen      = 255         // characters
	MaxListLimit         = 100         // label / member list page size
	MaxNicknameLen       = 100         // push nickname characters
	MaxIgnoreDurationMS  = 604_800_000 // 7 days in ms
	MaxTagIDs            = 1000        // EngageLab add/remove registration ids per call
	MaxTagsPerQuery      = 1000        // EngageLab tags_count / quota-info / devices status
	MaxTagBytes          = 40          // EngageLab tag and alias length in bytes
	MaxTargetIDLen       = 128         // bytes; a sanity bound on user/registration ids
	StartDateLayout      = "2006-01-02 15:04:05"
	MinStartDateLead     = time.Hour
	MaxStartDateLead     = 30 * 24 * time.Hour
	MinStrategy          = 0
	MaxStrategy          = 4
	DefaultStrategy      = 2
	NotifyTypeDefault    = "DEFAULT"
	NotifyTypeAll        = "ALL"
	NotifyTypeAt         = "AT"
	NotifyTypeNone       = "NONE"
	ChatTypeUser         = "user"
	ChatTypeChatGroup    = "chatgroup"
	DisplayStyleSummary  = 0
	DisplayStyleDetailed = 1
)

func fieldErr(field, format string, args ...any) error {
	return FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ValidateLabelName checks an Easemob push label name: 1..64 characters of
// a-z A-Z 0-9 _ - . (case-sensitive).
func ValidateLabelName(name string) error {
	if name == "" {
		return fieldErr("name", "label name is empty")
	}
	if n := utf8.RuneCountInString(name); n > MaxLabelNameLen {
		return fieldErr("name", "label name is %d characters, at most %d allowed", n, MaxLabelNameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return fieldErr("name", "label name has %q; only a-z A-Z 0-9 _ - . are allowed", r)
		}
	}
	return nil
}

// ValidateLabelDescription checks a label description (≤ 255 characters).
func ValidateLabelDescription(desc string) error {
	if !utf8.ValidString(desc) {
		return fieldErr("description", "description is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(desc); n > MaxLabelDescLen {
		return fieldErr("description", "description is %d characters, at most %d allowed", n, MaxLabelDescLen)
	}
	return nil
}

// ValidateTagName checks an EngageLab tag (or alias): 1..40 bytes of
// letters, digits, '_' and Chinese characters.
func ValidateTagName(tag string) error {
	return validateTagLike("tag", tag)
}

// ValidateAlias checks an EngageLab alias, same rule as tags.
func ValidateAlias(alias string) error {
	return validateTagLike("alias", alias)
}

func validateTagLike(field, s string) error {
	if s == "" {
		return fieldErr(field, "%s is empty", field)
	}
	if !utf8.ValidString(s) {
		return fieldErr(field, "%s is not valid UTF-8", field)
	}
	if len(s) > MaxTagBytes {
		return fieldErr(field, "%s is %d bytes, at most %d allowed", field, len(s), MaxTagBytes)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || unicode.Is(unicode.Han, r)) {
			return fieldErr(field, "%s has %q; only letters, digits, _ and Chinese characters are allowed", field, r)
		}
	}
	return nil
}

// ValidateTargetID checks one user ID or registration id: non-empty, at most
// 128 bytes, valid UTF-8, no whitespace, control characters or '/'.
func ValidateTargetID(id string) error {
	switch fault, r := targetIDFault(id); fault {
	case idEmpty:
		return fieldErr("target", "empty id")
	case idTooLong:
		return fieldErr("target", "id is %d bytes, at most %d allowed", len(id), MaxTargetIDLen)
	case idNotUTF8:
		return fieldErr("target", "id is not valid UTF-8")
	case idForbidden:
		return fieldErr("target", "id %q has a forbidden character %q", id, r)
	}
	return nil
}

// ValidTargetID is ValidateTargetID's verdict alone: it allocates nothing,
// for audiences of millions of lines.
func ValidTargetID(id string) bool {
	fault, _ := targetIDFault(id)
	return fault == idOK
}

const (
	idOK = iota
	idEmpty
	idTooLong
	idNotUTF8
	idForbidden
)

// targetIDFault is what is wrong with a target id, and the forbidden
// character if that is it. It keeps nothing of id.
func targetIDFault(id string) (int, rune) {
	if id == "" {
		return idEmpty, 0
	}
	if len(id) > MaxTargetIDLen {
		return idTooLong, 0
	}
	ascii := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if c <= ' ' || c == 0x7f || c == '/' {
			return idForbidden, rune(c)
		}
	}
	if ascii {
		return idOK, 0
	}
	if !utf8.ValidString(id) {
		return idNotUTF8, 0
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' {
			return idForbidden, r
		}
	}
	return idOK, 0
}

// ValidateStrategy checks a push strategy (0..4).
func ValidateStrategy(s int) error {
	if s < MinStrategy || s > MaxStrategy {
		return fieldErr("strategy", "strategy %d is out of range %d..%d", s, MinStrategy, MaxStrategy)
	}
	return nil
}

// ParseStartDate parses a provider startDate ("yyyy-MM-dd HH:mm:ss") in loc.
func ParseStartDate(s string, loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation(StartDateLayout, s, loc)
	if err != nil {
		return time.Time{}, fieldErr("startDate", "%q is not in the format yyyy-MM-dd HH:mm:ss", s)
	}
	return t, nil
}

// FormatStartDate renders t as a provider startDate in loc (the provider
// server's zone).
func FormatStartDate(t time.Time, loc *time.Location) string {
	return t.In(loc).Format(StartDateLayout)
}

// ValidateStartDate checks a startDate string: the documented format, in loc,
// at least 1 hour and at most 30 days after now.
func ValidateStartDate(s string, loc *time.Location, now time.Time) error {
	t, err := ParseStartDate(s, loc)
	if err != nil {
		return err
	}
	return ValidateStartTime(t, now)
}

// ValidateStartTime checks a scheduled task start: at least 1 hour and at
// most 30 days after now.
func ValidateStartTime(t, now time.Time) error {
	lead := t.Sub(now)
	if lead < MinStartDateLead {
		return fieldErr("startDate", "start %s is %s from now; it must be at least 1 hour ahead", t.Format(time.RFC3339), lead.Round(time.Second))
	}
	if lead > MaxStartDateLead {
		return fieldErr("startDate", "start %s is more than 30 days ahead", t.Format(time.RFC3339))
	}
	return nil
}

// ValidateIgnoreInterval checks a DND interval "HH:MM-HH:MM" (hours 00..23,
// minutes 00..59). The empty string (no interval) is valid.
func ValidateIgnoreInterval(s string) error {
	if s == "" {
		return nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok || !validHHMM(a) || !validHHMM(b) {
		return fieldErr("ignoreInterval", "%q is not HH:MM-HH:MM with hours 00-23 and minutes 00-59", s)
	}
	return nil
}

func validHHMM(s string) bool {
	if len(s) != 5 || s[2] != ':' {
		return false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	return h <= 23 && m <= 59
}

// ValidateIgnoreDuration checks a DND duration in ms (0..604800000).
func ValidateIgnoreDuration(ms int64) error {
	if ms < 0 || ms > MaxIgnoreDurationMS {
		return fieldErr("ignoreDuration", "%d is out of range 0..%d ms", ms, MaxIgnoreDurationMS)
	}
	return nil
}

// ValidateNotifyType checks a notification mode type.
func ValidateNotifyType(t string) error {
	switch t {
	case NotifyTypeDefault, NotifyTypeAll, NotifyTypeAt, NotifyTypeNone:
		return nil
	}
	return fieldErr("type", "%q is not one of DEFAULT, ALL, AT, NONE", t)
}

// ValidateChatType checks a notification chat type (user or chatgroup).
func ValidateChatType(t string) error {
	if t == ChatTypeUser || t == ChatTypeChatGroup {
		return nil
	}
	return fieldErr("chattype", "%q is not user or chatgroup", t)
}

// ValidateNickname checks a push nickname (≤ 100 characters).
func ValidateNickname(n string) error {
	if !utf8.ValidString(n) {
		return fieldErr("nickname", "nickname is not valid UTF-8")
	}
	if c := utf8.RuneCountInString(n); c > MaxNicknameLen {
		return fieldErr("nickname", "nickname is %d characters, at most %d allowed", c, MaxNicknameLen)
	}
	return nil
}

// ValidateDisplayStyle checks notification_display_style (0 or 1).
func ValidateDisplayStyle(s int) error {
	if s != DisplayStyleSummary && s != DisplayStyleDetailed {
		return fieldErr("notification_display_style", "%d is not 0 or 1", s)
	}
	return nil
}

// ValidateListLimit checks a page size for label/member listing (1..100);
// 0 means the provider default.
func ValidateListLimit(limit int) error {
	if limit < 0 || limit > MaxListLimit {
		return fieldErr("limit", "%d is out of range 1..%d", limit, MaxListLimit)
	}
	return nil
}

// ValidateCount checks that n items are within 1..max for field.
func ValidateCount(field string, n, max int) error {
	if n == 0 {
		return fieldErr(field, "no items given")
	}
	if n > max {
		return fieldErr(field, "%d items given, at most %d per call", n, max)
	}
	return nil
}
