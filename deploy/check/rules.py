#!/usr/bin/env python3
"""Turns the PrometheusRule objects of the rendered manifests into a plain Prometheus
rules file for promtool, and checks what promtool does not:

    rules.py --out DIR --tests deploy/prometheus/tests --readme deploy/README.md RENDER.yaml...

- every alert has labels.severity, annotations summary / description / runbook_url, and
  the runbook_url points at a heading that exists in deploy/README.md;
- every alert is tested both ways in the unit tests: at least one alert_rule_test expects
  it firing and at least one expects it absent (so a rule that can never fire, or never
  clear, fails);
- the same rule group is identical in every render (overlays must not fork the rules).

Writes DIR/hooklake.rules.yaml and copies the tests next to it (they name it in
rule_files), ready for `promtool check rules` and `promtool test rules`. The same file
works for a Prometheus without the Operator: `rules.py --out . RENDER.yaml`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Problems, load_docs  # noqa: E402

RULES_FILE = "hooklake.rules.yaml"
RUNBOOK_BASE = "https://github.com/hooklake/hooklake/blob/main/deploy/README.md#"
SEVERITIES = ("critical", "warning", "info")


def block_strings(dumper, data: str):
    """Multi-line expressions stay readable in the generated file."""
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)


yaml.SafeDumper.add_representer(str, block_strings)


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_anchors(readme: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", readme.read_text(), flags=re.S)
    return {github_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def extract(renders: list[Path], p: Problems) -> list[dict]:
    groups: dict[str, tuple[dict, str]] = {}
    for path in renders:
        for doc in load_docs(path):
            if doc.get("kind") != "PrometheusRule":
                continue
            for g in (doc.get("spec") or {}).get("groups") or []:
                name = g.get("name", "(unnamed)")
                seen = groups.get(name)
                if seen and seen[0] != g:
                    p.fail(f"{path.name} group {name}", f"differs from the same group in {seen[1]}")
                groups.setdefault(name, (g, path.name))
    return [g for g, _ in groups.values()]


def check_alerts(groups: list[dict], anchors: set[str], p: Problems) -> list[str]:
    names = []
    for g in groups:
        for rule in g["rules"]:
            if "alert" not in rule:
                continue
            a = rule["alert"]
            p.check(a not in names, a, "alert name used twice")
            names.append(a)
            p.check(rule.get("labels", {}).get("severity") in SEVERITIES, a, f"labels.severity must be one of {SEVERITIES}")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                p.check(bool(str(ann.get(key, "")).strip()), a, f"annotations.{key} is missing")
            url = ann.get("runbook_url", "")
            anchor = url[len(RUNBOOK_BASE):] if url.startswith(RUNBOOK_BASE) else None
            p.check(anchor is not None, a, f"runbook_url must start with {RUNBOOK_BASE}")
            if anchor is not None:
                p.check(anchor in anchors, a, f"runbook_url anchor #{anchor} is not a heading of deploy/README.md")
    return names


def check_tests(tests: list[Path], alerts: list[str], p: Problems) -> int:
    fires, clears, cases = set(), set(), 0
    for path in tests:
        doc = yaml.safe_load(path.read_text())
        p.check(doc.get("rule_files") == [RULES_FILE], path.name, f"rule_files must be [{RULES_FILE}]")
        for test in doc.get("tests", []):
            for case in test.get("alert_rule_test", []):
                cases += 1
                name = case["alertname"]
                p.check(name in alerts, path.name, f"tests unknown alert {name}")
                (fires if case.get("exp_alerts") else clears).add(name)
    for a in alerts:
        p.check(a in fires, a, "no unit test expects it to fire")
        p.check(a in clears, a, "no unit test expects it to be absent (cleared or not yet firing)")
    return cases


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tests", type=Path)
    ap.add_argument("--readme", type=Path)
    ap.add_argument("renders", nargs="+", type=Path)
    args = ap.parse_args()
    p = Problems("alert rules")
    groups = extract(args.renders, p)
    p.check(bool(groups), "renders", "no PrometheusRule found")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RULES_FILE).write_text(
        "# Generated by deploy/check/rules.py from the PrometheusRule in deploy/base/monitoring.\n"
        + yaml.safe_dump({"groups": groups}, sort_keys=False, width=200))
    anchors = readme_anchors(args.readme) if args.readme else set()
    alerts = check_alerts(groups, anchors, p) if args.readme else []
    cases = 0
    if args.tests:
        tests = sorted(args.tests.glob("*.yaml"))
        p.check(bool(tests), str(args.tests), "no unit tests")
        for t in tests:
            shutil.copy(t, args.out / t.name)
        cases = check_tests(tests, alerts, p)
    return p.done(f"{len(alerts)} alerts in {len(groups)} groups, {cases} alert test cases, runbooks linked")


if __name__ == "__main__":
    sys.exit(main())
