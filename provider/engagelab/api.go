package engagelab

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/campaignd/campaignd/provider"
)

// Device is what EngageLab keeps about one registration id.
type Device struct {
	Tags  []string `json:"tags"`
	Alias string   `json:"alias"`
}

// DeviceUpdate changes a device's tags and alias.
type DeviceUpdate struct {
	AddTags    []string
	RemoveTags []string
	ClearTags  bool    // remove every tag (sent as "tags": "")
	Alias      *string // nil leaves the alias; "" removes it
}

// AliasInfo lists the registration ids bound to an alias.
type AliasInfo struct {
	RegistrationIDs []string `json:"registration_ids"`
}

// OnlineStatus is one device's online state.
type OnlineStatus struct {
	Online         bool   `json:"online"`
	LastOnlineTime string `json:"last_online_time,omitempty"`
}

// Quota is the tag/alias quota of the app and of the asked tags.
type Quota struct {
	TotalTagQuota   int        `json:"totalTagQuota"`
	UseTagQuota     int        `json:"useTagQuota"`
	TotalAliasQuota int        `json:"totalAliasQuota"`
	UseAliasQuota   int        `json:"useAliasQuota"`
	Tags            []TagQuota `json:"tagUidQuotaDetail"`
}

// TagQuota is one tag's device quota.
type TagQuota struct {
	TagName       string `json:"tagName"`
	TotalUIDQuota int    `json:"totalUidQuota"`
	UseUIDQuota   int    `json:"useUidQuota"`
}

func invalid(op string, errs provider.FieldErrors) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("engagelab %s: %w", op, errs)
}

func checkIDs(errs *provider.FieldErrors, field string, ids []string, allowEmpty bool) {
	if len(ids) == 0 && allowEmpty {
		return
	}
	if err := provider.ValidateCount(field, len(ids), provider.MaxTagIDs); err != nil {
		errs.AddErr(field, err)
		return
	}
	for i, id := range ids {
		errs.AddErr(fmt.Sprintf("%s[%d]", field, i), provider.ValidateTargetID(id))
	}
}

func checkTags(errs *provider.FieldErrors, field string, tags []string, max int) {
	if len(tags) > max {
		errs.Add(field, "%d tags given, at most %d", len(tags), max)
		return
	}
	for i, t := range tags {
		errs.AddErr(fmt.Sprintf("%s[%d]", field, i), provider.ValidateTagName(t))
	}
}

func checkPlatform(errs *provider.FieldErrors, platform string, required bool) {
	switch platform {
	case "android", "ios", "hmos":
	case "":
		if required {
			errs.Add("platform", "is required: android, ios or hmos")
		}
	default:
		errs.Add("platform", "%q is not android, ios or hmos", platform)
	}
}

func withPlatform(path, platform string) string {
	if platform == "" {
		return path
	}
	return path + "?platform=" + url.QueryEscape(platform)
}

// GetDevice returns a device's tags and alias.
func (c *Client) GetDevice(ctx context.Context, registrationID string) (Device, error) {
	var errs provider.FieldErrors
	errs.AddErr("registration_id", provider.ValidateTargetID(registrationID))
	if err := invalid("devices", errs); err != nil {
		return Device{}, err
	}
	var d struct {
		Tags  []string `json:"tags"`
		Alias *string  `json:"alias"`
	}
	if err := c.call(ctx, http.MethodGet, "/devices/"+url.PathEscape(registrationID), "GET /v4/devices/{registration_id}", nil, &d); err != nil {
		return Device{}, err
	}
	out := Device{Tags: d.Tags}
	if d.Alias != nil {
		out.Alias = *d.Alias
	}
	return out, nil
}

