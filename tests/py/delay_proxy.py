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


links = set()


def cut_all():
    """On SIGUSR1: ends every connection at once and drops the answers not yet handed
    back, as when the link to the broker breaks: a client must resend what it had in
    flight, and the broker may already have written it."""
    for link in list(links):
        link.cut = True
        for writer in link.writers:
            writer.transport.abort()


async def pipe(link, reader, writer, delay, seen=None):
    """Copies reader to writer, each chunk `delay` seconds after it arrived, in order,
    until `link` is cut; `seen(chunk)` is called as a chunk is written."""
    queue = asyncio.Queue()

    async def release():
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                if link.cut:
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
        pipe(link, client_reader, upstream_writer, 0, c and c.request),
        pipe(link, upstream_reader, client_writer, delay, c and c.answered),
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
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
