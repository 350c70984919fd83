#!/usr/bin/env bash
# A bounded soak of the whole pipeline: a broker, `hooklake ingest` and a `hooklake sink`
# service (every 1 s) of its own in temporary directories, webhook traffic, and faults at
# random moments (sink SIGKILL + restart, broker SIGKILL + restart, the warehouse or the
# catalog unavailable for seconds, ingest SIGTERM + restart, a second sink replica joining
# and leaving). Prints webhooks sent, answered 200, faults by kind, rows lost and
# duplicated; exits non-zero if any row was lost or duplicated.
#
#   scripts/soak.sh                 10 minutes
#   scripts/soak.sh --minutes 3     (or SOAK_MINUTES=3)
#   scripts/soak.sh --catalog postgres   (or SOAK_CATALOG=postgres) the catalog on the local
#                                   PostgreSQL, as in production, behind a relay: its faults
#                                   are the catalog cut off and commits cut off at COMMIT
#   SOAK_SEED=<n> scripts/soak.sh   the same faults at the same moments as a previous run
#
# It is the ignored test faults::soak::soak of the integration suite, built exactly as
# scripts/test.sh builds (nothing is rebuilt when that build is current).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

minutes="${SOAK_MINUTES:-10}"
catalog="${SOAK_CATALOG:-sqlite}"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    --catalog) catalog="$2"; shift 2 ;;
    --catalog=*) catalog="${1#*=}"; shift ;;
    *) echo "usage: scripts/soak.sh [--minutes N] [--catalog sqlite|postgres]" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[0-9]+$ ]] && [ "$minutes" -gt 0 ] || { echo "--minutes must be a positive whole number" >&2; exit 2; }
case "$catalog" in sqlite|postgres) ;; *) echo "--catalog must be sqlite or postgres" >&2; exit 2 ;; esac
export SOAK_CATALOG="$catalog"

ensure_apt e2fsprogs
ensure_venv
[ "$catalog" = postgres ] && ensure_postgres

FEATURES=(--features hooklake/failpoints)
say "building hooklake and its tests (a no-op when scripts/test.sh built them)"
cargo build --locked --workspace --bins --tests "${FEATURES[@]}"
export HOOKLAKE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/hooklake"
export SOAK_SECONDS=$((minutes * 60))

say "soaking for $minutes minutes, the catalog on $catalog"
# The soak starts its own broker (it kills it); no suite broker.
unset HOOKLAKE_TEST_BROKERS
cargo test --locked --workspace --tests "${FEATURES[@]}" -- --ignored --exact faults::soak::soak --nocapture
