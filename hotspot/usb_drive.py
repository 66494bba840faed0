"""Reading a mounted USB drive: its update packs in, its outbox out. Runs unprivileged.

The USB watcher (``hotspot.usb``, root) mounts a drive and then starts this as a child process
running as the service user (``usb.service_user``), so no byte of the drive is parsed as
root. The child reports what it does as JSON lines on standard output, which the watcher turns
into the state people see; it never executes anything from the drive.

    $ hotspot usb-read-drive /run/hotspot-usb/sdb1      # as the service user, by the watcher
    {"event": "found", "packs": 2, "refused": 0}
    {"event": "importing", "pack": "hotspot/demo-3.hotspot-pack.tar", "library": "demo", ...}
    {"event": "progress", "stage": "copying", "fraction": 0.4, "text": "Copying 2/4 files, ..."}
    {"event": "imported", "pack": "hotspot/demo-3.hotspot-pack.tar", "library": "demo", ...}
    {"event": "summary", "outbox": true, "queued": 3}
    $ hotspot usb-write-outbox /run/hotspot-usb/sdb1    # after the watcher remounted it rw
    {"event": "exported", "bundle": "bundle-A97EA11666322D06-20261001-1", "contributions": 3}

**Which packs.** ``*.hotspot-pack`` folders and ``*.tar`` files at the top of the drive or in a
folder named ``hotspot`` (any case; names starting with a dot, such as macOS's ``._`` files,
are skipped). Links are never followed (the drive is also mounted ``nosymfollow``). Each
candidate's signature and structure are checked (``verify_pack``); then, per library, the
newest pack that can be installed is imported through ``hotspot.packs.import_pack``, which
refuses anything not newer than the installed version. A chain of updates (deltas 1 -> 2 ->
3) is applied in order. Every refused pack is reported with its reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from content_pack.reader import PackReadError, verify_pack

from .bundle import OUTBOX_DIR, BundleError, export_bundle, read_manifest_uuids
from .errors import ConfigError, HotspotError, PackError
from .library import DataPaths
from .packs import ImportFailed, Progress, import_pack, installed_state
from .usb_state import clear_outbox_request, outbox_request_stamp

log = logging.getLogger("hotspot.usb")

PACK_FOLDER = "hotspot"
PACK_SUFFIXES = (".hotspot-pack", ".tar")
MAX_DIR_ENTRIES = 10_000       # entries looked at per folder (a drive full of photos is fine)
MAX_CANDIDATES = 64            # packs looked at per drive
PROGRESS_EVERY_SECONDS = 0.5

# Exit codes of the child, besides 0 (done, with or without refused packs).
EXIT_FAILED = 1
EXIT_DRIVE_LOST = 3

Emit = Callable[[dict], None]

__all__ = ["find_packs", "read_drive", "write_outbox", "Candidate", "EXIT_DRIVE_LOST"]


@dataclass
class Candidate:
    path: Path
    name: str                 # as shown to people: relative to the drive, e.g. hotspot/x.tar
    library: str = ""
    version: int = 0
    kind: str = ""
    base_version: int | None = None


class DriveLost(Exception):
    """The drive stopped answering (taken out, or failing)."""


def _readable(root: Path) -> bool:
    try:
        os.stat(root)
        os.listdir(root)
        return True
    except OSError:
        return False


def _display(root: Path, text: str) -> str:
    """A message about ``root/...`` with the private mount path taken out."""
    return text.replace(str(root) + "/", "").replace(str(root), "the drive")


# -- finding packs -------------------------------------------------------------------------------

def _entries(folder: Path):
    with os.scandir(folder) as entries:
        for count, entry in enumerate(entries):
            if count >= MAX_DIR_ENTRIES:
                log.info("Only the first %d entries of %s were looked at.", MAX_DIR_ENTRIES,
                         folder)
                return
            yield entry


def find_packs(root: Path) -> tuple[list[Candidate], list[dict]]:
    """Pack candidates on the drive, and refusals of things that look like packs but are links.

    Only names and types are looked at (``lstat``); nothing is opened yet.
    """
    root = Path(root)
    candidates: list[Candidate] = []
    refused: list[dict] = []
    folders = [(root, "")]
    try:
        for entry in _entries(root):
            if entry.name.lower() == PACK_FOLDER:
                if entry.is_symlink():
                    refused.append({"pack": entry.name + "/", "reason": "This folder is a link "
                                    "to somewhere else; links on a drive are never followed."})
                elif entry.is_dir(follow_symlinks=False):
                    folders.append((Path(entry.path), entry.name + "/"))
        for folder, prefix in folders:
            for entry in sorted(_entries(folder), key=lambda e: e.name):
                name = entry.name
                if name.startswith(".") or not name.lower().endswith(PACK_SUFFIXES):
                    continue
                shown = prefix + name
                if entry.is_symlink():
                    refused.append({"pack": shown, "reason": "This is a link to somewhere else; "
                                    "links on a drive are never followed."})
                    continue
                is_folder = entry.is_dir(follow_symlinks=False)
                if name.lower().endswith(".hotspot-pack") and not is_folder:
                    continue
                if name.lower().endswith(".tar") and not entry.is_file(follow_symlinks=False):
                    continue
                if len(candidates) >= MAX_CANDIDATES:
                    refused.append({"pack": shown, "reason": f"More than {MAX_CANDIDATES} packs "
                                    f"on one drive; this one was not looked at."})
                    continue
                candidates.append(Candidate(Path(entry.path), shown))
    except OSError as exc:
        raise DriveLost(exc.strerror or str(exc)) from None
    return candidates, refused


def check_candidates(root: Path, candidates: list[Candidate], keys: list
                     ) -> tuple[list[Candidate], list[dict]]:
    """Signature and structure of each candidate: the valid ones, and refusals with reasons."""
    valid, refused = [], []
    for candidate in candidates:
        try:
            with verify_pack(candidate.path, keys) as verified:
                m = verified.manifest
                candidate.library, candidate.version = m.library, m.version
                candidate.kind, candidate.base_version = m.kind, m.base_version
            valid.append(candidate)
        except PackReadError as exc:
            if not _readable(root):
                raise DriveLost(exc.message) from None
            refused.append({"pack": candidate.name, "reason": _display(root, exc.message)})
        except PackError as exc:
            refused.append({"pack": candidate.name, "reason": _display(root, exc.message)})
        except OSError as exc:
            if not _readable(root):
                raise DriveLost(exc.strerror or str(exc)) from None
            refused.append({"pack": candidate.name,
                            "reason": f"It cannot be read ({exc.strerror or exc})."})
    return valid, refused


# -- importing -----------------------------------------------------------------------------------

def _installed_version(paths: DataPaths, library: str) -> int | None:
    state = installed_state(paths)
    if state["library"] == library and not state["demo"]:
        return state["version"]
    return None


def _progress_emitter(emit: Emit) -> Callable[[Progress], None]:
    last = {"stage": None, "at": 0.0}

    def report(progress: Progress) -> None:
        now = time.monotonic()
        if progress.stage == last["stage"] and now - last["at"] < PROGRESS_EVERY_SECONDS:
            return
        last.update(stage=progress.stage, at=now)
        emit({"event": "progress", "stage": progress.stage,
              "fraction": round(progress.fraction, 4), "files_done": progress.files_done,
              "files_total": progress.files_total, "bytes_done": progress.bytes_done,
              "bytes_total": progress.bytes_total,
              "eta_seconds": (None if progress.eta_seconds is None
                              else int(progress.eta_seconds)),
              "text": progress.describe()})

    return report


def import_newest(root: Path, valid: list[Candidate], paths: DataPaths, keys: list, *,
                  margin_bytes: int, emit: Emit) -> None:
    """For each library, import the newest pack that installs; never an older version.

    Tries the newest candidate newer than what is installed (a full pack before a delta of the
    same version). A refusal moves on to the next candidate; a success starts again from the
    new installed version, where a delta refused before (its base was missing) may now apply,
    so a chain of deltas 1 -> 2 -> 3 installs in order. A pack is tried at most once per
    installed version, and versions only grow, so this ends. Refusals are reported at the end,
    for the packs that did not install and are still newer than what is installed.
    """
    for library in sorted({c.library for c in valid}):
        mine = [c for c in valid if c.library == library]
        tried: set[tuple[int, int | None]] = set()
        refusals: dict[int, str] = {}
        imported: set[int] = set()
        while True:
            installed = _installed_version(paths, library)
            todo = [c for c in mine if (id(c), installed) not in tried and id(c) not in imported
                    and (installed is None or c.version > installed)]
            if not todo:
                break
            pack = max(todo, key=lambda c: (c.version, c.kind == "full"))
            tried.add((id(pack), installed))
            emit({"event": "importing", "pack": pack.name, "library": pack.library,
                  "version": pack.version, "kind": pack.kind})
            try:
                result = import_pack(pack.path, paths, keys, margin_bytes=margin_bytes,
                                     progress=_progress_emitter(emit))
            except ImportFailed as exc:
                # Cached folders stay readable after a stick is pulled out, so the import's own
                # finding (a read error of the pack) counts as much as a look at the drive.
                if "drive was removed" in exc.message or not _readable(root):
                    raise DriveLost(exc.message) from None
                raise
            except PackError as exc:            # PackReadError too: a damaged file
                if isinstance(exc, PackReadError) and not _readable(root):
                    raise DriveLost(exc.message) from None
                refusals[id(pack)] = _display(root, exc.message)
                continue
            imported.add(id(pack))
            refusals.pop(id(pack), None)
            emit({"event": "imported", "pack": pack.name, "library": result.library,
                  "version": result.version, "kind": result.kind,
                  "files_copied": result.files_copied, "files_reused": result.files_reused,
                  "bytes_copied": result.bytes_copied})
        installed = _installed_version(paths, library)
        for c in mine:
            if id(c) in refusals and (installed is None or c.version > installed):
                emit({"event": "refused", "pack": c.name, "reason": refusals[id(c)]})
            elif id(c) not in imported:
                emit({"event": "skipped", "pack": c.name, "library": c.library,
                      "version": c.version,
                      "reason": f"Not needed: this hotspot already has version {installed} "
                                f"of library '{library}'."})


def _queue(config):
    from .contributions import ContributionQueue

    return ContributionQueue.from_config(config)


def _outbox(root: Path) -> Path | None:
    try:
        st = os.lstat(root / OUTBOX_DIR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DriveLost(exc.strerror or str(exc)) from None
    return root / OUTBOX_DIR if stat.S_ISDIR(st.st_mode) else None


def read_drive(root: Path, config, emit: Emit) -> int:
    """Find, check and import the drive's packs; report whether it has an outbox."""
    from content_pack.signing import load_trusted_keys

    root = Path(root)
    paths = DataPaths(config.data_path)
    try:
        candidates, refused = find_packs(root)
        keys_dir = Path(config.packs.trusted_keys_dir)
        keys = load_trusted_keys(keys_dir) if keys_dir.is_dir() else []
        if candidates and not keys:
            raise ConfigError(f"This hotspot has no trusted keys (in {keys_dir}), so it cannot "
                              f"install any pack. Ask the operator to add the publisher's key.")
        valid, bad = check_candidates(root, candidates, keys)
        emit({"event": "found", "packs": len(valid), "refused": len(refused) + len(bad)})
        for item in refused + bad:
            emit({"event": "refused", **item})
        import_newest(root, valid, paths, keys, margin_bytes=config.packs.free_space_margin_mb
                      * 1_000_000, emit=emit)
        outbox = _outbox(root)
        requested = outbox_request_stamp(paths.root) is not None
    except DriveLost as exc:
        emit({"event": "failed", "reason": "drive-lost", "message": _display(root, str(exc))})
        return EXIT_DRIVE_LOST
    except HotspotError as exc:
        code = "hotspot-disk-full" if "disk is full" in exc.message or \
            "Not enough free space" in exc.message else "import-failed"
        if isinstance(exc, ConfigError):
            code = "not-set-up"
        emit({"event": "failed", "reason": code, "message": _display(root, exc.message)})
        return EXIT_FAILED
    queued = 0
    if outbox is not None or requested:
        try:
            queued = len(_queue(config).list("queued"))
        except HotspotError as exc:
            log.warning("The contribution queue cannot be read: %s", exc.message)
        if requested and not queued:
            clear_outbox_request(paths.root)  # asked for, but there is nothing to copy
    emit({"event": "summary", "outbox": outbox is not None or requested, "queued": queued})
    return 0


