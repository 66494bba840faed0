"""What the USB watcher is doing, kept in ``<data_dir>/usb-state.json`` for people to see.

The watcher (``hotspot usb-watch``) is the only writer. Every change is written to a temporary
file and renamed over the old one, so a reader (``hotspot usb-status``, ``hotspot status``, the
caretaker's status page) always sees a whole file, old or new. State changes are fsynced;
progress updates, at most one a second, are not (an SD card wears out).

The current drive goes through these states (``STATES``)::

    idle -> detected -> checking -> importing -> writing-outbox -> done
                                        \\______________\\____________-> error

``done`` and ``error`` are written only after the drive is unmounted, so both mean "safe to
remove". A short history of the drives seen (newest first, at most ``HISTORY_SIZE``) records
what each one brought and took: no serial numbers, labels or file system ids, only the device
name the kernel gave it (``sdb1``), its size and its kind of file system.

    >>> state = read_usb_state(Path("/var/lib/hotspot"))     # or read_usb_state(config)
    >>> state["current"]["state"], state["current"]["message"], state["safe_to_remove"]
    ('importing', 'Copying 2/4 files, 6.3 MB of 96.5 MB (7 %)', False)
    >>> print("\\n".join(describe_usb_state(state)))
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from .durable import write_atomically

STATE_FILE = "usb-state.json"
FORMAT = 1
HISTORY_SIZE = 20
STATES = ("idle", "detected", "checking", "importing", "writing-outbox", "done", "error")
ACTIVE_STATES = ("detected", "checking", "importing", "writing-outbox")
PROGRESS_WRITE_SECONDS = 1.0
MAX_TEXT = 500      # characters kept of any text that came from a drive or the reading child
MAX_LIST = 50       # packs listed per drive (imported, refused, skipped)

# What each state means, in plain words (for pages and ``describe_usb_state``).
STATE_WORDS = {
    "idle": "No USB drive is being read.",
    "detected": "A USB drive was plugged in. Please wait.",
    "checking": "Looking at what is on the drive. Please wait; do not take it out.",
    "importing": "Adding new content to the library. Please wait; do not take it out.",
    "writing-outbox": "Copying the contributions onto the drive. Please wait; do not take it out.",
    "done": "Finished. You can take the drive out now.",
    "error": "Something went wrong. You can take the drive out now.",
}

_STOPPED_MESSAGE = ("The hotspot stopped reading the drive before it had finished (it was switched "
                    "off or restarted). The library was not changed by the unfinished step. Take "
                    "the drive out and put it back in to try again.")

__all__ = ["STATE_FILE", "STATES", "ACTIVE_STATES", "STATE_WORDS", "UsbStateFile",
           "read_usb_state", "describe_usb_state", "now_text"]


def now_text() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Text that came from a drive or the unprivileged reader: one line, bounded, printable."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _default_state() -> dict[str, Any]:
    return {"format": FORMAT, "watcher": None,
            "current": {"state": "idle", "message": STATE_WORDS["idle"], "reason": None,
                        "drive": None, "since": None, "updated": None},
            "history": []}


def _state_path(where: Any) -> Path:
    if hasattr(where, "data_dir"):          # a Config
        return Path(where.data_dir) / STATE_FILE
    return Path(where) / STATE_FILE


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # alive, owned by another user (root's watcher, hotspot's page)
        return True
    return True


def read_usb_state(where: Any) -> dict[str, Any]:
    """The USB state for people and pages: ``where`` is the data directory or a Config.

    Always returns a whole document (a missing or damaged file reads as idle with no
    history). Adds ``safe_to_remove`` and ``watcher_running``; a drive that was being worked
    on when the watcher stopped (killed, power cut) shows as an error, since nobody is working
    on it any more.
    """
    path = _state_path(where)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError("not a USB state file")
        if not isinstance(data.get("current"), dict) or not isinstance(data.get("history"), list):
            raise ValueError("not a USB state file")
    except (OSError, ValueError):
        data = _default_state()
    watcher = data.get("watcher") or {}
    running = _pid_alive(watcher.get("pid"))
    current = data["current"]
    if current.get("state") in ACTIVE_STATES and not running:
        current = {**current, "state": "error", "reason": "watcher-stopped",
                   "message": _STOPPED_MESSAGE}
    data = {**data, "current": current, "watcher_running": running,
            "safe_to_remove": current.get("state") not in ACTIVE_STATES}
    return data


def describe_usb_state(state: dict[str, Any]) -> list[str]:
    """Plain lines for a terminal (``hotspot usb-status``)."""
    current = state["current"]
    lines = [f"USB: {current.get('state')}: {current.get('message')}"]
    drive = current.get("drive")
    if drive:
        lines.append(f"  drive: {drive.get('description')} ({drive.get('device')})")
    progress = current.get("progress")
    if progress and current.get("state") == "importing":
        lines.append(f"  {progress.get('text')}")
    for label, key in (("installed", "imported"), ("refused", "refused"),
                       ("not needed", "skipped")):
        for item in current.get(key) or []:
            lines.append(f"  {label}: {item.get('pack')}: {item.get('reason') or _version(item)}")
    if current.get("exported"):
        lines.append(f"  contributions written to the drive: "
                     f"{current['exported'].get('contributions')}")
    if not state.get("watcher_running"):
        lines.append("  (the USB service is not running)")
    history = state.get("history") or []
    if history:
        lines.append("Drives seen (newest first):")
        for item in history[:10]:
            drive = item.get("drive") or {}
            lines.append(f"  {item.get('finished')}  {drive.get('description', '?')}: "
                         f"{item.get('state')}: {item.get('message')}")
    return lines


def _version(item: dict) -> str:
    return f"library '{item.get('library')}' version {item.get('version')}"


# -- "copy the contributions onto the drive" (from the caretaker's console) ----------------------
# The console (not root) cannot mount anything: it leaves this small file in the data folder.
# The watcher sees it, reads the plugged-in drive again (or the next one plugged in) and writes
# the outbox even if the drive has no hotspot-outbox folder yet; the file is removed once the
# contributions are on a drive.
OUTBOX_REQUEST_FILE = "usb-outbox-request.json"


def request_outbox(data_dir: Path) -> None:
    write_atomically(Path(data_dir) / OUTBOX_REQUEST_FILE,
                     json.dumps({"requested": now_text()}).encode(), mode=0o664)


def outbox_request_stamp(data_dir: Path) -> int | None:
    """When the request was made (a change means a new request), or None when there is none."""
    try:
        return os.stat(Path(data_dir) / OUTBOX_REQUEST_FILE).st_mtime_ns
    except OSError:
        return None


def clear_outbox_request(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(data_dir) / OUTBOX_REQUEST_FILE)


class UsbStateFile:
    """The watcher's writer of ``usb-state.json`` (one per watcher; thread-safe)."""

    def __init__(self, data_dir: Path, *, pid: int | None = None):
        self.path = Path(data_dir) / STATE_FILE
        self._lock = threading.Lock()
        self._last_progress_write = 0.0
        previous = read_usb_state(data_dir)
        self.data = {"format": FORMAT, "watcher": {"pid": pid or os.getpid(),
                                                   "started": now_text()},
                     "current": previous["current"], "history": previous["history"]}
        # Only one watcher runs: a drive the last one was working on was left unfinished.
        current = self.data["current"]
        if current.get("state") in ACTIVE_STATES or current.get("reason") == "watcher-stopped":
            current.update(state="error", reason="watcher-stopped",
                           message=_STOPPED_MESSAGE)
            self._to_history(current)
            self.data["current"] = _default_state()["current"]

    # -- the current drive ---------------------------------------------------------------------

    @property
    def current(self) -> dict[str, Any]:
        return self.data["current"]

    def begin(self, drive: dict[str, Any]) -> None:
        """A new drive: ``detected``."""
        now = now_text()
        with self._lock:
            self.data["current"] = {"state": "detected", "message": STATE_WORDS["detected"],
                                    "reason": None, "drive": drive, "since": now,
                                    "updated": now, "progress": None, "imported": [],
                                    "refused": [], "skipped": [], "exported": None}
            self._write(durable=True)

    def set_state(self, state: str, message: str | None = None, *, reason: str | None = None,
                  **fields: Any) -> None:
        assert state in STATES, state
        with self._lock:
            current = self.data["current"]
            current.update(fields)
            current.update(state=state, message=clean_text(message or STATE_WORDS[state]),
                           reason=reason, updated=now_text())
            if state not in ("importing",):
                current["progress"] = None
            self._write(durable=True)

    def progress(self, progress: dict[str, Any]) -> None:
        """Import progress; written at most once a second, not fsynced."""
        with self._lock:
            current = self.data["current"]
            current["progress"] = progress
            current["updated"] = now_text()
            if current.get("state") == "importing" and progress.get("text"):
                current["message"] = clean_text(progress["text"])
            now = time.monotonic()
            if now - self._last_progress_write >= PROGRESS_WRITE_SECONDS:
                self._last_progress_write = now
                self._write(durable=False)

    def add(self, key: str, item: dict[str, Any]) -> None:
        """Record a pack installed (``imported``), refused or not needed (``skipped``)."""
        with self._lock:
            items = self.data["current"].setdefault(key, [])
            if len(items) < MAX_LIST:
                items.append({k: clean_text(v) if isinstance(v, str) else v
                              for k, v in item.items()})

    def finish(self, state: str, message: str, *, reason: str | None = None) -> None:
        """``done`` or ``error``: the drive is unmounted; also goes into the history."""
        assert state in ("done", "error")
        with self._lock:
            current = self.data["current"]
            current.update(state=state, message=clean_text(message), reason=reason,
                           updated=now_text(), progress=None)
            self._to_history(current)
            self._write(durable=True)

    def drive_removed(self, device: str) -> None:
        """The drive was taken out: a finished drive makes way for ``idle``; an error stays
        shown until the next drive, so the caretaker can read it."""
        with self._lock:
            current = self.data["current"]
            drive = current.get("drive") or {}
            if drive.get("device") == device and current.get("state") == "done":
                self.data["current"] = _default_state()["current"]
                self._write(durable=True)

    def watcher_stopped(self) -> None:
        """The watcher is stopping; a drive in the middle of its work gets an error."""
        with self._lock:
            current = self.data["current"]
            if current.get("state") in ACTIVE_STATES:
                current.update(state="error", reason="watcher-stopped", updated=now_text(),
                               message=_STOPPED_MESSAGE)
                self._to_history(current)
            self.data["watcher"] = None
            self._write(durable=True)

    # -- writing -------------------------------------------------------------------------------

    def _to_history(self, current: dict[str, Any]) -> None:
        entry = {"drive": current.get("drive"), "state": current.get("state"),
                 "reason": current.get("reason"), "message": current.get("message"),
                 "started": current.get("since"), "finished": now_text(),
                 "imported": current.get("imported") or [],
                 "refused": current.get("refused") or [],
                 "exported": current.get("exported")}
        self.data["history"] = [entry, *self.data["history"]][:HISTORY_SIZE]

    def _write(self, *, durable: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(self.data, ensure_ascii=False, indent=1).encode(),
                         durable=durable)
