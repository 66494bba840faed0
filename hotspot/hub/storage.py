"""Where the hub keeps things: a small blob interface, first implemented on the local disk.

Everything the hub stores (envelopes, their records, the hotspot registry, published packs) goes
through ``HubStorage``: whole objects under ``/``-separated keys, written atomically. A later
implementation can put the same keys in an object store when a coalition runs many hubs; only
``LocalStorage`` exists today. Resumable uploads in progress are *not* objects: they grow by
appends, so they live in a local working folder (``LocalStorage.work_dir``) until complete.

    >>> storage = LocalStorage(Path("/var/lib/hotspot-hub"))
    >>> with open("x.age", "rb") as f:
    ...     storage.put("envelopes/ab/<uuid>.age", f)      # fsynced when it returns
    >>> storage.read_json("hotspots.json", default={})
    {}
    >>> with storage.lock("envelope-<uuid>"):               # one writer per UUID at a time
    ...     ...
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
import re
import shutil
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from hotspot.durable import fsync_directory
from hotspot.errors import HotspotError

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}(/[A-Za-z0-9][A-Za-z0-9._-]{0,199}){0,5}")
_CHUNK = 1 << 20


class StorageError(HotspotError):
    """The hub's storage cannot be read or written."""


class HubStorage(abc.ABC):
    """The interface: keys like ``envelopes/ab/<uuid>.age``; values are bytes or streams."""

    @abc.abstractmethod
    def put(self, key: str, source: BinaryIO) -> int:
        """Store the stream's bytes under ``key`` (replacing), durably; returns the size."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """The object, open for reading (``FileNotFoundError`` if absent)."""

    @abc.abstractmethod
    def size(self, key: str) -> int | None:
        ...

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys directly or indirectly under ``prefix/``, sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        ...

    @abc.abstractmethod
    def lock(self, name: str):
        """A context manager: exclusive across the hub's processes."""

    # -- helpers every implementation gets ---------------------------------------------------

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def put_bytes(self, key: str, data: bytes) -> None:
        import io
        self.put(key, io.BytesIO(data))

    def read_bytes(self, key: str) -> bytes | None:
        try:
            with self.open(key) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def read_json(self, key: str, default: Any = None) -> Any:
        data = self.read_bytes(key)
        if data is None:
            return default
        try:
            return json.loads(data)
        except ValueError:
            raise StorageError("The hub's %(key)s is damaged (not JSON).", key=key) from None

    def write_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, (json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)
                             + "\n").encode("utf-8"))


class LocalStorage(HubStorage):
    """Objects as files under ``root/objects``; locks as ``flock`` on files in ``root/locks``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.locks = self.root / "locks"
        self.work_dir = self.root / "work"
        try:
            for folder in (self.root, self.objects, self.locks, self.work_dir):
                folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        except PermissionError:
            raise StorageError("Cannot create the hub's data folder %(path)s (permission "
                               "denied).", path=str(self.root)) from None

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key) or ".." in key.split("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return self.objects / key

    def put(self, key: str, source: BinaryIO) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuidlib.uuid4().hex[:12]}.tmp")
        size = 0
        try:
            with open(temp, "xb") as out:
                while chunk := source.read(_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        fsync_directory(path.parent)
        return size

    def put_file(self, key: str, source: Path) -> None:
        """Move a finished local file into place (no copy on the same disk)."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(source, "rb") as f:
            os.fsync(f.fileno())
        os.replace(source, path)
        fsync_directory(path.parent)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith("."):
                    keys.append(str(Path(dirpath, name).relative_to(self.objects)))
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_directory(path.parent)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,120}", name):
            raise ValueError(f"not a lock name: {name!r}")
        fd = os.open(self.locks / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def remove_work(self, name: str) -> None:
        shutil.rmtree(self.work_dir / name, ignore_errors=True)
