package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/natsconn"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// Every end-to-end test of this package runs on a NATS with
// configs/nats/campaignd-account.conf (newWorld): campaignd as its user
// "campaignd", the test publishing and reading status as "backend". These
// tests show what those users may not do.

// refused runs do on a connection whose permissions violations Denials
// watches, and returns the subject the server refused (do's own error
// is ignored: a refused request just times out, a refused publish
// returns nil), or "" if none was refused within a few seconds.
func refused(t *testing.T, den *natsconn.Denials, do func(ctx context.Context) error) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wctx, stop := den.Watch(ctx, nil)
	defer stop()
	_ = do(wctx)
	select {
	case <-wctx.Done():
	case <-time.After(2 * time.Second): // a publish is refused asynchronously
	}
	if de := natsconn.Cause(wctx); de != nil {
		return de.Subject
	}
	return ""
}

// connectAs connects as one of the world's users, with its permissions
// violations watched by the returned Denials.
func (w *world) connectAs(t *testing.T, user string) (*nats.Conn, jetstream.JetStream, *natsconn.Denials) {
	t.Helper()
	den := &natsconn.Denials{}
	opts := []nats.Option{nats.UserInfo(user, w.natsPasswords[user]), nats.ErrorHandler(den.Handler(nil))}
	if user == "campaignd" {
		opts = append(opts, nats.CustomInboxPrefix(natsconn.InboxPrefix))
	}
	nc, err := nats.Connect(w.natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, den
}

// A backend team's publisher submits, uploads audiences and reads status
// (as every end-to-end test does), but cannot read, pull from, change or
// delete the intake consumer or the streams, nor forge a status; and
// campaignd itself cannot submit campaigns or delete its streams.
func TestLeastPrivilegeUsers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 50}))
	ctx := context.Background()

	for _, body := range []string{"old\n", "u1\nu2\nu3\n"} { // the second replaces the first (a purge)
		if err := intake.UploadAudience(ctx, w.js, intake.AudienceBucket, "lp.txt", strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	w.publish(t, "campaigns.submit", []byte(`{"id":"lp-1","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"audiences","object":"lp.txt"}}`), "lp-1")
	if st := r.waitFinal(t, "lp-1", 15*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 3 {
		t.Fatalf("as the publisher: %+v", st)
	}
	if st := w.lastStatus(t, "lp-1"); st.Status != campaigns.StateCompleted {
		t.Fatalf("status read as the publisher: %+v", st)
	}

	nc, js, den := w.connectAs(t, "backend")
	backend := []struct {
		name, subject string
		do            func(ctx context.Context) error
	}{
		{"read the intake consumer", "$JS.API.CONSUMER.INFO.CAMPAIGNS.campaignd", func(ctx context.Context) error {
			_, err := js.Consumer(ctx, intake.StreamCampaigns, "campaignd")
			return err
		}},
		{"pull from the intake consumer", "$JS.API.CONSUMER.MSG.NEXT.CAMPAIGNS.campaignd", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.MSG.NEXT.CAMPAIGNS.campaignd", []byte(`{"batch":1}`))
			return err
		}},
		{"acknowledge for the intake", "$JS.ACK.CAMPAIGNS.campaignd.1.1.1.1.0", func(ctx context.Context) error {
			return nc.Publish("$JS.ACK.CAMPAIGNS.campaignd.1.1.1.1.0", []byte("+ACK"))
		}},
		{"delete the intake consumer", "$JS.API.CONSUMER.DELETE.CAMPAIGNS.campaignd", func(ctx context.Context) error {
			return js.DeleteConsumer(ctx, intake.StreamCampaigns, "campaignd")
		}},
		{"a consumer of its own on CAMPAIGNS", "$JS.API.CONSUMER.CREATE.CAMPAIGNS.mine", func(ctx context.Context) error {
			_, err := js.CreateConsumer(ctx, intake.StreamCampaigns, jetstream.ConsumerConfig{Durable: "mine"})
			return err
		}},
		{"change the intake stream", "$JS.API.STREAM.UPDATE.CAMPAIGNS", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.UPDATE.CAMPAIGNS", []byte(`{}`))
			return err
		}},
		{"delete the intake stream", "$JS.API.STREAM.DELETE.CAMPAIGNS", func(ctx context.Context) error {
			return js.DeleteStream(ctx, intake.StreamCampaigns)
		}},
		{"purge the status stream", "$JS.API.STREAM.PURGE.CAMPAIGN_STATUS", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.CAMPAIGN_STATUS", []byte(`{}`))
			return err
		}},
		{"forge a status", "campaigns.status.lp-1", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "campaigns.status.lp-1", []byte(`{"id":"lp-1","status":"failed"}`))
			return err
		}},
		{"delete the audiences bucket", "$JS.API.STREAM.DELETE.OBJ_audiences", func(ctx context.Context) error {
			return js.DeleteObjectStore(ctx, intake.AudienceBucket)
		}},
		{"read what campaignd is sent", "_INBOX.campaignd.>", func(ctx context.Context) error {
			_, err := nc.SubscribeSync("_INBOX.campaignd.>")
			return err
		}},
	}
	for _, c := range backend {
		if got := refused(t, den, c.do); got != c.subject {
			t.Errorf("backend may %s: refused %q, want %q", c.name, got, c.subject)
		}
	}

	_, cjs, cden := w.connectAs(t, "campaignd")
	for _, c := range []struct {
		name, subject string
		do            func(ctx context.Context) error
	}{
		{"submit a campaign", "campaigns.submit", func(ctx context.Context) error {
			_, err := cjs.Publish(ctx, "campaigns.submit", []byte(`{}`))
			return err
		}},
		{"delete its stream", "$JS.API.STREAM.DELETE.CAMPAIGNS", func(ctx context.Context) error {
			return cjs.DeleteStream(ctx, intake.StreamCampaigns)
		}},
		{"delete the intake consumer", "$JS.API.CONSUMER.DELETE.CAMPAIGNS.campaignd", func(ctx context.Context) error {
			return cjs.DeleteConsumer(ctx, intake.StreamCampaigns, "campaignd")
		}},
		{"write an audience", "$O.audiences.C.x", func(ctx context.Context) error {
			_, err := cjs.Publish(ctx, "$O.audiences.C.x", []byte("u9"))
			return err
		}},
	} {
		if got := refused(t, cden, c.do); got != c.subject {
			t.Errorf("campaignd may %s: refused %q, want %q", c.name, got, c.subject)
		}
	}

	// Nothing was touched: the intake still takes campaigns. The
	// publisher listening to every inbox hears its own replies and none
	// of campaignd's (the campaign pulled, the audience read).
	every, err := nc.SubscribeSync("_INBOX.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	w.publish(t, "campaigns.submit", campaignJSON("lp-2", ids("lp2-", 5), ""), "lp-2")
	if st := r.waitFinal(t, "lp-2", 15*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 5 {
		t.Fatalf("after the refusals: %+v", st)
	}
	own, theirs := 0, 0
	for {
		m, err := every.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		if strings.HasPrefix(m.Subject, natsconn.InboxPrefix+".") {
			theirs++
		} else {
			own++
		}
	}
	if own == 0 || theirs != 0 {
		t.Fatalf("the publisher on _INBOX.> heard %d replies of its own (want some) and %d of campaignd's (want none)", own, theirs)
	}
}

// A user missing one line of the permission block stops campaignd at
// start with one line naming the subject, instead of waiting forever for
// an answer the server will never give.
func TestMissingPermissionStopsAtStart(t *testing.T) {
	t.Parallel()
	text, err := os.ReadFile(accountConf(t))
	if err != nil {
		t.Fatal(err)
	}
	const line = `"$JS.API.CONSUMER.CREATE.CAMPAIGNS.campaignd",`
	if !bytes.Contains(text, []byte(line)) {
		t.Fatalf("%s has no line %s", accountConf(t), line)
	}
	conf := filepath.Join(t.TempDir(), "account.conf")
	if err := os.WriteFile(conf, bytes.Replace(text, []byte(line), nil, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	w := &world{redis: testenv.StartRedis(t)}
	w.nats, w.natsPasswords = startAccountNATS(t, conf, nil)
	w.natsURL = w.nats.URL
	w.connect(t, pushsim.Config{})

	var logs syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	d, err := New(ctx, w.config(t, config.Limits{}), Options{Logger: zerolog.New(&logs)})
	if d != nil {
		d.Close()
	}
	const want = `NATS permissions do not allow publish to "$JS.API.CONSUMER.CREATE.CAMPAIGNS.campaignd", as user campaignd`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("start: %v, want an error saying %q", err, want)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("start waited until its deadline: %v", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("stopped after %s: a refused subject stops at once", took)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var line struct{ Message string }
		if json.Unmarshal([]byte(l), &line) == nil && strings.Contains(line.Message, want) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("want one line saying %q, got %d:\n%s", want, n, logs.String())
	}
}

// docs/OPERATIONS.md shows configs/nats/campaignd-account.conf as it is.
func TestOperationsShowsTheAccountConf(t *testing.T) {
	t.Parallel()
	conf, err := os.ReadFile(accountConf(t))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(t), "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, append(append([]byte("```conf\n"), conf...), "```\n"...)) {
		t.Fatal("docs/OPERATIONS.md, \"Least privilege\": the conf block differs from configs/nats/campaignd-account.conf; copy the file into it")
	}
}
