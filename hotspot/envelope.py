"""The envelope: one contribution as one age-encrypted stream, written as the data arrives.

Inside the encryption is a simple *plaintext container* (format ``HOTSPOT-CONTRIBUTION/1``,
specified in ``docs/contributions.md``): a first line, then records ``<TAG> <LENGTH>\\n`` each
followed by exactly LENGTH bytes::

    HOTSPOT-CONTRIBUTION/1\\n
    ATTACHMENT-START 52\\n{"index":0,"media_type":"image/jpeg","name":"IMG_0042.jpg"}
    ATTACHMENT-DATA 65536\\n<65536 bytes of the file>
    ...
    ATTACHMENT-END 90\\n{"index":0,"sha256":"...","size":1234567}
    META 312\\n{"attachments":[...],"day":"2026-10-01","fields":{...},"kind":"report",...}
    END 0\\n

``ContainerWriter`` writes records to any byte sink; ``AgeSink`` is such a sink that encrypts
to age recipients on the fly (through ``pyrage.encrypt_io`` running on a helper thread that
reads from a pipe), so no plaintext is ever written to disk and memory stays bounded however
large the attachment. ``read_envelope_plaintext`` parses a decrypted container (hub side, tests).

    >>> with open(temp_path, "wb") as out:
    ...     sink = AgeSink(out, [pyrage.x25519.Recipient.from_str("age1...")])
    ...     container = ContainerWriter(sink)
    ...     container.start_attachment({"index": 0, "name": "a.txt", "media_type": "text/plain"})
    ...     container.attachment_data(b"hello")
    ...     container.end_attachment({"index": 0, "size": 5, "sha256": "..."})
    ...     container.finish({"uuid": "...", "kind": "message", ...})
    ...     sink.close()
    >>> contribution = read_envelope_plaintext(open("decrypted", "rb"))
    >>> [a.read_bytes() for a in contribution.attachments]
    [b'hello']
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyrage

from hotspot.errors import HotspotError

MAGIC = b"HOTSPOT-CONTRIBUTION/1\n"
TAG_ATTACHMENT_START = b"ATTACHMENT-START"
TAG_ATTACHMENT_DATA = b"ATTACHMENT-DATA"
TAG_ATTACHMENT_END = b"ATTACHMENT-END"
TAG_META = b"META"
TAG_END = b"END"
MAX_DATA_RECORD = 65536        # an ATTACHMENT-DATA record holds at most this many bytes
MAX_JSON_RECORD = 1 << 20      # START, END and META records are small JSON objects
_MAX_HEADER_LINE = 64


class EnvelopeFormatError(HotspotError):
    """A decrypted envelope does not follow the container format (damaged or not ours)."""

    status = 400
    exit_code = 2


# -- writing -----------------------------------------------------------------------------------

class ContainerWriter:
    """Writes the plaintext container records to ``sink`` (anything with ``write(bytes)``).

    It checks the order of records (no data outside an attachment, META last), not the limits
    or media types: that is the caller's job (``hotspot.contributions.EnvelopeWriter``).
    """

    def __init__(self, sink):
        self._sink = sink
        self._in_attachment = False
        self._finished = False
        sink.write(MAGIC)

    def start_attachment(self, info: dict[str, Any]) -> None:
        self._check_open(expect_attachment=False)
        self._record(TAG_ATTACHMENT_START, _json_bytes(info))
        self._in_attachment = True

    def attachment_data(self, data: bytes) -> None:
        self._check_open(expect_attachment=True)
        view = memoryview(data)
        for start in range(0, len(view), MAX_DATA_RECORD):
            self._record(TAG_ATTACHMENT_DATA, view[start:start + MAX_DATA_RECORD])

    def end_attachment(self, info: dict[str, Any]) -> None:
        self._check_open(expect_attachment=True)
        self._record(TAG_ATTACHMENT_END, _json_bytes(info))
        self._in_attachment = False

    def finish(self, meta: dict[str, Any]) -> None:
        """Write META and END: the container is complete."""
        self._check_open(expect_attachment=False)
        self._record(TAG_META, _json_bytes(meta))
        self._record(TAG_END, b"")
        self._finished = True

    def _record(self, tag: bytes, payload) -> None:
        # Header and payload are written separately: a 64 KiB payload is never copied.
        self._sink.write(tag + b" " + str(len(payload)).encode("ascii") + b"\n")
        if len(payload):
            self._sink.write(payload)

    def _check_open(self, *, expect_attachment: bool) -> None:
        if self._finished:
            raise RuntimeError("the container is already finished")
        if self._in_attachment != expect_attachment:
            raise RuntimeError("an attachment is open" if self._in_attachment
                               else "no attachment is open")


def _json_bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


class AgeSink:
    """A write-only byte sink that encrypts everything written to age ``recipients``.

    ``pyrage.encrypt_io`` pulls plaintext from a reader and pushes ciphertext to a writer; it
    has no "write a chunk" API. So it runs on a helper thread, reading the other end of an
    ``os.pipe``: ``write`` blocks while the pipe (64 KiB in the kernel) is full, which keeps
    memory bounded, and plaintext only ever exists in memory. ``close`` ends the age stream
    (its last, authenticated chunk) and waits for the thread. If encryption fails (say the disk
    is full), the thread closes the pipe and the next ``write`` or ``close`` raises its error.
    """

    def __init__(self, out: BinaryIO, recipients: list):
        if not recipients:
            raise ValueError("age encryption needs at least one recipient")
        self._out = _RecordingWriter(out)
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._writer = os.fdopen(write_fd, "wb", buffering=0)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encrypt, args=(list(recipients),),
                                        name="age-encrypt", daemon=True)
        self._thread.start()

    def _encrypt(self, recipients: list) -> None:
        try:
            pyrage.encrypt_io(self._reader, self._out, recipients)
        except BaseException as exc:  # reported to the writing thread
            self._error = self._out.error or exc
        finally:
            self._reader.close()  # a blocked or later write() now fails with EPIPE

    def write(self, data) -> int:
        view = memoryview(data)
        try:
            while view:
                written = self._writer.write(view)
                view = view[written:]
        except BrokenPipeError:
            self._thread.join()
            raise self._failure() from None
        return len(data)

    def close(self) -> None:
        """Finish the age stream; raises the encryption error, if any."""
        if not self._writer.closed:
            try:
                self._writer.close()
            except BrokenPipeError:
                pass
        self._thread.join()
        if self._error is not None:
            raise self._failure()

    def _failure(self) -> BaseException:
        error = self._error or OSError("age encryption stopped")
        if isinstance(error, OSError | HotspotError):
            return error
        return OSError(f"age encryption failed: {error}")


class _RecordingWriter:
    """Passes writes through, remembering an OSError (pyrage reports it without its errno)."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._out.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self._out.flush()


