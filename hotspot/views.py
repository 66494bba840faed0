"""Rendering the library's pages: templates plus the helpers they use.

Nothing here knows about HTTP: a view takes the catalog, the language and what the request
asked for, and returns HTML text. ``hotspot.web`` adds caching, compression and headers.

    >>> views = Views(Translations.load())
    >>> html = views.home(catalog, "es")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlencode

from bottle import SimpleTemplate

from . import icons
from .catalog import Catalog, Filters, Page, Resource, TaxonomyEntry, localize
from .config import UI_LANGUAGES
from .i18n import LANGUAGE_NAMES, Translations, format_day, format_duration, format_size

TEMPLATE_DIR = Path(__file__).parent / "templates"
NEWEST_COUNT = 6


def browse_url(filters: Filters, page: int = 1, query: str | None = None) -> str:
    """``/browse?...`` or ``/search?q=...``, with only the parameters that are set."""
    params: list[tuple[str, str]] = []
    if query is not None:
        params.append(("q", query))
    params.extend(filters.active().items())
    if page > 1:
        params.append(("page", str(page)))
    base = "/search" if query is not None else "/browse"
    return f"{base}?{urlencode(params)}" if params else base


def media_url(sha256: str, name: str, download: bool = False) -> str:
    url = f"/media/{sha256}/{quote(name, safe='')}"
    return url + "?download=1" if download else url


class Context:
    """What every template gets as ``v``: the language, gettext and formatting helpers."""

    def __init__(self, translations: Translations, lang: str, catalog: Catalog, path: str,
                 site: "Site"):
        self.lang = lang
        self.catalog = catalog
        self.path = path
        self.next_param = quote(path, safe="")
        self.css_url = site.css_url
        self.icon_url = site.icon_url
        self.max_query = site.max_query
        self._t = translations
        self.icon = icons.svg
        self.file_icon = icons.for_file
        self.media_url = media_url
        self.browse_url = browse_url
        self.ui_languages = [(code, LANGUAGE_NAMES[code]) for code in UI_LANGUAGES]

    def _(self, message: str) -> str:
        return self._t.gettext(self.lang, message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._t.ngettext(self.lang, singular, plural, n) % {"n": n}

    def text(self, resource: Resource, field: str) -> tuple[str, str]:
        """(text, its language): the page marks text shown in another language with lang=."""
        return resource.text(field, self.lang)

    def label(self, entry: TaxonomyEntry | None) -> str:
        return entry.label_in(self.lang) if entry else ""

    def type_of(self, resource: Resource) -> TaxonomyEntry | None:
        return self.catalog.taxonomy.types.get(resource.type)

    def theme(self, theme_id: str) -> TaxonomyEntry | None:
        return self.catalog.taxonomy.themes.get(theme_id)

    def strand(self, strand_id: str) -> TaxonomyEntry | None:
        return self.catalog.taxonomy.strands.get(strand_id)

    def size(self, n: int) -> str:
        return format_size(n, self.lang)

    def duration(self, seconds: int | None) -> str:
        return format_duration(seconds) if seconds else ""

    def day(self, iso_day: str) -> str:
        return format_day(iso_day, self.lang)

    def language_name(self, code: str) -> str:
        return LANGUAGE_NAMES.get(code, code)

    def lang_attr(self, text_lang: str) -> str:
        """` lang="xx"` when text is in another language than the page, else nothing."""
        return f' lang="{text_lang}"' if text_lang != self.lang else ""

    def short(self, text: str, limit: int = 160) -> str:
        return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + "…"

    def paragraphs(self, text: str) -> list[str]:
        return [p.strip() for p in text.split("\n\n") if p.strip()]

    def file_summary(self, entry) -> str:
        """What the person will get, before downloading: "Video, 2 min, 1.2 MB"."""
        kind_names = {"audio": self._("Audio"), "video": self._("Video"), "image": self._("Image"),
                      "pdf": self._("PDF document"), "text": self._("Text"), "file": self._("File")}
        parts = [kind_names[entry.kind]]
        if entry.duration:
            parts.append(format_duration(entry.duration))
        parts.append(self.size(entry.size))
        return ", ".join(parts)

    def library_title(self) -> str:
        return localize(self.catalog.library.get("title"), self.lang)[0] or self._("Community library")

    def localize(self, texts: Mapping[str, str] | None) -> tuple[str, str]:
        return localize(texts, self.lang)

    @staticmethod
    def filters(**values: str) -> Filters:
        return Filters(**values)

    def filter_choices(self) -> list[tuple[str, str, list[tuple[str, str]]]]:
        """(parameter, label, [(value, text)]) for each filter of the browse form."""
        taxonomy = self.catalog.taxonomy
        def entries(group: Mapping[str, TaxonomyEntry]) -> list[tuple[str, str]]:
            return [(key, entry.label_in(self.lang)) for key, entry in group.items()]
        return [
            ("type", self._("Type"), entries(taxonomy.types)),
            ("theme", self._("Theme"), entries(taxonomy.themes)),
            ("strand", self._("Strand"), entries(taxonomy.strands)),
            ("language", self._("Language of the resource"),
             [(code, self.language_name(code)) for code in self.catalog.languages()]),
        ]

    def error_title(self, status: int) -> str:
        return {
            400: self._("We could not understand this request"),
            404: self._("This page is not here"),
            405: self._("This action is not possible here"),
            413: self._("This file or form is too large"),
            415: self._("This kind of file cannot be sent here"),
            429: self._("Please wait a little"),
            503: self._("Not available right now"),
            507: self._("The hotspot's storage is full"),
            416: self._("This part of the file does not exist"),
        }.get(status, self._("Something went wrong"))

    def error_advice(self, status: int) -> str:
        if status >= 500:
            return self._("The problem is on the hotspot, not on your phone. Try again in a moment.")
        return self._("Check the address, or start again from the home page.")


class Site:
    """Site-wide values the pages need (static file URLs carry a content hash)."""

    def __init__(self, css_url: str = "/static/site.css", icon_url: str = "/static/icon.svg",
                 max_query: int = 200):
        self.css_url = css_url
        self.icon_url = icon_url
        self.max_query = max_query


class Views:
    """Renders each page to HTML text."""

    def __init__(self, translations: Translations, site: Site | None = None,
                 template_dir: Path = TEMPLATE_DIR):
        self.translations = translations
        self.site = site or Site()
        self._lookup = [str(template_dir)]
        self._templates: dict[str, SimpleTemplate] = {}

    def render(self, name: str, catalog: Catalog, lang: str, path: str, **values: Any) -> str:
        template = self._templates.get(name)
        if template is None:
            template = SimpleTemplate(name=name, lookup=self._lookup)
            self._templates[name] = template
        context = Context(self.translations, lang, catalog, path, self.site)
        return template.render(v=context, _=context._, **values)

    def home(self, catalog: Catalog, lang: str) -> str:
        return self.render("home", catalog, lang, "/", newest=catalog.newest(NEWEST_COUNT))

    def listing(self, catalog: Catalog, lang: str, path: str, page: Page, filters: Filters,
                query: str | None) -> str:
        return self.render("listing", catalog, lang, path, page=page, filters=filters, query=query)

    def resource(self, catalog: Catalog, lang: str, path: str, resource: Resource) -> str:
        return self.render("resource", catalog, lang, path, r=resource)

    def about(self, catalog: Catalog, lang: str) -> str:
        return self.render("about", catalog, lang, "/about")

    def contribute(self, catalog: Catalog, lang: str) -> str:
        return self.render("contribute", catalog, lang, "/contribute")

    def form(self, catalog: Catalog, lang: str, path: str, kind: str, *, token: str,
             resource: Resource | None, refusal: str, limits) -> str:
        return self.render(f"form_{kind}", catalog, lang, path, kind=kind, token=token,
                           resource=resource, refusal=refusal, limits=limits)

    def thanks(self, catalog: Catalog, lang: str, path: str, code: str) -> str:
        return self.render("thanks", catalog, lang, path, code=code)

    def error(self, catalog: Catalog, lang: str, path: str, status: int, detail: str) -> str:
        return self.render("error", catalog, lang, path, status=status, detail=detail)

