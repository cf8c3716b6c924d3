package worker

import (
	"context"
	"encoding/json"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// Pusher sends one batch push (≤ 100 targets) for an app. Errors are
// *provider.Error, or errors with a RetryAfter() method (the limiter's
// refusal), or anything else (treated as transient). The results may be
// put in buf's storage (buf[:0]); the returned slice is the worker's
// afterwards, which recycles it as a later call's buf.
type Pusher interface {
	PushSingle(ctx context.Context, app string, targets []string, strategy *int, msg json.RawMessage, buf []TargetResult) ([]TargetResult, error)
}

// batch_push: every target once, in calls of at most 100 (POST /push/single).
func batchPushKind(p Pusher) kind {
	return kind{
		name: campaigns.KindBatchPush,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob},
			Fields:    []string{"push_message", "targets"},
			Validate: func(c *campaigns.Campaign, _ campaigns.AppInfo) campaigns.FieldErrors {
				return append(campaigns.CheckPushMessage(c), campaigns.CheckTargets(c, campaigns.MaxInlineTargets)...)
			},
		},
		groups: []provider.Group{provider.GroupPushSingle},
		unit:   fixed(provider.MaxPushTargets),
		send: func(ctx context.Context, c *campaigns.Campaign, targets []string, buf []TargetResult) ([]TargetResult, error) {
			return p.PushSingle(ctx, c.App, targets, c.Strategy, c.PushMessage, buf)
		},
	}
}
