"""Usage counts without surveillance: how often each resource, theme and type is used, per day.

What is counted (see docs/privacy.md): resource page views, plays and downloads per resource
per day; views per theme and type per day; the *number* of searches per day (never the words).
Nothing about who: no address, device, browser, cookie, session, time of day or search text is
ever passed to this module, so it cannot store them. Counts live in memory and are written to
``usage.json`` in the data directory every few minutes (atomically) and when the server stops.

    >>> counter = UsageCounter(data_dir / "usage.json", keep_days=90)
    >>> counter.count("view", resource_id="radio-basics", themes=("communication-radio",),
    ...               type_id="guides-manuals")
    >>> counter.count("search")
    >>> counter.flush()
    >>> daily_aggregates(data_dir / "usage.json")      # for sync to the hub
    [{'day': '2026-10-01', 'searches': 1, 'resources': {'radio-basics': {'view': 1}}, ...}]
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

from .durable import write_atomically

log = logging.getLogger("hotspot.usage")

FORMAT = 1
EVENTS = ("view", "play", "download")
USAGE_FILE = "usage.json"


def _today() -> str:
    return datetime.date.today().isoformat()


def _empty_day() -> dict[str, Any]:
    return {"searches": 0, "resources": {}, "themes": {}, "types": {}}


def _add(target: dict[str, dict[str, int]], key: str, event: str, n: int = 1) -> None:
    counts = target.setdefault(key, {})
    counts[event] = counts.get(event, 0) + n


def _merge_day(into: dict[str, Any], day: dict[str, Any]) -> None:
    into["searches"] = into.get("searches", 0) + int(day.get("searches", 0))
    for group in ("resources", "themes", "types"):
        for key, counts in day.get(group, {}).items():
            for event, n in counts.items():
                if event in EVENTS and isinstance(n, int):
                    _add(into.setdefault(group, {}), key, event, n)


def read_usage(path: Path) -> dict[str, dict[str, Any]]:
    """``{day: {"searches", "resources", "themes", "types"}}`` from the file ({} if none)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("Usage counts in %s cannot be read (%s); starting again.", path, exc)
        return {}
    days = data.get("days") if isinstance(data, dict) else None
    return days if isinstance(days, dict) else {}


def _write_atomically(path: Path, data: dict) -> None:
    write_atomically(path, json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                                      sort_keys=True).encode("utf-8"), mode=0o640)


class UsageCounter:
    """Counts in memory; ``flush`` adds them to the file. Thread-safe (waitress workers)."""

    def __init__(self, path: Path, *, keep_days: int = 90, today: Callable[[], str] = _today):
        self.path = Path(path)
        self.keep_days = keep_days
        self._today = today
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def count(self, event: str, *, resource_id: str | None = None,
              themes: Iterable[str] = (), type_id: str | None = None) -> None:
        """One event: ``search`` (a number, nothing else), or ``view``/``play``/``download``
        of a resource (with its themes and type)."""
        with self._lock:
            day = self._pending.setdefault(self._today(), _empty_day())
            if event == "search":
                day["searches"] += 1
                return
            if event not in EVENTS:
                raise ValueError(f"unknown usage event {event!r}")
            if resource_id:
                _add(day["resources"], resource_id, event)
            for theme in themes:
                _add(day["themes"], theme, event)
            if type_id:
                _add(day["types"], type_id, event)

    def pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def flush(self) -> bool:
        """Add what is in memory to the file (atomically); returns whether anything was written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return False
            try:
                days = read_usage(self.path)
                for day, counts in pending.items():
                    _merge_day(days.setdefault(day, _empty_day()), counts)
                cutoff = (datetime.date.fromisoformat(self._today())
                          - datetime.timedelta(days=self.keep_days)).isoformat()
                days = {day: counts for day, counts in sorted(days.items()) if day > cutoff}
                _write_atomically(self.path, {"format": FORMAT, "days": days})
            except OSError as exc:
                log.warning("Could not write usage counts to %s: %s", self.path,
                            exc.strerror or exc)
                with self._lock:  # keep them for the next try
                    for day, counts in pending.items():
                        _merge_day(self._pending.setdefault(day, _empty_day()), counts)
                return False
            return True

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The file's counts plus those still in memory."""
        days = read_usage(self.path)
        with self._lock:
            for day, counts in self._pending.items():
                _merge_day(days.setdefault(day, _empty_day()), counts)
        return days


class PeriodicWriter:
    """A background thread that flushes a counter every ``every`` seconds until stopped."""

    def __init__(self, counter: UsageCounter, every: float):
        self.counter = counter
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.counter.flush()

    def stop(self) -> None:
        self._stop.set()
        self.counter.flush()


def daily_aggregates(path: Path, since: str | None = None) -> list[dict[str, Any]]:
    """The stored daily counts, oldest first, for the hub (sync): ``[{"day", ...counts}]``."""
    days = read_usage(path)
    return [{"day": day, **counts} for day, counts in sorted(days.items())
            if since is None or day >= since]


def summarize(days: dict[str, dict[str, Any]], *, last_days: int = 30, top: int = 5,
              today: str | None = None) -> dict[str, Any]:
    """Totals over the last ``last_days`` days and the most used resources, themes and types."""
    today = today or _today()
    cutoff = (datetime.date.fromisoformat(today) - datetime.timedelta(days=last_days)).isoformat()
    total = _empty_day()
    for day, counts in days.items():
        if day > cutoff:
            _merge_day(total, counts)

    def ranked(group: str) -> list[dict[str, Any]]:
        rows = [{"id": key, **{e: counts.get(e, 0) for e in EVENTS},
                 "total": sum(counts.values())} for key, counts in total[group].items()]
        rows.sort(key=lambda row: (-row["total"], row["id"]))
        return rows[:top]

    totals = {event: sum(c.get(event, 0) for c in total["resources"].values()) for event in EVENTS}
    return {"days": last_days, "searches": total["searches"], **totals,
            "top_resources": ranked("resources"), "top_themes": ranked("themes"),
            "top_types": ranked("types")}
