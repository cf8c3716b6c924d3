package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"
)

const schedulesUsage = `usage: campaignctl [flags] schedules [--json]

Lists campaignd's recurring campaigns (the schedules of its config) as a
table: name, cron spec, zone, the next fire time (in the schedule's zone),
the campaign its last tick fires (cron-<name>-<tick in UTC>) and that
campaign's state ("not stored" when the tick passed while no campaignd
ran, or the campaign's status expired). It reads GET /api/schedules at
-api (CAMPAIGND_API), with -user / -password (CAMPAIGND_UI_USER /
CAMPAIGND_UI_PASSWORD).

examples:
  campaignctl schedules
  campaignctl -api http://campaignd:8080 schedules --json | jq -r '.schedules[] | "\(.name) \(.next[0])"'
  campaignctl status "$(campaignctl schedules --json | jq -r '.schedules[] | select(.name == "weekly-digest") | .last.id')"

With --json it prints the API's answer: {"schedules": [{"name", "cron",
"timezone", "next": [the next 3 fire times, RFC 3339 in the zone],
"last": {"id", "at", "status"}}]}; "last" is absent when the spec has not
matched in five years, "status" when the campaign is not stored.

flags:
`

// scheduleListing is the answer of GET /api/schedules.
type scheduleListing struct {
	Schedules []scheduleEntry `json:"schedules"`
}

type scheduleEntry struct {
	Name     string      `json:"name"`
	Cron     string      `json:"cron"`
	Timezone string      `json:"timezone"`
	Next     []time.Time `json:"next"`
	Last     *struct {
		ID     string    `json:"id"`
		At     time.Time `json:"at"`
		Status string    `json:"status"`
	} `json:"last"`
}

func (c *cli) schedules(ctx context.Context, args []string) (int, error) {
	fs := flag.NewFlagSet("schedules", flag.ContinueOnError)
	fs.SetOutput(c.errw)
	asJSON := fs.Bool("json", false, "print JSON for scripts instead of the table")
	if code, done, err := c.parseFlags(fs, schedulesUsage, args); done {
		return code, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, list, err := c.readSchedules(ctx)
	if err != nil {
		return exitOther, err
	}
	if *asJSON {
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return exitOther, fmt.Errorf("schedules API: %w", err)
		}
		fmt.Fprintln(c.out, out.String())
		return exitOK, nil
	}
	if len(list.Schedules) == 0 {
		fmt.Fprintln(c.errw, "no schedules (campaignd's config has none)")
		return exitOK, nil
	}
	printSchedules(c.out, list.Schedules)
	return exitOK, nil
}

// readSchedules reads GET /api/schedules: the body as sent, and decoded.
func (c *cli) readSchedules(ctx context.Context) ([]byte, scheduleListing, error) {
	resp, err := c.get(ctx, "/api/schedules")
	if err != nil {
		return nil, scheduleListing{}, fmt.Errorf("schedules API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, scheduleListing{}, fmt.Errorf("schedules API: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var list scheduleListing
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, scheduleListing{}, fmt.Errorf("schedules API: %w", err)
		}
		return body, list, nil
	case http.StatusUnauthorized:
		return nil, scheduleListing{}, errors.New("schedules: campaignd wants basic auth: give -user and -password (or CAMPAIGND_UI_USER, CAMPAIGND_UI_PASSWORD)")
	case http.StatusNotFound:
		return nil, scheduleListing{}, fmt.Errorf("schedules: %s has no /api/schedules (a campaignd older than the schedules API?)", c.api)
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return nil, scheduleListing{}, fmt.Errorf("schedules API answered %d: %s", resp.StatusCode, e.Error)
	}
	return nil, scheduleListing{}, fmt.Errorf("schedules API answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// printSchedules prints the schedules as aligned columns. Fire times are
// the wall clock of the schedule's zone (the API sends them with its
// offset).
func printSchedules(w io.Writer, list []scheduleEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCRON\tZONE\tNEXT FIRE\tLAST CAMPAIGN\tSTATE")
	for _, sc := range list {
		next := "-"
		if len(sc.Next) > 0 {
			next = sc.Next[0].Format("Mon 2006-01-02 15:04:05")
		}
		last, state := "-", "-"
		if sc.Last != nil {
			last, state = sc.Last.ID, sc.Last.Status
			if state == "" {
				state = "not stored"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, sc.Cron, sc.Timezone, next, last, state)
	}
	_ = tw.Flush()
}
