#!/usr/bin/env bash
# Start/stop the services the conformance tests talk to, all on loopback:
#   PostgreSQL + Redis (own data dirs, own ports), the real Dify plugin daemon built by setup.sh, and a fake Dify
#   inner API (fake_inner_api.py) that answers the daemon's backwards invocations (invoke/llm, invoke/tool, ...).
#
#   bash tests/conformance/services.sh start     # idempotent; writes $STATE/env (format: see NOTES.md)
#   bash tests/conformance/services.sh status
#   bash tests/conformance/services.sh stop      # stops daemon (+ the plugin processes it launched), redis, postgres
#   bash tests/conformance/services.sh stop-daemon     # stop only the daemon (+ its plugin processes); `start` restarts it
#   bash tests/conformance/services.sh restart-daemon  # stop + start only the daemon (postgres/redis keep state)
#   bash tests/conformance/services.sh start-node2   # a second daemon node on the same PostgreSQL, Redis and
#                                                    # plugin storage (a two-node cluster); needs `start` first
#   bash tests/conformance/services.sh stop-node2
#   bash tests/conformance/services.sh clean     # stop + delete $STATE
#   bash tests/conformance/services.sh env       # print the env file path
#
# Knobs (environment):
#   OPENAI_TRIGGER_CACHE           cache dir used by setup.sh (default <this clone>/target/conformance-cache)
#   OPENAI_TRIGGER_CONFORMANCE_DIR state dir (default ${TMPDIR:-/tmp}/openai-trigger-conformance)
#   OT_PG_PORT OT_REDIS_PORT OT_DAEMON_HTTP_PORT OT_DAEMON_DEBUG_PORT   ports (55432 56379 55002 55003)
#   OT_DAEMON2_HTTP_PORT           the second node's HTTP port (55012)
#   OT_INNER_API_PORT              the fake Dify inner API (fake_inner_api.py: the daemon's DIFY_INNER_API_URL, for
#                                  plugins' backwards invocations; started with the daemon, stopped by `stop`) (55091)
#   OT_PLUGIN_MAX_EXECUTION_TIMEOUT  daemon-side per-request timeout in s (default 120; daemon default 600)
#   OT_DAEMON_LOG_LEVEL            the daemon's LOG_LEVEL (default DEBUG; the benchmark compares INFO)
#   OT_DAEMON_PPROF                true: the daemon serves Go's /debug/pprof on its HTTP port (bench profiles)
#   OT_PIP_MIRROR_URL              the daemon's PIP_MIRROR_URL: where `uv pip install -i` finds requirements (run.sh
#                                  serves dist/pypi on loopback there, standing in for PyPI)
#   OT_VERIFY_SIGNATURES=1         run the daemon with FORCE_VERIFYING_SIGNATURE=true and third-party
#                                  verification on, using the PEM public keys in OT_THIRD_PARTY_PUBLIC_KEYS
#                                  (comma-separated paths; see NOTES.md §signatures)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DAEMON_COMMIT=bdb5642a19009c944b78eca12f3d176801a4a8be
CACHE="${OPENAI_TRIGGER_CACHE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/conformance-cache}"
DAEMON_BIN="$CACHE/daemon-${DAEMON_COMMIT:0:8}/dify-plugin-daemon"
CLI_BIN="$CACHE/daemon-${DAEMON_COMMIT:0:8}/dify"
UV_BIN="$CACHE/uv/venv/bin/uv"
PY312_DIR="$CACHE/py312-bin"
STATE="${OPENAI_TRIGGER_CONFORMANCE_DIR:-${TMPDIR:-/tmp}/openai-trigger-conformance}"
ENV_FILE="$STATE/env"

PG_PORT="${OT_PG_PORT:-55432}"
REDIS_PORT="${OT_REDIS_PORT:-56379}"
HTTP_PORT="${OT_DAEMON_HTTP_PORT:-55002}"
DEBUG_PORT="${OT_DAEMON_DEBUG_PORT:-55003}"
HTTP_PORT2="${OT_DAEMON2_HTTP_PORT:-55012}"
INNER_API_PORT="${OT_INNER_API_PORT:-55091}"
HOST=127.0.0.1

