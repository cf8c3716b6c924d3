// Package intake is campaignd's NATS side: the JetStream streams, the durable
// consumer that takes campaigns (campaigns.submit) and commands
// (campaigns.cancel / pause / resume), and the publisher of status events
// (campaigns.status.<id>, campaigns.rejected).
//
// A submit message is acknowledged only once its campaign is stored in Redis
// and its first task enqueued; a failure before that leaves it to be
// redelivered. Bad input is answered with a rejected status listing every
// problem and terminated, never retried.
package intake

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/optcheck"
)

// Subjects and streams of docs/interface.md §3.
const (
	StreamCampaigns = "CAMPAIGNS"
	StreamStatus    = "CAMPAIGN_STATUS"
	SubjectSubmit   = "campaigns.submit"
	SubjectCancel   = "campaigns.cancel"
	SubjectPause    = "campaigns.pause"
	SubjectResume   = "campaigns.resume"
	SubjectRejected = "campaigns.rejected"
	StatusPrefix    = "campaigns.status."
)

// StatusSubject is the status subject of a campaign.
func StatusSubject(id string) string { return StatusPrefix + id }

// Publisher publishes status events; it implements worker.StatusSink.
type Publisher struct {
	js  jetstream.JetStream
	log zerolog.Logger
}

// NewPublisher returns a Publisher.
func NewPublisher(js jetstream.JetStream, log zerolog.Logger) *Publisher {
	return &Publisher{js: js, log: log}
}

// Publish sends a status on campaigns.status.<id>.
func (p *Publisher) Publish(ctx context.Context, st campaigns.Status) error {
	if st.ProviderTaskIDs == nil {
		st.ProviderTaskIDs = []string{}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("intake: encode status: %w", err)
	}
	if _, err := p.js.Publish(ctx, StatusSubject(st.ID), b); err != nil {
		return fmt.Errorf("intake: publish status of %s: %w", st.ID, err)
	}
	return nil
}

// PublishRejection answers a message without a valid id on campaigns.rejected.
func (p *Publisher) PublishRejection(ctx context.Context, r campaigns.Rejection) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("intake: encode rejection: %w", err)
	}
	if _, err := p.js.Publish(ctx, SubjectRejected, b); err != nil {
		return fmt.Errorf("intake: publish rejection: %w", err)
	}
	return nil
}

// Service takes the campaigns and commands (worker.Control implements it).
type Service interface {
	Submit(ctx context.Context, c *campaigns.Campaign, startAt time.Time) (campaigns.Status, error)
	Cancel(ctx context.Context, id string) (campaigns.Status, error)
	Pause(ctx context.Context, id string) (campaigns.Status, error)
	Resume(ctx context.Context, id string) (campaigns.Status, error)
}

// Options configure an Intake.
type Options struct {
	Consumer   string                          // durable name, default "campaignd"
	Env        func() campaigns.Env            // apps and now, for validation
	Location   func(app string) *time.Location // provider zone of an app
	Publisher  *Publisher
	IsNotFound func(error) bool // unknown campaign id
	MaxDeliver int              // default 10
	AckWait    time.Duration    // default 60s
	Parallel   int              // messages handled at once, default 8
	// CallTimeout bounds each JetStream call EnsureConsumer makes
	// (default DefaultCallTimeout).
	CallTimeout time.Duration
	Logger      zerolog.Logger
	Clock       clock.Clock
	// Status carries the answers to commands (the campaign's status), in
	// order with the service's own events of the campaign: the daemon's
	// asynchronous status queue. Default: Publisher, which also publishes
	// the rejections, before their message is terminated.
	Status StatusPublisher
}

// StatusPublisher publishes a campaign's status (worker.StatusSink).
type StatusPublisher interface {
	Publish(ctx context.Context, st campaigns.Status) error
}

// Intake consumes the CAMPAIGNS stream.
type Intake struct {
	js  jetstream.JetStream
	svc Service
	o   Options
	log zerolog.Logger

	cons jetstream.Consumer // set by EnsureConsumer
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o Options) WithDefaults() Options {
	o.Consumer = cmp.Or(o.Consumer, "campaignd")
	o.MaxDeliver = cmp.Or(o.MaxDeliver, 10)
	o.AckWait = cmp.Or(o.AckWait, time.Minute)
	o.Parallel = cmp.Or(o.Parallel, 8)
	o.CallTimeout = cmp.Or(o.CallTimeout, DefaultCallTimeout)
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Status == nil && o.Publisher != nil {
		o.Status = o.Publisher
	}
	if o.IsNotFound == nil {
		o.IsNotFound = func(error) bool { return false }
	}
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("intake: Options")
	c.Positive(o, "MaxDeliver", "AckWait", "Parallel", "CallTimeout")
	return c.Err()
}

// New returns an Intake. Options out of range are a caller's bug: New
// panics on them, naming the field.
func New(js jetstream.JetStream, svc Service, o Options) *Intake {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		panic(err)
	}
	return &Intake{js: js, svc: svc, o: o, log: o.Logger}
}

