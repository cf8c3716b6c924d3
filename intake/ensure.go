package intake

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/optcheck"
)

// campaignd's JetStream objects (the streams, the audiences bucket, the
// intake consumer) are made ready by reading each one's info first and
// then creating it, updating it, or leaving it as it is. Every call has
// its own short deadline (CallTimeout): on a NATS 2.9 cluster two
// processes creating the same R3 stream at once can both wait forever for
// an answer, while a fresh call a moment later is answered at once. So a
// call that times out is given up and the caller tries the whole step
// again (the daemon does, for as long as it is starting); each step is
// safe to repeat and to run from several processes at once.

// DefaultCallTimeout bounds each JetStream management call by default.
const DefaultCallTimeout = 3 * time.Second

// Descriptions shown by `nats stream ls` and `nats consumer ls`.
const (
	descCampaigns = "campaignd intake: campaigns.submit, cancel, pause and resume"
	descStatus    = "campaignd status events (campaigns.status.<id>) and rejections (campaigns.rejected)"
	descAudiences = "campaignd audiences: id lists uploaded by campaignctl, read while a campaign is planned"
	descConsumer  = "campaignd intake: takes campaigns and commands from CAMPAIGNS"
)

// StreamOptions tune EnsureStreams.
type StreamOptions struct {
	Duplicates  time.Duration // dedupe window of CAMPAIGNS (Nats-Msg-Id); default 2h
	StatusAge   time.Duration // how long status events are kept; default 7 days
	Replicas    int           // default 1
	CallTimeout time.Duration // each JetStream call; default DefaultCallTimeout
}

// WithDefaults returns a copy with every unset field at its default.
func (o StreamOptions) WithDefaults() StreamOptions {
	o.Duplicates = cmp.Or(o.Duplicates, 2*time.Hour)
	o.StatusAge = cmp.Or(o.StatusAge, 7*24*time.Hour)
	o.Replicas = cmp.Or(o.Replicas, 1)
	o.CallTimeout = cmp.Or(o.CallTimeout, DefaultCallTimeout)
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o StreamOptions) validate() error {
	c := optcheck.New("intake: StreamOptions")
	c.Positive(o, "Duplicates", "StatusAge")
	c.Check("Replicas", o.Replicas >= 1 && o.Replicas <= 5, o.Replicas)
	c.Check("CallTimeout", o.CallTimeout > 0, o.CallTimeout)
	return c.Err()
}

// StreamConfigs are the streams campaignd keeps, as EnsureStreams makes
// them.
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	o = o.WithDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamCampaigns,
			Description: descCampaigns,
			Subjects:    []string{SubjectSubmit, SubjectCancel, SubjectPause, SubjectResume},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Duplicates:  o.Duplicates,
			MaxAge:      7 * 24 * time.Hour,
			MaxMsgSize:  campaigns.MaxMessageBytes,
			Replicas:    o.Replicas,
		},
		{
			Name:              StreamStatus,
			Description:       descStatus,
			Subjects:          []string{StatusPrefix + ">", SubjectRejected},
			Storage:           jetstream.FileStorage,
			Retention:         jetstream.LimitsPolicy,
			MaxAge:            o.StatusAge,
			MaxMsgsPerSubject: 1000,
			Replicas:          o.Replicas,
		},
	}
}

// EnsureStreams makes both streams ready: each is created when it is
// missing and updated when a setting campaignd owns differs (the others,
// an operator's placement say, are kept). One pass; a timed-out call
// returns its error, and the pass may simply be run again.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		return err
	}
	for _, want := range StreamConfigs(o) {
		if err := ensureStream(ctx, js, want, o.CallTimeout); err != nil {
			return fmt.Errorf("intake: stream %s: %w", want.Name, err)
		}
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, timeout time.Duration) error {
	for range 2 { // a second look when another process created it meanwhile
		s, err := call(ctx, timeout, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, want.Name) })
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = call(ctx, timeout, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateStream(ctx, want) })
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue
			}
			if err != nil {
				return fmt.Errorf("create: %w", err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		next, changed := mergeStream(s.CachedInfo().Config, want)
		if !changed {
			return nil
		}
		if _, err := call(ctx, timeout, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, next) }); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		return nil
	}
	return errors.New("created and gone again while it was being read")
}

