"""A TCP proxy on 127.0.0.1 that delays everything the upstream sends back by a fixed
time, keeping order: a broker whose answers (acknowledgements included) arrive D ms
later, like acks=all across zones. Requests pass at once.

    delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS [STATS_FILE]

Start the broker with `hooklake broker --listen 127.0.0.1:UPSTREAM_PORT --advertise
127.0.0.1:LISTEN_PORT`, so that clients learn the proxy's address from its metadata.

With STATS_FILE, the proxy also reads the Kafka frames going through it and keeps in
that file, as a JSON object:
- `max_produce_in_flight`: the most Produce requests one connection ever had in flight
  (sent by the client, answer not yet handed back to it): how far a producer pipelines
  behind a slow broker;
- `produce_cut_off`: Produce requests whose connection closed before their answer came
  back (the broker went away with them in flight, or SIGUSR1 cut them off), over all
  connections;
- `produce_requests`: Produce requests sent, over all connections;
- `produce_in_flight_seconds`: for each number n ≥ 1, how long connections had n Produce
  requests in flight, summed over connections (written at least every half second):
  whether producers sit at a limit of requests in flight, and at which.

SIGUSR1 cuts every connection at once, dropping the answers the proxy still holds: the
broker has written those requests, the client never hears so, and must resend them.

In front of an Iceberg SQL catalog on PostgreSQL (reached without TLS: the proxy reads
the statements), two signals break the next table commit. iceberg-catalog-sql commits a
table with `UPDATE iceberg_tables SET metadata_location = <new>, ... WHERE
metadata_location = <current>` in a transaction of its own; the proxy knows that
statement by its parameters, which carry a metadata location at least twice (creating a
table carries one), and then waits for the transaction's `COMMIT`:
- SIGUSR2: the `COMMIT` reaches the server, which commits; the proxy drops its answer and
  cuts the connection. The commit has happened, the client never hears so.
- SIGHUP: the proxy cuts the connection instead of passing the `COMMIT` on. The server
  rolls the `UPDATE` back, although the client had its answer.
"""

import asyncio
import json
import os
import signal
import struct
import sys
import time

listen_port, upstream_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
stats_file = sys.argv[4] if len(sys.argv) > 4 else None

PRODUCE = 0  # Kafka's api_key of a Produce request
stats = {"max_produce_in_flight": 0, "produce_cut_off": 0, "produce_requests": 0, "produce_in_flight_seconds": {}}


def write_stats():
    tmp = f"{stats_file}.tmp"
    with open(tmp, "w") as f:
        json.dump(stats, f)
    os.replace(tmp, stats_file)


def record_in_flight(n):
    """Writes a new maximum of Produce requests in flight on one connection."""
    if n > stats["max_produce_in_flight"]:
        stats["max_produce_in_flight"] = n
        write_stats()


def record_cut_off(n):
    """Counts Produce requests left unanswered when their connection closed."""
    if n:
        stats["produce_cut_off"] += n
        write_stats()


class Frames:
    """Splits a Kafka byte stream into frames (a 4-byte big-endian size, then the frame)."""

    def __init__(self):
        self.buffer = b""

    def feed(self, data):
        self.buffer += data
        while len(self.buffer) >= 4:
            (size,) = struct.unpack(">i", self.buffer[:4])
            if len(self.buffer) < 4 + size:
                break
            frame, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
            yield frame


class Connection:
    """One client connection's Produce requests awaiting their answers, by correlation
    id, and how long it had each number of them in flight."""

    def __init__(self):
        self.requests, self.responses = Frames(), Frames()
        self.pending = set()  # correlation ids of Produce requests
        self.produce_in_flight, self.since = 0, time.monotonic()

    def count_produce(self):
        """Adds the time since the last change to the number that was in flight."""
        now = time.monotonic()
        if self.produce_in_flight:
            seconds = stats["produce_in_flight_seconds"]
            key = str(self.produce_in_flight)
            seconds[key] = seconds.get(key, 0.0) + now - self.since
        self.produce_in_flight, self.since = len(self.pending), now
        return self.produce_in_flight

    def request(self, data):
        for frame in self.requests.feed(data):
            api_key, _version, correlation = struct.unpack(">hhi", frame[:8])
            if api_key == PRODUCE:
                self.pending.add(correlation)
                stats["produce_requests"] += 1
        record_in_flight(self.count_produce())

    def answered(self, data):
        for frame in self.responses.feed(data):
            (correlation,) = struct.unpack(">i", frame[:4])
            self.pending.discard(correlation)
        self.count_produce()

    def closed(self):
        record_cut_off(self.count_produce())


class Link:
    """A client connection and its connection upstream."""

    def __init__(self, *writers):
        self.writers, self.cut = writers, False
        self.commit_fault = None  # the fault of the table commit under way on this link
        self.commit_sent = False  # its COMMIT passed on; the answer is to be lost

    def abort(self):
        self.cut = True
        for writer in self.writers:
            writer.transport.abort()

    def forwards(self, data):
        """Client to server: False (and the link cut) for a chunk not to pass."""
        if self.commit_fault is None and commit_faults and is_catalog_commit(data):
            self.commit_fault = commit_faults.pop(0)
        elif self.commit_fault and b"COMMIT" in data:
            if self.commit_fault == "break":
                print("delay_proxy: cut a connection before its COMMIT", file=sys.stderr, flush=True)
                self.abort()
                return False
            self.commit_sent = True
        return True

    def keeps(self, data):
        """Server to client: False (and the link cut) for an answer to be lost."""
        if self.commit_sent and b"COMMIT" in data:
            print("delay_proxy: lost the answer to a COMMIT", file=sys.stderr, flush=True)
            self.abort()
            return False
        return True


links = set()
# What happens to the next table commits: "lose answer" (SIGUSR2) or "break" (SIGHUP).
commit_faults = []


def cut_all():
    """On SIGUSR1: ends every connection at once and drops the answers not yet handed
    back, as when the link to the broker breaks: a client must resend what it had in
    flight, and the broker may already have written it."""
    for link in list(links):
        link.abort()


def is_catalog_commit(data):
    return data.count(b".metadata.json") >= 2


async def pipe(link, reader, writer, delay, seen=None, keeps=None):
    """Copies reader to writer, each chunk `delay` seconds after it arrived, in order,
    until `link` is cut; `seen(chunk)` is called as a chunk is written, and a chunk for
    which `keeps(chunk)` is false is not written."""
    queue = asyncio.Queue()

    async def release():
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if link.cut or (keeps and not keeps(data)):
                    break
                if seen:
                    seen(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    releaser = asyncio.create_task(release())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    except ConnectionError:
        pass
    queue.put_nowait(None)
    await releaser


async def handle(client_reader, client_writer):
    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    link = Link(client_writer, upstream_writer)
    links.add(link)
    c = Connection() if stats_file is not None else None
    await asyncio.gather(
        pipe(link, client_reader, upstream_writer, 0, c and c.request, link.forwards),
        pipe(link, upstream_reader, client_writer, delay, c and c.answered, link.keeps),
    )
    links.discard(link)
    if c:
        c.closed()


async def write_stats_often():
    while True:
        await asyncio.sleep(0.5)
        write_stats()


async def main():
    if stats_file is not None:
        write_stats()
        writer = asyncio.create_task(write_stats_often())  # noqa: F841 (kept while serving)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, cut_all)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, commit_faults.append, "lose answer")
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, commit_faults.append, "break")
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
