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
	os.Exit(run())
}

func run() int {
	var cfg pushsim.Config
	limits := limitFlags{}
	addr := flag.String("addr", "127.0.0.1:9900", "listen address")
	flag.StringVar(&cfg.EasemobClientID, "easemob-client-id", "pushsim", "Easemob client id accepted by /{org}/{app}/token")
	flag.StringVar(&cfg.EasemobClientSecret, "easemob-client-secret", "pushsim-secret", "Easemob client secret")
	flag.StringVar(&cfg.EngageLabKey, "engagelab-key", "pushsim", "EngageLab app key (HTTP Basic user)")
	flag.StringVar(&cfg.EngageLabSecret, "engagelab-secret", "pushsim-secret", "EngageLab app secret (HTTP Basic password)")
	flag.BoolVar(&cfg.LimitsOff, "limits-off", false, "count limit violations but refuse nothing")
	flag.Var(limits, "limit", "calls per second for an endpoint group, group=R (repeatable), e.g. push_single=10")
	flag.DurationVar(&cfg.TaskWindow.Window, "window", 5*time.Minute, "push task window")
	flag.IntVar(&cfg.TaskWindow.MaxCreated, "max-created", 3, "task creations allowed per window")
	flag.IntVar(&cfg.TaskWindow.MaxRunning, "max-running", 3, "tasks allowed to run at once")
	flag.DurationVar(&cfg.TaskWindow.LabelTaskDuration, "label-task-duration", 5*time.Minute, "how long a label push task runs")
	flag.DurationVar(&cfg.TokenTTL, "token-ttl", 2*time.Hour, "Easemob app token lifetime")
	flag.Float64Var(&cfg.Faults.ErrorRate, "error-rate", 0, "share of calls answered with a 5xx (0..1)")
	flag.DurationVar(&cfg.Faults.Latency, "latency", 0, "latency added to every answer")
	flag.Float64Var(&cfg.Faults.DropRate, "drop-rate", 0, "share of connections dropped without an answer (0..1)")
	flag.Int64Var(&cfg.Faults.Seed, "seed", 1, "seed of the fault injection")
	zone := flag.String("zone", "UTC", "the emulated server's time zone (startDate is read in it)")
	logJSON := flag.Bool("log-json", false, "log JSON lines")
	flag.Parse()

	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly})
	if *logJSON {
		log = zerolog.New(os.Stderr)
	}
	log = log.With().Timestamp().Logger()
	cfg.Logger = log
	loc, err := time.LoadLocation(*zone)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pushsim: -zone: %v\n", err)
		return 2
	}
	cfg.Zone = loc
	for _, r := range []float64{cfg.Faults.ErrorRate, cfg.Faults.DropRate} {
		if r < 0 || r > 1 {
			fmt.Fprintln(os.Stderr, "pushsim: -error-rate and -drop-rate must be within 0..1")
			return 2
		}
	}
	cfg.Limits = limits

	srv, err := pushsim.Listen(cfg, *addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pushsim: %v\n", err)
		return 1
	}
	fmt.Printf("pushsim listening on %s\n", srv.URL())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pushsim: close: %v\n", err)
		return 1
	}
	return 0
}
