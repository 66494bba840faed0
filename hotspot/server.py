"""Running the web server: waitress with settings from the configuration.

Logs go to standard output and never contain a client's address or browser: the people who
use the hotspot may be at risk, and a seized device must not tell who visited it. The optional
access log (``server.access_log``) writes only method, path (without the query string, which
may hold search words), status and size.

    >>> run(config, app)        # blocks until SIGTERM or Ctrl-C
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Callable

import waitress
from waitress.buffers import ReadOnlyFileBasedBuffer

from .config import Config
from .web import request_body_limit

SEND_CHUNK = 256 * 1024

log = logging.getLogger("hotspot.server")


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class AccessLog:
    """WSGI middleware: one line per request with no address, browser or query string."""

    def __init__(self, app: Callable):
        self.app = app
        self.log = logging.getLogger("hotspot.access")

    def __call__(self, environ, start_response):
        seen = {}

        def recording_start_response(status, headers, exc_info=None):
            seen["status"] = status.split(" ", 1)[0]
            seen["length"] = next((v for k, v in headers if k.lower() == "content-length"), "-")
            return start_response(status, headers, exc_info)

        result = self.app(environ, recording_start_response)
        self.log.info("%s %s %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                      seen.get("status", "-"), seen.get("length", "-"))
        return result


class CappedFileBuffer(ReadOnlyFileBasedBuffer):
    """waitress's file buffer, reading at most 256 KiB per send.

    waitress asks for as many bytes as the socket's send buffer holds (several MB on some
    links), for every connection: 20 downloads then hold tens of MB that the allocator never
    gives back. Smaller reads send just as fast. It is still a ReadOnlyFileBasedBuffer, so
    waitress's main loop sends it and no worker thread waits on a slow phone.
    """

    def get(self, numbytes=-1, skip=False):
        if numbytes == -1 or numbytes > SEND_CHUNK:
            numbytes = SEND_CHUNK
        return super().get(numbytes, skip)


def with_capped_file_wrapper(app: Callable) -> Callable:
    def wrapped(environ, start_response):
        environ["wsgi.file_wrapper"] = CappedFileBuffer
        return app(environ, start_response)
    return wrapped


def use_memory_for_request_spool(base: str = "/dev/shm") -> str | None:
    """Keep waitress's spool of large request bodies (uploads) in RAM, not on the SD card.

    waitress writes a request body over 512 KB to an unlinked temporary file before the app
    sees it. On the card, the blocks of a deleted file can still be read by whoever seizes the
    device; a contribution must never touch the card in clear. /dev/shm is RAM (tmpfs).
    Returns the folder used, or None when there is no RAM-backed folder (logged).
    """
    if not os.path.isdir(base) or not os.access(base, os.W_OK):
        log.warning("No RAM folder %s: large uploads are spooled to %s in clear before "
                    "encryption.", base, tempfile.gettempdir())
        return None
    spool = tempfile.mkdtemp(prefix="hotspot-spool-", dir=base)
    os.chmod(spool, 0o700)
    tempfile.tempdir = spool
    return spool


def create_server(config: Config, app: Callable):
    wsgi_app = with_capped_file_wrapper(app)
    if config.server.access_log:
        wsgi_app = AccessLog(wsgi_app)
    return waitress.create_server(
        wsgi_app,
        host=config.server.host,
        port=config.server.port,
        threads=config.server.threads,
        connection_limit=config.server.connection_limit,
        channel_timeout=config.server.channel_timeout,
        max_request_body_size=request_body_limit(config),
        ident="hotspot",
        expose_tracebacks=False,
        clear_untrusted_proxy_headers=True,
        asyncore_use_poll=True,
    )


def run(config: Config, app: Callable, announce: Callable[[str], None] = print) -> int:
    """Serve until SIGTERM/SIGINT; finishes requests in flight, then returns 0."""
    spool = use_memory_for_request_spool()
    server = create_server(config, app)
    host = config.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    announce(f"Library ready at http://{shown}:{server.effective_port}/")
    try:
        serve_until_stopped(server)
    finally:
        if spool:
            shutil.rmtree(spool, ignore_errors=True)
    log.info("Server stopped.")
    return 0


def serve_until_stopped(server) -> None:
    """Run a waitress server until SIGTERM (systemd) or Ctrl-C; requests in flight finish."""

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()  # waitress shuts its worker threads down on SystemExit/KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
