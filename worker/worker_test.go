package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/store"
)

// fakeProvider records every call; answer decides each call's outcome.
type fakeProvider struct {
	mu     sync.Mutex
	calls  [][]string
	counts map[string]int
	answer func(call int, targets []string) ([]TargetResult, error)
	delay  time.Duration
	busy   atomic.Int32 // calls under way
	first  time.Time
	// pushLabel, when set, answers PushLabel (a provider task id).
	pushLabel func(ctx context.Context) (string, error)
}

func (f *fakeProvider) PushSingle(ctx context.Context, app string, targets []string, strategy *int, msg json.RawMessage, buf []TargetResult) ([]TargetResult, error) {
	f.busy.Add(1)
	defer f.busy.Add(-1)
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	if f.first.IsZero() {
		f.first = time.Now()
	}
	n := len(f.calls)
	f.calls = append(f.calls, append([]string(nil), targets...))
	f.mu.Unlock()
	var res []TargetResult
	var err error
	if f.answer != nil {
		res, err = f.answer(n, targets)
	}
	if err != nil {
		return nil, err
	}
	out := buf[:0] // in the buffer the worker recycles, as the real provider does
	if res == nil {
		for _, t := range targets {
			out = append(out, TargetResult{ID: t, OK: true})
		}
	} else {
		out = append(out, res...)
	}
	res = out
	f.mu.Lock()
	for _, r := range res {
		if r.OK {
			f.counts[r.ID]++
		}
	}
	f.mu.Unlock()
	return res, nil
}

// The fake is an Easemob app that only pushes in batches; the other kinds
// are tested end to end against pushsim (daemon).
func (f *fakeProvider) ProviderOf(string) string { return "easemob" }

var errNotFaked = errors.New("fakeProvider: not faked")

func (f *fakeProvider) PushSync(context.Context, string, string, *int, json.RawMessage) (TargetResult, error) {
	return TargetResult{}, errNotFaked
}
func (f *fakeProvider) LabelExists(context.Context, string, string) (bool, error) {
	return false, errNotFaked
}
func (f *fakeProvider) CreateLabel(context.Context, string, string, string) error { return errNotFaked }
func (f *fakeProvider) LabelMembers(context.Context, string, string, bool, []string) ([]TargetResult, error) {
	return nil, errNotFaked
}
func (f *fakeProvider) TagMembers(context.Context, string, string, bool, []string) ([]TargetResult, error) {
	return nil, errNotFaked
}
func (f *fakeProvider) UpdateUser(context.Context, string, string, *string, *int) error {
	return errNotFaked
}
func (f *fakeProvider) SetPushMode(context.Context, string, string, *string, *string, *int64) error {
	return errNotFaked
}
func (f *fakeProvider) SetLanguage(context.Context, string, string, string) error { return errNotFaked }
func (f *fakeProvider) CreateTemplate(context.Context, string, string, string, string) error {
	return errNotFaked
}
func (f *fakeProvider) DeleteTemplate(context.Context, string, string) error { return errNotFaked }
func (f *fakeProvider) PushLabel(ctx context.Context, _, _ string, _ *int, _ json.RawMessage) (string, error) {
	if f.pushLabel != nil {
		return f.pushLabel(ctx)
	}
	return "", errNotFaked
}
func (f *fakeProvider) PushTask(context.Context, string, *int, json.RawMessage) (string, error) {
	return "", errNotFaked
}

func (f *fakeProvider) snapshot() (calls [][]string, counts map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	counts = make(map[string]int, len(f.counts))
	for k, v := range f.counts {
		counts[k] = v
	}
	return append([][]string(nil), f.calls...), counts
}

type sink struct {
	mu     sync.Mutex
	events []campaigns.Status
}

func (s *sink) Publish(_ context.Context, st campaigns.Status) error {
	s.mu.Lock()
	s.events = append(s.events, st)
	s.mu.Unlock()
	return nil
}

func (s *sink) states(id string) []campaigns.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []campaigns.State
	for _, e := range s.events {
		if e.ID == id && (len(out) == 0 || out[len(out)-1] != e.Status) {
			out = append(out, e.Status)
		}
	}
	return out
}

type env struct {
	svc   *Worker
	store *store.Store
	prov  *fakeProvider
	sink  *sink
	insp  *asynq.Inspector
}

