"""What people do on the hotspot, on a 360x640 touch phone over a throttled link, with
JavaScript on and off (the site has no JavaScript of its own; every journey must work without).

Screenshots of each journey's key pages go to tests/browser/artifacts/<journey>-<js|nojs>-*.png.
The test drives the page the way a person does (taps links and buttons, fills forms); media
elements are played and seeked through their DOM API, which is what the browser's own player
controls call, so this works with the page's scripts switched off too.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from .budget_table import HOME_KB, HOME_MS, PAGE_KB
from .conftest import CARETAKER_PASSWORD, run_cli

DEMO_FILES = Path(__file__).resolve().parents[2] / "hotspot" / "demo" / "files"
PHOTO = DEMO_FILES / "cadena-alerta-temprana.jpg"


@pytest.fixture(params=[True, False], ids=["js", "nojs"])
def js(request):
    return request.param


@pytest.fixture
def phone(phone_factory, js, request):
    made = phone_factory(js=js, name=request.node.name)
    made.mode = "js" if js else "nojs"
    yield made
    assert not made.foreign_urls(), f"requests left the hotspot: {made.foreign_urls()}"


def shot(phone, journey: str, step: str):
    phone.shot(f"{journey}-{phone.mode}-{step}")


def within_budget(visit, budget_kb: float = PAGE_KB):
    assert visit.transfer_kb <= budget_kb, (visit.path, visit.transfer_kb, [
        (r.url, r.encoded_bytes) for r in visit.page_requests])


def no_serious_axe(phone):
    # axe-core runs in the page's main world, which does not exist with JavaScript off; the
    # HTML is the same either way, so the JavaScript run checks it.
    if phone.mode == "js":
        assert phone.axe_violations() == []


def test_home(phone):
    visit = phone.visit("/")
    within_budget(visit, HOME_KB)
    assert 0 < visit.lcp_ms <= HOME_MS and visit.load_ms <= HOME_MS, visit
    page = phone.page
    assert page.locator("h1").is_visible()
    # Icons next to words, for people who read little: every theme and type tile has both.
    tiles = page.locator("ul.tiles a")
    assert tiles.count() >= 10
    for tile in tiles.all():
        assert tile.locator("svg.i").count() == 1 and tile.locator("span").inner_text().strip()
        box, icon = tile.bounding_box(), tile.locator("svg.i").bounding_box()
        assert icon["width"] >= 16 and box["height"] >= 44
    shot(phone, "home", "top")


def test_filter_by_theme_and_type(phone):
    page = phone.page
    phone.visit("/")
    visit = phone.click_and_measure(page.locator('ul.tiles a[href="/browse?theme=patrols"]'))
    within_budget(visit)
    assert page.url.endswith("/browse?theme=patrols")
    patrols = int(re.search(r"\d+", page.locator(".count").inner_text()).group())
    assert patrols >= 2
    shot(phone, "filter", "theme")
    # Filters are folded away once one is active: open them, as a person would.
    page.locator("details.filters summary").click()
    page.select_option("#f-type", "guides-manuals")
    visit = phone.click_and_measure(page.locator("details.filters button[type=submit]"))
    within_budget(visit)
    assert "theme=patrols" in page.url and "type=guides-manuals" in page.url
    count = int(re.search(r"\d+", page.locator(".count").inner_text()).group())
    assert 1 <= count < patrols
    for meta in page.locator("ul.list .meta").all_inner_texts():
        assert meta.startswith("Guides")
    shot(phone, "filter", "theme-and-type")


def results(page) -> list[str]:
    return page.locator("ul.list > li > a").evaluate_all("links => links.map(a => a.pathname)")


def test_search_with_and_without_accents(phone):
    page = phone.page
    phone.visit("/")
    found = {}
    for words in ("sécurité", "securite", "SECURITE"):
        page.fill("#q", words)
        visit = phone.click_and_measure(page.locator("form.search button[type=submit]"))
        within_budget(visit)
        assert page.locator("#fq").input_value() == words
        found[words] = results(page)
        shot(phone, "search", re.sub(r"[^a-z]", "", words.lower().replace("é", "e")) +
             ("-accents" if "é" in words else ""))
    assert found["sécurité"], "no result for sécurité"
    assert found["sécurité"] == found["securite"] == found["SECURITE"]
    page.fill("#q", "zzqx-nothing-like-this")
    phone.click_and_measure(page.locator("form.search button[type=submit]"))
    assert results(page) == [] and page.locator("main p").last.inner_text()
    shot(phone, "search", "nothing")


def wait_for(media, expression: str, what: str, timeout: float = 45) -> None:
    """Poll a media element from the test (bounded). Only synchronous DOM calls: with the
    page's JavaScript off, Playwright can still read and set properties, but no page timer
    or event listener runs."""
    deadline = time.monotonic() + timeout
    while not media.evaluate(f"m => {expression}"):
        if media.evaluate("m => m.error && m.error.code"):
            raise AssertionError(f"media error {media.evaluate('m => m.error.code')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout} s: "
                                 + str(media.evaluate("m => [m.readyState, m.currentTime, m.paused]")))
        media.page.wait_for_timeout(50)


def play_and_seek(media, target: float) -> dict:
    """What the browser's own player does when a person taps play and drags the slider."""
    media.evaluate("m => { m.muted = true; m.load(); }")
    wait_for(media, "m.readyState >= 1", "metadata")
    media.evaluate(f"m => {{ m.currentTime = {target}; }}")
    wait_for(media, "!m.seeking && m.readyState >= 2", "seek")
    seeked_to = media.evaluate("m => m.currentTime")
    media.evaluate("m => { m.play(); }")
    wait_for(media, f"m.currentTime > {seeked_to} + 0.2", "playing on")
    media.evaluate("m => m.pause()")
    return {"duration": media.evaluate("m => m.duration"), "seekedTo": seeked_to,
            "playedTo": media.evaluate("m => m.currentTime")}


