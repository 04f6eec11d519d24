#!/usr/bin/env bash
# A real Ray cluster on this machine, on loopback, with the training service on top.
#
#   deploy/local/cluster.sh up [--workers N]   start a Ray head (+ N worker nodes) and psctl serve
#   deploy/local/cluster.sh status             show what runs
#   deploy/local/cluster.sh down               stop exactly what `up` started (nothing else)
#
# Ports (override with env): RAY_PORT=6390 DASHBOARD_PORT=8266 PS_PORT=50051 PS_METRICS_PORT=9464.
# State (pids, logs) lives in PS_CLUSTER_DIR (default .ps-cluster/). Ray's token authentication
# stays on (Ray 2.60 default): the token is ~/.ray/auth_token, and clients need RAY_AUTH_MODE=token.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${VENV:-$HERE/.venv}"
RAY="$VENV/bin/ray"
PSCTL="$VENV/bin/psctl"
DIR="${PS_CLUSTER_DIR:-$HERE/.ps-cluster}"
RAY_PORT="${RAY_PORT:-6390}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8266}"
PS_PORT="${PS_PORT:-50051}"
PS_METRICS_PORT="${PS_METRICS_PORT:-9464}"
HEAD_CPUS="${HEAD_CPUS:-$(nproc)}"
WORKER_CPUS="${WORKER_CPUS:-1}"
export RAY_AUTH_MODE=token

running() {  # a live process (a zombie waiting for its reaper counts as gone)
  [[ -e "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

start_bg() {  # name, command...: run in its own process group, remember the pid
  local name=$1; shift
  setsid "$@" >"$DIR/$name.log" 2>&1 < /dev/null &
  echo $! >"$DIR/$name.pid"
}

wait_for_port() {
  for _ in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.5
  done
  echo "nothing listens on 127.0.0.1:$1; see $DIR/*.log" >&2
  return 1
}

wait_for_nodes() {  # every node registered before the service sizes its admission control
  "$VENV/bin/python" - "$RAY_PORT" "$1" <<'PY'
import sys, time
import ray
ray.init(address=f"127.0.0.1:{sys.argv[1]}", logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + 60
while sum(n["Alive"] for n in ray.nodes()) < int(sys.argv[2]):
    if time.monotonic() > deadline:
        sys.exit(f"only {sum(n['Alive'] for n in ray.nodes())} of {sys.argv[2]} Ray nodes came up")
    time.sleep(0.5)
PY
}

up() {
  local workers=0
  [[ "${1:-}" == "--workers" ]] && workers="${2:?--workers N}"
  mkdir -p "$DIR/storage"
  [[ -e "$DIR/head.pid" ]] && { echo "already up (state in $DIR); run down first" >&2; exit 1; }
  start_bg head "$RAY" start --head --block --node-ip-address 127.0.0.1 --port "$RAY_PORT" \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" --num-cpus "$HEAD_CPUS" \
    --temp-dir "$DIR/ray" --disable-usage-stats
  wait_for_port "$RAY_PORT"
  for i in $(seq 1 "$workers"); do
    start_bg "worker-$i" "$RAY" start --block --address "127.0.0.1:$RAY_PORT" \
      --node-ip-address 127.0.0.1 --num-cpus "$WORKER_CPUS" --disable-usage-stats
  done
  wait_for_nodes $((workers + 1))
  start_bg serve "$PSCTL" serve --host 127.0.0.1 --port "$PS_PORT" --metrics-port "$PS_METRICS_PORT" \
    --ray-address "127.0.0.1:$RAY_PORT" --storage "$DIR/storage"
  wait_for_port "$PS_PORT"
  echo "Ray head 127.0.0.1:$RAY_PORT (dashboard http://127.0.0.1:$DASHBOARD_PORT), $workers extra node(s)"
  echo "service 127.0.0.1:$PS_PORT, metrics http://127.0.0.1:$PS_METRICS_PORT/metrics"
}

stop_groups() {  # grace (s), pidfiles...: SIGTERM each process group, SIGKILL what outlives grace
  local grace=$1 pidfile; shift
  local pids=()
  for pidfile in "$@"; do
    [[ -e "$pidfile" ]] || continue
    pids+=("$(cat "$pidfile")")
    kill -TERM -- "-${pids[-1]}" 2>/dev/null || true
  done
  local pid
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 $((grace * 2))); do running "$pid" || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do running "$pid" || break; sleep 0.5; done  # SIGKILL is not instant
  done
  rm -f "$@"
}

down() {
  # The service first: SIGTERM hands its running jobs back to the queue, checkpointed (it
  # waits up to its --hand-back-timeout, 60 s). Then the Ray nodes, together: they hold no
  # state of ours, and `ray start --block` takes ~30 s to wind down on SIGTERM alone.
  stop_groups 75 "$DIR"/serve.pid
  stop_groups 5 "$DIR"/worker-*.pid "$DIR"/head.pid
  echo "stopped"
}

status() {
  local pidfile
  for pidfile in "$DIR"/*.pid; do
    [[ -e "$pidfile" ]] || { echo "not up"; return; }
    local pid; pid=$(cat "$pidfile")
    if running "$pid"; then echo "$(basename "$pidfile" .pid): running (pid $pid)"
    else echo "$(basename "$pidfile" .pid): dead (see $DIR/$(basename "$pidfile" .pid).log)"; fi
  done
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [--workers N] | status | down" >&2; exit 2 ;;
esac