// SetDevice adds/removes tags and sets the alias of a device.
func (c *Client) SetDevice(ctx context.Context, registrationID string, u DeviceUpdate) error {
	var errs provider.FieldErrors
	errs.AddErr("registration_id", provider.ValidateTargetID(registrationID))
	checkTags(&errs, "tags.add", u.AddTags, MaxTagsPerDevice)
	checkTags(&errs, "tags.remove", u.RemoveTags, MaxTagsPerDevice)
	if u.ClearTags && (len(u.AddTags) > 0 || len(u.RemoveTags) > 0) {
		errs.Add("tags", "clearing tags excludes adding or removing them")
	}
	if u.Alias != nil && *u.Alias != "" {
		errs.AddErr("alias", provider.ValidateAlias(*u.Alias))
	}
	if !u.ClearTags && len(u.AddTags) == 0 && len(u.RemoveTags) == 0 && u.Alias == nil {
		errs.Add("tags", "nothing to change")
	}
	if err := invalid("devices", errs); err != nil {
		return err
	}
	body := map[string]any{}
	switch {
	case u.ClearTags:
		body["tags"] = ""
	case len(u.AddTags) > 0 || len(u.RemoveTags) > 0:
		tags := map[string][]string{}
		if len(u.AddTags) > 0 {
			tags["add"] = u.AddTags
		}
		if len(u.RemoveTags) > 0 {
			tags["remove"] = u.RemoveTags
		}
		body["tags"] = tags
	}
	if u.Alias != nil {
		body["alias"] = *u.Alias
	}
	return c.call(ctx, http.MethodPost, "/devices/"+url.PathEscape(registrationID), "POST /v4/devices/{registration_id}", body, nil)
}

// DeleteDevice deletes a device with its tags and alias.
func (c *Client) DeleteDevice(ctx context.Context, registrationID string) error {
	var errs provider.FieldErrors
	errs.AddErr("registration_id", provider.ValidateTargetID(registrationID))
	if err := invalid("devices", errs); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, "/devices/"+url.PathEscape(registrationID), "DELETE /v4/devices/{registration_id}", nil, nil)
}

// UpdateTag adds and removes up to 1000 registration ids each on a tag.
func (c *Client) UpdateTag(ctx context.Context, tag string, add, remove []string) error {
	var errs provider.FieldErrors
	errs.AddErr("tag", provider.ValidateTagName(tag))
	checkIDs(&errs, "registration_ids.add", add, true)
	checkIDs(&errs, "registration_ids.remove", remove, true)
	if len(add) == 0 && len(remove) == 0 {
		errs.Add("registration_ids", "give ids to add or remove")
	}
	if err := invalid("tags", errs); err != nil {
		return err
	}
	ids := map[string][]string{}
	if len(add) > 0 {
		ids["add"] = add
	}
	if len(remove) > 0 {
		ids["remove"] = remove
	}
	return c.call(ctx, http.MethodPost, "/tags/"+url.PathEscape(tag), "POST /v4/tags/{tag}", map[string]any{"registration_ids": ids}, nil)
}

// CheckTagMember reports whether a device carries a tag.
func (c *Client) CheckTagMember(ctx context.Context, tag, registrationID string) (bool, error) {
	var errs provider.FieldErrors
	errs.AddErr("tag", provider.ValidateTagName(tag))
	errs.AddErr("registration_id", provider.ValidateTargetID(registrationID))
	if err := invalid("tags", errs); err != nil {
		return false, err
	}
	var out struct {
		Result bool `json:"result"`
	}
	err := c.call(ctx, http.MethodGet, "/tags/"+url.PathEscape(tag)+"/registration_ids/"+url.PathEscape(registrationID),
		"GET /v4/tags/{tag}/registration_ids/{registration_id}", nil, &out)
	return out.Result, err
}

// ListTags lists the app's tags.
func (c *Client) ListTags(ctx context.Context) ([]string, error) {
	var out struct {
		Tags []string `json:"tags"`
	}
	err := c.call(ctx, http.MethodGet, "/tags/", "GET /v4/tags/", nil, &out)
	return out.Tags, err
}

// DeleteTag deletes a tag (on one platform, or all when platform is "").
func (c *Client) DeleteTag(ctx context.Context, tag, platform string) error {
	var errs provider.FieldErrors
	errs.AddErr("tag", provider.ValidateTagName(tag))
	checkPlatform(&errs, platform, false)
	if err := invalid("tags", errs); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, withPlatform("/tags/"+url.PathEscape(tag), platform), "DELETE /v4/tags/{tag}", nil, nil)
}

