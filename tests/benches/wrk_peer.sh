#!/usr/bin/env bash
# Ingest against svix-bridge the way issue 18 measured them: wrk's closed loop (one thread,
# C connections) sends one pre-signed Standard Webhooks request with a 1 KiB JSON body to
# each target in turn, on the same broker (`hooklake broker`, SQLite storage, topics of 3
# partitions). A sibling of the ingest benchmark (tests/benches/ingest.rs), whose load
# generator is a Rust client that costs 5-8 times wrk's CPU per request; with wrk more of
# the two cores is left to the targets and the broker.
#
#   HOOKLAKE_BIN=target/release/hooklake BENCH_SVIX_BRIDGE=/path/to/svix-bridge \
#     [BENCH_PLAIN=target/release/deps/ingest-<hash>] [BENCH_LEVELS="64 256 1024"] \
#     [BENCH_ROUNDS=2] [BENCH_SECONDS=10] [BENCH_SLICES=5] [BENCH_BROKER_DELAY_MS=20] \
#     [BENCH_INGEST_PROPERTIES="linger.ms=10"] [BENCH_INGEST_WORKERS=1] [BENCH_IDS=1000] \
#     [BENCH_BROKER_BIN=target/release/hooklake] [BENCH_PIN=1] [BENCH_FLOOR=1|2] \
#     tests/benches/wrk_peer.sh
#
# BENCH_PLAIN is the ingest benchmark's executable (`cargo bench -p hooklake-tests --bench
# ingest --no-run` prints it); with it, its plain axum server (`--serve-plain`) runs as a
# third target. BENCH_FLOOR=1 (with BENCH_PLAIN) adds its `--serve-floor` target too:
# ingest's envelope and publisher (the idempotent producer with ingest's settings) behind
# plain axum, answering after the ack and checking nothing, to a topic of its own: the most
# ingest could reach here if its own checks cost nothing. BENCH_FLOOR=2 adds a second one,
# `floor-peer`, that produces the same records as svix-bridge does (librdkafka's defaults,
# not idempotent, no key): what ingest's delivery guarantees cost. Each target is warmed
# for 3 s at each level before its measured run. The signature is made again before each
# run, so no request falls outside the 5-minute tolerance of the Standard Webhooks scheme.
#
# BENCH_BROKER_DELAY_MS puts tests/py/delay_proxy.py between the broker and every client,
# delaying each answer (acks included) by that many ms, as a cluster whose acks=all
# crosses zones would; the broker's column then counts the proxy's CPU as well.
# BENCH_BROKER_BIN runs the broker from another build than ingest's (default: HOOKLAKE_BIN).
# The image's build (`--no-default-features --features jemalloc`, deploy/Dockerfile) has no
# `hooklake broker`; so that it can be measured, the broker comes from a default build.
# BENCH_INGEST_PROPERTIES (space-separated key=value) goes to ingest's [kafka.properties]
# and BENCH_INGEST_WORKERS to its ingest.worker_threads; unset, ingest runs its defaults.
#
# BENCH_SLICES=S splits each target's BENCH_SECONDS into S slices, and the targets take
# turns slice by slice (ingest, the peer, ingest, ...), so that a change in the VM's speed
# during a round (steal time comes in phases of seconds to minutes here) falls on both
# targets instead of on whichever ran then. The default, 1, is one run per target.
#
# BENCH_PIN=1 gives the targets the last CPU and everything else (the broker, the delay
# proxy, wrk) the others, with `taskset`: a target then runs on a core of its own, as an
# ingest replica does in production, where the clients and the Kafka cluster are other
# machines. Each target then sizes its runtime by that one CPU (both read the affinity
# mask). Each row then ends with how busy each side was: the target's core (its process
# µs × its rate) and the others' (wrk's and the broker's µs × the rate ÷ their CPUs), so it
# says which side set the rate. The default, 0, lets every process run on every core, the
# issue's method.
#
# Per target, level and round: answered requests per second (non-2xx answers are counted
# apart and flagged), wrk's p50 and p99 (with slices, the worst slice's), and the CPU time
# per answered request of wrk, the target's process and the broker (from /proc and `perf
# stat -e task-clock` on wrk); for ingest also its mean records per batch and the p99 of its
# records' wait in the producer (its /metrics after the last slice), and the records it
# sent per produce request over the round (its webhooks answered 200 ÷ its produce
# requests, from /metrics before the round and a statistics interval after it). After each
# level, ingest ÷ svix-bridge for each round; at the end, each one's best rate and
# best ÷ best; then each target's peak RSS.
#
# BENCH_BROKER_PERF=DIR records the broker with `perf record -e cpu-clock -g` during each
# target's last slice (DIR/<target>-<conns>-<round>.data) and prints, under the target's
# row, where the broker's samples went: inside `sqlite3_step` (of it the WAL checkpoints,
# their fsyncs apart, and the commits' WAL writes), else the scheduler and futexes (context
# switches), else the rest (Kafka decoding, the runtime, sockets), each as a share of its samples and
# as µs per record (the share × the broker's µs per record of that row, which with
# BENCH_BROKER_DELAY_MS counts the delay proxy too, so compare the shares there).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
ensure_apt wrk linux-perf curl
ensure_venv
[ -z "${BENCH_BROKER_PERF:-}" ] || mkdir -p "$BENCH_BROKER_PERF"

