"""The pack manifest: canonical bytes, every refusal with its own message, deltas, fuzzing."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from content_pack.manifest import (
    MAX_DEPTH, MAX_MANIFEST_BYTES, FileRecord, Manifest, apply_delta, parse_manifest,
)
from hotspot.errors import PackError

PDF = b"%PDF-1.4 guide\n"
PNG = b"\x89PNG\r\n\x1a\n cover"
MP3 = b"ID3 radio"


def _file(name: str, data: bytes, media_type: str) -> dict:
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "media_type": media_type}


def _catalog(version: int = 1) -> dict:
    return {
        "format": 1,
        "library": {"id": "river", "version": version, "title": {"en": "River library"}},
        "taxonomy": {
            "types": [{"id": "guides-manuals", "icon": "book", "label": {"en": "Guides"}}],
            "themes": [{"id": "patrols", "icon": "walk", "label": {"en": "Patrols"}}],
            "strands": [{"id": "what-works", "label": {"en": "What works"}}],
        },
        "resources": [
            {"id": "guide", "title": {"en": "Guide"}, "type": "guides-manuals",
             "themes": ["patrols"], "strand": "what-works", "languages": ["en"],
             "files": [_file("guide.pdf", PDF, "application/pdf"),
                       _file("cover.png", PNG, "image/png")],
             "thumbnail": hashlib.sha256(PNG).hexdigest()},
            {"id": "radio", "title": {"es": "Radio"}, "type": "guides-manuals",
             "themes": ["patrols"], "strand": "what-works", "languages": ["es"],
             "files": [_file("radio.mp3", MP3, "audio/mpeg")]},
            {"id": "online", "title": {"en": "Online"}, "type": "guides-manuals",
             "themes": ["patrols"], "strand": "what-works", "languages": ["en"],
             "link": "https://example.org/x"},
        ],
    }


def _records(catalog: dict) -> list[dict]:
    seen: dict[str, dict] = {}
    for res in catalog["resources"]:
        for f in res.get("files", []):
            seen[f["sha256"]] = {"sha256": f["sha256"], "size": f["size"],
                                 "media_type": f["media_type"]}
    return sorted(seen.values(), key=lambda r: r["sha256"])


def full_manifest() -> dict:
    catalog = _catalog()
    return {"format": "hotspot-pack", "format_version": 1, "library": "river", "version": 1,
            "created": "2026-11-24T06:00:00Z", "publisher": "Coalition library team",
            "kind": "full", "base_version": None, "catalog": catalog, "removed": [],
            "files": _records(catalog)}


def delta_manifest() -> dict:
    """Version 1 -> 2: 'radio' changed (new file), 'online' removed, 'new' added."""
    catalog = _catalog(2)
    radio = catalog["resources"][1]
    new_mp3 = b"ID3 radio, second take"
    radio["files"] = [_file("radio.mp3", new_mp3, "audio/mpeg")]
    added = {"id": "new", "title": {"fr": "Nouveau"}, "type": "guides-manuals",
             "themes": ["patrols"], "strand": "what-works", "languages": ["fr"],
             "files": [_file("guide.pdf", PDF, "application/pdf")]}  # the base has this file
    catalog["resources"] = [radio, added]
    m = full_manifest()
    m.update(version=2, kind="delta", base_version=1, catalog=catalog, removed=["online"],
             files=[{"sha256": hashlib.sha256(new_mp3).hexdigest(), "size": len(new_mp3),
                     "media_type": "audio/mpeg"}])
    return m


def raw(obj) -> bytes:
    return json.dumps(obj).encode()


def refused(obj_or_bytes, *fragments: str) -> str:
    data = obj_or_bytes if isinstance(obj_or_bytes, bytes) else raw(obj_or_bytes)
    with pytest.raises(PackError) as info:
        parse_manifest(data)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value.message


def test_valid_full_manifest_round_trips_canonically():
    manifest = parse_manifest(raw(full_manifest()))
    assert manifest.kind == "full" and manifest.base_version is None
    assert all(isinstance(f, FileRecord) for f in manifest.files)
    data = manifest.to_bytes()
    assert data.endswith(b"}\n") and data.startswith(b'{\n "base_version": null,')
    assert parse_manifest(data) == manifest
    assert parse_manifest(data).to_bytes() == data
    assert manifest.pack_name() == "river-1.hotspot-pack"
    assert manifest.trusted_comment() == "library:river version:1 kind:full"


def test_delta_manifest_name_and_fields():
    manifest = parse_manifest(raw(delta_manifest()))
    assert manifest.pack_name() == "river-1-to-2.hotspot-pack"
    assert manifest.removed == ("online",)
    assert len(manifest.files) == 1


def test_non_ascii_text_is_written_as_utf8():
    m = full_manifest()
    m["publisher"] = "Alianza del río"
    data = parse_manifest(raw(m)).to_bytes()
    assert "río".encode() in data


@pytest.mark.parametrize("data, fragment", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{\n \"format\": }", "line 2, column"),
    (b"[]", "must hold a JSON object"),
    (b'{"a": 1, "a": 2}', "twice"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": -Infinity}', "Infinity"),
    (b'{"a": 1e400}', "too large"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested deeper"),
    (b"[" * 100_000, "nested deeper"),
    (b'{"a": "\\udc00"}', "broken character"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
])
def test_bad_json_is_refused_with_its_reason(data, fragment):
    refused(data, fragment)


def test_too_large_is_refused_before_parsing():
    refused(b" " * (MAX_MANIFEST_BYTES + 1), "limit is 67108864")


@pytest.mark.parametrize("change, fragments", [
    ({"format": "zip"}, ["not a hotspot content pack"]),
    ({"format_version": 2}, ["format version 2", "reads version 1"]),
    ({"extra": 1}, ["unknown field 'extra'"]),
    ({"version": "1"}, ["version must be a whole number"]),
    ({"version": True}, ["version must be a whole number"]),
    ({"version": 0}, ["version must be"]),
    ({"library": "River!"}, ["library must be a library id"]),
    ({"library": "other"}, ["library 'other'", "catalog is for 'river'"]),
    ({"version": 5}, ["version 5", "catalog says version 1"]),
    ({"created": "2026-11-24 06:00"}, ["created"]),
    ({"created": "2026-13-40T06:00:00Z"}, ["created"]),
    ({"publisher": ""}, ["publisher"]),
    ({"publisher": "a\nb"}, ["publisher"]),
    ({"kind": "partial"}, ["kind must be 'full' or 'delta'"]),
    ({"base_version": 1}, ["base_version must be null for a full pack"]),
    ({"removed": ["guide"]}, ["full pack cannot remove"]),
    ({"removed": "guide"}, ["removed must be a list"]),
    ({"files": {}}, ["files must be a list"]),
    ({"catalog": []}, ["catalog must be an object"]),
])
def test_bad_fields_are_refused(change, fragments):
    m = full_manifest()
    m.update(change)
    refused(m, *fragments)


def test_missing_field_is_named():
    m = full_manifest()
    del m["created"]
    refused(m, "missing the field 'created'")


def test_file_records_must_match_the_catalog():
    m = full_manifest()
    m["files"].append(dict(m["files"][0]))
    refused(m, "twice")

    m = full_manifest()
    m["files"].pop()
    refused(m, "does not list", "full pack holds every file")

    m = full_manifest()
    m["files"].append({"sha256": "0" * 64, "size": 1, "media_type": "text/plain"})
    refused(m, "no resource in its catalog names it")

    m = full_manifest()
    m["files"][0]["size"] += 1
    refused(m, "bytes, but the catalog says")

    m = full_manifest()
    m["files"][0]["media_type"] = "text/plain"
    refused(m, "but the catalog says")

    m = full_manifest()
    m["files"][0]["name"] = "x"
    refused(m, "unknown key 'name'")

    m = full_manifest()
    m["files"][0]["sha256"] = "A" * 64
    refused(m, "sha256 must be 64 lowercase")


def test_catalog_problems_are_listed():
    m = full_manifest()
    m["catalog"]["resources"][0]["type"] = "videos"
    m["catalog"]["resources"][1]["strand"] = "nope"
    message = refused(m, "2 problems", "type 'videos'", "strand 'nope'")
    assert message.count("\n- ") == 2


def test_delta_combinations():
    m = delta_manifest()
    m["base_version"] = None
    refused(m, "base_version must be the whole-number version")

    m = delta_manifest()
    m["base_version"] = 2
    refused(m, "goes backwards")

    m = delta_manifest()
    m["removed"] = ["radio"]
    refused(m, "both removes and adds or changes 'radio'")

    m = delta_manifest()
    m["removed"] = ["online", "online"]
    refused(m, "twice")

    m = delta_manifest()
    m["files"].append({"sha256": hashlib.sha256(PNG).hexdigest(), "size": len(PNG),
                       "media_type": "image/png"})
    refused(m, "none of the delta's added or changed resources names it")


def test_apply_delta_gives_the_new_full_catalog():
    base = _catalog(1)
    delta = parse_manifest(raw(delta_manifest()))
    result = apply_delta(copy.deepcopy(base), delta)
    assert [r["id"] for r in result["resources"]] == ["guide", "radio", "new"]
    assert result["library"]["version"] == 2
    assert result["resources"][1] == delta.catalog["resources"][0]
    assert base == _catalog(1)  # not modified


def test_apply_delta_refusals():
    delta = parse_manifest(raw(delta_manifest()))
    with pytest.raises(PackError, match="installed version is 3"):
        apply_delta(_catalog(3), delta)
    base = _catalog(1)
    base["library"]["id"] = "other"
    with pytest.raises(PackError, match="installed library is 'other'"):
        apply_delta(base, delta)
    base = _catalog(1)
    base["resources"].pop()  # no 'online' to remove
    with pytest.raises(PackError, match="removes 'online'"):
        apply_delta(base, delta)
    with pytest.raises(PackError, match="not a delta"):
        apply_delta(_catalog(1), parse_manifest(raw(full_manifest())))


def test_apply_delta_checks_the_result():
    delta_obj = delta_manifest()
    # The delta drops the only theme the unchanged resource 'guide' uses.
    delta_obj["catalog"]["taxonomy"]["themes"] = [{"id": "radio", "icon": "radio",
                                                   "label": {"en": "Radio"}}]
    for res in delta_obj["catalog"]["resources"]:
        res["themes"] = ["radio"]
    delta = parse_manifest(raw(delta_obj))
    with pytest.raises(PackError, match="theme 'patrols' is not in taxonomy.themes"):
        apply_delta(_catalog(1), delta)


# --- Fuzzing: only PackError comes out, and what is accepted re-serialises identically ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                     children, max_size=4),
    max_leaves=20,
)


def _accepted_or_pack_error(data: bytes) -> None:
    try:
        manifest = parse_manifest(data)
    except PackError:
        return
    again = manifest.to_bytes()
    assert parse_manifest(again) == manifest
    assert parse_manifest(again).to_bytes() == again


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_pack_error(data):
    _accepted_or_pack_error(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_only_raises_pack_error(value):
    _accepted_or_pack_error(json.dumps(value).encode())


def _paths(obj, prefix=()):
    """Every path into a JSON structure."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, prefix + (i,))


_FULL_PATHS = list(_paths(full_manifest()))
_DELTA_PATHS = list(_paths(delta_manifest()))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.data(), json_values, st.sampled_from(["set", "delete", "wrap"]))
def test_mutated_manifest_is_accepted_or_refused(delta, data, value, action):
    obj = delta_manifest() if delta else full_manifest()
    path = data.draw(st.sampled_from(_DELTA_PATHS if delta else _FULL_PATHS))
    if path:
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if action == "set":
            parent[last] = value
        elif action == "delete":
            del parent[last]
        else:
            parent[last] = [parent[last]]
    else:
        obj = value
    _accepted_or_pack_error(json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_byte_flips_of_a_valid_manifest(data):
    original = parse_manifest(raw(delta_manifest())).to_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255))
    _accepted_or_pack_error(original[:position] + bytes([byte]) + original[position + 1:])
