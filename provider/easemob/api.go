package easemob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/campaignd/campaignd/provider"
)

// PushRequest is the common body of the push calls.
type PushRequest struct {
	Strategy    *int            // 0..4; nil → provider default (2)
	PushMessage json.RawMessage // the push notification, a JSON object
}

// TargetResult is one target's push outcome.
type TargetResult struct {
	ID         string `json:"id"`
	PushStatus string `json:"pushStatus"`
	Desc       string `json:"desc"`
}

// OK reports whether the provider accepted the push for this target.
func (r TargetResult) OK() bool {
	return r.PushStatus == "ASYNC_SUCCESS" || r.PushStatus == "SUCCESS"
}

// Label is a push label.
type Label struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Count       int    `json:"count"`
	CreatedAt   int64  `json:"createdAt"`
}

// LabelUser is one member of a label.
type LabelUser struct {
	Username string `json:"username"`
	Created  int64  `json:"created"`
}

// MemberResult is the outcome of adding or removing label members.
type MemberResult struct {
	Success []string          `json:"success"`
	Fail    map[string]string `json:"fail"`
}

// NotificationMode is a user's push mode for one chat (or the app).
type NotificationMode struct {
	Type           string  `json:"type,omitempty"`           // DEFAULT | ALL | AT | NONE
	IgnoreInterval *string `json:"ignoreInterval,omitempty"` // "HH:MM-HH:MM"
	IgnoreDuration *int64  `json:"ignoreDuration,omitempty"` // ms, 0..604800000
}

// Template is a push template.
type Template struct {
	Name           string `json:"name"`
	TitlePattern   string `json:"title_pattern"`
	ContentPattern string `json:"content_pattern"`
	CreateAt       int64  `json:"createAt,omitempty"`
	UpdateAt       int64  `json:"updateAt,omitempty"`
}

type pushBody struct {
	Targets     []string        `json:"targets,omitempty"`
	StartDate   string          `json:"startDate,omitempty"`
	Strategy    *int            `json:"strategy,omitempty"`
	PushMessage json.RawMessage `json:"pushMessage"`
}

func checkPushRequest(errs *provider.FieldErrors, req PushRequest) {
	if req.Strategy != nil {
		errs.AddErr("strategy", provider.ValidateStrategy(*req.Strategy))
	}
	if !isNonEmptyObject(req.PushMessage) {
		errs.Add("pushMessage", "must be a non-empty JSON object")
	}
}

func checkTargets(errs *provider.FieldErrors, field string, ids []string, max int) {
	if err := provider.ValidateCount(field, len(ids), max); err != nil {
		errs.AddErr(field, err)
		return
	}
	for i, id := range ids {
		if err := provider.ValidateTargetID(id); err != nil {
			errs.AddErr(fmt.Sprintf("%s[%d]", field, i), err)
		}
	}
}

func invalid(op string, errs provider.FieldErrors) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("easemob %s: %w", op, errs)
}

// PushSingle sends one push to up to 100 users (POST /push/single) and
// returns each target's result.
func (c *Client) PushSingle(ctx context.Context, targets []string, req PushRequest) ([]TargetResult, error) {
	return c.PushSingleInto(ctx, targets, req, nil)
}

// PushSingleInto is PushSingle with the results put in buf's storage
// (buf[:0]) when it has room, so that a caller sending many batches can
// recycle one buffer.
func (c *Client) PushSingleInto(ctx context.Context, targets []string, req PushRequest, buf []TargetResult) ([]TargetResult, error) {
	var errs provider.FieldErrors
	checkTargets(&errs, "targets", targets, provider.MaxPushTargets)
	checkPushRequest(&errs, req)
	if err := invalid("push/single", errs); err != nil {
		return nil, err
	}
	body, err := pushBody{Targets: targets, Strategy: req.Strategy, PushMessage: req.PushMessage}.encode()
	if err != nil {
		return nil, fmt.Errorf("easemob push/single: encode request: %w", err)
	}
	if cap(buf) < len(targets) {
		buf = make([]TargetResult, 0, len(targets))
	}
	res := pushResults{targets: targets, out: buf[:0]}
	if _, err := c.callOp(ctx, provider.GroupPushSingle, "POST /push/single", http.MethodPost, "/push/single", body, &res); err != nil {
		return nil, err
	}
	return res.out, nil
}