: "${HOOKLAKE_BIN:?release hooklake binary}"
BROKER_BIN="${BENCH_BROKER_BIN:-$HOOKLAKE_BIN}"
: "${BENCH_SVIX_BRIDGE:?svix-bridge binary (BENCHMARKS.md, Against svix-bridge)}"
LEVELS="${BENCH_LEVELS:-16 64 128 256 512 1024}"
ROUNDS="${BENCH_ROUNDS:-2}"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
SLICES="${BENCH_SLICES:-1}"
SLICE_SECONDS="$((SECONDS_PER_RUN / SLICES))"
[ "$((SLICE_SECONDS * SLICES))" = "$SECONDS_PER_RUN" ] || {
  echo "BENCH_SECONDS ($SECONDS_PER_RUN) must be a multiple of BENCH_SLICES ($SLICES)" >&2
  exit 1
}
# pin_target / pin_rest: the command prefixes that place the targets and everything else.
pin_target=() pin_rest=() rest_cpus=0
if [ "${BENCH_PIN:-0}" = 1 ]; then
  cpus="$(nproc)"
  [ "$cpus" -ge 2 ] || { echo "BENCH_PIN=1 needs at least 2 CPUs" >&2; exit 1; }
  rest_cpus=$((cpus - 1))
  pin_target=(taskset -c "$((cpus - 1))") pin_rest=(taskset -c "0-$((cpus - 2))")
  ensure_apt util-linux
fi
SECRET_B64="aG9va2xha2UtYmVuY2htYXJrLXNpZ25pbmctc2VjcmV0" # base64("hooklake-benchmark-signing-secret")

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# broker_port is where the clients go: the broker's own port, or the delay proxy's, which
# the broker then advertises in its metadata.
broker_port="$(free_port)"
delay_ms="${BENCH_BROKER_DELAY_MS:-0}"
listen_port="$broker_port" advertise=() proxy_pid=""
[ "$delay_ms" != 0 ] && listen_port="$(free_port)" advertise=(--advertise "127.0.0.1:$broker_port")
"${pin_rest[@]}" "$BROKER_BIN" broker --listen "127.0.0.1:$listen_port" "${advertise[@]}" --data "$work/broker" \
  >"$work/broker.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
wait_port "$listen_port"
if [ "$delay_ms" != 0 ]; then
  "${pin_rest[@]}" "$HOOKLAKE_PYTHON" "$REPO/tests/py/delay_proxy.py" "$broker_port" "$listen_port" "$delay_ms" \
    >"$work/proxy.log" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
  wait_port "$broker_port"
fi

# hooklake's defaults, as the ingest benchmark runs it with BENCH_INGEST_WORKERS= (one
# runtime thread per CPU). Ingest creates its topics before it listens
# (`kafka.create_topics`, `kafka.topic_partitions` = 3): the second source, never sent to,
# is only there so that the peer's topic is made the same way.
# The floor targets BENCH_FLOOR asks for, as name:source:producer: each serves one more
# source of ingest's configuration (`--serve-floor` reads the same file).
case "${BENCH_FLOOR:-0}" in
  0) floors=() ;;
  1) floors=("floor:floor:ingest") ;;
  2) floors=("floor:floor:ingest" "floor-peer:floorpeer:peer") ;;
  *) echo "BENCH_FLOOR: 0, 1 or 2, not $BENCH_FLOOR" >&2; exit 1 ;;
