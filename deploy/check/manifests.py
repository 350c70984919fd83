#!/usr/bin/env python3
"""Checks what schemas cannot see in the rendered manifests: that the objects fit
together and keep the promises in deploy/README.md.

    manifests.py --out DIR --secret deploy/base/secret.example.yaml VARIANT=RENDER.yaml...

Per render (variant): Services, the Ingress, the HPA, the PDB and the ServiceMonitor
select or name things that exist; the probes and ports match the addresses in
hooklake.toml; the ingress body-size limit equals ingest.max_body_bytes; shutdown fits in
the grace period; the pods are locked down; every "${NAME}" in the config has a Secret
key. Variant names carry expectations (see EXPECT). For each hooklake container it
writes DIR/<variant>-<container>.json (the effective config file, env, args) for
binary.py, which runs `hooklake check-config` on them when a binary is available.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEPLOY, REPO, Problems, apply_overrides, load_docs, references  # noqa: E402
from workloads import check_pod, check_workload_roles  # noqa: E402

# What each render must look like, beyond what holds for all of them.
EXPECT = {
    "base": {"ingest_replicas": (2, None), "sink": "Deployment"},
    "dev": {"namespace": "hooklake-dev", "ingest_replicas": (1, 1), "sink": "Deployment"},
    "prod": {"namespace": "hooklake", "ingest_replicas": (3, None), "sink": "Deployment", "pinned_image": True},
    "cronjob": {"sink": "CronJob"},
}
CONFIG_PATH = "/etc/hooklake/hooklake.toml"


class Render:
    """One `kubectl kustomize` output, indexed."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.docs = load_docs(path)
        self.by_kind: dict[str, list[dict]] = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def all(self, kind: str) -> list[dict]:
        return self.by_kind.get(kind, [])

    def get(self, kind: str, name: str) -> dict | None:
        return next((d for d in self.all(kind) if d["metadata"]["name"] == name), None)

    def pod_templates(self):
        """(workload, pod template) for Deployments and CronJobs."""
        for d in self.all("Deployment"):
            yield d, d["spec"]["template"]
        for c in self.all("CronJob"):
            yield c, c["spec"]["jobTemplate"]["spec"]["template"]


