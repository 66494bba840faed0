"""The library's pages over real HTTP: a real `hotspot serve` process on a free port."""

from __future__ import annotations

import gzip
import re
import socket
import time
from html.parser import HTMLParser
from urllib.parse import quote

import pytest

from conftest import LANGS, ServerProcess, install_test_library


class Links(HTMLParser):
    """Every URL a page makes the browser load, and every link a person may follow."""

    def __init__(self):
        super().__init__()
        self.loads: list[str] = []
        self.links: list[tuple[str, dict]] = []
        self.lang_marks: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "poster", "data"):
            if attrs.get(name):
                self.loads.append(attrs[name])
        if tag == "link" and attrs.get("href"):
            self.loads.append(attrs["href"])
        if tag == "a" and attrs.get("href"):
            self.links.append((attrs["href"], attrs))
        if tag == "form":
            self.links.append((attrs.get("action", ""), attrs))
        if attrs.get("lang"):
            self.lang_marks.append(attrs["lang"])


def parse(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


PAGES = ["/", "/browse", "/browse?theme=patrols&type=templates", "/search?q=radio",
         "/r/radio-basics", "/r/proteccion-colectiva", "/r/security-workbook", "/about"]


# -- every page, every language ----------------------------------------------------------------
@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("lang", LANGS)
def test_every_page_in_every_language(library_server, path, lang):
    response = library_server.get(path, Accept_Encoding="gzip", Cookie=f"lang={lang}")
    assert response.status == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-language"] == lang
    html = response.text
    assert f'<html lang="{lang}">' in html
    assert "Traceback" not in html
    # The language selector is on every page and marks the current language.
    assert html.count('href="/lang/') == 3
    # Nothing is loaded from outside the hotspot: every src/href that loads is a local path.
    links = parse(html)
    for url in links.loads:
        assert url.startswith("/") and not url.startswith("//"), url
    for url, attrs in links.links:
        if url.startswith("http"):
            assert "external" in attrs.get("rel", ""), url


def test_ui_text_is_translated(library_server):
    words = {"en": "Search", "es": "Buscar", "fr": "Rechercher", "pt": "Pesquisar"}
    for lang, word in words.items():
        html = library_server.get("/", Cookie=f"lang={lang}").text
        assert f"<span>{word}</span>" in html, lang


def test_security_and_cache_headers(library_server):
    response = library_server.get("/", Accept_Encoding="gzip")
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "accept-language" in response.headers["vary"].lower()
    assert response.headers["cache-control"] == "no-cache"
    # Without gzip support the page is sent plain.
    plain = library_server.get("/")
    assert "content-encoding" not in plain.headers
    assert plain.raw == response.body


# -- language choice --------------------------------------------------------------------------
def test_accept_language_then_cookie(library_server):
    assert library_server.get("/", Accept_Language="fr-CA,fr;q=0.9,en;q=0.5").headers["content-language"] == "fr"
    assert library_server.get("/", Accept_Language="de,pt-BR;q=0.8").headers["content-language"] == "pt"
    assert library_server.get("/", Accept_Language="de,nl").headers["content-language"] == "en"
    cookie_wins = library_server.get("/", Accept_Language="fr", Cookie="lang=es")
    assert cookie_wins.headers["content-language"] == "es"
    bad_cookie = library_server.get("/", Accept_Language="pt", Cookie="lang=xx")
    assert bad_cookie.headers["content-language"] == "pt"


def test_language_selector_sets_cookie_and_returns(library_server):
    response = library_server.get("/lang/pt?next=%2Fbrowse%3Ftheme%3Dpatrols")
    assert response.status == 303
    assert response.headers["location"].endswith("/browse?theme=patrols")
    cookie = response.headers["set-cookie"]
    assert "lang=pt" in cookie and "HttpOnly" in cookie and "Max-Age=" in cookie
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example", "%2F%2Fevil"):
        response = library_server.get(f"/lang/es?next={evil}")
        assert response.status == 303
        assert response.headers["location"] == "/", evil
    assert library_server.get("/lang/xx?next=/").status == 404


def test_untranslated_resource_falls_back_per_field(library_server):
    html = library_server.get("/r/radio-basics", Cookie="lang=es").text
    # The UI is in Spanish, the resource text in English (its first available language),
    # marked with lang= so screen readers read it right, and the reader is told.
    assert '<h1 lang="en">Community radio basics</h1>' in html
    assert "no está traducido" in html or "todavía no" in html.lower()
    french = library_server.get("/r/radio-basics", Cookie="lang=fr").text
    assert "<h1>Les bases de la radio communautaire</h1>" in french
    only_spanish = library_server.get("/r/proteccion-colectiva", Cookie="lang=pt").text
    assert 'lang="es">Protección colectiva del territorio</h1>' in only_spanish


# -- browse and filters -----------------------------------------------------------------------
def result_ids(html: str) -> list[str]:
    return re.findall(r'<li><a href="/r/([a-z0-9-]+)"', html)


def test_browse_filters_combine(library_server):
    everything = library_server.get("/browse").text
    assert "48 resources" in everything
    by_theme = library_server.get("/browse?theme=patrols").text
    assert "31 resources" in by_theme  # 30 generated + proteccion-colectiva
    combined = library_server.get("/browse?theme=patrols&type=templates&language=pt").text
    ids = result_ids(combined)
    assert ids and all(i.startswith("generated-") for i in ids)
    assert "proteccion-colectiva" not in ids
    strand = result_ids(library_server.get("/browse?strand=what-is-needed").text)
    assert strand == ["proteccion-colectiva"]
    by_language = result_ids(library_server.get("/browse?language=fr").text)
    assert sorted(by_language) == ["radio-basics", "security-workbook"]
    # The selected values are kept in the form.
    assert '<option value="patrols" selected>' in by_theme


def test_browse_newest_first_and_pages(library_server):
    first = library_server.get("/browse").text
    ids = result_ids(first)
    assert ids[:3] == ["radio-basics", "proteccion-colectiva", "security-workbook"]
    assert len(ids) == 20
    assert "Page 1 of 3" in first and 'rel="next" href="/browse?page=2"' in first
    third = library_server.get("/browse?page=3").text
    assert len(result_ids(third)) == 8
    assert 'rel="prev" href="/browse?page=2"' in third and 'rel="next"' not in third
    all_ids = ids + result_ids(library_server.get("/browse?page=2").text) + result_ids(third)
    assert len(set(all_ids)) == 48


@pytest.mark.parametrize("query,status", [
    ("theme=nope", 400), ("type=%3Cscript%3E", 400), ("page=0", 400), ("page=abc", 400),
    ("page=-1", 400), ("page=99999999999", 400), ("page=4", 404), ("page=%EF%BC%92", 400),
    ("theme=%ff", 400), ("theme=a%00b", 400),
])
def test_bad_browse_input_gets_a_clear_page(library_server, query, status):
    response = library_server.get(f"/browse?{query}", Cookie="lang=fr")
    assert response.status == status
    html = response.text
    assert response.headers["content-language"] == "fr"
    assert "Traceback" not in html and "<script>" not in html
    assert 'href="/"' in html  # a way back home


def test_unknown_filter_value_message_is_translated(library_server):
    html = library_server.get("/browse?theme=nope", Cookie="lang=es").text
    assert "nope" in html
    assert "Nothing in this library is filed under" not in html


# -- search -----------------------------------------------------------------------------------
def test_search_ignores_accents_and_case(library_server):
    for query in ("proteccion", "PROTECCIÓN", "Protección", "protec"):
        ids = result_ids(library_server.get(f"/search?q={quote(query)}").text)
        assert ids[0] == "proteccion-colectiva", query
    assert result_ids(library_server.get("/search?q=s%C3%A9curit%C3%A9").text) == ["security-workbook"]


def test_search_fields_filters_and_ranking(library_server):
    assert result_ids(library_server.get("/search?q=ondas").text) == ["radio-basics"]  # publisher
    assert result_ids(library_server.get("/search?q=antenna").text) == ["radio-basics"]  # tags
    assert result_ids(library_server.get("/search?q=antennas").text) == ["radio-basics"]  # description
    modelo = library_server.get("/search?q=modelo").text
    assert "45 resources" in modelo
    filtered = result_ids(library_server.get("/search?q=modelo&type=templates&theme=legal-support").text)
    assert filtered and all(int(i.split("-")[1]) % 2 == 1 and int(i.split("-")[1]) % 3 == 0
                            for i in filtered)
    # Title matches rank above matches only in the summary.
    ranked = result_ids(library_server.get("/search?q=radio").text)
    assert ranked[0] == "radio-basics"
    assert "0 resources" in library_server.get("/search?q=zzzzqqq").text


def test_search_keeps_query_in_form_and_pages(library_server):
    html = library_server.get("/search?q=modelo&page=2").text
    assert 'value="modelo"' in html
    assert 'href="/search?q=modelo&amp;page=3"' in html or 'href="/search?q=modelo&page=3"' in html


@pytest.mark.parametrize("query,status", [
    ("q=" + "a" * 201, 400), ("q=%ff%fe", 400), ("q=a%01b", 400), ("q=" + "x" * 3000, 414),
    ("&".join(f"p{n}=1" for n in range(30)), 400),
])
def test_bad_search_input(library_server, query, status):
    response = library_server.get(f"/search?{query}")
    assert response.status == status
    assert "Traceback" not in response.text


def test_empty_search_lists_everything(library_server):
    assert "48 resources" in library_server.get("/search?q=").text


# -- detail -----------------------------------------------------------------------------------
def test_detail_page_shows_files_players_and_metadata(library_server):
    html = library_server.get("/r/radio-basics").text
    catalog = library_server.catalog
    pdf, mp3 = catalog["resources"][0]["files"]
    assert f'<audio controls preload="none" src="/media/{mp3["sha256"]}/clip.mp3">' in html
    assert f'/media/{pdf["sha256"]}/radio%20guide.pdf?download=1' in html
    assert "Audio, 2 min, 2.1 MB" in html
    assert "PDF document, 20 B" in html
    assert "Ondas del Territorio" in html and "2024" in html and "CC BY 4.0" in html
    assert "<p>First paragraph.</p>" in html and "<p>Second paragraph about antennas.</p>" in html
    video = library_server.get("/r/proteccion-colectiva").text
    assert "<video controls" in video and "poster=" in video and "10 min" in video
    outside = library_server.get("/r/security-workbook").text
    assert 'href="https://example.org/workbook" rel="noopener noreferrer external"' in outside


def test_unknown_resource_is_a_friendly_404(library_server):
    response = library_server.get("/r/does-not-exist", Cookie="lang=pt")
    assert response.status == 404
    assert "does-not-exist" in response.text
    assert library_server.get("/r/" + "x" * 500).status == 404
    assert library_server.get("/r/%2e%2e%2fetc").status == 404


def test_unknown_page_and_method(library_server):
    response = library_server.get("/nothing/here", Cookie="lang=es")
    assert response.status == 404 and response.headers["content-language"] == "es"
    assert library_server.request("POST", "/", body=b"x=1").status == 405


# -- caching ----------------------------------------------------------------------------------
def test_pages_revalidate_with_etag(library_server):
    first = library_server.get("/browse?theme=patrols", Accept_Encoding="gzip")
    etag = first.headers["etag"]
    again = library_server.get("/browse?theme=patrols", If_None_Match=etag)
    assert again.status == 304 and again.raw == b""
    other_language = library_server.get("/browse?theme=patrols", Cookie="lang=fr")
    assert other_language.headers["etag"] != etag
    assert library_server.get("/browse?theme=patrols", If_None_Match=etag, Cookie="lang=fr").status == 200


def test_static_files_are_versioned_and_compressed(library_server):
    html = library_server.get("/").text
    css_url = re.search(r'href="(/static/[0-9a-f]+/site\.css)"', html).group(1)
    response = library_server.get(css_url, Accept_Encoding="gzip")
    assert response.status == 200 and response.headers["content-encoding"] == "gzip"
    assert "immutable" in response.headers["cache-control"]
    assert b"font-face" not in response.body and b"url(" not in response.body
    stale = library_server.get("/static/000000000000/site.css")
    assert stale.status == 200 and stale.headers["cache-control"] == "no-cache"
    assert library_server.get("/static/x/../../etc/passwd").status == 404


# -- media ------------------------------------------------------------------------------------
def test_media_range_head_etag_over_http(library_server):
    mp3 = library_server.catalog["resources"][0]["files"][1]
    url = f"/media/{mp3['sha256']}/clip.mp3"
    full = library_server.get(url)
    assert full.status == 200 and len(full.raw) == mp3["size"]
    assert full.headers["content-type"] == "audio/mpeg"
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert full.headers["etag"] == f'"{mp3["sha256"]}"'
    assert "last-modified" in full.headers and full.headers["accept-ranges"] == "bytes"
    part = library_server.get(url, Range="bytes=1000-1999")
    assert part.status == 206 and part.raw == full.raw[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{mp3['size']}"
    tail = library_server.get(url, Range="bytes=-10")
    assert tail.status == 206 and tail.raw == full.raw[-10:]
    bad = library_server.get(url, Range=f"bytes={mp3['size']}-")
    assert bad.status == 416 and bad.headers["content-range"] == f"bytes */{mp3['size']}"
    assert "Traceback" not in bad.text
    head = library_server.request("HEAD", url)
    assert head.status == 200 and head.raw == b"" and head.headers["content-length"] == str(mp3["size"])
    assert library_server.get(url, If_None_Match=f'"{mp3["sha256"]}"').status == 304
    download = library_server.get(f"/media/{mp3['sha256']}/anything?download=1")
    assert download.headers["content-disposition"].startswith('attachment; filename="clip.mp3"')


@pytest.mark.parametrize("path", [
    "/media/../../etc/passwd", "/media/%2e%2e/%2e%2e/etc/passwd",
    "/media/" + "0" * 64 + "/x", "/media/" + "A" * 64 + "/x", "/media/abc/x",
    "/media/" + "0" * 64 + "/..%2f..%2fetc%2fpasswd",
])
def test_media_path_tricks(library_server, path):
    response = library_server.get(path)
    assert response.status in (400, 404)
    assert b"root:" not in response.body


# -- health, privacy --------------------------------------------------------------------------
def test_healthz(library_server):
    response = library_server.get("/healthz")
    assert response.status == 200
    assert '"resources": 48' in response.text and '"status": "ok"' in response.text


def test_logs_hold_no_addresses_or_browsers(tmp_path):
    data_dir = tmp_path / "data"
    install_test_library(data_dir, extra=0)
    config = tmp_path / "hotspot.toml"
    config.write_text("[server]\naccess_log = true\n")
    server = ServerProcess(["--config", str(config), "--data-dir", str(data_dir), "serve",
                            "--host", "127.0.0.1", "--port", "0"])
    try:
        server.get("/search?q=secret+words", User_Agent="PhoneBrowser/1.0 (SM-J200)")
        server.get("/r/nope", User_Agent="PhoneBrowser/1.0 (SM-J200)")
    finally:
        assert server.stop() == 0
    log = "".join(server.output)
    assert "GET /search 200" in log and "GET /r/nope 404" in log
    after_start = log.split("Library ready at", 1)[1].split("\n", 1)[1]
    assert "127.0.0.1" not in after_start
    assert "PhoneBrowser" not in log and "secret" not in log


def test_new_library_is_picked_up_without_restart(tmp_path):
    data_dir = tmp_path / "data"
    install_test_library(data_dir, extra=0)
    server = ServerProcess(["--data-dir", str(data_dir), "serve", "--host", "127.0.0.1", "--port", "0"])
    try:
        assert '"resources": 3' in server.get("/healthz").text
        etag = server.get("/").headers["etag"]
        install_test_library(data_dir, version=2, extra=5)
        deadline = time.monotonic() + 15
        while '"resources": 8' not in server.get("/healthz").text:
            assert time.monotonic() < deadline, "new library not loaded"
            time.sleep(0.2)
        assert server.get("/", If_None_Match=etag).status == 200  # cached pages are not reused
    finally:
        assert server.stop() == 0


def test_slow_downloads_do_not_block_pages(tmp_path):
    """Phones reading a video slowly must not hold the worker threads that build pages."""
    data_dir = tmp_path / "data"
    catalog = install_test_library(data_dir, extra=0, big_file_mb=32)
    big = catalog["resources"][0]["files"][-1]
    config = tmp_path / "hotspot.toml"
    config.write_text("[server]\nthreads = 2\n")
    server = ServerProcess(["--config", str(config), "--data-dir", str(data_dir), "serve",
                            "--host", "127.0.0.1", "--port", "0"])
    readers = []
    try:
        for _ in range(8):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            sock.sendall(f"GET /media/{big['sha256']}/big.bin HTTP/1.1\r\n"
                         f"Host: {server.host}:{server.port}\r\n\r\n".encode())
            assert sock.recv(8192).startswith(b"HTTP/1.1 200 ")  # started; now it stalls
            readers.append(sock)
        for path in ("/", "/browse", "/search?q=radio", "/r/radio-basics"):
            conn_start = time.monotonic()
            response = server.get(path)  # 30 s timeout: fails only on a real block
            assert response.status == 200, path
            assert time.monotonic() - conn_start < 30
    finally:
        for sock in readers:
            sock.close()
        assert server.stop() == 0


def test_corrupt_catalog_refuses_to_start_and_keeps_file(tmp_path):
    data_dir = tmp_path / "data"
    install_test_library(data_dir, extra=0)
    catalog_file = data_dir / "catalog.json"
    damaged = catalog_file.read_bytes()[:100]
    catalog_file.write_bytes(damaged)
    with pytest.raises(RuntimeError) as failure:
        ServerProcess(["--data-dir", str(data_dir), "serve", "--host", "127.0.0.1", "--port", "0"])
    assert "catalog.json" in str(failure.value) and "Traceback" not in str(failure.value)
    assert catalog_file.read_bytes() == damaged


def test_home_page_is_small(library_server):
    home = library_server.get("/", Accept_Encoding="gzip")
    html = home.text
    css_url = re.search(r'href="(/static/[0-9a-f]+/site\.css)"', html).group(1)
    css = library_server.get(css_url, Accept_Encoding="gzip")
    assert len(home.raw) + len(css.raw) <= 14 * 1024
    assert gzip.decompress(home.raw) == home.body
