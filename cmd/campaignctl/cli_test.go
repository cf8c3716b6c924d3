package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
)

// setup starts NATS with campaignd's streams and a responder playing
// campaignd: it answers each submit with accepted (or rejected for ids
// starting with "bad"), then, once someone watches the campaign
// (campaignctl watch), running and completed: the watcher sees it
// accepted first, then its progress.
func setup(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := intake.EnsureStreams(ctx, js, intake.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	pub := intake.NewPublisher(js, zerolog.Nop())
	// watched tells whether a consumer follows id's status events from the
	// last one on (as campaignctl watch does).
	watched := func(id string) bool {
		s, err := js.Stream(ctx, intake.StreamStatus)
		if err != nil {
			return false
		}
		infos := s.ListConsumers(ctx)
		found := false
		for ci := range infos.Info() {
			subjects := append([]string{ci.Config.FilterSubject}, ci.Config.FilterSubjects...)
			if ci.Config.DeliverPolicy == jetstream.DeliverLastPerSubjectPolicy && slices.Contains(subjects, intake.StatusSubject(id)) {
				found = true
			}
		}
		return found && infos.Err() == nil
	}
	cons, err := js.OrderedConsumer(ctx, intake.StreamCampaigns, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		it, err := cons.Messages()
		if err != nil {
			return
		}
		go func() { <-ctx.Done(); it.Stop() }()
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			var c campaigns.Campaign
			_ = json.Unmarshal(m.Data(), &c)
			if m.Subject() != intake.SubjectSubmit {
				_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateCancelled})
				continue
			}
			if strings.HasPrefix(c.ID, "bad") {
				_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateRejected, Errors: campaigns.FieldErrors{{Field: "kind", Message: "unknown"}}})
				continue
			}
			total := int64(len(c.Targets))
			if c.Audience != nil {
				total = -1 // marks an audience campaign
			}
			_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateAccepted, TargetsTotal: total})
			// The fake campaign runs once watched (or when the test ends).
			testenv.Eventually(time.Minute, func() bool { return ctx.Err() != nil || watched(c.ID) })
			_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateRunning, TargetsTotal: 2, Sent: 1})
			_ = pub.Publish(ctx, campaigns.Status{ID: c.ID, Status: campaigns.StateCompleted, TargetsTotal: 2, Sent: 2})
		}
	}()
	return n.URL, js
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errw bytes.Buffer
	code := run(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSubmitWatchAndCancel(t *testing.T) {
	t.Parallel()
	url, js := setup(t)
	f := writeFile(t, "c.json", `{"id":"c1","kind":"batch_push","push_message":{"t":1},"targets":["a","b"]}`)
	code, out, errs := runCLI(t, "-nats", url, "-timeout", "10s", "submit", "-f", f)
	if code != 0 || !strings.Contains(out, `"status": "accepted"`) {
		t.Fatalf("submit: %d %s %s", code, out, errs)
	}
	code, out, errs = runCLI(t, "-nats", url, "watch", "c1")
	if code != 0 || !strings.Contains(out, `"status": "completed"`) || !strings.Contains(errs, "100.0%") {
		t.Fatalf("watch: %d %s %s", code, out, errs)
	}
	code, out, _ = runCLI(t, "-nats", url, "-timeout", "10s", "cancel", "c1")
	if code != 0 || !strings.Contains(out, `"cancelled"`) {
		t.Fatalf("cancel: %d %s", code, out)
	}
	// The message carried Nats-Msg-Id = id and a digest of the content.
	s, _ := js.Stream(context.Background(), intake.StreamCampaigns)
	m, err := s.GetLastMsgForSubject(context.Background(), intake.SubjectSubmit)
	if err != nil || !regexp.MustCompile(`^c1:[0-9a-f]{16}$`).MatchString(m.Header.Get("Nats-Msg-Id")) {
		t.Fatalf("Nats-Msg-Id: %v %v", m, err)
	}
}

func TestSubmitRejectedAndBadFiles(t *testing.T) {
	t.Parallel()
	url, _ := setup(t)
	f := writeFile(t, "bad.json", `{"id":"bad1","kind":"fax"}`)
	if code, out, _ := runCLI(t, "-nats", url, "-timeout", "10s", "submit", "-f", f); code != 1 || !strings.Contains(out, "rejected") {
		t.Fatalf("rejected: %d %s", code, out)
	}
	f2 := writeFile(t, "noid.json", `{"kind":"batch_push"}`)
	if code, out, _ := runCLI(t, "-nats", url, "submit", "-f", f2); code != 1 || !strings.Contains(out, `"field": "id"`) {
		t.Fatalf("no id: %d %s", code, out)
	}
	if code, _, _ := runCLI(t, "-nats", url, "submit"); code != 2 {
		t.Fatalf("missing -f: %d", code)
	}
	if code, _, _ := runCLI(t, "status", "not valid!"); code != 2 {
		t.Fatalf("bad id: %d", code)
	}
}

func TestSubmitWithAudience(t *testing.T) {
	t.Parallel()
	url, js := setup(t)
	f := writeFile(t, "c.json", `{"id":"aud1","kind":"batch_push","push_message":{"t":1},"targets":["ignored"]}`)
	a := writeFile(t, "users.txt", "u1\nu2\nu3\n")
	code, out, errs := runCLI(t, "-nats", url, "-timeout", "10s", "submit", "-f", f, "--audience", a, "--no-wait")
	if code != 0 || !strings.Contains(out, `"targets_total": -1`) {
		t.Fatalf("submit: %d %s %s", code, out, errs)
	}
	// stderr is no terminal: no bar, one summary line.
	if !regexp.MustCompile(`^uploaded 9 B, 3 lines in \S+\n$`).MatchString(errs) {
		t.Errorf("stderr %q, want the upload's summary line alone", errs)
	}
	obs, err := js.ObjectStore(context.Background(), "audiences")
	if err != nil {
		t.Fatal(err)
	}
	b, err := obs.GetBytes(context.Background(), "aud1")
	if err != nil || string(b) != "u1\nu2\nu3\n" {
		t.Fatalf("audience object: %q %v", b, err)
	}
}

// -timeout bounds campaignd's answer, not the audience upload: with a
// timeout too short for any answer the whole file is still stored.
func TestAudienceUploadOutlivesTimeout(t *testing.T) {
	t.Parallel()
	url, js := setup(t)
	var aud strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&aud, "user%05d\n", i)
	}
	a := writeFile(t, "users.txt", aud.String())
	f := writeFile(t, "c.json", `{"id":"aud-big","kind":"batch_push","push_message":{"t":1}}`)
	code, _, errs := runCLI(t, "-nats", url, "-timeout", "1ns", "submit", "-f", f, "--audience", a)
	if code != 2 || !strings.HasPrefix(errs, "uploaded 50.0 kB, 5,000 lines in ") {
		t.Fatalf("exit %d, stderr %q: want the upload done, then no answer in time", code, errs)
	}
	obs, err := js.ObjectStore(context.Background(), "audiences")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := obs.GetBytes(context.Background(), "aud-big"); err != nil || string(b) != aud.String() {
		t.Fatalf("audience object: %d bytes of %d, %v", len(b), aud.Len(), err)
	}
}

