package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
)

func audienceJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	return js
}

// TestAudienceStoreReadsObjectsWhole: objects of no, one and many chunks
// read back byte for byte through the pull reader, with their size and
// digest; a missing bucket or object is ErrAudienceNotFound.
func TestAudienceStoreReadsObjectsWhole(t *testing.T) {
	t.Parallel()
	js := audienceJS(t)
	ctx := context.Background()
	var big bytes.Buffer
	for i := 0; big.Len() < 3<<20; i++ { // 24 chunks of 128 KiB, more than chunksAhead
		fmt.Fprintf(&big, "user%08d\n", i)
	}
	objects := map[string][]byte{"empty": nil, "one": []byte("a\nb\n"), "big": big.Bytes()}
	for name, data := range objects {
		if err := UploadAudience(ctx, js, "aud", name, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	a := NewAudienceStore(js, AudienceOptions{})
	for name, data := range objects {
		rc, err := a.Open(ctx, "aud", name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes of %d, %v", name, len(got), len(data), err)
		}
		size, digest, err := a.Stat(ctx, "aud", name)
		r := rc.(interface {
			Size() int64
			Digest() string
		})
		if err != nil || size != int64(len(data)) || r.Size() != size || digest == "" || r.Digest() != digest {
			t.Fatalf("%s: Stat %d %q %v; reader %d %q", name, size, digest, err, r.Size(), r.Digest())
		}
	}
	// Closing in the middle stops the reader.
	rc, err := a.Open(ctx, "aud", "big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	for _, c := range []struct{ bucket, object string }{{"nope", "x"}, {"aud", "nope"}} {
		if _, err := a.Open(ctx, c.bucket, c.object); !errors.Is(err, campaigns.ErrAudienceNotFound) {
			t.Errorf("Open(%s/%s): %v", c.bucket, c.object, err)
		}
		if _, _, err := a.Stat(ctx, c.bucket, c.object); !errors.Is(err, campaigns.ErrAudienceNotFound) {
			t.Errorf("Stat(%s/%s): %v", c.bucket, c.object, err)
		}
	}
}
