"""A publisher's spreadsheet (exported as CSV) plus a folder of files, turned into a catalog.

``docs/publishers.md`` explains the columns to coalition staff. The source folder holds
``taxonomy.json`` (types, themes and strands, as in ``docs/catalog-format.md``),
``library.json`` (the library's id and title) and the files the spreadsheet names.

    >>> source = read_source(Path("river-library"), Path("river-library/catalog.csv"), version=3)
    >>> source.catalog["library"]["version"], len(source.files)
    (3, 12)

Every problem is collected, each naming its row and column
(``catalog.csv row 7, column 'type': 'videos' is not a type; known types: ...``), and all of
them are raised together in one ``CsvCatalogError``, so a spreadsheet is fixed in one round.
Reading has no side effects: nothing is written.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import mimetypes
import os
import re
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from content_pack import schema
from hotspot.errors import CatalogError

TAXONOMY_FILE = "taxonomy.json"
LIBRARY_FILE = "library.json"
MAX_CSV_BYTES = 64 * 2**20
MAX_PROBLEMS_SHOWN = 500
LIST_SEPARATOR = ";"
FILE_OPTION_SEPARATOR = "|"
_HASH_CHUNK = 2**20

# Columns holding one value; per-language columns are <name>_<lang>.
SINGLE_COLUMNS = ("id", "type", "themes", "strand", "languages", "region", "countries",
                  "publisher", "year", "licence", "tags", "added", "link", "files", "thumbnail",
                  "demo")
YES = ("yes", "y", "true", "1", "x")
NO = ("", "no", "n", "false", "0")
REQUIRED_COLUMNS = ("id", "type", "themes", "strand", "languages")
TEXT_COLUMNS = {"title": schema.MAX_TITLE, "summary": schema.MAX_SUMMARY,
                "description": schema.MAX_DESCRIPTION}
_TEXT_COLUMN = re.compile(r"(title|summary|description)_([a-z]{2,3})")
LIBRARY_KEYS = {"id", "title", "description", "demo", "publisher"}
_DURATION = re.compile(r"(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)")

# Media types by extension for what the content's first bytes do not tell apart. The
# standard table of Python (not the system's /etc/mime.types) keeps builds repeatable.
_EXTENSION_TYPES = {
    ".txt": "text/plain", ".md": "text/plain", ".csv": "text/csv",
    ".gpx": "application/gpx+xml", ".kml": "application/vnd.google-earth.kml+xml",
}
_MIMETYPES = mimetypes.MimeTypes()


class CsvCatalogError(CatalogError):
    """The spreadsheet or its folder has problems; ``problems`` lists every one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        count = len(self.problems)
        text = (f"{count} problem{'s' if count != 1 else ''} to fix before the pack can be built:\n"
                + "\n".join(f"- {p}" for p in shown)
                + (f"\n... and {more} more" if more else ""))
        super().__init__(text)


@dataclass(frozen=True)
class SourceFile:
    """A file of the source folder, hashed."""

    path: Path  # absolute
    sha256: str
    size: int
    media_type: str


@dataclass
class Source:
    """What the spreadsheet and folder describe: a valid catalog and the files it names."""

    catalog: dict
    files: dict[str, SourceFile] = field(default_factory=dict)  # by sha256
    publisher: str | None = None  # library.json's default pack publisher


# --- Media types ------------------------------------------------------------------------

