package worker

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// SettingsEditor applies per-user push settings (Easemob).
type SettingsEditor interface {
	// UpdateUser sets the fields of PUT /users/{u} that are not nil
	// (nickname, notification_display_style) in one call, under the shared
	// user budget.
	UpdateUser(ctx context.Context, app, user string, nickname *string, displayStyle *int) error
	// SetPushMode sets the user's app-wide push mode
	// (PUT /users/{u}/notification/user/{u}), notification limit.
	SetPushMode(ctx context.Context, app, user string, typ, ignoreInterval *string, ignoreDuration *int64) error
	// SetLanguage sets the preferred push language
	// (PUT /users/{u}/notification/language), notification limit.
	SetLanguage(ctx context.Context, app, user, language string) error
}

// user_settings: apply `settings` to every target with as few calls as the
// provider allows — one PUT /users/{u} for nickname and display style, one
// for the app-wide push mode (type, ignoreInterval, ignoreDuration), one
// for the language, each only when the campaign sets it. A unit is one
// user; its calls go out concurrently, each in its own limit group. A user
// whose calls partly failed is a failed target whose reason names each
// setting that failed.
func userSettingsKind(p SettingsEditor) kind {
	return kind{
		name: campaigns.KindUserSettings,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob},
			Fields:    []string{"targets", "settings"},
			Validate: func(c *campaigns.Campaign, _ campaigns.AppInfo) campaigns.FieldErrors {
				return append(campaigns.CheckTargets(c, campaigns.MaxInlineTargets), validateSettings(c.Settings)...)
			},
		},
		groups: []provider.Group{provider.GroupUser, provider.GroupNotification},
		unit:   fixed(1),
		// Per user: one user call for nickname or display style; one
		// notification call for the push mode, one more for the language.
		calls: func(c *campaigns.Campaign, _ string, users int64) map[provider.Group]int64 {
			out := map[provider.Group]int64{}
			s := c.Settings
			if s.Nickname != nil || s.NotificationDisplayStyle != nil {
				out[provider.GroupUser] = users
			}
			if s.Type != nil || s.IgnoreInterval != nil || s.IgnoreDuration != nil {
				out[provider.GroupNotification] += users
			}
			if s.Language != nil {
				out[provider.GroupNotification] += users
			}
			return out
		},
		send: func(ctx context.Context, c *campaigns.Campaign, targets []string, _ []TargetResult) ([]TargetResult, error) {
			return sendUserSettings(ctx, p, c, targets)
		},
	}
}

type settingsCall struct {
	name string // the settings named in a failure
	do   func(ctx context.Context) error
}

func settingsCalls(p SettingsEditor, c *campaigns.Campaign, user string) []settingsCall {
	s := c.Settings
	var calls []settingsCall
	if s.Nickname != nil || s.NotificationDisplayStyle != nil {
		var names []string
		if s.Nickname != nil {
			names = append(names, "nickname")
		}
		if s.NotificationDisplayStyle != nil {
			names = append(names, "notification_display_style")
		}
		calls = append(calls, settingsCall{strings.Join(names, "+"), func(ctx context.Context) error {
			return p.UpdateUser(ctx, c.App, user, s.Nickname, s.NotificationDisplayStyle)
		}})
	}
	if s.Type != nil || s.IgnoreInterval != nil || s.IgnoreDuration != nil {
		var names []string
		for _, f := range []struct {
			set  bool
			name string
		}{{s.Type != nil, "type"}, {s.IgnoreInterval != nil, "ignoreInterval"}, {s.IgnoreDuration != nil, "ignoreDuration"}} {
			if f.set {
				names = append(names, f.name)
			}
		}
		calls = append(calls, settingsCall{strings.Join(names, "+"), func(ctx context.Context) error {
			return p.SetPushMode(ctx, c.App, user, s.Type, s.IgnoreInterval, s.IgnoreDuration)
		}})
	}
	if s.Language != nil {
		calls = append(calls, settingsCall{"language", func(ctx context.Context) error {
			return p.SetLanguage(ctx, c.App, user, *s.Language)
		}})
	}
	return calls
}

// maxInUnitWait is the longest "not now" a settings call waits for within
// its unit; a longer one sends the whole unit back to the queue.
const maxInUnitWait = 2 * time.Second

// callOnce runs one settings call, waiting out short "not now" answers
// (a provider 429, a limiter slot a little ahead) so that the user's calls
// that succeeded already are not sent again with a retry of the unit.
func callOnce(ctx context.Context, do func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := do(ctx)
		rl, later := asRetryLater(err)
		if !later || attempt >= 3 || rl.in > maxInUnitWait {
			return err
		}
		if err := sleepCtx(ctx, rl.in); err != nil {
			return err
		}
	}
}

func sendUserSettings(ctx context.Context, p SettingsEditor, c *campaigns.Campaign, targets []string) ([]TargetResult, error) {
	out := make([]TargetResult, 0, len(targets))
	for _, user := range targets {
		calls := settingsCalls(p, c, user)
		errs := make([]error, len(calls))
		var wg sync.WaitGroup
		for i, call := range calls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = callOnce(ctx, call.do)
			}()
		}
		wg.Wait()
		var failed []string
		for i, err := range errs {
			if err == nil {
				continue
			}
			if !isPermanent(err) {
				// Retry the whole user (the calls are idempotent PUTs).
				return nil, err
			}
			failed = append(failed, calls[i].name+": "+err.Error())
		}
		r := TargetResult{ID: user, OK: len(failed) == 0}
		if !r.OK {
			r.Reason = strings.Join(failed, "; ")
		}
		out = append(out, r)
	}
	return out, nil
}

// MaxLanguageLen is the longest settings.language.
const MaxLanguageLen = 32

// validateSettings checks settings, which set at least one thing, each by
// the provider's rules.
func validateSettings(s *campaigns.Settings) campaigns.FieldErrors {
	if s == nil {
		return campaigns.FieldErrors{campaigns.FieldErrorf("settings", "is required for user_settings")}
	}
	var errs campaigns.FieldErrors
	if s.Nickname == nil && s.NotificationDisplayStyle == nil && s.Type == nil && s.IgnoreInterval == nil && s.IgnoreDuration == nil && s.Language == nil {
		errs = append(errs, campaigns.FieldErrorf("settings", "sets nothing"))
	}
	check := func(field string, err error) {
		if err != nil {
			errs = append(errs, campaigns.FieldErrorf(field, "%s", campaigns.MessageOf(err)))
		}
	}
	if s.Nickname != nil {
		check("settings.nickname", provider.ValidateNickname(*s.Nickname))
	}
	if s.NotificationDisplayStyle != nil {
		check("settings.notification_display_style", provider.ValidateDisplayStyle(*s.NotificationDisplayStyle))
	}
	if s.Type != nil {
		check("settings.type", provider.ValidateNotifyType(*s.Type))
	}
	if s.IgnoreInterval != nil {
		check("settings.ignoreInterval", provider.ValidateIgnoreInterval(*s.IgnoreInterval))
	}
	if s.IgnoreDuration != nil {
		check("settings.ignoreDuration", provider.ValidateIgnoreDuration(*s.IgnoreDuration))
	}
	if s.Language != nil && len(*s.Language) > MaxLanguageLen {
		errs = append(errs, campaigns.FieldErrorf("settings.language", "is over %d bytes", MaxLanguageLen))
	}
	return errs
}