func setup(t *testing.T, opts Options) *env {
	t.Helper()
	r := testenv.StartRedis(t)
	redisOpt := asynq.RedisClientOpt{Addr: r.Addr}
	client := asynq.NewClient(redisOpt)
	t.Cleanup(func() { _ = client.Close() })
	st := store.New(r.Client(t), store.Options{})
	prov := opts.Provider.(*fakeProvider)
	if prov.counts == nil {
		prov.counts = map[string]int{}
	}
	insp := asynq.NewInspector(redisOpt)
	t.Cleanup(func() { _ = insp.Close() })
	sk := &sink{}
	opts.Client, opts.Store, opts.Sink, opts.Inspector = client, st, sk, insp
	opts.Logger = zerolog.Nop()
	if opts.Concurrency == 0 {
		opts.Concurrency = 10
	}
	svc := New(opts)
	srv := NewServer(redisOpt, ServerOptions{Concurrency: opts.Concurrency, Logger: zerolog.Nop(), ShutdownTimeout: time.Second})
	if err := srv.Start(svc.Mux()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return &env{svc: svc, store: st, prov: prov, sink: sk, insp: insp}
}

func msg() json.RawMessage { return json.RawMessage(`{"title":"t","content":"c"}`) }

func (e *env) submit(t *testing.T, c *campaigns.Campaign, start time.Time) campaigns.Status {
	t.Helper()
	c.Normalize()
	st, err := e.svc.Control.Submit(context.Background(), c, start)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *env) waitFinal(t *testing.T, id string, within time.Duration) campaigns.Status {
	t.Helper()
	return testenv.WaitFor(t, within, "campaign "+id+" to be final", func() (campaigns.Status, bool) {
		st, err := e.store.Status(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return st, st.Status.Final()
	})
}

func targets(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%05d", prefix, i)
	}
	return out
}

func TestBatchPushSendsEachUniqueTargetOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{}})
	uniq := targets("u", 4546)
	all := append(append([]string(nil), uniq...), uniq[:454]...) // 5,000 ids, ~10% repeats
	e.submit(t, &campaigns.Campaign{ID: "big", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: all}, time.Now())
	st := e.waitFinal(t, "big", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 4546 || st.Failed != 0 || st.TargetsTotal != 4546 || st.BatchesTotal != 46 || st.BatchesDone != 46 {
		t.Fatalf("status %+v", st)
	}
	calls, counts := e.prov.snapshot()
	for _, c := range calls {
		if len(c) > 100 {
			t.Fatalf("a call of %d targets", len(c))
		}
	}
	for _, id := range uniq {
		if counts[id] != 1 {
			t.Fatalf("%s pushed %d times", id, counts[id])
		}
	}
	testenv.WaitFor(t, 5*time.Second, "events of big from accepted to completed", func() ([]campaigns.State, bool) {
		got := e.sink.states("big")
		return got, got[0] == campaigns.StateAccepted && got[len(got)-1] == campaigns.StateCompleted
	})
}

