#!/usr/bin/env bash
# The whole pipeline on this machine, on the defaults of hooklake.example.toml: a tansu
# broker with SQLite storage under .hooklake/ (durable across restarts), `hooklake ingest`
# on 127.0.0.1:8080, and `hooklake sink` loading the tables under lake/ every 30 seconds.
# Ctrl-C stops ingest, loads what is left with one last `hooklake sink --once`, and stops.
#
#   scripts/dev.sh                      with hooklake.example.toml
#   scripts/dev.sh --config my.toml     with your configuration (its kafka.brokers must be
#                                       127.0.0.1:<port>: the broker is started there)
#
# Installs what is missing first (Debian packages, tansu, the Python venv with pyiceberg
# for reading the tables), so the first run takes a while and later ones seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

config="hooklake.example.toml"
if [ "${1:-}" = "--config" ] && [ -n "${2:-}" ]; then config="$2"; fi
[ -f "$config" ] || { echo "dev.sh: no such configuration: $config" >&2; exit 2; }

ensure_apt
if ! tansu_installed; then ensure_tansu & tansu_pid=$!; fi
ensure_venv
say "building hooklake"
cargo build --locked --bin hooklake
[ -n "${tansu_pid:-}" ] && { say "waiting for the tansu install"; wait "$tansu_pid"; }
bin="$REPO/target/debug/hooklake"
"$bin" check-config --config "$config" >/dev/null

# The broker listens where the configuration says.
brokers="$("$HOOKLAKE_PYTHON" -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["kafka"]["brokers"])' "$config")"
case "$brokers" in
  127.0.0.1:*|localhost:*) port="${brokers##*:}" ;;
  *) echo "dev.sh: kafka.brokers = $brokers; dev.sh runs the broker on 127.0.0.1, use 127.0.0.1:<port>" >&2; exit 2 ;;
esac
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "dev.sh: 127.0.0.1:$port is taken (another broker or dev.sh?)" >&2; exit 1
fi

mkdir -p .hooklake lake
pids=()
stop_all() {
  trap - INT TERM EXIT
  say "stopping ingest and the sink service"
  for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
  say "last run: loading what is left"
  "$bin" sink --once --config "$config" || true
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
}
trap stop_all INT TERM EXIT

say "tansu on 127.0.0.1:$port (storage .hooklake/tansu.db, log .hooklake/tansu.log)"
(cd .hooklake && RUST_LOG=warn exec "$HOOKLAKE_TANSU" broker \
  --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine "sqlite://tansu.db" >tansu.log 2>&1) &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

export RUST_LOG="${RUST_LOG:-info,librdkafka=warn}"
"$bin" ingest --config "$config" & pids+=($!)
HOOKLAKE__SINK__SCHEDULE="${HOOKLAKE__SINK__SCHEDULE:-every 30s}" "$bin" sink --config "$config" & pids+=($!)

cat <<EOF

hooklake is running ($config):
  POST webhooks to   http://127.0.0.1:8080/webhook/<source>
  e.g.               curl -i http://127.0.0.1:8080/webhook/orders -H 'content-type: application/json' \\
                       -H 'x-api-key: dev-orders-key' -d '{"event_type":"order.created","order_id":"o-1"}'
  metrics            http://127.0.0.1:9090/metrics (ingest), http://127.0.0.1:9091/metrics (sink)
  run the sink now   curl -X POST http://127.0.0.1:9091/runs
  tables             Iceberg SQL catalog lake/catalog.db, data under lake/warehouse
                     (read them with pyiceberg: $HOOKLAKE_PYTHON; see README.md)
Ctrl-C loads what is left and stops.

EOF
wait -n "${pids[@]}" || true
echo "dev.sh: a component exited; stopping" >&2