def dockerfile_uid() -> int | None:
    m = re.search(r"^USER\s+(\d+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    return int(m.group(1)) if m else None


def example_keys() -> set[str]:
    """Dotted keys documented in hooklake.example.toml (sources collapsed to `sources.*`),
    commented-out sections included: the example documents every key."""
    text = (REPO / "hooklake.example.toml").read_text()
    text = re.sub(r"^# (\[|[a-z_]+ = )", r"\1", text, flags=re.M)
    keys: set[str] = set()

    def walk(prefix, table):
        for k, v in table.items():
            key = f"{prefix}{k}"
            keys.add(key)
            if isinstance(v, dict) and not key.endswith("properties"):
                walk(key + ".", v)
    doc = tomllib.loads(text)
    sources = doc.pop("sources", {})
    walk("", doc)
    for source in sources.values():
        walk("sources.*.", source)
    # Per-source keys the example documents in comments only.
    keys |= {f"sources.*.{k}" for k in ("id_header", "event_type_pointer", "forward_headers")}
    return keys


def check_config_keys(p: Problems, where: str, config: dict, known: set[str]) -> None:
    def walk(prefix, table):
        for k, v in table.items():
            key = f"{prefix}{k}"
            generic = re.sub(r"^sources\.[^.]+\.", "sources.*.", key)
            if generic.startswith("sources.*.auth") or generic.startswith("sources.*.table") \
                    or re.match(r"^(kafka|catalog)\.properties\.", generic):
                continue  # shapes the binary checks (auth type specific, free-form)
            if key == "sources":
                for name, source in v.items():
                    walk(f"sources.{name}.", source)
                continue
            p.check(generic in known, where, f"hooklake.toml key `{key}` is not in hooklake.example.toml (typo?)")
            if isinstance(v, dict):
                walk(key + ".", v)
    walk("", config)


def config_map_with_toml(r: Render, name: str) -> dict | None:
    cm = r.get("ConfigMap", name)
    return cm if cm and "hooklake.toml" in (cm.get("data") or {}) else None


def container_env(r: Render, container: dict) -> tuple[dict[str, str], list[str]]:
    """Literal env of a container: envFrom ConfigMaps, then env values. Also the names of
    the Secrets it takes env from."""
    env, secrets = {}, []
    for src in container.get("envFrom") or []:
        if "configMapRef" in src:
            cm = r.get("ConfigMap", src["configMapRef"]["name"])
            env.update((cm or {}).get("data") or {})
        if "secretRef" in src:
            secrets.append(src["secretRef"]["name"])
    for e in container.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
    return env, secrets


def check_render(r: Render, secret: dict, out: Path, p: Problems) -> None:
    expect = EXPECT.get(r.name, {})
    if "namespace" in expect:
        for d in r.docs:
            p.check(d["metadata"].get("namespace") == expect["namespace"], f"{r.name} {d['kind']}/{d['metadata']['name']}",
                    f"namespace is {d['metadata'].get('namespace')!r}, expected {expect['namespace']!r}")
    secret_keys = set((secret.get("stringData") or {}) | (secret.get("data") or {}))
    uid = dockerfile_uid()
    known = example_keys()
    roles = check_workload_roles(r, expect, p)
    for workload, template in r.pod_templates():
        spec = template["spec"]
        for c in spec["containers"]:
            where = f"{r.name} {workload['kind']}/{workload['metadata']['name']} container {c['name']}"
            check_pod(r, workload, spec, c, where, uid, expect, p)
            config = effective_config(r, spec, c, where, secret, secret_keys, known, p)
            if config is None:
                continue
            role = roles.get(id(workload))
            if role:
                role(r, workload, spec, c, config, where, expect, p)
            env, _ = container_env(r, c)
            job = {"variant": r.name, "container": c["name"], "args": c.get("args") or [],
                   "config": config["__text__"], "env": env, "secrets": sorted(secret_keys)}
            (out / f"{r.name}-{workload['kind'].lower()}-{c['name']}.json").write_text(json.dumps(job, indent=2))


def effective_config(r, spec, c, where, secret, secret_keys, known, p) -> dict | None:
    """The container's hooklake.toml (mounted at CONFIG_PATH) with its env overrides."""
    args = c.get("args") or []
    if not p.check("--config" in args and args[args.index("--config") + 1:][:1] == [CONFIG_PATH], where,
                   f"args must pass --config {CONFIG_PATH}: {args}"):
        return None
    mount = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == "/etc/hooklake"), None)
    if not p.check(mount is not None and mount.get("readOnly") is True, where, "/etc/hooklake must be mounted readOnly"):
        return None
    volume = next((v for v in spec.get("volumes") or [] if v["name"] == mount["name"]), {})
    cm = config_map_with_toml(r, (volume.get("configMap") or {}).get("name", ""))
    if not p.check(cm is not None, where, f"volume {mount['name']} is not a ConfigMap with hooklake.toml in this render"):
        return None
    text = cm["data"]["hooklake.toml"]
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        p.fail(where, f"hooklake.toml does not parse: {e}")
        return None
    check_config_keys(p, where, config, known)
    env, secrets = container_env(r, c)
    p.check(secret["metadata"]["name"] in secrets, where,
            f"takes no env from Secret {secret['metadata']['name']} (envFrom secretRef)")
    for name in sorted(references(config)):
        p.check(name in secret_keys or name in env, where,
                f"hooklake.toml uses ${{{name}}} but neither the Secret template nor the env provides it")
    config = apply_overrides(config, env)
    for key in ("listen", "admin_listen"):
        for section in ("ingest", "sink"):
            addr = config.get(section, {}).get(key, "0.0.0.0:0")
            p.check(addr.startswith("0.0.0.0:") or addr.startswith("[::]:"), where,
                    f"{section}.{key} = {addr}: in a pod it must listen on all interfaces")
    config["__text__"] = text
    return config


def check_secret_template(secret: dict, p: Problems) -> None:
    values = (secret.get("stringData") or {})
    p.check(not secret.get("data"), "secret template", "use stringData with placeholders, not data")
    for k, v in values.items():
        p.check("change-me" in str(v), "secret template", f"{k} must be a placeholder containing 'change-me'")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--secret", type=Path, required=True)
    ap.add_argument("renders", nargs="+", help="VARIANT=FILE")
    args = ap.parse_args()
    p = Problems("manifests")
    secret = load_docs(args.secret)[0]
    check_secret_template(secret, p)
    args.out.mkdir(parents=True, exist_ok=True)
    objects = 0
    for spec in args.renders:
        name, _, path = spec.partition("=")
        r = Render(name, Path(path))
        objects += len(r.docs)
        check_render(r, secret, args.out, p)
    return p.done(f"{len(args.renders)} renders, {objects} objects cross-checked")


if __name__ == "__main__":
    sys.exit(main())