func tagsQuery(tags []string, platform string) string {
	q := url.Values{}
	for _, t := range tags {
		q.Add("tags", t)
	}
	if platform != "" {
		q.Set("platform", platform)
	}
	return q.Encode()
}

func checkTagQuery(errs *provider.FieldErrors, tags []string) {
	if err := provider.ValidateCount("tags", len(tags), provider.MaxTagsPerQuery); err != nil {
		errs.AddErr("tags", err)
		return
	}
	for i, t := range tags {
		errs.AddErr(fmt.Sprintf("tags[%d]", i), provider.ValidateTagName(t))
	}
}

// TagsCount returns how many devices carry each tag on a platform
// (≤ 1000 tags; platform required).
func (c *Client) TagsCount(ctx context.Context, tags []string, platform string) (map[string]int, error) {
	var errs provider.FieldErrors
	checkTagQuery(&errs, tags)
	checkPlatform(&errs, platform, true)
	if err := invalid("tags_count", errs); err != nil {
		return nil, err
	}
	var out struct {
		TagsCount map[string]int `json:"tagsCount"`
	}
	err := c.call(ctx, http.MethodGet, "/tags_count?"+tagsQuery(tags, platform), "GET /v4/tags_count", nil, &out)
	return out.TagsCount, err
}

// GetAlias returns the registration ids bound to an alias.
func (c *Client) GetAlias(ctx context.Context, alias, platform string) (AliasInfo, error) {
	var errs provider.FieldErrors
	errs.AddErr("alias", provider.ValidateAlias(alias))
	checkPlatform(&errs, platform, false)
	if err := invalid("aliases", errs); err != nil {
		return AliasInfo{}, err
	}
	var out AliasInfo
	err := c.call(ctx, http.MethodGet, withPlatform("/aliases/"+url.PathEscape(alias), platform), "GET /v4/aliases/{alias}", nil, &out)
	return out, err
}

// DeleteAlias removes an alias.
func (c *Client) DeleteAlias(ctx context.Context, alias, platform string) error {
	var errs provider.FieldErrors
	errs.AddErr("alias", provider.ValidateAlias(alias))
	checkPlatform(&errs, platform, false)
	if err := invalid("aliases", errs); err != nil {
		return err
	}
	return c.call(ctx, http.MethodDelete, withPlatform("/aliases/"+url.PathEscape(alias), platform), "DELETE /v4/aliases/{alias}", nil, nil)
}

// OnlineStatus reports whether devices were online in the last 10 minutes
// (≤ 1000 ids).
func (c *Client) OnlineStatus(ctx context.Context, registrationIDs []string) (map[string]OnlineStatus, error) {
	var errs provider.FieldErrors
	checkIDs(&errs, "registration_ids", registrationIDs, false)
	if err := invalid("devices/status", errs); err != nil {
		return nil, err
	}
	var list []struct {
		RegID string `json:"regid"`
		OnlineStatus
	}
	if err := c.call(ctx, http.MethodPost, "/devices/status/", "POST /v4/devices/status/",
		map[string][]string{"registration_ids": registrationIDs}, &list); err != nil {
		return nil, err
	}
	out := make(map[string]OnlineStatus, len(list))
	for _, s := range list {
		out[s.RegID] = s.OnlineStatus
	}
	return out, nil
}

// QuotaInfo returns the app's tag and alias quotas and the device quota of
// each asked tag (≤ 1000 tags).
func (c *Client) QuotaInfo(ctx context.Context, tags []string, platform string) (Quota, error) {
	var errs provider.FieldErrors
	checkTagQuery(&errs, tags)
	checkPlatform(&errs, platform, false)
	if err := invalid("tags/quota-info", errs); err != nil {
		return Quota{}, err
	}
	var out struct {
		Data Quota `json:"data"`
	}
	err := c.call(ctx, http.MethodGet, "/tags/quota-info?"+tagsQuery(tags, platform), "GET /v4/tags/quota-info", nil, &out)
	return out.Data, err
}
