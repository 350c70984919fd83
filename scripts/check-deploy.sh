#!/usr/bin/env bash
# Validates deploy/ (Kubernetes manifests, Prometheus alerts, Grafana dashboard) without
# a cluster, and fails on a real defect. Run from anywhere; CI runs it from scripts/test.sh.
#
#   scripts/check-deploy.sh
#
# Steps (each one runs even when an earlier one failed, so one run shows every problem):
#   render     kubectl kustomize of base, overlays/dev, overlays/prod, and base + the
#              sink-cronjob component
#   schemas    every rendered object against the Kubernetes OpenAPI schemas, strict, for
#              the oldest and newest Kubernetes we support (kubernetes-validate); the
#              ServiceMonitor and PrometheusRule against deploy/check/crd_schemas.py
#   manifests  cross-references and promises: Services/Ingress/HPA/PDB/ServiceMonitor hit
#              real pods and ports, probes on the admin port, ingress body size ==
#              ingest.max_body_bytes, shutdown fits the grace period, pods locked down,
#              every "${NAME}" in hooklake.toml has a Secret key
#   rules      the PrometheusRule as a plain rules file: promtool check rules, promtool
#              test rules (deploy/prometheus/tests: each alert firing and absent),
#              severity / summary / description / runbook anchor in deploy/README.md
#   dashboard  deploy/grafana/hooklake.json structure, and every query through promtool
#   contract   every hooklake_* metric and label the dashboard and rules use is exported
#              (docs/design.md, "Metrics"), via deploy/metrics_used.py
#   binary     only with HOOKLAKE_BIN=<built hooklake>: `hooklake check-config` on each
#              container's effective config, flags vs --help, linked libraries vs the
#              Dockerfile's runtime packages
#
# Environment: HOOKLAKE_BIN (see above); HOOKLAKE_VENV (Python venv, default
# ~/.cache/hooklake/venv); HOOKLAKE_KUBE_VERSIONS (default "1.31.0 1.37.0");
# HOOKLAKE_DEPLOY_OUT=<dir> keeps the rendered manifests and generated files there.
#
# Tools are installed when missing (kubectl, promtool: Debian packages, as root; the
# Python packages into the venv), so a second run takes a few seconds.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
VENV="${HOOKLAKE_VENV:-$HOME/.cache/hooklake/venv}"
PY="$VENV/bin/python"
read -r -a KUBE_VERSIONS <<<"${HOOKLAKE_KUBE_VERSIONS:-1.31.0 1.37.0}"
started=$(date +%s)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'check-deploy: %s\n' "$*" >&2; exit 1; }

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "$* missing and not root: install it (apt-get install $*)"
  say "installing Debian packages: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_kubectl() {
  if ! command -v kubectl >/dev/null; then
    # The Kubernetes/Google apt source, where configured, has a current kubectl; Debian's
    # own kubernetes-client (1.20) is the fallback.
    apt_install kubectl 2>/dev/null || apt_install kubernetes-client
  fi
  # Components (deploy/components) need the kustomize bundled since kubectl 1.21.
  local minor
  minor="$(kubectl version --client -o json 2>/dev/null | "$PY" -c 'import json,sys; print(int("".join(c for c in json.load(sys.stdin)["clientVersion"]["minor"] if c.isdigit())))')"
  [ "$minor" -ge 21 ] || die "kubectl 1.$minor is too old for kustomize components (need 1.21+)"
}

ensure_promtool() {
  command -v promtool >/dev/null && return 0
  # Debian's `prometheus` package ships promtool. Its postinst may try to start the
  # server (policy-rc.d or the missing init system usually stop it): stop any server
  # that the install started, by pid, and leave ones that ran before alone.
  local before after pid
  before="$(pgrep -x prometheus || true)"
  apt_install prometheus
  after="$(pgrep -x prometheus || true)"
  for pid in $after; do
    grep -qx "$pid" <<<"$before" || { say "stopping the prometheus server the install started (pid $pid)"; kill "$pid"; }
  done
  command -v promtool >/dev/null || die "promtool still missing after installing prometheus"
}

ensure_python() {
  if [ ! -x "$PY" ]; then
    say "creating the Python venv $VENV"
    python3 -m venv "$VENV"
  fi
  if ! "$PY" -c 'import kubernetes_validate, yaml, jsonschema, referencing' 2>/dev/null; then
    # Same pins as the suite's requirements, when it lists them.
    local pins
    pins="$(grep -hE '^(kubernetes-validate|PyYAML)==' tests/py/requirements.txt 2>/dev/null || true)"
    say "installing kubernetes-validate and PyYAML into $VENV"
    # shellcheck disable=SC2086  # one requirement per word
    "$PY" -m pip install -q ${pins:-kubernetes-validate PyYAML}
  fi
}

ensure_python
ensure_kubectl
ensure_promtool

