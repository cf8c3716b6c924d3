package worker

import (
	"context"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// label_push: one push to every member of one label, as one provider push
// task (POST /push/list/label, push_label limit) created under the app's
// task-window caps (dispatcher.go). The task holds a running slot for
// task_duration: the API tells nothing of its end.
func labelPushKind(p TaskCreator) kind {
	return kind{
		name: campaigns.KindLabelPush,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob},
			Fields:    []string{"push_message", "label", "label_description"},
			Validate: func(c *campaigns.Campaign, app campaigns.AppInfo) campaigns.FieldErrors {
				return append(campaigns.CheckPushMessage(c), campaigns.CheckLabel(c, app)...)
			},
		},
		groups:     []provider.Group{provider.GroupPushLabel},
		unit:       fixed(1),
		unitTarget: func(c *campaigns.Campaign) string { return c.Label },
		task: &taskSpec{create: func(ctx context.Context, c *campaigns.Campaign) (string, error) {
			return p.PushLabel(ctx, c.App, c.Label, c.Strategy, c.PushMessage)
		}},
	}
}
