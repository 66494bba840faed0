"""Usage counts: aggregated in memory, written atomically, old days dropped, nothing personal."""

from __future__ import annotations

import json
import threading

import pytest

from hotspot.usage import UsageCounter, daily_aggregates, read_usage, summarize


def test_counts_are_aggregated_and_written(tmp_path):
    day = ["2026-10-01"]
    path = tmp_path / "usage.json"
    counter = UsageCounter(path, keep_days=30, today=lambda: day[0])
    assert counter.flush() is False and not path.exists()
    for _ in range(3):
        counter.count("view", resource_id="radio", themes=("radio", "patrols"), type_id="guides")
    counter.count("play", resource_id="radio", themes=("radio",), type_id="guides")
    counter.count("search")
    assert counter.flush() is True
    counter.count("download", resource_id="radio")
    counter.flush()
    stored = read_usage(path)["2026-10-01"]
    assert stored["resources"]["radio"] == {"view": 3, "play": 1, "download": 1}
    assert stored["themes"]["patrols"] == {"view": 3}
    assert stored["searches"] == 1
    assert not list(tmp_path.glob(".usage.json.*"))  # no temp files left behind
    with pytest.raises(ValueError):
        counter.count("who-visited")


def test_old_days_are_dropped_and_aggregates_are_for_sync(tmp_path):
    day = ["2026-01-01"]
    path = tmp_path / "usage.json"
    counter = UsageCounter(path, keep_days=10, today=lambda: day[0])
    counter.count("view", resource_id="a")
    counter.flush()
    day[0] = "2026-01-05"
    counter.count("view", resource_id="b")
    counter.flush()
    assert [d["day"] for d in daily_aggregates(path)] == ["2026-01-01", "2026-01-05"]
    assert [d["day"] for d in daily_aggregates(path, since="2026-01-02")] == ["2026-01-05"]
    day[0] = "2026-01-12"
    counter.count("search")
    counter.flush()
    assert sorted(read_usage(path)) == ["2026-01-05", "2026-01-12"]
    summary = summarize(read_usage(path), last_days=30, today="2026-01-12")
    assert summary["view"] == 1 and summary["searches"] == 1
    assert summary["top_resources"][0]["id"] == "b"


def test_many_threads_lose_nothing(tmp_path):
    counter = UsageCounter(tmp_path / "usage.json", today=lambda: "2026-10-01")

    def work():
        for _ in range(500):
            counter.count("view", resource_id="r")
    threads = [threading.Thread(target=work) for _ in range(8)]
    flusher = threading.Thread(target=lambda: [counter.flush() for _ in range(50)])
    for t in threads + [flusher]:
        t.start()
    for t in threads + [flusher]:
        t.join()
    counter.flush()
    assert read_usage(tmp_path / "usage.json")["2026-10-01"]["resources"]["r"]["view"] == 4000


def test_stored_file_has_only_ids_and_numbers(tmp_path):
    path = tmp_path / "usage.json"
    counter = UsageCounter(path, today=lambda: "2026-10-01")
    counter.count("view", resource_id="radio", themes=("radio",), type_id="guides")
    counter.count("search")
    counter.flush()
    data = json.loads(path.read_text())

    def leaves(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield key
                yield from leaves(value)
        else:
            yield node
    words = {leaf for leaf in leaves(data) if isinstance(leaf, str)}
    assert words <= {"format", "days", "2026-10-01", "searches", "resources", "themes", "types",
                     "radio", "guides", "view", "play", "download"}


def test_unreadable_file_starts_again(tmp_path):
    path = tmp_path / "usage.json"
    path.write_text("{not json")
    assert read_usage(path) == {}
