"""The captive portal over real HTTP: each OS's connectivity check, with its user agent and its
probe host in the Host header, against a real `hotspot serve` process.

Each test talks from its own loopback source address (127.0.0.x), so "this phone tapped Open
the library" in one test never leaks into another.
"""

from __future__ import annotations

import http.client
import itertools
import json
from html.parser import HTMLParser

import pytest

from conftest import ServerProcess, install_test_library
from hotspot.portal import (APPLE_SUCCESS, FIREFOX_CANONICAL, PortalPolicy, ReleasedPhones)

# (OS, probe host, path, user agent, status when online, body when online)
PROBES = [
    ("android", "connectivitycheck.gstatic.com", "/generate_204",
     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/60.0.3112.32 Safari/537.36", 204, b""),
    ("android-fallback", "www.google.com", "/gen_204",
     "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 7 Build/UQ1A.240205.004)", 204, b""),
    ("chromeos", "clients3.google.com", "/generate_204",
     "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36", 204, b""),
    ("ios", "captive.apple.com", "/hotspot-detect.html",
     "CaptiveNetworkSupport-481.0.1 wispr", 200, APPLE_SUCCESS),
    ("macos", "www.apple.com", "/library/test/success.html",
     "CaptiveNetworkSupport-481.0.1 wispr", 200, APPLE_SUCCESS),
    ("windows", "www.msftconnecttest.com", "/connecttest.txt", "Microsoft NCSI", 200,
     b"Microsoft Connect Test"),
    ("windows-7", "www.msftncsi.com", "/ncsi.txt", "Microsoft NCSI", 200, b"Microsoft NCSI"),
    ("firefox", "detectportal.firefox.com", "/canonical.html",
     "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", 200,
     FIREFOX_CANONICAL),
    ("firefox-success", "detectportal.firefox.com", "/success.txt",
     "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0", 200, b"success\n"),
]
_addresses = itertools.count(10)


def new_phone() -> str:
    """A loopback source address no other test uses: one 'phone'."""
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def request(server, phone: str, path: str, host: str | None = None, user_agent: str = "test",
            method: str = "GET"):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20,
                                      source_address=(phone, 0))
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or f"{server.host}:{server.port}")
        conn.putheader("User-Agent", user_agent)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def portal_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("portal")
    data_dir = root / "data"
    install_test_library(data_dir, extra=2)
    config = root / "hotspot.toml"
    # The hotspot's address is the loopback one here, so redirects stay on this machine.
    config.write_text('[server]\nthreads = 4\n[network]\naddress = "127.0.0.1"\n')
    server = ServerProcess(["--config", str(config), "--data-dir", str(data_dir), "serve",
                            "--host", "127.0.0.1", "--port", "0"])
    server.base = f"http://127.0.0.1:{server.port}"
    yield server
    assert server.stop() == 0, "".join(server.output)


class PageParts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.langs, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "a":
            self.links.append(attrs)
        if attrs.get("lang"):
            self.langs.append(attrs["lang"])


@pytest.mark.parametrize("os_name,host,path,agent,online_status,online_body", PROBES,
                         ids=[p[0] for p in PROBES])
def test_probe_opens_the_portal_then_answers_online(portal_server, os_name, host, path, agent,
                                                    online_status, online_body):
    phone = new_phone()
    # 1. A phone that just joined: the check is answered "captive", pointing at the portal page.
    status, headers, body = request(portal_server, phone, path, host, agent)
    assert status == 302, (os_name, status, body)
    assert headers["location"] == f"{portal_server.base}/portal"
    assert "no-store" in headers["cache-control"]
    # 2. The OS's portal window follows it: a real page, not an empty one.
    status, headers, body = request(portal_server, phone, "/portal", user_agent=agent)
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    html = body.decode("utf-8")
    assert "Open the library" in html and f"{portal_server.base}/" in html
    # 3. The person taps "Open the library": the library's home.
    status, headers, _ = request(portal_server, phone, "/portal/continue", user_agent=agent)
    assert status == 303 and headers["location"] == f"{portal_server.base}/"
    status, _, body = request(portal_server, phone, "/", user_agent=agent)
    assert status == 200 and b"Test library" in body
    # 4. From now on this phone's checks get the "online" answer its OS expects, so the OS
    #    closes the portal window and keeps the phone on the hotspot.
    status, headers, body = request(portal_server, phone, path, host, agent)
    assert (status, body) == (online_status, online_body), os_name
    if online_status == 204:
        assert headers.get("content-length", "0") == "0"
    # 5. Another phone is still taken to the portal.
    status, headers, _ = request(portal_server, new_phone(), path, host, agent)
    assert status == 302


def test_head_probe(portal_server):
    status, headers, body = request(portal_server, new_phone(), "/hotspot-detect.html",
                                    "captive.apple.com", "CaptiveNetworkSupport-481.0.1 wispr",
                                    method="HEAD")
    assert status == 302 and body == b""


def test_windows_browser_redirect_goes_to_the_portal(portal_server):
    phone = new_phone()
    status, headers, _ = request(portal_server, phone, "/redirect", "www.msftconnecttest.com",
                                 "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edge/120")
    assert status == 302 and headers["location"] == f"{portal_server.base}/portal"
    request(portal_server, phone, "/portal/continue")
    status, headers, _ = request(portal_server, phone, "/redirect", "www.msftconnecttest.com")
    assert status == 302 and headers["location"] == f"{portal_server.base}/"


