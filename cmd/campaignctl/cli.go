package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/natsconn"
)

// Exit codes.
const (
	exitOK       = 0
	exitRejected = 1
	exitOther    = 2
)

type cli struct {
	natsURL, api, user, password string
	natsAuth                     natsconn.Auth
	timeout                      time.Duration
	out, errw                    io.Writer
	clk                          clock.Clock
	// denials fails the command at once when NATS refuses one of its
	// subjects (the user's permissions lack it), naming the subject.
	denials natsconn.Denials
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{out: stdout, errw: stderr, clk: clock.Real{}}
	fs := flag.NewFlagSet("campaignctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.natsURL, "nats", envOr("CAMPAIGND_NATS_URL", "nats://127.0.0.1:4222"), "NATS URL")
	a := &c.natsAuth
	fs.StringVar(&a.Creds, "nats-creds", os.Getenv("CAMPAIGND_NATS_CREDS"), "NATS credentials file (user JWT and NKey seed)")
	fs.StringVar(&a.NKey, "nats-nkey", os.Getenv("CAMPAIGND_NATS_NKEY"), "NATS NKey seed file")
	fs.StringVar(&a.User, "nats-user", os.Getenv("CAMPAIGND_NATS_USER"), "NATS user")
	fs.StringVar(&a.Password, "nats-password", os.Getenv("CAMPAIGND_NATS_PASSWORD"), "NATS password (prefer the environment variable)")
	fs.StringVar(&a.Token, "nats-token", os.Getenv("CAMPAIGND_NATS_TOKEN"), "NATS token (prefer the environment variable)")
	fs.StringVar(&a.TLS.CA, "nats-ca", os.Getenv("CAMPAIGND_NATS_CA"), "PEM file of the CAs to trust for NATS TLS instead of the system's")
	fs.StringVar(&a.TLS.Cert, "nats-cert", os.Getenv("CAMPAIGND_NATS_CERT"), "NATS TLS client certificate (PEM)")
	fs.StringVar(&a.TLS.Key, "nats-key", os.Getenv("CAMPAIGND_NATS_KEY"), "NATS TLS client key (PEM)")
	fs.StringVar(&c.api, "api", envOr("CAMPAIGND_API", "http://127.0.0.1:8080"), "campaignd HTTP base URL")
	fs.StringVar(&c.user, "user", envOr("CAMPAIGND_UI_USER", "admin"), "basic auth user (when campaignd has one)")
	fs.StringVar(&c.password, "password", os.Getenv("CAMPAIGND_UI_PASSWORD"), "basic auth password")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "how long to wait for campaignd's answer (an audience upload is not bounded by it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: campaignctl [flags] submit -f campaign.json [--audience users.txt [--no-progress] [--no-wait] [--plan-timeout D]] | status ID | watch ID | cancel ID | pause ID | resume ID | list [--status S] [--limit N] [--json] | schedules [--json] | forecast -f campaign.json [--audience users.txt] [--json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitOther
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return exitOther
	}
	if wantsHelp(rest[1:]) && printHelp(stdout, rest[0]) {
		return exitOK
	}
	var err error
	code := exitOK
	ctx, stop := c.denials.Watch(ctx, nil)
	defer stop()
	switch rest[0] {
	case "submit":
		code, err = c.submit(ctx, rest[1:])
	case "status":
		code, err = c.status(ctx, rest[1:])
	case "watch":
		code, err = c.watch(ctx, rest[1:])
	case "cancel", "pause", "resume":
		code, err = c.command(ctx, rest[0], rest[1:])
	case "list":
		code, err = c.list(ctx, rest[1:])
	case "schedules":
		code, err = c.schedules(ctx, rest[1:])
	case "forecast":
		code, err = c.forecast(ctx, rest[1:])
	default:
		fs.Usage()
		return exitOther
	}
	if de := natsconn.Cause(ctx); de != nil {
		err = fmt.Errorf("%w, as %s (a publisher needs the PUBLISHER_PERMISSIONS of configs/nats/campaignd-account.conf)", de, c.natsAuth.Who())
	}
	if err != nil {
		fmt.Fprintf(stderr, "campaignctl: %v\n", err)
		if code == exitOK {
			code = exitOther
		}
	}
	return code
}

