"""Installing a library (catalog JSON + its files) into the data directory.

Check first, act second: the catalog is validated and every file is copied into the
content-addressed media store (hash verified) before the catalog file is replaced, in one
atomic write, so the served catalog never names a file that is not there.

    >>> paths = DataPaths(Path("/var/lib/hotspot"))
    >>> install_catalog(paths, load_catalog_file(Path("catalog.json")), files_dir=Path("files"))
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from content_pack.schema import load_catalog as load_catalog_file
from content_pack.schema import FORMAT_VERSION, validate_catalog

from .durable import fsync_directory
from .errors import BadRequest, CatalogError, HotspotError
from .media import MediaStore
from .store import Store

DEMO_DIR = Path(__file__).parent / "demo"

__all__ = ["DataPaths", "install_catalog", "install_demo", "load_catalog_file", "DEMO_DIR",
           "library_lock", "write_catalog", "keep_as_previous", "read_catalog_data"]


@dataclass(frozen=True)
class DataPaths:
    """Where things live inside the data directory."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.json"

    @property
    def state(self) -> Path:
        return self.root / "hotspot.json"

    @property
    def previous_catalog(self) -> Path:
        """The catalog installed before the current one, kept for ``hotspot rollback``."""
        return self.root / "catalog.previous.json"

    @property
    def import_progress(self) -> Path:
        return self.root / "import-progress.json"

    @property
    def lock(self) -> Path:
        return self.root / ".library.lock"

    @property
    def media(self) -> Path:
        return self.root / "media"

    def create(self) -> None:
        for path in (self.root, self.media):
            path.mkdir(parents=True, exist_ok=True, mode=0o750)


def catalog_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _find_file(files_dir: Path, entry: Mapping[str, Any]) -> Path:
    for candidate in (files_dir / entry["sha256"], files_dir / entry["name"]):
        if candidate.is_file():
            return candidate
    raise CatalogError(f"File '{entry['name']}' (sha256 {entry['sha256'][:12]}…) is missing "
                       f"from {files_dir}.")


def install_catalog(paths: DataPaths, data: Mapping[str, Any], files_dir: Path | None) -> str:
    """Validate ``data``, store its files, then replace the catalog. Returns the content hash.

    The catalog it replaces is kept as the previous one (``hotspot rollback``).
    """
    validate_catalog(data)
    paths.create()
    with library_lock(paths):
        media = MediaStore(paths.media)
        for resource in data["resources"]:
            for entry in resource.get("files", ()):
                if media.has(entry["sha256"]):
                    continue
                if files_dir is None:
                    raise CatalogError(f"File '{entry['name']}' is not in the media store and no "
                                       f"folder of files was given.")
                source = _find_file(files_dir, entry)
                try:
                    media.add_file(source, expected_sha256=entry["sha256"])
                except BadRequest as exc:
                    raise CatalogError(f"File '{entry['name']}' ({source}) does not match the "
                                       f"catalog: {exc.message}") from None
        keep_as_previous(paths)
        return write_catalog(paths, data)


@contextlib.contextmanager
def library_lock(paths: DataPaths) -> Iterator[None]:
    """Only one process changes the installed library at a time (import, install, rollback).

    An advisory ``flock`` on ``<data_dir>/.library.lock``: the kernel releases it when the
    holder dies, even by ``kill -9``, so a crashed import never blocks the next one.
    """
    paths.create()
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HotspotError("Another import, installation or rollback is running in "
                               f"{paths.root}; try again when it has finished.") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_catalog(paths: DataPaths, data: Mapping[str, Any], target: Path | None = None) -> str:
    """Write ``data`` as a catalog store file and rename it onto ``target`` (the catalog).

    Readers (the server's ``CatalogHolder``) see the old file or the new one, never half of
    one. Every file the catalog names must already be in the media store. Returns the hash.
    """
    target = paths.catalog if target is None else target
    digest = catalog_hash(data)
    staging = target.with_name(f".{target.name}.new")
    if staging.exists():
        staging.unlink()
    store = Store(staging)
    try:
        with store.batch():
            store.set_meta("library", dict(data["library"]))
            store.set_meta("taxonomy", dict(data["taxonomy"]))
            store.set_meta("content_hash", digest)
            store.replace_table("resources", list(data["resources"]))
    finally:
        store.close()
    os.replace(staging, target)
    fsync_directory(paths.root)
    return digest


def copy_catalog_file(paths: DataPaths, source: Path, target: Path) -> None:
    """Atomically make ``target`` a copy of the catalog file ``source`` (same bytes)."""
    staging = target.with_name(f".{target.name}.new")
    with open(source, "rb") as src, open(staging, "wb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, target)
    fsync_directory(paths.root)


def keep_as_previous(paths: DataPaths) -> bool:
    """Copy the current catalog to ``catalog.previous.json``; False if none is installed."""
    if not paths.catalog.exists():
        return False
    copy_catalog_file(paths, paths.catalog, paths.previous_catalog)
    return True


def read_catalog_data(path: Path) -> dict | None:
    """The catalog stored in the catalog file ``path`` as catalog-format data, or None."""
    if not Path(path).exists():
        return None
    store = Store(path)
    try:
        library = store.get_meta("library")
        if library is None:
            return None
        return {"format": FORMAT_VERSION, "library": library,
                "taxonomy": store.get_meta("taxonomy") or {},
                "resources": store.all("resources")}
    finally:
        store.close()


def catalog_file_hashes(data: Mapping[str, Any] | None) -> set[str]:
    """The SHA-256 of every file a catalog names."""
    if not data:
        return set()
    return {entry["sha256"] for resource in data["resources"]
            for entry in resource.get("files", ())}


def installed_hash(paths: DataPaths) -> str | None:
    if not paths.catalog.exists():
        return None
    store = Store(paths.catalog)
    try:
        return store.get_meta("content_hash")
    finally:
        store.close()


def install_demo(paths: DataPaths) -> bool:
    """Install the built-in demo library unless exactly that version is installed already."""
    data = load_catalog_file(DEMO_DIR / "catalog.json")
    if installed_hash(paths) == catalog_hash(data):
        return False
    install_catalog(paths, data, DEMO_DIR / "files")
    return True
