"""The hotspot's status at a glance: one verdict, the problems with what to do, and the numbers.

Used by the caretaker console (``/admin``), its JSON (``/admin/status.json``) and
``hotspot status`` (text or ``--json``). Knows nothing about HTTP. Problem texts are English
templates marked with ``N_``; the page translates them, the CLI prints them as they are.

The USB and sync modules may be missing on a given build: their state is read only when
``hotspot.usb_state.read_usb_state`` / ``hotspot.sync.read_sync_state`` exist.

    >>> status = build_status(config, DataPaths(data_dir))
    >>> status["verdict"], [p["message"] for p in status["problems"]]
    ('attention', ['The Pi is too hot (82 °C).'])
    >>> print(render_text(status))
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
from pathlib import Path
from typing import Any

from . import health as health_module
from .errors import N_
from .library import DataPaths
from .usage import USAGE_FILE, read_usage, summarize

log = logging.getLogger("hotspot.status")

OLD_CONTRIBUTION_DAYS = 14
LOW_MEMORY_PERCENT = 90


# What the caretaker can do about each way a USB drive can fail (reasons from hotspot.usb).
USB_ADVICE = {
    "removed-too-early": N_("Put the drive back in: the hotspot finishes where it stopped."),
    "packs-refused": N_("The update on the drive was refused; the details are below. Ask the "
                        "coalition for a new drive."),
    "cannot-use-drive": N_("This drive cannot be used. Ask for a drive prepared for the hotspot."),
    "unmount-failed": N_("Wait a minute before taking the drive out."),
    "watcher-stopped": N_("Restart the hotspot from this page."),
    "outbox-not-writable": N_("The drive does not let the hotspot write on it. Ask the coalition "
                              "for a drive prepared for the hotspot."),
    None: N_("Take the drive out and put it back in to try again."),
}


def problem(code: str, message: str, advice: str, severity: str = "warning", **params) -> dict:
    return {"code": code, "severity": severity, "message": message % params if params else message,
            "advice": advice, "template": message, "params": params}


def optional_state(module_name: str, function: str, where) -> dict[str, Any] | None:
    """The state from a feature module that may not exist on this build (USB, sync)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    reader = getattr(module, function, None)
    if reader is None:
        return None
    try:
        state = reader(where)
    except Exception as exc:  # a broken reader must not take the whole status page down
        log.warning("%s.%s failed: %r", module_name, function, exc)
        return {"error": str(exc)}
    return state if isinstance(state, dict) else {"state": state}


