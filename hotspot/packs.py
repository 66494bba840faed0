"""Installing a signed content pack on the hotspot, and going back to the previous library.

Check first, act second. ``import_pack`` checks the pack's signature (before anything else in
the pack is read), the library id and version against what is installed, the new catalog,
and the free space; only then does it copy the files the media store lacks, hashing each one
while it is copied. The switch is one ``os.replace`` of ``catalog.json`` after every file is
in place, so the running server (which reloads the catalog when the file changes) never
names a file that is not there. The catalog it replaces is kept as ``catalog.previous.json``
so ``rollback`` can bring it back; media files that neither catalog names are then removed.

    >>> keys = load_trusted_keys(Path("/etc/hotspot/trusted-keys"))
    >>> result = import_pack(Path("/media/usb/demo-3.hotspot-pack.tar"), DataPaths(data_dir),
    ...                      keys, margin_bytes=200_000_000, progress=print)
    Progress(stage='verifying', ...)
    Progress(stage='copying', files_done=1, files_total=4, bytes_done=6291456, ...)
    ...
    >>> result.version, result.files_copied, result.files_reused
    (3, 4, 0)
    >>> rollback(DataPaths(data_dir))
    (3, 2)

An import that is interrupted (power cut, ``kill -9``, the drive pulled out) changes nothing
that is served: files already copied were verified and stay in the media store, and the next
import reuses them instead of copying them again.

Data directory::

    catalog.json             the library being served
    catalog.previous.json    the one before it (rollback), same format
    import-progress.json     the state of the last or running import (small JSON)
    .library.lock            held while an import, install or rollback runs
    media/<aa>/<sha256>      the files of both catalogs
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import psutil

from content_pack.reader import PackReadError, verify_pack
from content_pack.schema import validate_catalog

from .durable import fsync_directory, write_atomically
from .errors import BadRequest, CatalogError, HotspotError, PackError
from .i18n import format_duration, format_size
from .library import (DataPaths, catalog_file_hashes, keep_as_previous, library_lock,
                      read_catalog_data, write_catalog)
from .media import MediaStore

log = logging.getLogger("hotspot.packs")

# Within a large file, progress is reported every this many bytes (and after every file).
PROGRESS_EVERY_BYTES = 4 * 1024 * 1024
# The progress file is rewritten at most this often while copying (an SD card wears out).
PROGRESS_FILE_EVERY_SECONDS = 1.0
# A temp file of the media store not written for this long belongs to a dead import.
STALE_TEMP_SECONDS = 60

__all__ = ["Progress", "ImportResult", "ImportFailed", "import_pack", "rollback",
           "installed_state", "collect_garbage"]


class ImportFailed(PackError):
    """The import could not finish, through no fault of the pack: a full disk, a drive pulled
    out. Nothing was switched; the CLI exits with 1 (a refused pack exits with 2)."""

    exit_code = 1
    status = 500


@dataclass
class Progress:
    stage: str            # verifying, copying, switching, cleaning, done, failed
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    rate: float           # bytes per second while copying
    eta_seconds: float | None

    @property
    def fraction(self) -> float:
        if self.bytes_total:
            return self.bytes_done / self.bytes_total
        return self.files_done / self.files_total if self.files_total else 1.0

    def describe(self) -> str:
        """One line for people, e.g. ``Copying 2/4 files, 6.3 MB of 96.5 MB (7 %), ...``."""
        if self.stage != "copying":
            return {"verifying": "Checking the pack's signature and contents…",
                    "switching": "Switching to the new library…",
                    "cleaning": "Removing files no longer needed…",
                    "done": "Done.", "failed": "Failed."}.get(self.stage, self.stage)
        text = (f"Copying {self.files_done}/{self.files_total} files, "
                f"{format_size(self.bytes_done, 'en')} of {format_size(self.bytes_total, 'en')} "
                f"({int(self.fraction * 100)} %)")
        if self.rate > 0:
            text += f", {format_size(int(self.rate), 'en')}/s"
        if self.eta_seconds is not None and self.bytes_done < self.bytes_total:
            text += f", about {format_duration(int(self.eta_seconds) + 1)} left"
        return text


@dataclass
class ImportResult:
    library: str
    version: int
    kind: str
    files_copied: int
    files_reused: int
    bytes_copied: int
    removed_files: int


@dataclass
class _Plan:
    """What a passing check decided: the new catalog and the files to copy."""

    catalog: dict
    to_copy: list            # FileRecord, in pack order
    reused: int              # pack files already in the media store
    bytes_to_copy: int


# -- progress -----------------------------------------------------------------------------------


class _Reporter:
    """Calls the progress callback and keeps ``import-progress.json`` up to date."""

    def __init__(self, paths: DataPaths, pack_path: Path,
                 callback: Callable[[Progress], None] | None):
        self.paths = paths
        self.callback = callback
        self.info: dict = {"pack": str(pack_path), "library": None, "version": None,
                           "pid": os.getpid(), "started": _now()}
        self.progress = Progress("verifying", 0, 0, 0, 0, 0.0, None)
        self._copy_started: float | None = None
        self._last_file_write = 0.0
        self._since_report = 0

    def stage(self, stage: str) -> None:
        self.progress.stage = stage
        self._report(write_file=True)

    def start_copy(self, files_total: int, bytes_total: int) -> None:
        self.progress = Progress("copying", 0, files_total, 0, bytes_total, 0.0, None)
        self._copy_started = time.monotonic()
        self._report(write_file=True)

    def copied(self, nbytes: int) -> None:
        self.progress.bytes_done += nbytes
        self._since_report += nbytes
        if self._since_report >= PROGRESS_EVERY_BYTES:
            self._report()

    def file_done(self) -> None:
        self.progress.files_done += 1
        self._report()

    def finish(self, state: str, reason: str | None = None, result: ImportResult | None = None) -> None:
        self.progress.stage = state
        self.info["reason"] = reason
        if result is not None:
            self.info["result"] = asdict(result)
        self._report(write_file=True, final=True)

    def _report(self, *, write_file: bool = False, final: bool = False) -> None:
        self._since_report = 0
        p = self.progress
        if self._copy_started is not None and p.stage == "copying":
            elapsed = time.monotonic() - self._copy_started
            p.rate = p.bytes_done / elapsed if elapsed > 0 else 0.0
            p.eta_seconds = ((p.bytes_total - p.bytes_done) / p.rate) if p.rate > 0 else None
        if self.callback is not None:
            self.callback(Progress(**asdict(p)))
        now = time.monotonic()
        if write_file or now - self._last_file_write >= PROGRESS_FILE_EVERY_SECONDS:
            self._last_file_write = now
            self._write_file(final)

    def _write_file(self, final: bool) -> None:
        state = {"done": "done", "failed": "failed"}.get(self.progress.stage, "running")
        data = {"state": state, **asdict(self.progress), **self.info, "updated": _now()}
        try:
            _write_json_atomically(self.paths.import_progress, data, durable=final)
        except OSError as exc:
            # A full disk must not hide the real error of the import behind this one.
            log.warning("Could not write %s: %s", self.paths.import_progress,
                        exc.strerror or exc)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json_atomically(path: Path, data: dict, *, durable: bool) -> None:
    write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"),
                     durable=durable)


# -- checking -----------------------------------------------------------------------------------


def _check_versions(manifest, installed: dict | None, *, allow_downgrade: bool,
                    replace_library: bool) -> None:
    if installed is None:
        if manifest.kind == "delta":
            raise PackError(f"This update needs version {manifest.base_version} of library "
                            f"'{manifest.library}' installed; this hotspot has no library yet. "
                            f"Import the full pack first.")
        return
    lib = installed["library"]
    same_library = lib.get("id") == manifest.library
    if manifest.kind == "delta":
        if not same_library:
            raise PackError(f"This update is for library '{manifest.library}', but this "
                            f"hotspot has library '{lib.get('id')}'.")
        if lib.get("version") != manifest.base_version:
            raise PackError(f"This update needs version {manifest.base_version} installed; "
                            f"this hotspot has {lib.get('version')}.")
        return
    if not same_library:
        if lib.get("demo") or replace_library:
            return
        raise PackError(f"This pack holds library '{manifest.library}', but this hotspot has "
                        f"library '{lib.get('id')}'. To replace that library, import again "
                        f"with --replace-library.")
    installed_version = lib.get("version")
    if manifest.version <= installed_version and not allow_downgrade:
        already = ("already has this version" if manifest.version == installed_version
                   else f"already has the newer version {installed_version}")
        raise PackError(f"This pack is version {manifest.version} of library "
                        f"'{manifest.library}', and this hotspot {already}. To install it "
                        f"anyway, import again with --allow-downgrade.")


def _plan(verified, paths: DataPaths, media: MediaStore, *, allow_downgrade: bool,
          replace_library: bool) -> _Plan:
    from content_pack.manifest import apply_delta

    manifest = verified.manifest
    installed = read_catalog_data(paths.catalog)
    _check_versions(manifest, installed, allow_downgrade=allow_downgrade,
                    replace_library=replace_library)
    if manifest.kind == "delta":
        catalog = apply_delta(installed, manifest)
    else:
        catalog = {"format": 1, **manifest.catalog}
    try:
        validate_catalog(catalog)
    except CatalogError as exc:
        raise PackError(f"The library in this pack is not valid: {exc.message}") from None

    in_pack = {record.sha256 for record in manifest.files}
    for resource in catalog["resources"]:
        for entry in resource.get("files", ()):
            sha = entry["sha256"]
            if sha not in in_pack and not media.has(sha):
                raise PackError(f"File '{entry['name']}' of resource '{resource['id']}' "
                                f"(sha256 {sha[:12]}…) is neither in the pack nor already on "
                                f"this hotspot; the pack cannot be installed.")
    named = catalog_file_hashes(catalog)
    to_copy, reused = [], 0
    for record in manifest.files:
        if record.sha256 not in named:
            continue  # parse_manifest refuses this already; never copy what nothing names
        if media.has(record.sha256):
            reused += 1
        else:
            to_copy.append(record)
    return _Plan(catalog, to_copy, reused, sum(r.size for r in to_copy))


def _check_free_space(paths: DataPaths, plan: _Plan, margin_bytes: int) -> None:
    # The catalog files are small next to the media, but they are written too (new + previous).
    catalog_bytes = len(json.dumps(plan.catalog, ensure_ascii=False).encode()) * 2
    needed = plan.bytes_to_copy + catalog_bytes + margin_bytes
    free = psutil.disk_usage(str(paths.root)).free
    if free < needed:
        raise ImportFailed(
            f"Not enough free space on the hotspot's disk: the pack needs "
            f"{format_size(plan.bytes_to_copy + catalog_bytes, 'en')} and "
            f"{format_size(margin_bytes, 'en')} must stay free, {format_size(needed, 'en')} in "
            f"all, but only {format_size(free, 'en')} is free. Nothing was changed.")


# -- copying ------------------------------------------------------------------------------------


class _SourceFailed(Exception):
    """Reading the pack failed mid-copy (kept apart from write errors of the media store)."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = cause


