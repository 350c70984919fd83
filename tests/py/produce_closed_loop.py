"""A closed-loop producer with librdkafka's own Python binding (confluent-kafka), to
measure what the broker charges per record apart from ingest: W virtual clients each keep
one ~1 KiB record outstanding and send the next on its delivery report, like W HTTP
clients waiting for ingest's 200. Prints one JSON line: records/s, latency, and
librdkafka's statistics (requests in flight per broker, round trip, records per batch).

    produce_closed_loop.py BOOTSTRAP TOPIC PARTITIONS W SECONDS MODE [PRODUCERS]

MODE `idem`: enable.idempotence=true, acks=all (ingest's settings); `plain`: acks=all
and librdkafka's defaults otherwise (svix-bridge's settings). PRODUCERS > 1 splits the
partitions over that many producers (partition % PRODUCERS). Environment: NHEADERS
(0–3) adds that many of ingest's record headers; NOKEY=1 sends records without key or
partition, as svix-bridge does. The topic must exist with PARTITIONS partitions.
BENCHMARKS.md ("What the durable broker charges") has the figures.
"""

import json
import os
import statistics
import sys
import time

from confluent_kafka import Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
partitions, clients, seconds, mode = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
n_producers = int(sys.argv[7]) if len(sys.argv) > 7 else 1
HEADERS = [
    ("hooklake-source", b"std"),
    ("hooklake-message-id", b"msg_2b9fK3s8xQ1"),
    ("content-type", b"application/vnd.hooklake.envelope.v1+avro"),
][: int(os.environ.get("NHEADERS", "0"))]
NOKEY = bool(os.environ.get("NOKEY"))
VALUE = json.dumps({"type": "invoice.paid", "data": {"id": "x" * 900}}).encode()

reports = []


def on_stats(text):
    d = json.loads(text)
    for b in d["brokers"].values():
        if b["nodeid"] >= 0:
            reports.append(("broker", b["waitresp_cnt"], b["rtt"]["avg"]))
    for t in d["topics"].values():
        if t["topic"] == topic:
            reports.append(("topic", t["batchcnt"]["avg"]))


conf = {
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "linger.ms": 5,
    "statistics.interval.ms": 1000,
    "stats_cb": on_stats,
}
if mode == "idem":
    conf["enable.idempotence"] = True
elif mode != "plain":
    sys.exit(f"unknown mode {mode}")
producers = [Producer(conf) for _ in range(n_producers)]
latencies, errors, deadline = [], 0, None


def send(client):
    partition = client % partitions
    producer = producers[partition % n_producers]
    sent = time.perf_counter()

    def delivered(err, _msg):
        global errors
        now = time.perf_counter()
        if err is not None:
            errors += 1
        if deadline is not None and now < deadline:
            latencies.append(now - sent)
        if deadline is None or now < deadline:
            send(client)

    if NOKEY:
        producer.produce(topic, value=VALUE, on_delivery=delivered, headers=HEADERS)
    else:
        key = str(client).encode()
        producer.produce(topic, value=VALUE, key=key, partition=partition, on_delivery=delivered, headers=HEADERS)


def poll_until(t):
    while time.perf_counter() < t:
        for p in producers:
            p.poll(0.001)


for c in range(clients):
    send(c)
poll_until(time.perf_counter() + 2)  # warm-up, not counted
reports.clear()
deadline = time.perf_counter() + seconds
poll_until(deadline)
for p in producers:
    p.flush(10)
latencies.sort()
brokers = [r for r in reports if r[0] == "broker"]
topics = [r for r in reports if r[0] == "topic"]


def quantile(q):
    return round(latencies[int(q * (len(latencies) - 1))] * 1e3, 2) if latencies else None


print(json.dumps({
    "mode": mode,
    "producers": n_producers,
    "clients": clients,
    "headers": len(HEADERS),
    "keyed": not NOKEY,
    "records_per_s": round(len(latencies) / seconds),
    "errors": errors,
    "p50_ms": quantile(0.5),
    "p99_ms": quantile(0.99),
    "in_flight_avg": round(statistics.mean(r[1] for r in brokers), 2) if brokers else None,
    "rtt_avg_ms": round(statistics.mean(r[2] for r in brokers) / 1000, 2) if brokers else None,
    "batch_records_avg": round(statistics.mean(r[1] for r in topics), 1) if topics else None,
}))