@pytest.mark.parametrize("host", ["example.com", "www.facebook.com", "wikipedia.org:80",
                                  "captive.apple.com", "detectportal.firefox.com"])
def test_unknown_host_goes_to_the_library_home(portal_server, host):
    for path in ("/", "/some/page?q=1", "/about", "/static/x/site.css"):
        status, headers, body = request(portal_server, new_phone(), path, host)
        assert status == 302, (host, path)
        assert headers["location"] == f"{portal_server.base}/"
        assert body == b""


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:{port}", "localhost", "library.lan",
                                  "LIBRARY.LAN.", "10.42.0.1", "[::1]:{port}"])
def test_our_own_names_are_served(portal_server, host):
    host = host.format(port=portal_server.port)
    status, _, body = request(portal_server, new_phone(), "/about", host)
    assert status == 200 and b"<html" in body


def test_portal_page_works_in_captive_browsers(portal_server):
    status, headers, body = request(portal_server, new_phone(), "/portal",
                                    user_agent="CaptiveNetworkSupport-481.0.1 wispr")
    assert status == 200
    assert "set-cookie" not in headers  # nothing relies on cookies or storage
    html = body.decode("utf-8")
    parts = PageParts()
    parts.feed(html)
    # The instructions are there in all four languages at once, each marked with its language.
    for lang in ("es", "fr", "pt"):
        assert lang in parts.langs
    assert html.count(f"<strong>{portal_server.base}/</strong>") == 4
    # No new windows, no scripts, no downloads offered in the small window.
    assert all(attrs.get("target") is None for attrs in parts.links)
    assert not [tag for tag, _ in parts.tags if tag == "script"]
    assert not [a for a in parts.links if "download" in a or "download=1" in a.get("href", "")]
    continue_links = [a["href"] for a in parts.links if a["href"].endswith("/portal/continue")]
    assert continue_links == [f"{portal_server.base}/portal/continue"]


def test_captive_portal_api_rfc8908(portal_server):
    phone = new_phone()
    status, headers, body = request(portal_server, phone, "/captive-portal/api")
    assert status == 200
    assert headers["content-type"] == "application/captive+json"
    assert "no-store" in headers["cache-control"]
    document = json.loads(body)
    assert document["captive"] is True
    assert document["user-portal-url"] == f"{portal_server.base}/portal"
    request(portal_server, phone, "/portal/continue")
    status, _, body = request(portal_server, phone, "/captive-portal/api", "captive.example")
    assert json.loads(body)["captive"] is False


def test_nothing_about_phones_in_the_log(portal_server):
    phone = new_phone()
    request(portal_server, phone, "/generate_204", "connectivitycheck.gstatic.com",
            "UniqueAgentString/1.0")
    request(portal_server, phone, "/portal/continue")
    output = "".join(portal_server.output)
    assert phone not in output and "UniqueAgentString" not in output


def test_portal_switched_off(tmp_path):
    data_dir = tmp_path / "data"
    install_test_library(data_dir, extra=0)
    config = tmp_path / "hotspot.toml"
    config.write_text('[network]\naddress = "127.0.0.1"\n[portal]\nenabled = false\n')
    server = ServerProcess(["--config", str(config), "--data-dir", str(data_dir), "serve",
                            "--host", "127.0.0.1", "--port", "0"])
    try:
        status, _, _ = request(server, new_phone(), "/generate_204",
                               "connectivitycheck.gstatic.com")
        assert status == 404
        status, _, _ = request(server, new_phone(), "/about", "example.com")
        assert status == 200
    finally:
        assert server.stop() == 0


# -- the policy on its own ----------------------------------------------------------------------

def test_policy_hosts():
    policy = PortalPolicy("10.42.0.1", 80, "library.lan")
    assert policy.home_url == "http://10.42.0.1/"
    assert policy.portal_url == "http://10.42.0.1/portal"
    for host in (None, "", "10.42.0.1", "10.42.0.1:80", "library.lan", "Library.Lan.:80",
                 "localhost", "[fe80::1]:80", "192.168.1.20"):
        assert policy.is_our_host(host), host
    for host in ("captive.apple.com", "lan", "library.lan.evil.com", "example.com:8080"):
        assert not policy.is_our_host(host), host
    assert PortalPolicy("10.42.0.1", 8080).portal_url == "http://10.42.0.1:8080/portal"


def test_policy_api_uses_the_https_portal_when_configured():
    policy = PortalPolicy("10.42.0.1", 80, https_url="https://library.example.org")
    assert policy.api_document(False)["user-portal-url"] == "https://library.example.org/portal"


def test_released_phones_are_forgotten():
    now = [1000.0]
    phones = ReleasedPhones(minutes=10, clock=lambda: now[0], max_phones=3)
    phones.release("10.42.0.50")
    assert phones.is_released("10.42.0.50") and not phones.is_released("10.42.0.51")
    now[0] += 601
    assert not phones.is_released("10.42.0.50")
    for n in range(5):
        phones.release(f"10.42.0.{n + 60}")
    assert not phones.is_released("10.42.0.60") and phones.is_released("10.42.0.64")
    assert all(b"10.42" not in key for key in phones._until)  # only salted hashes are kept
    off = ReleasedPhones(minutes=0)
    off.release("10.42.0.50")
    assert not off.is_released("10.42.0.50")