def read_import_progress(paths: DataPaths) -> dict[str, Any] | None:
    try:
        data = json.loads(paths.import_progress.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_installed_cache: dict[str, tuple[tuple, dict]] = {}


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def library_state(paths: DataPaths, catalog=None) -> dict[str, Any]:
    """Installed library, its previous version (rollback) and the last import.

    Reading both catalog files is slow for a large library, so the answer is kept until
    either file is replaced."""
    from .packs import installed_state

    stamp = (_stamp(paths.catalog), _stamp(paths.previous_catalog))
    cached = _installed_cache.get(str(paths.root))
    if cached and cached[0] == stamp:
        state = dict(cached[1])
    else:
        state = installed_state(paths)
        _installed_cache[str(paths.root)] = (stamp, dict(state))
    if catalog is not None:  # the server's catalog in memory is what is really served
        state["resources"] = len(catalog.resources)
    state["last_import"] = read_import_progress(paths)
    return state


def contributions_state(config, queue=None) -> dict[str, Any] | None:
    if queue is None:
        try:
            from .contributions import ContributionQueue
            queue = ContributionQueue.from_config(config)
        except Exception as exc:
            return {"error": getattr(exc, "message", str(exc)), "counts": {}}
    counts = queue.counts()
    oldest = queue.oldest_undelivered_day()
    age = None
    if oldest:
        age = (datetime.date.today() - datetime.date.fromisoformat(oldest)).days
    refusal = queue.refusal()
    return {"counts": counts, "oldest_undelivered_day": oldest, "oldest_undelivered_days": age,
            "accepting": refusal is None, "refusal": refusal.message if refusal else None}


def build_status(config, paths: DataPaths, *, catalog=None, queue=None, usage_days=None,
                 health: dict | None = None, **health_options) -> dict[str, Any]:
    health = health if health is not None else health_module.read_health(
        config, paths.root, **health_options)
    library = library_state(paths, catalog)
    contributions = contributions_state(config, queue)
    usb = optional_state("hotspot.usb_state", "read_usb_state", config)
    sync = optional_state("hotspot.sync", "read_sync_state", paths.root)
    if usage_days is None:
        usage_days = read_usage(paths.root / USAGE_FILE)
    status = {
        "generated": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "library": library, "contributions": contributions, "health": health,
        "usb": usb, "sync": sync, "usage": summarize(usage_days),
        "features": {"usb": usb is not None, "sync": sync is not None},
    }
    status["problems"] = find_problems(config, status)
    status["verdict"] = "attention" if status["problems"] else "ok"
    return status


def find_problems(config, status: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    library, health = status["library"], status["health"]
    if library.get("version") is None:
        found.append(problem("no-library", N_("No library is installed."),
                             N_("Plug in a USB drive with a content pack from the coalition."),
                             "error"))
    elif library.get("demo"):
        found.append(problem("demo-library", N_("Only the demo library is installed."),
                             N_("Plug in a USB drive with a content pack from the coalition.")))
    last = library.get("last_import") or {}
    if last.get("state") == "failed":
        found.append(problem("import-failed", N_("The last library update did not finish: %(reason)s"),
                             N_("The library in use did not change. Try again with the drive, "
                                "or download the import report and send it to the coalition."),
                             reason=str(last.get("reason") or "")[:300]))
    disk = health.get("disk")
    reserve = config.contributions.reserve_mb * 1_000_000
    if disk and disk["free"] < max(reserve, config.packs.free_space_margin_mb * 1_000_000):
        found.append(problem("disk-low", N_("Storage is almost full (%(free_mb)s MB free)."),
                             N_("Export the contributions to a USB drive, or ask the coalition "
                                "for a smaller library."), "error",
                             free_mb=disk["free"] // 1_000_000))
    temperature = health.get("cpu_temperature")
    if temperature and temperature["celsius"] >= config.health.temperature_warning_c:
        found.append(problem("too-hot", N_("The Pi is too hot (%(celsius)s °C)."),
                             N_("Move it out of the sun and give it air around its case.")
                             , celsius=temperature["celsius"]))
    power = health.get("power") or {}
    if power.get("under_voltage_now") or power.get("under_voltage_since_boot"):
        found.append(problem("under-voltage", N_("The power supply is too weak."),
                             N_("Use the Pi's own power supply or a stronger one, with a short "
                                "cable. A weak supply can damage the memory card."), "error"))
    elif power.get("throttled_now"):
        found.append(problem("throttled", N_("The Pi is slowing itself down."),
                             N_("It is too hot or its power is too weak: check both.")))
    mem = health.get("memory")
    if mem and mem["used_percent"] >= LOW_MEMORY_PERCENT:
        found.append(problem("memory-low", N_("Memory is almost full (%(percent)s %% used)."),
                             N_("Restart the hotspot services from this page."),
                             percent=int(mem["used_percent"])))
    phones = health.get("phones")
    if phones and phones["near_limit"]:
        found.append(problem("wifi-crowded", N_("%(count)s phones are connected; the Wi-Fi can "
                                                "serve about %(limit)s at once."),
                             N_("New phones may not be able to join. Ask people to leave the "
                                "Wi-Fi when they have what they need."),
                             count=phones["count"], limit=phones["limit"]))
    contributions = status.get("contributions") or {}
    age = contributions.get("oldest_undelivered_days")
    if age is not None and age >= OLD_CONTRIBUTION_DAYS:
        found.append(problem("contributions-waiting",
                             N_("Contributions have been waiting for %(days)s days."),
                             N_("Sync now when there is a connection, or export them to a USB "
                                "drive for the coalition."), days=age))
    if contributions and not contributions.get("accepting", True):
        found.append(problem("contributions-off", N_("People cannot send contributions now."),
                             N_("The hotspot needs the coalition's key, or more free storage.")))
    usb = (status.get("usb") or {}).get("current") or {}
    if usb.get("state") == "error":
        found.append(problem("usb-error", N_("The last USB drive was not read completely."),
                             USB_ADVICE.get(usb.get("reason"), USB_ADVICE[None])))
    sync = status.get("sync") or {}
    if sync.get("last_error") or sync.get("error"):
        found.append(problem("sync-failed", N_("The last sync did not work."),
                             N_("Check the internet connection, then sync again.")))
    return found


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / 1_000_000_000:.1f} GB" if n >= 1_000_000_000 else f"{n / 1_000_000:.0f} MB"


def render_text(status: dict[str, Any]) -> str:
    """Plain English text for ``hotspot status``."""
    lines = []
    if status["verdict"] == "ok":
        lines.append("All good.")
    else:
        lines.append("Needs attention:")
        for p in status["problems"]:
            lines.append(f"  - {p['message']} {p['advice']}")
    lib = status["library"]
    lines += ["", "Library:",
              f"  {lib.get('library') or 'none'} version {lib.get('version')}, "
              f"{lib.get('resources', 0)} resources"
              + (" (demo)" if lib.get("demo") else "")]
    previous = lib.get("previous")
    lines.append(f"  previous version for rollback: {previous['version']}" if previous
                 else "  no previous version for rollback")
    last = lib.get("last_import")
    if last:
        lines.append(f"  last import: {last.get('state')} at {last.get('updated')} from "
                     f"{last.get('pack')}")
    contributions = status.get("contributions") or {}
    counts = contributions.get("counts") or {}
    lines += ["", "Contributions:",
              "  " + (", ".join(f"{n} {state}" for state, n in counts.items()) or "none")]
    if contributions.get("oldest_undelivered_day"):
        lines.append(f"  oldest undelivered: {contributions['oldest_undelivered_day']}")
    for feature in ("usb", "sync"):
        state = status.get(feature)
        lines.append(f"{feature.upper()}: " + (json.dumps(state, default=str) if state is not None
                                               else "not available on this hotspot"))
    h = status["health"]
    lines += ["", "Health:"]
    if h.get("disk"):
        lines.append(f"  disk: {_size(h['disk']['free'])} free of {_size(h['disk']['total'])}; "
                     f"library files {_size(h.get('content_size'))}")
    lines.append(f"  memory: {h['memory']['used_percent']:.0f} % used")
    if h.get("load"):
        lines.append(f"  load: {h['load']['1min']} ({h['load']['cpus']} CPUs)")
    if h.get("cpu_temperature"):
        lines.append(f"  CPU temperature: {h['cpu_temperature']['celsius']} °C")
    if h.get("power"):
        p = h["power"]
        lines.append(f"  power: under-voltage now {p.get('under_voltage_now')}, since boot "
                     f"{p.get('under_voltage_since_boot')}")
    if h.get("uptime_seconds") is not None:
        lines.append(f"  up for {h['uptime_seconds'] // 3600} h {h['uptime_seconds'] % 3600 // 60} min")
    if h.get("phones"):
        lines.append(f"  phones connected: {h['phones']['count']} (Wi-Fi limit about "
                     f"{h['phones']['limit']})")
    lines.append(f"  software version: {h['version']}")
    if h.get("missing"):
        lines.append(f"  not available here: {', '.join(h['missing'])}")
    usage = status["usage"]
    lines += ["", f"Use in the last {usage['days']} days: {usage['view']} views, {usage['play']} "
                  f"plays, {usage['download']} downloads, {usage['searches']} searches"]
    for row in usage["top_resources"]:
        lines.append(f"  {row['id']}: {row['total']}")
    return "\n".join(lines) + "\n"