func (c *cli) connect() (*nats.Conn, jetstream.JetStream, error) {
	a := c.natsAuth
	a.TLS.Enabled = a.TLS.CA != "" || a.TLS.Cert != "" || a.TLS.Key != ""
	if field, err := a.Check(); err != nil {
		return nil, nil, fmt.Errorf("-nats-%s: %w", strings.ReplaceAll(strings.TrimPrefix(field, "tls."), ".", "-"), err)
	}
	opts, err := a.Options()
	if err != nil {
		return nil, nil, fmt.Errorf("nats: %w", err)
	}
	nc, err := nats.Connect(c.natsURL, append(opts, nats.Name("campaignctl"), nats.Timeout(5*time.Second),
		nats.ErrorHandler(c.denials.Handler(nil)))...)
	if why := a.Permanent(err); why != "" {
		return nil, nil, fmt.Errorf("nats %s: %s", config.RedactURL(c.natsURL), why)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("nats %s: %w", config.RedactURL(c.natsURL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

func oneID(args []string) (string, error) {
	if len(args) != 1 || !campaigns.ValidID(args[0]) {
		return "", errors.New("want one campaign id ([A-Za-z0-9_-]{1,128})")
	}
	return args[0], nil
}

// subscribe creates an ordered consumer on id's status events: the last
// one first (when last is true), then new ones. Creating it before
// publishing means no answer is missed.
func subscribe(ctx context.Context, js jetstream.JetStream, id string, last bool) (jetstream.Consumer, error) {
	policy := jetstream.DeliverNewPolicy
	if last {
		policy = jetstream.DeliverLastPerSubjectPolicy
	}
	cons, err := js.OrderedConsumer(ctx, intake.StreamStatus, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{intake.StatusSubject(id)}, DeliverPolicy: policy,
	})
	if err != nil {
		return nil, fmt.Errorf("status stream: %w", err)
	}
	return cons, nil
}

// lastStatus is the last status event of a campaign id (nil if none).
func lastStatus(ctx context.Context, js jetstream.JetStream, id string) (*campaigns.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, intake.StreamStatus)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status stream: %w", err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, intake.StatusSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("status stream: %w", err)
	}
	var st campaigns.Status
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		return nil, nil
	}
	return &st, nil
}

// campaignExists tells whether campaignd has taken a campaign id: its last
// status event is anything but a rejection (a rejected submission stores
// nothing, so its id may be submitted again).
func campaignExists(ctx context.Context, js jetstream.JetStream, id string) (bool, error) {
	st, err := lastStatus(ctx, js, id)
	return st != nil && st.Status != campaigns.StateRejected, err
}

// msgID is the JetStream message id of a submission: the campaign id and
// its content, so a retried publish is dropped by the stream while a
// corrected campaign under the same id still reaches campaignd.
func msgID(id string, data []byte) string {
	sum := sha256.Sum256(data)
	return id + ":" + hex.EncodeToString(sum[:8])
}

// follow hands status events to fn until it returns true.
func follow(ctx context.Context, cons jetstream.Consumer, fn func(campaigns.Status) bool) error {
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("status stream: %w", err)
	}
	defer it.Stop()
	go func() {
		<-ctx.Done()
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("status stream: %w", err)
		}
		var st campaigns.Status
		if json.Unmarshal(msg.Data(), &st) == nil && fn(st) {
			return nil
		}
	}
}

func printJSON(w io.Writer, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(w, string(b))
}

