#!/usr/bin/env python3
"""Lists the hooklake metrics, and their labels, that the Grafana dashboard and the
Prometheus alert rules use.

    python3 deploy/metrics_used.py            # {"hooklake_...": ["label", ...], ...}
    python3 deploy/metrics_used.py --matchers # also every label matcher, with its value

The integration suite compares this with what `hooklake ingest` and `hooklake sink`
export on /metrics, and scripts/check-deploy.sh compares it with the contract in
docs/design.md: a metric or label typo in the dashboard or the rules fails one or the other.

How names and labels are found: every PromQL expression (dashboard targets, template
variable queries, rule `expr`s) is parsed, not grepped. A label counts for a metric when
it appears in the metric's own matchers ({source="x"}), or in a by/without/on/ignoring/
group_left/group_right clause or a label function (label_replace source, sort_by_label,
Grafana's label_values) whose operand contains the metric. Histogram series (_bucket,
_sum, _count) are reported under the histogram's base name, with `le` when the _bucket
series is used. Labels that Prometheus adds to every scraped series
(job, instance, namespace, pod, ...) are left out: the binary does not export them.

Needs PyYAML for the rules (the suite's venv has it); the dashboard is plain JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
DEFAULT_DASHBOARDS = [DEPLOY / "grafana" / "hooklake.json"]
DEFAULT_RULES = [DEPLOY / "base" / "monitoring" / "prometheusrule.yaml"]

PREFIX = "hooklake_"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Added by Prometheus (and the Prometheus Operator) at scrape time, never exported by hooklake.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container", "endpoint"})

AGGREGATIONS = frozenset({
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "limitk", "limit_ratio",
})
BINARY_PRECEDENCE = {
    "or": 1, "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<=": 3, "<": 3, ">=": 3, ">": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6,
}

TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_:.]+\]\])
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)


class PromQLError(ValueError):
    pass


@dataclass
class Tok:
    kind: str
    text: str


def tokenize(expr: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN_RE.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r} at offset {pos}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup, m.group()))
    return out


def unquote(s: str) -> str:
    if s.startswith("`"):
        return s[1:-1]
    return re.sub(r"\\(.)", r"\1", s[1:-1])


# --- AST: just enough structure to know which labels apply to which metrics -------------

@dataclass
class Selector:
    name: str | None
    matchers: list[tuple[str, str, str]]  # (label, op, value)


@dataclass
class Node:
    kind: str                       # "agg", "call", "binary", "leaf"
    children: list = field(default_factory=list)
    name: str = ""                  # function or aggregation name, or the binary operator
    grouping: list[str] = field(default_factory=list)      # by/without, on/ignoring
    one_side: list[str] = field(default_factory=list)      # group_left/right labels
    group: str = ""                 # "group_left" | "group_right"
    strings: list[str] = field(default_factory=list)       # string arguments of a call


class Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.toks = tokenize(expr)
        self.i = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> Tok:
        t = self.peek()
        if t is None:
            raise PromQLError(f"unexpected end of {self.expr!r}")
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        t = self.peek()
        if t is not None and t.text == text and t.kind in ("op", "ident"):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        t = self.next()
        if t.text != text:
            raise PromQLError(f"expected {text!r}, found {t.text!r} in {self.expr!r}")

    def parse(self):
        node = self.expression(0)
        if self.peek() is not None:
            raise PromQLError(f"unexpected {self.peek().text!r} in {self.expr!r}")
        return node

    def expression(self, min_prec: int):
        lhs = self.unary()
        while True:
            t = self.peek()
            if t is None or t.text not in BINARY_PRECEDENCE or t.kind not in ("op", "ident"):
                return lhs
            prec = BINARY_PRECEDENCE[t.text]
            if prec < min_prec:
                return lhs
            self.next()
            node = Node("binary", name=t.text)
            self.binary_modifiers(node)
            # ^ is right-associative, everything else left-associative.
            rhs = self.expression(prec if t.text == "^" else prec + 1)
            node.children = [lhs, rhs]
            lhs = node

    def binary_modifiers(self, node: Node) -> None:
        self.accept("bool")
        if self.peek() is not None and self.peek().text in ("on", "ignoring"):
            self.next()
            node.grouping = self.label_list()
        if self.peek() is not None and self.peek().text in ("group_left", "group_right"):
            node.group = self.next().text
            if self.peek() is not None and self.peek().text == "(":
                node.one_side = self.label_list()

    def label_list(self) -> list[str]:
        self.expect("(")
        labels = []
        while not self.accept(")"):
            t = self.next()
            if t.kind not in ("ident", "string"):
                raise PromQLError(f"expected a label name, found {t.text!r} in {self.expr!r}")
            labels.append(unquote(t.text) if t.kind == "string" else t.text)
            if not self.accept(","):
                self.expect(")")
                break
        return labels

    def unary(self):
        if self.peek() is not None and self.peek().text in ("-", "+") and self.peek().kind == "op":
            self.next()
            return self.unary()
        return self.postfix(self.primary())

    def postfix(self, node):
        while True:
            t = self.peek()
            if t is None:
                return node
            if t.text == "[":
                self.next()
                self.duration()
                if self.accept(":"):
                    if self.peek() is not None and self.peek().text != "]":
                        self.duration()
                self.expect("]")
            elif t.text == "offset":
                self.next()
                self.accept("-")
                self.duration()
            elif t.text == "@":
                self.next()
                t2 = self.next()
                if t2.text in ("start", "end"):
                    self.expect("(")
                    self.expect(")")
            else:
                return node

    def duration(self) -> None:
        t = self.next()
        if t.kind not in ("duration", "number", "var"):
            raise PromQLError(f"expected a duration, found {t.text!r} in {self.expr!r}")

    def primary(self):
        t = self.next()
        if t.text == "(" and t.kind == "op":
            inner = self.expression(0)
            self.expect(")")
            return inner
        if t.kind in ("number", "string", "var", "duration"):
            return Node("leaf", strings=[unquote(t.text)] if t.kind == "string" else [])
        if t.text == "{":
            return self.selector(None)
        if t.kind != "ident":
            raise PromQLError(f"unexpected {t.text!r} in {self.expr!r}")
        nxt = self.peek()
        if t.text in AGGREGATIONS and nxt is not None and nxt.text in ("(", "by", "without"):
            return self.aggregation(t.text)
        if nxt is not None and nxt.text == "(":
            return self.call(t.text)
        if nxt is not None and nxt.text == "{":
            self.next()
            return self.selector(t.text)
        return Selector(t.text, [])

    def aggregation(self, name: str) -> Node:
        node = Node("agg", name=name)
        if self.peek().text in ("by", "without"):
            self.next()
            node.grouping = self.label_list()
        node.children = self.arguments()
        if self.peek() is not None and self.peek().text in ("by", "without"):
            self.next()
            node.grouping = self.label_list()
        return node

    def call(self, name: str) -> Node:
        args = self.arguments()
        return Node("call", name=name, children=args,
                    strings=[a.strings[0] if isinstance(a, Node) and a.kind == "leaf" and a.strings else ""
                             for a in args])

    def arguments(self) -> list:
        self.expect("(")
        args = []
        while not self.accept(")"):
            args.append(self.expression(0))
            if not self.accept(","):
                self.expect(")")
                break
        return args

    def selector(self, name: str | None) -> Selector:
        matchers = []
        while not self.accept("}"):
            t = self.next()
            if t.kind == "string" and self.peek() is not None and self.peek().text in (",", "}"):
                name = unquote(t.text)  # Prometheus 3 quoted metric name: {"my.metric"}
            else:
                label = unquote(t.text) if t.kind == "string" else t.text
                op = self.next().text
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad matcher operator {op!r} in {self.expr!r}")
                value = self.next()
                if value.kind != "string":
                    raise PromQLError(f"matcher value must be a string in {self.expr!r}")
                if label == "__name__" and op == "=":
                    name = unquote(value.text)
                else:
                    matchers.append((label, op, unquote(value.text)))
            if not self.accept(","):
                self.expect("}")
                break
        return Selector(name, matchers)


# --- Attribution -------------------------------------------------------------------------

def base_name(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class Usage:
    labels: dict[str, set[str]] = field(default_factory=dict)
    matchers: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def metric(self, name: str) -> None:
        self.labels.setdefault(name, set())
        self.matchers.setdefault(name, [])

    def label(self, metrics, label: str) -> None:
        for m in metrics:
            self.labels[m].add(label)


def analyse(node, usage: Usage) -> tuple[set[str], set[str]]:
    """Records labels per metric; returns (hooklake metrics below node, labels that
    functions below node invented, e.g. label_replace's destination)."""
    if isinstance(node, Selector):
        if node.name is None or not node.name.startswith(PREFIX):
            return set(), set()
        name = base_name(node.name)
        usage.metric(name)
        for label, op, value in node.matchers:
            usage.labels[name].add(label)
            usage.matchers[name].append((label, op, value))
        if node.name.endswith("_bucket"):
            usage.labels[name].add("le")
        return {name}, set()
    metrics, invented = set(), set()
    results = [analyse(c, usage) for c in node.children]
    for m, inv in results:
        metrics |= m
        invented |= inv
    if node.kind == "agg":
        for label in node.grouping:
            if label not in invented:
                usage.label(metrics, label)
        if node.name == "count_values" and node.children and isinstance(node.children[0], Node):
            invented |= set(node.children[0].strings)
    elif node.kind == "binary":
        for label in node.grouping:
            if label not in invented:
                usage.label(metrics, label)
        one = results[1][0] if node.group == "group_left" else results[0][0]
        for label in node.one_side:
            usage.label(one, label)
    elif node.kind == "call":
        analyse_call(node, results, usage, invented)
    return metrics, invented


def analyse_call(node: Node, results, usage: Usage, invented: set[str]) -> None:
    first = results[0][0] if results else set()
    s = node.strings
    if node.name == "label_replace" and len(s) == 5:
        invented.add(s[1])
        if s[3]:
            usage.label(first, s[3])
    elif node.name == "label_join" and len(s) >= 3:
        invented.add(s[1])
        for src in s[3:]:
            usage.label(first, src)
    elif node.name in ("sort_by_label", "sort_by_label_desc"):
        for label in s[1:]:
            usage.label(first, label)
    elif node.name == "label_values" and len(node.children) == 2:
        # Grafana: label_values(metric{...}, label); the label is a bare name.
        label = node.children[1]
        if isinstance(label, Selector) and label.name:
            usage.label(first, label.name)


def grafana_query(expr: str) -> str:
    """Grafana variable queries that are not PromQL: label_values(x, l) is handled as a
    call; query_result(e) is e; label_names()/metrics(re) use no hooklake metric."""
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", expr, re.S)
    if m:
        return m.group(1)
    if re.fullmatch(r"\s*(label_names|metrics)\(.*\)\s*", expr, re.S):
        return ""
    return expr


# --- Where the expressions are -----------------------------------------------------------

def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    dash = json.loads(path.read_text())
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((f"{path.name}: panel {p.get('title', p.get('id'))!r} {t.get('refId', '')}", t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        if q:
            out.append((f"{path.name}: variable {v.get('name')}", grafana_query(q)))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append((f"{path.name}: annotation {a.get('name')}", a["expr"]))
    return out


def rule_groups(doc) -> list:
    """Groups of a PrometheusRule object or of a plain Prometheus rules file."""
    if not isinstance(doc, dict):
        return []
    if doc.get("kind") == "PrometheusRule":
        return doc.get("spec", {}).get("groups", [])
    return doc.get("groups", [])


def rules_exprs(path: Path) -> list[tuple[str, str]]:
    try:
        import yaml
    except ImportError:
        sys.exit("metrics_used.py: PyYAML is needed to read rules (pip install PyYAML)")
    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        for g in rule_groups(doc):
            for r in g.get("rules", []):
                out.append((f"{path.name}: {r.get('alert') or r.get('record')}", str(r["expr"])))
    return out


def collect(dashboards, rules) -> tuple[Usage, list[str]]:
    usage, errors = Usage(), []
    exprs = [e for d in dashboards for e in dashboard_exprs(Path(d))]
    exprs += [e for r in rules for e in rules_exprs(Path(r))]
    for where, expr in exprs:
        if not expr.strip():
            continue
        try:
            analyse(Parser(expr).parse(), usage)
        except PromQLError as e:
            errors.append(f"{where}: {e}")
    return usage, errors


def as_json(usage: Usage, target_labels: bool = False) -> dict:
    return {m: sorted(l for l in labels if target_labels or l not in TARGET_LABELS)
            for m, labels in sorted(usage.labels.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dashboard", action="append", help="Grafana dashboard JSON (repeatable)")
    ap.add_argument("--rules", action="append", help="PrometheusRule or Prometheus rules YAML (repeatable)")
    ap.add_argument("--matchers", action="store_true", help="print label matchers with their values too")
    ap.add_argument("--target-labels", action="store_true", help="keep job, namespace, pod, ... labels")
    args = ap.parse_args()
    usage, errors = collect(args.dashboard or DEFAULT_DASHBOARDS, args.rules or DEFAULT_RULES)
    for e in errors:
        print(f"metrics_used.py: {e}", file=sys.stderr)
    if errors:
        return 1
    out = as_json(usage, args.target_labels)
    if args.matchers:
        out = {"labels": out, "matchers": {m: sorted(set(v)) for m, v in sorted(usage.matchers.items())}}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
