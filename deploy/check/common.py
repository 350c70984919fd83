"""Shared pieces of the deploy checks run by scripts/check-deploy.sh: reading rendered
manifests, hooklake's configuration rules (env overrides, ${NAME} references, sizes and
durations, mirrored from schemas/src/config), and collecting problems so that one run
reports all of them instead of stopping at the first."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
REPO = DEPLOY.parent


class Problems:
    """Collects failures; `done()` prints a one-line summary and gives the exit code."""

    def __init__(self, step: str):
        self.step = step
        self.items: list[str] = []
        self.notes: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")
        print(f"  FAIL {where}: {message}", file=sys.stderr)

    def check(self, ok: bool, where: str, message: str) -> bool:
        if not ok:
            self.fail(where, message)
        return ok

    def note(self, message: str) -> None:
        self.notes.append(message)

    def done(self, summary: str) -> int:
        for n in self.notes:
            print(f"  note: {n}")
        if self.items:
            print(f"{self.step}: {len(self.items)} problem(s) — {summary}", file=sys.stderr)
            return 1
        print(f"{self.step}: ok — {summary}")
        return 0


def load_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def where(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def labels_match(selector: dict, labels: dict) -> bool:
    """matchLabels and the In/NotIn/Exists/DoesNotExist expressions of a LabelSelector."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


# --- hooklake configuration rules (schemas/src/config/{env,values}.rs) ------------------

OVERRIDE_PREFIX = "HOOKLAKE__"
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_scalar(raw: str):
    """An override value is read as a TOML value when it is one, else as a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(config: dict, env: dict[str, str]) -> dict:
    """HOOKLAKE__A__B=value sets a.b, as hooklake does at start-up."""
    for name, raw in env.items():
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        path = [p.lower() for p in name[len(OVERRIDE_PREFIX):].split("__")]
        table = config
        for key in path[:-1]:
            table = table.setdefault(key, {})
        table[path[-1]] = parse_scalar(raw)
    return config


def references(value) -> set[str]:
    """Every ${NAME} used in string values of the configuration."""
    if isinstance(value, str):
        return set(REFERENCE.findall(value))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values())) if value else set()
    return set()


SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1 << 10, "k": 1 << 10, "mb": 10**6,
              "mib": 1 << 20, "m": 1 << 20, "gb": 10**9, "gib": 1 << 30, "g": 1 << 30}


def byte_size(value) -> int:
    """ByteSize: an integer or "128MiB" / "1 MB" / "512KiB"."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size")
    return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]


DURATION_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "secs": 1, "m": 60, "min": 60, "mins": 60,
                  "h": 3600, "hr": 3600, "hrs": 3600, "d": 86400, "days": 86400, "day": 86400}


def duration_seconds(value: str) -> float:
    """HumanDuration: "10s", "5m", "1h 30m" (the subset of humantime we use)."""
    parts = re.findall(r"(\d+)\s*([a-z]+)", str(value))
    if not parts or re.sub(r"[\d\sa-z]", "", str(value)):
        raise ValueError(f"{value!r} is not a duration")
    return sum(int(n) * DURATION_UNITS[u] for n, u in parts)


def nginx_size(value: str) -> int:
    """nginx sizes: bytes, or a k/m/g suffix (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+)([kKmMgG]?)\s*", str(value))
    if not m:
        raise ValueError(f"{value!r} is not an nginx size")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
