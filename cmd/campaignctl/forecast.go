package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/worker"
)

// countMemory is the memory of the local count of an audience file (the
// planner's default).
const countMemory = 64 << 20

// forecastAnswer is campaignd's answer to a forecast: a campaigns.Forecast,
// or {"status": "error", "error": "…"} when it could not answer.
type forecastAnswer struct {
	campaigns.Forecast
	Error string `json:"error"`
}

// forecast asks campaignd, on campaigns.forecast, when the campaign of -f
// would start and end, what it would spend and what goes before it, and
// prints the answer for people (or, with --json, as it came). Nothing is
// stored or uploaded: an --audience file is counted here and its count
// sent along.
func (c *cli) forecast(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("forecast", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	file := fs.String("f", "", "campaign JSON file (- for stdin)")
	audience := fs.String("audience", "", "file of target ids, one per line, counted here (not uploaded)")
	asJSON := fs.Bool("json", false, "print campaignd's answer as JSON instead of the summary")
	if code, done, err := c.parseFlags(fs, helps["forecast"]+"\n\nflags:\n", args); done {
		return code, err
	}
	if *file == "" {
		return exitOther, errors.New("forecast needs -f campaign.json")
	}
	data, err := readCampaign(*file)
	if err != nil {
		return exitOther, err
	}
	var aud *os.File
	if *audience != "" {
		if aud, err = openAudience(*audience); err != nil {
			return exitOther, err
		}
		defer aud.Close()
	}

	nc, _, err := c.connect()
	if err != nil {
		return exitOther, err
	}
	defer nc.Close()

	msg := &nats.Msg{Subject: intake.SubjectForecast, Header: nats.Header{}}
	if aud != nil {
		// A campaign without a valid id is left as it is: campaignd
		// rejects it as intake would, whatever its audience.
		if _, errs := campaigns.PeekID(data); len(errs) == 0 {
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				return exitOther, fmt.Errorf("campaign is not a JSON object: %w", err)
			}
			id, _ := m["id"].(string)
			// Read as a plan reads it (by id and zone for local time);
			// campaignd names the campaign's problems, if any.
			camp, _ := campaigns.Decode(data)
			if camp == nil {
				camp = &campaigns.Campaign{}
			}
			stats, err := worker.CountAudience(ctx, camp, reopen(*audience), fileSize(aud), countMemory)
			if err != nil {
				if ctx.Err() != nil {
					return exitOther, fmt.Errorf("audience count stopped: %w", ctx.Err())
				}
				return exitOther, fmt.Errorf("audience %s: %w", *audience, err)
			}
			fmt.Fprintf(c.errw, "counted %s: %s from %s; %s and %s left out\n", *audience,
				plural(stats.Unique, "distinct id"), plural(stats.Lines, "line"),
				plural(stats.Duplicates, "duplicate"), plural(stats.Skipped, "invalid line"))
			// As submit names it, without uploading it: a forecast
			// stores nothing, campaignd takes the count made here.
			delete(m, "targets")
			m["audience"] = map[string]string{"bucket": "audiences", "object": id}
			data, _ = json.Marshal(m)
			msg.Header.Set(intake.HeaderAudienceTargets, strconv.FormatInt(stats.Unique, 10))
			if stats.Zones != nil { // local time: the targets of each zone
				zones, _ := json.Marshal(stats.Zones)
				msg.Header.Set(intake.HeaderAudienceZones, string(zones))
			}
		}
	}
	msg.Data = data

	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	reply, err := nc.RequestMsgWithContext(rctx, msg)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return exitOther, ctx.Err()
	case errors.Is(err, nats.ErrNoResponders):
		return exitOther, fmt.Errorf("nobody answers on %s: is campaignd (a version with forecasts) running?", intake.SubjectForecast)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return exitOther, fmt.Errorf("no answer from campaignd within %s (is it running?)", c.timeout)
	default:
		return exitOther, fmt.Errorf("forecast request: %w", err)
	}

	var ans forecastAnswer
	if err := json.Unmarshal(reply.Data, &ans); err != nil {
		return exitOther, fmt.Errorf("forecast answer is not JSON: %w", err)
	}
	if *asJSON {
		var out bytes.Buffer
		if err := json.Indent(&out, reply.Data, "", "  "); err != nil {
			return exitOther, fmt.Errorf("forecast answer: %w", err)
		}
		fmt.Fprintln(c.out, out.String())
	}
	switch ans.Status {
	case campaigns.ForecastOK:
		if !*asJSON {
			printForecast(c.out, ans.Forecast, c.clk.Now())
		}
		return exitOK, nil
	case string(campaigns.StateRejected):
		if !*asJSON {
			// As submit prints a rejection: the JSON on stdout; and the
			// errors for people on stderr.
			printJSON(c.out, ans.Forecast)
			who := "the campaign"
			if ans.ID != "" {
				who = ans.ID
			}
			fmt.Fprintf(c.errw, "campaignctl: campaignd would reject %s:\n", who)
			for _, e := range ans.Errors {
				fmt.Fprintf(c.errw, "  error: %s: %s\n", e.Field, e.Message)
			}
		}
		return exitRejected, nil
	case "error":
		return exitOther, fmt.Errorf("campaignd could not forecast: %s", strings.TrimPrefix(ans.Error, "forecast: "))
	default:
		return exitOther, fmt.Errorf("unexpected forecast answer (status %q): %s", ans.Status, bytes.TrimSpace(reply.Data))
	}
}

