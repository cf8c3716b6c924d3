package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// LabelEditor edits Easemob push labels.
type LabelEditor interface {
	// LabelExists reports whether a label exists (GET /push/label/{l}).
	LabelExists(ctx context.Context, app, label string) (bool, error)
	// CreateLabel creates a label (POST /push/label); a label that exists
	// already is not an error. The app's label cap is a permanent error.
	CreateLabel(ctx context.Context, app, label, description string) error
	// LabelMembers adds (add) or removes up to 100 users
	// (POST / DELETE /push/label/{l}/user); the answer's success and fail
	// lists give one result per user.
	LabelMembers(ctx context.Context, app, label string, add bool, usernames []string) ([]TargetResult, error)
}

// TagEditor edits EngageLab tags.
type TagEditor interface {
	// TagMembers adds (add) or removes up to 1000 registration ids on a tag
	// (POST /v4/tags/{t}); ids the provider calls invalid are failed
	// results, the others are sent again without them.
	TagMembers(ctx context.Context, app, tag string, add bool, ids []string) ([]TargetResult, error)
}

// labelMembersProviders is what label_members needs: the app's provider,
// Easemob labels and EngageLab tags.
type labelMembersProviders interface {
	ProviderOf(app string) string
	LabelEditor
	TagEditor
}

// label_members: add or remove targets on a label — an Easemob push label
// (at most 100 users per call, label_user limit; `add` creates a missing
// label with label_description first, at the label limit) or an EngageLab
// tag (at most 1000 registration ids per call, tags limit).
func labelMembersKind(p labelMembersProviders) kind {
	return kind{
		name: campaigns.KindLabelMembers,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob, provider.EngageLab},
			Fields:    []string{"targets", "label", "label_description", "action"},
			Validate: func(c *campaigns.Campaign, app campaigns.AppInfo) campaigns.FieldErrors {
				errs := append(campaigns.CheckTargets(c, campaigns.MaxInlineTargets), campaigns.CheckLabel(c, app)...)
				if c.Action != "add" && c.Action != "remove" {
					errs = append(errs, campaigns.FieldErrorf("action", "must be add or remove"))
				}
				return errs
			},
		},
		groups: []provider.Group{provider.GroupLabel, provider.GroupLabelUser, provider.GroupTags},
		unit: func(p string) int {
			if p == provider.EngageLab {
				return provider.MaxTagIDs
			}
			return provider.MaxLabelUsers
		},
		// Easemob: the label is looked up once (and created when missing
		// for an add), then members go 100 a call; EngageLab: 1,000 a call.
		calls: func(_ *campaigns.Campaign, prov string, units int64) map[provider.Group]int64 {
			if prov == provider.EngageLab {
				return map[provider.Group]int64{provider.GroupTags: units}
			}
			return map[provider.Group]int64{provider.GroupLabel: 1, provider.GroupLabelUser: units}
		},
		prepare: func(ctx context.Context, c *campaigns.Campaign) error { return prepareLabel(ctx, p, c) },
		send: func(ctx context.Context, c *campaigns.Campaign, targets []string, _ []TargetResult) ([]TargetResult, error) {
			add := c.Action == "add"
			if p.ProviderOf(c.App) == provider.EngageLab {
				return p.TagMembers(ctx, c.App, c.Label, add, targets)
			}
			return p.LabelMembers(ctx, c.App, c.Label, add, targets)
		},
	}
}

// prepareLabel makes sure an Easemob label is there before its members are
// changed: `add` creates a missing label, `remove` from a missing label
// fails the campaign naming it. EngageLab tags need nothing: adding creates
// the tag.
func prepareLabel(ctx context.Context, p labelMembersProviders, c *campaigns.Campaign) error {
	if p.ProviderOf(c.App) != provider.Easemob {
		return nil
	}
	ok, err := p.LabelExists(ctx, c.App, c.Label)
	if err != nil {
		return asCampaignFailure("label", err)
	}
	switch {
	case ok:
		return nil
	case c.Action != "add":
		return &campaignFailure{field: "label", message: fmt.Sprintf("label %q does not exist on app %q: nothing to remove", c.Label, c.App)}
	}
	if err := p.CreateLabel(ctx, c.App, c.Label, c.LabelDescription); err != nil {
		return asCampaignFailure("label", err)
	}
	return nil
}

// asCampaignFailure turns a provider's permanent refusal (or refused
// credentials, or input the client refused) into a campaign failure; other
// errors (rate limits, transient) are returned as they are, to be retried.
func asCampaignFailure(field string, err error) error {
	var pe *provider.Error
	if errors.As(err, &pe) && (pe.Class == provider.ClassPermanent || pe.Class == provider.ClassAuth) {
		msg := pe.Description
		if msg == "" {
			msg = pe.Error()
		}
		return &campaignFailure{field: field, message: msg}
	}
	var fe provider.FieldErrors
	if errors.As(err, &fe) {
		return &campaignFailure{field: field, message: fe.Error()}
	}
	return err
}