// On a terminal the bar is redrawn with "\r" as the file is read, at most
// every redrawEvery, and ends replaced by the summary line.
func TestUploadProgressOnTerminal(t *testing.T) {
	t.Parallel()
	var w bytes.Buffer
	clock := time.Unix(0, 0)
	now := func() time.Time { return clock }
	data := strings.Repeat("user00001\n", 200_000) // 2 MB
	p := newProgress(&w, true, int64(len(data)), now)
	r := p.reader(strings.NewReader(data))
	buf := make([]byte, 128<<10)
	for {
		clock = clock.Add(25 * time.Millisecond) // 4 reads per redraw
		if _, err := r.Read(buf); err != nil {
			break
		}
	}
	clock = clock.Add(time.Second)
	p.done()
	out := w.String()
	draws := strings.Split(out, "\r")[1:]
	if len(draws) < 3 {
		t.Fatalf("%d draws: %q", len(draws), out)
	}
	if !strings.HasPrefix(draws[0], "uploading [..............................]   0.0% 0.0 / 2.0 MB  0.0 MB/s  0 lines") {
		t.Errorf("first draw %q", draws[0])
	}
	if d := draws[2]; !regexp.MustCompile(`^uploading \[#+\.+\] +[0-9.]+% [0-9.]+ / 2\.0 MB  [0-9.]+ MB/s  [0-9,]+ lines$`).MatchString(strings.TrimRight(d, " ")) {
		t.Errorf("a draw %q", d)
	}
	last := draws[len(draws)-1]
	if !regexp.MustCompile(`^uploaded 2\.0 MB, 200,000 lines in \S+ *\n$`).MatchString(last) {
		t.Errorf("last draw %q", last)
	}
	// 2 MB in 128 KiB reads at 25 ms each: ~16 reads, a redraw every 4th.
	if len(draws) > 8 {
		t.Errorf("%d draws for 16 reads: more than one per %s", len(draws), redrawEvery)
	}
}

