// Command campaignctl talks to campaignd over NATS and HTTP:
//
//	campaignctl submit -f campaign.json [--audience users.txt [--no-progress] [--no-wait] [--plan-timeout D]]
//	campaignctl status ID
//	campaignctl watch ID
//	campaignctl cancel ID | pause ID | resume ID
//	campaignctl list [--status S] [--limit N] [--json]   (list -h: examples)
//	campaignctl schedules [--json]                       (schedules -h: examples)
//	campaignctl forecast -f campaign.json [--audience users.txt] [--json]
//
// Flags (before the subcommand) or environment: -nats (CAMPAIGND_NATS_URL),
// -api (CAMPAIGND_API), -user / -password (CAMPAIGND_UI_USER /
// CAMPAIGND_UI_PASSWORD), -timeout (campaignd's answer; an audience upload
// has no deadline). submit -h tells the upload's progress and the plan's
// report.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