func (c *cli) submit(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	file := fs.String("f", "", "campaign JSON file (- for stdin)")
	audience := fs.String("audience", "", "file of target ids, one per line, streamed to the NATS object store")
	noProgress := fs.Bool("no-progress", false, "with --audience: show no upload progress on stderr")
	noWait := fs.Bool("no-wait", false, "with --audience: do not wait for campaignd's plan after the answer")
	planTimeout := fs.Duration("plan-timeout", 0, "with --audience: how long to wait for the plan after the answer (default: the -timeout value)")
	if err := fs.Parse(args); err != nil {
		return exitOther, err
	}
	if *file == "" {
		return exitOther, errors.New("submit needs -f campaign.json")
	}
	if *planTimeout <= 0 {
		*planTimeout = c.timeout
	}
	data, err := readCampaign(*file)
	if err != nil {
		return exitOther, err
	}
	given, errs := campaigns.PeekID(data)
	if len(errs) > 0 {
		printJSON(c.out, campaigns.Rejection{Status: campaigns.StateRejected, GivenID: given, Errors: errs})
		return exitRejected, nil
	}
	id := *given
	nc, js, err := c.connect()
	if err != nil {
		return exitOther, err
	}
	defer nc.Close()

	var lines int64
	live := !*noProgress && isTerminal(c.errw)
	if *audience != "" {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return exitOther, fmt.Errorf("campaign is not a JSON object: %w", err)
		}
		// A campaign already taken keeps its audience: uploading again
		// would replace the object it may be planning from (and fail it).
		// Its resubmission is answered duplicate as usual.
		if exists, err := campaignExists(ctx, js, id); err != nil {
			return exitOther, err
		} else if exists {
			fmt.Fprintf(c.errw, "campaignctl: campaign %s exists already; its audience is not uploaded again\n", id)
		} else if lines, err = c.upload(ctx, js, id, *audience, !*noProgress); err != nil {
			// The upload has no deadline of its own (-timeout bounds the
			// answer): the NATS client bounds each chunk's ack, Ctrl-C stops it.
			return exitOther, err
		}
		delete(m, "targets")
		m["audience"] = map[string]string{"bucket": "audiences", "object": id}
		data, _ = json.Marshal(m)
	}

	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Listen before publishing so no answer is missed; the events go on
	// past the answer, to the plan's.
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	events := make(chan campaigns.Status)
	ended := make(chan error, 1)
	cons, err := subscribe(actx, js, id, false)
	if err != nil {
		return exitOther, err
	}
	go func() {
		ended <- follow(fctx, cons, func(st campaigns.Status) bool {
			select {
			case events <- st:
				return false
			case <-fctx.Done():
				return true
			}
		})
	}()
	ack, err := js.Publish(actx, intake.SubjectSubmit, data, jetstream.WithMsgID(msgID(id, data)))
	if err != nil {
		return exitOther, fmt.Errorf("publish: %w", err)
	}
	if ack.Duplicate {
		// The stream dropped it: the same campaign was published a moment
		// ago, and campaignd answered that one. Its answer stands.
		fmt.Fprintf(c.errw, "campaignctl: NATS already holds this submission of %s (same content, within the stream's duplicate window)\n", id)
		st, err := lastStatus(actx, js, id)
		if err != nil {
			return exitOther, err
		}
		if st != nil && st.Status != campaigns.StateRejected {
			dup := *st
			dup.Status, dup.At = campaigns.StateDuplicate, c.clk.Now().UTC()
			printJSON(c.out, dup)
			return exitOK, nil
		}
		if st != nil {
			printJSON(c.out, st)
			return exitRejected, nil
		}
	}
	var answer campaigns.Status
wait:
	for {
		select {
		case st := <-events:
			switch st.Status {
			case campaigns.StateAccepted, campaigns.StateRejected, campaigns.StateDuplicate:
				answer = st
				break wait
			}
		case err := <-ended:
			return exitOther, streamEnded(err)
		case <-actx.Done():
			if ctx.Err() != nil {
				return exitOther, ctx.Err()
			}
			return exitOther, fmt.Errorf("no answer from campaignd within %s (is it running?)", c.timeout)
		}
	}
	printJSON(c.out, answer)
	switch {
	case answer.Status == campaigns.StateRejected:
		return exitRejected, nil
	case *audience == "" || *noWait || answer.Status != campaigns.StateAccepted:
		return exitOK, nil
	}
	return c.waitPlan(ctx, id, events, ended, lines, *planTimeout, live)
}

func streamEnded(err error) error {
	if err == nil {
		return errors.New("status stream closed")
	}
	return err
}

