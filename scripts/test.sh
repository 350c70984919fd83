#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one: installs what is missing
# (Debian packages, the Python venv), builds once, starts a broker for the suite
# (`hooklake broker`: tansu's broker inside hooklake), runs every test, and checks the
# deployment manifests.
#
#   scripts/test.sh             everything
#   scripts/test.sh <filter>    only tests whose name contains <filter>
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"
started=$(date +%s)

ensure_apt patch  # patch: scripts/vendor.sh (CI)
ensure_venv
ensure_postgres

# One feature set for every cargo command, so nothing is built twice: the sink's crash
# tests need its failpoints (they compile to nothing without the feature).
FEATURES=(--features hooklake/failpoints)
say "building hooklake and its tests"
cargo build --locked --workspace --bins --tests "${FEATURES[@]}"
if [ "${CI:-}" = "true" ]; then
  say "checking vendor/, format and lints (CI)"
  scripts/vendor.sh --check
  cargo fmt --all -- --check
  cargo clippy --locked --workspace --all-targets "${FEATURES[@]}" -- -D warnings
fi
export HOOKLAKE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/hooklake"

# One broker for the suite; tests that stop their broker start their own.
broker_dir="$(mktemp -d)"
port="$(free_port)"
"$HOOKLAKE_BIN" broker --listen "127.0.0.1:$port" --data "$broker_dir/data" >"$broker_dir/broker.log" 2>&1 &
broker_pid=$!
trap 'kill $broker_pid 2>/dev/null; wait $broker_pid 2>/dev/null; rm -rf "$broker_dir"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$broker_dir/broker.log" >&2; exit 1; }
export HOOKLAKE_TEST_BROKERS="127.0.0.1:$port"
say "suite broker: hooklake broker (tansu) on $HOOKLAKE_TEST_BROKERS"

say "running the tests"
if [ $# -gt 0 ]; then
  # The same targets as the build above (a narrower selection would unify features
  # differently and rebuild much of the dependency tree); the filter picks the tests.
  cargo test --locked --workspace "${FEATURES[@]}" -- --test-threads 4 "$@"
else
  cargo test --locked --workspace "${FEATURES[@]}" -- --test-threads 4
  say "checking deploy/"
  scripts/check-deploy.sh
fi
say "all green in $(( $(date +%s) - started ))s"