class _SourceReader:
    """Wraps a pack file so its read errors cannot be mistaken for a full hotspot disk."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise _SourceFailed(exc) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _copy_files(pack, plan: _Plan, media: MediaStore, reporter: _Reporter) -> None:
    reporter.start_copy(len(plan.to_copy), plan.bytes_to_copy)
    for record in plan.to_copy:
        try:
            with pack.open_file(record.sha256) as stream:
                media.add_stream(_SourceReader(stream), record.sha256, record.size,
                                 progress=reporter.copied)
        except PackReadError as exc:
            raise _drive_gone(exc.message) from None
        except _SourceFailed as exc:
            raise _drive_gone(f"files/{record.sha256} cannot be read "
                              f"({_reason(exc.cause)})") from None
        except BadRequest as exc:
            raise PackError(f"File {record.sha256} of the pack is damaged or was altered: "
                            f"{exc.message} Nothing was changed.") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ImportFailed(
                    "The hotspot's disk is full: the pack's files did not fit while they were "
                    "copied. Nothing was changed. Free some space (or lower "
                    "packs.free_space_margin_mb only if you know why) and import again.") from None
            raise ImportFailed(f"The file {record.sha256} could not be written to the "
                               f"hotspot's disk ({_reason(exc)}). Nothing was changed.") from None
        reporter.file_done()


def _drive_gone(detail: str) -> ImportFailed:
    return ImportFailed(
        f"The drive was removed during the copy, or it cannot be read: {detail}. Nothing was "
        f"changed; the files copied so far are kept and will not be copied again. Put the "
        f"drive back and import again.")


def _remove_stale_temp_files(media: MediaStore) -> None:
    """Temp files left by an import that was killed; only old ones, in case of a live writer."""
    if not media.root.is_dir():
        return
    cutoff = time.time() - STALE_TEMP_SECONDS
    for directory in [media.root, *media.root.iterdir()]:
        if directory.is_symlink() or not directory.is_dir():
            continue
        for entry in directory.glob(".incoming-*.tmp"):
            with contextlib.suppress(OSError):
                st = entry.lstat()
                if st.st_mtime < cutoff:
                    entry.unlink()


# -- the steps together -------------------------------------------------------------------------


def import_pack(pack_path: Path, paths: DataPaths, trusted_keys: Iterable, *,
                allow_downgrade: bool = False, replace_library: bool = False,
                margin_bytes: int, progress: Callable[[Progress], None] | None = None
                ) -> ImportResult:
    """Check the pack, copy its new files, switch the catalog, then remove unused files.

    Raises ``SignatureError``/``PackError`` for a pack that is refused (nothing is changed),
    ``ImportFailed`` when the copy cannot finish (nothing is switched), or ``HotspotError``
    when another import is running.
    """
    pack_path = Path(pack_path)
    paths.create()
    # The lock is taken before anything is reported: a refused second import must not
    # overwrite the progress file of the one that is running.
    with library_lock(paths):
        reporter = _Reporter(paths, pack_path, progress)
        try:
            result = _import_locked(pack_path, paths, trusted_keys, reporter,
                                    allow_downgrade=allow_downgrade,
                                    replace_library=replace_library, margin_bytes=margin_bytes)
        except HotspotError as exc:
            reporter.finish("failed", exc.message)
            log.warning("Import of %s failed: %s", pack_path, exc.message)
            raise
        except BaseException as exc:
            reporter.finish("failed", f"The import was interrupted ({type(exc).__name__}).")
            raise
        reporter.finish("done", result=result)
        return result


def _import_locked(pack_path: Path, paths: DataPaths, trusted_keys: Iterable,
                   reporter: _Reporter, *, allow_downgrade: bool, replace_library: bool,
                   margin_bytes: int) -> ImportResult:
    media = MediaStore(paths.media)
    _remove_stale_temp_files(media)
    reporter.stage("verifying")
    with verify_pack(pack_path, trusted_keys) as verified:
        manifest = verified.manifest
        reporter.info.update(library=manifest.library, version=manifest.version,
                             kind=manifest.kind)
        plan = _plan(verified, paths, media, allow_downgrade=allow_downgrade,
                     replace_library=replace_library)
        _check_free_space(paths, plan, margin_bytes)
        log.info("Importing %s: library %s version %s (%s), %d files to copy, %d already "
                 "here.", pack_path, manifest.library, manifest.version, manifest.kind,
                 len(plan.to_copy), plan.reused)
        _copy_files(verified.pack, plan, media, reporter)
    reporter.stage("switching")
    keep_as_previous(paths)
    write_catalog(paths, plan.catalog)
    log.info("Library %s version %s is now installed.", manifest.library, manifest.version)
    reporter.stage("cleaning")
    removed = _collect_garbage_after_switch(paths)
    return ImportResult(manifest.library, manifest.version, manifest.kind, len(plan.to_copy),
                        plan.reused, plan.bytes_to_copy, removed)


def collect_garbage(paths: DataPaths) -> int:
    """Remove media files named by neither the current nor the previous catalog."""
    current = read_catalog_data(paths.catalog)
    if current is None:
        return 0  # never empty the store because a catalog could not be found
    keep = catalog_file_hashes(current) | catalog_file_hashes(
        read_catalog_data(paths.previous_catalog))
    media = MediaStore(paths.media)
    removed = 0
    for sha in list(media.iter_hashes()):
        if sha not in keep and media.remove(sha):
            removed += 1
    if removed:
        log.info("Removed %d media files no library version uses any more.", removed)
    return removed


def _collect_garbage_after_switch(paths: DataPaths) -> int:
    # The new library is already served: a failure here leaves extra files, never missing ones.
    try:
        return collect_garbage(paths)
    except (HotspotError, OSError) as exc:
        log.warning("The new library is installed, but unused files could not be removed: %s",
                    getattr(exc, "message", None) or _reason(exc))
        return 0


# -- rollback and state -------------------------------------------------------------------------


def _copy_synced(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as out:
        while chunk := src.read(1024 * 1024):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def rollback(paths: DataPaths) -> tuple[int, int]:
    """Swap the current and the previous library; returns (from version, to version).

    Both stay kept, so a second rollback goes forward again. There is no atomic swap of two
    files: the served catalog is replaced first, so a power cut in between leaves the rolled
    back library served and the previous one equal to it, never a missing catalog.
    """
    with library_lock(paths):
        previous = read_catalog_data(paths.previous_catalog)
        if previous is None:
            raise PackError("There is no previous library version to go back to.")
        current = read_catalog_data(paths.catalog)
        media = MediaStore(paths.media)
        missing = [sha for sha in catalog_file_hashes(previous) if not media.has(sha)]
        if missing:
            raise HotspotError(f"The previous version cannot be restored: {len(missing)} of its "
                               f"files are no longer on the hotspot. Import its pack instead.")
        new_current = paths.catalog.with_name(".catalog.json.rollback")
        new_previous = paths.previous_catalog.with_name(".catalog.previous.json.rollback")
        try:
            _copy_synced(paths.previous_catalog, new_current)
            if current is not None:
                _copy_synced(paths.catalog, new_previous)
            os.replace(new_current, paths.catalog)
            if current is not None:
                os.replace(new_previous, paths.previous_catalog)
            else:
                paths.previous_catalog.unlink()
            fsync_directory(paths.root)
        finally:
            for leftover in (new_current, new_previous):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
    from_version = current["library"]["version"] if current else 0
    to_version = previous["library"]["version"]
    log.info("Rolled back from version %s to version %s of library %s.", from_version,
             to_version, previous["library"]["id"])
    return from_version, to_version


def installed_state(paths: DataPaths) -> dict:
    """What is installed: ``{"library", "version", "demo", "previous": {...} | None}``."""
    def summary(path: Path) -> dict | None:
        data = read_catalog_data(path)
        if data is None:
            return None
        lib = data["library"]
        return {"library": lib.get("id"), "version": lib.get("version"),
                "demo": bool(lib.get("demo", False)), "resources": len(data["resources"])}

    current = summary(paths.catalog) or {"library": None, "version": None, "demo": False,
                                         "resources": 0}
    return {**current, "previous": summary(paths.previous_catalog)}
