"""Content-addressed media files and the HTTP logic for serving one of them.

Files live at ``<root>/<first two hex digits>/<sha256>``. Because the name *is* the hash of the
content, a stored file never changes: its strong ETag is ``"<sha256>"`` and browsers may cache it
forever (``immutable``). This module knows nothing about bottle; ``prepare_media_response`` turns
a request (method + headers) into a ``MediaResponse`` that any web layer can send.

    >>> store = MediaStore(data_dir / "media")
    >>> sha = store.add_bytes(b"%PDF-1.4 ...")
    >>> resp = prepare_media_response(store, sha, media_type="application/pdf",
    ...                               filename="Guía de radio.pdf", method="GET",
    ...                               request_headers={"Range": "bytes=0-3"})
    >>> resp.status, resp.length, dict(resp.headers)["Content-Range"]
    (206, 4, 'bytes 0-3/12')

How the web layer sends the body without holding a worker thread
-----------------------------------------------------------------
The route sets ``resp.status`` and ``resp.headers`` (which include ``Content-Length: resp.length``)
and returns ``resp.file`` (or ``b""`` when it is ``None``). This was checked against the sources of
bottle 0.13 and waitress 3.0:

* bottle's ``Bottle._cast`` sees an object with ``read`` and returns
  ``environ['wsgi.file_wrapper'](file)``, which under waitress is
  ``waitress.buffers.ReadOnlyFileBasedBuffer``.
* ``waitress.task.WSGITask.execute`` notices that the app returned a ``ReadOnlyFileBasedBuffer``
  and calls ``prepare(content_length)``. For a seekable file, ``prepare`` computes the bytes left
  *from the current offset* (``tell()`` to end of file) and keeps ``min(left, Content-Length)``.
  That is why the file is handed over already seeked to the range start and why ``Content-Length``
  must be the slice length: together they bound a 206 slice exactly.
* The task then writes only the headers and calls ``channel.write_soon(buffer)``, which appends
  the buffer itself to the channel's output queue (no copy, and it does not count against the
  ``outbuf_high_watermark`` that makes a task thread wait for slow clients). The task returns and
  the worker thread is free. The asyncore main loop then sends the file in ``sendbuf_len`` pieces
  as the socket accepts them (``HTTPChannel._flush_some``) and closes the file when done or when
  the client goes away (``handle_close``).

So a phone on a weak Wi-Fi link that downloads a video slowly costs an open file and a socket,
not one of the few worker threads. A route that read the file itself and yielded bytes would
instead block its worker in ``write_soon`` once 16 MB (the default high watermark) were queued
for a client that is not reading: a handful of slow downloads would then stall every page.
(When ``prepare`` finds nothing to send, e.g. an empty file, waitress falls back to iterating the
wrapper, which is harmless; we pass ``file=None`` for empty bodies anyway.)

Errors carrying response headers
--------------------------------
A ``HotspotError`` raised here may carry an extra ``headers`` attribute, a dict of header name
to value that the web layer must add to its error response:
``UnsatisfiableRange`` (416) carries ``Content-Range: bytes */<size>``, and the 405 for a method
other than GET/HEAD carries ``Allow``. Read it with ``getattr(exc, "headers", {}).items()``.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import re
import stat
import tempfile
import unicodedata
import urllib.parse
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Mapping

from hotspot.durable import fsync_directory
from hotspot.errors import N_, BadRequest, HotspotError, NotFound, RangeNotSatisfiable

log = logging.getLogger("hotspot.media")

SHA256_RE = re.compile(r"[0-9a-f]{64}")
CHUNK_SIZE = 1024 * 1024
CACHE_CONTROL = "public, max-age=31536000, immutable"

# Types a browser would run as a page on our own origin (scripts, forms). Opening them inline
# would let a file in a pack act as the hotspot site, so they are always sent as attachments
# and sandboxed. As <img> thumbnails (SVG) they still work: Content-Disposition only applies
# to navigations, and scripts never run inside <img>.
ACTIVE_MEDIA_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript", "application/x-javascript",
})

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf"({_TOKEN})/({_TOKEN})", re.ASCII)
_CHARSET_RE = re.compile(r"\s*charset\s*=\s*\"?([A-Za-z0-9._:+-]{1,40})\"?\s*", re.ASCII)
_RANGE_SPEC_RE = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
_ETAG_RE = re.compile(r'(?:W/)?"([^"]*)"')


class UnsafeMediaPath(NotFound):
    """A path in the store is a symlink or leads outside the store: never served or written.

    It is a ``NotFound`` so a visitor sees a plain 404 that names no server path; ``detail``
    says what is wrong for the operator, and is written to the log.
    """

    def __init__(self, detail: str):
        super().__init__(N_("This file is not in the library."))
        self.detail = detail
        log.warning("Media store: %s", detail)


class UnsatisfiableRange(RangeNotSatisfiable):
    """416, carrying the ``Content-Range: bytes */<size>`` header the response must include."""

    def __init__(self, message: str, *, size: int, **params: object):
        super().__init__(message, size=size, **params)
        self.size = size
        self.headers = {"Content-Range": f"bytes */{size}"}


class MediaStore:
    """Content-addressed files under ``root``; the hash is checked on the way in.

    Writes are atomic and durable: a temp file in the target directory, fsync, ``os.replace``,
    fsync of the directory. A crash leaves either no file or the complete file, never a torn one.
    """

    def __init__(self, root: Path):
        # The root itself may legitimately be a symlink (e.g. to a USB disk): resolve it once,
        # then everything below it must be real directories and regular files.
        self.root = Path(root).resolve()

    # -- paths -----------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """The path of ``sha256`` in the store (existing or not); refuses anything unsafe."""
        if not isinstance(sha256, str) or not SHA256_RE.fullmatch(sha256):
            raise BadRequest(
                N_("A file id must be 64 lowercase hexadecimal characters (a SHA-256)."))
        directory = self.root / sha256[:2]
        path = directory / sha256
        for part in (directory, path):
            if part.is_symlink():
                raise UnsafeMediaPath(f"Refusing the symlink {part} in the media store.")
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root) or resolved != path:
            raise UnsafeMediaPath(f"Refusing {path}: it leads outside the media store.")
        return path

    def has(self, sha256: str) -> bool:
        path = self.path_for(sha256)
        try:
            return stat.S_ISREG(path.lstat().st_mode)
        except FileNotFoundError:
            return False

    def size(self, sha256: str) -> int:
        path = self.path_for(sha256)
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise NotFound(N_("No media file %(sha256)s."), sha256=sha256) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeMediaPath(f"{path} is not a regular file.")
        return st.st_size

    def open(self, sha256: str) -> BinaryIO:
        """Open for reading, refusing a symlink swapped in after ``path_for`` (O_NOFOLLOW)."""
        path = self.path_for(sha256)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise NotFound(N_("No media file %(sha256)s."), sha256=sha256) from None
        except OSError as exc:  # ELOOP: a symlink appeared
            raise UnsafeMediaPath(f"Cannot open {path}: {exc.strerror}.") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafeMediaPath(f"{path} is not a regular file.")
        return os.fdopen(fd, "rb")

    # -- adding and removing ---------------------------------------------------------------

    def add_file(self, src: Path, expected_sha256: str | None = None) -> str:
        """Copy ``src`` into the store and return its SHA-256; ``BadRequest`` if it mismatches."""
        with open(src, "rb") as f:
            return self._add_chunks(iter(lambda: f.read(CHUNK_SIZE), b""), expected_sha256)

    def add_bytes(self, data: bytes, expected_sha256: str | None = None) -> str:
        return self._add_chunks([bytes(data)], expected_sha256)

    def add_stream(self, stream: BinaryIO, expected_sha256: str, expected_size: int,
                   progress: Callable[[int], None] | None = None) -> str:
        """Copy an open binary stream (a pack file, a tar member) into the store in one pass.

        The content is hashed while it is written; ``BadRequest`` if the hash or the size is
        not the expected one, and then nothing is stored. ``progress(n)`` is called with the
        number of bytes of each chunk written. Errors of ``stream.read`` propagate unchanged
        (the temp file is removed), so the caller can tell a failing source from a full disk.
        """
        def chunks() -> Iterator[bytes]:
            done = 0
            while True:
                chunk = stream.read(CHUNK_SIZE)
                if not chunk:
                    break
                done += len(chunk)
                if done > expected_size:
                    # Not marked N_: only imports (CLI, logs) copy streams, no page shows it.
                    raise BadRequest(f"The file is larger than the {expected_size} bytes "
                                     f"expected; it was not stored.")
                yield chunk
                if progress is not None:
                    progress(len(chunk))
            if done != expected_size:
                raise BadRequest(f"The file has {done} bytes, but {expected_size} were "
                                 f"expected (it is cut short); it was not stored.")

        return self._add_chunks(chunks(), expected_sha256)

    def _add_chunks(self, chunks: Iterable[bytes], expected: str | None) -> str:
        if expected is not None:
            self.path_for(expected)  # validate before reading anything
            if self.has(expected):
                # Already stored: still hash the source so a corrupt copy is reported.
                digest = hashlib.sha256()
                for chunk in chunks:
                    digest.update(chunk)
                self._check_hash(digest.hexdigest(), expected)
                return expected
        # Without an expected hash the final directory is unknown until the end; a temp file in
        # the root is on the same filesystem, so os.replace is still atomic.
        self.root.mkdir(parents=True, exist_ok=True)
        tmp_dir = self._make_dir(expected[:2]) if expected else self.root
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=".incoming-", suffix=".tmp")
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fchmod(out.fileno(), 0o644)  # mkstemp makes 0600; other tools may read it
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            self._check_hash(sha, expected)
            target = self.path_for(sha)
            if target.exists():
                os.unlink(tmp_name)
                return sha
            self._make_dir(sha[:2])
            os.replace(tmp_name, target)
            fsync_directory(target.parent)
            if Path(tmp_name).parent != target.parent:
                fsync_directory(Path(tmp_name).parent)
            return sha
        except BaseException:
            try:
                os.unlink(tmp_name)
            except FileNotFoundError:
                pass
            raise

    @staticmethod
    def _check_hash(actual: str, expected: str | None) -> None:
        if expected is not None and actual != expected:
            raise BadRequest(
                N_("The file's SHA-256 is %(actual)s, but %(expected)s was expected; "
                   "it was not stored."), actual=actual, expected=expected)

    def _make_dir(self, prefix: str) -> Path:
        directory = self.root / prefix
        if directory.is_symlink():
            raise UnsafeMediaPath(f"Refusing the symlink {directory} in the media store.")
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.root)
        return directory

    def remove(self, sha256: str) -> bool:
        """Delete the file; returns False if it was not there (removing twice is fine)."""
        path = self.path_for(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_directory(path.parent)
        return True

    # -- listing ---------------------------------------------------------------------------

    def iter_hashes(self) -> Iterator[str]:
        """The hashes of all stored files, sorted; temp files and strays are skipped."""
        if not self.root.is_dir():
            return
        for directory in sorted(self.root.iterdir()):
            if (len(directory.name) != 2 or directory.is_symlink() or not directory.is_dir()
                    or not re.fullmatch(r"[0-9a-f]{2}", directory.name)):
                continue
            for entry in sorted(directory.iterdir()):
                name = entry.name
                if (SHA256_RE.fullmatch(name) and name.startswith(directory.name)
                        and not entry.is_symlink() and entry.is_file()):
                    yield name

    def total_size(self) -> int:
        return sum(self.size(sha) for sha in self.iter_hashes())


# -- HTTP ----------------------------------------------------------------------------------


@dataclass
class MediaResponse:
    status: int                       # 200, 206, 304
    headers: list[tuple[str, str]]
    file: BinaryIO | None             # opened, seeked to the start offset; None if no body
    length: int                       # bytes to send from file (also the Content-Length)


def prepare_media_response(store: MediaStore, sha256: str, *, media_type: str, filename: str,
                           method: str, request_headers: Mapping[str, str],
                           as_attachment: bool = False) -> MediaResponse:
    """Decide status, headers and byte range for serving one stored file.

    ``file`` is ``None`` for HEAD, 304 and empty bodies; otherwise the caller owns it (returning
    it to waitress through bottle hands the ownership to the server, which closes it).
    Raises ``NotFound``, ``UnsatisfiableRange`` (with ``.headers``) or a 405 (with ``.headers``).
    """
    method = method.upper()
    if method not in ("GET", "HEAD"):
        error = HotspotError(N_("Method %(method)s is not allowed for files."), status=405,
                             method=method)
        error.headers = {"Allow": "GET, HEAD"}
        raise error
    headers_in = {str(k).lower(): str(v) for k, v in request_headers.items()}

    f = store.open(sha256)  # fstat of the open file: size and mtime match what we send
    try:
        st = os.fstat(f.fileno())
        size, mtime = st.st_size, int(st.st_mtime)
        etag = f'"{sha256}"'
        validators = [("ETag", etag), ("Cache-Control", CACHE_CONTROL)]

        if _not_modified(headers_in, sha256, mtime):
            f.close()
            return MediaResponse(304, validators, None, 0)

        start, end = 0, size - 1
        status = 200
        byte_range = _requested_range(headers_in, sha256, mtime, size)
        if byte_range is not None:
            start, end = byte_range
            status = 206
        length = end - start + 1 if size else 0

        content_type, active = _content_type(media_type)
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            ("Accept-Ranges", "bytes"),
            *validators,
            ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Disposition", content_disposition(filename, as_attachment or active)),
        ]
        if active:
            headers.append(("Content-Security-Policy", "sandbox; default-src 'none'"))
        if status == 206:
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))

        if method == "HEAD" or length == 0:
            f.close()
            return MediaResponse(status, headers, None, length)
        f.seek(start)
        return MediaResponse(status, headers, f, length)
    except BaseException:
        f.close()
        raise


def _not_modified(headers_in: dict[str, str], sha256: str, mtime: int) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) wins; If-Modified-Since only without it."""
    if_none_match = headers_in.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True
        return sha256 in _ETAG_RE.findall(if_none_match)  # W/ stripped: weak comparison
    since = _parse_http_date(headers_in.get("if-modified-since"))
    return since is not None and mtime <= since


