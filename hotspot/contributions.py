"""The contribution queue: what people leave on the hotspot, kept encrypted until delivered.

Each contribution is one envelope file (``hotspot.envelope``): age-encrypted to the hub's public
keys *as the data arrives*, so the hotspot cannot read a contribution back once written, and
no plaintext ever reaches the disk. The files are the truth: the state of an envelope is the
folder it is in, and the TinyDB index only speeds up listing; it is rebuilt from the files when
it is missing, damaged or out of step. The layout, the guarantees and their limits are in
``docs/contributions.md``.

    >>> queue = ContributionQueue(data_dir / "contributions", ["age1..."], reserve_bytes=500 * MB)
    >>> writer = queue.new("report", language="es")
    >>> writer.add_field("what_happened", "...")
    >>> writer.begin_attachment("IMG_0042.jpg", "image/jpeg")
    >>> for chunk in upload_chunks:          # bounded memory: chunks go straight to encryption
    ...     writer.write_attachment(chunk)
    >>> writer.end_attachment()
    >>> receipt = writer.commit()            # durable on disk when this returns
    >>> receipt.code
    'K3M9T2QX'
    >>> [(e.state, e.kind, e.size, e.day) for e in queue.list()]
    [('queued', 'report', 1187345, '2026-10-01')]

Several processes use the queue (the web server, the CLI, the USB watcher). Every operation
takes an exclusive ``flock`` on ``<root>/.lock`` and opens the index only for that operation,
so no process works from a stale copy of it (see the docs for why this differs from ``Store``'s
usual one-owner rule).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import pyrage
from pyrage import x25519

from hotspot.config import UI_LANGUAGES
from hotspot.durable import fsync_directory, write_atomically
from hotspot.envelope import AgeSink, ContainerWriter
from hotspot.errors import (
    N_, BadRequest, ConfigError, HotspotError, NotFound, StoreCorrupt, StoreError,
)
from hotspot.sniff import SNIFF_BYTES, TextChecker, sniff_media_type
from hotspot.store import Store

log = logging.getLogger("hotspot.contributions")

MB = 1_000_000
KINDS = ("suggestion", "feedback", "message", "report")
STATES = ("queued", "exported", "delivered")
UNDELIVERED = ("queued", "exported")
ENCRYPTED_SUFFIX = "age"
PLAINTEXT_SUFFIX = "plain"
META_FORMAT = 1
INDEX_TABLE = "contributions"
RESERVE_CHECK_EVERY = 1 << 18     # bytes of an upload between two free-space checks (statvfs)
_RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RESOURCE_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_ENVELOPE_NAME = re.compile(
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"\.(?P<kind>[a-z]+)\.(?P<day>\d{4}-\d{2}-\d{2})\.(?P<suffix>age|plain)")
_RECEIPT_NAME = re.compile(r"(?P<uuid>[0-9a-f-]{36})\.receipt\.json")


# -- errors ------------------------------------------------------------------------------------

class TooLarge(BadRequest):
    """A file, the whole contribution, a field or the number of files is over its limit."""

    status = 413


class UnsupportedFile(BadRequest):
    """An attached file's content is not one of the allowed media types."""

    status = 415


class InsufficientStorage(HotspotError):
    """Free disk space is below the reserve kept for the library."""

    status = 507


class ContributionsNotConfigured(HotspotError):
    """No recipient key is configured and unencrypted storage is not allowed."""

    status = 503


# -- values ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """Size limits of one contribution. Bytes for files; characters for text fields."""

    max_file_bytes: int = 25 * MB
    max_total_bytes: int = 50 * MB   # fields (UTF-8) and files together
    max_files: int = 5
    max_field_chars: int = 20_000
    max_fields_chars: int = 100_000  # all fields together
    max_fields: int = 50

    @classmethod
    def from_config(cls, config) -> Limits:
        c = config.contributions
        return cls(max_file_bytes=c.max_file_mb * MB, max_total_bytes=c.max_total_mb * MB,
                   max_files=c.max_files)


