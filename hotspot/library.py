"""Installing a library (catalog JSON + its files) into the data directory.

Check first, act second: the catalog is validated and every file is copied into the
content-addressed media store (hash verified) before the catalog file is replaced, in one
atomic write, so the served catalog never names a file that is not there.

    >>> paths = DataPaths(Path("/var/lib/hotspot"))
    >>> install_catalog(paths, load_catalog_file(Path("catalog.json")), files_dir=Path("files"))
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from content_pack.schema import load_catalog as load_catalog_file
from content_pack.schema import validate_catalog

from .durable import fsync_directory
from .errors import BadRequest, CatalogError
from .media import MediaStore
from .store import Store

DEMO_DIR = Path(__file__).parent / "demo"

__all__ = ["DataPaths", "install_catalog", "install_demo", "load_catalog_file", "DEMO_DIR"]


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
    """Validate ``data``, store its files, then replace the catalog. Returns the content hash."""
    validate_catalog(data)
    paths.create()
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
    digest = catalog_hash(data)
    # Written to a fresh file and renamed over the old one: readers see old or new, never half.
    staging = paths.catalog.with_name(".catalog.json.new")
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
    os.replace(staging, paths.catalog)
    fsync_directory(paths.root)
    return digest


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
