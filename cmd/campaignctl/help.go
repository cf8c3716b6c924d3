package main

import (
	"fmt"
	"io"
)

// helps are the -h texts of the subcommands (list and schedules print
// their own).
var helps = map[string]string{
	"submit": `usage: campaignctl [flags] submit -f campaign.json [--audience users.txt [--no-progress] [--no-wait] [--plan-timeout D]]

Publishes the campaign JSON (docs/interface.md §4; "-f -" reads stdin) on
campaigns.submit and prints campaignd's first answer (accepted, scheduled,
rejected with the fields at fault, or duplicate) on stdout.

--audience streams a file of target ids, one per line, to the NATS object
store (audiences/<id>; never read into memory, any size) and names it in
the campaign. While it uploads, stderr shows a progress bar (bytes sent of
the file's size, percent, MB/s, lines so far), replaced at the end by
"uploaded 130.0 MB, 10,000,000 lines in 4.2s"; when stderr is not a
terminal only that line is printed. The upload has no deadline (Ctrl-C
stops it): -timeout bounds the wait for campaignd's answer after it.

After the answer accepted, submit waits for campaignd's plan of the
audience (status "planned": every batch stored, the totals final) and
tells on stderr what the lines gave:
  planned: 9,000,000 distinct ids from 10,000,000 lines; 1,000,000 duplicates and 0 invalid lines left out
stdout stays the accepted answer. A plan not done within --plan-timeout is
told and left to go on (exit 0); a campaign that fails before its plan is
done exits 1; a scheduled one is planned at its start (not waited for).

  --no-progress      no upload progress and no plan progress on stderr
  --no-wait          print the answer and exit; do not wait for the plan
  --plan-timeout D   how long to wait for the plan (default: the -timeout value)

examples:
  campaignctl submit -f configs/campaign-sample.json
  campaignctl submit -f spring.json --audience users.txt
  campaignctl submit -f spring.json --audience users.txt --plan-timeout 5m
  campaignctl submit -f spring.json --audience users.txt --no-wait 2>/dev/null | jq -r .status`,
	"status": `usage: campaignctl [flags] status ID

Prints the campaign's status JSON on stdout and, on stderr, a summary for
people: counts, the campaign's errors, and each refused target with the
provider's reason. Exit 0 for any known campaign, whatever its state
(read .status), 1 for an unknown id, 2 when the API cannot be read.

examples:
  campaignctl status spring-sale
  campaignctl -api http://campaignd:8080 status spring-sale 2>/dev/null | jq .sent`,
	"watch": `usage: campaignctl [flags] watch ID

Follows the campaign's status events (campaigns.status.<id>) with a
progress line until it ends, then prints the final status JSON.

examples:
  campaignctl watch spring-sale
  campaignctl -nats nats://nats:4222 watch spring-sale`,
	"cancel": `usage: campaignctl [flags] cancel ID

Publishes the id on campaigns.cancel and prints the status campaignd
answers with: nothing of the campaign is sent after that.

example:
  campaignctl cancel spring-sale`,
	"pause": `usage: campaignctl [flags] pause ID

Publishes the id on campaigns.pause: no call of the campaign is sent after
"paused" is stored; resume goes on where it stopped.

example:
  campaignctl pause spring-sale`,
	"forecast": `usage: campaignctl [flags] forecast -f campaign.json [--audience users.txt] [--json]

Asks campaignd (core NATS request campaigns.forecast) when the campaign
would start and end, the provider calls it would make per limit group,
the queued work that goes before it or shares its rate, and the targets
it would drop at expires_at. Nothing is stored, queued, sent or uploaded:
the campaign can be forecast again, then submitted as it is. "-f -" reads
stdin.

--audience counts the file's distinct valid ids here (as campaignd's plan
would: the same id rule, duplicates and blank lines left out), tells the
count on stderr, and sends the campaign with the audience submit would
name (audiences/<id>) and the count, so campaignd reads no object.

  campaign  spring-sale (batch_push on default)
  targets   2,000,000
  calls     push_single 20,000
  starts    2026-12-08 01:00:00 UTC (in 3h12m)
  ends      2026-12-08 01:33:54 UTC (runs 33m54s)
  rate      push_single 9.852 calls/s
  ahead     2 campaigns, push_single 12,000 calls
  dropped   0
  notes     - shares push_single with 1 campaign of the same priority

Times are UTC. Exit 0 for a forecast, 1 when campaignd would reject the
campaign (its rejection JSON on stdout, the fields at fault on stderr), 2
for anything else (no NATS, no answer within -timeout, campaignd could not
forecast, bad arguments).

  --json   print campaignd's answer (docs/interface.md §7) instead

examples:
  campaignctl forecast -f spring.json
  campaignctl forecast -f spring.json --audience users.txt
  campaignctl forecast -f spring.json --json | jq -r .done_at`,
	"resume": `usage: campaignctl [flags] resume ID

Publishes the id on campaigns.resume: a paused campaign goes on (one whose
batches were all recorded while paused ends at once).

example:
  campaignctl resume spring-sale`,
}

// wantsHelp reports whether args ask for help (-h, -help, --help).
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

func printHelp(w io.Writer, cmd string) bool {
	h, ok := helps[cmd]
	if ok {
		fmt.Fprintln(w, h)
	}
	return ok
}
