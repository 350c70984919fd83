#!/usr/bin/env python3
"""Compares the metrics the dashboard and the alert rules use (deploy/metrics_used.py)
with the metrics hooklake exports (the contract file schemas/metrics.v1.json, which the
services' tests hold the binaries to):

    contract.py --dashboard deploy/grafana/hooklake.json --rules RULES.yaml --out DIR \
                [--contract schemas/metrics.v1.json]

Fails on a metric name that is not exported (a typo), a label the metric does not have,
a matcher value the label never takes (reason="invalid_credential"), and an exported
metric the dashboard never shows. Writes DIR/metrics_used.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import Problems  # noqa: E402
import metrics_used  # noqa: E402

CONTRACT_FILE = Path(__file__).resolve().parents[2] / "schemas" / "metrics.v1.json"
ANY = None  # a label with free-form values (source names, topics, tables)


def load_contract(path: Path = CONTRACT_FILE) -> dict:
    """metric -> (type, {label: allowed values (a set) or ANY or a compiled regex}), from
    the contract file, every service's metrics together."""
    def allowed(spec):
        if spec is None:
            return ANY
        if isinstance(spec, list):
            return set(spec)
        return re.compile(spec["regex"])
    doc = json.loads(path.read_text())
    return {name: (m["type"], {label: allowed(v) for label, v in m["labels"].items()})
            for metrics in doc["services"].values() for name, m in metrics.items()}


def value_ok(allowed, op: str, value: str) -> bool:
    """Whether a matcher can select (or, for != / !~, exclude) a value the label takes."""
    if allowed is ANY or re.search(r"\$\{?[A-Za-z_]", value):  # Grafana variables: filled at run time
        return True

    def takes(v: str) -> bool:
        return bool(allowed.match(v)) if isinstance(allowed, re.Pattern) else v in allowed
    if op in ("=", "!="):
        return takes(value)
    # A regex: every plain alternative must be a real value, and it must match one.
    alternatives = value.split("|")
    if all(re.fullmatch(r"[A-Za-z0-9_]+", a) for a in alternatives):
        return all(takes(a) for a in alternatives)
    if isinstance(allowed, re.Pattern):
        return any(re.fullmatch(value, str(code)) for code in range(100, 600))
    return any(re.fullmatch(value, v) for v in allowed)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--contract", type=Path, default=CONTRACT_FILE)
    ap.add_argument("--dashboard", type=Path, required=True)
    ap.add_argument("--rules", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    p = Problems("metrics contract")
    contract = load_contract(args.contract)
    usage, errors = metrics_used.collect([args.dashboard], args.rules)
    for e in errors:
        p.fail("PromQL", e)
    dash_usage, _ = metrics_used.collect([args.dashboard], [])
    for metric, labels in sorted(usage.labels.items()):
        if not p.check(metric in contract, metric, f"is not a metric hooklake exports ({args.contract.name})"):
            continue
        kind, allowed = contract[metric]
        extra = {"le"} if kind == "histogram" else set()
        for label in sorted(labels - metrics_used.TARGET_LABELS - extra):
            p.check(label in allowed, metric, f"has no label `{label}` (it has {sorted(allowed) or 'none'})")
        for label, op, value in usage.matchers.get(metric, []):
            if label in allowed:
                p.check(value_ok(allowed[label], op, value), metric,
                        f'{label}{op}"{value}" matches no value {label} takes')
    for metric in contract:
        p.check(metric in dash_usage.labels, metric, "is exported but the dashboard does not show it")
    out = metrics_used.as_json(usage)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics_used.json").write_text(json.dumps(out, indent=2) + "\n")
    return p.done(f"{len(out)} metrics used, all in the contract with their labels")


if __name__ == "__main__":
    sys.exit(main())
