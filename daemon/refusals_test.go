package daemon

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/ratelimit"
)

// Only a refusal for rate lowers an adaptive app's effective limit: not a
// 500, not a timeout, not the task caps' 403 LimitException on the task
// calls (their 429 does), and never on an app set adaptive: false.
func TestOnlyRefusalsForRateLowerTheLimit(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t)
	lim := ratelimit.New(rd.Client(t), ratelimit.Options{})
	off := false
	apps := map[string]config.App{"shared": {Provider: provider.Easemob}, "own": {Provider: provider.Easemob, Adaptive: &off}}
	obs := backoffObserver{lim: lim, apps: apps, log: zerolog.Nop()}
	rateErr := func(status int, typ string) error {
		return &provider.Error{Provider: "easemob", Class: provider.ClassRateLimited, Status: status, Type: typ}
	}
	for _, tc := range []struct {
		name  string
		app   string
		group provider.Group
		err   error
		lower bool
	}{
		{"a 500", "shared", provider.GroupPushSingle, &provider.Error{Class: provider.ClassTransient, Status: 500}, false},
		{"a timeout", "shared", provider.GroupPushSingle, &provider.Error{Class: provider.ClassTransient, Err: context.DeadlineExceeded}, false},
		{"the task caps", "shared", provider.GroupPushLabel, rateErr(http.StatusForbidden, "LimitException"), false},
		{"a 429 on a task call", "shared", provider.GroupPushTask, rateErr(http.StatusTooManyRequests, ""), true},
		{"a 429", "shared", provider.GroupPushSingle, rateErr(http.StatusTooManyRequests, ""), true},
		{"a LimitException on a label call", "shared", provider.GroupLabel, rateErr(http.StatusForbidden, "LimitException"), true},
		{"a 429 on an app not adaptive", "own", provider.GroupPushSingle, rateErr(http.StatusTooManyRequests, ""), false},
	} {
		obs.Observe(tc.app, tc.group, "POST /x", time.Millisecond, tc.err)
		limit := apps[tc.app].Limit(tc.group)
		got, err := lim.Effective(context.Background(), ratelimit.Rate{Key: ratelimit.GroupKey(tc.app, tc.group), PerSecond: limit, Adaptive: true})
		if err != nil {
			t.Fatal(err)
		}
		if lowered := got[0].Effective < limit; lowered != tc.lower {
			t.Errorf("%s: effective %g of %g: lowered %v, want %v", tc.name, got[0].Effective, limit, lowered, tc.lower)
		}
	}
}
