"""UI languages: choosing one for a request, translating UI text, formatting numbers.

UI text goes through gettext catalogs kept as ``.po`` files in ``hotspot/locale``; they are
read with Babel at start-up (no compile step to forget). Extraction uses Babel too:
``pybabel extract -F hotspot/locale/babel.cfg -o hotspot/locale/hotspot.pot hotspot``
(templates are read by ``extract_templates`` below).

    >>> ui = Translations.load()
    >>> lang = choose_language(cookie="fr", accept_language="es;q=0.8", default="en")
    >>> ui.gettext(lang, "Search")
    'Rechercher'
"""

from __future__ import annotations

import gettext as _gettext
import io
import re
from datetime import date
from pathlib import Path
from typing import Iterator

from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

from .config import UI_LANGUAGES

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "hotspot"
LANGUAGE_NAMES = {"en": "English", "es": "Español", "fr": "Français", "pt": "Português"}
_ACCEPT_ITEM = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*$")


def po_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


class Translations:
    """gettext for every UI language, loaded once."""

    def __init__(self, catalogs: dict[str, _gettext.NullTranslations]):
        self._catalogs = catalogs

    @classmethod
    def load(cls, locale_dir: Path = LOCALE_DIR) -> "Translations":
        catalogs: dict[str, _gettext.NullTranslations] = {"en": _gettext.NullTranslations()}
        for lang in UI_LANGUAGES:
            path = locale_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
            if lang == "en" or not path.exists():
                continue
            with open(path, "rb") as handle:
                catalog = read_po(handle, locale=lang)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            catalogs[lang] = _gettext.GNUTranslations(buffer)
        return cls(catalogs)

    def _catalog(self, lang: str) -> _gettext.NullTranslations:
        return self._catalogs.get(lang) or self._catalogs["en"]

    def gettext(self, lang: str, message: str) -> str:
        return self._catalog(lang).gettext(message)

    def ngettext(self, lang: str, singular: str, plural: str, n: int) -> str:
        return self._catalog(lang).ngettext(singular, plural, n)


def parse_accept_language(header: str | None) -> list[str]:
    """Primary language codes from an Accept-Language header, best first (q=0 dropped)."""
    if not header or len(header) > 500:
        return []
    weighted = []
    for position, item in enumerate(header.split(",")[:20]):
        match = _ACCEPT_ITEM.match(item)
        if not match:
            continue
        try:
            quality = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if quality > 0:
            weighted.append((-quality, position, match.group(1).lower()))
    return [code for _q, _p, code in sorted(weighted)]


def choose_language(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The visible selector (its cookie) first, then the phone's languages, then the default."""
    if cookie in UI_LANGUAGES:
        return cookie  # type: ignore[return-value]
    for code in parse_accept_language(accept_language):
        if code in UI_LANGUAGES:
            return code
    return default


def format_size(size: int, lang: str) -> str:
    """``1.5 MB`` / ``1,5 MB``: decimal units, whole kB, one decimal from MB up."""
    if size < 1000:
        return f"{size} B"
    for unit, scale, decimals in (("kB", 1000, 0), ("MB", 1000**2, 1), ("GB", 1000**3, 1)):
        # Move up a unit when rounding would print 1000 of this one (999,999 B is 1 MB).
        if round(size / scale, decimals) < 1000 or unit == "GB":
            break
    pattern = "#,##0" if decimals == 0 else "#,##0.#"
    return f"{format_decimal(size / scale, format=pattern, locale=lang)} {unit}"


def format_duration(seconds: int) -> str:
    """``45 s``, ``3 min``, ``1 h 05``: symbols, the same in every UI language."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d}"


def format_day(iso_day: str, lang: str) -> str:
    try:
        return format_date(date.fromisoformat(iso_day), format="medium", locale=lang)
    except ValueError:
        return iso_day


# -- extraction ---------------------------------------------------------------------------
_TEMPLATE_CALL = re.compile(
    r"""\b(_|N_)\(\s*(?P<q>["'])(?P<msg>(?:\\.|(?!(?P=q)).)*)(?P=q)\s*[,)]"""
    r"""|\bngettext\(\s*(?P<q1>["'])(?P<one>(?:\\.|(?!(?P=q1)).)*)(?P=q1)\s*,\s*"""
    r"""(?P<q2>["'])(?P<many>(?:\\.|(?!(?P=q2)).)*)(?P=q2)""", re.S)


def _unescape(text: str) -> str:
    return text.replace("\\'", "'").replace('\\"', '"').replace("\\\\", "\\")


def extract_templates(fileobj, keywords, comment_tags, options) -> Iterator[tuple]:
    """Babel extractor for bottle ``.tpl`` files: finds ``_("...")`` and ``ngettext(...)``."""
    text = fileobj.read().decode("utf-8")
    for match in _TEMPLATE_CALL.finditer(text):
        lineno = text.count("\n", 0, match.start()) + 1
        if match.group("msg") is not None:
            yield lineno, "_", _unescape(match.group("msg")), []
        else:
            yield lineno, "ngettext", (_unescape(match.group("one")), _unescape(match.group("many"))), []
