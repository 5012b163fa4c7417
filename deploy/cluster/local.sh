#!/usr/bin/env bash
# Cluster mode on one machine without Docker: 3 nats-servers (n1.conf, n2.conf,
# n3.conf beside this script: one JetStream cluster with the partition
# mapping) and 3 engines (LOYALTY_CLUSTER=true, replicas 3) sharing the 64
# partitions. docs/operations.md, "Cluster topology (3 servers + 3 engines)".
#
#   deploy/cluster/local.sh start  [--dir DIR]   start all six, wait until healthy, print the URLs
#   deploy/cluster/local.sh status [--dir DIR]   what runs, each server's /healthz, each engine's partitions
#   deploy/cluster/local.sh stop   [--dir DIR]   engines first (they hand their partitions over), then the servers
#
# DIR (default ./.cluster-local, or CLUSTER_LOCAL_DIR) holds each process's
# pid, log and data: <DIR>/n1 ... n3 (jetstream/, nats-server.log, pid)
# and <DIR>/e1 ... e3 (LMDB data, engine.log, pid). stop keeps them, so a
# start resumes on the same state; delete DIR for a fresh cluster.
#
# Ports (fixed by the configs): NATS clients 127.0.0.1:4222-4224, routes
# 6222-6224, monitoring 8222-8224; engines' HTTP 127.0.0.1:8081-8083.
# Environment: NATS_SERVER (the nats-server binary; default: PATH, then
# /usr/sbin, /usr/local/bin), CLUSTER_LOCAL_ENGINE (`source`, the default:
# node --import tsx src/cli/main.ts; `dist`: node dist/src/cli/main.js, after
# npm run build), CLUSTER_LOCAL_WAIT_S (how long start waits, default 180).
# Other LOYALTY_* variables of this shell reach the engines (e.g.
# LOYALTY_ACTORS=1, LOYALTY_API_TOKENS=...); an unknown one stops them (exit 2).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

servers=(n1 n2 n3)
client_ports=(4222 4223 4224)
route_ports=(6222 6223 6224)
monitor_ports=(8222 8223 8224)
engines=(e1 e2 e3)
http_ports=(8081 8082 8083)
nats_url=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
partitions=64

usage() {
  echo "usage: $0 start|stop|status [--dir DIR]" >&2
  exit 2
}

die() {
  echo "local.sh: $*" >&2
  exit 1
}

command=${1:-}
[[ $# -gt 0 ]] && shift
dir=${CLUSTER_LOCAL_DIR:-./.cluster-local}
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) [[ $# -ge 2 ]] || usage; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    *) usage ;;
  esac
done
[[ $command == start || $command == stop || $command == status ]] || usage
wait_s=${CLUSTER_LOCAL_WAIT_S:-180}
[[ $wait_s =~ ^[0-9]+$ ]] || die "CLUSTER_LOCAL_WAIT_S must be a whole number of seconds, not '$wait_s'"

# An HTTP GET's body, or its status code; empty when nothing answers.
http_get() {
  curl -s --max-time 3 "$1" 2>/dev/null || true
}
http_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true
}

# The pid in a pid file when that process still runs and is what we started (not a reused pid).
live_pid() {
  local file=$1 pattern=$2 pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  ps -p "$pid" -o args= 2>/dev/null | grep -q -- "$pattern" || return 1
  echo "$pid"
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

find_nats_server() {
  if [[ -n ${NATS_SERVER:-} ]]; then
    [[ -x $NATS_SERVER && -f $NATS_SERVER ]] || die "NATS_SERVER=$NATS_SERVER is not an executable file. Install nats-server (Debian/Ubuntu: sudo apt-get install -y nats-server) or point NATS_SERVER at one."
    echo "$NATS_SERVER"
    return
  fi
  local candidate
  candidate=$(command -v nats-server 2>/dev/null || true)
  for candidate in "$candidate" /usr/sbin/nats-server /usr/local/bin/nats-server; do
    if [[ -n $candidate && -x $candidate && -f $candidate ]]; then
      echo "$candidate"
      return
    fi
  done
  die "nats-server not found (PATH, /usr/sbin, /usr/local/bin). Install it: sudo apt-get install -y nats-server (Debian/Ubuntu; 2.9 or later), or set NATS_SERVER=/path/to/nats-server. Nothing was started."
}

engine_command() {
  case ${CLUSTER_LOCAL_ENGINE:-source} in
    source)
      [[ -d $repo/node_modules/tsx ]] || die "node_modules/tsx is missing: run npm install in $repo first"
      echo "node --import tsx src/cli/main.ts start" ;;
    dist)
      [[ -f $repo/dist/src/cli/main.js ]] || die "dist/src/cli/main.js is missing: run npm run build in $repo first"
      echo "node dist/src/cli/main.js start" ;;
    *) die "CLUSTER_LOCAL_ENGINE must be source or dist, not '${CLUSTER_LOCAL_ENGINE}'" ;;
  esac
}

