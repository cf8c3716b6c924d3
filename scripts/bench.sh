#!/usr/bin/env bash
# Benchmarks: campaignd end to end against a plain asynq baseline, the
# limiter against redis_rate and x/time/rate, and pushsim's own ceiling.
# Results are printed; copy them into docs/BENCHMARKS.md with the date.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== campaignd vs plain asynq (BENCH_TARGETS=${BENCH_TARGETS:-100000})"
go test ./internal/bench -run '^$' -bench Pipeline -benchtime 1x -timeout 30m
echo "== pushsim ceiling"
go test ./pushsim -run '^$' -bench PushSingle -benchtime 3s
if grep -q "func BenchmarkLimiters" ratelimit/*_test.go 2>/dev/null; then
  echo "== limiters"
  go test ./ratelimit -run '^$' -bench Limiters -benchtime 1x -timeout 10m
fi