func TestTransientErrorsAreRetried(t *testing.T) {
	t.Parallel()
	prov := &fakeProvider{answer: func(call int, _ []string) ([]TargetResult, error) {
		if call%2 == 0 {
			return nil, &provider.Error{Provider: "easemob", Class: provider.ClassTransient, Status: 503}
		}
		return nil, nil
	}}
	e := setup(t, Options{Provider: prov})
	e.submit(t, &campaigns.Campaign{ID: "flaky", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("f", 300)}, time.Now())
	st := e.waitFinal(t, "flaky", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 300 {
		t.Fatalf("%+v", st)
	}
}

func TestRateLimitedAnswersDoNotSpendRetries(t *testing.T) {
	t.Parallel()
	prov := &fakeProvider{answer: func(call int, _ []string) ([]TargetResult, error) {
		if call < 3 {
			return nil, &provider.Error{Provider: "easemob", Class: provider.ClassRateLimited, Status: 429, RetryAfter: 10 * time.Millisecond}
		}
		return nil, nil
	}}
	e := setup(t, Options{Provider: prov, Queue: QueueOptions{MaxRetry: 1}})
	e.submit(t, &campaigns.Campaign{ID: "limited", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("l", 50)}, time.Now())
	st := e.waitFinal(t, "limited", 30*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 50 {
		t.Fatalf("three 429s with MaxRetry 1 must still complete: %+v", st)
	}
}

func TestPermanentErrorsAndRefusedTargetsAreRecorded(t *testing.T) {
	t.Parallel()
	prov := &fakeProvider{answer: func(call int, ts []string) ([]TargetResult, error) {
		if ts[0] == "p00000" {
			return nil, &provider.Error{Provider: "easemob", Class: provider.ClassPermanent, Status: 400, Type: "MessageException", Description: "bad_request"}
		}
		res := make([]TargetResult, len(ts))
		for i, id := range ts {
			res[i] = TargetResult{ID: id, OK: i%10 != 0, Reason: "FAIL: appUser not exists"}
		}
		return res, nil
	}}
	e := setup(t, Options{Provider: prov})
	e.submit(t, &campaigns.Campaign{ID: "mixed", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("p", 200)}, time.Now())
	st := e.waitFinal(t, "mixed", 30*time.Second)
	if st.Status != campaigns.StatePartiallyFailed || st.Sent != 90 || st.Failed != 110 {
		t.Fatalf("%+v", st)
	}
	var reasons = map[string]string{}
	found, err := e.store.EachFailure(context.Background(), "mixed", func(f campaigns.Failure) error {
		reasons[f.Target] = f.Reason
		return nil
	})
	if err != nil || !found || len(reasons) != 110 {
		t.Fatalf("failures %d %v", len(reasons), err)
	}
	if r := reasons["p00001"]; r == "" || !contains(r, "MessageException") {
		t.Errorf("reason of a permanent batch error: %q", r)
	}
	if calls, _ := e.prov.snapshot(); len(calls) != 2 {
		t.Errorf("a permanent error must not be retried: %d calls", len(calls))
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// nthCall is a fakeProvider answer that lets every call through and
// closes reached at the nth call (from 1): a test that must act right at
// that call waits on the channel (a poll could come a few calls late).
func nthCall(n int, reached chan struct{}) func(int, []string) ([]TargetResult, error) {
	return func(call int, _ []string) ([]TargetResult, error) {
		if call == n-1 {
			close(reached)
		}
		return nil, nil
	}
}

func TestCancelStopsUnsentBatches(t *testing.T) {
	t.Parallel()
	third := make(chan struct{})
	prov := &fakeProvider{delay: 20 * time.Millisecond, answer: nthCall(3, third)}
	e := setup(t, Options{Provider: prov, Concurrency: 2, Queue: QueueOptions{BatchWindow: 2, BatchesPerTask: 2}})
	e.submit(t, &campaigns.Campaign{ID: "stop", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("s", 5000)}, time.Now())
	select {
	case <-third:
	case <-time.After(30 * time.Second):
		t.Fatal("timed out after 30s waiting for 3 provider calls")
	}
	st, err := e.svc.Control.Cancel(context.Background(), "stop")
	if err != nil || st.Status != campaigns.StateCancelled {
		t.Fatalf("cancel: %+v %v", st, err)
	}
	time.Sleep(300 * time.Millisecond) // a window for batches the cancel failed to stop to go out
	calls, _ := prov.snapshot()
	if len(calls) > 8 {
		t.Fatalf("%d calls after cancel (of 50 batches)", len(calls))
	}
	if got := e.sink.states("stop"); got[len(got)-1] != campaigns.StateCancelled {
		t.Errorf("events %v", got)
	}
}

func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	prov := &fakeProvider{delay: 50 * time.Millisecond}
	// one batch per task, two at a time: the 20 batches take ~0.5 s
	e := setup(t, Options{Provider: prov, Concurrency: 2, Queue: QueueOptions{BatchWindow: 2, BatchesPerTask: 1}})
	e.submit(t, &campaigns.Campaign{ID: "hold", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("h", 2000)}, time.Now())
	testenv.WaitFor(t, 30*time.Second, "2 provider calls", func() (int, bool) {
		calls, _ := prov.snapshot()
		return len(calls), len(calls) >= 2
	})
	if st, err := e.svc.Control.Pause(context.Background(), "hold"); err != nil || st.Status != campaigns.StatePaused {
		t.Fatalf("pause %+v %v", st, err)
	}
	testenv.WaitUntil(t, 10*time.Second, "the calls under way when it paused to end", func() bool { return prov.busy.Load() == 0 })
	before, _ := prov.snapshot()
	time.Sleep(500 * time.Millisecond) // a window in which a paused campaign must send nothing
	after, _ := prov.snapshot()
	if len(after) != len(before) {
		t.Fatalf("sent while paused: %d → %d calls", len(before), len(after))
	}
	if _, err := e.svc.Control.Resume(context.Background(), "hold"); err != nil {
		t.Fatal(err)
	}
	st := e.waitFinal(t, "hold", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 2000 {
		t.Fatalf("%+v", st)
	}
}

func TestDuplicateSubmitSendsNothingTwice(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{}})
	c := &campaigns.Campaign{ID: "once", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("o", 150)}
	e.submit(t, c, time.Now())
	e.waitFinal(t, "once", 30*time.Second)
	dup := e.submit(t, &campaigns.Campaign{ID: "once", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("o", 150)}, time.Now())
	if dup.Status != campaigns.StateDuplicate {
		t.Fatalf("resubmit: %+v", dup)
	}
	time.Sleep(300 * time.Millisecond) // a window for a second sending of the duplicate to show
	_, counts := e.prov.snapshot()
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("%s pushed %d times", id, n)
		}
	}
}