# A number from a /health body, e.g. partitionsConsuming (0 when absent).
health_field() {
  local value
  value=$(sed -n "s/.*\"$2\":\([0-9][0-9]*\).*/\1/p" <<<"$1")
  echo "${value:-0}"
}

log_tail() {
  echo "--- last lines of $1 ---" >&2
  tail -n 20 "$1" >&2 2>/dev/null || true
}

start() {
  local nats_server engine index name pid deadline
  nats_server=$(find_nats_server)
  command -v node >/dev/null || die "node not found: the engines need Node 20.19+ or 22.13+"
  command -v curl >/dev/null || die "curl not found: it checks /healthz and /health"
  engine=$(engine_command)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)

  for index in 0 1 2; do
    if live_pid "$dir/${servers[index]}/pid" nats-server >/dev/null || live_pid "$dir/${engines[index]}/pid" cli/main >/dev/null; then
      die "already running under $dir ($0 status --dir $dir; $0 stop --dir $dir)"
    fi
  done
  for index in 0 1 2; do
    for port in "${client_ports[index]}" "${route_ports[index]}" "${monitor_ports[index]}" "${http_ports[index]}"; do
      if port_busy "$port"; then
        hint=""
        [[ $port == 4222 ]] && hint=" (Debian's nats-server package runs nats-server.service on 4222: sudo systemctl disable --now nats-server; or an engine's embedded nats-server)"
        die "port 127.0.0.1:$port is in use$hint. Nothing was started."
      fi
    done
  done
  for index in 0 1 2; do
    "$nats_server" -t -c "$here/${servers[index]}.conf" >/dev/null 2>&1 || die "$nats_server does not accept $here/${servers[index]}.conf ($("$nats_server" -t -c "$here/${servers[index]}.conf" 2>&1 | tail -n 1)); nats-server 2.9 or later is needed for the partition() mapping"
  done

  echo "state directory: $dir"
  for index in 0 1 2; do
    name=${servers[index]}
    mkdir -p "$dir/$name"
    # In the state directory: the config's store_dir is ./n1 (./n2, ./n3).
    (cd "$dir" && exec nohup "$nats_server" -c "$here/$name.conf" </dev/null >>"$dir/$name/nats-server.log" 2>&1) &
    echo $! >"$dir/$name/pid"
  done
  # JetStream answers once the three have elected a meta leader: /healthz is then 200 on each.
  deadline=$((SECONDS + wait_s))
  for index in 0 1 2; do
    name=${servers[index]}
    until [[ $(http_status "http://127.0.0.1:${monitor_ports[index]}/healthz") == 200 ]]; do
      live_pid "$dir/$name/pid" nats-server >/dev/null || { log_tail "$dir/$name/nats-server.log"; die "nats-server $name exited; stop the others with $0 stop --dir $dir"; }
      ((SECONDS < deadline)) || { log_tail "$dir/$name/nats-server.log"; die "nats-server $name not healthy after ${wait_s} s (http://127.0.0.1:${monitor_ports[index]}/healthz)"; }
      sleep 0.5
    done
  done
  echo "nats-servers ready: $nats_url"

  for index in 0 1 2; do
    name=${engines[index]}
    mkdir -p "$dir/$name/data"
    # shellcheck disable=SC2086 # $engine is a command line
    (
      cd "$repo"
      export LOYALTY_CLUSTER=true LOYALTY_CLUSTER_REPLICAS=3 LOYALTY_NATS_URL=$nats_url \
        LOYALTY_INSTANCE_ID=$name LOYALTY_HTTP_HOST=127.0.0.1 LOYALTY_HTTP_PORT=${http_ports[index]} \
        LOYALTY_DATA_DIR=$dir/$name/data LOYALTY_EMBEDDED_NATS_AUTO_INSTALL=false LOYALTY_LOG_FORMAT=json
      exec nohup $engine </dev/null >>"$dir/$name/engine.log" 2>&1
    ) &
    echo $! >"$dir/$name/pid"
  done
  # Healthy (200) once its first ownership round ran; then the partitions spread over the three.
  for index in 0 1 2; do
    name=${engines[index]}
    until [[ $(http_status "http://127.0.0.1:${http_ports[index]}/health") == 200 ]]; do
      live_pid "$dir/$name/pid" cli/main >/dev/null || { log_tail "$dir/$name/engine.log"; die "engine $name exited; $0 stop --dir $dir stops the rest"; }
      ((SECONDS < deadline)) || { log_tail "$dir/$name/engine.log"; die "engine $name not healthy after ${wait_s} s (http://127.0.0.1:${http_ports[index]}/health)"; }
      sleep 1
    done
  done
  local total split
  while :; do
    total=0 split=""
    for index in 0 1 2; do
      count=$(health_field "$(http_get "http://127.0.0.1:${http_ports[index]}/health")" partitionsConsuming)
      total=$((total + count))
      split+=" ${engines[index]}=$count"
    done
    ((total == partitions)) && break
    if ((SECONDS >= deadline)); then
      echo "local.sh: after ${wait_s} s the engines consume $total of $partitions partitions (${split# }); see $0 status --dir $dir and the engine logs" >&2
      break
    fi
    sleep 1
  done
  echo "engines ready, partitions consuming:${split}"
  for index in 0 1 2; do
    echo "  ${engines[index]}  http://127.0.0.1:${http_ports[index]}  (/health, /metrics, /v1/...; log $dir/${engines[index]}/engine.log)"
  done
  for index in 0 1 2; do
    echo "  ${servers[index]}  nats://127.0.0.1:${client_ports[index]}  monitoring http://127.0.0.1:${monitor_ports[index]} (/healthz, /jsz, /routez)"
  done
  echo "publish on loyalty.tx.<member> to any server; stop with: $0 stop --dir $dir"
}

