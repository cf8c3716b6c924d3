package worker

import (
	"context"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
)

// TemplateEditor creates and deletes push templates
// (POST /notification/template, DELETE /notification/template/{name}).
// Deleting a template that does not exist is an error.
type TemplateEditor interface {
	CreateTemplate(ctx context.Context, app, name, titlePattern, contentPattern string) error
	DeleteTemplate(ctx context.Context, app, name string) error
}

// template: one call at the template limit that creates (or, with
// delete: true, deletes) one push template. The campaign is one unit whose
// target is the template's name, so its status counts 1 target and its
// failure, if any, is listed under that name.
func templateKind(p TemplateEditor) kind {
	return kind{
		name:      campaigns.KindTemplate,
		providers: []string{provider.Easemob},
		groups:    []provider.Group{provider.GroupTemplate},
		unit:      fixed(1),
		unitTarget: func(c *campaigns.Campaign) string {
			return c.Template.Name
		},
		send: func(ctx context.Context, c *campaigns.Campaign, targets []string, _ []TargetResult) ([]TargetResult, error) {
			t := c.Template
			var err error
			if t.Delete {
				err = p.DeleteTemplate(ctx, c.App, t.Name)
			} else {
				err = p.CreateTemplate(ctx, c.App, t.Name, t.TitlePattern, t.ContentPattern)
			}
			if err != nil {
				return nil, err
			}
			return allOK(targets), nil
		},
	}
}
