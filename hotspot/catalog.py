"""The library's catalog in memory: resources, taxonomy, filters, browse and search.

The catalog is read once from its store file (``<data_dir>/catalog.json``) and then served from
memory; installing a new catalog replaces that file atomically and the server reloads it.
Everything here is plain Python: the web layer and the CLI call the same functions.

    >>> catalog = load_catalog(data_dir / "catalog.json")
    >>> page = catalog.browse(Filters(theme="patrols"), page=1, page_size=20)
    >>> [r.id for r in page.items]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from .durable import fsync_directory
from .errors import N_, BadRequest, CatalogError, HotspotError, NotFound, StoreCorrupt
from .search import SearchIndex
from .store import Store

FALLBACK_ORDER = ("en", "es", "fr", "pt")
FILTER_NAMES = ("type", "theme", "strand", "language")


def localize(texts: Mapping[str, str] | None, lang: str) -> tuple[str, str]:
    """The text in ``lang``, else in the first language of FALLBACK_ORDER that has it.

    Returns ``(text, language_of_text)`` so a page can mark text shown in another language.
    """
    if not texts:
        return "", lang
    if texts.get(lang):
        return texts[lang], lang
    for other in FALLBACK_ORDER:
        if texts.get(other):
            return texts[other], other
    for other, text in sorted(texts.items()):
        if text:
            return text, other
    return "", lang


@dataclass(frozen=True)
class TaxonomyEntry:
    id: str
    label: Mapping[str, str]
    icon: str = ""
    description: Mapping[str, str] = field(default_factory=dict)

    def label_in(self, lang: str) -> str:
        return localize(self.label, lang)[0] or self.id


@dataclass(frozen=True)
class Taxonomy:
    types: dict[str, TaxonomyEntry]
    themes: dict[str, TaxonomyEntry]
    strands: dict[str, TaxonomyEntry]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Taxonomy":
        def entries(kind: str) -> dict[str, TaxonomyEntry]:
            return {
                item["id"]: TaxonomyEntry(item["id"], item.get("label", {}), item.get("icon", ""),
                                          item.get("description", {}))
                for item in data.get(kind, [])
            }
        return cls(entries("types"), entries("themes"), entries("strands"))


@dataclass(frozen=True, slots=True)
class FileEntry:
    name: str
    sha256: str
    size: int
    media_type: str
    language: str = ""
    duration: int | None = None

    @property
    def kind(self) -> str:
        """``audio``, ``video``, ``image``, ``pdf``, ``text`` or ``file``: what a page can show."""
        major = self.media_type.split("/", 1)[0]
        if major in ("audio", "video", "image"):
            return major
        if self.media_type == "application/pdf":
            return "pdf"
        if major == "text":
            return "text"
        return "file"


class RecordFile:
    """The full records of a catalog, read from the serving file only when a page needs them.

    Keeping every title, summary and description of 10,000 resources in Python strings would
    take tens of MB on a Pi with little memory; a record is instead read with ``pread`` (from
    the page cache, in microseconds) and parsed, with a small cache of recent ones. The file
    descriptor stays open, so a catalog that was replaced keeps reading its own file.
    """

    def __init__(self, path: Path, cache_size: int = 256):
        self._fd = os.open(path, os.O_RDONLY)
        self._read = lru_cache(maxsize=cache_size)(self._load)

    def _load(self, offset: int, length: int) -> dict[str, Any]:
        return json.loads(os.pread(self._fd, length, offset))

    def get(self, offset: int, length: int) -> dict[str, Any]:
        return self._read(offset, length)

    def __del__(self):
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass


_intern = sys.intern


class Resource:
    """One library resource.

    What filters, sorting and listings need is kept in memory; texts (title, summary,
    description, publisher...) are read from the record file on demand. Texts are
    ``{language: text}`` dicts; use ``text(field, lang)`` for the reader's language.
    """

    __slots__ = ("number", "id", "type", "themes", "strand", "languages", "added", "files",
                 "thumbnail", "demo", "_records", "_offset", "_length")

    def __init__(self, number: int, record: Mapping[str, Any], records: RecordFile | None = None,
                 offset: int = 0, length: int = 0):
        self.number = number
        self.id: str = record["id"]
        self.type: str = _intern(record["type"])
        self.themes: tuple[str, ...] = tuple(_intern(t) for t in record.get("themes", ()))
        self.strand: str = _intern(record.get("strand", ""))
        self.languages: tuple[str, ...] = tuple(_intern(code) for code in record.get("languages", ()))
        self.added: str = record.get("added", "")
        self.files: tuple[FileEntry, ...] = tuple(
            FileEntry(f["name"], f["sha256"], int(f["size"]), _intern(f["media_type"]),
                      f.get("language", ""), f.get("duration"))
            for f in record.get("files", ()))
        self.thumbnail: str = record.get("thumbnail") or ""
        self.demo: bool = bool(record.get("demo", False))
        self._records = records
        self._offset = offset
        self._length = length
        if records is None:  # built from a record in memory (tests, tools): keep it
            self._records = _Inline(record)

    @property
    def record(self) -> Mapping[str, Any]:
        return self._records.get(self._offset, self._length)

    title = property(lambda self: self.record["title"])
    summary = property(lambda self: self.record.get("summary") or {})
    description = property(lambda self: self.record.get("description") or {})
    publisher = property(lambda self: self.record.get("publisher", ""))
    region = property(lambda self: self.record.get("region", ""))
    countries = property(lambda self: tuple(self.record.get("countries", ())))
    year = property(lambda self: self.record.get("year"))
    licence = property(lambda self: self.record.get("licence", ""))
    tags = property(lambda self: tuple(self.record.get("tags", ())))
    link = property(lambda self: self.record.get("link", ""))

    def text(self, field_name: str, lang: str) -> tuple[str, str]:
        return localize(getattr(self, field_name), lang)

    @staticmethod
    def search_fields(record: Mapping[str, Any]) -> dict[str, list[str]]:
        return {
            "title": list(record["title"].values()),
            "summary": list((record.get("summary") or {}).values()),
            "description": list((record.get("description") or {}).values()),
            "publisher": [record.get("publisher", "")],
            "tags": list(record.get("tags", ())),
        }

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


class _Inline:
    def __init__(self, record: Mapping[str, Any]):
        self._record = record

    def get(self, offset: int, length: int) -> Mapping[str, Any]:
        return self._record


@dataclass(frozen=True)
class Filters:
    """Browse/search filters; each is one taxonomy id (or resource language) or empty."""

    type: str = ""
    theme: str = ""
    strand: str = ""
    language: str = ""

    def active(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in FILTER_NAMES if getattr(self, name)}


@dataclass(frozen=True)
class Page:
    items: list[Resource]
    total: int
    page: int
    pages: int


class Catalog:
    """The whole library, with indexes for filters and search."""

    def __init__(self, library: Mapping[str, Any], taxonomy: Taxonomy,
                 records: Iterable[Mapping[str, Any]] = (), content_hash: str = "", *,
                 resources: Iterable[tuple[Resource, Mapping[str, Any]]] | None = None):
        """Build from ``records`` (dicts in memory) or from ``resources``: pairs of a Resource
        and its record, streamed once (the record is used for the search index, then dropped)."""
        self.library = dict(library)
        self.taxonomy = taxonomy
        self.resources: list[Resource] = []
        if resources is None:
            resources = ((Resource(n, record), record) for n, record in enumerate(records))

        def documents():
            for resource, record in resources:
                self.resources.append(resource)
                yield resource.number, Resource.search_fields(record)

        self._index = SearchIndex(documents())
        self.by_id = {r.id: r for r in self.resources}
        self.files_by_sha: dict[str, FileEntry] = {}
        for resource in self.resources:
            for entry in resource.files:
                self.files_by_sha.setdefault(entry.sha256, entry)
        # Newest first, then by id: the order of browse pages and "newest additions".
        self._order = [r.number for r in sorted(self.resources, key=lambda r: r.id)]
        self._order.sort(key=lambda n: self.resources[n].added, reverse=True)
        self._rank = {number: position for position, number in enumerate(self._order)}
        self._facets: dict[str, dict[str, frozenset[int]]] = {name: {} for name in FILTER_NAMES}
        groups: dict[str, dict[str, set[int]]] = {name: {} for name in FILTER_NAMES}
        for r in self.resources:
            groups["type"].setdefault(r.type, set()).add(r.number)
            groups["strand"].setdefault(r.strand, set()).add(r.number)
            for theme in r.themes:
                groups["theme"].setdefault(theme, set()).add(r.number)
            for language in r.languages:
                groups["language"].setdefault(language, set()).add(r.number)
        for name, values in groups.items():
            self._facets[name] = {value: frozenset(numbers) for value, numbers in values.items()}
        # Identifies this exact catalog: page caches and ETags are keyed on it.
        self.version = (f"{self.library.get('id', 'none')}-{self.library.get('version', 0)}"
                        f"-{content_hash[:12]}")

    # -- lookups -----------------------------------------------------------------------------
    def get(self, resource_id: str) -> Resource:
        resource = self.by_id.get(resource_id)
        if resource is None:
            raise NotFound(N_("There is no resource “%(id)s” in this library."), id=resource_id[:80])
        return resource

    def count(self, facet: str, value: str) -> int:
        return len(self._facets[facet].get(value, ()))

    def languages(self) -> list[str]:
        """Languages resources are available in, most common first."""
        facet = self._facets["language"]
        return sorted(facet, key=lambda lang: (-len(facet[lang]), lang))

    def newest(self, limit: int) -> list[Resource]:
        return [self.resources[n] for n in self._order[:limit]]

    # -- filters -----------------------------------------------------------------------------
    def parse_filters(self, params: Mapping[str, str]) -> Filters:
        """Filters from query parameters; an unknown value is a ``BadRequest``."""
        known = {
            "type": self.taxonomy.types, "theme": self.taxonomy.themes,
            "strand": self.taxonomy.strands, "language": self._facets["language"],
        }
        values = {}
        for name in FILTER_NAMES:
            value = (params.get(name) or "").strip()
            if value and value not in known[name]:
                raise BadRequest(N_("Nothing in this library is filed under “%(value)s”."),
                                 value=value[:40])
            values[name] = value
        return Filters(**values)

    def _matching(self, filters: Filters) -> frozenset[int] | None:
        selected: frozenset[int] | None = None
        for name, value in filters.active().items():
            numbers = self._facets[name].get(value, frozenset())
            selected = numbers if selected is None else selected & numbers
        return selected

    # -- browse and search -------------------------------------------------------------------
    def browse(self, filters: Filters, page: int, page_size: int) -> Page:
        selected = self._matching(filters)
        if selected is None:
            numbers = self._order
        else:
            numbers = sorted(selected, key=self._rank.__getitem__)
        return self._page(numbers, page, page_size)

    def search(self, query: str, filters: Filters, page: int, page_size: int) -> Page:
        numbers = self._index.search(query, within=self._matching(filters))
        return self._page(numbers, page, page_size)

    def _page(self, numbers: list[int], page: int, page_size: int) -> Page:
        total = len(numbers)
        pages = max(1, -(-total // page_size))
        if page > pages:
            raise NotFound(N_("Page %(page)s does not exist; the last page is %(pages)s."),
                           page=page, pages=pages)
        start = (page - 1) * page_size
        return Page([self.resources[n] for n in numbers[start:start + page_size]], total, page, pages)


def empty_catalog() -> Catalog:
    return Catalog({"id": "none", "version": 0}, Taxonomy({}, {}, {}), [])


# -- the serving file ---------------------------------------------------------------------------
# The installed catalog is a TinyDB file (catalog.json). Parsing it whole costs several times
# its size in memory, which a long-running server on a Pi would keep. So the server reads a
# derived "serving file" instead: a header line, then one JSON line per resource, streamed once
# at start-up and then read record by record. It is made from catalog.json by a short-lived
# process, and carries catalog.json's identity (inode, mtime, size) so a stale one is remade.

def serving_path(catalog_path: Path) -> Path:
    return Path(catalog_path).with_name(Path(catalog_path).name + ".serving")


def _stamp(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"


def write_serving_file(catalog_path: Path) -> Path:
    """Make the serving file for ``catalog_path`` (atomically: temp, fsync, rename)."""
    catalog_path = Path(catalog_path)
    out = serving_path(catalog_path)
    for _attempt in range(5):
        stamp = _stamp(catalog_path)
        store = Store(catalog_path)
        try:
            header = {
                "stamp": stamp,
                "library": store.get_meta("library") or {"id": "none", "version": 0},
                "taxonomy": store.get_meta("taxonomy") or {},
                "content_hash": store.get_meta("content_hash") or "",
            }
            records = store.all("resources")
        finally:
            store.close()
        if _stamp(catalog_path) == stamp:
            break  # not replaced while we read it
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(json.dumps(header, ensure_ascii=False).encode() + b"\n")
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, out)
    fsync_directory(out.parent)
    return out


def _serving_file_is_current(catalog_path: Path) -> bool:
    out = serving_path(catalog_path)
    try:
        with open(out, "rb") as handle:
            header = json.loads(handle.readline(1 << 22))
        return header.get("stamp") == _stamp(catalog_path)
    except (OSError, ValueError, AttributeError):
        return False


def ensure_serving_file(catalog_path: Path, *, in_subprocess: bool) -> Path:
    """The up-to-date serving file, made now if needed (in a child process if asked, so the
    server's own memory never holds the whole parsed catalog)."""
    if not _serving_file_is_current(catalog_path):
        if in_subprocess:
            done = subprocess.run([sys.executable, "-m", "hotspot.catalog", str(catalog_path)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "unknown error"
                error = StoreCorrupt if done.returncode == 3 else CatalogError
                raise error(message.removeprefix("hotspot: "))
        else:
            write_serving_file(catalog_path)
    return serving_path(catalog_path)


def load_catalog(path: Path, *, in_subprocess: bool = False) -> Catalog:
    """Load the installed catalog for serving.

    A missing file gives an empty library; a corrupt one raises ``StoreCorrupt``.
    """
    path = Path(path)
    if not path.exists():
        return empty_catalog()
    serving = ensure_serving_file(path, in_subprocess=in_subprocess)
    records = RecordFile(serving)
    try:
        with open(serving, "rb") as handle:
            header = json.loads(handle.readline())

            def resources():
                offset = handle.tell()
                for number, line in enumerate(handle):
                    record = json.loads(line)
                    yield Resource(number, record, records, offset, len(line)), record
                    offset += len(line)

            return Catalog(header["library"], Taxonomy.from_data(header["taxonomy"]),
                           content_hash=header["content_hash"], resources=resources())
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"The catalog in {path} is damaged ({exc!r}); reinstall the library.") from None


def _main(argv: list[str]) -> int:
    """``python -m hotspot.catalog CATALOG_JSON``: make its serving file (used by the server)."""
    try:
        write_serving_file(Path(argv[0]))
    except StoreCorrupt as exc:
        print(f"hotspot: {exc.message}", file=sys.stderr)
        return 3
    except (HotspotError, OSError) as exc:
        print(f"hotspot: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
