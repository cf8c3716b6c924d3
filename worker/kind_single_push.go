package worker

import (
	"context"
	"encoding/json"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// SyncPusher pushes to one user and waits for the vendor's answer
// (POST /push/sync/{target}). The result's Reason carries the provider's
// pushStatus and desc when the push was not a SUCCESS.
type SyncPusher interface {
	PushSync(ctx context.Context, app, target string, strategy *int, msg json.RawMessage) (TargetResult, error)
}

// single_push: each target alone, synchronously, with its own result, at
// the push_sync limit (1/s by default) — the "send a test to these five
// people and tell me exactly what happened" kind.
func singlePushKind(p SyncPusher) kind {
	return kind{
		name: campaigns.KindSinglePush,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob},
			Fields:    []string{"push_message", "targets"},
			Validate: func(c *campaigns.Campaign, _ campaigns.AppInfo) campaigns.FieldErrors {
				return append(campaigns.CheckPushMessage(c), campaigns.CheckTargets(c, MaxSinglePushTargets)...)
			},
		},
		groups: []provider.Group{provider.GroupPushSync},
		unit:   fixed(1),
		send: func(ctx context.Context, c *campaigns.Campaign, targets []string, _ []TargetResult) ([]TargetResult, error) {
			out := make([]TargetResult, 0, len(targets))
			for _, t := range targets {
				r, err := p.PushSync(ctx, c.App, t, c.Strategy, c.PushMessage)
				if err != nil {
					return nil, err
				}
				r.ID = t
				out = append(out, r)
			}
			return out, nil
		},
	}
}

// MaxSinglePushTargets is the most inline targets of a single_push
// (push/sync is 1 call/s by default: 1,000 targets take over 16 minutes).
const MaxSinglePushTargets = 1_000
