#!/usr/bin/env python3
"""Compares the metrics the dashboard and the alert rules use (deploy/metrics_used.py)
with the metrics hooklake exports (the contract in docs/design.md, "Metrics", copied below):

    contract.py --dashboard deploy/grafana/hooklake.json --rules RULES.yaml --out DIR

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

ANY = None  # a label with free-form values (source names, topics, tables)
STATUS = re.compile(r"^[1-5][0-9][0-9]$")
REASONS = {"malformed_json", "missing_credentials", "invalid_credentials", "unknown_source",
           "body_too_large", "unsupported_media_type", "unavailable", "body_timeout", "overloaded",
           "topic_missing"}
TRIGGERS = {"manual", "schedule", "lag"}
OUTCOMES = {"success", "failure"}
# What a run did after another writer committed to the table first.
CONFLICT_OUTCOMES = {"rebased", "replanned"}

# metric -> (type, {label: allowed values or ANY or a regex})
CONTRACT = {
    "hooklake_ingest_requests_total": ("counter", {"source": ANY, "status": STATUS}),
    "hooklake_ingest_request_duration_seconds": ("histogram", {"source": ANY}),
    "hooklake_ingest_body_bytes": ("histogram", {"source": ANY}),
    "hooklake_ingest_rejected_total": ("counter", {"source": ANY, "reason": REASONS}),
    "hooklake_ingest_produce_duration_seconds": ("histogram", {}),
    "hooklake_ingest_producer_queue_messages": ("gauge", {}),
    "hooklake_ingest_producer_queue_capacity": ("gauge", {}),
    "hooklake_ingest_open_connections": ("gauge", {}),
    "hooklake_ingest_source_ready": ("gauge", {"source": ANY}),
    "hooklake_sink_lag_messages": ("gauge", {"topic": ANY, "partition": ANY}),
    "hooklake_sink_lag_seconds": ("gauge", {"topic": ANY}),
    "hooklake_sink_runs_total": ("counter", {"trigger": TRIGGERS, "outcome": OUTCOMES}),
    "hooklake_sink_run_duration_seconds": ("histogram", {}),
    "hooklake_sink_rows_written_total": ("counter", {"table": ANY}),
    "hooklake_sink_files_written_total": ("counter", {"table": ANY}),
    "hooklake_sink_bytes_written_total": ("counter", {"table": ANY}),
    "hooklake_sink_duplicates_dropped_total": ("counter", {"table": ANY}),
    "hooklake_sink_dlq_records_total": ("counter", {"topic": ANY}),
    "hooklake_sink_last_success_timestamp_seconds": ("gauge", {"table": ANY}),
    "hooklake_sink_offsets_ahead_partitions": ("gauge", {"topic": ANY}),
    "hooklake_sink_offset_gaps_total": ("counter", {"topic": ANY}),
    "hooklake_sink_records_expired_total": ("counter", {"topic": ANY}),
    "hooklake_sink_commit_conflicts_total": ("counter", {"table": ANY, "outcome": CONFLICT_OUTCOMES}),
}


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
    ap.add_argument("--dashboard", type=Path, required=True)
    ap.add_argument("--rules", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    p = Problems("metrics contract")
    usage, errors = metrics_used.collect([args.dashboard], args.rules)
    for e in errors:
        p.fail("PromQL", e)
    dash_usage, _ = metrics_used.collect([args.dashboard], [])
    for metric, labels in sorted(usage.labels.items()):
        if not p.check(metric in CONTRACT, metric, "is not a metric hooklake exports (docs/design.md)"):
            continue
        kind, allowed = CONTRACT[metric]
        extra = {"le"} if kind == "histogram" else set()
        for label in sorted(labels - metrics_used.TARGET_LABELS - extra):
            p.check(label in allowed, metric, f"has no label `{label}` (it has {sorted(allowed) or 'none'})")
        for label, op, value in usage.matchers.get(metric, []):
            if label in allowed:
                p.check(value_ok(allowed[label], op, value), metric,
                        f'{label}{op}"{value}" matches no value {label} takes')
    for metric in CONTRACT:
        p.check(metric in dash_usage.labels, metric, "is exported but the dashboard does not show it")
    out = metrics_used.as_json(usage)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics_used.json").write_text(json.dumps(out, indent=2) + "\n")
    return p.done(f"{len(out)} metrics used, all in the contract with their labels")


if __name__ == "__main__":
    sys.exit(main())