func (c *Client) pushOne(ctx context.Context, kind string, group provider.Group, target string, req PushRequest) (TargetResult, error) {
	var errs provider.FieldErrors
	errs.AddErr("target", provider.ValidateTargetID(target))
	checkPushRequest(&errs, req)
	if err := invalid("push/"+kind, errs); err != nil {
		return TargetResult{}, err
	}
	env, err := c.call(ctx, group, http.MethodPost, "/push/"+kind+"/"+url.PathEscape(target),
		pushBody{Strategy: req.Strategy, PushMessage: req.PushMessage})
	if err != nil {
		return TargetResult{}, err
	}
	var res []TargetResult
	if err := decodeData("POST /push/"+kind+"/{target}", env, &res); err != nil {
		return TargetResult{}, err
	}
	if len(res) == 0 {
		return TargetResult{}, &provider.Error{Provider: providerName, Op: "POST /push/" + kind + "/{target}", Class: provider.ClassTransient, Status: 200, Description: "empty result"}
	}
	r := res[0]
	r.ID = target
	return r, nil
}

// PushSync pushes to one user and waits for the vendor's result
// (POST /push/sync/{target}; 1 call/s by default).
func (c *Client) PushSync(ctx context.Context, target string, req PushRequest) (TargetResult, error) {
	return c.pushOne(ctx, "sync", provider.GroupPushSync, target, req)
}

// PushAsync pushes to one user asynchronously (POST /push/async/{target}).
func (c *Client) PushAsync(ctx context.Context, target string, req PushRequest) (TargetResult, error) {
	return c.pushOne(ctx, "async", provider.GroupPushAsync, target, req)
}

// startDate renders and checks an optional task start (1 h..30 d ahead, in
// the provider's zone).
func (c *Client) startDate(errs *provider.FieldErrors, startAt *time.Time) string {
	if startAt == nil {
		return ""
	}
	s := provider.FormatStartDate(*startAt, c.cfg.Location)
	errs.AddErr("startDate", provider.ValidateStartDate(s, c.cfg.Location, c.clk.Now()))
	return s
}

func taskID(op string, raw json.RawMessage) (string, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil || n == "" {
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" {
			return s, nil
		}
		return "", &provider.Error{Provider: providerName, Op: op, Class: provider.ClassTransient, Status: 200, Description: "no task id in the answer"}
	}
	return n.String(), nil
}

// PushLabel pushes to every member of one label (POST /push/list/label),
// optionally at startAt, and returns the provider's task id.
func (c *Client) PushLabel(ctx context.Context, label string, startAt *time.Time, req PushRequest) (string, error) {
	var errs provider.FieldErrors
	errs.AddErr("targets[0]", provider.ValidateLabelName(label))
	sd := c.startDate(&errs, startAt)
	checkPushRequest(&errs, req)
	if err := invalid("push/list/label", errs); err != nil {
		return "", err
	}
	env, err := c.call(ctx, provider.GroupPushLabel, http.MethodPost, "/push/list/label",
		pushBody{Targets: []string{label}, StartDate: sd, Strategy: req.Strategy, PushMessage: req.PushMessage})
	if err != nil {
		return "", err
	}
	var data struct {
		TaskID json.RawMessage `json:"taskId"`
	}
	const op = "POST /push/list/label"
	if err := decodeData(op, env, &data); err != nil {
		return "", err
	}
	return taskID(op, data.TaskID)
}

// PushTask creates a broadcast task to every user of the app
// (POST /push/task), optionally at startAt, and returns its task id.
func (c *Client) PushTask(ctx context.Context, startAt *time.Time, req PushRequest) (string, error) {
	var errs provider.FieldErrors
	sd := c.startDate(&errs, startAt)
	checkPushRequest(&errs, req)
	if err := invalid("push/task", errs); err != nil {
		return "", err
	}
	env, err := c.call(ctx, provider.GroupPushTask, http.MethodPost, "/push/task",
		pushBody{StartDate: sd, Strategy: req.Strategy, PushMessage: req.PushMessage})
	if err != nil {
		return "", err
	}
	return taskID("POST /push/task", env.Data)
}

func labelPath(name string) string { return "/push/label/" + url.PathEscape(name) }

