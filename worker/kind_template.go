package worker

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

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
		name: campaigns.KindTemplate,
		rules: campaigns.KindRules{
			Providers: []string{provider.Easemob},
			Fields:    []string{"template"},
			Validate: func(c *campaigns.Campaign, _ campaigns.AppInfo) campaigns.FieldErrors {
				return validateTemplate(c.Template)
			},
		},
		groups: []provider.Group{provider.GroupTemplate},
		unit:   fixed(1),
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

// Limits of a template.
const (
	MaxTemplateNameLen    = 64
	MaxTemplatePatternLen = 1024
)

// validateTemplate checks template: a name, and both patterns unless it
// is deleted.
func validateTemplate(t *campaigns.Template) campaigns.FieldErrors {
	if t == nil {
		return campaigns.FieldErrors{campaigns.FieldErrorf("template", "is required for the template kind")}
	}
	var errs campaigns.FieldErrors
	if t.Name == "" || len(t.Name) > MaxTemplateNameLen {
		errs = append(errs, campaigns.FieldErrorf("template.name", "must be 1..%d bytes", MaxTemplateNameLen))
	} else if strings.IndexFunc(t.Name, unicode.IsControl) >= 0 || !utf8.ValidString(t.Name) {
		errs = append(errs, campaigns.FieldErrorf("template.name", "must be valid UTF-8 without control characters"))
	}
	if !t.Delete {
		if t.TitlePattern == "" {
			errs = append(errs, campaigns.FieldErrorf("template.title_pattern", "is required to create a template"))
		}
		if t.ContentPattern == "" {
			errs = append(errs, campaigns.FieldErrorf("template.content_pattern", "is required to create a template"))
		}
	}
	if len(t.TitlePattern) > MaxTemplatePatternLen || len(t.ContentPattern) > MaxTemplatePatternLen {
		errs = append(errs, campaigns.FieldErrorf("template", "patterns are limited to %d bytes", MaxTemplatePatternLen))
	}
	return errs
}