def _requested_range(headers_in: dict[str, str], sha256: str, mtime: int,
                     size: int) -> tuple[int, int] | None:
    """The single byte range to send as 206, or None for a full 200.

    Following RFC 9110 14.2, a Range we cannot parse is ignored (200), not an error. Several
    ranges are also answered with the full file: a server may always ignore Range, and
    multipart/byteranges responses are rarely needed (players and download managers ask for one
    range at a time) and would need a different body than a plain file slice.
    """
    value = headers_in.get("range")
    if value is None:
        return None
    if_range = headers_in.get("if-range")
    if if_range is not None and not _if_range_matches(if_range.strip(), sha256, mtime):
        return None
    unit, sep, range_set = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip() for spec in range_set.split(",")]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC_RE.fullmatch(specs[0])
    if not match:
        return None
    first, last = match.groups()
    try:
        if first:
            start = int(first)
            end = int(last) if last else None
            if end is not None and end < start:
                return None  # invalid syntax per RFC 9110 14.1.1: ignore
            if start >= size:
                raise UnsatisfiableRange(
                    N_("The part asked for starts at byte %(start)s, but the file has %(size)s bytes."),
                    size=size, start=start)
            end = size - 1 if end is None or end >= size else end
            return start, end
        if not last:
            return None  # "bytes=-"
        suffix = int(last)
    except ValueError:  # a number too long for int(): garbage
        return None
    if suffix == 0:
        raise UnsatisfiableRange(N_("An empty suffix range (bytes=-0) selects nothing."), size=size)
    if size == 0:
        # A non-zero suffix of an empty file is "satisfiable" but has no Content-Range form;
        # ignoring Range and sending the (empty) file is the allowed, simple answer.
        return None
    return max(size - suffix, 0), size - 1


