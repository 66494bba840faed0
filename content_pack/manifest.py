"""The manifest of a content pack (``manifest.json``): what a pack is and what it holds.

``docs/content-pack.md`` describes the format. A manifest is read with ``parse_manifest``,
which refuses anything outside the format with a ``PackError`` naming the problem, and is
written with ``Manifest.to_bytes`` in one canonical form (UTF-8 JSON, sorted keys, indent 1,
trailing newline), so the same manifest always gives the same bytes and the same signature.

    >>> manifest = parse_manifest(Path("demo-3.hotspot-pack/manifest.json").read_bytes())
    >>> manifest.pack_name()
    'demo-3.hotspot-pack'
    >>> catalog = apply_delta(installed_catalog, parse_manifest(delta_bytes))

Parsing has no side effects and trusts nothing: the bytes may come from a stranger's USB
drive. Only a manifest whose signature was checked should be acted on.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from content_pack import schema
from hotspot.errors import PackError

FORMAT = "hotspot-pack"
FORMAT_VERSION = 1

# --- Limits (part of the format, docs/content-pack.md) ----------------------------------
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_SIGNATURE_BYTES = 4 * 2**10
MAX_FILES = 200_000
MAX_RESOURCES = schema.MAX_RESOURCES
MAX_FILE_SIZE = schema.MAX_FILE_SIZE
MAX_PACK_BYTES = 64 * 2**30
MAX_DEPTH = 32
MAX_PUBLISHER = 200
MAX_PROBLEMS_SHOWN = 20

KINDS = ("full", "delta")
FIELDS = ("format", "format_version", "library", "version", "created", "publisher", "kind",
          "base_version", "catalog", "removed", "files")
FILE_FIELDS = ("sha256", "size", "media_type")
CREATED_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class FileRecord:
    """One file stored in the pack's ``files/`` folder, under its sha256."""

    sha256: str
    size: int
    media_type: str

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "media_type": self.media_type}


@dataclass(frozen=True)
class Manifest:
    library: str
    version: int
    created: str
    publisher: str
    kind: str  # "full" or "delta"
    base_version: int | None
    catalog: dict
    removed: tuple[str, ...]
    files: tuple[FileRecord, ...]

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library": self.library,
            "version": self.version,
            "created": self.created,
            "publisher": self.publisher,
            "kind": self.kind,
            "base_version": self.base_version,
            "catalog": self.catalog,
            "removed": list(self.removed),
            "files": [f.to_json() for f in self.files],
        }

    def to_bytes(self) -> bytes:
        """The canonical bytes: UTF-8 JSON, sorted keys, indent 1, trailing newline."""
        text = json.dumps(self.to_json(), sort_keys=True, indent=1, ensure_ascii=False,
                          allow_nan=False)
        return (text + "\n").encode("utf-8")

    def pack_name(self) -> str:
        """The pack folder's name, e.g. ``demo-3.hotspot-pack`` or ``demo-2-to-3.hotspot-pack``."""
        if self.kind == "delta":
            return f"{self.library}-{self.base_version}-to-{self.version}.hotspot-pack"
        return f"{self.library}-{self.version}.hotspot-pack"

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def trusted_comment(self) -> str:
        """The trusted comment the signature carries (docs/content-pack.md, Signature)."""
        return f"library:{self.library} version:{self.version} kind:{self.kind}"


def format_created(when: datetime.datetime) -> str:
    """A ``created`` value: UTC, whole seconds, ISO 8601 with ``Z``."""
    if when.tzinfo is None:
        raise ValueError("created must be an aware datetime (with a time zone)")
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Reading JSON safely ----------------------------------------------------------------

def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise PackError(f"manifest.json has the key {schema._short(key)} twice in the same "
                            "object.")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise PackError(f"manifest.json contains {name}, which is not allowed (JSON has no such number).")


def _parse_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise PackError(f"manifest.json contains the number {schema._short(text)}, which is too "
                        "large.")
    return value


def _check_depth_and_strings(data: Any) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings that are not valid Unicode text."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise PackError("manifest.json contains a broken character (an unpaired "
                                "\\ud800-\\udfff escape).")
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise PackError(f"manifest.json is nested deeper than {MAX_DEPTH} levels.")
            if isinstance(value, dict):
                for key, item in value.items():
                    stack.append((key, depth))
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)