func TestRedeliveryAfterCrashBeforeEnqueue(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{}})
	c := &campaigns.Campaign{ID: "crash", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("c", 120)}
	c.Normalize()
	// The first attempt stored the campaign and died before enqueuing.
	if _, _, err := e.store.Create(context.Background(), c, time.Now()); err != nil {
		t.Fatal(err)
	}
	st := e.submit(t, c, time.Now()) // the redelivered message
	if st.Status != campaigns.StateDuplicate {
		t.Fatalf("%+v", st)
	}
	final := e.waitFinal(t, "crash", 30*time.Second)
	if final.Status != campaigns.StateCompleted || final.Sent != 120 {
		t.Fatalf("the redelivery must still send the campaign once: %+v", final)
	}
}

func TestSmallCampaignOvertakesABigOne(t *testing.T) {
	t.Parallel()
	prov := &fakeProvider{delay: 5 * time.Millisecond}
	e := setup(t, Options{Provider: prov, Concurrency: 4, Queue: QueueOptions{BatchesPerTask: 1}})
	e.submit(t, &campaigns.Campaign{ID: "huge", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("g", 20000)}, time.Now())
	testenv.WaitUntil(t, 30*time.Second, "the big campaign to be sending", func() bool {
		calls, _ := prov.snapshot()
		return len(calls) > 0
	})
	e.submit(t, &campaigns.Campaign{ID: "tiny", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("t", 50)}, time.Now())
	e.waitFinal(t, "tiny", 30*time.Second)
	st, _ := e.store.Status(context.Background(), "huge")
	if st.Status.Final() {
		t.Fatalf("the big campaign finished first; the small one waited behind it")
	}
	e.waitFinal(t, "huge", 120*time.Second)
}

func TestDelayedStartIsNotEarly(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{}})
	start := time.Now().Add(2 * time.Second)
	st := e.submit(t, &campaigns.Campaign{ID: "later", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("d", 10)}, start)
	if st.Status != campaigns.StateAccepted {
		t.Fatalf("%+v", st)
	}
	if got, _ := e.store.Status(context.Background(), "later"); got.Status != campaigns.StateScheduled {
		t.Fatalf("want scheduled, got %s", got.Status)
	}
	e.waitFinal(t, "later", 30*time.Second)
	testenv.WaitFor(t, 5*time.Second, "events of later: [accepted scheduled running completed]", func() (string, bool) {
		got := fmt.Sprint(e.sink.states("later"))
		return got, got == "[accepted scheduled running completed]"
	})
	calls, _ := e.prov.snapshot()
	if len(calls) != 1 {
		t.Fatalf("calls %d", len(calls))
	}
	e.prov.mu.Lock()
	first := e.prov.first
	e.prov.mu.Unlock()
	if first.Before(start) {
		t.Fatalf("first call %s before the start", start.Sub(first))
	}
}

func TestExpiredTargetsAreDropped(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{}})
	past := time.Now().Add(-time.Second)
	c := &campaigns.Campaign{ID: "stale", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("x", 150), ExpiresAt: &past}
	e.submit(t, c, time.Now())
	st := e.waitFinal(t, "stale", 30*time.Second)
	if st.Status != campaigns.StateExpired || st.Dropped != 150 || st.Sent != 0 {
		t.Fatalf("%+v", st)
	}
	if calls, _ := e.prov.snapshot(); len(calls) != 0 {
		t.Fatalf("expired campaign sent %d calls", len(calls))
	}
}