if [ -n "${HOOKLAKE_DEPLOY_OUT:-}" ]; then
  work="$HOOKLAKE_DEPLOY_OUT"; rm -rf "$work"; mkdir -p "$work"
else
  work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/render"

results=()
failed=0
# step NAME COMMAND...: runs it, records ok/FAIL with the time taken, never exits.
step() {
  local name="$1" t0=$SECONDS; shift
  say "$name"
  if "$@"; then
    results+=("ok    $name ($((SECONDS - t0))s)")
  else
    results+=("FAIL  $name")
    failed=$((failed + 1))
  fi
}

# --- render -------------------------------------------------------------------------
render() {
  local variant="$1" dir="$2"
  kubectl kustomize "$dir" >"$work/render/$variant.yaml"
}
# The CronJob is a component: render it the way an overlay uses it. kustomize refuses
# absolute paths, so the throwaway overlay points back at deploy/ relatively.
render_cronjob() {
  local dir="$work/cronjob-overlay" rel
  mkdir -p "$dir"
  rel="$("$PY" -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$REPO/deploy" "$dir")"
  cat >"$dir/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: hooklake-check
resources:
  - $rel/base
components:
  - $rel/components/sink-cronjob
EOF
  render cronjob "$dir"
}
step "render base" render base deploy/base
step "render overlays/dev" render dev deploy/overlays/dev
step "render overlays/prod" render prod deploy/overlays/prod
step "render base + components/sink-cronjob" render_cronjob

renders=()
for v in base dev prod cronjob; do
  [ -s "$work/render/$v.yaml" ] && renders+=("$v=$work/render/$v.yaml")
done
files=("${renders[@]#*=}")

# --- checks ---------------------------------------------------------------------------
# Without any render the manifest checks below have nothing to read (the render steps
# have already failed and said why).
[ ${#renders[@]} -gt 0 ] || { printf '\ncheck-deploy: nothing rendered\n' >&2; printf '  %s\n' "${results[@]}" >&2; exit 1; }
kube_args=()
for v in "${KUBE_VERSIONS[@]}"; do kube_args+=(-k "$v"); done
step "schemas (kubernetes-validate strict, CRD schemas)" \
  "$PY" deploy/check/k8s_schema.py "${kube_args[@]}" "${files[@]}" deploy/base/secret.example.yaml
step "manifests (cross-references, body size, probes, security, secrets)" \
  "$PY" deploy/check/manifests.py --out "$work/jobs" --secret deploy/base/secret.example.yaml "${renders[@]}"

step "rules (extract, runbooks, test coverage)" \
  "$PY" deploy/check/rules.py --out "$work/prom" --tests deploy/prometheus/tests --readme deploy/README.md "${files[@]}"
step "promtool check rules" promtool check rules "$work/prom/hooklake.rules.yaml"
promtool_test() {
  local tests=()
  for t in deploy/prometheus/tests/*.yaml; do tests+=("$(basename "$t")"); done
  (cd "$work/prom" && promtool test rules "${tests[@]}")
}
step "promtool test rules" promtool_test

step "dashboard (structure)" "$PY" deploy/check/dashboard.py deploy/grafana/hooklake.json --out "$work/prom"
step "dashboard queries (promtool parser)" promtool check rules "$work/prom/dashboard.rules.yaml"

step "metrics contract (dashboard + rules vs schemas/metrics.v1.json)" \
  "$PY" deploy/check/contract.py --dashboard deploy/grafana/hooklake.json --rules "$work/prom/hooklake.rules.yaml" --out "$work"
# deploy/metrics_used.py is what the Rust integration test runs: with its defaults it
# must see exactly what the check saw.
metrics_used_cli() {
  "$PY" deploy/metrics_used.py >"$work/metrics_used.cli.json"
  diff -u "$work/metrics_used.json" "$work/metrics_used.cli.json"
}
step "deploy/metrics_used.py (as the integration test calls it)" metrics_used_cli

if [ -n "${HOOKLAKE_BIN:-}" ]; then
  [ -x "$HOOKLAKE_BIN" ] || die "HOOKLAKE_BIN=$HOOKLAKE_BIN is not an executable"
  step "binary (check-config, flags, runtime libraries)" \
    "$PY" deploy/check/binary.py --bin "$HOOKLAKE_BIN" --jobs "$work/jobs"
else
  results+=("skip  binary (set HOOKLAKE_BIN to a built hooklake to run check-config on the rendered configs)")
fi

# --- summary --------------------------------------------------------------------------
echo
echo "check-deploy summary ($(( $(date +%s) - started ))s):"
printf '  %s\n' "${results[@]}"
[ -n "${HOOKLAKE_DEPLOY_OUT:-}" ] && echo "  generated files kept in $work"
if [ "$failed" -gt 0 ]; then
  echo "check-deploy: $failed step(s) failed" >&2
  exit 1
fi
echo "check-deploy: all checks passed"
