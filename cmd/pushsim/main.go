// Command pushsim serves a local emulator of the Easemob / Agora Chat push
// API (any /{org}/{app}/…) and the EngageLab device API (/v4/…), limits
// included, for campaignd's demo, docker-compose and tests.
//
//	pushsim -addr 127.0.0.1:9900
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// limitFlags collects repeated -limit group=R flags.
type limitFlags map[provider.Group]float64

func (l limitFlags) String() string { return fmt.Sprint(map[provider.Group]float64(l)) }

func (l limitFlags) Set(v string) error {
	g, r, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want group=R, got %q", v)
	}
	known := false
	for _, k := range provider.Groups {
		known = known || string(k) == g
	}
	if !known {
		return fmt.Errorf("unknown group %q (want one of %v)", g, provider.Groups)
	}
	f, err := strconv.ParseFloat(r, 64)
	if err != nil || f <= 0 {
		return fmt.Errorf("limit for %s must be a positive number, got %q", g, r)
	}
	l[provider.Group(g)] = f
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, serves until ctx ends and returns the exit code: 0 after a
// clean stop, 1 when it cannot serve, 2 on bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pushsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg pushsim.Config
	limits := limitFlags{}
	addr := fs.String("addr", "127.0.0.1:9900", "listen address")
	fs.StringVar(&cfg.Credentials.EasemobClientID, "easemob-client-id", "pushsim", "Easemob client id accepted by /{org}/{app}/token")
	fs.StringVar(&cfg.Credentials.EasemobClientSecret, "easemob-client-secret", "pushsim-secret", "Easemob client secret")
	fs.StringVar(&cfg.Credentials.EngageLabKey, "engagelab-key", "pushsim", "EngageLab app key (HTTP Basic user)")
	fs.StringVar(&cfg.Credentials.EngageLabSecret, "engagelab-secret", "pushsim-secret", "EngageLab app secret (HTTP Basic password)")
	fs.BoolVar(&cfg.LimitsOff, "limits-off", false, "count limit violations but refuse nothing")
	fs.Var(limits, "limit", "calls per second for an endpoint group, group=R (repeatable), e.g. push_single=10")
	fs.DurationVar(&cfg.TaskWindow.Window, "window", 5*time.Minute, "push task window")
	fs.IntVar(&cfg.TaskWindow.MaxCreated, "max-created", 3, "task creations allowed per window")
	fs.IntVar(&cfg.TaskWindow.MaxRunning, "max-running", 3, "tasks allowed to run at once")
	fs.DurationVar(&cfg.TaskWindow.LabelTaskDuration, "label-task-duration", 5*time.Minute, "how long a label push task runs")
	fs.IntVar(&cfg.MaxLabels, "max-labels", pushsim.DefaultMaxLabels, "Easemob labels allowed per app (0 → default)")
	fs.IntVar(&cfg.MaxTagsPerApp, "max-tags", pushsim.DefaultMaxTagsPerApp, "EngageLab tags allowed per app, over it 27013 (0 → default)")
	fs.IntVar(&cfg.MaxDevicesPerTag, "max-devices-per-tag", pushsim.DefaultMaxDevicesPerTag, "EngageLab devices allowed per tag, over it 27014 (0 → default)")
	fs.DurationVar(&cfg.TokenTTL, "token-ttl", 2*time.Hour, "Easemob app token lifetime")
	fs.Float64Var(&cfg.Faults.ErrorRate, "error-rate", 0, "share of calls answered with a 5xx (0..1)")
	fs.DurationVar(&cfg.Faults.Latency, "latency", 0, "latency added to every answer")
	fs.Float64Var(&cfg.Faults.DropRate, "drop-rate", 0, "share of connections dropped without an answer (0..1)")
	fs.Int64Var(&cfg.Faults.Seed, "seed", 1, "seed of the fault injection")
	zone := fs.String("zone", "UTC", "the emulated server's time zone (startDate is read in it)")
	logJSON := fs.Bool("log-json", false, "log JSON lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pushsim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	loc, err := time.LoadLocation(*zone)
	if err != nil {
		fmt.Fprintf(stderr, "pushsim: -zone: %v\n", err)
		return 2
	}
	cfg.Zone = loc
	for name, r := range map[string]float64{"-error-rate": cfg.Faults.ErrorRate, "-drop-rate": cfg.Faults.DropRate} {
		if r < 0 || r > 1 {
			fmt.Fprintf(stderr, "pushsim: %s must be within 0..1, got %v\n", name, r)
			return 2
		}
	}
	for name, d := range map[string]time.Duration{"-window": cfg.TaskWindow.Window, "-label-task-duration": cfg.TaskWindow.LabelTaskDuration, "-token-ttl": cfg.TokenTTL, "-latency": cfg.Faults.Latency} {
		if d < 0 {
			fmt.Fprintf(stderr, "pushsim: %s must not be negative, got %v\n", name, d)
			return 2
		}
	}
	if cfg.TaskWindow.MaxCreated < 0 || cfg.TaskWindow.MaxRunning < 0 {
		fmt.Fprintln(stderr, "pushsim: -max-created and -max-running must not be negative")
		return 2
	}
	for name, n := range map[string]int{"-max-labels": cfg.MaxLabels, "-max-tags": cfg.MaxTagsPerApp, "-max-devices-per-tag": cfg.MaxDevicesPerTag} {
		if n < 0 {
			fmt.Fprintf(stderr, "pushsim: %s must not be negative, got %d\n", name, n)
			return 2
		}
	}
	cfg.Limits = limits

	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly})
	if *logJSON {
		log = zerolog.New(stderr)
	}
	cfg.Logger = log.With().Timestamp().Logger()

	srv, err := pushsim.Listen(cfg, *addr)
	if err != nil {
		fmt.Fprintf(stderr, "pushsim: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "pushsim listening on %s\n", srv.URL())
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(stderr, "pushsim: close: %v\n", err)
		return 1
	}
	return 0
}
