"""The durable store: one TinyDB file, written atomically and fsynced.

A ``Store`` is the only owner of ``<data_dir>/hotspot.json``: it holds the TinyDB handle and a
lock, and every thread goes through it. Each change rewrites the whole file through a temporary
file in the same folder, ``fsync`` and ``os.replace``, so a crash or a power cut leaves either the
old file or the new one, never a mix. A file that cannot be parsed is never overwritten: opening
the store fails with ``StoreCorrupt`` and the file is kept for recovery.

    >>> store = Store(tmp_path / "hotspot.json")
    >>> store.insert("resources", {"id": "radio-basics", "year": 2024})
    1
    >>> store.get("resources", id="radio-basics")
    {'id': 'radio-basics', 'year': 2024}
    >>> with store.batch():                  # one write to disk, or none if the block raises
    ...     store.set_meta("library_version", 2)
    ...     store.replace_table("taxonomy", [{"id": "patrols"}])
    >>> store.close()
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from hotspot.durable import fsync_directory
from hotspot.errors import StoreCorrupt, StoreError

META_TABLE = "meta"


class AtomicJSONStorage(Storage):
    """TinyDB storage that keeps the data in memory and replaces the file atomically.

    The store is the only owner of the file, so the disk is read once and then the in-memory
    copy is the truth, as long as writes succeed. TinyDB mutates the dict returned by ``read()``
    before it calls ``write()``, so when a write fails the cache is dropped and the next read
    reloads what is really on disk.

    While writes are deferred (see ``Store.batch``), ``write()`` only keeps the data in memory and
    ``flush()`` writes it once.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.directory = os.path.dirname(os.path.abspath(self.path))
        self.temp_prefix = "." + os.path.basename(self.path) + ".tmp-"
        self._data: dict | None = None
        self._loaded = False
        self._deferred = False
        self._dirty = False

    # -- TinyDB storage interface -------------------------------------------------------------

    def read(self) -> dict | None:
        if not self._loaded:
            self._data = self._load()
            self._loaded = True
        return self._data

    def write(self, data: dict) -> None:
        if self._deferred:
            self._data, self._loaded, self._dirty = data, True, True
            return
        self._save(data)

    # -- used by Store ------------------------------------------------------------------------

    def defer_writes(self) -> None:
        self._deferred, self._dirty = True, False

    def flush(self) -> None:
        """End deferred mode, writing the in-memory data once if anything changed."""
        self._deferred = False
        if self._dirty:
            self._dirty = False
            self._save(self._data if self._data is not None else {})

    def discard(self) -> None:
        """Forget the in-memory data (and deferred changes); the next read reloads the file."""
        self._data, self._loaded, self._deferred, self._dirty = None, False, False, False

    def remove_stale_temp_files(self) -> None:
        """Remove temporary files left by a crash in the middle of a write (ours only)."""
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(self.temp_prefix) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    # -- disk ---------------------------------------------------------------------------------

    def _load(self) -> dict | None:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"Could not read {self.path}: {e.strerror or e}") from e
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise self._corrupt("it is not UTF-8 text") from e
        except ValueError as e:  # json.JSONDecodeError
            reason = "it is empty" if not raw.strip() else f"it is not valid JSON ({e})"
            raise self._corrupt(reason) from e
        if not isinstance(data, dict):
            raise self._corrupt(f"it holds a JSON {type(data).__name__}, not an object of tables")
        for name, table in data.items():
            if not isinstance(table, dict) or not all(isinstance(d, dict) for d in table.values()):
                raise self._corrupt(f"table {name!r} is not an object of documents")
        return data

    def _corrupt(self, reason: str) -> StoreCorrupt:
        return StoreCorrupt(
            f"The store file {self.path} is damaged: {reason}. It was kept unchanged for "
            "recovery. To start with an empty store, move it away (for example rename it to "
            f"{os.path.basename(self.path)}.broken); or restore it from a backup."
        )

    def _save(self, data: dict) -> None:
        try:
            payload = json.dumps(
                data, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
            self._replace_file(payload)
        except BaseException as e:
            # TinyDB already changed the cached dict: it is no longer what is on disk.
            self.discard()
            if isinstance(e, OSError):
                raise StoreError(f"Could not save to {self.path}: {e.strerror or e}") from e
            raise
        self._data, self._loaded = data, True

    def _replace_file(self, payload: bytes) -> None:
        try:
            mode = os.stat(self.path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        fd, temp_path = tempfile.mkstemp(prefix=self.temp_prefix, dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp_path, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
            raise
        fsync_directory(self.directory)


class Store:
    """Owns the TinyDB handle and its lock. Documents go in and come out as plain dict copies."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise StoreError(f"The folder for the store does not exist: {self.path.parent}")
        self._lock = threading.RLock()
        self._storage = AtomicJSONStorage(self.path)
        self._storage.remove_stale_temp_files()
        self._storage.read()  # a damaged file fails now, at startup, not at the first request
        self._db: TinyDB | None = self._open_db()
        self._batch_depth = 0
        self._batch_failed = False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------

    def all(self, table: str) -> list[dict]:
        with self._lock:
            return [_plain(doc) for doc in self._table(table).all()]

    def find(self, table: str, **match: Any) -> list[dict]:
        """Documents whose top-level fields equal ``match`` (all documents if none given)."""
        with self._lock:
            return [_plain(doc) for doc in self._search(table, match)]

    def get(self, table: str, **match: Any) -> dict | None:
        with self._lock:
            found = self._search(table, match)
            return _plain(found[0]) if found else None

    def get_meta(self, key: str, default: Any = None) -> Any:
        doc = self.get(META_TABLE, key=key)
        return doc["value"] if doc is not None else default

    # -- writing: each call is one write to disk (or part of the enclosing batch) -------------

    def insert(self, table: str, doc: dict) -> int:
        """Add a document; returns its TinyDB document id."""
        doc = _checked_doc(doc)
        with self._changing():
            return self._table(table).insert(doc)

    def upsert(self, table: str, doc: dict, **match: Any) -> None:
        """Update the documents matching ``match`` with the fields of ``doc``, or insert ``doc``.

        Fields of an existing document that ``doc`` does not mention are kept.
        """
        doc = _checked_doc(doc)
        _require_match("upsert", match)
        with self._changing():
            ids = [d.doc_id for d in self._search(table, match)]
            if ids:
                self._table(table).update(doc, doc_ids=ids)
            else:
                self._table(table).insert(doc)

    def update(self, table: str, fields: dict, **match: Any) -> int:
        """Set ``fields`` on every document matching ``match``; returns how many matched."""
        fields = _checked_doc(fields)
        _require_match("update", match)
        with self._changing():
            ids = [d.doc_id for d in self._search(table, match)]
            if ids:  # TinyDB would rewrite the file even when nothing matches
                self._table(table).update(fields, doc_ids=ids)
            return len(ids)

    def remove(self, table: str, **match: Any) -> int:
        """Remove every document matching ``match``; returns how many were removed."""
        _require_match("remove", match)
        with self._changing():
            ids = [d.doc_id for d in self._search(table, match)]
            if ids:
                self._table(table).remove(doc_ids=ids)
            return len(ids)

    def replace_table(self, table: str, docs: list[dict]) -> None:
        """Make ``docs`` the whole content of ``table``, in one write."""
        docs = [_checked_doc(doc) for doc in docs]
        with self.batch():
            self._table(table).truncate()
            if docs:
                self._table(table).insert_multiple(docs)

    def set_meta(self, key: str, value: Any) -> None:
        self.upsert(META_TABLE, {"key": key, "value": value}, key=key)

    @contextlib.contextmanager
    def batch(self) -> Iterator[Store]:
        """Group changes into one atomic write at the end of the outermost ``with`` block.

        If the block raises, nothing is written and the in-memory state is reloaded from disk.
        A nested batch is part of the outer one: if it raises, the whole outer batch is
        abandoned, even if the outer block catches the exception (its exit then raises
        ``StoreError``), because half of a batch must never reach the disk.
        Other threads wait until the batch is over.
        """
        with self._lock:
            self._check_open()
            outermost = self._batch_depth == 0
            if outermost:
                self._storage.defer_writes()
                self._batch_failed = False
            self._batch_depth += 1
            try:
                yield self
            except BaseException:
                self._batch_depth -= 1
                self._batch_failed = True
                if outermost:
                    self._reload()
                raise
            self._batch_depth -= 1
            if outermost:
                self._end_batch()

    def close(self) -> None:
        with self._lock:
            if self._batch_depth:
                raise StoreError("The store cannot be closed inside a batch.")
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- internals ----------------------------------------------------------------------------

    def _open_db(self) -> TinyDB:
        # A new TinyDB on the same storage: forgets TinyDB's query caches and next-id counters.
        return TinyDB(storage=lambda: self._storage)

    def _check_open(self) -> None:
        if self._db is None:
            raise StoreError(f"The store {self.path} is closed.")

    def _table(self, name: str):
        self._check_open()
        return self._db.table(name)

    def _search(self, table: str, match: dict) -> list:
        if not match:
            return self._table(table).all()
        return self._table(table).search(Query().fragment(match))

    def _reload(self) -> None:
        self._storage.discard()
        self._db = self._open_db()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except BaseException:
                if self._batch_depth:
                    self._batch_failed = True  # the change may be half done in memory
                else:
                    self._reload()
                raise

    def _end_batch(self) -> None:
        if self._batch_failed:  # an inner batch or change failed and the outer block caught it
            self._reload()
            raise StoreError("The changes were not saved because part of them failed.")
        try:
            self._storage.flush()
        except BaseException:
            self._reload()
            raise


def _plain(doc: dict) -> dict:
    # TinyDB's Document copies only the top level; nested lists and dicts are shared with the
    # in-memory data, so callers get a deep copy.
    return copy.deepcopy(dict(doc))


def _checked_doc(doc: dict) -> dict:
    if not isinstance(doc, dict):
        raise TypeError(f"A document must be a dict, not {type(doc).__name__}")
    # TinyDB keeps a shallow copy: a caller changing a nested list later would change the store.
    return copy.deepcopy(dict(doc))


def _require_match(operation: str, match: dict) -> None:
    if not match:
        raise ValueError(f"{operation}() needs at least one field to match")
