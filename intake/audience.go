package intake

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/natsconn"
	"github.com/campaignd/campaignd/internal/optcheck"
)

// AudienceBucket is where campaignctl uploads audiences.
const AudienceBucket = "audiences"

// UploadAudience stores an audience file (ids one per line) as bucket/object.
func UploadAudience(ctx context.Context, js jetstream.JetStream, bucket, object string, r io.Reader) error {
	os, err := js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		os, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: bucket, Storage: jetstream.FileStorage})
	}
	if err != nil {
		return fmt.Errorf("intake: object store %s: %w", bucket, err)
	}
	if _, err := os.Put(ctx, jetstream.ObjectMeta{Name: object}, r); err != nil {
		return fmt.Errorf("intake: upload %s/%s: %w", bucket, object, err)
	}
	return nil
}

// AudienceStore reads audiences from the JetStream object store.
type AudienceStore struct {
	js jetstream.JetStream
	o  AudienceOptions
}

// AudienceOptions tune an AudienceStore.
type AudienceOptions struct {
	// CallTimeout bounds each JetStream call that opens an audience (its
	// info, its reader's consumer); default DefaultCallTimeout. Without
	// it, a call that a NATS 2.9 cluster never answers after losing a
	// node would hold a plan forever.
	CallTimeout time.Duration
	// ChunkWait is how long a read waits for the next chunk before it
	// fails (the plan is then retried); default 30 s.
	ChunkWait time.Duration
	// Denials, when set, fails a call at once when NATS refuses one of
	// the bucket's subjects (campaignd's permissions do not cover it),
	// with campaigns.ErrAudienceDenied; without it that call times out.
	Denials *natsconn.Denials
}

// WithDefaults returns a copy with every unset field at its default.
func (o AudienceOptions) WithDefaults() AudienceOptions {
	o.CallTimeout = cmp.Or(o.CallTimeout, DefaultCallTimeout)
	o.ChunkWait = cmp.Or(o.ChunkWait, 30*time.Second)
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o AudienceOptions) validate() error {
	c := optcheck.New("intake: AudienceOptions")
	c.Positive(o, "CallTimeout", "ChunkWait")
	return c.Err()
}

// NewAudienceStore returns an AudienceStore. Options out of range are a
// caller's bug: it panics on them, naming the field.
func NewAudienceStore(js jetstream.JetStream, o AudienceOptions) *AudienceStore {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		panic(err)
	}
	return &AudienceStore{js: js, o: o}
}

// chunksAhead is how many of an object's chunks (128 KiB each as
// jetstream puts them) a reader has on its way at once. The object store's
// own Get reads through a push consumer that the server keeps up to 32 MiB
// ahead of a slow reader (its flow-control window), all of it in the
// client's heap; an audience is read while its ids are planned, so it is
// read through a pull consumer instead, at most this much ahead.
const chunksAhead = 8

// watch is ctx failing at once, with a *natsconn.DeniedError as its
// cause, when NATS refuses a subject of bucket.
func (a *AudienceStore) watch(ctx context.Context, bucket string) (context.Context, func()) {
	stream, objects := ".OBJ_"+bucket, "$O."+bucket+"."
	return a.o.Denials.Watch(ctx, func(subject string) bool {
		return strings.HasSuffix(subject, stream) || strings.Contains(subject, stream+".") || strings.HasPrefix(subject, objects)
	})
}

// denied is the refusal that failed a call in ctx (see watch), or nil.
func denied(ctx context.Context, bucket, object string) error {
	if de := natsconn.Cause(ctx); de != nil {
		return fmt.Errorf("intake: audience bucket %q (object %q): %w: %w", bucket, object, de, campaigns.ErrAudienceDenied)
	}
	return nil
}