esac
floor_names=("${floors[@]%%:*}")
[ "${#floors[@]}" = 0 ] || : "${BENCH_PLAIN:?BENCH_FLOOR needs BENCH_PLAIN (the ingest benchmark executable)}"

ingest_port="$(free_port)" ingest_admin_port="$(free_port)"
cat >"$work/ingest.toml" <<TOML
[kafka]
brokers = "127.0.0.1:$broker_port"
[ingest]
listen = "127.0.0.1:$ingest_port"
admin_listen = "127.0.0.1:$ingest_admin_port"
${BENCH_INGEST_WORKERS:+worker_threads = $BENCH_INGEST_WORKERS}
[kafka.properties]
$(for kv in ${BENCH_INGEST_PROPERTIES:-}; do printf '"%s" = "%s"\n' "${kv%%=*}" "${kv#*=}"; done)
[sources.nectar]
topic = "bench.nectar"
auth = { type = "standard_webhooks", secrets = ["whsec_$SECRET_B64"] }
[sources.peer]
topic = "bench.peer"
auth = { type = "standard_webhooks", secrets = ["whsec_$SECRET_B64"] }
$(for f in "${floors[@]}"; do
  IFS=: read -r _ source _ <<<"$f"
  printf '[sources.%s]\ntopic = "bench.%s"\nauth = { type = "none" }\n' "$source" "$source"
done)
TOML
"${pin_target[@]}" "$HOOKLAKE_BIN" ingest --config "$work/ingest.toml" >"$work/ingest.log" 2>&1 &
pids+=("$!")
targets=("ingest:$ingest_port:$!")
wait_port "$ingest_port" || { tail -n 5 "$work/ingest.log" >&2; exit 1; }

peer_port="$(free_port)"
cat >"$work/peer.yaml" <<YAML
http_listen_address: "127.0.0.1:$peer_port"
log_level: "info"
receivers:
  - name: "bench"
    input:
      type: "webhook"
      path_id: "nectar"
      verification:
        type: "svix"
        endpoint_secret: "whsec_$SECRET_B64"
    output:
      type: "kafka"
      kafka_bootstrap_brokers: "127.0.0.1:$broker_port"
      kafka_topic: "bench.peer"
      kafka_security_protocol: "plaintext"
YAML
"${pin_target[@]}" "$BENCH_SVIX_BRIDGE" --cfg-file "$work/peer.yaml" >"$work/peer.log" 2>&1 &
pids+=("$!")
targets+=("svix-bridge:$peer_port:$!")

if [ -n "${BENCH_PLAIN:-}" ]; then
  plain_port="$(free_port)"
  "${pin_target[@]}" "$BENCH_PLAIN" --serve-plain "$plain_port" >"$work/plain.log" 2>&1 &
  pids+=("$!")
  targets+=("plain-axum:$plain_port:$!")
fi
for f in "${floors[@]}"; do
  IFS=: read -r name source producer <<<"$f"
  port="$(free_port)"
  "${pin_target[@]}" "$BENCH_PLAIN" --serve-floor "$port" "$work/ingest.toml" "$source" "$producer" \
    >"$work/$name.log" 2>&1 &
  pids+=("$!")
  targets+=("$name:$port:$!")
done
for t in "${targets[@]}"; do
  port="${t#*:}"
  wait_port "${port%%:*}"
done

