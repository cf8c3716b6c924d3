#!/usr/bin/env bash
# The scaling tables of docs/BENCHMARKS.md ("Audiences up to 10 million"):
# for each size (BENCH_SIZES, default 100k 1M 3M 10M lines, BENCH_DUPS of
# them repeats, default 0.1) and order (random, sorted), planning alone
# (BenchmarkPlan, 3 rounds; 1 for 10M) and end to end against plain asynq
# (BenchmarkPipeline, 3 rounds, the median; 1 for 10M). Takes about 17
# minutes; nothing else should run on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${BENCH_SIZES:-"100000 1000000 3000000 10000000"}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go test -c -o "$bin/bench.test" ./internal/bench
plan="$bin/plan.md" e2e="$bin/e2e.md"
echo "| lines | order | passes | plan time | lines/s | Redis per target |" >"$plan"
echo "|---|---|---|---|---|---|" >>"$plan"
echo "| lines | order | plan time (while sending) | campaignd targets/s | plain asynq targets/s | ratio | campaignd peak RSS | Redis per target after planning | CPU per target: campaignd / asynq handler (ratio) | CPU ratio to asynq's enqueue + handler |" >"$e2e"
echo "|---|---|---|---|---|---|---|---|---|---|" >>"$e2e"
for n in $sizes; do
  for order in random sorted; do
    rounds=3
    [ "$n" -ge 5000000 ] && rounds=1
    echo "== $n lines, $order: plan alone" >&2
    (cd internal/bench && BENCH_TARGETS=$n BENCH_ORDER=$order "$bin/bench.test" -test.run '^$' -test.bench 'Plan$' -test.benchtime ${rounds}x -test.timeout 60m) |
      tee /dev/stderr | sed -n 's/^row: //p' | tail -1 >>"$plan"
    echo "== $n lines, $order: end to end" >&2
    (cd internal/bench && BENCH_TARGETS=$n BENCH_ORDER=$order BENCH_ROUNDS=$rounds "$bin/bench.test" -test.run '^$' -test.bench 'Pipeline' -test.benchtime 1x -test.timeout 60m) |
      tee /dev/stderr | sed -n 's/^row: //p' >>"$e2e"
  done
done
echo
echo "Planning alone ($(date -u +%F), BENCH_DUPS=${BENCH_DUPS:-0.1}):"
cat "$plan"
echo
echo "End to end, limits off, median of 3 rounds (1 for 10M):"
cat "$e2e"