def write_outbox(root: Path, config, emit: Emit) -> int:
    """Write the queued contributions into the drive's outbox as a verified bundle."""
    root = Path(root)
    data_dir = Path(config.data_dir)
    try:
        outbox = _outbox(root)
        if outbox is None and outbox_request_stamp(data_dir) is not None:
            (root / OUTBOX_DIR).mkdir(mode=0o755)  # the caretaker asked for it on the console
            outbox = _outbox(root)
        if outbox is None:
            emit({"event": "failed", "reason": "outbox-missing",
                  "message": f"The drive has no {OUTBOX_DIR} folder."})
            return EXIT_FAILED
        queue = _queue(config)
        if not queue.list("queued"):
            emit({"event": "exported", "bundle": None, "contributions": 0})
            return 0
        if not os.access(outbox, os.W_OK | os.X_OK):
            emit({"event": "failed", "reason": "outbox-not-writable",
                  "message": f"The hotspot may not write into the {OUTBOX_DIR} folder of this "
                             f"drive."})
            return EXIT_FAILED
        bundle = export_bundle(queue, root, config.data_dir)
        count = len(read_manifest_uuids(bundle)) if bundle else 0
        clear_outbox_request(data_dir)
    except (BundleError, OSError) as exc:
        message = exc.message if isinstance(exc, HotspotError) else (exc.strerror or str(exc))
        if not _readable(root):
            emit({"event": "failed", "reason": "drive-lost", "message": _display(root, message)})
            return EXIT_DRIVE_LOST
        code = "drive-full" if "is full" in message else "outbox-failed"
        emit({"event": "failed", "reason": code, "message": _display(root, message)})
        return EXIT_FAILED
    except DriveLost as exc:
        emit({"event": "failed", "reason": "drive-lost", "message": _display(root, str(exc))})
        return EXIT_DRIVE_LOST
    except HotspotError as exc:
        emit({"event": "failed", "reason": "outbox-failed", "message": _display(root, exc.message)})
        return EXIT_FAILED
    emit({"event": "exported", "bundle": bundle.name if bundle else None, "contributions": count})
    return 0


# -- the child process's side of the protocol ----------------------------------------------------

def json_lines_emitter(stream=None) -> Emit:
    stream = stream or sys.stdout

    def emit(event: dict) -> None:
        stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        stream.flush()

    return emit


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_child(action: str, root: Path, config) -> int:
    """Entry point of ``hotspot usb-read-drive`` / ``usb-write-outbox``."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # The watcher stops a child with SIGTERM when the drive goes away: unwind like Ctrl-C, so
    # the import records that it was interrupted (nothing is switched either way).
    signal.signal(signal.SIGTERM, _interrupt)
    emit = json_lines_emitter()
    try:
        if action == "read":
            return read_drive(root, config, emit)
        return write_outbox(root, config, emit)
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):
            emit({"event": "failed", "reason": "stopped", "message": "Stopped."})
        return EXIT_FAILED