// Run consumes until ctx is done, then stops pulling and waits for the
// messages in hand. It makes the consumer ready first, unless
// EnsureConsumer already has.
func (in *Intake) Run(ctx context.Context) error {
	if in.cons == nil {
		if err := in.EnsureConsumer(ctx); err != nil {
			return err
		}
	}
	it, err := in.cons.Messages(jetstream.PullMaxMessages(in.o.Parallel))
	if err != nil {
		return fmt.Errorf("intake: pull: %w", err)
	}
	go func() {
		<-ctx.Done()
		it.Drain()
	}()
	sem := make(chan struct{}, in.o.Parallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			in.log.Warn().Err(err).Msg("intake: next message")
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			in.handle(context.WithoutCancel(ctx), msg)
		}()
	}
}

func (in *Intake) handle(ctx context.Context, msg jetstream.Msg) {
	defer func() {
		if r := recover(); r != nil {
			in.log.Error().Interface("panic", r).Str("subject", msg.Subject()).Msg("intake: message handling panicked; will be redelivered")
			_ = msg.NakWithDelay(5 * time.Second)
		}
	}()
	// Keep the message from being redelivered while a long submit runs.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(in.o.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	switch msg.Subject() {
	case SubjectSubmit:
		in.submit(ctx, msg)
	case SubjectCancel, SubjectPause, SubjectResume:
		in.command(ctx, msg)
	default:
		_ = msg.Term()
	}
}

func seqOf(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

func (in *Intake) submit(ctx context.Context, msg jetstream.Msg) {
	data := msg.Data()
	given, errs := campaigns.PeekID(data)
	if len(errs) > 0 {
		in.reject(ctx, msg, given, errs)
		return
	}
	c, errs := campaigns.Check(data, in.o.Env())
	if len(errs) > 0 {
		st := campaigns.Status{ID: *given, Status: campaigns.StateRejected, At: in.o.Clock.Now().UTC(), ProviderTaskIDs: []string{}, Errors: errs}
		if c != nil {
			st.Kind = c.Kind
		}
		if err := in.o.Publisher.Publish(ctx, st); err != nil {
			in.log.Warn().Err(err).Str("campaign", *given).Msg("intake: rejected status not published; will retry")
			_ = msg.NakWithDelay(2 * time.Second)
			return
		}
		in.log.Info().Str("campaign", *given).Int("problems", len(errs)).Msg("campaign rejected")
		_ = msg.Term()
		return
	}
	env := in.o.Env()
	start, _, _ := c.StartTime(in.o.Location(c.App), env.Now)
	start = c.FirstOpening(in.o.Location(c.App), start) // a closed send window: scheduled until it opens
	status, err := in.svc.Submit(ctx, c, start)
	if err != nil {
		in.log.Warn().Err(err).Str("campaign", c.ID).Msg("intake: campaign not stored yet; it will be redelivered")
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	if err := msg.Ack(); err != nil {
		in.log.Warn().Err(err).Str("campaign", c.ID).Msg("intake: ack failed (a redelivery will be answered as duplicate)")
	}
	in.log.Info().Str("campaign", c.ID).Str("status", string(status.Status)).Msg("campaign taken")
}

func (in *Intake) reject(ctx context.Context, msg jetstream.Msg, given *string, errs campaigns.FieldErrors) {
	r := campaigns.Rejection{Status: campaigns.StateRejected, GivenID: given, Seq: seqOf(msg), Errors: errs}
	if err := in.o.Publisher.PublishRejection(ctx, r); err != nil {
		in.log.Warn().Err(err).Msg("intake: rejection not published; will retry")
		_ = msg.NakWithDelay(2 * time.Second)
		return
	}
	in.log.Info().Uint64("seq", r.Seq).Msg("message without a valid id rejected")
	_ = msg.Term()
}

func (in *Intake) command(ctx context.Context, msg jetstream.Msg) {
	given, errs := campaigns.PeekID(msg.Data())
	if len(errs) > 0 {
		in.reject(ctx, msg, given, errs)
		return
	}
	id := *given
	var (
		st  campaigns.Status
		err error
	)
	switch msg.Subject() {
	case SubjectCancel:
		st, err = in.svc.Cancel(ctx, id)
	case SubjectPause:
		st, err = in.svc.Pause(ctx, id)
	case SubjectResume:
		st, err = in.svc.Resume(ctx, id)
	}
	switch {
	case err != nil && in.o.IsNotFound(err):
		unknown := campaigns.Status{ID: id, Status: campaigns.StateRejected, At: in.o.Clock.Now().UTC(), ProviderTaskIDs: []string{},
			Errors: campaigns.FieldErrors{{Field: "id", Message: "unknown campaign (" + msg.Subject() + " ignored)"}}}
		_ = in.o.Publisher.Publish(ctx, unknown)
		_ = msg.Term()
	case err != nil:
		in.log.Warn().Err(err).Str("campaign", id).Str("subject", msg.Subject()).Msg("intake: command failed; will be redelivered")
		_ = msg.NakWithDelay(2 * time.Second)
	default:
		// The service publishes the change; an unchanged state is published
		// here so the sender hears back (through the service's queue: after
		// the campaign's events queued before).
		_ = in.o.Status.Publish(ctx, st)
		_ = msg.Ack()
	}
}
