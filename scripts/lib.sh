# Shared set-up steps of scripts/dev.sh and scripts/test.sh: each one checks first and
# installs only what is missing, so a second run takes seconds.
# shellcheck shell=bash

HOOKLAKE_CACHE="${HOOKLAKE_CACHE:-$HOME/.cache/hooklake}"
export HOOKLAKE_CACHE
export HOOKLAKE_VENV="$HOOKLAKE_CACHE/venv"
export HOOKLAKE_PYTHON="$HOOKLAKE_VENV/bin/python"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Debian packages needed to build librdkafka (rdkafka's cmake-build) and the rest.
APT_PACKAGES=(cmake g++ make pkg-config libssl-dev libcurl4-openssl-dev zlib1g-dev protobuf-compiler python3-venv curl libsqlite3-dev libclang-dev)

ensure_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local req="$REPO/tests/py/requirements.txt" stamp="$HOOKLAKE_VENV/.requirements.sha256"
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -x "$HOOKLAKE_PYTHON" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  say "preparing the Python venv of the independent readers ($HOOKLAKE_VENV)"
  [ -x "$HOOKLAKE_PYTHON" ] || python3 -m venv "$HOOKLAKE_VENV"
  "$HOOKLAKE_PYTHON" -m pip install -q --upgrade pip >/dev/null
  "$HOOKLAKE_PYTHON" -m pip install -q -r "$req"
  echo "$want" >"$stamp"
}

# The PostgreSQL-catalog tests use the local server (127.0.0.1:5432, user postgres, trust
# auth), which these machines run; start it when it is installed but stopped.
ensure_postgres() {
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && return 0
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    say "starting the local PostgreSQL server"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
    || say "warning: no PostgreSQL on 127.0.0.1:5432: the PostgreSQL-catalog test will fail"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