@dataclass(frozen=True)
class Receipt:
    """What the person who contributed is given: ``code`` is shown on the thank-you page."""

    uuid: str
    code: str


@dataclass(frozen=True)
class IndexEntry:
    """One envelope as listed: never anything of its content."""

    uuid: str
    state: str
    kind: str
    day: str                      # YYYY-MM-DD (UTC) the contribution arrived
    size: int                     # bytes of the envelope file
    sha256: str                   # of the envelope file
    encrypted: bool
    name: str                     # the file's name inside its state folder
    delivered_day: str | None = None

    @property
    def code(self) -> str:
        return receipt_code(self.uuid)


def receipt_code(uuid: str) -> str:
    """8 characters from an unambiguous alphabet, derived from the UUID's first 40 random bits."""
    value = uuidlib.UUID(uuid).int >> 88
    return "".join(_RECEIPT_ALPHABET[(value >> shift) & 31] for shift in range(35, -1, -5))


def parse_recipients(recipients: Iterable[str]) -> list:
    """age X25519 recipients from their ``age1...`` text; a bad one is a ``ConfigError``."""
    parsed = []
    for text in recipients:
        try:
            parsed.append(x25519.Recipient.from_str(text.strip()))
        except (pyrage.RecipientError, ValueError) as exc:
            raise ConfigError("contributions.recipients: %(key)r is not an age public key "
                              "(age1...): %(reason)s", key=text, reason=str(exc)) from None
    return parsed


# -- one contribution being received -----------------------------------------------------------

