"""Installing a library (catalog JSON + its files) into the data directory.

Check first, act second: the catalog is validated and every file is copied into the
content-addressed media store (hash verified) before the catalog file is replaced, in one
atomic write, so the served catalog never names a file that is not there.

    >>> paths = DataPaths(Path("/var/lib/hotspot"))
    >>> install_catalog(paths, load_catalog_file(Path("catalog.json")), files_dir=Path("files"))
    >>> install_demo(paths)   # hotspot serve --demo: build the signed demo pack, import it
    True
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
           "library_lock", "write_catalog", "keep_as_previous", "read_catalog_data",
           "installed_library", "demo_source_hash", "demo_is_current"]


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

    @property
    def demo_pack_cache(self) -> Path:
        """``hotspot serve --demo`` builds the demo pack here before importing it."""
        return self.root / "demo-pack"

    @property
    def demo_marker(self) -> Path:
        """Which demo source (hash) and version the installed demo was built from."""
        return self.root / "demo-source.json"

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


def installed_library(paths: DataPaths) -> dict | None:
    """The ``library`` object of the installed catalog (id, version, ...), or None."""
    if not paths.catalog.exists():
        return None
    store = Store(paths.catalog)
    try:
        return store.get_meta("library")
    finally:
        store.close()


# -- the demo library ---------------------------------------------------------------------------
#
# The demo is a real content pack: built from hotspot/demo/ (catalog.csv, taxonomy.json,
# library.json, files/) with content_pack.build and signed with the DEMO key shipped next to
# it, then installed by hotspot.packs.import_pack like any pack. The demo key is publicly
# known, so it is trusted here only, for that one pack, and never added to trusted keys.

DEMO_SOURCE_FILES = ("catalog.csv", "taxonomy.json", "library.json")
DEMO_SECRET_KEY = "demo-signing.key"
DEMO_PUBLIC_KEY = "demo-signing.pub"


def demo_source_hash(demo_dir: Path = DEMO_DIR) -> str:
    """SHA-256 over the demo's spreadsheet, JSON files and files/ (names and contents)."""
    demo_dir = Path(demo_dir)
    names = list(DEMO_SOURCE_FILES)
    names += sorted(f"files/{p.name}" for p in (demo_dir / "files").iterdir() if p.is_file())
    digest = hashlib.sha256()
    for name in names:
        file_digest = hashlib.sha256((demo_dir / name).read_bytes()).hexdigest()
        digest.update(f"{name}\0{file_digest}\n".encode())
    return digest.hexdigest()


def _read_demo_marker(paths: DataPaths) -> dict:
    try:
        data = json.loads(paths.demo_marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        return {}
    return data


def _write_demo_marker(paths: DataPaths, data: dict) -> None:
    staging = paths.demo_marker.with_name(f".{paths.demo_marker.name}.new")
    with open(staging, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, paths.demo_marker)
    fsync_directory(paths.root)


@contextlib.contextmanager
def _demo_lock(paths: DataPaths) -> Iterator[None]:
    """Two demo servers started at once: the second waits, then finds the demo installed.

    Not ``library_lock``: ``import_pack`` takes that one itself, and it does not wait.
    """
    fd = os.open(paths.root / ".demo.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def demo_is_current(paths: DataPaths, source_hash: str | None = None) -> bool:
    """True when the installed library is the demo built from exactly this demo source."""
    installed = installed_library(paths)
    marker = _read_demo_marker(paths)
    return (installed is not None and installed.get("demo") is True
            and marker.get("library") == installed.get("id")
            and marker.get("version") == installed.get("version")
            and marker.get("source_sha256") == (source_hash or demo_source_hash()))


def install_demo(paths: DataPaths, *, margin_bytes: int = 0, replace_library: bool = False,
                 progress=None, demo_dir: Path = DEMO_DIR) -> bool:
    """Build the demo pack and import it, unless this exact demo is installed already.

    Returns False when nothing had to be done (the common case: one hash of ~2 MB of source).
    The pack's version is one more than any demo version this data directory has had, so a
    changed demo source is always an upgrade, never refused as a downgrade. A data directory
    holding a real (non-demo) library is left alone unless ``replace_library`` is given.
    """
    from content_pack.build import build_pack
    from content_pack.signing import PublicKey, SecretKey

    from .packs import import_pack

    demo_dir = Path(demo_dir)
    source_hash = demo_source_hash(demo_dir)
    paths.create()
    with _demo_lock(paths):
        if demo_is_current(paths, source_hash):
            return False
        installed = installed_library(paths)
        if installed is not None and not installed.get("demo") and not replace_library:
            raise HotspotError(
                f"{paths.root} holds the library '{installed.get('id')}', which is not the demo; "
                f"the demo does not replace it. Use another --data-dir, or run 'hotspot library "
                f"install-demo --replace-library' to replace it (rollback brings it back).")
        marker = _read_demo_marker(paths)
        installed_demo = installed.get("version", 0) if installed and installed.get("demo") else 0
        version = max(installed_demo, marker.get("version", 0)) + 1
        cache = paths.demo_pack_cache
        if cache.exists():  # an older demo pack, or the leftovers of a build that was killed
            shutil.rmtree(cache)
        cache.mkdir(mode=0o750)
        pack = build_pack(demo_dir, catalog_csv=demo_dir / "catalog.csv",
                          secret_key=SecretKey.load(demo_dir / DEMO_SECRET_KEY, None),
                          out_dir=cache, version=version)
        # Only the demo key: the caretaker's trusted keys have no say over the demo, and the
        # demo key has no say anywhere else.
        import_pack(pack, paths, [PublicKey.load(demo_dir / DEMO_PUBLIC_KEY)],
                    replace_library=replace_library, margin_bytes=margin_bytes,
                    progress=progress)
        library_id = installed_library(paths)["id"]
        _write_demo_marker(paths, {"library": library_id, "version": version,
                                   "source_sha256": source_hash, "pack": pack.name})
    return True