func (a *AudienceStore) info(ctx context.Context, bucket, object string) (*jetstream.ObjectInfo, jetstream.ObjectStore, error) {
	ctx, stop := a.watch(ctx, bucket)
	defer stop()
	os, err := call(ctx, a.o.CallTimeout, func(ctx context.Context) (jetstream.ObjectStore, error) { return a.js.ObjectStore(ctx, bucket) })
	if d := denied(ctx, bucket, object); d != nil {
		return nil, nil, d
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil, fmt.Errorf("intake: audience bucket %q (object %q) does not exist: %w", bucket, object, campaigns.ErrAudienceNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("intake: object store %s: %w", bucket, err)
	}
	info, err := call(ctx, a.o.CallTimeout, func(ctx context.Context) (*jetstream.ObjectInfo, error) { return os.GetInfo(ctx, object) })
	if d := denied(ctx, bucket, object); d != nil {
		return nil, nil, d
	}
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil, fmt.Errorf("intake: audience object %q does not exist in bucket %q: %w", object, bucket, campaigns.ErrAudienceNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("intake: audience %s/%s: %w", bucket, object, err)
	}
	return info, os, nil
}

// Stat is an audience object's size and digest, without reading it.
func (a *AudienceStore) Stat(ctx context.Context, bucket, object string) (int64, string, error) {
	info, _, err := a.info(ctx, bucket, object)
	if err != nil {
		return 0, "", err
	}
	return int64(info.Size), info.Digest, nil
}

// Open implements worker.AudienceSource: the object's bytes, at most
// chunksAhead chunks read ahead, its size and digest checked at the end.
func (a *AudienceStore) Open(ctx context.Context, bucket, object string) (io.ReadCloser, error) {
	info, os, err := a.info(ctx, bucket, object)
	if err != nil {
		return nil, err
	}
	if info.Opts != nil && info.Opts.Link != nil { // a link: the library follows it
		r, err := os.Get(ctx, object)
		if err != nil {
			return nil, fmt.Errorf("intake: audience %s/%s: %w", bucket, object, err)
		}
		return linkReader{r}, nil
	}
	r := &chunkReader{info: info, sum: sha256.New(), name: bucket + "/" + object, wait: a.o.ChunkWait}
	if info.Chunks == 0 {
		return r, nil
	}
	wctx, stop := a.watch(ctx, bucket)
	defer stop()
	cons, err := call(wctx, a.o.CallTimeout, func(ctx context.Context) (jetstream.Consumer, error) {
		return a.js.OrderedConsumer(ctx, "OBJ_"+bucket, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{"$O." + bucket + ".C." + info.NUID},
		})
	})
	if d := denied(wctx, bucket, object); d != nil {
		return nil, d
	}
	if err != nil {
		return nil, fmt.Errorf("intake: audience %s/%s: %w", bucket, object, err)
	}
	if r.it, err = cons.Messages(jetstream.PullMaxMessages(chunksAhead)); err != nil {
		return nil, fmt.Errorf("intake: audience %s/%s: %w", bucket, object, err)
	}
	return r, nil
}

// chunkReader reads an object's chunks in order from an ordered pull
// consumer.
type chunkReader struct {
	info   *jetstream.ObjectInfo
	name   string
	wait   time.Duration // for each chunk
	it     jetstream.MessagesContext
	cur    []byte
	chunks uint32
	bytes  uint64
	sum    hash.Hash
	err    error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.chunks == r.info.Chunks {
			r.err = r.verify()
			continue
		}
		msg, err := r.it.Next(jetstream.NextMaxWait(r.wait))
		if err != nil {
			r.err = fmt.Errorf("intake: audience %s: chunk %d of %d: %w", r.name, r.chunks+1, r.info.Chunks, err)
			continue
		}
		r.cur = msg.Data()
		r.chunks++
		r.bytes += uint64(len(r.cur))
		r.sum.Write(r.cur)
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// verify ends the object: its size and digest must be the info's.
func (r *chunkReader) verify() error {
	if r.bytes != r.info.Size {
		return fmt.Errorf("intake: audience %s: %d bytes read, the object has %d", r.name, r.bytes, r.info.Size)
	}
	if got := jetstream.GetObjectDigestValue(r.sum); got != r.info.Digest {
		return fmt.Errorf("intake: audience %s: digest mismatch (%s, the object says %s)", r.name, got, r.info.Digest)
	}
	return io.EOF
}

func (r *chunkReader) Close() error {
	if r.it != nil {
		r.it.Stop()
	}
	return nil
}

// Size is the audience object's size in bytes.
func (r *chunkReader) Size() int64 { return int64(r.info.Size) }

// Digest is the audience object's digest: the planner checks that the
// object does not change between its passes.
func (r *chunkReader) Digest() string { return r.info.Digest }

// linkReader is an object read through the library (a link).
type linkReader struct{ jetstream.ObjectResult }

func (a linkReader) Digest() string {
	if info, err := a.Info(); err == nil && info != nil {
		return info.Digest
	}
	return ""
}

func (a linkReader) Size() int64 {
	if info, err := a.Info(); err == nil && info != nil {
		return int64(info.Size)
	}
	return 0
}
