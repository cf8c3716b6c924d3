#!/usr/bin/env bash
# The campaignd demo: starts redis-server, the provider emulator pushsim and
# campaignd (embedded NATS with JetStream), submits a campaign of a few
# thousand targets through NATS, shows its progress until it ends, prints
# what pushsim received and the asynq web UI address, and keeps running
# until Ctrl-C. Set DEMO_EXIT=1 to stop as soon as the campaign has ended.
# Nothing is left running afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/bin"
TARGETS="${DEMO_TARGETS:-3000}"
REDIS_PORT="${DEMO_REDIS_PORT:-16379}"
NATS_PORT="${DEMO_NATS_PORT:-14222}"
SIM_PORT="${DEMO_PUSHSIM_PORT:-19900}"
HTTP_PORT="${DEMO_HTTP_PORT:-18080}"

for p in "$REDIS_PORT" "$NATS_PORT" "$SIM_PORT" "$HTTP_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is in use; set DEMO_*_PORT to free ports" >&2
    exit 1
  fi
done
command -v redis-server >/dev/null || { echo "demo: redis-server missing (make deps installs it)" >&2; exit 1; }
for b in campaignd campaignctl pushsim; do
  [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing: run make build" >&2; exit 1; }
done

WORK="$(mktemp -d -t campaignd-demo.XXXXXX)"
PIDS=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  echo "demo: stopped; nothing left running"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: $1 did not come up; logs in $WORK" >&2
  return 1
}

echo "demo: starting redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
echo "demo: starting pushsim on 127.0.0.1:$SIM_PORT"
# a 10 s task window (the provider's is 5 min): 3 creations per window, 3 running
"$BIN/pushsim" -addr "127.0.0.1:$SIM_PORT" -window 10s -max-created 3 -max-running 3 -label-task-duration 5s >"$WORK/pushsim.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/_sim/stats"

export CAMPAIGND_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export CAMPAIGND_NATS_URL="nats://127.0.0.1:$NATS_PORT"
export CAMPAIGND_HTTP_ADDR="127.0.0.1:$HTTP_PORT"
export CAMPAIGND_API="http://127.0.0.1:$HTTP_PORT"
export PUSHSIM_URL="http://127.0.0.1:$SIM_PORT"
echo "demo: starting campaignd (embedded NATS on 127.0.0.1:$NATS_PORT, HTTP on 127.0.0.1:$HTTP_PORT)"
"$BIN/campaignd" -config "$ROOT/configs/demo.yaml" -dev -dev-store "$WORK/jetstream" >"$WORK/campaignd.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$HTTP_PORT/readyz"

STAMP="$(date +%Y%m%d-%H%M%S)"
# send one example campaign of a kind (configs/examples), with a fresh id,
# and show how it ended
example() { # file [targets-json]
  local f="$ROOT/configs/examples/$1" id
  id="$(basename "$1" .json | tr _ -)-$STAMP"
  sed -e "s/\"id\": \"[^\"]*\"/\"id\": \"$id\"/" "$f" >"$WORK/$1"
  if [ -n "${2:-}" ]; then
    sed -i -e "s/\"targets\": \[[^]]*\]/\"targets\": $2/" "$WORK/$1"
  fi
  echo "demo: $1 → $id"
  "$BIN/campaignctl" submit -f "$WORK/$1" >/dev/null || true
  "$BIN/campaignctl" watch "$id" >/dev/null || true
  "$BIN/campaignctl" status "$id" >/dev/null
}
users_json() { # n: ["user00001", …]
  printf '['
  for i in $(seq 1 "$1"); do [ "$i" -gt 1 ] && printf ','; printf '"user%05d"' "$i"; done
  printf ']'
}

echo "demo: every kind campaignd sends, through the same queue and limits"
example label_members_add.json "$(users_json 2000)"
echo "demo: pushsim's label \"fans\": $(curl -fsS "http://127.0.0.1:$SIM_PORT/_sim/label?org=demo&app=demo&name=fans" | head -c 160)…"
example tag_members_add.json
example user_settings.json "$(users_json 200)"
echo "demo: pushsim's settings of user00001: $(curl -fsS "http://127.0.0.1:$SIM_PORT/_sim/user?org=demo&app=demo&user=user00001")"
example template_create.json
example single_push.json

