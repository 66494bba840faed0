"""The catalog format (library, taxonomy, resources, files) and its validation.

The same format is the catalog of a content pack (built from a publisher's spreadsheet by
``content_pack.csv_catalog``); ``docs/catalog-format.md`` describes it for publishers. The limits below are part
of the format: a catalog that passes here is safe for the hotspot to load on a small
device, and a typo in a key is caught instead of silently ignored.

    >>> from content_pack.schema import load_catalog, iter_problems, check_files
    >>> data = load_catalog("catalog.json")
    >>> list(iter_problems(data))
    []
    >>> check_files(data, Path("hotspot/demo/files"))
    []

``iter_problems`` yields every problem as a sentence that names its place;
``validate_catalog`` raises ``CatalogError`` with the first few. Checking has no side
effects: nothing is installed or written here.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hotspot.errors import CatalogError

FORMAT_VERSION = 1

# --- Limits (part of the format) -------------------------------------------------------
MAX_RESOURCES = 50_000
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
LANGUAGE_PATTERN = re.compile(r"[a-z]{2,3}")
COUNTRY_PATTERN = re.compile(r"[A-Z]{2}")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
MEDIA_TOP_TYPES = ("audio", "video", "image", "application", "text")
MEDIA_TYPE_PATTERN = re.compile(
    r"(?:%s)/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}" % "|".join(MEDIA_TOP_TYPES)
)

MAX_TITLE = 300
MAX_SUMMARY = 1_000
MAX_DESCRIPTION = 20_000
MAX_PUBLISHER = 200
MAX_LICENCE = 200
MAX_REGION = 100
MAX_TAGS = 30
MAX_TAG = 60
MAX_COUNTRIES = 250
MAX_LANGUAGES = 50  # per list of languages and per text (keys of one per-language dict)
MAX_FILES = 50
MAX_FILE_NAME = 200
MAX_FILE_SIZE = 8 * 1024**3  # 8 GiB
MAX_DURATION = 24 * 3600  # seconds
MAX_LINK = 2_000
MIN_YEAR, MAX_YEAR = 1900, 2100
MAX_TAXONOMY_ENTRIES = 40  # per list: types, themes, strands
MAX_LABEL = 80
MAX_TAXONOMY_DESCRIPTION = 1_000
MAX_LIBRARY_DESCRIPTION = 1_000
# All text in a catalog (every string value, in every language) together. A device with
# little memory holds the catalog and its search index in RAM.
MAX_TOTAL_TEXT = 32 * 1024 * 1024  # characters
MAX_CATALOG_BYTES = 64 * 1024 * 1024  # the JSON file
MAX_PROBLEMS_SHOWN = 20

# Icons the web layer knows how to draw.
ICONS = frozenset(
    "book tool chart people template video sound map radio walk bell handshake camera "
    "scale megaphone gear lock school".split()
)

TOP_KEYS = {"format", "library", "taxonomy", "resources"}
LIBRARY_KEYS = {"id", "version", "title", "description", "demo"}
TAXONOMY_LISTS = ("types", "themes", "strands")
TAXONOMY_ENTRY_KEYS = {"id", "icon", "label", "description"}
RESOURCE_REQUIRED = ("id", "title", "type", "themes", "strand", "languages")
RESOURCE_KEYS = set(RESOURCE_REQUIRED) | {
    "summary", "description", "region", "countries", "publisher", "year", "licence",
    "tags", "added", "files", "thumbnail", "link", "demo",
}
FILE_REQUIRED = ("name", "sha256", "size", "media_type")
FILE_KEYS = set(FILE_REQUIRED) | {"language", "duration"}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HASH_CHUNK = 1024 * 1024


class _Counter:
    """Adds up the characters of the text seen while checking."""

    def __init__(self) -> None:
        self.chars = 0


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unknown_keys(where: str, obj: dict, allowed: set[str]) -> Iterator[str]:
    for key in obj:
        if key not in allowed:
            yield f"{where}: unknown key {_short(key)} (allowed: {', '.join(sorted(allowed))})"


def _check_string(where: str, value: Any, limit: int, counter: _Counter) -> Iterator[str]:
    if not isinstance(value, str):
        yield f"{where} must be a string, not {_kind(value)}"
        return
    counter.chars += len(value)
    if not value.strip():
        yield f"{where} must not be empty"
    elif len(value) > limit:
        yield f"{where} is {len(value)} characters long; the limit is {limit}"


def _check_texts(
    where: str, value: Any, limit: int, counter: _Counter, *, required: bool = False
) -> Iterator[str]:
    """A per-language text: {"en": "...", "es": "..."}."""
    if not isinstance(value, dict):
        yield f"{where} must be an object of language code to text, not {_kind(value)}"
        return
    if required and not value:
        yield f"{where} needs at least one language"
    if len(value) > MAX_LANGUAGES:
        yield f"{where} has {len(value)} languages; the limit is {MAX_LANGUAGES}"
        return
    for lang, text in value.items():
        if not LANGUAGE_PATTERN.fullmatch(lang):
            yield f"{where}: key {_short(lang)} is not a language code (2 or 3 lowercase letters, ISO 639)"
        yield from _check_string(f"{where}[{lang!r}]", text, limit, counter)


def _check_id(where: str, value: Any) -> Iterator[str]:
    if not isinstance(value, str):
        yield f"{where} must be a string, not {_kind(value)}"
    elif not ID_PATTERN.fullmatch(value):
        yield (f"{where} {_short(value)} is not a valid id (lowercase letters, digits and '-', "
               "starting with a letter or digit, at most 80 characters)")


def _check_list(where: str, value: Any, limit: int, *, non_empty: bool = False) -> Iterator[str]:
    if not isinstance(value, list):
        yield f"{where} must be a list, not {_kind(value)}"
    elif non_empty and not value:
        yield f"{where} must not be empty"
    elif len(value) > limit:
        yield f"{where} has {len(value)} entries; the limit is {limit}"


def _duplicates(values: list) -> list:
    seen, dupes = set(), []
    for value in values:
        if isinstance(value, str | int) and not isinstance(value, bool):
            if value in seen and value not in dupes:
                dupes.append(value)
            seen.add(value)
    return dupes


def _check_code_list(where: str, value: Any, pattern: re.Pattern, what: str, limit: int,
                     *, non_empty: bool = False) -> Iterator[str]:
    problems = list(_check_list(where, value, limit, non_empty=non_empty))
    yield from problems
    if problems:
        return
    for i, code in enumerate(value):
        if not isinstance(code, str) or not pattern.fullmatch(code):
            yield f"{where}[{i}] {_short(code)} is not {what}"
    for code in _duplicates(value):
        yield f"{where} lists {code!r} more than once"


def _check_library(library: Any, counter: _Counter) -> Iterator[str]:
    where = "library"
    if not isinstance(library, dict):
        yield f"{where} must be an object, not {_kind(library)}"
        return
    yield from _unknown_keys(where, library, LIBRARY_KEYS)
    for key in ("id", "version", "title"):
        if key not in library:
            yield f"{where}: missing required key {key!r}"
    if "id" in library:
        yield from _check_id(f"{where}.id", library["id"])
    if "version" in library:
        version = library["version"]
        if not _is_int(version) or version < 1:
            yield f"{where}.version must be a whole number of at least 1, not {_short(version)}"
    if "title" in library:
        yield from _check_texts(f"{where}.title", library["title"], MAX_TITLE, counter, required=True)
    if "description" in library:
        yield from _check_texts(f"{where}.description", library["description"],
                                MAX_LIBRARY_DESCRIPTION, counter)
    if "demo" in library and not isinstance(library["demo"], bool):
        yield f"{where}.demo must be true or false, not {_kind(library['demo'])}"


def _check_taxonomy(taxonomy: Any, counter: _Counter) -> Iterator[str]:
    if not isinstance(taxonomy, dict):
        yield f"taxonomy must be an object, not {_kind(taxonomy)}"
        return
    yield from _unknown_keys("taxonomy", taxonomy, set(TAXONOMY_LISTS))
    for name in TAXONOMY_LISTS:
        where = f"taxonomy.{name}"
        if name not in taxonomy:
            yield f"taxonomy: missing required key {name!r}"
            continue
        entries = taxonomy[name]
        problems = list(_check_list(where, entries, MAX_TAXONOMY_ENTRIES, non_empty=True))
        yield from problems
        if problems:
            continue
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            place = f"{where}[{i}]"
            if not isinstance(entry, dict):
                yield f"{place} must be an object, not {_kind(entry)}"
                continue
            entry_id = entry.get("id")
            if isinstance(entry_id, str):
                place = f"{place} (id {_short(entry_id)})"
            yield from _unknown_keys(place, entry, TAXONOMY_ENTRY_KEYS)
            if "id" not in entry:
                yield f"{place}: missing required key 'id'"
            else:
                yield from _check_id(f"{place}: id", entry_id)
                if isinstance(entry_id, str):
                    if entry_id in seen:
                        yield f"{place}: id {entry_id!r} is used twice in {where}"
                    seen.add(entry_id)
            if "label" not in entry:
                yield f"{place}: missing required key 'label'"
            else:
                yield from _check_texts(f"{place}: label", entry["label"], MAX_LABEL, counter,
                                        required=True)
            if "description" in entry:
                yield from _check_texts(f"{place}: description", entry["description"],
                                        MAX_TAXONOMY_DESCRIPTION, counter)
            if "icon" in entry:
                icon = entry["icon"]
                if not isinstance(icon, str) or icon not in ICONS:
                    yield f"{place}: icon {_short(icon)} is not one of: {', '.join(sorted(ICONS))}"
            elif name != "strands":
                yield f"{place}: missing required key 'icon'"


def _taxonomy_ids(taxonomy: Any, name: str) -> set[str] | None:
    """The ids of one taxonomy list, or None when the list is too broken to check references."""
    if not isinstance(taxonomy, dict) or not isinstance(taxonomy.get(name), list):
        return None
    return {e["id"] for e in taxonomy[name] if isinstance(e, dict) and isinstance(e.get("id"), str)}


def _check_file_name(where: str, name: Any) -> Iterator[str]:
    if not isinstance(name, str):
        yield f"{where} must be a string, not {_kind(name)}"
    elif not name:
        yield f"{where} must not be empty"
    elif len(name) > MAX_FILE_NAME:
        yield f"{where} is {len(name)} characters long; the limit is {MAX_FILE_NAME}"
    elif name in (".", "..") or "/" in name or "\\" in name or _CONTROL.search(name):
        yield (f"{where} {_short(name)} is not a plain file name (no '/', '\\', control "
               "characters, '.' or '..')")


def _check_link(where: str, link: Any) -> Iterator[str]:
    if not isinstance(link, str):
        yield f"{where} must be a string, not {_kind(link)}"
        return
    if len(link) > MAX_LINK:
        yield f"{where} is {len(link)} characters long; the limit is {MAX_LINK}"
        return
    try:
        parts = urlsplit(link)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or any(c.isspace() for c in link) or _CONTROL.search(link)):
        yield f"{where} {_short(link)} is not an http:// or https:// address"


def _check_file(where: str, entry: Any) -> Iterator[str]:
    if not isinstance(entry, dict):
        yield f"{where} must be an object, not {_kind(entry)}"
        return
    yield from _unknown_keys(where, entry, FILE_KEYS)
    for key in FILE_REQUIRED:
        if key not in entry:
            yield f"{where}: missing required key {key!r}"
    if "name" in entry:
        yield from _check_file_name(f"{where}.name", entry["name"])
    if "sha256" in entry:
        sha = entry["sha256"]
        if not isinstance(sha, str) or not SHA256_PATTERN.fullmatch(sha):
            yield f"{where}.sha256 must be 64 lowercase hexadecimal digits, not {_short(sha)}"
    if "size" in entry:
        size = entry["size"]
        if not _is_int(size) or not 0 <= size <= MAX_FILE_SIZE:
            yield f"{where}.size must be a whole number of bytes from 0 to {MAX_FILE_SIZE}, not {_short(size)}"
    media_type = entry.get("media_type")
    if "media_type" in entry:
        if not isinstance(media_type, str) or not MEDIA_TYPE_PATTERN.fullmatch(media_type):
            yield (f"{where}.media_type {_short(media_type)} is not a media type like "
                   f"'application/pdf' (top-level type one of: {', '.join(MEDIA_TOP_TYPES)})")
    if "language" in entry:
        lang = entry["language"]
        if not isinstance(lang, str) or not LANGUAGE_PATTERN.fullmatch(lang):
            yield f"{where}.language {_short(lang)} is not a language code (2 or 3 lowercase letters)"
    if "duration" in entry:
        duration = entry["duration"]
        if (not isinstance(duration, int | float) or isinstance(duration, bool)
                or duration != duration or not 0 <= duration <= MAX_DURATION):
            yield f"{where}.duration must be a number of seconds from 0 to {MAX_DURATION}, not {_short(duration)}"
        elif isinstance(media_type, str) and not media_type.startswith(("audio/", "video/")):
            yield f"{where}.duration is only for audio and video files, not {media_type!r}"


def _check_resource(where: str, res: dict, taxonomy: Any, counter: _Counter) -> Iterator[str]:
    yield from _unknown_keys(where, res, RESOURCE_KEYS)
    for key in RESOURCE_REQUIRED:
        if key not in res:
            yield f"{where}: missing required key {key!r}"
    if "id" in res:
        yield from _check_id(f"{where}: id", res["id"])
    if "title" in res:
        yield from _check_texts(f"{where}: title", res["title"], MAX_TITLE, counter, required=True)
    if "summary" in res:
        yield from _check_texts(f"{where}: summary", res["summary"], MAX_SUMMARY, counter)
    if "description" in res:
        yield from _check_texts(f"{where}: description", res["description"], MAX_DESCRIPTION, counter)

    for key, name in (("type", "types"), ("strand", "strands")):
        if key not in res:
            continue
        value, known = res[key], _taxonomy_ids(taxonomy, name)
        if not isinstance(value, str):
            yield f"{where}: {key} must be a string, not {_kind(value)}"
        elif known is not None and value not in known:
            yield f"{where}: {key} {_short(value)} is not in taxonomy.{name}"
    if "themes" in res:
        themes, known = res["themes"], _taxonomy_ids(taxonomy, "themes")
        problems = list(_check_list(f"{where}: themes", themes, MAX_TAXONOMY_ENTRIES, non_empty=True))
        yield from problems
        if not problems:
            for i, theme in enumerate(themes):
                if not isinstance(theme, str):
                    yield f"{where}: themes[{i}] must be a string, not {_kind(theme)}"
                elif known is not None and theme not in known:
                    yield f"{where}: theme {_short(theme)} is not in taxonomy.themes"
            for theme in _duplicates(themes):
                yield f"{where}: themes lists {theme!r} more than once"

    if "languages" in res:
        yield from _check_code_list(f"{where}: languages", res["languages"], LANGUAGE_PATTERN,
                                    "a language code (2 or 3 lowercase letters)", MAX_LANGUAGES,
                                    non_empty=True)
    if "countries" in res:
        yield from _check_code_list(f"{where}: countries", res["countries"], COUNTRY_PATTERN,
                                    "an ISO 3166-1 alpha-2 country code (2 uppercase letters)",
                                    MAX_COUNTRIES)
    for key, limit in (("region", MAX_REGION), ("publisher", MAX_PUBLISHER), ("licence", MAX_LICENCE)):
        if key in res:
            yield from _check_string(f"{where}: {key}", res[key], limit, counter)
    if "year" in res:
        year = res["year"]
        if not _is_int(year) or not MIN_YEAR <= year <= MAX_YEAR:
            yield f"{where}: year must be a whole number from {MIN_YEAR} to {MAX_YEAR}, not {_short(year)}"
    if "added" in res:
        added = res["added"]
        valid = isinstance(added, str) and DATE_PATTERN.fullmatch(added)
        if valid:
            try:
                datetime.date.fromisoformat(added)
            except ValueError:
                valid = False
        if not valid:
            yield f"{where}: added must be a date written YYYY-MM-DD, not {_short(added)}"
    if "tags" in res:
        tags = res["tags"]
        problems = list(_check_list(f"{where}: tags", tags, MAX_TAGS))
        yield from problems
        if not problems:
            for i, tag in enumerate(tags):
                yield from _check_string(f"{where}: tags[{i}]", tag, MAX_TAG, counter)
            for tag in _duplicates(tags):
                yield f"{where}: tags lists {tag!r} more than once"
    if "demo" in res and not isinstance(res["demo"], bool):
        yield f"{where}: demo must be true or false, not {_kind(res['demo'])}"
    if "link" in res:
        yield from _check_link(f"{where}: link", res["link"])

    files = res.get("files", [])
    problems = list(_check_list(f"{where}: files", files, MAX_FILES))
    yield from problems
    if problems:
        return
    if not files and "link" not in res:
        yield f"{where}: has no files, so it needs a link to the original"
    names: set[str] = set()
    for i, entry in enumerate(files):
        yield from _check_file(f"{where}: files[{i}]", entry)
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in names:
                yield f"{where}: file name {name!r} is used twice"
            names.add(name)
    if "thumbnail" in res:
        thumb = res["thumbnail"]
        if not isinstance(thumb, str) or not SHA256_PATTERN.fullmatch(thumb):
            yield f"{where}: thumbnail must be the sha256 of one of its files, not {_short(thumb)}"
        else:
            matches = [f for f in files if isinstance(f, dict) and f.get("sha256") == thumb]
            if not matches:
                yield f"{where}: thumbnail {thumb[:12]}... is not the sha256 of one of its files"
            elif not any(isinstance(f.get("media_type"), str) and f["media_type"].startswith("image/")
                         for f in matches):
                yield f"{where}: thumbnail {thumb[:12]}... is not an image (its media_type must be image/...)"


def iter_problems(data: Any) -> Iterator[str]:
    """Yield every problem in a catalog, each a sentence naming where it is."""
    if not isinstance(data, dict):
        yield f"the catalog must be a JSON object, not {_kind(data)}"
        return
    counter = _Counter()
    yield from _unknown_keys("catalog", data, TOP_KEYS)
    for key in sorted(TOP_KEYS):
        if key not in data:
            yield f"catalog: missing required key {key!r}"
    if "format" in data and (not _is_int(data["format"]) or data["format"] != FORMAT_VERSION):
        yield (f"format is {_short(data['format'])}; this version of the software reads "
               f"format {FORMAT_VERSION}")
    if "library" in data:
        yield from _check_library(data["library"], counter)
    taxonomy = data.get("taxonomy")
    if "taxonomy" in data:
        yield from _check_taxonomy(taxonomy, counter)
    if "resources" in data:
        resources = data["resources"]
        problems = list(_check_list("resources", resources, MAX_RESOURCES))
        yield from problems
        if not problems:
            seen: dict[str, int] = {}
            for i, res in enumerate(resources):
                where = f"resources[{i}]"
                if not isinstance(res, dict):
                    yield f"{where} must be an object, not {_kind(res)}"
                    continue
                res_id = res.get("id")
                if isinstance(res_id, str):
                    where = f"{where} (id {_short(res_id)})"
                    if res_id in seen:
                        yield f"{where}: id is already used by resources[{seen[res_id]}]"
                    else:
                        seen[res_id] = i
                yield from _check_resource(where, res, taxonomy, counter)
    if counter.chars > MAX_TOTAL_TEXT:
        yield (f"the catalog holds {counter.chars} characters of text; the limit is "
               f"{MAX_TOTAL_TEXT}")


def validate_catalog(data: Any) -> None:
    """Raise ``CatalogError`` listing the first problems when the catalog has any."""
    shown: list[str] = []
    more = 0
    for problem in iter_problems(data):
        if len(shown) < MAX_PROBLEMS_SHOWN:
            shown.append(problem)
        else:
            more += 1
    if shown:
        lines = "\n".join(f"- {p}" for p in shown)
        tail = f"\n... and {more} more problem{'s' if more != 1 else ''}" if more else ""
        count = len(shown) + more
        raise CatalogError(
            f"The catalog has {count} problem{'s' if count != 1 else ''}:\n{lines}{tail}"
        )


def _sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_files(data: dict, files_dir: Path) -> list[str]:
    """Check every file entry against ``files_dir``; return the problems found.

    A file is found under its display ``name`` or under its ``sha256`` (the way the media
    store keeps it). It must have the listed size and sha256. Run this on a catalog that
    passed ``validate_catalog``; entries too broken to check are skipped.
    """
    files_dir = Path(files_dir)
    if not files_dir.is_dir():
        raise CatalogError(f"The files directory {str(files_dir)!r} does not exist.")
    problems: list[str] = []
    hashes: dict[Path, str] = {}  # a file listed by several resources is hashed once
    resources = data.get("resources") if isinstance(data, dict) else None
    for i, res in enumerate(resources if isinstance(resources, list) else []):
        if not isinstance(res, dict) or not isinstance(res.get("files"), list):
            continue
        where = f"resources[{i}]"
        if isinstance(res.get("id"), str):
            where += f" (id {_short(res['id'])})"
        for j, entry in enumerate(res["files"]):
            if not isinstance(entry, dict):
                continue
            name, sha, size = entry.get("name"), entry.get("sha256"), entry.get("size")
            if list(_check_file_name("name", name)) or not isinstance(sha, str) \
                    or not SHA256_PATTERN.fullmatch(sha) or not _is_int(size):
                continue
            place = f"{where}: files[{j}] {name!r}"
            candidates = [p for p in (files_dir / name, files_dir / sha) if p.is_file()]
            if not candidates:
                problems.append(f"{place}: no file named {name!r} or {sha} in {files_dir}")
                continue
            found_problem = None
            for path in candidates:
                actual_size = path.stat().st_size
                if actual_size != size:
                    found_problem = found_problem or (
                        f"{place}: {path.name} is {actual_size} bytes; the catalog says {size}")
                    continue
                if path not in hashes:
                    hashes[path] = _sha256_of(path)
                if hashes[path] != sha:
                    found_problem = found_problem or (
                        f"{place}: the sha256 of {path.name} is {hashes[path]}; the catalog says {sha}")
                    continue
                found_problem = None
                break
            if found_problem:
                problems.append(found_problem)
    return problems


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj: dict = {}
    for key, value in pairs:
        if key in obj:
            raise CatalogError(f"The key {key!r} appears twice in the same object.")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise CatalogError(f"{name} is not allowed in a catalog (JSON has no such number).")


def load_catalog(path: str | Path) -> dict:
    """Read a catalog JSON file (UTF-8, at most 64 MB). Does not validate it."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CATALOG_BYTES + 1)
    except FileNotFoundError:
        raise CatalogError(f"No catalog file at {str(path)!r}.") from None
    except IsADirectoryError:
        raise CatalogError(f"{str(path)!r} is a directory, not a catalog file.") from None
    except OSError as exc:
        raise CatalogError(f"Cannot read {str(path)!r}: {exc.strerror or exc}.") from None
    if len(raw) > MAX_CATALOG_BYTES:
        raise CatalogError(f"{str(path)!r} is larger than {MAX_CATALOG_BYTES // (1024 * 1024)} MB.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{str(path)!r} is not UTF-8 text (bad byte at offset {exc.start}).") from None
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys,
                          parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"{str(path)!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    except RecursionError:
        raise CatalogError(f"{str(path)!r} is nested too deeply to be a catalog.") from None
    except CatalogError as exc:
        raise CatalogError(f"{str(path)!r}: {exc.message}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{str(path)!r} must hold a JSON object, not {_kind(data)}.")
    return data
