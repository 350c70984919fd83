"""A TCP proxy on 127.0.0.1 that delays everything the upstream sends back by a fixed
time, keeping order: a broker whose answers (acknowledgements included) arrive D ms
later, like acks=all across zones. Requests pass at once.

    delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Start the broker with `hooklake broker --listen 127.0.0.1:UPSTREAM_PORT --advertise
127.0.0.1:LISTEN_PORT`, so that clients learn the proxy's address from its metadata.
"""

import asyncio
import sys
import time

listen_port, upstream_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds after it arrived, in order."""
    queue = asyncio.Queue()

    async def release():
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
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
    await asyncio.gather(pipe(client_reader, upstream_writer, 0), pipe(upstream_reader, client_writer, delay))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
