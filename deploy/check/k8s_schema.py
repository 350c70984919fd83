#!/usr/bin/env python3
"""Validates rendered manifests against the Kubernetes OpenAPI schemas, strictly
(unknown fields fail), for several Kubernetes versions:

    k8s_schema.py -k 1.31.0 -k 1.37.0 FILE.yaml...

Built-in kinds use kubernetes-validate's bundled schemas. It has none for CRDs and only
warns about them, so here a kind without a schema is an error, and the two Prometheus
Operator kinds we ship (ServiceMonitor, PrometheusRule) are checked against the schemas
in crd_schemas.py: written from the operator's CRDs, strict like the rest, with
metadata and label selectors taken from the same Kubernetes definitions.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate.utils as kv
from referencing import Registry, Resource

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Problems, load_docs, where  # noqa: E402
from crd_schemas import CRD_SCHEMAS  # noqa: E402

# kubernetes-validate re-reads its 1.8 MB definitions file for every object; a check of
# ~80 objects would spend most of its time there.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


@functools.lru_cache(maxsize=None)
def crd_validator(kind: str, version: str) -> jsonschema.Validator:
    supported = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)][-1]
    defs = kv.schema_contents(f"kubernetes-json-schema/v{supported}-local-strict/_definitions.json", version)
    registry = Resource.from_contents(defs) @ Registry()
    return jsonschema.Draft202012Validator(CRD_SCHEMAS[kind], registry=registry)


def validate(doc: dict, version: str) -> list[str]:
    kind = doc.get("kind")
    if kind in CRD_SCHEMAS:
        errors = sorted(crd_validator(kind, version).iter_errors(doc), key=lambda e: list(e.path))
        return [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors]
    try:
        kv.validate(doc, version, strict=True)
        return []
    except kv.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    except kv.SchemaNotFoundError as e:
        return [f"no schema: {e.message} (a typo in apiVersion/kind, or a CRD to add to crd_schemas.py)"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", "--kubernetes-version", action="append", required=True)
    ap.add_argument("files", nargs="+", type=Path)
    args = ap.parse_args()
    problems, count = Problems("k8s schemas"), 0
    for path in args.files:
        for doc in load_docs(path):
            for version in args.kubernetes_version:
                count += 1
                for err in validate(doc, version):
                    problems.fail(f"{path.name} {where(doc)} (k8s {kv.major_minor(version)})", err)
    versions = ", ".join(kv.major_minor(v) for v in args.kubernetes_version)
    return problems.done(f"{count} object validations, strict, Kubernetes {versions}, kubernetes-validate {kv.__version__}")


if __name__ == "__main__":
    sys.exit(main())
