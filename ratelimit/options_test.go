package ratelimit

import (
	"strings"
	"testing"
	"time"
)

// Defaults fill only zero fields, in a copy; values out of range are
// errors naming the field, not defaults.
func TestOptionsDefaultsThenValidation(t *testing.T) {
	t.Parallel()
	o := Options{MaxWait: 3 * time.Second, LocalAhead: -1}
	d := o.WithDefaults()
	if o.Margin != 0 || o.Adapt.Hold != 0 {
		t.Fatalf("WithDefaults changed its receiver: %+v", o)
	}
	if d.MaxWait != 3*time.Second || d.LocalAhead != -1 || d.Margin != 0.015 || d.Adapt.Hold != time.Second {
		t.Fatalf("defaults: %+v", d)
	}
	if err := d.validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	for _, c := range []struct {
		o     Options
		field string
	}{
		{Options{MaxWait: -time.Second}, "Options.MaxWait"},
		{Options{Margin: -0.1}, "Options.Margin"},
		{Options{Backlog: BacklogOptions{Min: -1}}, "Options.Backlog.Min"},
		{Options{Adapt: AdaptOptions{Decrease: 1.5}}, "AdaptOptions.Decrease"},
		{Options{Adapt: AdaptOptions{Hold: -time.Second}}, "AdaptOptions.Hold"},
	} {
		err := c.o.WithDefaults().validate()
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: got %v, want an error naming %s", c.o, err, c.field)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(error).Error(), "Options.MaxWait") {
			t.Fatalf("New with a negative MaxWait: recovered %v, want a panic naming Options.MaxWait", r)
		}
	}()
	New(nil, Options{MaxWait: -time.Second})
}
