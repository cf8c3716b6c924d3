package worker

import (
	"errors"
	"reflect"
	"testing"

	"github.com/campaignd/campaignd/campaigns"
)

// runs records the tasks called back; the ids in fail are not waiting
// (ran already, or not gone back yet).
type runs struct {
	fail map[string]bool
	got  []string
}

func (r *runs) RunTask(queue, id string) error {
	r.got = append(r.got, queue+"/"+id)
	if r.fail[id] {
		return errors.New("task is not waiting")
	}
	return nil
}

func TestOneFeederPerApp(t *testing.T) {
	t.Parallel()
	var f feeders
	if !f.take("a") || f.take("a") {
		t.Fatal("a second task became app a's feeder")
	}
	if !f.take("b") {
		t.Fatal("app b's feeder refused because app a has one")
	}
	f.give("a")
	if !f.take("a") {
		t.Fatal("no feeder after the first one ended")
	}
}

// A campaign with its own rate_limit never feeds its app, and leaves the
// role free for the app's other campaigns.
func TestACampaignWithItsOwnRateLimitNeverFeeds(t *testing.T) {
	t.Parallel()
	var f feeders
	slow := &campaigns.Campaign{ID: "slow", App: "a", RateLimit: 2}
	if f.takeFor(slow) {
		t.Fatal("a campaign with rate_limit 2 became its app's feeder")
	}
	if !f.takeFor(&campaigns.Campaign{ID: "fast", App: "a"}) {
		t.Fatal("the app's other campaign could not feed it")
	}
	f.give("a")
	if f.takeFor(slow) {
		t.Fatal("a campaign with rate_limit 2 took the role once it was free")
	}
}

// A feeder that ends calls back the oldest task of its app that went back
// and still waits, skipping the ones that do not.
func TestAnEndingFeederCallsBackTheOldestTaskThatWentBack(t *testing.T) {
	t.Parallel()
	var f feeders
	f.bounced = map[string][]bouncedRef{
		"a": {{"batches", "t1"}, {"batches", "t2"}, {"batches", "t3"}},
		"b": {{"batches", "u1"}},
	}
	r := &runs{fail: map[string]bool{"t1": true}}
	f.callBack(r, "a")
	if want := []string{"batches/t1", "batches/t2"}; !reflect.DeepEqual(r.got, want) {
		t.Fatalf("called back %v, want %v", r.got, want)
	}
	if want := []bouncedRef{{"batches", "t3"}}; !reflect.DeepEqual(f.bounced["a"], want) {
		t.Fatalf("left %v, want %v", f.bounced["a"], want)
	}
	f.callBack(r, "c") // nothing went back
	if len(r.got) != 2 || len(f.bounced["b"]) != 1 {
		t.Fatalf("another app's tasks were touched: %v %v", r.got, f.bounced)
	}
}