# -- reading -----------------------------------------------------------------------------------

@dataclass
class Attachment:
    """One attached file of a decrypted contribution; its bytes are read on demand."""

    index: int
    name: str
    media_type: str
    size: int
    sha256: str
    info: dict[str, Any]
    _source: BinaryIO
    _spans: list[tuple[int, int]]  # (offset, length) of each data record's payload

    def iter_chunks(self) -> Iterator[bytes]:
        for offset, length in self._spans:
            self._source.seek(offset)
            data = self._source.read(length)
            if len(data) != length:
                raise EnvelopeFormatError("The envelope ends in the middle of an attachment.")
            yield data

    def read_bytes(self) -> bytes:
        return b"".join(self.iter_chunks())


@dataclass
class Contribution:
    """A decrypted contribution: ``meta`` (uuid, kind, day, language, fields, ...) and files."""

    meta: dict[str, Any]
    attachments: list[Attachment]

    @property
    def fields(self) -> dict[str, Any]:
        return self.meta.get("fields", {})


def read_envelope_plaintext(stream: BinaryIO, *,
                            spool_dir: str | os.PathLike | None = None) -> Contribution:
    """Parse a decrypted container, checking its structure and every attachment's sha256.

    The attachments' bytes are not kept in memory: with a seekable ``stream`` they are read
    back from it on demand (keep it open while using them); any other stream (a pipe from
    ``age -d``) is first spooled to a temporary file in ``spool_dir``. That spool is plaintext
    on disk: do this at the hub, never on a hotspot.
    """
    if not _seekable(stream):
        spool = tempfile.TemporaryFile(dir=spool_dir)
        shutil.copyfileobj(stream, spool, 1 << 20)
        spool.seek(0)
        stream = spool
    return _parse(stream)


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _parse(stream: BinaryIO) -> Contribution:
    start = stream.tell()
    if stream.read(len(MAGIC)) != MAGIC:
        stream.seek(start)
        first = stream.read(len(MAGIC))
        if first.startswith(b"HOTSPOT-CONTRIBUTION/"):
            raise EnvelopeFormatError("This envelope uses a newer format than this program "
                                      "knows (%(line)s).", line=first.split(b"\n")[0].decode(
                                          "ascii", "replace"))
        raise EnvelopeFormatError("This is not a decrypted contribution envelope.")
    attachments: list[Attachment] = []
    current: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    while True:
        tag, length = _read_header(stream)
        if tag == TAG_END:
            if meta is None or length != 0:
                raise EnvelopeFormatError("The envelope's END record is misplaced.")
            break
        if meta is not None:
            raise EnvelopeFormatError("Records follow the envelope's META record.")
        if tag == TAG_ATTACHMENT_DATA:
            if current is None or length > MAX_DATA_RECORD:
                raise EnvelopeFormatError("Attachment data outside an attachment.")
            offset = stream.tell()
            data = stream.read(length)
            if len(data) != length:
                raise EnvelopeFormatError("The envelope ends in the middle of an attachment.")
            current["hash"].update(data)
            current["size"] += length
            current["spans"].append((offset, length))
            continue
        info = _read_json(stream, length, tag)
        if tag == TAG_ATTACHMENT_START:
            if current is not None:
                raise EnvelopeFormatError("An attachment starts inside another one.")
            if info.get("index") != len(attachments):
                raise EnvelopeFormatError("The attachments are not numbered in order.")
            current = {"info": info, "hash": hashlib.sha256(), "size": 0, "spans": []}
        elif tag == TAG_ATTACHMENT_END:
            if current is None or info.get("index") != current["info"]["index"]:
                raise EnvelopeFormatError("An attachment ends that was not started.")
            sha256 = current["hash"].hexdigest()
            if info.get("size") != current["size"] or info.get("sha256") != sha256:
                raise EnvelopeFormatError("Attachment %(index)s is damaged: its size or sha256 "
                                          "does not match.", index=info.get("index"))
            first = current["info"]
            attachments.append(Attachment(
                index=first["index"], name=str(first.get("name", "")),
                media_type=str(first.get("media_type", "")), size=current["size"],
                sha256=sha256, info={**first, **info}, _source=stream, _spans=current["spans"]))
            current = None
        elif tag == TAG_META:
            if current is not None:
                raise EnvelopeFormatError("The envelope's META record is inside an attachment.")
            meta = info
        else:
            raise EnvelopeFormatError("Unknown record %(tag)s in the envelope.",
                                      tag=tag.decode("ascii", "replace"))
    listed = meta.get("attachments", [])
    if [(a.get("index"), a.get("sha256")) for a in listed] != [
            (a.index, a.sha256) for a in attachments]:
        raise EnvelopeFormatError("The envelope's META does not list its attachments.")
    return Contribution(meta, attachments)


