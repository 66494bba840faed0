"""The caretaker console over real HTTP: setup, login, logout, CSRF, lockout, every action,
the JSON status, the poster, and usage counts that hold nothing personal.

Tests in this file share one server and run in order (setup first, lockout last).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from conftest import ServerProcess, install_test_library
from hotspot.admin import LoginThrottle, PasswordStore, Sessions, handle_requests
from hotspot.config import SETTINGS, load_config

PASSWORD = "river-guard-2026"
SECRET_WORDS = "zzsecretword"
USER_AGENT = "TestPhone/9.9 (unique-agent-string)"
# The Wi-Fi name and password come from the network settings (provisioning) when they exist.
HAS_NETWORK_SETTINGS = any(setting.name == "network.ssid" for setting in SETTINGS)


class Browser:
    """Keeps cookies like a phone's browser; no redirects followed."""

    def __init__(self, server: ServerProcess):
        self.server = server
        self.cookies: dict[str, str] = {}

    def _headers(self, extra=None) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT, "Accept-Language": "en"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def _keep(self, response):
        raw = response.headers.get("set-cookie")
        if raw:
            for part in re.split(r",(?=\s*\w+=)", raw):
                cookie = SimpleCookie()
                cookie.load(part)
                for name, morsel in cookie.items():
                    if morsel["max-age"] == "0" or morsel.value in ("", '""'):
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
        return response

    def get(self, path: str, **headers):
        return self._keep(self.server.request("GET", path, self._headers(headers)))

    def post(self, path: str, fields: dict[str, str], **headers):
        body = urlencode(fields).encode()
        return self._keep(self.server.request(
            "POST", path, self._headers({"Content-Type": "application/x-www-form-urlencoded",
                                         **headers}), body))


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    root = tmp_path_factory.mktemp("admin")
    data_dir = root / "data"
    install_test_library(data_dir)
    config = root / "hotspot.toml"
    text = ('[server]\nthreads = 4\n[usage]\nwrite_every_seconds = 1\n'
            '[health]\ndhcp_leases_file = "%s"\nwifi_client_limit = 5\n' % (root / "leases"))
    if HAS_NETWORK_SETTINGS:
        text += '[network]\nssid = "Biblioteca"\npassphrase = "semillas2026"\n'
    config.write_text(text)
    now = int(time.time())
    (root / "leases").write_text("".join(
        f"{now + 3600} aa:bb:cc:dd:ee:0{n} 10.42.0.{10 + n} phone{n} *\n" for n in range(4))
        + f"{now - 60} aa:bb:cc:dd:ee:99 10.42.0.99 gone *\n")
    server = ServerProcess(["--config", str(config), "--data-dir", str(data_dir), "serve",
                            "--host", "127.0.0.1", "--port", "0"])
    server.data_dir = data_dir
    server.config_path = config
    yield server
    assert server.stop() == 0, "".join(server.output)


@pytest.fixture(scope="module")
def caretaker(console):
    return Browser(console)


def test_console_asks_for_setup_until_a_password_exists(console, caretaker):
    response = caretaker.get("/admin")
    assert response.status == 303 and response.headers["location"].endswith("/admin/setup")
    assert caretaker.get("/admin/login").headers["location"].endswith("/admin/setup")
    page = caretaker.get("/admin/setup")
    assert page.status == 200 and "no-store" in page.headers["cache-control"]
    token = csrf_of(page.text)
    # No CSRF token, a short password, two different passwords: all refused, nothing stored.
    assert caretaker.post("/admin/setup", {"password": PASSWORD, "confirm": PASSWORD}).status == 400
    assert caretaker.post("/admin/setup", {"csrf": token, "password": "short",
                                           "confirm": "short"}).status == 400
    assert caretaker.post("/admin/setup", {"csrf": token, "password": PASSWORD,
                                           "confirm": PASSWORD + "x"}).status == 400
    assert not (console.data_dir / "admin-password").exists()
    response = caretaker.post("/admin/setup", {"csrf": token, "password": PASSWORD,
                                               "confirm": PASSWORD})
    assert response.status == 303 and response.headers["location"].endswith("/admin")
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
    stored = console.data_dir / "admin-password"
    assert stored.stat().st_mode & 0o777 == 0o600
    record = json.loads(stored.read_text())
    assert record["scheme"] == "scrypt" and PASSWORD not in stored.read_text()
    # The setup page is gone for good, even for a fresh browser.
    assert Browser(console).get("/admin/setup").status == 404
    assert Browser(console).post("/admin/setup", {"csrf": token, "password": "x" * 10,
                                                  "confirm": "x" * 10}).status == 404


