package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/campaignd/campaignd/campaigns"
)

// maxPage is the most campaigns GET /api/campaigns returns at once.
const maxPage = 500

const listUsage = `usage: campaignctl [flags] list [--status S] [--limit N] [--json] [--cursor C]

Lists the stored campaigns, newest first, as a table: id, kind, state,
progress (targets sent, failed or dropped of the total), sent, failed and
start time (UTC). It reads GET /api/campaigns at -api (CAMPAIGND_API),
with -user / -password (CAMPAIGND_UI_USER / CAMPAIGND_UI_PASSWORD).

examples:
  campaignctl list                         # the newest 50
  campaignctl list --status running        # what is sending now
  campaignctl list --status partially_failed --limit 200
  campaignctl -api http://campaignd:8080 list --json | jq -r '.campaigns[].id'

With --json it prints {"campaigns": [status JSON …], "next": "C"}; "next"
is there when more campaigns follow: pass it to --cursor to go on.

flags:
`

// listing is what list prints with --json (the API's answer, pages joined).
type listing struct {
	Campaigns []campaigns.Status `json:"campaigns"`
	Next      string             `json:"next,omitempty"`
}

// parseFlags parses a subcommand's flags, which take no arguments beside
// them. done is true when the command ends here: -h printed usage (exit
// 0), or the flags were wrong (code and err say how).
func (c *cli) parseFlags(fs *flag.FlagSet, usage string, args []string) (code int, done bool, err error) {
	fs.Usage = func() {
		fmt.Fprint(c.errw, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true, nil
		}
		return exitOther, true, err
	}
	if fs.NArg() > 0 {
		return exitOther, true, fmt.Errorf("%s: unexpected %q (see campaignctl %s -h)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return 0, false, nil
}

func (c *cli) list(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	status := fs.String("status", "", "only campaigns in this state (accepted, scheduled, running, paused, completed, partially_failed, failed, expired, cancelled)")
	limit := fs.Int("limit", 50, "how many campaigns at most")
	asJSON := fs.Bool("json", false, "print JSON for scripts instead of the table")
	cursor := fs.String("cursor", "", "start after this point (a \"next\" printed with --json)")
	if code, done, err := c.parseFlags(fs, listUsage, args); done {
		return code, err
	}
	if *limit < 1 {
		return exitOther, errors.New("list: --limit must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	out := listing{Campaigns: []campaigns.Status{}}
	next := *cursor
	for {
		page, err := c.listPage(ctx, *status, min(*limit-len(out.Campaigns), maxPage), next)
		if err != nil {
			return exitOther, err
		}
		out.Campaigns = append(out.Campaigns, page.Campaigns...)
		next = page.Next
		if next == "" || len(out.Campaigns) >= *limit {
			break
		}
	}
	out.Next = next
	if *asJSON {
		printJSON(c.out, out)
		return exitOK, nil
	}
	if len(out.Campaigns) == 0 {
		if *status != "" {
			fmt.Fprintf(c.errw, "no campaigns in state %s\n", *status)
		} else {
			fmt.Fprintln(c.errw, "no campaigns")
		}
		return exitOK, nil
	}
	printTable(c.out, out.Campaigns)
	if out.Next != "" {
		fmt.Fprintf(c.errw, "(the newest %d shown; more with --limit %d, or --json and --cursor)\n", len(out.Campaigns), *limit+50)
	}
	return exitOK, nil
}

// listPage reads one page of GET /api/campaigns.
func (c *cli) listPage(ctx context.Context, status string, limit int, cursor string) (listing, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", status)
	}
	q.Set("limit", strconv.Itoa(limit))
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	resp, err := c.get(ctx, "/api/campaigns?"+q.Encode())
	if err != nil {
		return listing{}, fmt.Errorf("list API: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	var page listing
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(body, &page); err != nil {
			return listing{}, fmt.Errorf("list API: %w", err)
		}
		return page, nil
	case http.StatusBadRequest:
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return listing{}, fmt.Errorf("list: %s", e.Error)
		}
	case http.StatusUnauthorized:
		return listing{}, errors.New("list: campaignd wants basic auth: give -user and -password (or CAMPAIGND_UI_USER, CAMPAIGND_UI_PASSWORD)")
	case http.StatusNotFound:
		return listing{}, fmt.Errorf("list: %s has no /api/campaigns (a campaignd older than the list?)", c.api)
	}
	return listing{}, fmt.Errorf("list API answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// printTable prints campaigns as aligned columns.
func printTable(w io.Writer, list []campaigns.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATE\tPROGRESS\tSENT\tFAILED\tSTARTED (UTC)")
	for _, st := range list {
		started := "-"
		if st.StartAt != nil {
			started = st.StartAt.UTC().Format("2006-01-02 15:04:05")
		}
		kind := string(st.Kind)
		if kind == "" {
			kind = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d%%\t%d\t%d\t%s\n", st.ID, kind, st.Status, int(st.Progress()*100), st.Sent, st.Failed, started)
	}
	_ = tw.Flush()
}
