"""Slow downloaders: N connections that each fetch one URL and read it at a fixed, low rate.

They stand for phones on a weak Wi-Fi link watching a video. Every connection goes to the given
host (127.0.0.1 in the benchmark) and everything stops by itself after ``--duration`` seconds,
whether or not the downloads are finished. Prints ``streaming N`` once every client has its
response headers, and ``done <bytes>`` at the end.

    $ python bench/slow_clients.py --port 8080 --path /media/<sha>/video.mp4 \\
          --clients 40 --rate 65536 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

CHUNK = 8192


async def one_client(host: str, port: int, path: str, rate: int, deadline: float,
                     ready: asyncio.Queue, totals: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept-Encoding: gzip\r\n"
                     f"User-Agent: slow-client\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), deadline - time.monotonic())
        status = head.split(b" ", 2)[1]
        await ready.put(status)
        started = time.monotonic()
        received = 0
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(CHUNK), max(0.01, deadline - time.monotonic()))
            if not data:
                break
            received += len(data)
            # Pace to ``rate`` bytes per second since the start.
            ahead = received / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(min(ahead, max(0.0, deadline - time.monotonic())))
        totals.append(received)
    except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        totals.append(0)
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.duration
    ready: asyncio.Queue = asyncio.Queue()
    totals: list[int] = []
    tasks = [asyncio.create_task(one_client(args.host, args.port, args.path, args.rate, deadline,
                                            ready, totals)) for _ in range(args.clients)]
    statuses = []
    try:
        for _ in range(args.clients):
            statuses.append(await asyncio.wait_for(ready.get(), max(0.1, deadline - time.monotonic())))
        print(f"streaming {len(statuses)} {b','.join(sorted(set(statuses))).decode()}", flush=True)
    except asyncio.TimeoutError:
        print(f"streaming {len(statuses)} (not all clients started)", flush=True)
    await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic() + 2))
    for task in tasks:
        task.cancel()
    print(f"done {sum(totals)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--rate", type=int, default=64 * 1024, help="bytes per second per client")
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this benchmark helper only talks to this machine")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
