"""The library's catalog in memory: resources, taxonomy, filters, browse and search.

The catalog is read once from its store file (``<data_dir>/catalog.json``) and then served from
memory; installing a new catalog replaces that file atomically and the server reloads it.
Everything here is plain Python: the web layer and the CLI call the same functions.

    >>> catalog = load_catalog(data_dir / "catalog.json")
    >>> page = catalog.browse(Filters(theme="patrols"), page=1, page_size=20)
    >>> [r.id for r in page.items]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import N_, BadRequest, CatalogError, NotFound
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


@dataclass(frozen=True)
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


class Resource:
    """One library resource. Texts stay as ``{language: text}`` dicts; use ``text(field, lang)``."""

    __slots__ = ("number", "id", "title", "summary", "description", "type", "themes", "strand",
                 "languages", "region", "countries", "publisher", "year", "licence", "tags",
                 "added", "files", "thumbnail", "link", "demo")

    def __init__(self, number: int, record: Mapping[str, Any]):
        self.number = number
        self.id: str = record["id"]
        self.title: Mapping[str, str] = record["title"]
        self.summary: Mapping[str, str] = record.get("summary") or {}
        self.description: Mapping[str, str] = record.get("description") or {}
        self.type: str = record["type"]
        self.themes: tuple[str, ...] = tuple(record.get("themes", ()))
        self.strand: str = record.get("strand", "")
        self.languages: tuple[str, ...] = tuple(record.get("languages", ()))
        self.region: str = record.get("region", "")
        self.countries: tuple[str, ...] = tuple(record.get("countries", ()))
        self.publisher: str = record.get("publisher", "")
        self.year: int | None = record.get("year")
        self.licence: str = record.get("licence", "")
        self.tags: tuple[str, ...] = tuple(record.get("tags", ()))
        self.added: str = record.get("added", "")
        self.files: tuple[FileEntry, ...] = tuple(
            FileEntry(f["name"], f["sha256"], int(f["size"]), f["media_type"],
                      f.get("language", ""), f.get("duration"))
            for f in record.get("files", ()))
        self.thumbnail: str = record.get("thumbnail", "")
        self.link: str = record.get("link", "")
        self.demo: bool = bool(record.get("demo", False))

    def text(self, field_name: str, lang: str) -> tuple[str, str]:
        return localize(getattr(self, field_name), lang)

    def search_fields(self) -> dict[str, list[str]]:
        return {
            "title": list(self.title.values()),
            "summary": list(self.summary.values()),
            "description": list(self.description.values()),
            "publisher": [self.publisher],
            "tags": list(self.tags),
        }

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


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
    """The whole library in memory, with indexes for filters and search."""

    def __init__(self, library: Mapping[str, Any], taxonomy: Taxonomy,
                 records: Iterable[Mapping[str, Any]], content_hash: str = ""):
        self.library = dict(library)
        self.taxonomy = taxonomy
        self.resources: list[Resource] = [Resource(n, r) for n, r in enumerate(records)]
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
        self._index = SearchIndex((r.number, r.search_fields()) for r in self.resources)
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


def load_catalog(path: Path) -> Catalog:
    """Read the catalog store file once and build the in-memory catalog.

    A missing file gives an empty library; a corrupt one raises ``StoreCorrupt``.
    """
    if not Path(path).exists():
        return empty_catalog()
    store = Store(path)
    try:
        library = store.get_meta("library") or {"id": "none", "version": 0}
        taxonomy = Taxonomy.from_data(store.get_meta("taxonomy") or {})
        records = store.all("resources")
        content_hash = store.get_meta("content_hash") or ""
    finally:
        store.close()
    try:
        return Catalog(library, taxonomy, records, content_hash)
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogError(f"The catalog in {path} is damaged ({exc!r}); reinstall the library.") from None