def _read_header(stream: BinaryIO) -> tuple[bytes, int]:
    line = stream.readline(_MAX_HEADER_LINE)
    if not line:
        raise EnvelopeFormatError("The envelope is cut short (no END record).")
    parts = line.rstrip(b"\n").split(b" ")
    if not line.endswith(b"\n") or len(parts) != 2 or not parts[1].isdigit():
        raise EnvelopeFormatError("The envelope has a malformed record header.")
    return parts[0], int(parts[1])


def _read_json(stream: BinaryIO, length: int, tag: bytes) -> dict[str, Any]:
    if length > MAX_JSON_RECORD:
        raise EnvelopeFormatError("A record in the envelope is too large.")
    data = stream.read(length)
    if len(data) != length:
        raise EnvelopeFormatError("The envelope is cut short.")
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EnvelopeFormatError("A %(tag)s record is not valid JSON.",
                                  tag=tag.decode("ascii")) from None
    if not isinstance(value, dict):
        raise EnvelopeFormatError("A %(tag)s record is not a JSON object.",
                                  tag=tag.decode("ascii"))
    return value


def decrypt_to_plaintext(envelope: BinaryIO, identities: list, out: BinaryIO) -> None:
    """Decrypt an age envelope with the hub's identities into ``out`` (hub side, tests)."""
    pyrage.decrypt_io(envelope, out, identities)


__all__ = [
    "MAGIC", "AgeSink", "Attachment", "Contribution", "ContainerWriter", "EnvelopeFormatError",
    "decrypt_to_plaintext", "read_envelope_plaintext",
]