def test_status_page_in_plain_words(console, caretaker):
    page = caretaker.get("/admin")
    assert page.status == 200, page.text
    text = page.text
    assert "Needs attention" in text or "All good" in text
    assert "Test library" in text or "test" in text
    assert "Phones connected now" in text and "4 / 5" in text  # from the leases file
    assert "phones are connected" in text  # 4 of 5 is near the limit
    assert 'name="viewport"' in text and "<script" not in text
    for name in ("sync", "export", "rollback", "restart"):
        assert f'action="/admin/action/{name}"' in text
    spanish = caretaker.get("/admin", Accept_Language="es")
    assert spanish.status == 200 and 'lang="es"' in spanish.text


def test_json_status_needs_login(console, caretaker):
    assert Browser(console).get("/admin/status.json").status == 401
    assert Browser(console).get("/admin").headers["location"].endswith("/admin/login")
    response = caretaker.get("/admin/status.json")
    assert response.status == 200
    status = json.loads(response.body)
    assert status["verdict"] in ("ok", "attention")
    assert status["library"]["version"] == 1 and status["library"]["resources"] == 48
    assert status["health"]["memory"]["total"] > 0
    assert status["health"]["phones"]["count"] == 4
    assert status["features"] == {"usb": status["usb"] is not None,
                                  "sync": status["sync"] is not None}


def test_actions_need_session_and_csrf(console, caretaker):
    token = csrf_of(caretaker.get("/admin").text)
    assert caretaker.post("/admin/action/restart", {}).status == 400            # no token
    assert caretaker.post("/admin/action/restart", {"csrf": token + "x"}).status == 400
    stranger = Browser(console)
    assert stranger.post("/admin/action/restart", {"csrf": token}).status == 403
    assert not (console.data_dir / "admin-requests" / "restart.json").exists()
    assert caretaker.post("/admin/action/nothing", {"csrf": token}).status == 404


