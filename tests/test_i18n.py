"""UI languages: catalogs complete and in step with the source, language choice, formatting.

Everything here reads the real files: the source is extracted with Babel exactly as
``pybabel extract -F hotspot/locale/babel.cfg`` does, and the ``.po`` files in
``hotspot/locale`` are checked against it. See docs/translating.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from hotspot.config import UI_LANGUAGES
from hotspot.i18n import (LOCALE_DIR, Translations, choose_language, format_day,
                          format_duration, format_size, parse_accept_language, po_path)

SOURCE_DIR = Path(__file__).resolve().parent.parent / "hotspot"
MAPPING_CFG = LOCALE_DIR / "babel.cfg"
POT_PATH = LOCALE_DIR / "hotspot.pot"
TRANSLATED = [lang for lang in UI_LANGUAGES if lang != "en"]
KEYWORDS = {**DEFAULT_KEYWORDS, "_": None, "N_": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"%\((\w+)\)")


def source_messages() -> dict[str | tuple[str, str], str]:
    """Every message marked in the source, as msgid (or (singular, plural)) -> where it is."""
    with open(MAPPING_CFG, encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[str | tuple[str, str], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            SOURCE_DIR, method_map, options_map, keywords=KEYWORDS):
        key = message if isinstance(message, str) else tuple(message)
        found.setdefault(key, f"{filename}:{lineno}")
    return found


def read_catalog(path: Path):
    with open(path, "rb") as handle:
        return read_po(handle)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def catalog_problems(path: Path, expected: dict) -> list[str]:
    """What is wrong with the ``.po`` at ``path`` for the messages ``expected``; [] if nothing.

    Each problem is ``"<kind>: <msgid>"``, kind one of missing, not plural, fuzzy,
    untranslated, placeholders, broken format, not in the source.
    """
    catalog = read_catalog(path)
    problems = []
    for key in sorted(expected, key=str):
        singular = key[0] if isinstance(key, tuple) else key
        message = catalog.get(singular)
        if message is None:
            problems.append(f"missing: {singular}")
            continue
        if isinstance(key, tuple) != message.pluralizable or (
                message.pluralizable and tuple(message.id) != key):
            problems.append(f"not plural: {singular}" if isinstance(key, tuple)
                            else f"plural in the catalog: {singular}")
            continue
        if message.fuzzy:
            problems.append(f"fuzzy: {singular}")
        forms = list(message.string) if message.pluralizable else [message.string]
        if message.pluralizable and len(forms) != catalog.num_plurals:
            problems.append(f"untranslated: {singular} ({len(forms)} of "
                            f"{catalog.num_plurals} plural forms)")
        if not all(form and form.strip() for form in forms):
            problems.append(f"untranslated: {singular}")
            continue
        wanted = set().union(*(placeholders(text) for text in
                               (key if isinstance(key, tuple) else [key])))
        for form in forms:
            if placeholders(form) != wanted:
                problems.append(f"placeholders: {singular} -> {form}")
            elif wanted:
                try:
                    form % {name: "x" for name in wanted}
                except (ValueError, TypeError, KeyError):
                    problems.append(f"broken format: {singular} -> {form}")
    known = {key[0] if isinstance(key, tuple) else key for key in expected}
    for message in catalog:
        singular = message.id[0] if message.pluralizable else message.id
        if singular and singular not in known:
            problems.append(f"not in the source: {singular}")
    return problems


@pytest.fixture(scope="module")
def messages() -> dict:
    return source_messages()


def test_source_has_messages(messages):
    # Guards the other tests against an extraction that silently finds nothing.
    assert len(messages) > 50
    assert "Search" in messages  # a template
    assert "Community library" in messages  # views.py, self._(...)
    assert "This file is not in the library." in messages  # N_(...) in web.py
    assert ("%(n)s resource", "%(n)s resources") in messages  # ngettext in a template


@pytest.mark.parametrize("lang", TRANSLATED)
def test_catalog_complete(lang, messages):
    assert po_path(lang).exists(), f"no catalog for {lang}: see docs/translating.md"
    assert catalog_problems(po_path(lang), messages) == []


def test_pot_up_to_date(messages):
    pot = read_catalog(POT_PATH)
    in_pot = {tuple(m.id) if m.pluralizable else m.id for m in pot if m.id}
    assert in_pot == set(messages), (
        "hotspot/locale/hotspot.pot is out of date; run the extract command in "
        "docs/translating.md. Only in the source: "
        f"{sorted(map(str, set(messages) - in_pot))}; only in the .pot: "
        f"{sorted(map(str, in_pot - set(messages)))}")


# -- the checker itself must fail on a bad catalog ----------------------------------------

def _broken_copy(tmp_path: Path, change) -> Path:
    catalog = read_catalog(po_path("es"))
    change(catalog)
    broken = tmp_path / "hotspot.po"
    with open(broken, "wb") as handle:
        write_po(handle, catalog)
    return broken


def test_checker_reports_a_missing_message(tmp_path, messages):
    broken = _broken_copy(tmp_path, lambda catalog: catalog.delete("Search"))
    assert catalog_problems(broken, messages) == ["missing: Search"]


def test_checker_reports_an_empty_or_fuzzy_translation(tmp_path, messages):
    def change(catalog):
        catalog["Home"].string = ""
        catalog["Download"].flags.add("fuzzy")
        catalog["%(n)s resource"].string = ("%(n)s recurso", "")
    problems = catalog_problems(_broken_copy(tmp_path, change), messages)
    assert sorted(problems) == ["fuzzy: Download", "untranslated: %(n)s resource",
                                "untranslated: Home"]


def test_checker_reports_wrong_placeholders(tmp_path, messages):
    def change(catalog):
        catalog["Page %(page)s of %(pages)s"].string = "Página %(pagina)s de %(pages)s"
        catalog["The search text is too long (at most %(max)s characters)."].string = (
            "Texto demasiado largo (100 %, máximo %(max)s caracteres).")  # a stray %
    problems = catalog_problems(_broken_copy(tmp_path, change), messages)
    assert [p.split(" -> ")[0] for p in sorted(problems)] == [
        "broken format: The search text is too long (at most %(max)s characters).",
        "placeholders: Page %(page)s of %(pages)s"]


def test_checker_reports_a_message_gone_from_the_source(tmp_path, messages):
    def change(catalog):
        catalog.add("An old button", "Un botón viejo")
    assert catalog_problems(_broken_copy(tmp_path, change), messages) == [
        "not in the source: An old button"]


# -- loading ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ui() -> Translations:
    return Translations.load()


@pytest.mark.parametrize("lang", TRANSLATED)
def test_loaded_translations(ui, lang):
    assert ui.gettext(lang, "Search") not in ("", "Search")
    assert ui.gettext(lang, "Home") not in ("", "Home")


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_catalog_entry_survives_loading(ui, lang):
    # .po -> Babel -> .mo in memory -> gettext: nothing is lost on the way.
    for message in read_catalog(po_path(lang)):
        if not message.id:
            continue
        if message.pluralizable:
            assert ui.ngettext(lang, *message.id, 1) in message.string
        else:
            assert ui.gettext(lang, message.id) == message.string


def test_known_words(ui):
    assert ui.gettext("fr", "Search") == "Rechercher"  # the example in hotspot/i18n.py
    assert ui.gettext("es", "Strand") == "Línea"
    assert ui.gettext("fr", "Strand") == "Volet"
    assert ui.gettext("pt", "Strand") == "Eixo"


def test_english_and_unknown_languages_fall_back_to_the_source(ui):
    assert ui.gettext("en", "Search") == "Search"
    assert ui.gettext("xx", "Search") == "Search"
    assert ui.gettext("es", "A text that is in no catalog") == "A text that is in no catalog"


def test_missing_catalog_files_fall_back_to_english(tmp_path):
    ui = Translations.load(tmp_path)
    assert ui.gettext("es", "Search") == "Search"


@pytest.mark.parametrize("lang, counts", [
    # French uses the singular for 0; Spanish and Brazilian Portuguese the plural.
    ("es", {0: "%(n)s recursos", 1: "%(n)s recurso", 2: "%(n)s recursos", 21: "%(n)s recursos"}),
    ("fr", {0: "%(n)s ressource", 1: "%(n)s ressource", 2: "%(n)s ressources"}),
    ("pt", {0: "%(n)s recursos", 1: "%(n)s recurso", 2: "%(n)s recursos"}),
    ("en", {0: "%(n)s resources", 1: "%(n)s resource", 2: "%(n)s resources"}),
])
def test_plural_forms(ui, lang, counts):
    for n, expected in counts.items():
        assert ui.ngettext(lang, "%(n)s resource", "%(n)s resources", n) == expected


# -- choosing a language ------------------------------------------------------------------

def test_cookie_wins_over_the_phone():
    assert choose_language("pt", "fr,es;q=0.9", "en") == "pt"


def test_unknown_cookie_is_ignored():
    assert choose_language("xx", "fr", "en") == "fr"
    assert choose_language("", None, "es") == "es"


def test_q_values_order_the_languages():
    assert parse_accept_language("en;q=0.5, fr;q=0.9, es") == ["es", "fr", "en"]
    assert choose_language(None, "en;q=0.5, fr;q=0.9", "es") == "fr"


def test_equal_q_values_keep_the_header_order():
    assert parse_accept_language("fr, es") == ["fr", "es"]


def test_region_is_dropped():
    assert parse_accept_language("pt-BR") == ["pt"]
    assert choose_language(None, "pt-BR,pt;q=0.9,en;q=0.5", "en") == "pt"
    assert choose_language(None, "es-419", "en") == "es"


def test_languages_we_do_not_have_are_skipped():
    assert choose_language(None, "de-DE, sw;q=0.9, fr;q=0.5", "en") == "fr"


def test_q_zero_means_not_wanted():
    assert parse_accept_language("fr;q=0, es") == ["es"]
    assert choose_language(None, "fr;q=0", "en") == "en"


@pytest.mark.parametrize("header", [
    None, "", "*", "!!!", ";q=0.5", "fr;q=abc", "fr;q=1.2.3", "12345",
    "fr-" + "x" * 20, "fr," * 300,  # absurdly long: not even its first item is used
])
def test_wildcard_garbage_and_long_headers_give_the_default(header):
    assert choose_language(None, header, "es") == "es"


def test_long_header_is_refused_whole():
    assert parse_accept_language("fr, " + "x" * 600) == []


# -- formatting ---------------------------------------------------------------------------

@pytest.mark.parametrize("lang, expected", [
    ("en", "1.5 MB"), ("es", "1,5 MB"), ("fr", "1,5 MB"), ("pt", "1,5 MB"),
])
def test_format_size_uses_the_decimal_comma(lang, expected):
    assert format_size(1_500_000, lang) == expected


@pytest.mark.parametrize("size, expected", [
    (0, "0 B"), (999, "999 B"), (1000, "1 kB"), (12_345, "12 kB"),
    (2_000_000, "2 MB"), (1_234_567_890, "1.2 GB"),
])
def test_format_size_units(size, expected):
    assert format_size(size, "en") == expected


def test_format_size_at_a_unit_boundary():
    assert format_size(999_999, "en") == "1 MB"
    assert format_size(999_499, "en") == "999 kB"
    assert format_size(999_960_000, "en") == "1 GB"


@pytest.mark.parametrize("seconds, expected", [
    (0, "0 s"), (45, "45 s"), (59, "59 s"), (60, "1 min"), (200, "3 min"),
    (3599, "1 h 00"), (3600, "1 h 00"), (3900, "1 h 05"), (7260, "2 h 01"),
])
def test_format_duration(seconds, expected):
    assert format_duration(seconds) == expected


def test_format_day():
    assert format_day("2024-03-05", "en") == "Mar 5, 2024"
    assert format_day("2024-03-05", "fr") == "5 mars 2024"
    for lang in ("es", "pt"):
        day = format_day("2024-03-05", lang)
        assert day.startswith("5 ") and "mar" in day and day.endswith("2024"), day


@pytest.mark.parametrize("bad", ["2024-02-30", "yesterday", ""])
def test_format_day_keeps_what_it_cannot_read(bad):
    assert format_day(bad, "fr") == bad
