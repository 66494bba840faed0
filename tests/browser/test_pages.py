"""Every page, every UI language, on a phone: size budgets, origin, axe-core, keyboard, 200 % text.

The English tour runs on the throttled link and gives the table its LCP and load times; the
other languages are measured for size (bytes on the wire do not depend on the link) on an
unthrottled link to keep the suite short. Failures are collected per page so that one run
shows all of them and the budget table is always complete.
"""

from __future__ import annotations

import datetime
import re

import pytest

from .budget_table import HOME_KB, HOME_MS, PAGE_KB
from .conftest import CARETAKER_PASSWORD
from .phone import HERE

REPO = HERE.parent.parent

PAGES = [
    ("home", "/"),
    ("browse", "/browse"),
    ("browse, theme + type", "/browse?theme=patrols&type=guides-manuals"),
    ("search", "/search?q=securite"),
    ("resource: PDF", "/r/documenting-evidence-safely"),
    ("resource: audio", "/r/reporting-an-incident-audio"),
    ("resource: video", "/r/mapping-with-gps-video"),
    ("resource: web link", "/r/signal-messenger"),
    ("about", "/about"),
    ("share menu", "/contribute"),
    ("report form", "/contribute/report"),
    ("suggestion form", "/contribute/suggestion"),
    ("message form", "/contribute/message"),
    ("feedback form", "/r/mapping-with-gps-video/feedback"),
    ("not found", "/r/no-such-resource"),
    ("caretaker login", "/admin/login"),
    ("caretaker status", "/admin"),
    ("invite poster", "/admin/poster"),
]


def log_in(phone) -> None:
    phone.visit("/admin/login")
    phone.page.fill("#password", CARETAKER_PASSWORD)
    phone.click_and_measure(phone.page.locator("form.login button[type=submit]"))
    assert re.search(r"/admin/?$", phone.page.url), phone.page.url


@pytest.mark.parametrize("lang", ["en", "es", "fr", "pt"])
def test_every_page(phone_factory, chromium, budgets, lang):
    slow = lang == "en"
    phone = phone_factory(lang=lang, slow=slow, name=f"tour-{lang}")
    problems: list[str] = []
    for name, path in PAGES:
        if path == "/admin":
            log_in(phone)
        visit = phone.visit(path, cold=True)
        budget = HOME_KB if path == "/" else PAGE_KB
        budgets.add(page=name, path=path, lang=lang, transfer_kb=round(visit.transfer_kb, 1),
                    budget_kb=budget, lcp_ms=visit.lcp_ms, load_ms=visit.load_ms,
                    requests=len(visit.requests), browser=chromium.version,
                    date=datetime.date.today().isoformat())
        where = f"{lang} {name} ({path})"
        assert phone.page.evaluate("document.documentElement.lang") == lang, where
        if visit.transfer_kb > budget:
            problems.append(f"{where}: {visit.transfer_kb:.1f} KB transferred, budget {budget} KB: "
                            + ", ".join(f"{r.url} {r.encoded_bytes}" for r in visit.page_requests))
        if slow and path == "/" and (visit.lcp_ms > HOME_MS or visit.load_ms > HOME_MS or not visit.lcp_ms):
            problems.append(f"{where}: LCP {visit.lcp_ms} ms, load {visit.load_ms} ms (at most {HOME_MS})")
        # The browser fetches the icon itself after "load" (type "Other"); one it has not
        # finished yet is not a failure of the page.
        failed = [f"{r.url} {r.status} {r.failed}" for r in visit.page_requests
                  if r.failed or not (200 <= r.status < 400 or (r.status == 404 and r.resource_type == "Document")
                                      or (not r.finished and r.resource_type == "Other"))]
        if failed:
            problems.append(f"{where}: requests failed: {failed}")
        for violation in phone.axe_violations():
            problems.append(f"{where}: axe {violation['impact']} {violation['id']}: "
                            f"{violation['help']}: {violation['nodes']}")
        overflow = phone.overflow_at_text_zoom(2.0)
        if overflow:
            problems.append(f"{where}: wider than 360 px at 200 % text: {overflow}")
        if lang == "en":
            walk = phone.keyboard_walk()
            if walk["missed"]:
                problems.append(f"{where}: not reachable with Tab: {walk['missed']}")
            if walk["no_focus_style"]:
                problems.append(f"{where}: no visible focus: {walk['no_focus_style']}")
        phone.shot(f"page-{lang}-{re.sub(r'[^a-z0-9]+', '-', name)}")
    foreign = phone.foreign_urls()
    assert not foreign, f"requests left the hotspot: {foreign}"
    assert not problems, "\n".join(problems)


def test_old_webview_layout(phone_factory, hotspot):
    """Older Android WebViews (before Chrome 84) ignore flexbox `gap`; nothing else in site.css
    is newer than Chrome 49. With `gap` removed the pages still fit the screen and every tap
    target keeps its size (docs/browser-tests.md, "Oldest browsers")."""
    phone = phone_factory(slow=False, name="old-webview")

    def without_gap(route):
        response = route.fetch()
        css = re.sub(r"(?<![-\w])(row-|column-)?gap:[^;}]+;?", "", response.text())
        route.fulfill(response=response, body=css)

    phone.page.route(re.compile(r".*/static/.*\.css$"), without_gap)
    problems = []
    for name, path in [("home", "/"), ("browse", "/browse?theme=patrols"),
                       ("resource", "/r/mapping-with-gps-video"), ("report", "/contribute/report")]:
        phone.visit(path)
        assert "gap" not in phone.page.evaluate(
            "() => [...document.styleSheets].map(s => [...s.cssRules].map(r => r.cssText).join('')).join('')")
        overflow = phone.overflow_at_text_zoom(1.0)
        if overflow:
            problems.append(f"{name}: {overflow}")
        small = phone.page.evaluate("""() => [...document.querySelectorAll(
              'main a.button, main .tiles a, main button, header button, header input, .langs a')]
            .filter(el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height < 44; })
            .map(el => el.tagName + ' ' + el.textContent.trim().slice(0, 30))""")
        if small:
            problems.append(f"{name}: tap targets under 44 px high: {small}")
        phone.shot(f"old-webview-{name}")
    css = (REPO / "hotspot" / "static" / "site.css").read_text()
    newer = [feature for feature in ("display:grid", "var(--", "clamp(", "min(", "max(", ":is(",
                                      ":where(", ":has(", "aspect-ratio", "inset:", "@container",
                                      "@layer", ":focus-visible")
             if feature in css.replace(" ", "")]
    assert not newer, f"site.css uses features older WebViews lack: {newer}"
    assert not problems, "\n".join(problems)
