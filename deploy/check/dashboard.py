#!/usr/bin/env python3
"""Checks the Grafana dashboard and turns its queries into a rules file, so that
`promtool check rules` parses every PromQL expression with Prometheus' own parser:

    dashboard.py deploy/grafana/hooklake.json --out DIR   # writes DIR/dashboard.rules.yaml

Structure: schemaVersion >= 38; a `datasource` variable of type prometheus and query
variables namespace / source / topic / table that use it; every panel and target on
${datasource}; unique panel ids and refIds; panels inside the 24-column grid; every
$variable used in a query is defined. Grafana's own macros ($__rate_interval, ...) and
variables become plain values in the generated rules (a duration, or ".*" in matchers).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Problems  # noqa: E402

MIN_SCHEMA_VERSION = 38
QUERY_VARIABLES = ("namespace", "source", "topic", "table")
DATASOURCE = "${datasource}"
VAR = re.compile(r"\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")


def promql_for_promtool(expr: str) -> str:
    """Grafana macros → durations; variables inside label matchers → a match-all regex."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)(_ms|_s)?\}?", lambda m: "5m" if not m.group(2) else "300", expr)
    expr = re.sub(r'"([^"]*)"', lambda m: '"' + VAR.sub(".*", m.group(1)) + '"', expr)
    return expr


def label_values_selector(query: str) -> str | None:
    m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", query, re.S)
    return m.group(1) if m else None


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def check_variables(dash: dict, p: Problems) -> set[str]:
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    p.check(ds.get("type") == "datasource" and ds.get("query") == "prometheus", "variable datasource",
            "must be a datasource variable of type prometheus")
    for name in QUERY_VARIABLES:
        v = variables.get(name)
        if not p.check(v is not None and v.get("type") == "query", f"variable {name}", "missing query variable"):
            continue
        p.check((v.get("datasource") or {}).get("uid") == DATASOURCE, f"variable {name}", f"must use {DATASOURCE}")
    return set(variables)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dashboard", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    p = Problems("dashboard")
    dash = json.loads(args.dashboard.read_text())
    p.check(dash.get("schemaVersion", 0) >= MIN_SCHEMA_VERSION, "schemaVersion", f"must be >= {MIN_SCHEMA_VERSION}")
    p.check(bool(dash.get("uid")) and bool(dash.get("title")), "dashboard", "needs a uid and a title")
    defined = check_variables(dash, p)
    rules, ids, count = [], set(), 0
    for panel in panels(dash.get("panels", [])):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        p.check(panel.get("id") not in ids, where, "panel id used twice")
        ids.add(panel.get("id"))
        g = panel.get("gridPos") or {}
        p.check(g.get("w", 0) > 0 and g.get("x", 0) + g.get("w", 0) <= 24 and g.get("h", 0) > 0, where,
                f"gridPos {g} is outside the 24-column grid")
        if panel.get("type") == "row":
            continue
        p.check((panel.get("datasource") or {}).get("uid") == DATASOURCE, where, f"datasource must be {DATASOURCE}")
        targets = panel.get("targets") or []
        p.check(bool(targets), where, "has no query")
        refs = [t.get("refId") for t in targets]
        p.check(len(refs) == len(set(refs)), where, "refIds must be unique")
        for t in targets:
            count += 1
            p.check((t.get("datasource") or {}).get("uid") == DATASOURCE, where, f"target datasource must be {DATASOURCE}")
            expr = t.get("expr", "")
            for m in VAR.finditer(expr):
                name = next(g for g in m.groups() if g)
                p.check(name.startswith("__") or name in defined, where, f"uses undefined variable ${name}")
            rules.append({"record": f"grafana:panel_{panel.get('id')}:{t.get('refId')}", "expr": promql_for_promtool(expr)})
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else q
        selector = label_values_selector(q or "") if v.get("type") == "query" else None
        if v.get("type") == "query":
            p.check(selector is not None, f"variable {v.get('name')}", "query must be label_values(<selector>, <label>)")
        if selector:
            rules.append({"record": f"grafana:variable:{v['name']}", "expr": promql_for_promtool(selector)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dashboard.rules.yaml").write_text(
        "# Generated by deploy/check/dashboard.py: the dashboard's queries, for promtool's parser.\n"
        + yaml.safe_dump({"groups": [{"name": "grafana-dashboard", "rules": rules}]}, sort_keys=False, width=200))
    return p.done(f"{len(ids)} panels, {count} queries, schemaVersion {dash.get('schemaVersion')}")


if __name__ == "__main__":
    sys.exit(main())
