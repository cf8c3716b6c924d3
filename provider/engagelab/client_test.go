package engagelab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

type env struct {
	sim  *pushsim.Server
	c    *Client
	logs *bytes.Buffer
}

func setup(t *testing.T, sc pushsim.Config, secret string) *env {
	t.Helper()
	srv, err := pushsim.Start(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	logs := &bytes.Buffer{}
	c, err := New(Config{BaseURL: srv.URL(), AppKey: "pushsim", AppSecret: secret, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: srv, c: c, logs: logs}
}

func TestEveryCall(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true}, "pushsim-secret")
	ctx := context.Background()
	if err := e.c.UpdateTag(ctx, "vip", []string{"r1", "r2", "r3"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.c.UpdateTag(ctx, "vip", nil, []string{"r3"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.c.CheckTagMember(ctx, "vip", "r1"); err != nil || !ok {
		t.Fatalf("check r1: %v %v", ok, err)
	}
	if ok, err := e.c.CheckTagMember(ctx, "vip", "r3"); err != nil || ok {
		t.Fatalf("check r3: %v %v", ok, err)
	}
	alias := "alice"
	if err := e.c.SetDevice(ctx, "r1", DeviceUpdate{AddTags: []string{"gold"}, Alias: &alias}); err != nil {
		t.Fatal(err)
	}
	d, err := e.c.GetDevice(ctx, "r1")
	if err != nil || d.Alias != "alice" || len(d.Tags) != 2 {
		t.Fatalf("device %+v %v", d, err)
	}
	tags, err := e.c.ListTags(ctx)
	if err != nil || strings.Join(tags, ",") != "gold,vip" {
		t.Fatalf("tags %v %v", tags, err)
	}
	counts, err := e.c.TagsCount(ctx, []string{"vip", "gold", "none"}, "android")
	if err != nil || counts["vip"] != 2 || counts["gold"] != 1 || counts["none"] != 0 {
		t.Fatalf("counts %v %v", counts, err)
	}
	ai, err := e.c.GetAlias(ctx, "alice", "")
	if err != nil || len(ai.RegistrationIDs) != 1 || ai.RegistrationIDs[0] != "r1" {
		t.Fatalf("alias %+v %v", ai, err)
	}
	st, err := e.c.OnlineStatus(ctx, []string{"r1", "zz"})
	if err != nil || !st["r1"].Online || st["zz"].Online || st["zz"].LastOnlineTime == "" {
		t.Fatalf("status %+v %v", st, err)
	}
	q, err := e.c.QuotaInfo(ctx, []string{"vip"}, "android")
	if err != nil || q.TotalTagQuota != 100000 || len(q.Tags) != 1 || q.Tags[0].UseUIDQuota != 2 {
		t.Fatalf("quota %+v %v", q, err)
	}
	if err := e.c.DeleteAlias(ctx, "alice", "android"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.SetDevice(ctx, "r1", DeviceUpdate{ClearTags: true}); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.c.GetDevice(ctx, "r1"); len(d.Tags) != 0 || d.Alias != "" {
		t.Fatalf("after clear: %+v", d)
	}
	if err := e.c.DeleteTag(ctx, "vip", "android"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteDevice(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	// A provider-side refusal: alias taken by another device.
	bob := "bob"
	_ = e.c.SetDevice(ctx, "r5", DeviceUpdate{Alias: &bob})
	err = e.c.SetDevice(ctx, "r6", DeviceUpdate{Alias: &bob})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassPermanent || pe.Type != "27010" {
		t.Fatalf("alias taken: %v", err)
	}
}

func TestValidationBeforeAnyCall(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{}, "pushsim-secret")
	ctx := context.Background()
	ids := make([]string, 1001)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%d", i)
	}
	tooManyTags := make([]string, 101)
	for i := range tooManyTags {
		tooManyTags[i] = fmt.Sprintf("t%d", i)
	}
	badAlias := "a-b"
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"tag with dash", func() error { return e.c.UpdateTag(ctx, "bad-tag", []string{"r"}, nil) }, "tag"},
		{"tag 41 bytes", func() error { return e.c.UpdateTag(ctx, strings.Repeat("t", 41), []string{"r"}, nil) }, "tag"},
		{"chinese tag 14 chars = 42 bytes", func() error { return e.c.UpdateTag(ctx, strings.Repeat("标", 14), []string{"r"}, nil) }, "tag"},
		{"1001 ids to add", func() error { return e.c.UpdateTag(ctx, "t", ids, nil) }, "registration_ids.add"},
		{"1001 ids to remove", func() error { return e.c.UpdateTag(ctx, "t", nil, ids) }, "registration_ids.remove"},
		{"no ids", func() error { return e.c.UpdateTag(ctx, "t", nil, nil) }, "registration_ids"},
		{"bad id", func() error { return e.c.UpdateTag(ctx, "t", []string{"ok", "has space"}, nil) }, "registration_ids.add[1]"},
		{"101 tags on a device", func() error { return e.c.SetDevice(ctx, "r", DeviceUpdate{AddTags: tooManyTags}) }, "tags.add"},
		{"bad alias", func() error { return e.c.SetDevice(ctx, "r", DeviceUpdate{Alias: &badAlias}) }, "alias"},
		{"nothing to change", func() error { return e.c.SetDevice(ctx, "r", DeviceUpdate{}) }, "tags"},
		{"platform", func() error { _, err := e.c.TagsCount(ctx, []string{"t"}, "windows"); return err }, "platform"},
		{"platform required", func() error { _, err := e.c.TagsCount(ctx, []string{"t"}, ""); return err }, "platform"},
		{"1001 tags", func() error { _, err := e.c.QuotaInfo(ctx, ids, ""); return err }, "tags"},
		{"1001 status ids", func() error { _, err := e.c.OnlineStatus(ctx, ids); return err }, "registration_ids"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fes provider.FieldErrors
			if err := tt.call(); !errors.As(err, &fes) {
				t.Fatalf("want FieldErrors, got %v", err)
			}
			found := false
			for _, fe := range fes {
				found = found || fe.Field == tt.field
			}
			if !found {
				t.Errorf("%v does not name %q", fes, tt.field)
			}
		})
	}
	if st := e.sim.Sim().Stats(); st.TotalCalls != 0 {
		t.Errorf("invalid input reached the provider: %d calls", st.TotalCalls)
	}
}

func TestAuthRateLimitAndServerErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const wrong = "wrong-secret-value"
	e := setup(t, pushsim.Config{}, wrong)
	_, err := e.c.ListTags(ctx)
	if k, _ := provider.ClassOf(err); k != provider.ClassAuth {
		t.Fatalf("wrong secret: %v", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(e.logs.String(), wrong) {
		t.Fatalf("secret leaked: %v / %s", err, e.logs.String())
	}
	e2 := setup(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupTags: 1}}, "pushsim-secret")
	if _, err := e2.c.ListTags(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = e2.c.ListTags(ctx)
	if d, ok := provider.IsRateLimited(err); !ok || d != 1e9 {
		t.Fatalf("429: %v %s", err, d)
	}
	e3 := setup(t, pushsim.Config{LimitsOff: true, Faults: pushsim.Faults{ErrorRate: 1}}, "pushsim-secret")
	_, err = e3.c.ListTags(ctx)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassTransient || pe.Type != "27000" {
		t.Fatalf("5xx: %v", err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		code   int
		want   provider.Class
	}{
		{401, 21004, provider.ClassAuth},
		{401, 27004, provider.ClassAuth},
		{401, 27011, provider.ClassPermanent},
		{401, 27013, provider.ClassPermanent},
		{400, 27002, provider.ClassPermanent},
		{500, 27000, provider.ClassTransient},
		{502, 0, provider.ClassTransient},
		{429, 0, provider.ClassRateLimited},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status, "-", tt.code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				if tt.code != 0 {
					fmt.Fprintf(w, `{"error":{"code":%d,"message":"m"}}`, tt.code)
				}
			}))
			defer srv.Close()
			c, _ := New(Config{BaseURL: srv.URL, AppKey: "k", AppSecret: "s"})
			err := c.DeleteDevice(context.Background(), "r1")
			if k, ok := provider.ClassOf(err); !ok || k != tt.want {
				t.Errorf("kind %v, want %s (%v)", k, tt.want, err)
			}
		})
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	_, err := New(Config{BaseURL: "nope"})
	for _, f := range []string{"base_url", "app_key", "app_secret"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("%v does not name %s", err, f)
		}
	}
}