func TestTallyCountsEveryTargetOnce(t *testing.T) {
	t.Parallel()
	ok := func(id string) TargetResult { return TargetResult{ID: id, OK: true} }
	refused := TargetResult{ID: "b", Reason: "FAIL: appUser not exists"}
	noResult := func(id string) campaigns.Failure {
		return campaigns.Failure{Target: id, Reason: "no result from the provider"}
	}
	for _, tc := range []struct {
		name     string
		results  []TargetResult
		sent     int64
		failures []campaigns.Failure
	}{
		{"in order", []TargetResult{ok("a"), refused, ok("c")}, 2, []campaigns.Failure{{Target: "b", Reason: "FAIL: appUser not exists"}}},
		{"out of order", []TargetResult{ok("c"), ok("a"), ok("b")}, 3, nil},
		{"one missing", []TargetResult{ok("a"), ok("c")}, 2, []campaigns.Failure{noResult("b")}},
		{"none", nil, 0, []campaigns.Failure{noResult("a"), noResult("b"), noResult("c")}},
		{"a stranger instead of one", []TargetResult{ok("a"), ok("zz"), ok("c")}, 2, []campaigns.Failure{noResult("b")}},
		{"one answered twice", []TargetResult{ok("a"), refused, refused, ok("c")}, 2, []campaigns.Failure{{Target: "b", Reason: "FAIL: appUser not exists"}}},
		{"refused without a reason", []TargetResult{ok("a"), {ID: "b"}, ok("c")}, 2, []campaigns.Failure{{Target: "b", Reason: "refused by the provider"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent, failures := tally([]string{"a", "b", "c"}, tc.results)
			if sent != tc.sent || !reflect.DeepEqual(failures, tc.failures) {
				t.Fatalf("sent %d, failures %+v; want %d, %+v", sent, failures, tc.sent, tc.failures)
			}
		})
	}
}

func TestClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err     error
		failure bool
	}{
		{&provider.Error{Class: provider.ClassRateLimited}, false},
		{&retryLater{in: time.Second}, false},
		{fmt.Errorf("wrapped: %w", &provider.Error{Class: provider.ClassRateLimited, RetryAfter: 2 * time.Second}), false},
		{&provider.Error{Class: provider.ClassTransient}, true},
		{errors.New("boom"), true},
	}
	for _, tt := range tests {
		if got := IsFailure(tt.err); got != tt.failure {
			t.Errorf("IsFailure(%v) = %v", tt.err, got)
		}
	}
	if d := RetryDelay(0, &provider.Error{Class: provider.ClassRateLimited, RetryAfter: 2 * time.Second}, nil); d != 2*time.Second {
		t.Errorf("delay %s", d)
	}
	if d := RetryDelay(10, errors.New("x"), nil); d != time.Minute {
		t.Errorf("capped delay %s", d)
	}
}

func TestTheFinalEventIsTheLastWord(t *testing.T) {
	t.Parallel()
	e := setup(t, Options{Provider: &fakeProvider{delay: time.Millisecond}, Send: SendOptions{ProgressGap: time.Nanosecond}})
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("last-%d", i)
		e.submit(t, &campaigns.Campaign{ID: id, Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets(id, 3000)}, time.Now())
		e.waitFinal(t, id, 60*time.Second)
		time.Sleep(200 * time.Millisecond) // let every in-flight event land
		e.sink.mu.Lock()
		var last campaigns.Status
		for _, ev := range e.sink.events {
			if ev.ID == id {
				last = ev
			}
		}
		e.sink.mu.Unlock()
		if last.Status != campaigns.StateCompleted || last.Sent != 3000 {
			t.Fatalf("%s: last event %s (sent %d), want completed", id, last.Status, last.Sent)
		}
	}
}

// gatedAudience yields its first ids, then waits until release is closed
// (or a time limit) before yielding the rest.
type gatedAudience struct {
	first, rest string
	release     <-chan struct{}
	timedOut    chan struct{}
}

func (g *gatedAudience) Open(context.Context, string, string) (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(strings.NewReader(g.first), readerFunc(func(p []byte) (int, error) {
		select {
		case <-g.release:
		case <-time.After(20 * time.Second):
			close(g.timedOut)
		}
		return 0, io.EOF
	}), strings.NewReader(g.rest))), nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// A big audience is sent while it is still read: the first pushes go out