func TestPlanReport(t *testing.T) {
	t.Parallel()
	st := campaigns.Status{TargetsTotal: 9_000_000, Duplicates: 1_000_000}
	if got, want := planReport(st, 10_000_000), "planned: 9,000,000 distinct ids from 10,000,000 lines; 1,000,000 duplicates and 0 invalid lines left out"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	st = campaigns.Status{TargetsTotal: 1, Duplicates: 1, Invalid: 1}
	if got, want := planReport(st, 5), "planned: 1 distinct id from 5 lines; 1 duplicate and 1 invalid line left out (2 blank lines skipped)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestStatusOverHTTP(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			w.WriteHeader(401)
			return
		}
		switch r.URL.Path {
		case "/api/campaigns/known":
			fmt.Fprint(w, `{"id":"known","status":"running","throttled":[{"group":"push_single","rate":6.8,"limit":10,"refused_last_minute":4,"note":"push_single at 6.8/s of 10: the provider refused 4 calls in the last minute"}]}`)
			return
		case "/api/campaigns/test-5":
			fmt.Fprint(w, `{"id":"test-5","kind":"single_push","status":"partially_failed","targets_total":5,"sent":4,"failed":1}`)
			return
		case "/api/campaigns/test-5/failures":
			fmt.Fprintln(w, `{"target":"invalid-s3","reason":"FAIL: appUser not exists"}`)
			return
		}
		w.WriteHeader(404)
	}))
	defer srv.Close()
	if code, out, errs := runCLI(t, "-api", srv.URL, "-password", "pw", "status", "known"); code != 0 || !strings.Contains(out, "running") ||
		!strings.Contains(errs, "below the app's limit: push_single at 6.8/s of 10: the provider refused 4 calls in the last minute") {
		t.Fatalf("status: %d %s\n%s", code, out, errs)
	}
	code, out, errs := runCLI(t, "-api", srv.URL, "-password", "pw", "status", "test-5")
	if code != 0 || !strings.Contains(out, `"partially_failed"`) ||
		!strings.Contains(errs, "4 of 5 targets sent, 1 failed") ||
		!regexp.MustCompile(`invalid-s3 +FAIL: appUser not exists`).MatchString(errs) || !strings.Contains(errs, "every other target was sent") {
		t.Fatalf("per-target outcome: %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "-api", srv.URL, "-password", "pw", "status", "unknown"); code != 1 || !strings.Contains(errs, "unknown campaign") {
		t.Fatalf("unknown: %d %s", code, errs)
	}
}

