#!/usr/bin/env bash
# The whole pipeline on this machine, on embedded defaults: `hooklake dev`, which runs a
# Kafka-API broker (tansu, in-process, SQLite storage under .hooklake/), ingest on
# 127.0.0.1:8080 and the sink loading the tables under lake/ every 30 seconds, with
# hooklake.example.toml. Ctrl-C loads what is left and stops.
#
#   scripts/dev.sh                      with hooklake.example.toml
#   scripts/dev.sh --config my.toml     with your configuration
#   scripts/dev.sh --schedule "every 5m"
#
# Installs the Debian packages the build needs and builds hooklake first (the first build
# takes a while on a small machine; later runs start in seconds).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO"

ensure_apt
say "building hooklake"
cargo build --locked --bin hooklake
bin_dir="${CARGO_TARGET_DIR:-$REPO/target}/debug"
say "for the other commands in a second terminal: export PATH=\"$bin_dir:\$PATH\""
exec "$bin_dir/hooklake" dev "$@"