status() {
  local index name pid body code running=0
  if [[ ! -d $dir ]]; then
    echo "nothing started under $dir"
    return 1
  fi
  dir=$(cd "$dir" && pwd)
  echo "state directory: $dir"
  for index in 0 1 2; do
    name=${servers[index]}
    if pid=$(live_pid "$dir/$name/pid" nats-server); then
      running=$((running + 1))
      code=$(http_status "http://127.0.0.1:${monitor_ports[index]}/healthz")
      echo "  $name  pid $pid  nats://127.0.0.1:${client_ports[index]}  /healthz ${code:-no answer}"
    else
      echo "  $name  not running"
    fi
  done
  for index in 0 1 2; do
    name=${engines[index]}
    if pid=$(live_pid "$dir/$name/pid" cli/main); then
      running=$((running + 1))
      body=$(http_get "http://127.0.0.1:${http_ports[index]}/health")
      code=$(http_status "http://127.0.0.1:${http_ports[index]}/health")
      echo "  $name  pid $pid  http://127.0.0.1:${http_ports[index]}  /health ${code:-no answer}, partitions consuming $(health_field "$body" partitionsConsuming), restoring $(health_field "$body" partitionsRestoring)"
    else
      echo "  $name  not running"
    fi
  done
  ((running == 6))
}

# SIGTERM, then up to $2 seconds for a graceful exit, then SIGKILL.
stop_all() {
  local pattern=$1 grace=$2 name pid deadline
  shift 2
  local pids=()
  for name in "$@"; do
    if pid=$(live_pid "$dir/$name/pid" "$pattern"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$name:$pid")
    else
      echo "  $name not running"
    fi
    rm -f "$dir/$name/pid"
  done
  deadline=$((SECONDS + grace))
  for entry in ${pids[@]+"${pids[@]}"}; do
    name=${entry%%:*} pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "  $name (pid $pid) still running after ${grace} s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    else
      echo "  $name stopped"
    fi
  done
}

stop() {
  if [[ ! -d $dir ]]; then
    echo "nothing started under $dir"
    return 0
  fi
  dir=$(cd "$dir" && pwd)
  # Engines first: each drains, commits, acks and releases its leases while NATS is still there.
  # 40 s: above the engines' LOYALTY_SHUTDOWN_TIMEOUT_MS (30 s by default), after which they exit on their own.
  stop_all cli/main 40 "${engines[@]}"
  stop_all nats-server 20 "${servers[@]}"
  echo "stopped; state kept in $dir (delete it for a fresh cluster)"
}

case $command in
  start) start ;;
  status) status ;;
  stop) stop ;;
esac