// listServer serves GET /api/campaigns from five canned campaigns, at
// most two a page (whatever limit asks: a server may answer fewer), the
// cursor being the index of the next one; status filters. It records each
// request's query.
func listServer(t *testing.T) (*httptest.Server, *[]url.Values) {
	t.Helper()
	start := time.Date(2026, 12, 1, 1, 0, 3, 0, time.UTC)
	all := []string{
		`{"id":"spring-sale-2026","kind":"batch_push","status":"running","at":"2026-12-01T01:00:03Z","start_at":"` + start.Format(time.RFC3339) + `","targets_total":250000,"batches_total":2500,"batches_done":1200,"sent":119950,"failed":50,"provider_task_ids":[]}`,
		`{"id":"weekly-digest","kind":"broadcast","status":"completed","at":"2026-11-30T09:00:00Z","start_at":"2026-11-30T09:00:00Z","targets_total":0,"batches_total":0,"batches_done":0,"sent":0,"failed":0,"provider_task_ids":["task-1"]}`,
		`{"id":"vip","kind":"single_push","status":"partially_failed","at":"2026-11-29T08:00:00Z","start_at":"2026-11-29T08:00:00Z","targets_total":3,"batches_total":3,"batches_done":3,"sent":2,"failed":1,"provider_task_ids":[]}`,
		`{"id":"labels-x","kind":"label_members","status":"running","at":"2026-11-28T08:00:00Z","targets_total":2000,"batches_total":20,"batches_done":5,"sent":500,"failed":0,"provider_task_ids":[]}`,
		`{"id":"old","kind":"template","status":"completed","at":"2026-11-27T08:00:00Z","start_at":"2026-11-27T08:00:00Z","targets_total":0,"batches_total":1,"batches_done":1,"sent":0,"failed":0,"provider_task_ids":[]}`,
	}
	var queries []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"authentication required"}`)
			return
		}
		if r.URL.Path != "/api/campaigns" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		q := r.URL.Query()
		queries = append(queries, q)
		limit, err := strconv.Atoi(q.Get("limit"))
		if err != nil || limit < 1 || limit > 500 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"limit: must be 1..500"}`)
			return
		}
		if s := q.Get("status"); s != "" && s != "running" && s != "completed" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"status: must be one of accepted, scheduled, running, paused, completed, partially_failed, failed, expired, cancelled"}`)
			return
		}
		var sel []string
		for _, c := range all {
			if s := q.Get("status"); s == "" || strings.Contains(c, `"status":"`+s+`"`) {
				sel = append(sel, c)
			}
		}
		from, _ := strconv.Atoi(q.Get("cursor"))
		to := min(from+min(limit, 2), len(sel))
		fmt.Fprintf(w, `{"campaigns":[%s]`, strings.Join(sel[from:to], ","))
		if to < len(sel) {
			fmt.Fprintf(w, `,"next":"%d"`, to)
		}
		fmt.Fprint(w, "}")
	}))
	t.Cleanup(srv.Close)
	return srv, &queries
}

func TestListOverHTTP(t *testing.T) {
	t.Parallel()
	tableRE := regexp.MustCompile(`^ID +KIND +STATE +PROGRESS +SENT +FAILED +STARTED \(UTC\)\n`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantIDs  []string     // the table's rows (or the JSON's campaigns)
		wantReqs []url.Values // limit, status and cursor of each request
		wantOut  []string     // substrings of stdout
		wantErr  string       // substring of stderr
	}{
		{name: "default: pages until done", args: []string{"list"}, wantIDs: []string{"spring-sale-2026", "weekly-digest", "vip", "labels-x", "old"},
			wantReqs: []url.Values{{"limit": {"50"}}, {"limit": {"48"}, "cursor": {"2"}}, {"limit": {"46"}, "cursor": {"4"}}},
			wantOut: []string{
				"spring-sale-2026  batch_push     running           48%       119950  50      2026-12-01 01:00:03\n",
				"weekly-digest     broadcast      completed         100%      0       0       2026-11-30 09:00:00\n",
				"vip               single_push    partially_failed  100%      2       1       2026-11-29 08:00:00\n",
				"labels-x          label_members  running           25%       500     0       -\n",
			}},
		{name: "limit stops early", args: []string{"list", "--limit", "3"}, wantIDs: []string{"spring-sale-2026", "weekly-digest", "vip"},
			wantReqs: []url.Values{{"limit": {"3"}}, {"limit": {"1"}, "cursor": {"2"}}},
			wantErr:  "(the newest 3 shown; more with --limit 53, or --json and --cursor)"},
		{name: "status", args: []string{"list", "--status", "running"}, wantIDs: []string{"spring-sale-2026", "labels-x"},
			wantReqs: []url.Values{{"limit": {"50"}, "status": {"running"}}}},
		{name: "json with next", args: []string{"list", "--json", "--limit", "1", "--cursor", "1"}, wantIDs: []string{"weekly-digest"},
			wantReqs: []url.Values{{"limit": {"1"}, "cursor": {"1"}}}, wantOut: []string{`"next": "2"`, `"provider_task_ids": [`}},
		{name: "big limit asks 500 at most", args: []string{"list", "--limit", "900", "--status", "completed"}, wantIDs: []string{"weekly-digest", "old"},
			wantReqs: []url.Values{{"limit": {"500"}, "status": {"completed"}}}},
		{name: "bad status: the API's reason", args: []string{"list", "--status", "sleeping"}, wantCode: 2,
			wantErr: "campaignctl: list: status: must be one of accepted, scheduled"},
		{name: "bad limit", args: []string{"list", "--limit", "0"}, wantCode: 2, wantErr: "--limit must be at least 1"},
		{name: "stray argument", args: []string{"list", "running"}, wantCode: 2, wantErr: `unexpected "running"`},
		{name: "help", args: []string{"list", "-h"}, wantErr: "campaignctl list --status running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, reqs := listServer(t)
			code, out, errs := runCLI(t, append([]string{"-api", srv.URL, "-password", "pw"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errs)
			}
			if tt.wantErr != "" && !strings.Contains(errs, tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errs, tt.wantErr)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if tt.wantReqs != nil && !reflect.DeepEqual(*reqs, tt.wantReqs) {
				t.Errorf("requests %v, want %v", *reqs, tt.wantReqs)
			}
			if tt.wantIDs == nil {
				return
			}
			var got []string
			if slices.Contains(tt.args, "--json") {
				var l listing
				if err := json.Unmarshal([]byte(out), &l); err != nil {
					t.Fatalf("--json output: %v\n%s", err, out)
				}
				for _, st := range l.Campaigns {
					got = append(got, st.ID)
				}
			} else {
				if !tableRE.MatchString(out) {
					t.Fatalf("no table header:\n%s", out)
				}
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				// Aligned: every column starts where its header does.
				for _, col := range []string{"KIND", "STATE", "PROGRESS", "SENT", "FAILED", "STARTED"} {
					at := strings.Index(lines[0], col)
					for _, l := range lines[1:] {
						if len(l) <= at || l[at-1] != ' ' || l[at] == ' ' {
							t.Errorf("column %s (at %d) not aligned in %q", col, at, l)
						}
					}
				}
				for _, l := range lines[1:] {
					got = append(got, strings.Fields(l)[0])
				}
			}
			if !slices.Equal(got, tt.wantIDs) {
				t.Errorf("listed %v, want %v", got, tt.wantIDs)
			}
		})
	}
	// Without the password: a clear line, exit 2.
	srv, _ := listServer(t)
	if code, _, errs := runCLI(t, "-api", srv.URL, "list"); code != 2 || !strings.Contains(errs, "campaignd wants basic auth") {
		t.Fatalf("no password: %d %s", code, errs)
	}
}

// Every subcommand answers -h with its usage and an example, exit 0,
// without calling campaignd.
func TestEverySubcommandHasHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"submit", "status", "watch", "cancel", "pause", "resume", "list", "schedules", "forecast"} {
		code, out, errOut := runCLI(t, "-api", "http://127.0.0.1:1", "-nats", "nats://127.0.0.1:1", cmd, "-h")
		text := out + errOut
		if code != 0 || !strings.Contains(text, cmd) || !strings.Contains(text, "campaignctl") {
			t.Errorf("%s -h: exit %d\n%s", cmd, code, text)
		}
		if cmd != "submit" && !strings.Contains(text, "example") {
			t.Errorf("%s -h has no example:\n%s", cmd, text)
		}
	}
}