def _zip_media_type(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "mimetype" in names:
                info = archive.getinfo("mimetype")
                if info.file_size <= 100:
                    declared = archive.read("mimetype").decode("ascii", "replace").strip()
                    if schema.MEDIA_TYPE_PATTERN.fullmatch(declared):
                        return declared  # ODF documents and EPUB name themselves
            if "word/document.xml" in names:
                return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            if "xl/workbook.xml" in names:
                return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            if "ppt/presentation.xml" in names:
                return "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        pass
    return _extension_type(path) or "application/zip"


def _extension_type(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in _EXTENSION_TYPES:
        return _EXTENSION_TYPES[suffix]
    guessed, _encoding = _MIMETYPES.guess_type(path.name, strict=False)
    if guessed and schema.MEDIA_TYPE_PATTERN.fullmatch(guessed.lower()):
        return guessed.lower()
    return None


def media_type_of(path: Path, head: bytes) -> str:
    """The media type from the first bytes of the content, else from the extension."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
                                   and head[1] & 0x06 != 0):  # MPEG audio frame sync, layer set
        return "audio/mpeg"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return "audio/mp4"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/mp4"
    if head.startswith(b"OggS"):
        return "video/ogg" if b"theora" in head[:128] else "audio/ogg"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head[:64] else "video/x-matroska"
    if head.startswith(b"PK\x03\x04"):
        return _zip_media_type(path)
    return _extension_type(path) or "application/octet-stream"


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> tuple[str, int, bytes]:
    """SHA-256, size and the first 512 bytes of a file, read in one streaming pass."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            if not head:
                head = chunk[:512]
            digest.update(chunk)
            size += len(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest(), size, head


# --- Reading the CSV --------------------------------------------------------------------

def _decode(csv_path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CsvCatalogError([
            f"{csv_path.name} is not UTF-8 text (bad byte on line {line}). In the spreadsheet, "
            "save or export it as 'CSV UTF-8'."]) from None
    return text


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    first_line = text.split("\n", 1)[0]
    # The header row decides: spreadsheets in many languages export ';' because ',' is
    # their decimal separator.
    if first_line.count(";") > first_line.count(","):
        class Semicolon(csv.excel):
            delimiter = ";"
        return Semicolon
    return csv.excel


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(LIST_SEPARATOR) if part.strip()]


def _known(ids: set[str]) -> str:
    return ", ".join(sorted(ids)) if ids else "(none)"


def _parse_duration(text: str) -> float | None:
    match = _DURATION.fullmatch(text)
    if not match:
        return None
    hours_or_minutes, minutes, seconds = match.groups()
    if minutes is not None:  # h:m:s
        total = int(hours_or_minutes) * 3600 + int(minutes) * 60 + float(seconds)
    elif hours_or_minutes is not None:  # m:s
        total = int(hours_or_minutes) * 60 + float(seconds)
    else:
        total = float(seconds)
    return int(total) if total == int(total) else total


def _read_json_file(path: Path, what: str, problems: list[str]) -> Any:
    try:
        return schema.load_catalog(path)
    except CatalogError as exc:
        if not path.exists():
            problems.append(f"{path.name} is missing from the source folder: it holds the "
                            f"{what} (see docs/publishers.md).")
        else:
            problems.append(exc.message.replace(repr(str(path)), path.name))
        return None


def _safe_path(source_dir: Path, text: str) -> tuple[Path | None, str | None]:
    """The file a spreadsheet path names inside ``source_dir``, or a reason it is refused."""
    rel = text.replace("\\", "/")
    if rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
        return None, "is not relative to the source folder (write it like 'folder/file.pdf')"
    parts = [p for p in PurePosixPath(rel).parts if p not in ("", ".")]
    if ".." in parts:
        return None, "goes outside the source folder ('..' is not allowed)"
    if not parts:
        return None, "is empty"
    current = source_dir
    for i, part in enumerate(parts):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return None, "does not exist in the source folder"
        except OSError as exc:
            return None, f"cannot be read ({exc.strerror or exc})"
        if stat.S_ISLNK(st.st_mode):
            return None, (f"is a symbolic link ({'/'.join(parts[: i + 1])}); copy the real file "
                          "into the folder instead")
        last = i == len(parts) - 1
        if last and not stat.S_ISREG(st.st_mode):
            return None, "is not a regular file"
        if not last and not stat.S_ISDIR(st.st_mode):
            return None, f"does not exist ({'/'.join(parts[: i + 1])} is not a folder)"
    return current, None


@dataclass
class _Row:
    number: int
    cells: dict[str, str]
    problems: list[str]


def read_source(source_dir: Path, catalog_csv: Path, *, version: int,
                library: dict | None = None,
                progress: Callable[[int], None] | None = None) -> Source:
    """Read the spreadsheet, taxonomy.json, library.json and the files; check everything.

    ``library`` overrides keys of ``library.json`` (or replaces a missing one). Raises
    ``CsvCatalogError`` listing every problem found.
    """
    source_dir = Path(source_dir).resolve()
    catalog_csv = Path(catalog_csv)
    name = catalog_csv.name
    if not source_dir.is_dir():
        raise CsvCatalogError([f"The source folder {source_dir} does not exist."])
    try:
        with catalog_csv.open("rb") as f:
            raw = f.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise CsvCatalogError([f"Cannot read the spreadsheet {catalog_csv}: "
                               f"{exc.strerror or exc}."]) from None
    if len(raw) > MAX_CSV_BYTES:
        raise CsvCatalogError([f"{name} is larger than {MAX_CSV_BYTES // 2**20} MiB."])
    text = _decode(catalog_csv, raw)

    problems: list[str] = []
    taxonomy = _read_json_file(source_dir / TAXONOMY_FILE, "types, themes and strands", problems)
    library_data = None
    if library is None or not {"id", "title"} <= set(library):
        library_data = _read_json_file(source_dir / LIBRARY_FILE, "library's id and title",
                                       problems)
    library_obj = dict(library_data) if isinstance(library_data, dict) else {}
    library_obj.update(library or {})
    publisher = library_obj.pop("publisher", None)
    for key in sorted(set(library_obj) - LIBRARY_KEYS):
        why = "; the version is given when building (--version, or --base)" if key == "version" else ""
        problems.append(f"{LIBRARY_FILE}: unknown key {key!r} (allowed: "
                        f"{', '.join(sorted(LIBRARY_KEYS))}){why}")
        library_obj.pop(key)
    if publisher is not None and not isinstance(publisher, str):
        problems.append(f"{LIBRARY_FILE}: publisher must be a string")
        publisher = None
    library_obj["version"] = version

    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    try:
        table = list(reader)
    except csv.Error as exc:
        raise CsvCatalogError([f"{name} cannot be read as CSV: {exc} (near row "
                               f"{reader.line_num})."]) from None
    if not table or not any(cell.strip() for cell in table[0]):
        raise CsvCatalogError([f"{name} is empty: its first row must name the columns."])

    header = [cell.strip() for cell in table[0]]
    columns: dict[str, int] = {}
    for i, col in enumerate(header):
        if not col or col.startswith("#"):
            continue  # an unnamed column, or a note column for the people editing the sheet
        if col in columns:
            problems.append(f"{name} row 1: column {col!r} appears twice")
        elif col in SINGLE_COLUMNS or _TEXT_COLUMN.fullmatch(col):
            columns[col] = i
        else:
            lower = col.lower().replace(" ", "_")
            hint = (f" (did you mean {lower!r}?)" if lower != col and
                    (lower in SINGLE_COLUMNS or _TEXT_COLUMN.fullmatch(lower)) else "")
            problems.append(f"{name} row 1: unknown column {col!r}{hint}; known columns: "
                            f"{', '.join(SINGLE_COLUMNS)}, title_<lang>, summary_<lang>, "
                            "description_<lang>")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if not any(_TEXT_COLUMN.fullmatch(c) and c.startswith("title_") for c in columns):
        missing.append("title_<lang> (e.g. title_en)")
    if missing:
        problems.append(f"{name} row 1: missing column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)}")
    # Taxonomy ids for messages. A broken taxonomy.json is reported once, not on every row.
    known = {}
    for list_name in schema.TAXONOMY_LISTS:
        entries = taxonomy.get(list_name) if isinstance(taxonomy, dict) else None
        known[list_name] = ({e["id"] for e in entries if isinstance(e, dict)
                             and isinstance(e.get("id"), str)} if isinstance(entries, list) else None)

    rows: list[_Row] = []
    for number, cells in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank rows between groups of resources are fine
        values = {col: (cells[i].strip() if i < len(cells) else "") for col, i in columns.items()}
        extra = [c for i, c in enumerate(cells) if i >= len(header) and c.strip()]
        row = _Row(number, values, [])
        if extra:
            row.problems.append(f"{name} row {number}: has {len(cells)} cells but the header "
                                f"names {len(header)} columns (a ';' or ',' inside a cell must be "
                                "in quotes)")
        rows.append(row)

    hashed: dict[Path, SourceFile] = {}
    resources: list[dict] = []
    resource_rows: list[int] = []
    seen_ids: dict[str, int] = {}
    for row in rows:
        resource = _resource_from_row(name, row, known, source_dir, hashed, seen_ids, progress)
        problems.extend(row.problems)
        if not row.problems:
            resources.append(resource)
            resource_rows.append(row.number)

    catalog = {"format": schema.FORMAT_VERSION, "library": library_obj,
               "taxonomy": taxonomy if taxonomy is not None else {}, "resources": resources}
    if taxonomy is not None:
        # The schema is the last word: whatever the row checks above missed, it finds.
        for problem in schema.iter_problems(catalog):
            problems.append(_place(problem, name, resource_rows, resources))
    if problems:
        raise CsvCatalogError(problems)
    files = {f.sha256: f for f in hashed.values()}
    return Source(catalog=catalog, files=files, publisher=publisher)


_RESOURCE_PLACE = re.compile(r"resources\[(\d+)\](?: \(id [^)]*\))?:? ?")


def _place(problem: str, name: str, rows: list[int], resources: list[dict]) -> str:
    """Say where a schema problem is in the publisher's terms: a row, library.json, ..."""
    match = _RESOURCE_PLACE.match(problem)
    if match:
        index = int(match.group(1))
        return f"{name} row {rows[index]}: {problem[match.end():]}"
    if problem.startswith("taxonomy"):
        return f"{TAXONOMY_FILE}: {problem}"
    if problem.startswith("library"):
        return f"{LIBRARY_FILE} (or --library-id/--title): {problem}"
    return problem


def _resource_from_row(name: str, row: _Row, known: dict[str, set[str] | None],
                       source_dir: Path, hashed: dict[Path, SourceFile],
                       seen_ids: dict[str, int],
                       progress: Callable[[int], None] | None) -> dict:
    cells = row.cells

    def problem(column: str, message: str) -> None:
        row.problems.append(f"{name} row {row.number}, column {column!r}: {message}")

    res: dict[str, Any] = {}
    res_id = cells.get("id", "")
    if not res_id:
        problem("id", "is empty; every resource needs an id such as 'radio-basics'")
    elif not schema.ID_PATTERN.fullmatch(res_id):
        problem("id", f"{res_id!r} is not a valid id (lowercase letters a-z, digits and '-', "
                      "starting with a letter or digit, at most 80 characters)")
    elif res_id in seen_ids:
        problem("id", f"{res_id!r} is already used on row {seen_ids[res_id]}")
    else:
        seen_ids[res_id] = row.number
    res["id"] = res_id

    for column, list_name, label in (("type", "types", "type"), ("strand", "strands", "strand")):
        value = cells.get(column, "")
        ids = known[list_name]
        if not value:
            problem(column, f"is empty; known {list_name}: {_known(ids or set())}")
        elif ids is not None and value not in ids:
            problem(column, f"{value!r} is not a {label}; known {list_name}: {_known(ids)}")
        res[column] = value

    themes = _split_list(cells.get("themes", ""))
    if not themes:
        problem("themes", f"is empty; give at least one theme, separated by '{LIST_SEPARATOR}'")
    for theme in themes:
        if known["themes"] is not None and theme not in known["themes"]:
            problem("themes", f"{theme!r} is not a theme; known themes: {_known(known['themes'])}")
    if len(set(themes)) != len(themes):
        problem("themes", "lists a theme twice")
    res["themes"] = themes

    languages = _split_list(cells.get("languages", ""))
    if not languages:
        problem("languages", "is empty; give the language codes the resource is in, e.g. 'es;pt'")
    for lang in languages:
        if not schema.LANGUAGE_PATTERN.fullmatch(lang):
            problem("languages", f"{lang!r} is not a language code (2 or 3 lowercase letters, "
                                 "e.g. en, es, fr, pt)")
    res["languages"] = languages

    for key, limit in TEXT_COLUMNS.items():
        texts = {}
        for column, value in cells.items():
            match = _TEXT_COLUMN.fullmatch(column)
            if match and match.group(1) == key and value:
                if len(value) > limit:
                    problem(column, f"is {len(value)} characters long; the limit is {limit}")
                # Spreadsheets write line breaks as \r\n; the catalog uses \n.
                texts[match.group(2)] = value.replace("\r\n", "\n").replace("\r", "\n")
        if texts:
            res[key] = texts
        elif key == "title":
            row.problems.append(f"{name} row {row.number}, column 'title_<lang>': the resource "
                                "needs a title in at least one language")

    for column, limit in (("region", schema.MAX_REGION), ("publisher", schema.MAX_PUBLISHER),
                          ("licence", schema.MAX_LICENCE)):
        value = cells.get(column, "")
        if value:
            if len(value) > limit:
                problem(column, f"is {len(value)} characters long; the limit is {limit}")
            res[column] = value

    countries = _split_list(cells.get("countries", ""))
    for code in countries:
        if not schema.COUNTRY_PATTERN.fullmatch(code):
            problem("countries", f"{code!r} is not a country code (2 capital letters, e.g. CO, BR)")
    if countries:
        res["countries"] = countries

    year = cells.get("year", "")
    if year:
        if not year.isdigit() or not schema.MIN_YEAR <= int(year) <= schema.MAX_YEAR:
            problem("year", f"{year!r} is not a year from {schema.MIN_YEAR} to {schema.MAX_YEAR}")
        else:
            res["year"] = int(year)

    tags = _split_list(cells.get("tags", ""))
    if tags:
        res["tags"] = tags

    added = cells.get("added", "")
    if added:
        try:
            if not schema.DATE_PATTERN.fullmatch(added):
                raise ValueError
            datetime.date.fromisoformat(added)
            res["added"] = added
        except ValueError:
            problem("added", f"{added!r} is not a date written YYYY-MM-DD (set the column's "
                             "format to text or to that date format in the spreadsheet)")

    demo = cells.get("demo", "").strip().lower()
    if demo in YES:
        res["demo"] = True
    elif demo not in NO:
        problem("demo", f"{demo!r} should be yes or empty (yes marks demo content, made only to "
                        "show how the library works)")

    link = cells.get("link", "")
    if link:
        if list(schema._check_link("link", link)):
            problem("link", f"{link!r} is not a web address starting with http:// or https://")
        res["link"] = link

    files: list[dict] = []
    by_path: dict[str, dict] = {}
    entries = _split_list(cells.get("files", ""))
    for entry in entries:
        path_text, *options = [p.strip() for p in entry.split(FILE_OPTION_SEPARATOR)]
        path, reason = _safe_path(source_dir, path_text)
        if reason:
            problem("files", f"{path_text!r} {reason}")
            continue
        record: dict[str, Any] = {"name": path.name}
        for option in options:
            duration = _parse_duration(option)
            if schema.LANGUAGE_PATTERN.fullmatch(option):
                record["language"] = option
            elif duration is not None:
                record["duration"] = duration
            else:
                problem("files", f"{entry!r}: {option!r} after '|' is neither a language code "
                                 "(e.g. es) nor a duration (seconds, m:ss or h:mm:ss)")
        if path not in hashed:
            try:
                sha, size, head = hash_file(path, progress)
            except OSError as exc:
                problem("files", f"{path_text!r} cannot be read ({exc.strerror or exc})")
                continue
            hashed[path] = SourceFile(path, sha, size, media_type_of(path, head))
        found = hashed[path]
        record.update(sha256=found.sha256, size=found.size, media_type=found.media_type)
        if "duration" in record and not found.media_type.startswith(("audio/", "video/")):
            problem("files", f"{entry!r}: a duration is only for audio and video, but "
                             f"{path_text!r} is {found.media_type}")
        if any(f["name"] == record["name"] for f in files):
            problem("files", f"two files are named {record['name']!r}; rename one (the name is "
                             "what readers download)")
        files.append(record)
        by_path[str(path)] = record
    if files:
        res["files"] = files
    elif not link and not entries:  # entries given but refused are reported already
        problem("files", "is empty and there is no link: a resource needs files, or a link to "
                         "where it is online")

    thumbnail = cells.get("thumbnail", "")
    if thumbnail:
        path, reason = _safe_path(source_dir, thumbnail)
        if reason:
            problem("thumbnail", f"{thumbnail!r} {reason}")
        elif str(path) not in by_path:
            problem("thumbnail", f"{thumbnail!r} is not one of the files in column 'files'; "
                                 "add it there too")
        elif not by_path[str(path)]["media_type"].startswith("image/"):
            problem("thumbnail", f"{thumbnail!r} is not an image "
                                 f"({by_path[str(path)]['media_type']})")
        else:
            res["thumbnail"] = by_path[str(path)]["sha256"]
    return res

