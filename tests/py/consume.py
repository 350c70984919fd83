"""Reads hooklake records from Kafka with confluent-kafka and decodes them with fastavro
from schemas/webhook_envelope.v1.avsc — readers we did not write.

usage: consume.py --brokers B --topic T --count N [--timeout S] [--registry URL]
stdout: one JSON object per record: key, partition, offset, headers, framing, envelope.
Exit 1 when fewer than N records arrive within the timeout.
"""
import argparse
import io
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import fastavro
from confluent_kafka import Consumer, TopicPartition

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "schemas", "webhook_envelope.v1.avsc")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--brokers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--registry")
    args = p.parse_args()

    schema = fastavro.parse_schema(json.load(open(SCHEMA_PATH)))
    canonical = fastavro.schema.to_parsing_canonical_form(schema)
    fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
    confluent = None
    if args.registry:
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        confluent = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"independent-reader-{os.getpid()}-{time.time()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = metadata.topics[args.topic].partitions
    consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions])

    out, deadline = [], time.time() + args.timeout
    while len(out) < args.count and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"kafka error: {msg.error()}")
        value = msg.value()
        if value[:2] == b"\xc3\x01":
            if value[2:10] != fingerprint:
                raise SystemExit(f"fingerprint {value[2:10].hex()} is not the .avsc's {fingerprint.hex()}")
            reader = io.BytesIO(value[10:])
            envelope = fastavro.schemaless_reader(reader, schema, return_record_name=False)
            if reader.read():
                raise SystemExit("trailing bytes after the record")
            framing = "single-object"
        elif value[:1] == b"\x00" and confluent is not None:
            from confluent_kafka.serialization import MessageField, SerializationContext

            envelope = confluent(value, SerializationContext(args.topic, MessageField.VALUE))
            framing = "confluent"
        else:
            raise SystemExit(f"unknown framing {value[:4].hex()}")
        if isinstance(envelope["received_at"], datetime):  # fastavro applies timestamp-micros
            envelope["received_at"] = (envelope["received_at"] - EPOCH) // timedelta(microseconds=1)
        out.append({
            "key": msg.key().decode(),
            "partition": msg.partition(),
            "offset": msg.offset(),
            "headers": {k: v.decode() for k, v in (msg.headers() or [])},
            "framing": framing,
            "envelope": envelope,
        })
    consumer.close()
    for record in out:
        print(json.dumps(record))
    if len(out) < args.count:
        print(f"only {len(out)} of {args.count} records within {args.timeout}s", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