def test_restart_writes_a_request_and_refuses_a_second(console, caretaker):
    token = csrf_of(caretaker.get("/admin").text)
    response = caretaker.post("/admin/action/restart", {"csrf": token})
    assert response.status == 200 and "restart" in response.text
    request = console.data_dir / "admin-requests" / "restart.json"
    assert json.loads(request.read_text())["action"] == "restart"
    again = caretaker.post("/admin/action/restart", {"csrf": token})
    assert again.status == 429 and "already" in again.text
    # The privileged helper (dry run: no systemd here) records and removes the request.
    result = subprocess.run([sys.executable, "-m", "hotspot.cli", "--config",
                             str(console.config_path), "--data-dir", str(console.data_dir),
                             "admin", "handle-requests", "--dry-run"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not request.exists()
    audit = (console.data_dir / "admin-audit.log").read_text()
    assert "restart of hotspot.service requested" in audit and "dry run" in audit


def test_rollback_sync_export_and_import_report(console, caretaker):
    token = csrf_of(caretaker.get("/admin").text)
    no_previous = caretaker.post("/admin/action/rollback", {"csrf": token})
    assert no_previous.status == 400 and "no previous library" in no_previous.text
    install_test_library(console.data_dir, version=2)  # now version 1 is the previous one
    rolled = caretaker.post("/admin/action/rollback", {"csrf": token})
    assert rolled.status == 200 and "version 2 to version 1" in rolled.text
    sync = caretaker.post("/admin/action/sync", {"csrf": token})
    assert sync.status == 200 and ("hub address" in sync.text or "not part of" in sync.text)
    export = caretaker.post("/admin/action/export", {"csrf": token})
    assert export.status == 200 and ("USB drive" in export.text)
    # The watcher (root) does the copying: the console leaves it a request in the data folder.
    assert (console.data_dir / "usb-outbox-request.json").exists()
    assert caretaker.get("/admin/import-report").status == 404
    report = {"state": "running", "stage": "copying", "files_done": 1, "files_total": 4,
              "bytes_done": 50, "bytes_total": 200, "pack": "/media/usb/test-3.tar",
              "updated": "2026-10-01T10:00:00Z"}
    (console.data_dir / "import-progress.json").write_text(json.dumps(report))
    page = caretaker.get("/admin")
    assert '<meta http-equiv="refresh"' in page.text and "<progress" in page.text
    download = caretaker.get("/admin/import-report")
    assert download.status == 200 and "attachment" in download.headers["content-disposition"]
    assert json.loads(download.body)["pack"] == "/media/usb/test-3.tar"
    report["state"] = "failed"
    report["reason"] = "the drive was pulled out"
    (console.data_dir / "import-progress.json").write_text(json.dumps(report))
    page = caretaker.get("/admin")
    assert "did not finish: the drive was pulled out" in page.text
    assert '<meta http-equiv="refresh"' not in page.text


def test_poster_page_and_svgs(console, caretaker):
    assert Browser(console).get("/admin/poster").status == 303
    page = caretaker.get("/admin/poster?size=card&langs=en,es")
    assert page.status == 200
    assert page.text.count("class=\"segno\"") == 2 and 'lang="es"' in page.text
    if HAS_NETWORK_SETTINGS:
        assert "semillas2026" in page.text and "Join the Wi-Fi “Biblioteca”" in page.text
    else:
        assert "Join the Wi-Fi “Community library”" in page.text
    svg = caretaker.get("/admin/poster/wifi.svg")
    assert svg.status == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert caretaker.get("/admin/poster?size=huge").status == 400


def test_usage_counts_hold_nothing_personal(console, caretaker):
    phone = Browser(console)
    headers = {"X-Forwarded-For": "203.0.113.77", "Cookie": "tracking=abc"}
    for _ in range(3):
        assert phone.get("/r/radio-basics", **headers).status == 200
    assert phone.get("/r/proteccion-colectiva").status == 200
    assert phone.get("/r/no-such-thing").status == 404
    assert phone.get(f"/search?q={SECRET_WORDS}").status == 200
    assert phone.get("/search?q=radio").status == 200
    catalog_file = console.data_dir / "usage.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if catalog_file.exists():
            days = json.loads(catalog_file.read_text())["days"]
            if any(d["resources"].get("radio-basics", {}).get("view") == 3 for d in days.values()):
                break
        time.sleep(0.2)
    text = catalog_file.read_text()
    day = next(iter(json.loads(text)["days"].values()))
    assert day["resources"]["radio-basics"] == {"view": 3}
    assert day["resources"]["proteccion-colectiva"] == {"view": 1}
    assert "no-such-thing" not in text
    assert day["searches"] == 2
    assert day["themes"]["communication-radio"] == {"view": 3}
    assert day["types"]["videos-webinars"] == {"view": 1}
    for personal in ("127.0.0.1", "203.0.113.77", SECRET_WORDS, "unique-agent-string",
                     "tracking", "abc", caretaker.cookies.get("admin", "none")):
        assert personal not in text
    assert oct(catalog_file.stat().st_mode & 0o777) == "0o640"
    status = json.loads(caretaker.get("/admin/status.json").body)
    assert status["usage"]["top_resources"][0]["id"] == "radio-basics"


def test_logout_ends_the_session(console):
    browser = Browser(console)
    token = csrf_of(browser.get("/admin/login").text)
    assert browser.post("/admin/login", {"csrf": token, "password": PASSWORD}).status == 303
    session = browser.cookies["admin"]
    page = browser.get("/admin")
    assert page.status == 200
    logout = browser.post("/admin/logout", {"csrf": csrf_of(page.text)})
    assert logout.status == 303 and "admin" not in browser.cookies
    # The old cookie no longer works even if someone kept it.
    browser.cookies["admin"] = session
    assert browser.get("/admin").status == 303
    assert browser.get("/admin/status.json").status == 401


def test_wrong_passwords_make_the_next_try_wait(console):
    browser = Browser(console)
    token = csrf_of(browser.get("/admin/login").text)
    for _ in range(3):
        wrong = browser.post("/admin/login", {"csrf": token, "password": "not-the-password"})
        assert wrong.status == 403 and "not right" in wrong.text
    locked = browser.post("/admin/login", {"csrf": token, "password": PASSWORD})
    assert locked.status == 429 and locked.headers["retry-after"] == "1"
    deadline = time.monotonic() + 10
    while browser.post("/admin/login", {"csrf": token, "password": "wrong-again"}).status == 429:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    longer = browser.post("/admin/login", {"csrf": token, "password": PASSWORD})
    assert longer.status == 429 and int(longer.headers["retry-after"]) == 2
    deadline = time.monotonic() + 10
    while True:
        response = browser.post("/admin/login", {"csrf": token, "password": PASSWORD})
        if response.status != 429:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert response.status == 303  # the right password, after waiting, still works
    output = "".join(console.output)
    assert "127.0.0.1" not in output.replace("http://127.0.0.1:", "")


def test_server_log_has_no_personal_data(console):
    output = "".join(console.output)
    for personal in ("203.0.113.77", SECRET_WORDS, "unique-agent-string", PASSWORD):
        assert personal not in output


# -- in-process pieces -------------------------------------------------------------------------
def test_password_store_scrypt(tmp_path):
    store = PasswordStore(tmp_path)
    assert not store.exists() and not store.verify("anything")
    store.set("a good password")
    assert store.verify("a good password") and not store.verify("a good passworD")
    version = store.version()
    assert store.set("second one!", only_if_unset=True) is False
    store.set("another password")
    assert store.version() != version


def test_sessions_expire_and_bind_to_the_password():
    now = [1000.0]
    sessions = Sessions(b"k" * 32, lifetime=60, clock=lambda: now[0])
    value = sessions.issue("v1")
    assert sessions.check(value, "v1")
    assert sessions.check(value, "v2") is None           # the password changed
    forged = value[:-1] + ("1" if value[-1] == "0" else "0")
    assert sessions.check(forged, "v1") is None           # forged
    now[0] += 61
    assert sessions.check(value, "v1") is None           # expired


def test_throttle_grows_and_keeps_no_address():
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("10.0.0.5") == 0
        throttle.failed("10.0.0.5")
    waits = []
    for _ in range(4):
        waits.append(throttle.retry_after("10.0.0.5"))
        now[0] += waits[-1]
        throttle.failed("10.0.0.5")
    assert waits == [1, 2, 4, 8]
    assert throttle.retry_after("10.0.0.6") == 0
    assert "10.0.0.5" not in repr(throttle.__dict__)


def test_helper_refuses_unknown_requests(tmp_path):
    config = load_config(None, {"data_dir": str(tmp_path)})
    folder = tmp_path / "admin-requests"
    folder.mkdir()
    (folder / "shell.json").write_text('{"action": "shell", "command": "rm -rf /"}')
    (folder / "restart.json").write_text('{"action": "restart", "units": ["ssh.service"]}')
    lines = handle_requests(config, dry_run=True)
    assert len(lines) == 2 and all(line.startswith("refused") for line in lines)
    assert not list(folder.iterdir())
    assert (tmp_path / "admin-audit.log").read_text().count("refused") == 2