// CreateLabel creates a push label (at most 100 per app).
func (c *Client) CreateLabel(ctx context.Context, name, description string) (Label, error) {
	var errs provider.FieldErrors
	errs.AddErr("name", provider.ValidateLabelName(name))
	errs.AddErr("description", provider.ValidateLabelDescription(description))
	if err := invalid("push/label", errs); err != nil {
		return Label{}, err
	}
	env, err := c.call(ctx, provider.GroupLabel, http.MethodPost, "/push/label",
		map[string]string{"name": name, "description": description})
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Status == http.StatusForbidden && pe.Type == "LimitException" {
		// On label creation 403 LimitException is the app's label cap, not a
		// call rate: waiting does not help (file 000).
		pe.Class = provider.ClassPermanent
		pe.Description = fmt.Sprintf("the app already has %d labels (provider limit)", provider.MaxLabels)
	}
	if err != nil {
		return Label{}, err
	}
	var l Label
	return l, decodeData("POST /push/label", env, &l)
}

// GetLabel returns a label with its member count.
func (c *Client) GetLabel(ctx context.Context, name string) (Label, error) {
	if err := invalid("push/label", fieldErrs("name", provider.ValidateLabelName(name))); err != nil {
		return Label{}, err
	}
	env, err := c.call(ctx, provider.GroupLabel, http.MethodGet, labelPath(name), nil)
	if err != nil {
		return Label{}, err
	}
	var l Label
	return l, decodeData("GET /push/label/{label}", env, &l)
}

func fieldErrs(field string, err error) provider.FieldErrors {
	var errs provider.FieldErrors
	errs.AddErr(field, err)
	return errs
}