class EnvelopeWriter:
    """Receives one contribution and encrypts it as it arrives; ``commit`` makes it durable.

    Call ``add_field`` and the attachment methods in the order the form's parts arrive, then
    ``commit``. Any error (over a limit, a refused file type, a full disk) aborts the writer:
    the temporary file is removed and nothing becomes visible. ``abort`` does the same on
    purpose (the client went away). As a context manager, leaving the block without a commit
    aborts.
    """

    def __init__(self, queue: ContributionQueue, kind: str, *, language: str,
                 resource_id: str | None = None):
        if kind not in KINDS:
            raise BadRequest(N_("Unknown kind of contribution."))
        if language not in UI_LANGUAGES:
            raise BadRequest(N_("Unknown language."))
        if (kind == "feedback") != (resource_id is not None):
            raise BadRequest(N_("Feedback is about one resource; other contributions are not."))
        if resource_id is not None and not _RESOURCE_ID.fullmatch(resource_id):
            raise BadRequest(N_("Unknown resource."))
        queue.check_accepting()
        self.queue = queue
        self.uuid = str(uuidlib.uuid4())
        self.kind = kind
        self.language = language
        self.resource_id = resource_id
        self.day = queue.today().isoformat()
        self._limits = queue.limits
        self._fields: dict[str, str | list[str]] = {}
        self._field_count = 0
        self._field_chars = 0
        self._total_bytes = 0
        self._since_reserve_check = 0
        self._attachments: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._state = "open"
        self._temp_path, self._file = queue._create_temp(self.uuid)
        self._out = _HashingFile(self._file)
        try:
            self._sink = AgeSink(self._out, queue.recipients) if queue.encrypts else self._out
            self._container = ContainerWriter(self._sink)
        except BaseException:
            self._discard()
            raise

    def __enter__(self) -> EnvelopeWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._state == "open":
            self.abort()

    # -- fields -----------------------------------------------------------------------------

    def add_field(self, name: str, value: str) -> None:
        """A text field of the form. Repeated names keep every value (as a list)."""
        with self._failing():
            self._check_open()
            if not _FIELD_NAME.fullmatch(name):
                raise BadRequest(N_("A form field has an unexpected name."))
            if not isinstance(value, str):
                raise TypeError("a field value is text")
            limits = self._limits
            if len(value) > limits.max_field_chars:
                raise TooLarge(N_("A text is too long: each text can be up to %(limit)s "
                                  "characters."), limit=limits.max_field_chars)
            self._field_count += 1
            self._field_chars += len(value)
            if self._field_count > limits.max_fields:
                raise TooLarge(N_("The form has too many fields."))
            if self._field_chars > limits.max_fields_chars:
                raise TooLarge(N_("The texts are too long: together they can be up to "
                                  "%(limit)s characters."), limit=limits.max_fields_chars)
            self._count_bytes(len(value.encode("utf-8")))
            if name in self._fields:
                previous = self._fields[name]
                self._fields[name] = [*previous, value] if isinstance(previous, list) \
                    else [previous, value]
            else:
                self._fields[name] = value

    # -- attachments --------------------------------------------------------------------------

    def begin_attachment(self, filename: str, declared_type: str | None) -> None:
        """Start a file. Its type is decided from its first bytes, not from these two."""
        with self._failing():
            self._check_open()
            if self._current is not None:
                raise RuntimeError("end_attachment() was not called for the previous file")
            if len(self._attachments) >= self._limits.max_files:
                raise TooLarge(N_("Too many files: a contribution can have up to %(count)s."),
                               count=self._limits.max_files)
            declared = (declared_type or "").strip().lower()
            self._current = {
                "name": _clean_filename(filename),
                "declared_type": declared if _MEDIA_TYPE.fullmatch(declared) else None,
                "size": 0, "head": bytearray(), "started": False, "text": None,
                "hash": hashlib.sha256(),
            }

    def write_attachment(self, chunk: bytes) -> None:
        """The next bytes of the current file, in chunks of any size."""
        with self._failing():
            self._check_open()
            current = self._current
            if current is None:
                raise RuntimeError("begin_attachment() was not called")
            if not chunk:
                return
            if current["size"] + len(chunk) > self._limits.max_file_bytes:
                raise TooLarge(N_("The file %(name)s is too large: each file can be up to "
                                  "%(limit_mb)s MB."), name=current["name"],
                               limit_mb=_mb(self._limits.max_file_bytes))
            self._count_bytes(len(chunk))
            current["size"] += len(chunk)
            if current["started"]:
                self._write_data(chunk)
            else:
                current["head"] += chunk
                if len(current["head"]) >= SNIFF_BYTES:
                    self._start_current()

    def end_attachment(self) -> dict[str, Any] | None:
        """End the current file; returns its description, or None for an empty file.

        An empty file is dropped without a trace (a browser sends one when no file was chosen).
        """
        with self._failing():
            self._check_open()
            current = self._current
            if current is None:
                raise RuntimeError("begin_attachment() was not called")
            self._current = None
            if current["size"] == 0:
                return None
            if not current["started"]:
                self._current = current
                self._start_current()
                self._current = None
            if current["text"] is not None:
                self._check_text(current, current["text"].finish)
            info = {"index": len(self._attachments), "name": current["name"],
                    "media_type": current["media_type"],
                    "declared_type": current["declared_type"],
                    "size": current["size"], "sha256": current["hash"].hexdigest()}
            self._container.end_attachment(
                {"index": info["index"], "size": info["size"], "sha256": info["sha256"]})
            self._attachments.append(info)
            return dict(info)

    def _start_current(self) -> None:
        current = self._current
        head = bytes(current["head"])
        media_type = sniff_media_type(head[:SNIFF_BYTES])
        if media_type is None:
            raise UnsupportedFile(N_("The file %(name)s is not a kind of file this hotspot "
                                     "accepts (photos, sound, short videos, PDF or text)."),
                                  name=current["name"])
        current.update(media_type=media_type, head=None, started=True,
                       text=TextChecker() if media_type == "text/plain" else None)
        self._container.start_attachment({
            "index": len(self._attachments), "name": current["name"],
            "media_type": media_type, "declared_type": current["declared_type"]})
        self._write_data(head)

    def _write_data(self, data: bytes) -> None:
        current = self._current
        if current["text"] is not None:
            self._check_text(current, lambda: current["text"].feed(data))
        current["hash"].update(data)
        self._container.attachment_data(data)

    @staticmethod
    def _check_text(current: dict[str, Any], check: Callable[[], None]) -> None:
        try:
            check()
        except ValueError:
            raise UnsupportedFile(N_("The file %(name)s is not a kind of file this hotspot "
                                     "accepts (photos, sound, short videos, PDF or text)."),
                                  name=current["name"]) from None

    def _count_bytes(self, count: int) -> None:
        self._total_bytes += count
        if self._total_bytes > self._limits.max_total_bytes:
            raise TooLarge(N_("The contribution is too large: all its files and texts together "
                              "can be up to %(limit_mb)s MB."),
                           limit_mb=_mb(self._limits.max_total_bytes))
        self._since_reserve_check += count
        if self._since_reserve_check >= RESERVE_CHECK_EVERY:
            self._since_reserve_check = 0
            self.queue.check_reserve()

    # -- the end ------------------------------------------------------------------------------

    def commit(self) -> Receipt:
        """Finish the envelope and put it in the queue; it is on disk when this returns."""
        with self._failing():
            self._check_open()
            if self._current is not None:
                raise RuntimeError("end_attachment() was not called for the last file")
            meta = {
                "format": META_FORMAT, "uuid": self.uuid, "kind": self.kind, "day": self.day,
                "language": self.language, "fields": self._fields,
                "attachments": self._attachments,
            }
            if self.resource_id is not None:
                meta["resource_id"] = self.resource_id
            self._container.finish(meta)
            if self._sink is not self._out:
                self._sink.close()
            self._file.flush()
            # The clock time of a submission is not kept in clear: the file's times say the day.
            midnight = dt.datetime.combine(dt.date.fromisoformat(self.day), dt.time(),
                                           dt.timezone.utc).timestamp()
            os.utime(self._file.fileno(), (midnight, midnight))
            os.fsync(self._file.fileno())
            entry = self.queue._commit(self._temp_path, IndexEntry(
                uuid=self.uuid, state="queued", kind=self.kind, day=self.day,
                size=self._out.size, sha256=self._out.hash.hexdigest(),
                encrypted=self.queue.encrypts,
                name=_envelope_name(self.uuid, self.kind, self.day, self.queue.encrypts)))
            self._state = "committed"
            self._file.close()  # releases the temp file's lock; the name is already gone
            return Receipt(entry.uuid, receipt_code(entry.uuid))

    def abort(self) -> None:
        """Drop everything received so far; idempotent."""
        if self._state == "committed":
            return
        self._state = "aborted"
        self._discard()

    def _discard(self) -> None:
        sink = getattr(self, "_sink", None)
        if isinstance(sink, AgeSink):
            with contextlib.suppress(BaseException):
                sink.close()
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp_path)
        self._fields, self._current = {}, None

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"this contribution is already {self._state}")

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """Any error aborts the writer; a full disk becomes ``InsufficientStorage``."""
        try:
            yield
        except BaseException as exc:
            if self._state == "open":
                self.abort()
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self.queue._storage_error() from exc
            if isinstance(exc, OSError):
                raise StoreError(N_("The contribution could not be saved (%(reason)s)."),
                                 reason=exc.strerror or str(exc)) from exc
            raise