def _if_range_matches(if_range: str, sha256: str, mtime: int) -> bool:
    """RFC 9110 13.1.5: strong comparison for an ETag; exact match for a date."""
    if if_range.startswith('"') or if_range.startswith("W/"):
        return if_range == f'"{sha256}"'
    since = _parse_http_date(if_range)
    return since is not None and since == mtime


def _parse_http_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def _content_type(media_type: str) -> tuple[str, bool]:
    """(Content-Type value, is it an active type); anything malformed becomes octet-stream."""
    essence, _, params = (media_type or "").partition(";")
    match = _MEDIA_TYPE_RE.fullmatch(essence.strip())
    if not match:
        return "application/octet-stream", False
    essence = f"{match.group(1)}/{match.group(2)}".lower()
    charset = _CHARSET_RE.fullmatch(params) if params else None
    if charset:
        value = f"{essence}; charset={charset.group(1)}"
    elif essence.startswith("text/"):
        value = f"{essence}; charset=utf-8"
    else:
        value = essence
    return value, essence in ACTIVE_MEDIA_TYPES


def content_disposition(filename: str, as_attachment: bool) -> str:
    """``inline``/``attachment`` with an ASCII ``filename`` and an RFC 5987 ``filename*``.

    >>> content_disposition('Guía "1".pdf', False)
    'inline; filename="Guia 1.pdf"; filename*=UTF-8\\'\\'Gu%C3%ADa%201.pdf'
    """
    name = _clean_filename(filename)
    fallback = []
    for char in unicodedata.normalize("NFKD", name):
        if unicodedata.combining(char):
            continue  # the accent of a decomposed letter: "í" -> "i"
        if " " <= char <= "~" and char not in '"\\%':
            fallback.append(char)
        else:
            fallback.append("_")
    ascii_name = "".join(fallback).strip(" .") or "download"
    encoded = urllib.parse.quote(name.encode("utf-8"), safe="")
    kind = "attachment" if as_attachment else "inline"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{encoded}"


def _clean_filename(filename: str) -> str:
    """Drop what must never reach a header or a file name: controls (CR/LF included), format
    characters such as the right-to-left override (spoofs extensions), lone surrogates (cannot
    be encoded), quotes, slashes and backslashes."""
    kept = []
    for char in str(filename or ""):
        if char in '"/\\' or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            continue
        kept.append(char)
    return "".join(kept).strip(" .") or "download"