func pageQuery(limit int, cursor string) string {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// ListLabels lists labels, limit (1..100, 0 = provider default) per page;
// next is the cursor of the following page, empty at the end.
func (c *Client) ListLabels(ctx context.Context, limit int, cursor string) ([]Label, string, error) {
	if err := invalid("push/label", fieldErrs("limit", provider.ValidateListLimit(limit))); err != nil {
		return nil, "", err
	}
	env, err := c.call(ctx, provider.GroupLabel, http.MethodGet, "/push/label"+pageQuery(limit, cursor), nil)
	if err != nil {
		return nil, "", err
	}
	var ls []Label
	if err := decodeData("GET /push/label", env, &ls); err != nil {
		return nil, "", err
	}
	return ls, env.Cursor, nil
}

// DeleteLabel deletes a label.
func (c *Client) DeleteLabel(ctx context.Context, name string) error {
	if err := invalid("push/label", fieldErrs("name", provider.ValidateLabelName(name))); err != nil {
		return err
	}
	_, err := c.call(ctx, provider.GroupLabel, http.MethodDelete, labelPath(name), nil)
	return err
}

func (c *Client) members(ctx context.Context, method, label string, usernames []string) (MemberResult, error) {
	var errs provider.FieldErrors
	errs.AddErr("label", provider.ValidateLabelName(label))
	checkTargets(&errs, "usernames", usernames, provider.MaxLabelUsers)
	if err := invalid("push/label/{label}/user", errs); err != nil {
		return MemberResult{}, err
	}
	env, err := c.call(ctx, provider.GroupLabelUser, method, labelPath(label)+"/user", map[string][]string{"usernames": usernames})
	if err != nil {
		return MemberResult{}, err
	}
	var r MemberResult
	return r, decodeData(method+" /push/label/{label}/user", env, &r)
}

// AddLabelUsers adds up to 100 users to a label.
func (c *Client) AddLabelUsers(ctx context.Context, label string, usernames []string) (MemberResult, error) {
	return c.members(ctx, http.MethodPost, label, usernames)
}

// RemoveLabelUsers removes up to 100 users from a label.
func (c *Client) RemoveLabelUsers(ctx context.Context, label string, usernames []string) (MemberResult, error) {
	return c.members(ctx, http.MethodDelete, label, usernames)
}

// GetLabelUser returns one member of a label.
func (c *Client) GetLabelUser(ctx context.Context, label, username string) (LabelUser, error) {
	var errs provider.FieldErrors
	errs.AddErr("label", provider.ValidateLabelName(label))
	errs.AddErr("username", provider.ValidateTargetID(username))
	if err := invalid("push/label/{label}/user/{username}", errs); err != nil {
		return LabelUser{}, err
	}
	env, err := c.call(ctx, provider.GroupLabelUser, http.MethodGet, labelPath(label)+"/user/"+url.PathEscape(username), nil)
	if err != nil {
		return LabelUser{}, err
	}
	var u LabelUser
	return u, decodeData("GET /push/label/{label}/user/{username}", env, &u)
}

// ListLabelUsers lists a label's members a page at a time.
func (c *Client) ListLabelUsers(ctx context.Context, label string, limit int, cursor string) ([]LabelUser, string, error) {
	var errs provider.FieldErrors
	errs.AddErr("label", provider.ValidateLabelName(label))
	errs.AddErr("limit", provider.ValidateListLimit(limit))
	if err := invalid("push/label/{label}/user", errs); err != nil {
		return nil, "", err
	}
	env, err := c.call(ctx, provider.GroupLabelUser, http.MethodGet, labelPath(label)+"/user"+pageQuery(limit, cursor), nil)
	if err != nil {
		return nil, "", err
	}
	var us []LabelUser
	if err := decodeData("GET /push/label/{label}/user", env, &us); err != nil {
		return nil, "", err
	}
	return us, env.Cursor, nil
}

func userPath(username string) string { return "/users/" + url.PathEscape(username) }

func (c *Client) putUser(ctx context.Context, username string, body map[string]any, errs provider.FieldErrors) error {
	errs.AddErr("username", provider.ValidateTargetID(username))
	if err := invalid("users/{username}", errs); err != nil {
		return err
	}
	_, err := c.call(ctx, provider.GroupUser, http.MethodPut, userPath(username), body)
	return err
}

// UpdateUser sets, in one PUT /users/{username}, every field given: the
// push nickname (≤ 100 characters) and notification_display_style (0
// summary, 1 details). It spends one call of the shared user budget.
func (c *Client) UpdateUser(ctx context.Context, username string, nickname *string, displayStyle *int) error {
	var errs provider.FieldErrors
	body := map[string]any{}
	if nickname != nil {
		errs.AddErr("nickname", provider.ValidateNickname(*nickname))
		body["nickname"] = *nickname
	}
	if displayStyle != nil {
		errs.AddErr("notification_display_style", provider.ValidateDisplayStyle(*displayStyle))
		body["notification_display_style"] = *displayStyle
	}
	if len(body) == 0 {
		errs.Add("nickname", "nothing to set: give nickname or notification_display_style")
	}
	return c.putUser(ctx, username, body, errs)
}

// SetNickname sets the push nickname (≤ 100 characters) of a user.
func (c *Client) SetNickname(ctx context.Context, username, nickname string) error {
	return c.putUser(ctx, username, map[string]any{"nickname": nickname}, fieldErrs("nickname", provider.ValidateNickname(nickname)))
}

// SetDisplayStyle sets notification_display_style (0 summary, 1 details).
func (c *Client) SetDisplayStyle(ctx context.Context, username string, style int) error {
	return c.putUser(ctx, username, map[string]any{"notification_display_style": style},
		fieldErrs("notification_display_style", provider.ValidateDisplayStyle(style)))
}

// SetDND sets the legacy do-not-disturb window (hours 0..23).
func (c *Client) SetDND(ctx context.Context, username string, enabled bool, startHour, endHour int) error {
	var errs provider.FieldErrors
	if startHour < 0 || startHour > 23 {
		errs.Add("notification_no_disturbing_start", "%d is not an hour 0..23", startHour)
	}
	if endHour < 0 || endHour > 23 {
		errs.Add("notification_no_disturbing_end", "%d is not an hour 0..23", endHour)
	}
	return c.putUser(ctx, username, map[string]any{
		"notification_no_disturbing": enabled, "notification_no_disturbing_start": startHour, "notification_no_disturbing_end": endHour,
	}, errs)
}

func notificationPath(username, chatType, key string) string {
	return userPath(username) + "/notification/" + url.PathEscape(chatType) + "/" + url.PathEscape(key)
}

func checkMode(errs *provider.FieldErrors, m NotificationMode) {
	if m.Type != "" {
		errs.AddErr("type", provider.ValidateNotifyType(m.Type))
	}
	if m.IgnoreInterval != nil {
		errs.AddErr("ignoreInterval", provider.ValidateIgnoreInterval(*m.IgnoreInterval))
	}
	if m.IgnoreDuration != nil {
		errs.AddErr("ignoreDuration", provider.ValidateIgnoreDuration(*m.IgnoreDuration))
	}
	if m.Type == "" && m.IgnoreInterval == nil && m.IgnoreDuration == nil {
		errs.Add("type", "nothing to set: give type, ignoreInterval or ignoreDuration")
	}
}

// SetNotificationMode sets a user's push mode for the app ("user", own
// username as key) or for one chat (chatType user|chatgroup, key the peer or
// group id).
func (c *Client) SetNotificationMode(ctx context.Context, username, chatType, key string, m NotificationMode) (NotificationMode, error) {
	var errs provider.FieldErrors
	errs.AddErr("username", provider.ValidateTargetID(username))
	errs.AddErr("chattype", provider.ValidateChatType(chatType))
	errs.AddErr("key", provider.ValidateTargetID(key))
	checkMode(&errs, m)
	if err := invalid("users/{username}/notification", errs); err != nil {
		return NotificationMode{}, err
	}
	env, err := c.call(ctx, provider.GroupNotification, http.MethodPut, notificationPath(username, chatType, key), m)
	if err != nil {
		return NotificationMode{}, err
	}
	var out NotificationMode
	return out, decodeData("PUT /users/{username}/notification/{chattype}/{key}", env, &out)
}

// GetNotificationMode reads a user's push mode for the app or a chat.
func (c *Client) GetNotificationMode(ctx context.Context, username, chatType, key string) (NotificationMode, error) {
	var errs provider.FieldErrors
	errs.AddErr("username", provider.ValidateTargetID(username))
	errs.AddErr("chattype", provider.ValidateChatType(chatType))
	errs.AddErr("key", provider.ValidateTargetID(key))
	if err := invalid("users/{username}/notification", errs); err != nil {
		return NotificationMode{}, err
	}
	env, err := c.call(ctx, provider.GroupNotification, http.MethodGet, notificationPath(username, chatType, key), nil)
	if err != nil {
		return NotificationMode{}, err
	}
	var out NotificationMode
	return out, decodeData("GET /users/{username}/notification/{chattype}/{key}", env, &out)
}

// SetLanguage sets a user's preferred push translation language ("" = none).
func (c *Client) SetLanguage(ctx context.Context, username, lang string) error {
	var errs provider.FieldErrors
	errs.AddErr("username", provider.ValidateTargetID(username))
	if len(lang) > 32 {
		errs.Add("translationLanguage", "language code over 32 bytes")
	}
	if err := invalid("users/{username}/notification/language", errs); err != nil {
		return err
	}
	_, err := c.call(ctx, provider.GroupNotification, http.MethodPut, userPath(username)+"/notification/language",
		map[string]string{"translationLanguage": lang})
	return err
}

// GetLanguage reads a user's preferred push translation language.
func (c *Client) GetLanguage(ctx context.Context, username string) (string, error) {
	if err := invalid("users/{username}/notification/language", fieldErrs("username", provider.ValidateTargetID(username))); err != nil {
		return "", err
	}
	env, err := c.call(ctx, provider.GroupNotification, http.MethodGet, userPath(username)+"/notification/language", nil)
	if err != nil {
		return "", err
	}
	var out struct {
		Language string `json:"language"`
	}
	return out.Language, decodeData("GET /users/{username}/notification/language", env, &out)
}

func checkTemplateName(errs *provider.FieldErrors, name string) {
	if name == "" || len(name) > 64 {
		errs.Add("name", "template name must be 1..64 bytes")
	}
}

// CreateTemplate creates a push template.
func (c *Client) CreateTemplate(ctx context.Context, t Template) (Template, error) {
	var errs provider.FieldErrors
	checkTemplateName(&errs, t.Name)
	if t.TitlePattern == "" {
		errs.Add("title_pattern", "is required")
	}
	if t.ContentPattern == "" {
		errs.Add("content_pattern", "is required")
	}
	if err := invalid("notification/template", errs); err != nil {
		return Template{}, err
	}
	env, err := c.call(ctx, provider.GroupTemplate, http.MethodPost, "/notification/template",
		map[string]string{"name": t.Name, "title_pattern": t.TitlePattern, "content_pattern": t.ContentPattern})
	if err != nil {
		return Template{}, err
	}
	var out Template
	return out, decodeData("POST /notification/template", env, &out)
}

// GetTemplate reads a push template.
func (c *Client) GetTemplate(ctx context.Context, name string) (Template, error) {
	var errs provider.FieldErrors
	checkTemplateName(&errs, name)
	if err := invalid("notification/template", errs); err != nil {
		return Template{}, err
	}
	env, err := c.call(ctx, provider.GroupTemplate, http.MethodGet, "/notification/template/"+url.PathEscape(name), nil)
	if err != nil {
		return Template{}, err
	}
	var out Template
	return out, decodeData("GET /notification/template/{name}", env, &out)
}

// DeleteTemplate deletes a push template.
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	var errs provider.FieldErrors
	checkTemplateName(&errs, name)
	if err := invalid("notification/template", errs); err != nil {
		return err
	}
	_, err := c.call(ctx, provider.GroupTemplate, http.MethodDelete, "/notification/template/"+url.PathEscape(name), nil)
	return err
}
