package pushsim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/campaignd/campaignd/provider"
)

// This file holds the providers' rules as pushsim judges them. They are
// written from the providers' own documentation in shared/provider-docs —
// the Chinese (000–003) and Spanish (004) originals; the README there is an
// English digest and gives way to them — and never taken from the client's
// validators in package provider: a rule the client gets wrong must fail
// against pushsim, not pass on both sides.
//
// Each rule cites its file and section. "Not documented" marks a rule the
// files are silent on, kept as pushsim always judged it.
//
// A broken rule is a *ruleError whose text names the field first, as the
// answers give it: "name: …", "strategy: …".

// ruleError is a request field that breaks a rule.
type ruleError struct {
	field string // as the request names it: JSON field, path or query parameter
	err   error  // what is wrong with it
}

func (e *ruleError) Error() string { return e.field + ": " + e.err.Error() }

func (e *ruleError) Unwrap() error { return e.err }

// ruleErr is a ruleError on field; format and args are as fmt.Errorf's (%w
// wraps a cause).
func ruleErr(field, format string, args ...any) error {
	return &ruleError{field: field, err: fmt.Errorf(format, args...)}
}

// messageError is a pushMessage that breaks 003's rule; Easemob answers it
// 400 MessageException "bad_request" (003 常见错误码), not
// IllegalArgumentException.
type messageError struct{ msg string }

func (e *messageError) Error() string { return "bad_request: pushMessage " + e.msg }

// firstError returns the first non-nil error of errs.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- Easemob: sending pushes (003_fd1a4a899fe347aa.txt) ----

const (
	// 003 以异步方式批量发送推送通知 › 请求 body › targets: "最多可传 100 个",
	// and 是否必需 "是" (at least one).
	maxPushTargets = 100

	// 003 请求 body › strategy (every push call): 0 to 4, 2 by default.
	minStrategy, maxStrategy = 0, 4

	// 003 使用标签推送接口发送推送通知 and 创建全量推送任务 › startDate:
	// "格式: yyyy-MM-dd HH:mm:ss"; "定时时间只能是 1 小时之后，30 天之内";
	// "定时时间时区判定为服务器所在时区" (Config.Zone).
	startDateLayout  = "2006-01-02 15:04:05"
	minStartDateLead = time.Hour
	maxStartDateLead = 30 * 24 * time.Hour
)

// checkStrategy: 003 请求 body › strategy — 0 vendor first, 1 Easemob only,
// 2 (default) vendor only, 3 online Easemob / offline vendor, 4 Easemob
// online only. Nothing else.
func checkStrategy(v int) error {
	if v < minStrategy || v > maxStrategy {
		return ruleErr("strategy", "%d is not one of the strategies %d..%d", v, minStrategy, maxStrategy)
	}
	return nil
}

// checkPushMessage: 003 请求 body › pushMessage is a required JSON object
// ("JSON", 是否必需 "是"); a bad one is 400 MessageException (003 常见错误码).
// That it must not be empty is not documented: kept.
func checkPushMessage(raw json.RawMessage) error {
	var obj map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &obj) != nil || len(obj) == 0 {
		return &messageError{msg: "must be a non-empty object"}
	}
	return nil
}

// checkPushTargets: 003 以异步方式批量发送推送通知 › targets — 1 to 100 user
// ids.
func checkPushTargets(n int) error {
	if n < 1 || n > maxPushTargets {
		return ruleErr("targets", "must hold 1 to %d user ids, got %d", maxPushTargets, n)
	}
	return nil
}

// checkLabelPushTargets: 003 使用标签推送接口发送推送通知 › targets —
// "只支持传入单个标签名称": exactly one label name.
func checkLabelPushTargets(n int) error {
	if n != 1 {
		return ruleErr("targets", "must hold exactly one label name, got %d", n)
	}
	return nil
}