# Fixed, test-only secrets (everything listens on loopback only).
PG_PASSWORD=conformance-pg-pass
REDIS_PASSWORD=conformance-redis-pass
SERVER_KEY=openai-trigger-conformance-server-key
INNER_API_KEY=openai-trigger-conformance-inner-api-key
# Any UUID works; tenant_id columns are `uuid` typed in the daemon's tables, so it must be a UUID.
TENANT_ID=5e0c1c4e-7b7a-4c39-9a51-0a1b2c3d4e5f
DB_NAME=dify_plugin

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] FATAL: %s\n' "$*" >&2; exit 1; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

port_open() { # host port -> 0 if something accepts connections
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # seconds description command...
  local secs=$1 what=$2; shift 2
  local end=$(( $(date +%s) + secs ))
  until "$@"; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.3
  done
}

start_pg() {
  local bin; bin=$(pg_bin); [ -n "$bin" ] || die "PostgreSQL not installed; run setup.sh"
  local data="$STATE/pg/data" sock="$STATE/pg/sock"
  mkdir -p "$STATE/pg"; chown postgres:postgres "$STATE/pg"
  runuser -u postgres -- test -w "$STATE/pg" \
    || die "user postgres cannot reach $STATE/pg (a parent dir is not traversable); set OPENAI_TRIGGER_CONFORMANCE_DIR"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initdb $data"
    install -d -o postgres -g postgres -m 0700 "$data"
    printf '%s\n' "$PG_PASSWORD" > "$STATE/pg/pwfile"; chown postgres "$STATE/pg/pwfile"; chmod 600 "$STATE/pg/pwfile"
    runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --pwfile="$STATE/pg/pwfile" \
      --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$STATE/pg/initdb.log" 2>&1 \
      || { cat "$STATE/pg/initdb.log" >&2; die "initdb failed"; }
  fi
  install -d -o postgres -g postgres -m 0755 "$sock"
  if runuser -u postgres -- "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "postgres already running (port $PG_PORT)"
  else
    port_open "$HOST" "$PG_PORT" && die "port $PG_PORT (postgres) is taken by another process"
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$STATE/pg/postgres.log" -w -t 60 \
      -o "-c listen_addresses=$HOST -p $PG_PORT -c unix_socket_directories=$sock -c fsync=off -c full_page_writes=off" \
      start >/dev/null || { tail -20 "$STATE/pg/postgres.log" >&2; die "postgres did not start"; }
    log "postgres up on $HOST:$PG_PORT"
  fi
  local psql=(env PGPASSWORD="$PG_PASSWORD" "$bin/psql" -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE $DB_NAME" >/dev/null || die "CREATE DATABASE $DB_NAME failed"
    log "created database $DB_NAME"
  fi
}

start_redis() {
  mkdir -p "$STATE/redis"
  if pid_alive "$STATE/redis/redis.pid"; then log "redis already running (port $REDIS_PORT)"; return; fi
  port_open "$HOST" "$REDIS_PORT" && die "port $REDIS_PORT (redis) is taken by another process"
  redis-server --bind "$HOST" --port "$REDIS_PORT" --requirepass "$REDIS_PASSWORD" \
    --dir "$STATE/redis" --daemonize yes --pidfile "$STATE/redis/redis.pid" \
    --logfile "$STATE/redis/redis.log" --save '' --appendonly no >/dev/null \
    || die "redis-server failed to start"
  wait_for 20 redis port_open "$HOST" "$REDIS_PORT" || { tail -20 "$STATE/redis/redis.log" >&2; die "redis did not open $REDIS_PORT"; }
  log "redis up on $HOST:$REDIS_PORT"
}

uv_path() { # the real uv, or the opt-in 3.11 substitute wrapper (setup.sh, OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE=1)
  if [ -f "$CACHE/PY312_SUBSTITUTE" ]; then echo "$CACHE/uv/uv-wrapper"; else echo "$UV_BIN"; fi
}

daemon_path() { # PATH for the daemon and everything it spawns (uv, plugins): 3.12 first, no pyenv shims
  echo "$PY312_DIR:/usr/local/bin:/usr/bin:/bin"
}

daemon_env() {
  # Every variable the daemon validates as required (internal/types/app/config.go), plus what we pin.
  # Node 2 (`daemon_env 2`) shares PostgreSQL, Redis and the plugin storage root (installed packages,
  # and the plugins' persistent storage) with node 1, and has its own port and working directory.
  local node="${1:-1}"
  local work="$STATE/daemon" port="$HTTP_PORT" remote=true
  if [ "$node" = 2 ]; then work="$STATE/daemon2"; port="$HTTP_PORT2"; remote=false; fi
  cat <<EOF
SERVER_HOST=$HOST
SERVER_PORT=$port
SERVER_KEY=$SERVER_KEY
SERVER_TZ=UTC
GIN_MODE=release
PLATFORM=local
DIFY_INNER_API_URL=http://$HOST:$INNER_API_PORT
DIFY_INNER_API_KEY=$INNER_API_KEY
PLUGIN_REMOTE_INSTALLING_ENABLED=$remote
PLUGIN_REMOTE_INSTALLING_HOST=$HOST
PLUGIN_REMOTE_INSTALLING_PORT=$DEBUG_PORT
PLUGIN_STORAGE_TYPE=local
PLUGIN_STORAGE_LOCAL_ROOT=$STATE/daemon/storage
PLUGIN_INSTALLED_PATH=plugin
PLUGIN_WORKING_PATH=$work/cwd
PLUGIN_PACKAGE_CACHE_PATH=plugin_packages
PLUGIN_MEDIA_CACHE_PATH=$work/assets
PERSISTENCE_STORAGE_PATH=persistence
PLUGIN_MAX_EXECUTION_TIMEOUT=${OT_PLUGIN_MAX_EXECUTION_TIMEOUT:-120}
REDIS_HOST=$HOST
REDIS_PORT=$REDIS_PORT
REDIS_PASSWORD=$REDIS_PASSWORD
REDIS_DB=0
REDIS_USE_SSL=false
DB_TYPE=postgresql
DB_USERNAME=postgres
DB_PASSWORD=$PG_PASSWORD
DB_HOST=$HOST
DB_PORT=$PG_PORT
DB_DATABASE=$DB_NAME
DB_DEFAULT_DATABASE=postgres
DB_SSL_MODE=disable
PIP_MIRROR_AUTO_DETECT=false
PIP_MIRROR_URL=${OT_PIP_MIRROR_URL:-}
PYTHON_INTERPRETER_PATH=/usr/bin/python3
UV_PATH=$(uv_path)
UV_PYTHON_DOWNLOADS=never
PYTHON_ENV_INIT_TIMEOUT=120
PROMETHEUS_ENABLED=false
ENABLE_OTEL=false
LOG_OUTPUT_FORMAT=text
LOG_LEVEL=${OT_DAEMON_LOG_LEVEL:-DEBUG}
PPROF_ENABLED=${OT_DAEMON_PPROF:-false}
EOF
  if [ "${OT_VERIFY_SIGNATURES:-0}" = 1 ]; then
    [ -n "${OT_THIRD_PARTY_PUBLIC_KEYS:-}" ] || die "OT_VERIFY_SIGNATURES=1 needs OT_THIRD_PARTY_PUBLIC_KEYS"
    echo FORCE_VERIFYING_SIGNATURE=true
    echo THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED=true
    echo "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS=$OT_THIRD_PARTY_PUBLIC_KEYS"
  else
    echo FORCE_VERIFYING_SIGNATURE=false
  fi
}

# A daemon brought back by `start` after `stop-daemon`, or by `restart-daemon`, keeps the signature
# mode it was first started with (the env file exists only while services are up), unless the caller
# sets OT_VERIFY_SIGNATURES explicitly.
inherit_pip_mirror() {
  [ -z "${OT_PIP_MIRROR_URL:-}" ] && [ -f "$ENV_FILE" ] || return 0
  OT_PIP_MIRROR_URL=$(sed -n 's/^DIFY_DAEMON_PIP_MIRROR_URL=//p' "$ENV_FILE")
}

inherit_signature_mode() {
  [ -z "${OT_VERIFY_SIGNATURES:-}" ] && [ -f "$ENV_FILE" ] || return 0
  if grep -qx 'DIFY_DAEMON_FORCE_VERIFYING_SIGNATURE=true' "$ENV_FILE"; then
    OT_VERIFY_SIGNATURES=1
    OT_THIRD_PARTY_PUBLIC_KEYS=$(sed -n 's/^DIFY_DAEMON_THIRD_PARTY_PUBLIC_KEYS=//p' "$ENV_FILE")
    log "keeping signature verification on (public keys: $OT_THIRD_PARTY_PUBLIC_KEYS)"
  fi
}

http_ok() { curl -fsS --noproxy '*' -o /dev/null --max-time 2 "http://$HOST:$HTTP_PORT/health/check"; }
inner_api_ok() { curl -fsS --noproxy "*" -o /dev/null --max-time 2 "http://$HOST:$INNER_API_PORT/_fake/health" 2>/dev/null; }

# The fake Dify inner API (fake_inner_api.py, stdlib Python) on loopback: what the daemon calls for a plugin's
# backwards invocations (DIFY_INNER_API_URL, X-Inner-Api-Key = DIFY_INNER_API_KEY). Its own session, so stopping
# the daemon's process group leaves it alone; the daemon and node 2 share it.
start_inner_api() {
  local dir="$STATE/inner-api"
  mkdir -p "$dir"
  if pid_alive "$dir/inner-api.pid" && inner_api_ok; then log "fake inner API already running (port $INNER_API_PORT)"; return; fi
  port_open "$HOST" "$INNER_API_PORT" && die "port $INNER_API_PORT (fake inner API) is taken by another process"
  (
    exec setsid env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 \
      "${OT_PYTHON:-python3}" "$HERE/fake_inner_api.py" --host "$HOST" --port "$INNER_API_PORT" --key "$INNER_API_KEY" \
      >>"$dir/inner-api.log" 2>&1 </dev/null
  ) &
  echo $! > "$dir/inner-api.pid"
  wait_for 20 "fake inner API" inner_api_ok \
    || { tail -20 "$dir/inner-api.log" >&2; die "the fake inner API did not answer on $HOST:$INNER_API_PORT"; }
  log "fake inner API up on $HOST:$INNER_API_PORT (pid $(cat "$dir/inner-api.pid"), log $dir/inner-api.log)"
}

stop_inner_api() {
  local dir="$STATE/inner-api"
  [ -f "$dir/inner-api.pid" ] || return 0
  local pid; pid=$(cat "$dir/inner-api.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_for 10 "fake inner API exit" bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    log "fake inner API stopped"
  fi
  rm -f "$dir/inner-api.pid"
}

start_daemon() {
  [ -x "$DAEMON_BIN" ] || die "daemon binary $DAEMON_BIN missing; run setup.sh"
  [ -x "$(uv_path)" ] || die "uv $(uv_path) missing; run setup.sh"
  [ -x "$PY312_DIR/python3.12" ] || [ -f "$CACHE/PY312_SUBSTITUTE" ] || die "$PY312_DIR/python3.12 missing; run setup.sh"
  local work="$STATE/daemon"
  mkdir -p "$work/cwd" "$work/storage" "$work/assets"
  if pid_alive "$work/daemon.pid"; then log "daemon already running (pid $(cat "$work/daemon.pid"))"; return; fi
  # The daemon's uv cache (<PLUGIN_WORKING_PATH>/.uv-cache) keeps wheels by name and version, and it
  # reuses an installed plugin's venv by package checksum; our wheel keeps version 0.1.0 from one
  # local run to the next. Forget both, so every run installs the wheel it just built (users never
  # meet this: a release changes the version).
  rm -rf "$work/cwd/hookwright"
  if [ -d "$work/cwd/.uv-cache" ]; then
    find "$work/cwd/.uv-cache" -depth -iname '*hookwright*openai*trigger*' -exec rm -rf {} + 2>/dev/null || true
  fi
  port_open "$HOST" "$HTTP_PORT" && die "port $HTTP_PORT (daemon http) is taken by another process"
  port_open "$HOST" "$DEBUG_PORT" && die "port $DEBUG_PORT (daemon debugging) is taken by another process"
  [ -x "$CLI_BIN" ] || die "daemon CLI $CLI_BIN missing; run setup.sh"
  daemon_env > "$work/daemon.env"
  # The server does not create its tables (upstream #672 moved AutoMigrate to `commandline migrate`;
  # the official image runs `/app/commandline migrate && exec /app/main`). Idempotent.
  ( cd "$work" && env -i PATH="$(daemon_path)" HOME="$HOME" LANG=C.UTF-8 \
      bash -c 'set -a; . ./daemon.env; set +a; exec "$0" migrate' "$CLI_BIN" ) >"$work/migrate.log" 2>&1 \
    || { tail -20 "$work/migrate.log" >&2; die "dify migrate failed"; }
  spawn_daemon "$work"
  if ! wait_for 90 "daemon http" http_ok; then
    tail -40 "$work/daemon.log" >&2; die "daemon did not answer /health/check on $HOST:$HTTP_PORT (log: $work/daemon.log)"
  fi
  wait_for 30 "daemon debugging port" port_open "$HOST" "$DEBUG_PORT" \
    || { tail -40 "$work/daemon.log" >&2; die "daemon did not open the remote-debugging port $DEBUG_PORT"; }
  log "daemon up: http $HOST:$HTTP_PORT, debugging tcp $HOST:$DEBUG_PORT (pid $(cat "$work/daemon.pid"), log $work/daemon.log)"
}

# spawn_daemon <work dir>: the daemon in the background with <work>/daemon.env, in its own session and
# process group (so `stop` ends it and the plugin processes it spawned together), with a clean
# environment (`env -i` + daemon.env + PATH/HOME/LANG: no proxies etc.); pid and pgid in <work>.
spawn_daemon() {
  local work=$1
  (
    cd "$work"
    exec setsid env -i PATH="$(daemon_path)" HOME="$HOME" LANG=C.UTF-8 \
      bash -c 'set -a; . ./daemon.env; set +a; exec "$0"' "$DAEMON_BIN" >>"$work/daemon.log" 2>&1 </dev/null
  ) &
  echo $! > "$work/daemon.pid"
  sleep 0.2
  ps -o pgid= -p "$(cat "$work/daemon.pid")" | tr -d ' ' > "$work/daemon.pgid" || true
}

start_node2() {
  local work="$STATE/daemon2"
  mkdir -p "$work/cwd" "$work/assets"
  if pid_alive "$work/daemon.pid"; then log "node 2 already running (pid $(cat "$work/daemon.pid"))"; return; fi
  rm -rf "$work/cwd/hookwright"
  if [ -d "$work/cwd/.uv-cache" ]; then
    find "$work/cwd/.uv-cache" -depth -iname '*hookwright*openai*trigger*' -exec rm -rf {} + 2>/dev/null || true
  fi
  port_open "$HOST" "$HTTP_PORT2" && die "port $HTTP_PORT2 (node 2 http) is taken by another process"
  daemon_env 2 > "$work/daemon.env"
  spawn_daemon "$work"
  if ! wait_for 90 "node 2 http" curl -fsS --noproxy '*' -o /dev/null --max-time 2 "http://$HOST:$HTTP_PORT2/health/check"; then
    tail -40 "$work/daemon.log" >&2; die "node 2 did not answer /health/check on $HOST:$HTTP_PORT2 (log: $work/daemon.log)"
  fi
  log "node 2 up: http $HOST:$HTTP_PORT2 (pid $(cat "$work/daemon.pid"), log $work/daemon.log)"
}

stop_node2() {
  local work="$STATE/daemon2"
  [ -f "$work/daemon.pid" ] || return 0
  local pid; pid=$(cat "$work/daemon.pid")
  if kill -0 "$pid" 2>/dev/null; then
    local pg; pg=$(cat "$work/daemon.pgid" 2>/dev/null || true); [ -n "$pg" ] || pg=$pid
    [ "$pg" = "$(ps -o pgid= -p $$ | tr -d ' ')" ] && pg=$pid
    kill -TERM -- "-$pg" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait_for 15 "node 2 exit" bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
    kill -KILL -- "-$pg" 2>/dev/null || true
    log "node 2 stopped"
  fi
  rm -f "$work/daemon.pid" "$work/daemon.pgid"
}

write_env() {
  cat > "$ENV_FILE" <<EOF
# written by tests/conformance/services.sh start — KEY=VALUE, no quoting, '#' comments; bash-sourceable
DIFY_DAEMON_URL=http://$HOST:$HTTP_PORT
DIFY_DAEMON_HTTP_HOST=$HOST
DIFY_DAEMON_HTTP_PORT=$HTTP_PORT
DIFY_DAEMON_DEBUG_HOST=$HOST
DIFY_DAEMON_DEBUG_PORT=$DEBUG_PORT
DIFY_DAEMON_SERVER_KEY=$SERVER_KEY
DIFY_DAEMON_TENANT_ID=$TENANT_ID
DIFY_DAEMON_LOG=$STATE/daemon/daemon.log
DIFY_DAEMON_WORKING_PATH=$STATE/daemon/cwd
DIFY_DAEMON_PID=$(cat "$STATE/daemon/daemon.pid")
DIFY_DAEMON_COMMIT=$DAEMON_COMMIT
DIFY_DAEMON_CLI=$CLI_BIN
DIFY_DAEMON_PY312_SUBSTITUTE=$([ -f "$CACHE/PY312_SUBSTITUTE" ] && echo true || echo false)
DIFY_DAEMON_FORCE_VERIFYING_SIGNATURE=$([ "${OT_VERIFY_SIGNATURES:-0}" = 1 ] && echo true || echo false)
DIFY_DAEMON_THIRD_PARTY_PUBLIC_KEYS=${OT_THIRD_PARTY_PUBLIC_KEYS:-}
DIFY_DAEMON_PIP_MIRROR_URL=${OT_PIP_MIRROR_URL:-}
DIFY_DAEMON2_HTTP_PORT=$HTTP_PORT2
DIFY_FAKE_INNER_API_URL=http://$HOST:$INNER_API_PORT
DIFY_FAKE_INNER_API_LOG=$STATE/inner-api/inner-api.log
DIFY_DAEMON2_LOG=$STATE/daemon2/daemon.log
DIFY_DAEMON2_WORKING_PATH=$STATE/daemon2/cwd
REDIS_HOST=$HOST
REDIS_PORT=$REDIS_PORT
REDIS_PASSWORD=$REDIS_PASSWORD
PG_HOST=$HOST
PG_PORT=$PG_PORT
PG_USER=postgres
PG_PASSWORD=$PG_PASSWORD
PG_DATABASE=$DB_NAME
EOF
  log "env file: $ENV_FILE"
}

stop_daemon() {
  local work="$STATE/daemon"
  if [ -f "$work/daemon.pid" ]; then
    local pid; pid=$(cat "$work/daemon.pid")
    if kill -0 "$pid" 2>/dev/null; then
      # the daemon was started under setsid: its process group holds it and the plugin processes it spawned
      local pg; pg=$(cat "$work/daemon.pgid" 2>/dev/null || true); [ -n "$pg" ] || pg=$pid
      [ "$pg" = "$(ps -o pgid= -p $$ | tr -d ' ')" ] && pg=$pid   # never signal our own group
      kill -TERM -- "-$pg" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      wait_for 15 "daemon exit" bash -c "! kill -0 $pid 2>/dev/null" || kill -KILL "$pid" 2>/dev/null || true
      kill -KILL -- "-$pg" 2>/dev/null || true   # plugin processes that outlived the daemon
      log "daemon stopped"
    fi
    rm -f "$work/daemon.pid" "$work/daemon.pgid"
  fi
}

stop_all() {
  stop_node2
  stop_daemon
  stop_inner_api
  if pid_alive "$STATE/redis/redis.pid"; then
    local rpid; rpid=$(cat "$STATE/redis/redis.pid")
    kill -TERM "$rpid" 2>/dev/null || true
    wait_for 10 "redis exit" bash -c "! kill -0 $rpid 2>/dev/null" || kill -KILL "$rpid" 2>/dev/null || true
    log "redis stopped"
  fi
  local bin; bin=$(pg_bin)
  if [ -n "$bin" ] && [ -f "$STATE/pg/data/PG_VERSION" ] && \
     runuser -u postgres -- "$bin/pg_ctl" -D "$STATE/pg/data" status >/dev/null 2>&1; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$STATE/pg/data" -m fast -w stop >/dev/null && log "postgres stopped"
  fi
  rm -f "$ENV_FILE"
}

status() {
  local rc=0
  local bin; bin=$(pg_bin)
  if [ -n "$bin" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$STATE/pg/data" status >/dev/null 2>&1; then echo "postgres: up ($HOST:$PG_PORT)"; else echo "postgres: down"; rc=1; fi
  if pid_alive "$STATE/redis/redis.pid"; then echo "redis:    up ($HOST:$REDIS_PORT)"; else echo "redis:    down"; rc=1; fi
  if pid_alive "$STATE/daemon/daemon.pid" && http_ok; then echo "daemon:   up (http $HOST:$HTTP_PORT, debugging $HOST:$DEBUG_PORT)"; else echo "daemon:   down"; rc=1; fi
  if pid_alive "$STATE/inner-api/inner-api.pid" && inner_api_ok; then echo "inner api: up (fake, $HOST:$INNER_API_PORT)"; else echo "inner api: down"; rc=1; fi
  [ -f "$ENV_FILE" ] && echo "env file: $ENV_FILE"
  return $rc
}

case "${1:-}" in
  start)
    [ "$(id -u)" = 0 ] || die "run as root (postgres is run via runuser -u postgres)"
    mkdir -p "$STATE"; chmod 0755 "$STATE"
    inherit_signature_mode
    inherit_pip_mirror
    start_pg
    start_redis
    start_inner_api
    start_daemon
    write_env
    ;;
  stop) stop_all ;;
  stop-daemon)
    # Only the daemon (and the plugin processes it launched); `start` brings it back (PostgreSQL and Redis keep
    # running, so debugging keys and installations survive). The env file stays, since ports do not change.
    stop_daemon
    ;;
  restart-daemon)
    # Only the daemon (and the plugin processes it launched); PostgreSQL and Redis keep running, so
    # debugging keys (Redis) and installations (PostgreSQL) survive, as in a daemon-only restart in production.
    [ "$(id -u)" = 0 ] || die "run as root"
    [ -f "$ENV_FILE" ] || die "services are not started (no $ENV_FILE); run: $0 start"
    inherit_signature_mode
    inherit_pip_mirror
    stop_daemon
    start_inner_api
    wait_for 15 "ports free" bash -c "! (exec 3<>/dev/tcp/$HOST/$HTTP_PORT) 2>/dev/null && ! (exec 3<>/dev/tcp/$HOST/$DEBUG_PORT) 2>/dev/null" \
      || die "daemon ports $HTTP_PORT/$DEBUG_PORT still taken after stopping the daemon"
    start_daemon
    write_env
    ;;
  start-node2)
    [ "$(id -u)" = 0 ] || die "run as root"
    [ -f "$ENV_FILE" ] || die "services are not started (no $ENV_FILE); run: $0 start"
    inherit_signature_mode
    inherit_pip_mirror
    start_node2
    ;;
  stop-node2) stop_node2 ;;
  clean) stop_all; rm -rf "$STATE"; log "removed $STATE" ;;
  status) status ;;
  env) echo "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|stop-daemon|restart-daemon|status|clean|env" >&2; exit 2 ;;
esac