// upload streams the audience file at path to audiences/<id>, showing its
// progress on stderr when show is true, and returns its count of lines.
func (c *cli) upload(ctx context.Context, js jetstream.JetStream, id, path string, show bool) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audience: %w", err)
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	w := c.errw
	if !show {
		w = io.Discard
	}
	p := newProgress(w, show && isTerminal(c.errw), size, c.clk.Now)
	if err := intake.UploadAudience(ctx, js, "audiences", id, p.reader(f)); err != nil {
		p.fail()
		if ctx.Err() != nil {
			return 0, fmt.Errorf("audience upload stopped: %w", ctx.Err())
		}
		return 0, err
	}
	p.done()
	return p.Lines(), nil
}

// waitPlan follows an accepted audience campaign's status events until
// its plan is complete ("planned": every batch stored, totals final), then
// tells on stderr how many distinct ids the lines gave and what was left
// out. It waits at most d; the campaign goes on whatever happens here.
// Exit 1 if the campaign failed before its plan was complete.
func (c *cli) waitPlan(ctx context.Context, id string, events <-chan campaigns.Status, ended <-chan error, lines int64, d time.Duration, live bool) (int, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	line := liner{w: c.errw}
	defer line.end()
	for {
		select {
		case st := <-events:
			switch {
			case st.Planned:
				if live {
					line.draw(planReport(st, lines))
					return exitOK, nil
				}
				fmt.Fprintln(c.errw, planReport(st, lines))
				return exitOK, nil
			case st.Status == campaigns.StateScheduled:
				line.end()
				at := "its start"
				if st.StartAt != nil {
					at = st.StartAt.Format(time.RFC3339)
				}
				fmt.Fprintf(c.errw, "campaignctl: %s is scheduled: its audience is planned at %s (campaignctl status %s)\n", id, at, id)
				return exitOK, nil
			case st.Status.Final():
				line.end()
				fmt.Fprintf(c.errw, "campaignctl: %s ended %s before its plan was complete\n", id, st.Status)
				for _, e := range st.Errors {
					fmt.Fprintf(c.errw, "  error: %s: %s\n", e.Field, e.Message)
				}
				if st.Status == campaigns.StateFailed {
					return exitRejected, nil
				}
				return exitOK, nil
			case live && st.TargetsTotal > 0:
				line.draw(planningLine(st))
			}
		case err := <-ended:
			line.end()
			return exitOther, streamEnded(err)
		case <-timer.C:
			line.end()
			fmt.Fprintf(c.errw, "campaignctl: %s: not planned within %s; it goes on (campaignctl status %s, or --plan-timeout)\n", id, d, id)
			return exitOK, nil
		case <-ctx.Done():
			line.end()
			return exitOther, fmt.Errorf("stopped waiting for the plan of %s (the campaign goes on): %w", id, ctx.Err())
		}
	}
}

func (c *cli) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.api, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if c.password != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	return http.DefaultClient.Do(req)
}

