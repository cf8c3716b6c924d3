package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/worker"
)

var errNotFound = errors.New("not found")

type fakeService struct {
	mu       sync.Mutex
	failures int // Submit fails this many times first
	submits  []string
	commands []string
}

func (f *fakeService) Submit(_ context.Context, c *campaigns.Campaign, _ time.Time) (campaigns.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return campaigns.Status{}, errors.New("redis down")
	}
	f.submits = append(f.submits, c.ID)
	return campaigns.Status{ID: c.ID, Status: campaigns.StateAccepted}, nil
}

func (f *fakeService) cmd(verb, id string) (campaigns.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "ghost" {
		return campaigns.Status{}, errNotFound
	}
	f.commands = append(f.commands, verb+":"+id)
	return campaigns.Status{ID: id, Status: campaigns.StatePaused}, nil
}

func (f *fakeService) Cancel(_ context.Context, id string) (campaigns.Status, error) {
	return f.cmd("cancel", id)
}
func (f *fakeService) Pause(_ context.Context, id string) (campaigns.Status, error) {
	return f.cmd("pause", id)
}
func (f *fakeService) Resume(_ context.Context, id string) (campaigns.Status, error) {
	return f.cmd("resume", id)
}

func (f *fakeService) snapshot() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.submits...), append([]string(nil), f.commands...)
}

func setup(t *testing.T, svc *fakeService, intakes int) jetstream.JetStream {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := EnsureStreams(ctx, js, StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < intakes; i++ {
		in := New(js, svc, Options{
			Env: func() campaigns.Env {
				return campaigns.Env{Now: time.Now(), Kinds: worker.Kinds(), Apps: map[string]campaigns.AppInfo{"default": {Provider: "easemob"}}}
			},
			Location:   func(string) *time.Location { return time.UTC },
			Publisher:  NewPublisher(js, zerolog.Nop()),
			IsNotFound: func(err error) bool { return errors.Is(err, errNotFound) },
			Logger:     zerolog.Nop(),
		})
		wg.Add(1)
		go func() { defer wg.Done(); _ = in.Run(ctx) }()
	}
	return js
}

// settled waits until the intakes' consumer has delivered every message
// and each delivery was acknowledged (or ended): every handling is over,
// and none will be redelivered.
func settled(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testenv.WaitFor(t, 15*time.Second, "every message delivered and acknowledged", func() (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, StreamCampaigns, "campaignd")
		if err != nil {
			return err.Error(), false
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return err.Error(), false
		}
		return fmt.Sprintf("%d not delivered, %d not acknowledged", ci.NumPending, ci.NumAckPending), ci.NumPending == 0 && ci.NumAckPending == 0
	})
}

func valid(id string) []byte {
	return []byte(`{"id":"` + id + `","kind":"batch_push","push_message":{"t":1},"targets":["u1"]}`)
}

func lastStatus(t *testing.T, js jetstream.JetStream, subject string) map[string]any {
	t.Helper()
	s, err := js.Stream(context.Background(), StreamStatus)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), subject)
	if err != nil {
		return nil
	}
	var out map[string]any
	_ = json.Unmarshal(m.Data, &out)
	return out
}

func TestSubmitIsRedeliveredUntilStored(t *testing.T) {
	t.Parallel()
	svc := &fakeService{failures: 2}
	js := setup(t, svc, 1)
	if _, err := js.Publish(context.Background(), SubjectSubmit, valid("c1"), jetstream.WithMsgID("c1")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 15*time.Second, "c1 stored after two failures", func() bool { s, _ := svc.snapshot(); return len(s) == 1 })
	settled(t, js) // acknowledged: no redelivery can come
	if s, _ := svc.snapshot(); len(s) != 1 {
		t.Fatalf("submitted %v", s)
	}
}

func TestEachMessageHandledOnceByTwoIntakes(t *testing.T) {
	t.Parallel()
	svc := &fakeService{}
	js := setup(t, svc, 2)
	for i := 0; i < 40; i++ {
		id := "m" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if _, err := js.Publish(context.Background(), SubjectSubmit, valid(id), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	// The same id again within the dedupe window: JetStream drops it.
	ack, err := js.Publish(context.Background(), SubjectSubmit, valid("maa"), jetstream.WithMsgID("maa"))
	if err != nil || !ack.Duplicate {
		t.Fatalf("re-publish not deduplicated: %+v %v", ack, err)
	}
	testenv.WaitUntil(t, 15*time.Second, "40 submits", func() bool { s, _ := svc.snapshot(); return len(s) >= 40 })
	settled(t, js) // every handling has ended: a message handled twice shows now
	s, _ := svc.snapshot()
	seen := map[string]int{}
	for _, id := range s {
		seen[id]++
	}
	if len(s) != 40 || len(seen) != 40 {
		t.Fatalf("%d submits of %d ids", len(s), len(seen))
	}
}

func TestRejections(t *testing.T) {
	t.Parallel()
	svc := &fakeService{}
	js := setup(t, svc, 1)
	pub := func(b string) uint64 {
		ack, err := js.Publish(context.Background(), SubjectSubmit, []byte(b))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	seq := pub(`{"id":"bad id!","kind":"batch_push"}`)
	testenv.WaitUntil(t, 15*time.Second, "rejection", func() bool { return lastStatus(t, js, SubjectRejected) != nil })
	r := lastStatus(t, js, SubjectRejected)
	if r["status"] != "rejected" || r["given_id"] != "bad id!" || r["seq"].(float64) != float64(seq) {
		t.Fatalf("rejection %v (seq %d)", r, seq)
	}
	pub(`{"id":"inv","kind":"batch_push","strategy":7}`)
	testenv.WaitUntil(t, 15*time.Second, "rejected status", func() bool { return lastStatus(t, js, StatusSubject("inv")) != nil })
	st := lastStatus(t, js, StatusSubject("inv"))
	errs, _ := st["errors"].([]any)
	if st["status"] != "rejected" || len(errs) < 3 { // strategy, push_message, targets
		t.Fatalf("status %v", st)
	}
	if s, _ := svc.snapshot(); len(s) != 0 {
		t.Fatalf("invalid input submitted: %v", s)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	svc := &fakeService{}
	js := setup(t, svc, 1)
	for _, subj := range []string{SubjectPause, SubjectResume, SubjectCancel} {
		if _, err := js.Publish(context.Background(), subj, []byte(`{"id":"c9"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(context.Background(), SubjectCancel, []byte(`{"id":"ghost"}`)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitUntil(t, 15*time.Second, "commands", func() bool { _, c := svc.snapshot(); return len(c) == 3 })
	testenv.WaitUntil(t, 15*time.Second, "unknown id answer", func() bool { return lastStatus(t, js, StatusSubject("ghost")) != nil })
	if st := lastStatus(t, js, StatusSubject("ghost")); st["status"] != "rejected" {
		t.Fatalf("ghost: %v", st)
	}
}

func TestEnsureStreamsIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, _ := nats.Connect(n.URL)
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := EnsureStreams(context.Background(), js, StreamOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	info, err := js.Stream(context.Background(), StreamCampaigns)
	if err != nil {
		t.Fatal(err)
	}
	if d := info.CachedInfo().Config.Duplicates; d < time.Hour {
		t.Fatalf("duplicates window %s, want at least 1 h", d)
	}
}