// mergeStream is have with the settings campaignd owns taken from want,
// and whether any of them differed. Storage and retention cannot change
// on a stream and are kept as found.
func mergeStream(have, want jetstream.StreamConfig) (jetstream.StreamConfig, bool) {
	next := have
	next.Description = want.Description
	next.Subjects = want.Subjects
	next.Duplicates = want.Duplicates
	next.MaxAge = want.MaxAge
	next.MaxMsgSize = want.MaxMsgSize
	next.MaxMsgsPerSubject = want.MaxMsgsPerSubject
	next.Replicas = want.Replicas
	if want.Duplicates == 0 {
		next.Duplicates = have.Duplicates // the server's default
	}
	if want.MaxMsgSize == 0 {
		next.MaxMsgSize = have.MaxMsgSize
	}
	if want.MaxMsgsPerSubject == 0 {
		next.MaxMsgsPerSubject = have.MaxMsgsPerSubject
	}
	changed := next.Description != have.Description || !sameSet(next.Subjects, have.Subjects) ||
		next.Duplicates != have.Duplicates || next.MaxAge != have.MaxAge || next.MaxMsgSize != have.MaxMsgSize ||
		next.MaxMsgsPerSubject != have.MaxMsgsPerSubject || next.Replicas != have.Replicas
	return next, changed
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// EnsureAudienceBucket makes the audiences bucket ready with replicas
// (default 1): created when missing, updated when its replicas or
// description differ. One pass, each call within timeout (default
// DefaultCallTimeout).
func EnsureAudienceBucket(ctx context.Context, js jetstream.JetStream, replicas int, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultCallTimeout
	}
	cfg := jetstream.ObjectStoreConfig{Bucket: AudienceBucket, Description: descAudiences,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
	for range 2 {
		os, err := call(ctx, timeout, func(ctx context.Context) (jetstream.ObjectStore, error) { return js.ObjectStore(ctx, AudienceBucket) })
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			_, err = call(ctx, timeout, func(ctx context.Context) (jetstream.ObjectStore, error) { return js.CreateObjectStore(ctx, cfg) })
			if errors.Is(err, jetstream.ErrBucketExists) {
				continue
			}
			if err != nil {
				return fmt.Errorf("intake: object store %s: create: %w", AudienceBucket, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("intake: object store %s: info: %w", AudienceBucket, err)
		}
		st, err := call(ctx, timeout, func(ctx context.Context) (jetstream.ObjectStoreStatus, error) { return os.Status(ctx) })
		if err != nil {
			return fmt.Errorf("intake: object store %s: status: %w", AudienceBucket, err)
		}
		if st.Replicas() == cfg.Replicas && st.Description() == cfg.Description {
			return nil
		}
		if _, err := call(ctx, timeout, func(ctx context.Context) (jetstream.ObjectStore, error) { return js.UpdateObjectStore(ctx, cfg) }); err != nil {
			return fmt.Errorf("intake: object store %s: update: %w", AudienceBucket, err)
		}
		return nil
	}
	return fmt.Errorf("intake: object store %s: created and gone again while it was being read", AudienceBucket)
}

// consumerConfig is the intake's durable consumer.
func (in *Intake) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       in.o.Consumer,
		Description:   descConsumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       in.o.AckWait,
		MaxDeliver:    in.o.MaxDeliver,
		MaxAckPending: 1000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// EnsureConsumer makes the intake's durable consumer ready, as
// EnsureStreams does a stream (one pass; each call within
// Options.CallTimeout), and keeps it for Run.
func (in *Intake) EnsureConsumer(ctx context.Context) error {
	want := in.consumerConfig()
	timeout := in.o.CallTimeout
	for range 2 {
		c, err := call(ctx, timeout, func(ctx context.Context) (jetstream.Consumer, error) {
			return in.js.Consumer(ctx, StreamCampaigns, want.Durable)
		})
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			c, err = call(ctx, timeout, func(ctx context.Context) (jetstream.Consumer, error) {
				return in.js.CreateConsumer(ctx, StreamCampaigns, want)
			})
			if errors.Is(err, jetstream.ErrConsumerExists) {
				continue
			}
			if err != nil {
				return fmt.Errorf("intake: consumer %s: create: %w", want.Durable, err)
			}
			in.cons = c
			return nil
		}
		if err != nil {
			return fmt.Errorf("intake: consumer %s: info: %w", want.Durable, err)
		}
		have := c.CachedInfo().Config
		if have.Description != want.Description || have.AckWait != want.AckWait ||
			have.MaxDeliver != want.MaxDeliver || have.MaxAckPending != want.MaxAckPending || len(have.BackOff) > 0 {
			next := have
			next.Description, next.AckWait, next.MaxDeliver, next.MaxAckPending, next.BackOff =
				want.Description, want.AckWait, want.MaxDeliver, want.MaxAckPending, nil
			c, err = call(ctx, timeout, func(ctx context.Context) (jetstream.Consumer, error) {
				return in.js.UpdateConsumer(ctx, StreamCampaigns, next)
			})
			if err != nil {
				return fmt.Errorf("intake: consumer %s: update: %w", want.Durable, err)
			}
		}
		in.cons = c
		return nil
	}
	return fmt.Errorf("intake: consumer %s: created and gone again while it was being read", want.Durable)
}

// call runs f with its own deadline, within ctx.
func call[T any](ctx context.Context, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(cctx)
}
