package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/ratelimit"
	"github.com/campaignd/campaignd/store"
	"github.com/campaignd/campaignd/worker"
)

// The handled kinds, in contract order: the providers each runs on, how
// many targets one provider call takes, and the limit groups it spends.
func ExampleKindInfos() {
	for _, k := range worker.KindInfos() {
		fmt.Printf("%s: providers %v, targets per call %v, groups %v\n", k.Kind, k.Providers, k.Unit, k.Groups)
	}
	// Output:
	// batch_push: providers [easemob], targets per call map[easemob:100], groups [push_single]
	// single_push: providers [easemob], targets per call map[easemob:1], groups [push_sync]
	// label_push: providers [easemob], targets per call map[easemob:1], groups [push_label]
	// broadcast: providers [easemob], targets per call map[easemob:1], groups [push_task]
	// label_members: providers [easemob engagelab], targets per call map[easemob:100 engagelab:1000], groups [label label_user tags]
	// user_settings: providers [easemob], targets per call map[easemob:1], groups [user notification]
	// template: providers [easemob], targets per call map[easemob:1], groups [template]
}

// A campaign's priority picks its asynq queue; the queues are served in
// strict priority order.
func ExampleQueueFor() {
	for _, p := range []campaigns.Priority{campaigns.PriorityHigh, campaigns.PriorityNormal, campaigns.PriorityLow, ""} {
		q := worker.QueueFor(p)
		fmt.Printf("%q -> %s (weight %d)\n", p, q, worker.Queues[q])
	}
	// Output:
	// "high" -> high (weight 6)
	// "normal" -> default (weight 3)
	// "low" -> low (weight 1)
	// "" -> default (weight 3)
}

// RetryDelay is the asynq server's retry delay: a "not now" answer (the
// limiter's refusal, the provider's rate limit) comes back when it asks
// and spends no retry; a failing provider is retried every second for
// FlatRetries retries, then with backoff; anything else backs off at once.
func ExampleRetryDelay() {
	limiter := &ratelimit.RateLimited{Key: "app:default:push_single", RetryIn: 1500 * time.Millisecond}
	tooFast := &provider.Error{Provider: provider.Easemob, Op: "POST /push/single",
		Class: provider.ClassRateLimited, Status: 429, RetryAfter: 2 * time.Second}
	down := &provider.Error{Provider: provider.Easemob, Op: "POST /push/single",
		Class: provider.ClassTransient, Status: 503}
	other := errors.New("decode batch: unexpected end of JSON input")

	for _, tc := range []struct {
		name    string
		retried int
		err     error
	}{
		{"limiter refusal", 0, limiter},
		{"provider 429", 5, tooFast},
		{"provider 503", 0, down},
		{"provider 503", worker.FlatRetries + 2, down},
		{"other error", 3, other},
		{"other error", 10, other},
	} {
		fmt.Printf("%s after %d retries: again in %s, spends a retry: %v\n",
			tc.name, tc.retried, worker.RetryDelay(tc.retried, tc.err, nil), worker.IsFailure(tc.err))
	}
	// Output:
	// limiter refusal after 0 retries: again in 1.5s, spends a retry: false
	// provider 429 after 5 retries: again in 2s, spends a retry: false
	// provider 503 after 0 retries: again in 1s, spends a retry: true
	// provider 503 after 32 retries: again in 4s, spends a retry: true
	// other error after 3 retries: again in 8s, spends a retry: true
	// other error after 10 retries: again in 1m0s, spends a retry: true
}

// printSink prints the status events the worker publishes.
type printSink struct{}

func (printSink) Publish(_ context.Context, st campaigns.Status) error {
	fmt.Println("event:", st.ID, st.Status)
	return nil
}

// Control.Submit stores a campaign and enqueues its plan task, with a
// deterministic TaskID, in the queue of its priority; the asynq servers
// (not started here) then plan and send it. Submitting the same id again
// sends nothing again, and the commands change its state.
func ExampleControl_Submit() {
	rdb, stop := testenv.RedisForExample()
	defer stop()
	ctx := context.Background()
	redisOpt := asynq.RedisClientOpt{Addr: rdb.Options().Addr}
	client := asynq.NewClient(redisOpt)
	defer client.Close()
	insp := asynq.NewInspector(redisOpt)
	defer insp.Close()

	w := worker.New(worker.Options{Client: client, Store: store.New(rdb, store.Options{}), Sink: printSink{}})
	defer w.Close()

	c := &campaigns.Campaign{ID: "spring-sale", App: "default", Kind: campaigns.KindBatchPush,
		Priority: campaigns.PriorityHigh, Targets: []string{"u1", "u2"},
		PushMessage: json.RawMessage(`{"title":"Sale","content":"-20%"}`)}
	st, err := w.Control.Submit(ctx, c, time.Now())
	fmt.Println("submit:", st.Status, err)
	if info, err := insp.GetTaskInfo(worker.QueueFor(c.Priority), c.ID+":plan"); err == nil {
		fmt.Println("task:", info.ID, info.Type, "in", info.Queue, info.State)
	} else {
		fmt.Println(err)
	}

	st, _ = w.Control.Submit(ctx, c, time.Now())
	fmt.Println("submit again:", st.Status)
	st, _ = w.Control.Pause(ctx, c.ID)
	fmt.Println("pause:", st.Status)
	st, _ = w.Control.Cancel(ctx, c.ID)
	fmt.Println("cancel:", st.Status)
	// Output:
	// event: spring-sale accepted
	// submit: accepted <nil>
	// task: spring-sale:plan campaign:plan in high pending
	// event: spring-sale duplicate
	// submit again: duplicate
	// event: spring-sale paused
	// pause: paused
	// event: spring-sale cancelled
	// cancel: cancelled
}