// before planning ends, tasks that overtake the plan come back for their
// batches, and every target is still pushed exactly once.
func TestSendingStartsWhilePlanning(t *testing.T) {
	t.Parallel()
	firstCall := make(chan struct{})
	var once sync.Once
	prov := &fakeProvider{answer: func(int, []string) ([]TargetResult, error) {
		once.Do(func() { close(firstCall) })
		return nil, nil
	}}
	ids := targets("p", 20_550)
	aud := &gatedAudience{
		first:    strings.Join(ids[:12_000], "\n") + "\n",
		rest:     strings.Join(ids[12_000:], "\n") + "\n",
		release:  firstCall,
		timedOut: make(chan struct{}),
	}
	e := setup(t, Options{Provider: prov, Plan: PlanOptions{Audience: aud}, Queue: QueueOptions{BatchWindow: 8}})
	e.submit(t, &campaigns.Campaign{ID: "stream", Kind: campaigns.KindBatchPush, PushMessage: msg(),
		Audience: &campaigns.Audience{Bucket: "b", Object: "o"}}, time.Now())
	st := e.waitFinal(t, "stream", 60*time.Second)
	select {
	case <-aud.timedOut:
		t.Fatal("no push went out while the audience was still being read")
	default:
	}
	if st.Status != campaigns.StateCompleted || st.Sent != 20_550 || st.TargetsTotal != 20_550 || st.BatchesTotal != 206 || st.BatchesDone != 206 {
		t.Fatalf("status %+v", st)
	}
	_, counts := e.prov.snapshot()
	for _, id := range ids {
		if counts[id] != 1 {
			t.Fatalf("%s pushed %d times", id, counts[id])
		}
	}
	testenv.WaitFor(t, 5*time.Second, "events of stream to end completed", func() ([]campaigns.State, bool) {
		got := e.sink.states("stream")
		return got, got[len(got)-1] == campaigns.StateCompleted
	})
}

// An audience with no valid id: the plan itself finishes the campaign.
func TestEmptyAudienceCompletes(t *testing.T) {
	t.Parallel()
	open := make(chan struct{})
	close(open)
	aud := &gatedAudience{first: "  \n\n", release: open, timedOut: make(chan struct{})}
	e := setup(t, Options{Provider: &fakeProvider{}, Plan: PlanOptions{Audience: aud}})
	e.submit(t, &campaigns.Campaign{ID: "empty", Kind: campaigns.KindBatchPush, PushMessage: msg(),
		Audience: &campaigns.Audience{Bucket: "b", Object: "o"}}, time.Now())
	st := e.waitFinal(t, "empty", 30*time.Second)
	if st.Status != campaigns.StateCompleted || st.TargetsTotal != 0 || st.BatchesTotal != 0 || st.Sent != 0 {
		t.Fatalf("status %+v", st)
	}
	want := []campaigns.State{campaigns.StateAccepted, campaigns.StateRunning, campaigns.StateCompleted}
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("events of empty: %v", want), func() ([]campaigns.State, bool) {
		got := e.sink.states("empty")
		return got, reflect.DeepEqual(got, want)
	})
}

// deleteTasksUntilStuck deletes every waiting task of queue until none is
// left and none is at work (the ones at work finish and enqueue their
// successors, which are deleted in turn): the campaign's chain is broken.
func deleteTasksUntilStuck(t testing.TB, insp *asynq.Inspector, queue string) (deleted int) {
	t.Helper()
	quiet := 0
	testenv.WaitUntil(t, 30*time.Second, "the campaign's tasks to stop", func() bool {
		n := 0
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks} {
			tasks, _ := list(queue)
			for _, ti := range tasks {
				if ti.Type == TypeBatch && insp.DeleteTask(queue, ti.ID) == nil {
					deleted++
					n++
				}
			}
		}
		active, _ := insp.ListActiveTasks(queue)
		if n == 0 && len(active) == 0 {
			quiet++
		} else {
			quiet = 0
		}
		return quiet >= 10
	})
	return deleted
}