@pytest.mark.parametrize("resource, tag, seconds, says", [
    ("reporting-an-incident-audio", "audio", 10, r"^Audio, 2\d s, \d+ kB"),
    ("mapping-with-gps-video", "video", 8, r"^Video, 14 s, \d+ kB"),
])
def test_play_and_seek(phone, resource, tag, seconds, says):
    page = phone.page
    visit = phone.visit(f"/r/{resource}")
    within_budget(visit)
    # What the person gets, before they tap: "Video, 14 s, 591 kB".
    assert re.search(says, page.locator("p.file small").first.inner_text()), \
        page.locator("p.file small").first.inner_text()
    media = page.locator(tag).first
    assert media.get_attribute("controls") is not None and media.get_attribute("preload") == "none"
    played = play_and_seek(media, seconds)
    assert abs(played["seekedTo"] - seconds) < 0.5, played
    assert played["playedTo"] > seconds, played
    media_requests = [r for r in phone.requests.values() if "/media/" in r.url and
                      r.url.split("?")[0].endswith((".mp3", ".mp4"))]
    assert media_requests and all(r.status in (200, 206) for r in media_requests), media_requests
    assert any(r.status == 206 for r in media_requests), "media were not fetched with Range"
    media.scroll_into_view_if_needed()
    shot(phone, "media", tag)


def test_download_a_file(phone, tmp_path):
    page = phone.page
    within_budget(phone.visit("/r/incident-report-template"))
    summary = page.locator("p.file small").first.inner_text()
    assert re.match(r"^Text, \d+(\.\d+)? kB", summary), summary
    with page.expect_download() as info:
        page.locator("a.button[download]").first.click()
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    original = DEMO_FILES / "incident-report-template-en.txt"
    assert download.suggested_filename == original.name
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()
    shot(phone, "download", "resource")


def test_switch_language(phone):
    page = phone.page
    phone.visit("/")
    assert page.evaluate("document.documentElement.lang") == "en"
    headings = {"en": page.locator("h1").inner_text()}
    for code, name in (("es", "Español"), ("fr", "Français"), ("pt", "Português"), ("en", "English")):
        visit = phone.click_and_measure(page.locator(f'nav.langs a[hreflang="{code}"]'))
        within_budget(visit, HOME_KB)
        assert page.evaluate("document.documentElement.lang") == code
        assert page.locator("nav.langs strong[aria-current]").inner_text() == name
        headings.setdefault(code, page.locator("h1").inner_text())
        shot(phone, "language", code)
    assert len(set(headings.values())) == 4, headings
    # The choice is remembered on the next page.
    phone.click_and_measure(page.locator('nav.langs a[hreflang="pt"]'))
    phone.visit("/browse")
    assert page.evaluate("document.documentElement.lang") == "pt"


def queued(hotspot) -> list[dict]:
    return json.loads(run_cli(hotspot.base_args + ["contributions", "list", "--json"]))


def test_feedback_and_report_with_photo(phone, hotspot):
    page = phone.page
    before = len(queued(hotspot))
    phone.visit("/r/mapping-with-gps-video")
    visit = phone.click_and_measure(page.locator('a.button[href$="/feedback"]'))
    within_budget(visit)
    page.locator('label[for="yes"]').click()
    assert page.locator("#yes").is_checked()
    page.fill("#comment", "Clear and short, thank you.")
    shot(phone, "feedback", "form")
    visit = phone.click_and_measure(page.locator("form.contribute button[type=submit]"))
    within_budget(visit)
    assert page.locator(".code").inner_text().strip()
    no_serious_axe(phone)
    shot(phone, "feedback", "thanks")

    phone.visit("/contribute")
    phone.click_and_measure(page.locator('a[href="/contribute/report"]'))
    page.fill("#what", "A new fence cut the path to the river, near the old school.")
    page.fill("#place", "Upper river path")
    page.set_input_files("#files", str(PHOTO))
    shot(phone, "report", "form")
    visit = phone.click_and_measure(page.locator("form.contribute button[type=submit]"))
    within_budget(visit)
    code = page.locator(".code").inner_text().strip()
    assert code
    shot(phone, "report", "thanks")
    after = queued(hotspot)
    assert len(after) == before + 2, after
    # The report carried the photo: the encrypted envelope is bigger than the JPEG.
    newest = max(after, key=lambda c: c.get("size", 0))
    assert newest.get("size", 0) > PHOTO.stat().st_size, newest


def test_caretaker_logs_in_sees_status_starts_sync(phone):
    page = phone.page
    phone.page.goto(phone.url("/admin"))
    assert "/admin/login" in page.url
    page.fill("#password", CARETAKER_PASSWORD)
    shot(phone, "caretaker", "login")
    visit = phone.click_and_measure(page.locator("form.login button[type=submit]"))
    within_budget(visit)
    assert re.search(r"/admin/?$", page.url), page.url
    assert page.locator(".verdict").is_visible()
    no_serious_axe(phone)
    shot(phone, "caretaker", "status")
    visit = phone.click_and_measure(page.locator('form[action="/admin/action/sync"] button'))
    within_budget(visit)
    text = page.locator("main").inner_text()
    assert text.strip() and page.locator("h1").count() == 1
    # Sync is not configured on the test hotspot: the page must say so in words.
    assert "no hub address" in text, text
    no_serious_axe(phone)
    shot(phone, "caretaker", "sync")