def _load_json(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_manifest takes bytes")
    if len(data) > MAX_MANIFEST_BYTES:
        raise PackError(f"manifest.json is {len(data)} bytes; the limit is {MAX_MANIFEST_BYTES} "
                        f"({MAX_MANIFEST_BYTES // 2**20} MiB).")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackError(f"manifest.json is not UTF-8 text (bad byte at offset {exc.start}).") from None
    if text.startswith("\ufeff"):
        raise PackError("manifest.json starts with a byte order mark; the format does not allow one.")
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicate_keys,
                           parse_constant=_reject_constant, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise PackError(f"manifest.json is not valid JSON: {exc.msg} at line {exc.lineno}, "
                        f"column {exc.colno}.") from None
    except RecursionError:
        raise PackError(f"manifest.json is nested deeper than {MAX_DEPTH} levels.") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise PackError(f"manifest.json holds a number that cannot be read: {exc}.") from None
    _check_depth_and_strings(value)
    return value


# --- Checking the fields ----------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fail_list(intro: str, problems: list[str]) -> PackError:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    lines = "\n".join(f"- {p}" for p in shown)
    more = len(problems) - len(shown)
    tail = f"\n... and {more} more problem{'s' if more != 1 else ''}" if more else ""
    return PackError(f"{intro}\n{lines}{tail}")


def _check_top(obj: dict) -> None:
    missing = [f for f in FIELDS if f not in obj]
    extra = sorted(k for k in obj if k not in FIELDS)
    if extra:
        raise PackError(f"manifest.json has unknown field{'s' if len(extra) > 1 else ''} "
                        f"{', '.join(schema._short(k) for k in extra)}; "
                        f"allowed: {', '.join(FIELDS)}.")
    if missing:
        raise PackError(f"manifest.json is missing the field{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(repr(k) for k in missing)}.")


def _expect(name: str, value: Any, ok: bool, wanted: str) -> None:
    if not ok:
        raise PackError(f"manifest.json: {name} must be {wanted}, not {schema._kind(value)} "
                        f"{schema._short(value)}.")


def _parse_created(value: Any) -> str:
    _expect("created", value, isinstance(value, str), "a string")
    valid = bool(CREATED_PATTERN.fullmatch(value))
    if valid:
        try:
            datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            valid = False
    if not valid:
        raise PackError(f"manifest.json: created {schema._short(value)} is not a UTC time "
                        "written like 2026-11-24T06:00:00Z.")
    return value


def _parse_files(value: Any) -> tuple[FileRecord, ...]:
    _expect("files", value, isinstance(value, list), "a list")
    if len(value) > MAX_FILES:
        raise PackError(f"manifest.json lists {len(value)} files; the limit is {MAX_FILES}.")
    records: list[FileRecord] = []
    seen: set[str] = set()
    total = 0
    for i, entry in enumerate(value):
        where = f"files[{i}]"
        _expect(where, entry, isinstance(entry, dict), "an object")
        keys = set(entry)
        if keys != set(FILE_FIELDS):
            missing = [k for k in FILE_FIELDS if k not in entry]
            extra = sorted(k for k in keys if k not in FILE_FIELDS)
            what = []
            if missing:
                what.append(f"is missing {', '.join(repr(k) for k in missing)}")
            if extra:
                what.append(f"has unknown key{'s' if len(extra) > 1 else ''} "
                            f"{', '.join(schema._short(k) for k in extra)}")
            raise PackError(f"manifest.json: {where} {' and '.join(what)} (a file record has "
                            f"exactly {', '.join(FILE_FIELDS)}).")
        sha, size, media_type = entry["sha256"], entry["size"], entry["media_type"]
        _expect(f"{where}.sha256", sha,
                isinstance(sha, str) and bool(schema.SHA256_PATTERN.fullmatch(sha)),
                "64 lowercase hexadecimal digits")
        _expect(f"{where}.size", size, _is_int(size) and 0 <= size <= MAX_FILE_SIZE,
                f"a whole number of bytes from 0 to {MAX_FILE_SIZE}")
        _expect(f"{where}.media_type", media_type,
                isinstance(media_type, str) and bool(schema.MEDIA_TYPE_PATTERN.fullmatch(media_type)),
                "a media type like 'application/pdf'")
        if sha in seen:
            raise PackError(f"manifest.json lists the file {sha} twice.")
        seen.add(sha)
        total += size
        records.append(FileRecord(sha, size, media_type))
    if total > MAX_PACK_BYTES:
        raise PackError(f"the pack's files add up to {total} bytes; the limit is {MAX_PACK_BYTES} "
                        f"({MAX_PACK_BYTES // 2**30} GiB).")
    return tuple(records)


def _catalog_files(catalog: dict) -> dict[str, list[dict]]:
    """sha256 -> the catalog's file entries with that sha256 (catalog already validated)."""
    found: dict[str, list[dict]] = {}
    for res in catalog["resources"]:
        for entry in res.get("files", ()):
            found.setdefault(entry["sha256"], []).append(entry)
    return found


def _check_files_match_catalog(kind: str, files: tuple[FileRecord, ...], catalog: dict) -> None:
    named = _catalog_files(catalog)
    for record in files:
        entries = named.get(record.sha256)
        if entries is None:
            if kind == "full":
                raise PackError(f"manifest.json lists the file {record.sha256}, but no resource "
                                "in its catalog names it.")
            raise PackError(f"manifest.json lists the file {record.sha256}, but none of the "
                            "delta's added or changed resources names it.")
        for entry in entries:
            if entry["size"] != record.size:
                raise PackError(f"manifest.json says the file {record.sha256} is {record.size} "
                                f"bytes, but the catalog says {entry['size']} "
                                f"({entry['name']!r}).")
        if record.media_type not in {e["media_type"] for e in entries}:
            raise PackError(f"manifest.json says the file {record.sha256} is "
                            f"{record.media_type}, but the catalog says "
                            f"{entries[0]['media_type']} ({entries[0]['name']!r}).")
    if kind == "full":
        held = {f.sha256 for f in files}
        missing = [sha for sha in named if sha not in held]
        if missing:
            entry = named[missing[0]][0]
            raise PackError(f"the catalog names {len(missing)} file{'s' if len(missing) != 1 else ''} "
                            f"that the pack does not list, e.g. {entry['name']!r} ({missing[0]}); "
                            "a full pack holds every file of its catalog.")


def parse_manifest(data: bytes) -> Manifest:
    """Read and check ``manifest.json``; raise ``PackError`` naming the first problem."""
    obj = _load_json(data)
    if not isinstance(obj, dict):
        raise PackError(f"manifest.json must hold a JSON object, not {schema._kind(obj)}.")
    fmt = obj.get("format")
    if "format" in obj and fmt != FORMAT:
        raise PackError(f"This is not a hotspot content pack: its format is "
                        f"{schema._short(fmt)}, not {FORMAT!r}.")
    if "format_version" in obj:
        fv = obj["format_version"]
        if not _is_int(fv) or fv != FORMAT_VERSION:
            raise PackError(f"This pack is in format version {schema._short(fv)}; this software "
                            f"reads version {FORMAT_VERSION}. A newer hotspot update may be needed.")
    _check_top(obj)

    library, version = obj["library"], obj["version"]
    _expect("library", library,
            isinstance(library, str) and bool(schema.ID_PATTERN.fullmatch(library)),
            "a library id (lowercase letters, digits and '-', at most 80 characters)")
    _expect("version", version, _is_int(version) and version >= 1, "a whole number of at least 1")
    created = _parse_created(obj["created"])
    publisher = obj["publisher"]
    _expect("publisher", publisher, isinstance(publisher, str), "a string")
    if not publisher.strip() or len(publisher) > MAX_PUBLISHER or _CONTROL.search(publisher):
        raise PackError(f"manifest.json: publisher must be 1 to {MAX_PUBLISHER} characters of "
                        "text on one line.")

    kind, base = obj["kind"], obj["base_version"]
    _expect("kind", kind, isinstance(kind, str) and kind in KINDS, "'full' or 'delta'")
    if kind == "full":
        _expect("base_version", base, base is None, "null for a full pack")
    else:
        _expect("base_version", base, _is_int(base) and base >= 1,
                "the whole-number version a delta applies to")
        if base >= version:
            raise PackError(f"manifest.json: a delta from version {base} to version {version} "
                            "goes backwards; base_version must be lower than version.")

    removed = obj["removed"]
    _expect("removed", removed, isinstance(removed, list), "a list of resource ids")
    if kind == "full" and removed:
        raise PackError("manifest.json: a full pack cannot remove resources (removed must be "
                        "empty); only a delta lists removed ids.")
    if len(removed) > MAX_RESOURCES:
        raise PackError(f"manifest.json removes {len(removed)} resources; the limit is "
                        f"{MAX_RESOURCES}.")
    seen_removed: set[str] = set()
    for i, res_id in enumerate(removed):
        _expect(f"removed[{i}]", res_id,
                isinstance(res_id, str) and bool(schema.ID_PATTERN.fullmatch(res_id)),
                "a resource id")
        if res_id in seen_removed:
            raise PackError(f"manifest.json: removed lists {res_id!r} twice.")
        seen_removed.add(res_id)

    files = _parse_files(obj["files"])

    catalog = obj["catalog"]
    _expect("catalog", catalog, isinstance(catalog, dict), "an object")
    problems = list(schema.iter_problems(catalog))
    if problems:
        raise _fail_list(f"The catalog in manifest.json has {len(problems)} "
                         f"problem{'s' if len(problems) != 1 else ''}:", problems)
    cat_library = catalog["library"]
    if cat_library["id"] != library:
        raise PackError(f"manifest.json is for library {library!r} but its catalog is for "
                        f"{cat_library['id']!r}.")
    if cat_library["version"] != version:
        raise PackError(f"manifest.json is version {version} but its catalog says version "
                        f"{cat_library['version']}.")
    if kind == "delta":
        both = sorted(seen_removed & {r["id"] for r in catalog["resources"]})
        if both:
            raise PackError(f"manifest.json both removes and adds or changes {both[0]!r}.")
    _check_files_match_catalog(kind, files, catalog)

    return Manifest(library=library, version=version, created=created, publisher=publisher,
                    kind=kind, base_version=base, catalog=catalog, removed=tuple(removed),
                    files=files)


def apply_delta(base_catalog: dict, delta: Manifest) -> dict:
    """The full catalog after ``delta``: base minus removed, changed replaced, added appended.

    ``base_catalog`` is the installed (valid) catalog; it is not modified. The result takes
    ``library`` and ``taxonomy`` from the delta and is checked as a whole catalog.
    """
    if delta.kind != "delta":
        raise PackError(f"{delta.pack_name()} is a full pack, not a delta.")
    base_library = base_catalog.get("library", {}) if isinstance(base_catalog, dict) else {}
    if base_library.get("id") != delta.library:
        raise PackError(f"This update is for library {delta.library!r}, but the installed "
                        f"library is {base_library.get('id')!r}.")
    if base_library.get("version") != delta.base_version:
        raise PackError(f"This update goes from version {delta.base_version} to "
                        f"{delta.version}, but the installed version is "
                        f"{base_library.get('version')}.")
    base_resources = base_catalog["resources"]
    base_ids = {r["id"] for r in base_resources}
    unknown = [r for r in delta.removed if r not in base_ids]
    if unknown:
        raise PackError(f"This update removes {unknown[0]!r}, which version "
                        f"{delta.base_version} of {delta.library!r} does not have.")
    removed = set(delta.removed)
    records = {r["id"]: r for r in delta.catalog["resources"]}
    resources = []
    for res in base_resources:
        if res["id"] in removed:
            continue
        resources.append(copy.deepcopy(records.pop(res["id"], res)))
    # What is left in `records` is new; it keeps the delta's order.
    resources.extend(copy.deepcopy(r) for r in delta.catalog["resources"] if r["id"] in records)
    result = {
        "format": schema.FORMAT_VERSION,
        "library": copy.deepcopy(delta.catalog["library"]),
        "taxonomy": copy.deepcopy(delta.catalog["taxonomy"]),
        "resources": resources,
    }
    problems = list(schema.iter_problems(result))
    if problems:
        raise _fail_list(f"After this update the library would have {len(problems)} "
                         f"problem{'s' if len(problems) != 1 else ''}:", problems)
    return result