# The requests, signed now with the Standard Webhooks library (tests/py/sign.py, as the
# integration tests sign): the same body shape as the ingest benchmark's. With BENCH_IDS=1
# (the default, the issue's method) wrk sends one request over and over, so every ingest
# record has the same key, `wrk-1`, and goes to the same partition; with BENCH_IDS=N wrk
# sends N requests with ids wrk-1..wrk-N in turn (made up front, a string each), which
# ingest spreads over the topic's partitions as it would distinct webhooks.
sign() {
  "$HOOKLAKE_PYTHON" - "$work/request.lua" "$REPO/tests/py" "whsec_$SECRET_B64" "${BENCH_IDS:-1}" <<'PY'
import sys, time
sys.path.insert(0, sys.argv[2])
from sign import sign
def signed(msg_id):
    head = '{"type":"meter.read","id":"%s","seq":1,"kWh":1.25,"pad":"' % msg_id
    body = head + "x" * (1024 - len(head) - 2) + '"}'
    headers = sign({"lib": "standardwebhooks", "secret": sys.argv[3], "msg_id": msg_id,
                    "timestamp": int(time.time()), "payload": body})
    return body, headers
ids = int(sys.argv[4])
with open(sys.argv[1], "w") as f:
    f.write('wrk.method = "POST"\nwrk.path = "/webhook/nectar"\n')
    if ids == 1:
        body, headers = signed("wrk-1")
        f.write("wrk.body = '%s'\n" % body)
        f.write('wrk.headers["content-type"] = "application/json"\n')
        for name, value in headers.items():
            f.write('wrk.headers["%s"] = "%s"\n' % (name, value))
    else:
        f.write("local bodies, formatted = {}, {}\n")
        for i in range(1, ids + 1):
            body, headers = signed("wrk-%d" % i)
            fields = ", ".join('["%s"] = "%s"' % kv for kv in headers.items())
            f.write("bodies[%d] = {'%s', {%s}}\n" % (i, body, fields))
        f.write("""local n = 0
init = function()
  for i, b in ipairs(bodies) do
    b[2]["content-type"] = "application/json"
    formatted[i] = wrk.format("POST", "/webhook/nectar", b[2], b[1])
  end
end
request = function()
  n = n % #formatted + 1
  return formatted[n]
end
""")
PY
}

# From one scrape of ingest's /metrics, "BATCH WAIT": its mean records per produce request
# over librdkafka's last statistics interval (5 s), what the broker's cost per record
# depends on (BENCHMARKS.md, "The broker is one queue"); and the p99 of how long its
# records waited in the producer for a request, in ms (the slowest broker): near the
# round trip, the partitions' windows are full (vendor/README.md, sixth change). "-" for
# what the scrape lacks.
# The interval of ingest's librdkafka statistics, in seconds (5 unless BENCH_INGEST_PROPERTIES
# sets statistics.interval.ms), which its produce request count lags by at most.
stats_seconds="$(awk -v props="${BENCH_INGEST_PROPERTIES:-}" 'BEGIN {
  s = 5; n = split(props, kv, " ")
  for (i = 1; i <= n; i++) if (kv[i] ~ /^statistics\.interval\.ms=/) { sub(/^[^=]*=/, "", kv[i]); s = kv[i] / 1000 }
  print s }')"