// readCampaign reads the campaign JSON of -f for submit and forecast ("-" is
// stdin).
func readCampaign(file string) ([]byte, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, campaigns.MaxMessageBytes+1))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read campaign: %w", err)
	}
	return data, nil
}

// openAudience opens an audience file to count: a regular file, since the
// count reads it more than once.
func openAudience(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audience: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audience: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("audience: %s is not a regular file (the count reads it more than once)", path)
	}
	return f, nil
}

func fileSize(f *os.File) int64 {
	if fi, err := f.Stat(); err == nil {
		return fi.Size()
	}
	return 0
}

// reopen opens path afresh at each call (each pass of the count).
func reopen(path string) func(context.Context) (io.ReadCloser, error) {
	return func(context.Context) (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
}

// printForecast writes a forecast for people: one aligned line per
// subject, those that do not apply left out.
func printForecast(w io.Writer, fc campaigns.Forecast, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(label, text string) { fmt.Fprintf(tw, "%s\t%s\n", label, text) }

	line("campaign", fmt.Sprintf("%s (%s on %s)", fc.ID, fc.Kind, fc.App))
	line("targets", commas(fc.TargetsTotal))
	var total int64
	for _, n := range fc.Calls {
		total += n
	}
	if total == 0 {
		line("calls", "none")
	} else {
		line("calls", groupCounts(fc.Calls, ""))
	}
	switch {
	case fc.StartAt != nil:
		line("starts", stamp(*fc.StartAt)+" ("+until(*fc.StartAt, now)+")")
	case total == 0:
		line("starts", "never: nothing to send")
	case paused(fc.Notes):
		line("starts", "not while it is paused")
	default:
		line("starts", "unknown")
	}
	switch {
	case fc.DoneAt != nil && fc.StartAt != nil && !fc.DoneAt.After(*fc.StartAt):
		line("ends", stamp(*fc.DoneAt)+" (at its start)")
	case fc.DoneAt != nil && fc.StartAt != nil:
		line("ends", stamp(*fc.DoneAt)+" (runs "+duration(fc.DoneAt.Sub(*fc.StartAt))+")")
	case fc.DoneAt != nil:
		line("ends", stamp(*fc.DoneAt))
	case fc.StartAt != nil && fc.Dropped > 0:
		line("ends", "not before expires_at")
	case fc.StartAt != nil:
		line("ends", "unknown")
	}
	if len(fc.Rates) > 0 {
		var parts []string
		for _, g := range slices.Sorted(maps.Keys(fc.Rates)) {
			parts = append(parts, g+" "+strconv.FormatFloat(fc.Rates[g], 'f', -1, 64)+" calls/s")
		}
		line("rate", strings.Join(parts, ", "))
	}
	if fc.Ahead.Campaigns == 0 && len(fc.Ahead.Calls) == 0 {
		line("ahead", "nothing")
	} else {
		s := plural(int64(fc.Ahead.Campaigns), "campaign")
		if len(fc.Ahead.Calls) > 0 {
			s += ", " + groupCounts(fc.Ahead.Calls, "call")
		}
		line("ahead", s)
	}
	if fc.Dropped > 0 {
		line("dropped", commas(fc.Dropped)+" (would miss expires_at)")
	} else {
		line("dropped", "0")
	}
	for i, n := range fc.Notes {
		label := ""
		if i == 0 {
			label = "notes"
		}
		line(label, "- "+n)
	}
	_ = tw.Flush()
}

// groupCounts writes counts per limit group, sorted by group: "push_single
// 20,000", or with unit "call": "push_single 20,000 calls".
func groupCounts(m map[string]int64, unit string) string {
	var parts []string
	for _, g := range slices.Sorted(maps.Keys(m)) {
		if unit == "" {
			parts = append(parts, g+" "+commas(m[g]))
		} else {
			parts = append(parts, g+" "+plural(m[g], unit))
		}
	}
	return strings.Join(parts, ", ")
}

// paused reports whether the notes say the campaign itself is paused.
func paused(notes []string) bool {
	return slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, "paused") })
}

// stamp is t in UTC, to the second: 2026-12-08 01:00:00 UTC.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") + " UTC" }

// until tells when t comes from now: "in 3h12m", or "now" when it is
// here (or, by the clocks' difference, just passed).
func until(t, now time.Time) string {
	d := t.Sub(now)
	if d < 500*time.Millisecond {
		return "now"
	}
	return "in " + duration(d)
}

// duration writes d in hours, minutes and seconds, as people read it:
// 1h2m3s, 2h, 33m54s, 45s; under 10 s to a tenth: 1.5s.
func duration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 10*time.Second {
		return strconv.FormatFloat(d.Round(100*time.Millisecond).Seconds(), 'f', -1, 64) + "s"
	}
	d = d.Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d%time.Hour/time.Minute), int64(d%time.Minute/time.Second)
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 || (h > 0 && s > 0) {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
