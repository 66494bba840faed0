"""The peer for page throughput: a bare waitress "hello world" WSGI app, same settings as ours.

``/`` answers a fixed small body; ``/video`` sends a file through ``wsgi.file_wrapper`` (the
same path our media route takes), so waitress's own ceiling is visible for both.

    $ python bench/hello_wsgi.py --threads 4 --video /tmp/video.mp4
    Ready at http://127.0.0.1:40123/
"""

from __future__ import annotations

import argparse
import os
import sys

import waitress

HELLO = b"Hello, world!\n"


def make_app(video: str | None):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/video" and video:
            handle = open(video, "rb")
            size = os.fstat(handle.fileno()).st_size
            start_response("200 OK", [("Content-Type", "video/mp4"), ("Content-Length", str(size))])
            return environ["wsgi.file_wrapper"](handle)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
        return [HELLO]
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--video")
    args = parser.parse_args(argv)
    server = waitress.create_server(make_app(args.video), host="127.0.0.1", port=args.port,
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
