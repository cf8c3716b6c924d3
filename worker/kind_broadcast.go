package worker

import (
	"context"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// broadcast: one push to every user of the app, as one provider push task
// (POST /push/task, push_task limit) created under the app's task-window
// caps (dispatcher.go). It holds a running slot for the whole window, from its
// creation.
func broadcastKind(p TaskCreator) kind {
	return kind{
		name: campaigns.KindBroadcast,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob},
			Fields:    []string{"push_message"},
			Validate: func(c *campaigns.Campaign, _ campaigns.AppInfo) campaigns.FieldErrors {
				return campaigns.CheckPushMessage(c)
			},
		},
		groups:     []provider.Group{provider.GroupPushTask},
		unit:       fixed(1),
		unitTarget: func(*campaigns.Campaign) string { return "broadcast" },
		task: &taskSpec{broadcast: true, create: func(ctx context.Context, c *campaigns.Campaign) (string, error) {
			return p.PushTask(ctx, c.App, c.Strategy, c.PushMessage)
		}},
	}
}
