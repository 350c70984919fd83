"""Reads a hooklake table with pyiceberg, over the same SQL catalog the sink wrote to —
a reader we did not write.

usage: read_table.py --catalog NAME --uri SQLALCHEMY_URI --warehouse URL --table layer.folder.name
stdout: one JSON object: rows (every column), snapshots oldest first (id, sequence number,
operation, summary),
properties, partition_spec and schema field names.
"""
import argparse
import json
from datetime import datetime, timezone

from pyiceberg.catalog.sql import SqlCatalog


def plain(v):
    if isinstance(v, datetime):
        return int((v - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 1_000_000)
    if isinstance(v, list):  # map<string,string> arrives as a list of (key, value) pairs
        return {k: val for k, val in v}
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--catalog", required=True)
    p.add_argument("--uri", required=True)
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True)
    a = p.parse_args()
    catalog = SqlCatalog(a.catalog, uri=a.uri, warehouse=a.warehouse)
    table = catalog.load_table(a.table)
    arrow = table.scan().to_arrow()
    rows = [{k: plain(v) for k, v in row.items()} for row in arrow.to_pylist()]
    snapshots = [
        {
            "snapshot_id": s.snapshot_id,
            "sequence_number": s.sequence_number,
            "operation": s.summary.operation.value if s.summary else None,
            "summary": {k: v for k, v in (s.summary.additional_properties if s.summary else {}).items()},
        }
        # Oldest first: the metadata file's list order is arbitrary (iceberg-rust keeps
        # snapshots in a hash map).
        for s in sorted(table.snapshots(), key=lambda s: s.sequence_number)
    ]
    out = {
        "rows": rows,
        "snapshots": snapshots,
        "properties": dict(table.properties),
        "partition_spec": [f"{f.transform}({table.schema().find_column_name(f.source_id)})" for f in table.spec().fields],
        "schema": [f.name for f in table.schema().fields],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
