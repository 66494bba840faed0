"""Packs the hub offers to hotspots: published by staff, the newest one fetched by hotspots.

``publish`` reads the pack's manifest through the safe reader (and, when the hub is given the
publishers' keys, checks the signature) and stores it as a tar under
``packs/<library>/<pack name>.tar`` with an index. Hotspots ask for the newest pack of the
library they have: a delta from exactly their version when there is one, else the newest full
pack. The hotspot checks the signature again against its own trusted keys before installing.

    >>> shelf.publish(Path("river-3.hotspot-pack.tar"))
    {'library': 'river', 'version': 3, 'kind': 'full', 'name': 'river-3.hotspot-pack.tar', ...}
    >>> shelf.newest("river", installed_version=2)
"""

from __future__ import annotations

import hashlib

import tempfile
from pathlib import Path
from typing import Any

from content_pack.build import read_pack_manifest, write_tar
from content_pack.reader import verify_pack
from hotspot.errors import NotFound, PackError

from .storage import HubStorage

_CHUNK = 1 << 20


class PackShelf:
    def __init__(self, storage: HubStorage, publisher_keys: list | None = None):
        self.storage = storage
        self.publisher_keys = publisher_keys or []

    def _index(self, library: str) -> list[dict[str, Any]]:
        return self.storage.read_json(f"packs/{library}/index.json", default=[])

    def publish(self, pack: Path) -> dict[str, Any]:
        pack = Path(pack)
        if self.publisher_keys:
            with verify_pack(pack, self.publisher_keys):
                pass
        manifest = read_pack_manifest(pack)
        with tempfile.TemporaryDirectory(prefix="hub-publish-") as temp:
            if pack.is_dir():
                # write_tar writes next to the folder: give it a folder of our own to write in.
                link = Path(temp) / manifest.pack_name()
                link.symlink_to(pack.resolve(), target_is_directory=True)
                tar = write_tar(link)
            else:
                tar = pack
            digest, size = hashlib.sha256(), 0
            with open(tar, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            name = f"{manifest.pack_name()}.tar"
            entry = {"library": manifest.library, "version": manifest.version,
                     "kind": manifest.kind, "base_version": manifest.base_version,
                     "name": name, "size": size, "sha256": digest.hexdigest()}
            with self.storage.lock(f"packs-{manifest.library}"):
                index = [e for e in self._index(manifest.library) if e["name"] != name]
                with open(tar, "rb") as f:
                    self.storage.put(f"packs/{manifest.library}/{name}", f)
                index.append(entry)
                index.sort(key=lambda e: (e["version"], e["kind"]))
                self.storage.write_json(f"packs/{manifest.library}/index.json", index)
        return entry

    def listing(self) -> list[dict[str, Any]]:
        libraries = sorted({key.split("/")[1] for key in self.storage.list("packs")})
        return [entry for library in libraries for entry in self._index(library)]

    def newest(self, library: str, installed_version: int | None) -> dict[str, Any] | None:
        """The pack a hotspot with ``installed_version`` should fetch, or None (up to date)."""
        entries = self._index(library)
        fulls = [e for e in entries if e["kind"] == "full"]
        deltas = [e for e in entries if e["kind"] == "delta"
                  and e["base_version"] == installed_version]
        candidates = sorted(fulls + deltas, key=lambda e: (e["version"], e["kind"] == "delta"))
        if not candidates:
            return None
        best = candidates[-1]
        if installed_version is not None and best["version"] <= installed_version:
            return None
        return best

    def locate(self, library: str, name: str) -> dict[str, Any]:
        for entry in self._index(library):
            if entry["name"] == name:
                return entry
        raise NotFound("The hub has no pack %(name)s.", name=name)

    def open(self, library: str, name: str):
        entry = self.locate(library, name)
        try:
            return entry, self.storage.open(f"packs/{library}/{name}")
        except FileNotFoundError:
            raise PackError("The pack %(name)s is listed but missing from storage.",
                            name=name) from None