echo "demo: a label push to \"fans\" and 4 broadcasts: one provider task each, under the task-window caps"
echo "demo: (pushsim and campaignd: 3 creations per 10 s window, 3 running; a broadcast holds its slot for the whole window)"
TASK_IDS=()
for f in label_push broadcast broadcast broadcast broadcast; do
  n=${#TASK_IDS[@]}
  id="$f-$n-$STAMP"
  sed -e "s/\"id\": \"[^\"]*\"/\"id\": \"$id\"/" "$ROOT/configs/examples/$f.json" >"$WORK/task-$n.json"
  "$BIN/campaignctl" submit -f "$WORK/task-$n.json" >/dev/null
  TASK_IDS+=("$id")
done
sleep 0.5
for id in "${TASK_IDS[@]}"; do
  curl -fsS "$CAMPAIGND_API/api/campaigns/$id" | sed -e 's/.*"status":"\([a-z_]*\)".*"start_at":"\([^"]*\)".*/'"$id"': \1, start_at \2/'; echo
done
for id in "${TASK_IDS[@]}"; do
  "$BIN/campaignctl" watch "$id" >/dev/null || true
done
echo "demo: the tasks pushsim created (GET /_sim/tasks?format=text): never more than 3 in any 10 s, the window used at once"
curl -fsS "http://127.0.0.1:$SIM_PORT/_sim/tasks?format=text"

# Local time: a window from an hour ago to an hour ahead (UTC times of
# day) is open in UTC and closed twelve hours east (Etc/GMT-12).
LT="local-time-$STAMP"
{
  printf '{"id":"%s","kind":"batch_push","push_message":{"title":"Good morning","content":"in your own time"},"targets":[' "$LT"
  for i in $(seq 1 300); do
    [ "$i" -gt 1 ] && printf ','
    printf '"lt%05d,UTC","lt%05d,Etc/GMT-12"' "$i" "$((i + 300))"
  done
  printf '],"send_window":{"from":"%s","to":"%s","timezone":"UTC","local_time":true}}\n' "$(date -u -d '-1 hour' +%H:%M:%S)" "$(date -u -d '+1 hour' +%H:%M:%S)"
} >"$WORK/local-time.json"
echo "demo: local time ($LT): 300 targets in UTC, where its window is open, and 300 in Etc/GMT-12, where it is closed"
"$BIN/campaignctl" forecast -f "$WORK/local-time.json" || true
"$BIN/campaignctl" submit -f "$WORK/local-time.json" >/dev/null
for _ in $(seq 1 60); do
  curl -fsS "$CAMPAIGND_API/api/campaigns/$LT" | grep -q '"status":"scheduled"' && break
  sleep 0.5
done
echo "demo: UTC's 300 targets sent, Etc/GMT-12's wait, scheduled for their window (start_at, next_opening):"
curl -fsS "$CAMPAIGND_API/api/campaigns/$LT"; echo
"$BIN/campaignctl" cancel "$LT" >/dev/null
echo "demo: $LT cancelled (its waiting zone will not be sent)"

ID="demo-$STAMP"
{
  printf '{"id":"%s","kind":"batch_push","push_message":{"title":"Hello","content":"campaignd demo"},"targets":[' "$ID"
  for i in $(seq 1 "$TARGETS"); do
    [ "$i" -gt 1 ] && printf ','
    printf '"user%05d"' "$i"
  done
  # a few duplicates: sent once
  printf ',"user00001","user00002"]}\n'
} >"$WORK/campaign.json"

echo "demo: before sending, the forecast of campaign $ID (nothing stored, queued or sent):"
"$BIN/campaignctl" forecast -f "$WORK/campaign.json" || true
echo "demo: submitting campaign $ID ($TARGETS targets, push_single limited to 10 calls/s)"
"$BIN/campaignctl" submit -f "$WORK/campaign.json"
echo "demo: asynq web UI: http://127.0.0.1:$HTTP_PORT/monitoring/"
"$BIN/campaignctl" watch "$ID"
echo "demo: campaign status (GET /api/campaigns/$ID):"
curl -fsS "http://127.0.0.1:$HTTP_PORT/api/campaigns/$ID"; echo
echo "demo: what pushsim received (GET /_sim/stats):"
curl -fsS "http://127.0.0.1:$SIM_PORT/_sim/stats" | head -c 2000; echo
echo
echo "demo: asynq web UI: http://127.0.0.1:$HTTP_PORT/monitoring/   status API: http://127.0.0.1:$HTTP_PORT/api/campaigns/$ID"
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "demo: running; press Ctrl-C to stop"
while :; do sleep 3600 & wait $!; done
