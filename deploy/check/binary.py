#!/usr/bin/env python3
"""Checks the manifests and the Dockerfile against a built hooklake binary:

    binary.py --bin target/debug/hooklake --jobs DIR   # DIR from manifests.py --out

1. `hooklake check-config` accepts the config of every container of every render (the
   ConfigMap's hooklake.toml with the container's env overrides), with the Secret's keys
   set to dummy values of the right shape.
2. Every --flag a container passes exists in `hooklake <subcommand> --help`. A
   subcommand the binary does not have yet is reported as a note, not a failure.
3. Every shared library the binary links (ELF NEEDED) comes from a Debian package that
   the runtime stage of deploy/Dockerfile installs or that debian:*-slim already has.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEPLOY, Problems  # noqa: E402

# Libraries of debian:bookworm-slim itself (dpkg and apt depend on them).
SLIM_BASE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0",
             "libcrypt1", "libselinux1", "libmd0", "libpcre2-8-0"}


def dummy(name: str) -> str:
    """A value check-config accepts: Standard Webhooks secrets must be whsec_<base64>."""
    if name.endswith("WHSEC"):
        return "whsec_" + base64.b64encode(b"check-deploy-dummy-signing-secret").decode()
    return f"dummy-{name.lower()}"


def check_config(binary: str, job: dict, p: Problems) -> None:
    where = f"{job['variant']} {job['container']}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env.update({k: dummy(k) for k in job["secrets"]})
    env.update(job["env"])
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
        f.write(job["config"])
        f.flush()
        run = subprocess.run([binary, "check-config", "--config", f.name], env=env,
                             capture_output=True, text=True, timeout=60)
    p.check(run.returncode == 0, where, f"hooklake check-config failed:\n{run.stdout}{run.stderr}")


def check_flags(binary: str, args: list[str], seen: dict, p: Problems) -> None:
    sub = args[0]
    if sub not in seen:
        run = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, timeout=60)
        seen[sub] = run.stdout if run.returncode == 0 else None
        if seen[sub] is None:
            p.note(f"the binary has no `{sub}` subcommand yet: its manifests' flags were not checked")
    if seen[sub] is None:
        return
    for flag in (a for a in args if a.startswith("--")):
        if (sub, flag) in seen:
            continue
        seen[(sub, flag)] = True
        p.check(re.search(rf"(^|\s){re.escape(flag)}\b", seen[sub], re.M) is not None,
                f"hooklake {sub}", f"the manifests pass {flag}, which `hooklake {sub} --help` does not list")


def package_of(lib: str) -> str | None:
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    m = re.search(rf"^\s*{re.escape(lib)} .*=> (\S+)$", cache, re.M)
    if not m:
        return None
    paths = {m.group(1), os.path.realpath(m.group(1))}
    paths |= {q.removeprefix("/usr") for q in paths} | {"/usr" + q for q in paths if not q.startswith("/usr")}
    for path in paths:
        run = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if run.returncode == 0:
            return run.stdout.split(":")[0]
    return None


def runtime_packages() -> set[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    runtime = text[text.rindex("\nFROM "):]
    m = re.search(r"apt-get install[^\n]*?((?:[^\n&]*\\\n)*[^\n&]*)", runtime)
    words = re.findall(r"(?<![-\w])([a-z0-9][a-z0-9.+-]+)", m.group(0) if m else "")
    return {w for w in words if w not in ("apt-get", "install")}


def check_libraries(binary: str, p: Problems) -> int:
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\).*\[(.+)\]", dyn)
    allowed = runtime_packages() | SLIM_BASE
    for lib in needed:
        pkg = package_of(lib)
        p.check(pkg is not None and pkg.split(":")[0] in allowed, f"runtime image",
                f"{binary} needs {lib} (Debian package {pkg}), which deploy/Dockerfile's runtime stage does not install")
    return len(needed)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--jobs", type=Path, required=True)
    args = ap.parse_args()
    p = Problems("hooklake binary")
    jobs = [json.loads(f.read_text()) for f in sorted(args.jobs.glob("*.json"))]
    seen: dict = {}
    for job in jobs:
        check_config(args.bin, job, p)
        check_flags(args.bin, job["args"], seen, p)
    libs = check_libraries(args.bin, p)
    return p.done(f"check-config passed for {len(jobs)} containers; {libs} linked libraries are in the runtime image")


if __name__ == "__main__":
    sys.exit(main())