// parseStartDate: 003 › startDate — exactly yyyy-MM-dd HH:mm:ss (two-digit
// fields, no fraction), read in the server's zone loc, at least 1 hour and
// at most 30 days after now.
func parseStartDate(s string, loc *time.Location, now time.Time) (time.Time, error) {
	if !startDateShape(s) {
		return time.Time{}, ruleErr("startDate", "%q is not yyyy-MM-dd HH:mm:ss", s)
	}
	t, err := time.ParseInLocation(startDateLayout, s, loc)
	if err != nil {
		return time.Time{}, ruleErr("startDate", "%q is not a date and time: %w", s, err)
	}
	switch lead := t.Sub(now); {
	case lead < minStartDateLead:
		return time.Time{}, ruleErr("startDate", "%s is %s from now; it must be at least 1 hour ahead", s, lead.Round(time.Second))
	case lead > maxStartDateLead:
		return time.Time{}, ruleErr("startDate", "%s is more than 30 days ahead", s)
	}
	return t, nil
}

// startDateShape reports whether s is digits in the shape
// dddd-dd-dd dd:dd:dd.
func startDateShape(s string) bool {
	const shape = "dddd-dd-dd dd:dd:dd"
	if len(s) != len(shape) {
		return false
	}
	for i := 0; i < len(shape); i++ {
		if shape[i] == 'd' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		} else if s[i] != shape[i] {
			return false
		}
	}
	return true
}

// ---- user and registration ids (not documented) ----

// maxIDBytes bounds a user or registration id. Not documented: 000/003 name
// a user only "用户 ID" and 004 answers 27005 "Formato de registration_id
// no válido" without giving the format; pushsim keeps its bound.
const maxIDBytes = 128

// validID reports whether id could name a user or a device at all: 1 to
// 128 bytes of UTF-8 with no white space, control character or '/'. Not
// documented (see maxIDBytes). It allocates nothing: push/single calls it
// for every target.
func validID(id string) bool {
	if id == "" || len(id) > maxIDBytes {
		return false
	}
	for i := 0; i < len(id); {
		if c := id[i]; c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f || c == '/' {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(id[i:])
		if r == utf8.RuneError && size == 1 || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
		i += size
	}
	return true
}

// knownID reports whether pushsim treats id as an existing user or device:
// a valid id not starting with "invalid-", the tests' way of naming an
// unknown one (003's "appUser not exists", 000's fail map, 004's 27005).
func knownID(id string) bool {
	return !strings.HasPrefix(id, "invalid-") && validID(id)
}

// ---- Easemob: push labels (000_de2bedc70f036447.txt) ----

const (
	// DefaultMaxLabels is Config.MaxLabels' default: 000 创建推送标签 —
	// "当前最多可创建 100 个推送标签" (over it 403 LimitException, 000 常见错误码).
	DefaultMaxLabels = 100

	// 000 创建推送标签 › name: "不能超过 64 个字符"; description: "不能超过 255 个字符".
	maxLabelNameChars = 64
	maxLabelDescChars = 255

	// 000 在推送标签下添加用户 and 批量移出指定推送标签下的用户 › usernames:
	// "最多可传 100 个用户 ID".
	maxLabelUsers = 100

	// 000 分页查询推送标签 and 分页查询指定标签下的用户 › limit: "取值范围为
	// [1,100]，默认为 100".
	maxListLimit     = 100
	defaultListLimit = 100
)

// checkLabelName: 000 创建推送标签 › name — at most 64 characters of a-z,
// A-Z, 0-9, "_", "-" and "." (case-sensitive). An empty name names no label.
func checkLabelName(name string) error {
	if name == "" {
		return ruleErr("name", "is empty")
	}
	if n := utf8.RuneCountInString(name); n > maxLabelNameChars {
		return ruleErr("name", "is %d characters, at most %d", n, maxLabelNameChars)
	}
	for _, r := range name {
		if !labelNameRune(r) {
			return ruleErr("name", "has %q; a label name takes only a-z A-Z 0-9 _ - .", r)
		}
	}
	return nil
}

func labelNameRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-' || r == '.'
}

