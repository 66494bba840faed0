"""Usage counts sent by hotspots: what the coalition learns about what is useful.

Each hotspot sends its daily aggregates (``hotspot.usage.daily_aggregates``: counts per day, per
resource, theme and type; never an address, a device, a session or a search text). The hub
keeps one object per hotspot and day, replaced when the same day arrives again, so sending
twice never counts twice.

    >>> UsageStore(storage).store("3f2a...", [{"day": "2026-11-20", "views": 12, ...}])
    1
    >>> UsageStore(storage).totals()
    [{"day": "2026-11-20", "hotspots": 1, "views": 12, ...}]
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from ..errors import BadRequest
from .storage import HubStorage

MAX_DAYS = 400
MAX_KEYS = 5000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,120}$")


def _clean_counts(value: Any, depth: int = 0) -> Any:
    """Numbers, or dicts of short ids -> numbers/dicts (two levels): anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, dict)):
        raise BadRequest("Usage counts must be whole numbers or groups of them.")
    if isinstance(value, int):
        if not 0 <= value <= 10**12:
            raise BadRequest("A usage count is out of range.")
        return value
    if depth >= 3 or len(value) > MAX_KEYS:
        raise BadRequest("Usage counts are nested too deeply or are too many.")
    return {str(k): _clean_counts(v, depth + 1) for k, v in value.items()
            if isinstance(k, str) and _ID.match(k) or _bad_key(k)}


def _bad_key(key: Any) -> bool:
    raise BadRequest("A usage key is not a plain id: %(key)s", key=str(key)[:40])


class UsageStore:
    def __init__(self, storage: HubStorage):
        self.storage = storage

    def store(self, hotspot_id: str, days: Any) -> int:
        """Keep (or replace) each day's counts for this hotspot; returns the number of days."""
        if not isinstance(days, list) or len(days) > MAX_DAYS:
            raise BadRequest("Usage must be a list of at most %(max)s days.", max=MAX_DAYS)
        cleaned = []
        for item in days:
            if not isinstance(item, dict) or not isinstance(item.get("day"), str):
                raise BadRequest("Each usage entry needs a day.")
            try:
                day = datetime.date.fromisoformat(item["day"]).isoformat()
            except ValueError:
                raise BadRequest("%(day)s is not a day (YYYY-MM-DD).", day=item["day"][:20]) from None
            counts = _clean_counts({k: v for k, v in item.items() if k != "day"})
            cleaned.append((day, counts))
        for day, counts in cleaned:  # check everything first, then store
            self.storage.put_bytes(f"usage/{hotspot_id}/{day}.json",
                                   json.dumps({"day": day, **counts}, sort_keys=True).encode())
        return len(cleaned)

    def totals(self, since: str | None = None) -> list[dict[str, Any]]:
        """Per day, summed over hotspots: plain counts are added, groups added key by key."""
        by_day: dict[str, dict[str, Any]] = {}
        for key in self.storage.list("usage"):
            day = key.rsplit("/", 1)[-1].removesuffix(".json")
            if since and day < since:
                continue
            data = json.loads(self.storage.read_bytes(key) or b"{}")
            data.pop("day", None)
            total = by_day.setdefault(day, {"day": day, "hotspots": 0})
            total["hotspots"] += 1
            _add(total, data)
        return [by_day[day] for day in sorted(by_day)]


def _add(total: dict[str, Any], counts: dict[str, Any]) -> None:
    for key, value in counts.items():
        if isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