// A campaign that is not final but whose work is not queued (its plan task
// completed, its batch tasks deleted from asynq) is resubmitted under its
// id: the duplicate answer first queues the missing tasks again — with no
// stall wait (StallAfter is an hour, and no reconciler runs) — and the
// campaign completes with every target pushed once.
func TestDuplicateOfAStuckCampaignQueuesItsWork(t *testing.T) {
	t.Parallel()
	third := make(chan struct{})
	prov := &fakeProvider{delay: 20 * time.Millisecond, answer: nthCall(3, third)}
	e := setup(t, Options{Provider: prov, Concurrency: 2, Queue: QueueOptions{BatchWindow: 2, BatchesPerTask: 1}, Reconcile: ReconcileOptions{StallAfter: time.Hour}})
	mk := func() *campaigns.Campaign {
		return &campaigns.Campaign{ID: "stuck", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("k", 3000)}
	}
	e.submit(t, mk(), time.Now())
	select {
	case <-third:
	case <-time.After(30 * time.Second):
		t.Fatal("timed out after 30s waiting for 3 provider calls")
	}
	// Paused, its batch tasks come back only seconds later (retry), so
	// none is active and all can be deleted; then it is running again,
	// straight in the store (not Resume), with nothing queued.
	if _, err := e.svc.Control.Pause(context.Background(), "stuck"); err != nil {
		t.Fatal(err)
	}
	deleted := deleteTasksUntilStuck(t, e.insp, "default")
	if _, changed, err := e.store.Transition(context.Background(), "stuck", campaigns.StateRunning, campaigns.StatePaused); err != nil || !changed {
		t.Fatalf("back to running: %v %v", changed, err)
	}
	before, _ := prov.snapshot()
	time.Sleep(300 * time.Millisecond) // a window in which a stuck campaign must send nothing
	after, _ := prov.snapshot()
	st, err := e.store.Status(context.Background(), "stuck")
	if err != nil || st.Status != campaigns.StateRunning || len(after) != len(before) || len(after) >= 30 {
		t.Fatalf("the campaign is not stuck: %+v %v, %d → %d calls", st, err, len(before), len(after))
	}
	if info, err := e.insp.GetTaskInfo("default", "stuck:plan"); err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("plan task: %+v %v, want completed (kept)", info, err)
	}
	t.Logf("%d batch tasks deleted; stuck at %d of 30 batches", deleted, st.BatchesDone)

	dup := e.submit(t, mk(), time.Now())
	if dup.Status != campaigns.StateDuplicate {
		t.Fatalf("resubmit: %+v", dup)
	}
	final := e.waitFinal(t, "stuck", 30*time.Second)
	if final.Status != campaigns.StateCompleted || final.Sent != 3000 {
		t.Fatalf("final %+v", final)
	}
	calls, counts := prov.snapshot()
	for _, id := range targets("k", 3000) {
		if counts[id] != 1 {
			t.Fatalf("%s pushed %d times", id, counts[id])
		}
	}
	if len(calls) != 30 {
		t.Fatalf("%d calls for 30 batches", len(calls))
	}
}

// A duplicate of a campaign that is sending changes nothing: its live
// tasks are left alone (TaskIDs refuse a second copy), every target is
// pushed once.
func TestDuplicatesOfASendingCampaignEnqueueNothingTwice(t *testing.T) {
	t.Parallel()
	prov := &fakeProvider{delay: 5 * time.Millisecond}
	e := setup(t, Options{Provider: prov, Concurrency: 4, Queue: QueueOptions{BatchWindow: 4, BatchesPerTask: 1}, Reconcile: ReconcileOptions{StallAfter: time.Hour}})
	mk := func() *campaigns.Campaign {
		return &campaigns.Campaign{ID: "busy", Kind: campaigns.KindBatchPush, PushMessage: msg(), Targets: targets("b", 5000)}
	}
	e.submit(t, mk(), time.Now())
	dups := 0
	// a duplicate every poll until it is final
	final := testenv.WaitFor(t, 30*time.Second, "campaign busy to be final", func() (campaigns.Status, bool) {
		st, err := e.store.Status(context.Background(), "busy")
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.Final() {
			return st, true
		}
		if d := e.submit(t, mk(), time.Now()); d.Status != campaigns.StateDuplicate {
			t.Fatalf("resubmit: %+v", d)
		}
		dups++
		return st, false
	})
	calls, counts := prov.snapshot()
	if final.Status != campaigns.StateCompleted || final.Sent != 5000 || len(calls) != 50 {
		t.Fatalf("final %+v, %d calls", final, len(calls))
	}
	for id, n := range counts {
		if n != 1 {
			t.Fatalf("%s pushed %d times", id, n)
		}
	}
	t.Logf("%d duplicates while it was sending", dups)
}
