"""What a produce request costs `hooklake broker` (tansu, SQLite storage), apart from its
batches: the broker's CPU per record when each ProduceRequest carries one partition's
batch (as librdkafka 2.12 sends them, so ingest's) against requests that carry the
batches of all three partitions, with the same producer, connection and batch sizes.

librdkafka cannot send the second shape, so this uses kafka-python, whose sender puts
every ready batch for a broker into one request; `max_request_size` just above one
batch makes it send one partition per request instead. Both modes: one idempotent
producer, acks=all, one request in flight, batches of about 36 records of ~1 KiB (the
size of ingest's batches on the SQLite broker without delay, BENCHMARKS.md), each run on
a fresh topic of 3 partitions. The broker's CPU is read from /proc before and after.

Needs kafka-python, which is not in the test venv (nothing in the suite uses it):

    python3 -m venv /tmp/kp && /tmp/kp/bin/pip install kafka-python==3.0.12
    /tmp/kp/bin/python tests/benches/broker_request_cost.py target/release/hooklake [records] [pairs]

It prints one line per run (modes alternate: one, multi, multi, one, ...) and the mean
of each mode with their ratio. Figures are for comparing the two modes in one run only.
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

VALUE = b'{"type":"reading","meter":"m-000123","kwh":12.5,"pad":"' + b"x" * 900 + b'"}'
BATCH_BYTES = 36_000  # about 36 records of VALUE with their keys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(bootstrap: str, pid: int, mode: str, records: int) -> tuple[float, float]:
    """One run on a fresh topic; returns (broker µs per record, records per request)."""
    topic = f"request-cost-{mode}-{time.time_ns()}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)])
    admin.close()
    config = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=BATCH_BYTES,
        max_in_flight_requests_per_connection=1,
        max_request_size=8 << 20 if mode == "multi" else BATCH_BYTES + 4_000,
    )
    producer = KafkaProducer(**config)
    for p in range(3):  # metadata, the producer id, each partition's first batch
        producer.send(topic, key=b"warm-up", value=b"{}", partition=p).get(timeout=30)
    before = cpu_seconds(pid)
    for i in range(records):
        producer.send(topic, key=b"k%d" % i, value=VALUE, partition=i % 3)
    producer.flush()
    used = cpu_seconds(pid) - before
    per_request = producer.metrics()["producer-metrics"]["records-per-request-avg"]
    producer.close()
    return used / records * 1e6, per_request


def main() -> None:
    hooklake = sys.argv[1]
    records = int(sys.argv[2]) if len(sys.argv) > 2 else 60_000
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen(
            [hooklake, "broker", "--listen", f"127.0.0.1:{port}", "--storage", "sqlite", "--data", data],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("the broker did not listen")
                    time.sleep(0.1)
            bootstrap = f"127.0.0.1:{port}"
            results: dict[str, list[float]] = {"one": [], "multi": []}
            order = ["one", "multi", "multi", "one"] * ((pairs + 1) // 2)
            for mode in order[: 2 * pairs]:
                us, per_request = run(bootstrap, broker.pid, mode, records)
                results[mode].append(us)
                print(f"{mode:>5}: {us:6.2f} µs of broker CPU per record, {per_request:6.1f} records per request")
            one = sum(results["one"]) / len(results["one"])
            multi = sum(results["multi"]) / len(results["multi"])
            print(f"mean: one partition per request {one:.2f} µs, three {multi:.2f} µs per record; three ÷ one = {multi / one:.2f}")
        finally:
            broker.kill()
            broker.wait()


if __name__ == "__main__":
    main()