// checkLabelDescription: 000 创建推送标签 › description — at most 255
// characters.
func checkLabelDescription(desc string) error {
	if n := utf8.RuneCountInString(desc); n > maxLabelDescChars {
		return ruleErr("description", "is %d characters, at most %d", n, maxLabelDescChars)
	}
	return nil
}

// checkLabelUsers: 000 › usernames — at most 100 user ids per add or remove
// call. That a call needs at least one is not documented: kept.
func checkLabelUsers(n int) error {
	if n < 1 || n > maxLabelUsers {
		return ruleErr("usernames", "must hold 1 to %d user ids, got %d", maxLabelUsers, n)
	}
	return nil
}

// parseListLimit: 000 › limit — an integer 1..100; absent means 100.
func parseListLimit(v string) (int, error) {
	if v == "" {
		return defaultListLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxListLimit {
		return 0, ruleErr("limit", "%q is not 1..%d", v, maxListLimit)
	}
	return n, nil
}

// ---- Easemob: per-user push settings and templates (001, 002) ----

const (
	// 001 设置离线推送时显示的昵称 › nickname: "长度不能超过 100 个字符".
	maxNicknameChars = 100

	// 001 设置离线推送 › ignoreDuration: "取值范围为 [0,604800000]" ms (7 days).
	maxIgnoreDurationMS = 604_800_000

	// 001 设置离线推送 › type: "DEFAULT：默认值".
	notifyTypeDefault = "DEFAULT"
)

// checkNickname: 001 设置离线推送时显示的昵称 › nickname — at most 100
// characters; any character set (letters, digits, Chinese, specials).
func checkNickname(n string) error {
	if c := utf8.RuneCountInString(n); c > maxNicknameChars {
		return ruleErr("nickname", "is %d characters, at most %d", c, maxNicknameChars)
	}
	return nil
}

// checkDisplayStyle: 001 设置离线推送通知的展示方式 ›
// notification_display_style — the kept text has lost the list of values;
// the digest gives 0 (summary) and 1 (details), and 001's answer shows 1.
func checkDisplayStyle(v int) error {
	if v != 0 && v != 1 {
		return ruleErr("notification_display_style", "%d is not 0 or 1", v)
	}
	return nil
}

// checkDNDHour: 001 设置免打扰模式 › notification_no_disturbing_start and
// _end — "精确到小时，取值范围为 [0,23]".
func checkDNDHour(field string, h int) error {
	if h < 0 || h > 23 {
		return ruleErr(field, "%d is not an hour 0..23", h)
	}
	return nil
}

// checkChatType: 001 设置离线推送 and 查询离线推送设置 › chattype — "user"
// (one-to-one) or "chatgroup" (group).
func checkChatType(t string) error {
	if t != "user" && t != "chatgroup" {
		return ruleErr("chattype", "%q is not user or chatgroup", t)
	}
	return nil
}

// checkNotifyType: 001 设置离线推送 › type — DEFAULT, ALL, AT or NONE.
func checkNotifyType(t string) error {
	switch t {
	case notifyTypeDefault, "ALL", "AT", "NONE":
		return nil
	}
	return ruleErr("type", "%q is not DEFAULT, ALL, AT or NONE", t)
}

// checkIgnoreInterval: 001 设置离线推送 › ignoreInterval — "HH:MM-HH:MM",
// hours [00,23], minutes [00,59]; "若不设置该参数，传空字符串": "" is none.
func checkIgnoreInterval(s string) error {
	if s == "" {
		return nil
	}
	if len(s) != len("HH:MM-HH:MM") || s[5] != '-' || !clockTime(s[:5]) || !clockTime(s[6:]) {
		return ruleErr("ignoreInterval", "%q is not HH:MM-HH:MM (hours 00-23, minutes 00-59)", s)
	}
	return nil
}

// clockTime reports whether s is HH:MM with HH 00..23 and MM 00..59.
func clockTime(s string) bool {
	if len(s) != 5 || s[2] != ':' {
		return false
	}
	h, errH := strconv.ParseUint(s[:2], 10, 8)
	m, errM := strconv.ParseUint(s[3:], 10, 8)
	return errH == nil && errM == nil && h <= 23 && m <= 59
}

// checkIgnoreDuration: 001 设置离线推送 › ignoreDuration — 0..604800000 ms
// (0: none).
func checkIgnoreDuration(ms int64) error {
	if ms < 0 || ms > maxIgnoreDurationMS {
		return ruleErr("ignoreDuration", "%d is not 0..%d ms", ms, maxIgnoreDurationMS)
	}
	return nil
}

// checkTranslationLanguage: 001 设置推送通知的首选语言 › translationLanguage —
// required ("是"); the empty string is allowed and means no translation.
func checkTranslationLanguage(lang *string) error {
	if lang == nil {
		return ruleErr("translationLanguage", "is required")
	}
	return nil
}

// checkTemplate: 001 创建离线推送模板 — name, title_pattern and
// content_pattern are each required ("是").
func checkTemplate(name, title, content string) error {
	for _, f := range []struct{ field, v string }{{"name", name}, {"title_pattern", title}, {"content_pattern", content}} {
		if f.v == "" {
			return ruleErr(f.field, "is required")
		}
	}
	return nil
}

// defaultLimits are the calls per second per App Key that Config.Limits
// starts from, one budget per endpoint group.
func defaultLimits() map[provider.Group]float64 {
	return map[provider.Group]float64{
		// 003 以同步方式发送推送通知: "该接口调用频率默认为 1 次/秒".
		provider.GroupPushSync: 1,
		// Easemob's push rate-limit page, which provider-docs does not
		// keep: its values as the digest (README) gives them.
		provider.GroupPushSingle: 10,
		provider.GroupPushAsync:  200,
		provider.GroupPushLabel:  10,
		provider.GroupPushTask:   1,
		provider.GroupLabel:      10,
		provider.GroupLabelUser:  30,
		// 002: nickname and display style share 100/s per App Key with user
		// registration.
		provider.GroupUser: 100,
		// 002: 100/s per App Key for each of these calls ("该方法的调用频率
		// 限制为每秒 100 次"); pushsim judges each group as one budget.
		provider.GroupNotification: 100,
		provider.GroupTemplate:     100,
		// Not documented (004 gives no rate): kept.
		provider.GroupTags: 50,
		// Not documented: token fetches are counted and judged at 2/s but
		// never refused.
		provider.GroupToken: 2,
	}
}

// ---- EngageLab device API v4 (004_9f2bfcd3ce749264.txt) ----

const (
	// 004 Reglas y restricciones de uso de etiquetas / de alias: "La
	// longitud máxima de cada tag [alias] es de 40 bytes". (The code table's
	// 27017 says "40 caracteres"; the rules' bytes are used.)
	maxTagBytes   = 40
	maxAliasBytes = 40

	// 004 Reglas … de etiquetas: "Cada dispositivo puede vincular hasta 100
	// tags" (27011).
	maxTagsPerDevice = 100

	// DefaultMaxTagsPerApp and DefaultMaxDevicesPerTag are the defaults of
	// Config.MaxTagsPerApp and Config.MaxDevicesPerTag: 004 Reglas … de
	// etiquetas — "se pueden crear hasta 100.000 tags" (27013), "se pueden
	// añadir hasta 100.000 dispositivos" to one tag (27014).
	DefaultMaxTagsPerApp    = 100_000
	DefaultMaxDevicesPerTag = 100_000

	// 004 Código de retorno de negocio › 27016: "Una aplicación puede crear
	// hasta 100.000 alias" (answered by quota-info; not enforced).
	maxAliasesPerApp = 100_000

	// 004 Actualizar tags › add/remove: "admite hasta 1000 dispositivos en
	// cada caso".
	maxTagIDs = 1000

	// 004 Consultar el número de tags: "hasta 1000 tags por vez"; Interfaz
	// de consulta de información de cuota: "no puede superar 1.000".
	maxTagsPerQuery = 1000

	// 004 Obtener el estado en línea del usuario › registration_ids: "hasta
	// 1000 registration_ids".
	maxStatusIDs = 1000
)

// checkTag: 004 Reglas y restricciones de uso de etiquetas — at most 40
// bytes of letters (case-sensitive), digits, "_" and Chinese characters.
// "Letters" is read as a-z and A-Z. Over 40 bytes is 27017 (tagTooLong),
// any other break 27002.
func checkTag(tag string) error { return checkTagLike("tag", tag, maxTagBytes) }

// checkAlias: 004 Reglas y restricciones de uso de alias — the same 40
// bytes and character set as a tag. "" is no alias (004 Establecer el alias
// …: an empty alias deletes it), which callers judge before.
func checkAlias(alias string) error { return checkTagLike("alias", alias, maxAliasBytes) }

func checkTagLike(field, s string, maxBytes int) error {
	if s == "" {
		return ruleErr(field, "is empty")
	}
	if len(s) > maxBytes {
		return ruleErr(field, "is %d bytes, at most %d", len(s), maxBytes)
	}
	if !utf8.ValidString(s) {
		return ruleErr(field, "is not valid UTF-8")
	}
	for _, r := range s {
		if !tagRune(r) {
			return ruleErr(field, "has %q; only letters, digits, _ and Chinese characters are allowed", r)
		}
	}
	return nil
}

func tagRune(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || unicode.Is(unicode.Han, r)
}

// tagTooLong reports whether tag breaks 004's length rule, which has its
// own code, 27017 (004 Código de retorno de negocio).
func tagTooLong(tag string) bool { return len(tag) > maxTagBytes }

// checkTagIDs: 004 Actualizar tags › registration_ids.add / .remove — at
// most 1000 ids each. That a call names at least one id is not documented:
// kept.
func checkTagIDs(add, remove int) error {
	if add > maxTagIDs || remove > maxTagIDs || add+remove == 0 {
		return ruleErr("registration_ids", "add and remove take at most %d ids each, and at least one id in all (got %d and %d)", maxTagIDs, add, remove)
	}
	return nil
}

// checkStatusIDs: 004 Obtener el estado en línea del usuario ›
// registration_ids — at most 1000. At least one: not documented, kept.
func checkStatusIDs(n int) error {
	if n < 1 || n > maxStatusIDs {
		return ruleErr("registration_ids", "must hold 1 to %d ids, got %d", maxStatusIDs, n)
	}
	return nil
}

// checkQueryTags: 004 Consultar el número de tags (tags "campo
// obligatorio", ≤ 1000) and Interfaz de consulta de información de cuota
// (≤ 1000): 1 to 1000 tags= parameters.
func checkQueryTags(n int) error {
	if n < 1 || n > maxTagsPerQuery {
		return ruleErr("tags", "must be given 1 to %d times, got %d", maxTagsPerQuery, n)
	}
	return nil
}

// checkPlatform: 004 — platform is android, ios or hmos ("No se permiten
// otros valores", Consultar el número de tags); the delete and alias calls
// take a comma list of them ("?platform=android,ios,hmos", Eliminar tag,
// Consultar alias, Eliminar alias). "" is no platform.
func checkPlatform(p string) error {
	if p == "" {
		return nil
	}
	for _, one := range strings.Split(p, ",") {
		switch one {
		case "android", "ios", "hmos":
		default:
			return ruleErr("platform", "%q is not android, ios or hmos", one)
		}
	}
	return nil
}

// checkRequiredPlatform: 004 Consultar el número de tags › platform —
// "campo obligatorio".
func checkRequiredPlatform(p string) error {
	if p == "" {
		return ruleErr("platform", "is required: android, ios or hmos")
	}
	return checkPlatform(p)
}