# From one scrape of ingest's /metrics, "ACCEPTED PRODUCE_REQUESTS": its webhooks answered
# 200 and its produce requests to every broker, so far.
ingest_counts() {
  curl -s "http://127.0.0.1:$ingest_admin_port/metrics" |
    awk '/^hooklake_ingest_requests_total\{.*status="200"/ {a += $2}
         /^hooklake_ingest_kafka_broker_produce_requests_total\{/ {p += $2}
         END {printf "%d %d\n", a, p}'
}

ingest_batch_and_wait() {
  curl -s "http://127.0.0.1:$ingest_admin_port/metrics" |
    awk '/^hooklake_ingest_kafka_batch_avg_messages\{topic="bench.nectar"\}/ {batch = $2}
         /^hooklake_ingest_kafka_broker_queue_wait_p99_seconds\{/ {if ($2 * 1000 > w) w = $2 * 1000; seen = 1}
         END {printf "%s %s\n", batch == "" ? "-" : batch, seen ? sprintf("%.1f", w) : "-"}'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The broker's CPU, and the delay proxy's when there is one.
broker_ticks() {
  local ticks
  ticks="$(cpu_ticks "$broker_pid")"
  [ -z "$proxy_pid" ] || ticks=$((ticks + $(cpu_ticks "$proxy_pid")))
  echo "$ticks"
}
ticks_per_second="$(getconf CLK_TCK)"

# broker_profile DATA US: one line on where the broker's samples in DATA went, as shares
# and as µs of the US per record. Each sample counts once, by its stack (perf script):
# inside `sqlite3_step` (of it, the WAL checkpoints, their fsyncs apart, and the commits,
# SQLite's writing of the transaction's pages to the WAL), else "switches" (the scheduler
# or a futex call anywhere else on the stack), else the rest. Until 2026-12-06 the shares
# came from perf's children view, in which a futex wait's `__schedule` was counted both as
# scheduling and as futex, and scheduling under `sqlite3_step` both there and as a switch.
broker_profile() {
  perf script -i "$1" -F ip,sym 2>/dev/null | awk -v us="$2" '
    BEGIN { RS = "" }
    {
      stack = $0 "\n"; n++
      if (index(stack, " sqlite3_step\n")) {
        step++
        if (index(stack, " sqlite3WalCheckpoint\n")) { ckpt++; if (index(stack, " __x64_sys_fsync\n")) fsync++ }
        else if (index(stack, " sqlite3WalFrames\n")) frames++
      } else if (index(stack, " __schedule\n") || index(stack, " __x64_sys_futex\n")) switches++
    }
    END {
      pct = 100 / (n > 0 ? n : 1)
      step *= pct; ckpt *= pct; fsync *= pct; frames *= pct; switches *= pct
      rest = 100 - step - switches
      printf "%14s broker (%d samples): sqlite3_step %.1f %% (%.1f µs), of it checkpoints %.1f %% (fsync %.1f %%) and commits %.1f %%; switches %.1f %% (%.1f µs); the rest %.1f %% (%.1f µs)\n",
        "", n, step, step * us / 100, ckpt, fsync, frames, switches, switches * us / 100, rest, rest * us / 100
    }'
}

# latency_ms Q: wrk's latency at quantile Q ("50%") in the last run, which it prints as
# "850.00us", "14.81ms" or "1.02s", in milliseconds.
latency_ms() {
  awk -v q="$1" '$1 == q {
    v = $2
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.2f", n
  }' "$work/wrk-out"
}
max() { awk -v a="$1" -v b="$2" 'BEGIN {print (b > a ? b : a)}'; }

declare -A best=()
printf '%-12s %6s %6s %9s %9s %9s %8s %8s %8s %8s %6s %7s %7s\n' \
  target conns round 'req/s' 'p50 ms' 'p99 ms' 'wrk µs' 'srv µs' 'brk µs' 'sum µs' batch 'wait ms' 'rec/req'
for conns in $LEVELS; do
  ratios=()
  declare -A floor_ratios=()
  for round in $(seq "$ROUNDS"); do
    # Per target: answered and refused requests, CPU ticks of the target and the broker,
    # wrk's CPU in ms, and the worst slice's p50 and p99, summed or kept over the slices.
    declare -A ok=() refused=() srv=() brk=() wrk_ms=() p50=() p99=() batch=() wait=()
    read -r accepted_before produce_before <<<"$(ingest_counts)"
    for slice in $(seq "$SLICES"); do
      for t in "${targets[@]}"; do
        IFS=: read -r name port pid <<<"$t"
        url="http://127.0.0.1:$port"
        if [ "$slice" = 1 ]; then
          sign
          "${pin_rest[@]}" wrk -t1 -c"$conns" -d3s -s "$work/request.lua" "$url" >/dev/null 2>&1
          sign
        fi
        server_before="$(cpu_ticks "$pid")" broker_before="$(broker_ticks)"
        perf_pid=""
        if [ -n "${BENCH_BROKER_PERF:-}" ] && [ "$slice" = "$SLICES" ]; then
          perf record -q -e cpu-clock -F 999 -g -p "$broker_pid" -o "$BENCH_BROKER_PERF/$name-$conns-$round.data" \
            >/dev/null 2>&1 &
          perf_pid=$!
        fi
        perf stat -x, -e task-clock -o "$work/wrk-cpu" \
          "${pin_rest[@]}" wrk -t1 -c"$conns" -d"${SLICE_SECONDS}s" --latency -s "$work/request.lua" "$url" >"$work/wrk-out" 2>&1
        server_after="$(cpu_ticks "$pid")" broker_after="$(broker_ticks)"
        [ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
        [ "$name" != ingest ] || read -r "batch[$name]" "wait[$name]" <<<"$(ingest_batch_and_wait)"
        requests="$(awk '/requests in/ {print $1}' "$work/wrk-out")"
        non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$work/wrk-out")"
        ok[$name]=$((${ok[$name]:-0} + requests - ${non2xx:-0}))
        refused[$name]=$((${refused[$name]:-0} + ${non2xx:-0}))
        srv[$name]=$((${srv[$name]:-0} + server_after - server_before))
        brk[$name]=$((${brk[$name]:-0} + broker_after - broker_before))
        wrk_ms[$name]="$(awk -F, -v sum="${wrk_ms[$name]:-0}" '$3 == "task-clock" {print sum + $1}' "$work/wrk-cpu")"
        p50[$name]="$(max "${p50[$name]:-0}" "$(latency_ms 50%)")"
        p99[$name]="$(max "${p99[$name]:-0}" "$(latency_ms 99%)")"
      done
    done
    # Records per produce request over the round, warm-up included, once librdkafka's
    # statistics have counted the last requests.
    sleep "$(awk -v s="$stats_seconds" 'BEGIN {print s + 0.5}')"
    read -r accepted_after produce_after <<<"$(ingest_counts)"
    per_request="$(awk -v a=$((accepted_after - accepted_before)) -v p=$((produce_after - produce_before)) \
      'BEGIN {if (p > 0) printf "%.1f", a / p; else print "-"}')"
    declare -A rate=()
    for t in "${targets[@]}"; do
      IFS=: read -r name _ _ <<<"$t"
      rate[$name]=$((${ok[$name]} / SECONDS_PER_RUN))
      [ "${rate[$name]}" -gt "${best[$name]:-0}" ] && best[$name]=${rate[$name]}
      # The broker's CPU µs per answered request: the row's column, and the profile's scale.
      broker_us="$(awk -v brk="${brk[$name]}" -v hz="$ticks_per_second" -v ok="${ok[$name]}" \
        'BEGIN {print brk * 1e6 / hz / (ok > 0 ? ok : 1)}')"
      awk -v name="$name" -v conns="$conns" -v round="$round" -v ok="${ok[$name]}" -v s="$SECONDS_PER_RUN" \
        -v hz="$ticks_per_second" -v srv="${srv[$name]}" -v bk="$broker_us" -v refused="${refused[$name]}" \
        -v batch="${batch[$name]:--}" -v wait="${wait[$name]:--}" -v rpr="$([ "$name" = ingest ] && echo "$per_request" || echo -)" -v p50="${p50[$name]}" -v p99="${p99[$name]}" -v wrk_ms="${wrk_ms[$name]}" -v rest_cpus="$rest_cpus" '
        BEGIN {
          ok = ok > 0 ? ok : 1
          w = wrk_ms * 1000 / ok; sv = srv * 1e6 / hz / ok
          note = refused > 0 ? sprintf("  (%d answered non-2xx)", refused) : ""
          if (rest_cpus > 0)
            note = note sprintf("  busy: target core %.2f, others %.2f", sv * ok / s / 1e6, (w + bk) * ok / s / 1e6 / rest_cpus)
          printf "%-12s %6s %6s %9.0f %9.2f %9.2f %8.1f %8.1f %8.1f %8.1f %6s %7s %7s%s\n", name, conns, round, ok / s, p50, p99,
            w, sv, bk, w + sv + bk, batch, wait, rpr, note
        }'
      [ -z "${BENCH_BROKER_PERF:-}" ] || broker_profile "$BENCH_BROKER_PERF/$name-$conns-$round.data" "$broker_us"
    done
    ratios+=("$(awk -v a="${rate[ingest]}" -v b="${rate[svix-bridge]}" 'BEGIN {printf "%.2f", a / (b > 0 ? b : 1)}')")
    for name in "${floor_names[@]}"; do
      floor_ratios[$name]+=" $(awk -v a="${rate[$name]}" -v b="${rate[svix-bridge]}" 'BEGIN {printf "%.2f", a / (b > 0 ? b : 1)}')"
    done
    unset rate ok refused srv brk wrk_ms p50 p99 batch
  done
  echo "ingest ÷ svix-bridge at $conns connections: ${ratios[*]}"
  for name in "${floor_names[@]}"; do
    echo "$name ÷ svix-bridge at $conns connections:${floor_ratios[$name]}"
  done
  unset floor_ratios
done
awk -v a="${best[ingest]}" -v b="${best[svix-bridge]}" \
  'BEGIN {printf "best: ingest %d req/s, svix-bridge %d req/s; best ÷ best %.2f\n", a, b, a / (b > 0 ? b : 1)}'
for name in "${floor_names[@]}"; do
  awk -v n="$name" -v a="${best[$name]}" -v b="${best[svix-bridge]}" \
    'BEGIN {printf "best: %s %d req/s; %s ÷ svix-bridge best ÷ best %.2f\n", n, a, n, a / (b > 0 ? b : 1)}'
done
# Each target's peak resident memory over the whole run (VmHWM, kept by the kernel).
peaks="peak RSS:"
for t in "${targets[@]}"; do
  IFS=: read -r name _ pid <<<"$t"
  peaks+=" $name $(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status") MiB,"
done
echo "${peaks%,}"