class _HashingFile:
    """The envelope file: counts and hashes what is written (the envelope's size and sha256)."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data) -> int:
        self._file.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._file.flush()


# -- the queue ---------------------------------------------------------------------------------

class ContributionQueue:
    """Envelopes in ``<root>/{queued,exported,delivered}/``, an index, and their life cycle."""

    def __init__(self, root: str | os.PathLike, recipients: Iterable[str], *,
                 allow_unencrypted: bool = False, reserve_bytes: int = 0,
                 limits: Limits | None = None,
                 today: Callable[[], dt.date] | None = None):
        self.root = Path(root)
        self.recipient_keys = [r.strip() for r in recipients if r.strip()]
        self.recipients = parse_recipients(self.recipient_keys)
        self.allow_unencrypted = allow_unencrypted
        self.reserve_bytes = reserve_bytes
        self.limits = limits or Limits()
        self.today = today or (lambda: dt.datetime.now(dt.timezone.utc).date())
        self.index_path = self.root / "index.json"
        self.temp_dir = self.root / "tmp"
        for folder in (self.root, self.temp_dir, *(self.root / s for s in STATES)):
            folder.mkdir(parents=True, exist_ok=True)
        with self._locked():  # also brings the index in line with the files
            self._remove_stale_temp_files()

    @classmethod
    def from_config(cls, config) -> ContributionQueue:
        c = config.contributions
        return cls(Path(config.data_dir) / "contributions", c.recipients,
                   allow_unencrypted=c.allow_unencrypted, reserve_bytes=c.reserve_mb * MB,
                   limits=Limits.from_config(config))

    def __repr__(self) -> str:
        return f"ContributionQueue({str(self.root)!r})"

    @property
    def encrypts(self) -> bool:
        return bool(self.recipients)

    # -- receiving ----------------------------------------------------------------------------

    def refusal(self) -> HotspotError | None:
        """Why a new contribution would be refused right now, or None (for the form page)."""
        try:
            self.check_accepting()
        except (ContributionsNotConfigured, InsufficientStorage) as exc:
            return exc
        return None

    def check_accepting(self) -> None:
        if not self.recipients and not self.allow_unencrypted:
            raise ContributionsNotConfigured(N_(
                "This hotspot cannot accept contributions yet: it has no key to protect them. "
                "The operator must set contributions.recipients (the hub's age public key, "
                "age1...) in the configuration."))
        self.check_reserve()

    def check_reserve(self) -> None:
        if self.reserve_bytes and shutil.disk_usage(self.root).free < self.reserve_bytes:
            raise self._storage_error()

    def _storage_error(self) -> InsufficientStorage:
        return InsufficientStorage(N_("The hotspot's storage is almost full, so it cannot "
                                      "accept contributions right now. Please try again later."))

    def new(self, kind: str, language: str, *, resource_id: str | None = None) -> EnvelopeWriter:
        return EnvelopeWriter(self, kind, language=language, resource_id=resource_id)

    def _create_temp(self, uuid: str) -> tuple[Path, BinaryIO]:
        # The temp file is flock'ed while its writer lives: start-up cleanup in another process
        # removes only temp files whose writer is gone (the lock dies with the process).
        path = self.temp_dir / f"{uuid}.partial"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return path, os.fdopen(fd, "wb", buffering=1 << 16)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise

    def _commit(self, temp_path: Path, entry: IndexEntry) -> IndexEntry:
        with self._locked(sync=False) as store:
            target = self.root / "queued" / entry.name
            os.rename(temp_path, target)
            fsync_directory(target.parent)
            fsync_directory(self.temp_dir)
            try:
                store.upsert(INDEX_TABLE, asdict(entry), uuid=entry.uuid)
            except StoreError as exc:
                # The envelope is safe on disk; the index catches up at the next operation.
                log.warning("The contributions index could not be updated: %s", exc.message)
        return entry

    def _remove_stale_temp_files(self) -> int:
        removed = 0
        for entry in os.scandir(self.temp_dir):
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer (in this or another process) holds it
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
            finally:
                os.close(fd)
        # Receipts are written under the lock, so a leftover temp receipt is from a crash.
        for item in (self.root / "delivered").glob(".*.tmp"):
            item.unlink(missing_ok=True)
        if removed:
            fsync_directory(self.temp_dir)
            log.info("Removed %d unfinished contribution(s) left by an interrupted upload.",
                     removed)
        return removed

    # -- listing ------------------------------------------------------------------------------

    def list(self, state: str | None = None) -> list[IndexEntry]:
        """Envelopes by day then UUID; metadata only (never content)."""
        if state is not None and state not in STATES:
            raise BadRequest("Unknown state %(state)r: use one of %(states)s.",
                             state=state, states=", ".join(STATES))
        with self._locked() as store:
            docs = store.find(INDEX_TABLE, state=state) if state else store.all(INDEX_TABLE)
        return sorted((_entry(doc) for doc in docs), key=lambda e: (e.day, e.uuid))

    def entry(self, uuid: str) -> IndexEntry:
        with self._locked() as store:
            doc = store.get(INDEX_TABLE, uuid=uuid)
        if doc is None:
            raise NotFound("There is no contribution %(uuid)s.", uuid=uuid)
        return _entry(doc)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for entry in self.list():
            counts[entry.state] += 1
        return counts

    def oldest_undelivered_day(self) -> str | None:
        days = [e.day for e in self.list() if e.state in UNDELIVERED]
        return min(days, default=None)

    def open_envelope(self, uuid: str) -> BinaryIO:
        """The envelope file, open for reading (it stays readable if it is moved meanwhile)."""
        with self._locked() as store:
            doc = store.get(INDEX_TABLE, uuid=uuid)
            if doc is None:
                raise NotFound("There is no contribution %(uuid)s.", uuid=uuid)
            return open(self.root / doc["state"] / doc["name"], "rb")

    # -- changing state -----------------------------------------------------------------------

    def mark_exported(self, uuids: Iterable[str]) -> int:
        """Queued envelopes written to a drive move to ``exported``; returns how many moved.

        Envelopes already exported or delivered stay where they are; an unknown UUID is an
        error, checked before anything moves.
        """
        uuids = list(dict.fromkeys(uuids))
        with self._locked() as store:
            docs = [self._require(store, u) for u in uuids]
            moving = [doc for doc in docs if doc["state"] == "queued"]
            for doc in moving:
                os.rename(self.root / "queued" / doc["name"], self.root / "exported" / doc["name"])
            if moving:
                fsync_directory(self.root / "exported")
                fsync_directory(self.root / "queued")
                with store.batch():
                    for doc in moving:
                        store.update(INDEX_TABLE, {"state": "exported"}, uuid=doc["uuid"])
        return len(moving)

    def mark_delivered(self, uuid: str, receipt: dict[str, Any]) -> bool:
        """The hub acknowledged this envelope; returns False if it was already delivered.

        ``receipt`` (the hub's acknowledgement, small JSON) is kept in clear next to the
        envelope as ``delivered/<uuid>.receipt.json``, with the day it was delivered; that
        file is what makes the state survive a reindex. If the receipt names a ``sha256``, it
        must be the envelope's.
        """
        try:
            receipt_json = json.dumps(receipt, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError):
            raise BadRequest("A delivery receipt must be JSON data.") from None
        if len(receipt_json) > 4096:
            raise BadRequest("A delivery receipt is at most 4096 characters.")
        with self._locked() as store:
            doc = self._require(store, uuid)
            if doc["state"] == "delivered":
                return False
            if receipt.get("sha256") not in (None, doc["sha256"]):
                raise BadRequest("The receipt for %(uuid)s is for other content (its sha256 "
                                 "differs): the envelope is not marked delivered.", uuid=uuid)
            delivered_day = self.today().isoformat()
            folder = self.root / "delivered"
            _write_atomically(folder / f"{uuid}.receipt.json", json.dumps(
                {"uuid": uuid, "delivered_day": delivered_day, "receipt": receipt},
                sort_keys=True, ensure_ascii=False).encode("utf-8"))
            os.rename(self.root / doc["state"] / doc["name"], folder / doc["name"])
            fsync_directory(folder)
            fsync_directory(self.root / doc["state"])
            store.update(INDEX_TABLE, {"state": "delivered", "delivered_day": delivered_day},
                         uuid=uuid)
        return True

    def purge_delivered(self, older_than_days: int) -> int:
        """Delete envelopes delivered at least ``older_than_days`` days ago; returns how many."""
        if older_than_days < 0:
            raise BadRequest("The retention is a number of days, 0 or more.")
        cutoff = (self.today() - dt.timedelta(days=older_than_days)).isoformat()
        folder = self.root / "delivered"
        with self._locked() as store:
            old = [doc for doc in store.find(INDEX_TABLE, state="delivered")
                   if (doc.get("delivered_day") or doc["day"]) <= cutoff]
            for doc in old:
                # Envelope first: a receipt without an envelope is tidied at the next sync.
                (folder / doc["name"]).unlink(missing_ok=True)
                (folder / f"{doc['uuid']}.receipt.json").unlink(missing_ok=True)
            if old:
                fsync_directory(folder)
                with store.batch():
                    for doc in old:
                        store.remove(INDEX_TABLE, uuid=doc["uuid"])
        return len(old)

    def reindex(self) -> int:
        """Rebuild the index from the files alone (every envelope hashed again)."""
        with self._locked(sync=False) as store:
            self._remove_stale_temp_files()
            store.replace_table(INDEX_TABLE, [])
            self._sync(store)
            return len(store.all(INDEX_TABLE))

    # -- the lock, the index and the files ----------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, *, sync: bool = True) -> Iterator[Store]:
        """One operation: exclusive lock, the index opened (repaired if need be), then closed."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            store = self._open_index()
            try:
                if sync:
                    self._sync(store)
                yield store
            finally:
                store.close()
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _open_index(self) -> Store:
        try:
            store = Store(self.index_path)
            if all(_valid_doc(doc) for doc in store.all(INDEX_TABLE)):
                return store
            store.close()
            reason = "it holds entries that are not envelopes"
        except StoreCorrupt as exc:
            reason = exc.message
        aside = _free_name(self.index_path.with_name(
            f"index.json.broken-{self.today().strftime('%Y%m%d')}"))
        os.replace(self.index_path, aside)
        fsync_directory(self.root)
        log.warning("The contributions index was damaged (%s). It was moved to %s and is "
                    "rebuilt from the envelope files.", reason, aside.name)
        return Store(self.index_path)

    def _scan(self) -> tuple[dict[str, IndexEntry], dict[str, Path]]:
        """The envelope files (without hashing) and the delivery receipts present on disk."""
        found: dict[str, IndexEntry] = {}
        receipts: dict[str, Path] = {}
        for state in STATES:
            for item in os.scandir(self.root / state):
                match = _ENVELOPE_NAME.fullmatch(item.name)
                if match is None:
                    receipt = _RECEIPT_NAME.fullmatch(item.name)
                    if receipt and state == "delivered":
                        receipts[receipt["uuid"]] = Path(item.path)
                    elif not item.name.startswith("."):
                        log.warning("Ignoring %s in the contributions folder: not an envelope.",
                                    item.path)
                    continue
                if match["kind"] not in KINDS or not _valid_day(match["day"]):
                    log.warning("Ignoring %s: not an envelope name.", item.path)
                    continue
                entry = IndexEntry(uuid=match["uuid"], state=state, kind=match["kind"],
                                   day=match["day"], size=item.stat().st_size, sha256="",
                                   encrypted=match["suffix"] == ENCRYPTED_SUFFIX, name=item.name)
                if entry.uuid in found:
                    log.warning("Envelope %s is in two folders; keeping the later state.",
                                entry.uuid)
                found[entry.uuid] = entry
        return found, receipts

    def _sync(self, store: Store) -> None:
        """Bring the index in line with the files (which are the truth); hash only new files."""
        found, receipts = self._scan()
        # A receipt whose envelope has not moved yet: delivery was interrupted; finish it.
        for uuid, path in receipts.items():
            entry = found.get(uuid)
            if entry is None:
                path.unlink(missing_ok=True)  # a purge was interrupted
            elif entry.state != "delivered":
                os.rename(self.root / entry.state / entry.name,
                          self.root / "delivered" / entry.name)
                fsync_directory(self.root / "delivered")
                found[uuid] = _replace(entry, state="delivered")
        indexed = {doc["uuid"]: doc for doc in store.all(INDEX_TABLE)}
        changes: list[dict[str, Any]] = []
        for uuid, entry in found.items():
            doc = indexed.get(uuid)
            same_file = doc is not None and all(
                doc[k] == getattr(entry, k) for k in ("name", "size", "kind", "day", "encrypted"))
            if same_file and doc["state"] == entry.state and (
                    entry.state != "delivered" or doc.get("delivered_day")):
                continue
            sha256 = doc["sha256"] if same_file else _hash_file(
                self.root / entry.state / entry.name)
            delivered_day = None
            if entry.state == "delivered":
                delivered_day = (doc or {}).get("delivered_day") or _receipt_day(
                    receipts.get(uuid)) or self.today().isoformat()
            changes.append(asdict(_replace(entry, sha256=sha256, delivered_day=delivered_day)))
        gone = [uuid for uuid in indexed if uuid not in found]
        if not changes and not gone:
            return
        with store.batch():
            for doc in changes:
                store.upsert(INDEX_TABLE, doc, uuid=doc["uuid"])
            for uuid in gone:
                store.remove(INDEX_TABLE, uuid=uuid)
        if indexed or gone:
            log.info("Contributions index brought up to date from the files (%d updated, "
                     "%d removed).", len(changes), len(gone))

    def _require(self, store: Store, uuid: str) -> dict[str, Any]:
        doc = store.get(INDEX_TABLE, uuid=uuid)
        if doc is None:
            raise NotFound("There is no contribution %(uuid)s.", uuid=uuid)
        return doc


# -- demo keys ---------------------------------------------------------------------------------

DEMO_IDENTITY_NAME = "DEMO-hub-identity.txt"


def generate_demo_recipient(directory: str | os.PathLike) -> tuple[str, Path]:
    """A clearly labelled DEMO age key pair for ``hotspot serve --demo``.

    Writes ``<directory>/DEMO-hub-identity.txt`` (mode 0600) once and reuses it afterwards;
    returns the public key (``age1...``) to encrypt to, and the identity file that decrypts
    (``age -d -i DEMO-hub-identity.txt envelope.age``). Anyone holding that file reads every
    contribution encrypted to it: it is for trying the hotspot, never for real use.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / DEMO_IDENTITY_NAME
    if not path.exists():
        identity = x25519.Identity.generate()
        text = (
            "# DEMO age identity made by `hotspot serve --demo`. NOT SAFE FOR REAL USE:\n"
            "# it is stored on the hotspot itself, so anyone with this device can read every\n"
            "# contribution encrypted to it. Real hotspots hold only the hub's PUBLIC key.\n"
            f"# public key: {identity.to_public()}\n"
            f"{identity}\n")
        with contextlib.suppress(FileExistsError):  # another process made it first
            _write_atomically(path, text.encode("ascii"), mode=0o600, replace=False)
    for line in path.read_text("ascii").splitlines():
        if line.startswith("AGE-SECRET-KEY-"):
            return str(x25519.Identity.from_str(line).to_public()), path
    raise ConfigError("%(path)s is not an age identity file; move it away to make a new demo "
                      "key.", path=str(path))


# -- small helpers -----------------------------------------------------------------------------

def _envelope_name(uuid: str, kind: str, day: str, encrypted: bool) -> str:
    return f"{uuid}.{kind}.{day}.{ENCRYPTED_SUFFIX if encrypted else PLAINTEXT_SUFFIX}"


def _entry(doc: dict[str, Any]) -> IndexEntry:
    return IndexEntry(**{k: doc.get(k) for k in IndexEntry.__dataclass_fields__})


def _replace(entry: IndexEntry, **changes: Any) -> IndexEntry:
    return IndexEntry(**{**asdict(entry), **changes})


def _valid_doc(doc: dict[str, Any]) -> bool:
    return (isinstance(doc.get("uuid"), str) and doc.get("state") in STATES
            and doc.get("kind") in KINDS and isinstance(doc.get("size"), int)
            and isinstance(doc.get("sha256"), str) and len(doc["sha256"]) == 64
            and isinstance(doc.get("name"), str) and isinstance(doc.get("day"), str)
            and isinstance(doc.get("encrypted"), bool))


def _valid_day(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _receipt_day(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        day = json.loads(path.read_text("utf-8")).get("delivered_day")
    except (OSError, ValueError, AttributeError):
        return None
    return day if isinstance(day, str) and _valid_day(day) else None


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _clean_filename(filename: str | None) -> str:
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:200] or "attachment"


def _mb(size: int) -> str:
    return f"{size / MB:g}"


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _write_atomically(path: Path, data: bytes, *, mode: int = 0o640,
                      replace: bool = True) -> None:
    write_atomically(path, data, mode=mode, replace=replace)
