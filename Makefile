# campaignd — common tasks. `make demo` runs the demo, `make test` the tests.
GO ?= go
BIN := bin

.PHONY: all build test test-dates vet fmt demo bench bench-apps bench-scale bench-kinds bench-controls bench-tasks bench-forecast soak crash chaos ha deps clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# deps installs what the tests and the demo need from Debian: redis-server,
# chromium (the asynq UI is checked in a headless browser) and nats-server
# (Debian's 2.9: a 3-node cluster of it is started by the tests).
deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v nats-server >/dev/null 2>&1 || missing="$$missing nats-server"; \
	if [ -n "$$missing" ]; then \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

# Packages are tested one at a time (-p 1): several tests judge the
# provider limits on a strict clock, and two test binaries competing for the
# two cores would be judged as limiter jitter.
test: deps
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory test-dates

# test-dates: the tests whose fake clocks meet a reader of the wall clock
# (Redis, asynq's Inspector, a store on the real clock) again, with their
# fixed dates a year (52 weeks) back and a year ahead: a test that passes
# only while today is near its dates fails here on any day
# (internal/testenv/dates.go).
DATE_PKGS := ./scheduler ./store ./httpapi ./cmd/campaignctl ./ratelimit
test-dates:
	@for w in -52 52; do \
		echo "CAMPAIGND_TEST_DATE_SHIFT_WEEKS=$$w"; \
		CAMPAIGND_TEST_DATE_SHIFT_WEEKS=$$w $(GO) test -p 1 -count=1 -timeout 10m \
			-skip 'TestTaskWindowAcrossProcesses' $(DATE_PKGS) || exit 1; \
	done

demo: deps build
	./scripts/demo.sh

bench: deps
	./scripts/bench.sh

# bench-scale: audiences of 100k, 1M, 3M and 10M lines (10% repeats, random
# and sorted): planning alone and end to end against plain asynq (~17 min;
# BENCH_SIZES to change; docs/BENCHMARKS.md).
bench-scale: deps
	./scripts/bench-scale.sh

# bench-apps: N apps (1, 10, 100, 1,000) each at its full push_single limit
# at once, on 1 and 3 processes: per app the share of its limit, its
# violations and its time to first call; CPU and Redis commands per call,
# idle CPU with N apps configured (BENCH_APPS, BENCH_PROCS,
# BENCH_TOTAL_RATE, BENCH_APP_SECONDS; docs/BENCHMARKS.md).
bench-apps: deps
	$(GO) test ./internal/bench -run '^$$' -bench Apps -benchtime 1x -timeout 60m -v

# bench-controls: how fast priority and pause act at the provider's rate
# (R = 10 and 100, 1 and 3 processes; ~1 min; docs/BENCHMARKS.md).
bench-controls: deps
	$(GO) test ./daemon -run '^$$' -bench Controls -benchtime 1x -timeout 20m -v

# bench-forecast: POST /api/forecast for an audience of 10 million lines
# (10% repeats, random; goal within 10 s) and for 20,000 inline targets
# (goal within 2 s), 3 rounds (docs/BENCHMARKS.md, "Forecast").
bench-forecast: deps
	cd internal/bench && BENCH_TARGETS=$${BENCH_TARGETS:-10000000} $(GO) test -run '^$$' -bench Forecast -benchtime 3x -timeout 20m -v .

# bench-tasks: 4 processes, a 10 s task window (3 creations, 3 running),
# 24 label pushes and 6 broadcasts (~2 min; docs/BENCHMARKS.md).
bench-tasks: deps
	$(GO) test ./daemon -run '^$$' -bench Tasks -benchtime 1x -timeout 20m -v

# bench-kinds: the share of their limits user_settings (5,000 users at
# user=100, notification=100) and label_members (20,000 users at
# label_user=30) reach (~2 min; docs/BENCHMARKS.md).
bench-kinds: deps
	$(GO) test ./daemon -run '^$$' -bench Kinds -benchtime 1x -timeout 20m -v

# soak: 4 processes x 50 workers against pushsim's strict sliding-window
# judge, R = 1, 10, 100, 30 s each (SOAK_SECONDS to change).
soak: deps
	SOAK=1 $(GO) test -count=1 -timeout 30m -run 'TestSoakSlidingWindow' -v ./ratelimit

# crash: two campaignd processes SIGKILLed mid-send and mid-plan, and as a
# send window (plain, then a local-time zone's) closes, restarted; every
# target must still be pushed (~3½ min: asynq's leases must expire).
crash: deps
	CRASH=1 $(GO) test -count=1 -timeout 15m -v ./internal/crashtest

# chaos: real campaignd processes through Redis stops and SIGKILLs, a NATS
# restart, a provider outage, a slow provider, a SIGTERM hand-over, an
# archived task, a lost cron tick and 4 s tokens; each scenario's figures
# and a table at the end (~5 min; docs/RELIABILITY.md).
chaos: deps
	CHAOS=1 $(GO) test -count=1 -timeout 20m -v -run TestChaos ./internal/chaos

# ha: campaignd on Redis Sentinel (a master, a replica, three sentinels;
# the master SIGKILLed mid-campaign) and on a 3-node NATS cluster (a node
# lost during submits; two nodes with the status stream's leader down for
# 6 s at a campaign's end), figures printed (~1 min; docs/OPERATIONS.md).
ha: deps
	HA=1 $(GO) test -count=1 -timeout 20m -v -run TestHA ./internal/chaos

clean:
	rm -rf $(BIN)
