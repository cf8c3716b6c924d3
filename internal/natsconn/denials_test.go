package natsconn

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestParseDenied(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err      error
		op, subj string // "": not a violation
	}{
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "$JS.API.STREAM.INFO.OBJ_x" on connection [6]`), "publish", "$JS.API.STREAM.INFO.OBJ_x"},
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "campaigns.submit"`), "subscribe", "campaigns.submit"},
		{nats.ErrSlowConsumer, "", ""},
		{errors.New(`Permissions Violation for Publish to "x"`), "", ""}, // not the nats error
	} {
		de := ParseDenied(tc.err)
		if tc.op == "" {
			if de != nil {
				t.Errorf("%v: %+v, want nil", tc.err, de)
			}
			continue
		}
		if de == nil || de.Op != tc.op || de.Subject != tc.subj || !errors.Is(de, nats.ErrPermissionViolation) {
			t.Errorf("%v: %+v, want %s %s", tc.err, de, tc.op, tc.subj)
		}
	}
}

func TestDenialsCancelOnlyMatchingWatches(t *testing.T) {
	t.Parallel()
	var d Denials
	seen := 0
	h := d.Handler(func(*nats.Conn, *nats.Subscription, error) { seen++ })
	a, stopA := d.Watch(context.Background(), func(s string) bool { return s == "a" })
	defer stopA()
	b, stopB := d.Watch(context.Background(), func(s string) bool { return s == "b" })
	h(nil, nil, fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "a"`))
	if de := Cause(a); de == nil || de.Subject != "a" {
		t.Fatalf("watch of a: %v", de)
	}
	if b.Err() != nil || seen != 0 {
		t.Fatalf("watch of b cancelled (%v) or a claimed violation passed on (%d)", b.Err(), seen)
	}
	stopB()
	if Cause(b) != nil {
		t.Fatal("a stopped watch has a cause")
	}
	h(nil, nil, fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "c"`))
	h(nil, nil, nats.ErrSlowConsumer)
	if seen != 2 {
		t.Fatalf("next saw %d errors, want the unclaimed violation and the other error", seen)
	}
	var none *Denials
	ctx, stop := none.Watch(context.Background(), nil)
	stop()
	if Cause(ctx) != nil {
		t.Fatal("a nil Denials cancelled with a cause")
	}
}
