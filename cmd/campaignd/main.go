// Command campaignd runs push-notification campaigns: it takes campaign
// requests from NATS JetStream, queues them in asynq on Redis, sends them
// through the provider within every provider limit, and serves the asynq web
// UI, a status API, metrics and health checks.
//
//	campaignd -config configs/campaignd.yaml
//	campaignd -config configs/demo.yaml -dev   # embedded NATS with JetStream
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/daemon"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		configPath   = flag.String("config", "configs/campaignd.yaml", "config file (YAML)")
		dev          = flag.Bool("dev", false, "dev mode: run an embedded NATS server with JetStream at nats.url")
		devStore     = flag.String("dev-store", "", "dev mode: JetStream store directory (default: a temporary directory)")
		logLevel     = flag.String("log-level", "info", "log level: debug, info, warn, error")
		logJSON      = flag.Bool("log-json", false, "log JSON lines instead of console text")
		cpuProfile   = flag.String("cpuprofile", "", "write a CPU profile to this file until campaignd stops (for benchmarks)")
		memProfile   = flag.String("memprofile", "", "write a heap profile to this file whenever the heap in use reaches a new peak (for benchmarks)")
		allocProfile = flag.String("allocprofile", "", "write a heap profile to this file when campaignd stops: its alloc_space covers the whole run (for benchmarks)")
	)
	flag.Parse()

	level, err := zerolog.ParseLevel(*logLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "campaignd: -log-level: %v\n", err)
		return 2
	}
	// Milliseconds in every log line: calls go out a tenth of a second
	// apart, and a second's precision cannot tell them apart.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	var log zerolog.Logger
	if *logJSON {
		log = zerolog.New(os.Stderr)
	} else {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly})
	}
	log = log.Level(level).With().Timestamp().Str("pid", fmt.Sprint(os.Getpid())).Logger()

	cfg, err := config.Load(*configPath, os.Getenv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "campaignd: %v\n", err)
		return 2
	}
	if fields, err := cfg.Sanitized().Fields(); err == nil {
		d := zerolog.Dict()
		for _, f := range fields {
			d.Str(f[0], f[1])
		}
		log.Info().Dict("config", d).Msg("config loaded")
	}
	// go-redis logs its own retries (one line per failed dial); they go
	// through zerolog, at most one line per 10 s.
	redis.SetLogger(daemon.RedisLogger(log, 10*time.Second))

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "campaignd: -cpuprofile: %v\n", err)
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "campaignd: -cpuprofile: %v\n", err)
			return 2
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if *allocProfile != "" {
		defer func() {
			if err := writeHeapProfile(*allocProfile); err != nil {
				log.Warn().Err(err).Msg("allocprofile")
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *memProfile != "" {
		go peakHeapProfiles(ctx, *memProfile, log)
	}

	// SIGHUP rereads the config file: its schedules apply at once (one
	// that comes during start-up is applied once it is done).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d, err := daemon.New(ctx, *cfg, daemon.Options{Logger: log, DevNATS: *dev, DevStoreDir: *devStore})
	if err != nil {
		log.Error().Err(err).Msg("start failed")
		return 1
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = d.Reload(config.Load(*configPath, os.Getenv))
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error().Err(err).Msg("stopped with error")
		return 1
	}
	log.Info().Msg("stopped")
	return 0
}

// writeHeapProfile writes the heap profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

// peakHeapProfiles writes a heap profile to path each time the heap in use
// passes its peak so far by 5% (checked every 100 ms), until ctx ends.
func peakHeapProfiles(ctx context.Context, path string, log zerolog.Logger) {
	var peak uint64
	var ms runtime.MemStats
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse < peak+peak/20 {
			continue
		}
		peak = ms.HeapInuse
		if err := writeHeapProfile(path); err != nil {
			log.Warn().Err(err).Msg("memprofile")
			return
		}
	}
}
