"""The peer for page throughput: a bare waitress "hello world" WSGI app, same settings as ours.

``/`` answers a fixed small body; ``/video`` sends a file through ``wsgi.file_wrapper`` (the
same path our media route takes), so waitress's own ceiling is visible for both; ``/page``
replays a page recorded from our server (same headers and gzip bytes), the ceiling for a
cached page. With ``--max-chunk`` the file wrapper reads at most that many bytes per send (an
experiment for the server's memory during downloads; see docs/performance.md).

    $ python bench/hello_wsgi.py --threads 4 --video /tmp/video.mp4
    Ready at http://127.0.0.1:40123/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import waitress
from waitress.buffers import ReadOnlyFileBasedBuffer

HELLO = b"Hello, world!\n"


class CappedFileBuffer(ReadOnlyFileBasedBuffer):
    """waitress's file wrapper, reading at most ``max_chunk`` bytes per send.

    waitress asks the buffer for ``SO_SNDBUF`` bytes per ``send()``; on loopback (and on any
    link where the kernel grows the buffer) that is megabytes per connection per call, read
    from the file and mostly thrown away when the socket takes less.
    """

    max_chunk = 256 * 1024

    def get(self, numbytes=-1, skip=False):
        if numbytes == -1 or numbytes > self.max_chunk:
            numbytes = self.max_chunk
        return super().get(numbytes, skip)


def make_app(video: str | None, max_chunk: int = 0, page: str | None = None):
    """``page``: a JSON file ``{"headers": [[name, value], ...], "body_file": path}`` to answer
    at ``/page`` with exactly those headers and bytes (a recorded page of our server)."""
    recorded = None
    if page:
        spec = json.loads(Path(page).read_text())
        recorded = ([tuple(h) for h in spec["headers"]], Path(spec["body_file"]).read_bytes())

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/page" and recorded:
            start_response("200 OK", list(recorded[0]))
            return [recorded[1]]
        if environ["PATH_INFO"] == "/video" and video:
            handle = open(video, "rb")
            size = os.fstat(handle.fileno()).st_size
            start_response("200 OK", [("Content-Type", "video/mp4"), ("Content-Length", str(size))])
            if max_chunk:
                wrapper = type("Capped", (CappedFileBuffer,), {"max_chunk": max_chunk})
                return wrapper(handle)
            return environ["wsgi.file_wrapper"](handle)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
        return [HELLO]
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--video")
    parser.add_argument("--max-chunk", type=int, default=0,
                        help="cap the bytes read from the file per send (0: waitress's default)")
    parser.add_argument("--page", help="JSON file naming headers and a body to answer at /page")
    args = parser.parse_args(argv)
    server = waitress.create_server(make_app(args.video, args.max_chunk, args.page), host="127.0.0.1", port=args.port,
                                    threads=args.threads, asyncore_use_poll=True,
                                    connection_limit=200, ident="hello")
    print(f"Ready at http://127.0.0.1:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