func (c *cli) status(ctx context.Context, args []string) (int, error) {
	id, err := oneID(args)
	if err != nil {
		return exitOther, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.get(ctx, "/api/campaigns/"+id)
	if err != nil {
		return exitOther, fmt.Errorf("status API: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		var out bytes.Buffer
		_ = json.Indent(&out, body, "", "  ")
		fmt.Fprintln(c.out, out.String())
		var st campaigns.Status
		if json.Unmarshal(body, &st) == nil {
			c.outcome(ctx, st)
		}
		return exitOK, nil
	case http.StatusNotFound:
		return exitRejected, fmt.Errorf("unknown campaign %s", id)
	default:
		return exitOther, fmt.Errorf("status API answered %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
}

// maxListedFailures bounds the refused targets status prints for people.
const maxListedFailures = 50

// outcome tells people, on stderr (stdout stays the status JSON), what
// happened to the targets: the counts, the app limits it runs below
// because the provider refuses calls for rate, each refused target with
// the provider's reason, and the campaign's own errors.
func (c *cli) outcome(ctx context.Context, st campaigns.Status) {
	fmt.Fprintf(c.errw, "%s (%s): %s — %d of %d targets sent, %d failed", st.ID, st.Kind, st.Status, st.Sent, st.TargetsTotal, st.Failed)
	if st.Dropped > 0 {
		fmt.Fprintf(c.errw, ", %d dropped (expired)", st.Dropped)
	}
	fmt.Fprintln(c.errw)
	for _, th := range st.Throttled {
		fmt.Fprintf(c.errw, "  below the app's limit: %s\n", th.Note)
	}
	for _, e := range st.Errors {
		fmt.Fprintf(c.errw, "  error: %s: %s\n", e.Field, e.Message)
	}
	if st.Failed == 0 {
		return
	}
	resp, err := c.get(ctx, "/api/campaigns/"+st.ID+"/failures")
	if err != nil {
		fmt.Fprintf(c.errw, "  (failures not read: %v)\n", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(c.errw, "  (failures API answered %d)\n", resp.StatusCode)
		return
	}
	fmt.Fprintln(c.errw, "  refused targets:")
	dec := json.NewDecoder(io.LimitReader(resp.Body, 8<<20))
	n := 0
	for {
		var f campaigns.Failure
		if err := dec.Decode(&f); err != nil {
			break
		}
		if n < maxListedFailures {
			fmt.Fprintf(c.errw, "    %-24s %s\n", f.Target, f.Reason)
		}
		n++
	}
	if n > maxListedFailures {
		fmt.Fprintf(c.errw, "    … and %d more (GET /api/campaigns/%s/failures)\n", n-maxListedFailures, st.ID)
	}
	if st.Sent > 0 {
		fmt.Fprintln(c.errw, "  every other target was sent")
	}
}

func bar(st campaigns.Status, width int) string {
	total := st.TargetsTotal
	done := st.Sent + st.Failed + st.Dropped
	frac := 0.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %5.1f%% %d/%d sent=%d failed=%d batches=%d/%d %s",
		strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, done, total, st.Sent, st.Failed, st.BatchesDone, st.BatchesTotal, st.Status)
}

// connectFor reads the one campaign id of a command's args and connects
// to NATS for it; the caller closes nc.
func (c *cli) connectFor(args []string) (id string, nc *nats.Conn, js jetstream.JetStream, err error) {
	if id, err = oneID(args); err != nil {
		return "", nil, nil, err
	}
	nc, js, err = c.connect()
	return id, nc, js, err
}

func (c *cli) watch(ctx context.Context, args []string) (int, error) {
	id, nc, js, err := c.connectFor(args)
	if err != nil {
		return exitOther, err
	}
	defer nc.Close()
	var final campaigns.Status
	cons, err := subscribe(ctx, js, id, true)
	if err != nil {
		return exitOther, err
	}
	err = follow(ctx, cons, func(st campaigns.Status) bool {
		if st.Status == campaigns.StateDuplicate {
			return false
		}
		fmt.Fprintf(c.errw, "\r%s", bar(st, 30))
		if st.Status.Final() {
			final = st
			return true
		}
		return false
	})
	fmt.Fprintln(c.errw)
	if err != nil {
		return exitOther, err
	}
	printJSON(c.out, final)
	switch final.Status {
	case campaigns.StateCompleted:
		return exitOK, nil
	default:
		return exitRejected, nil
	}
}

func (c *cli) command(ctx context.Context, verb string, args []string) (int, error) {
	id, nc, js, err := c.connectFor(args)
	if err != nil {
		return exitOther, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	answer := make(chan campaigns.Status, 1)
	cons, err := subscribe(ctx, js, id, false)
	if err != nil {
		return exitOther, err
	}
	go func() {
		_ = follow(ctx, cons, func(st campaigns.Status) bool {
			answer <- st
			return true
		})
	}()
	body, _ := json.Marshal(map[string]string{"id": id})
	if _, err := js.Publish(ctx, "campaigns."+verb, body); err != nil {
		return exitOther, fmt.Errorf("publish: %w", err)
	}
	select {
	case st := <-answer:
		printJSON(c.out, st)
		if st.Status == campaigns.StateRejected {
			return exitRejected, nil
		}
		return exitOK, nil
	case <-ctx.Done():
		return exitOther, fmt.Errorf("no answer from campaignd within %s", c.timeout)
	}
}
