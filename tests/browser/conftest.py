"""Fixtures for the real-browser suite: one demo-library server and one Chromium per session.

The server is a real ``hotspot serve`` on the built-in demo library (installed with
``hotspot library install-demo`` into a temp data dir), with contributions switched on (a fresh
age recipient) and a caretaker password set with ``hotspot admin set-password --stdin``.
Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright's own driver; nothing is ever
downloaded by ``playwright install``. In CI (CI=true) a missing browser or Playwright is a
failure, elsewhere the tests skip and say what to install.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ServerProcess, in_ci

from .phone import ARTIFACTS, CHROMIUM_ARGS, PHONE, Phone, chromium_path

CARETAKER_PASSWORD = "green hills at dawn 2026"


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: real-browser tests (headless Chromium, Playwright)")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright for Python (pip install playwright; never 'playwright install')"
    if chromium_path() is None:
        return "needs Chromium (Debian package chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _missing()
    for item in items:
        if "tests/browser/" not in str(item.fspath).replace("\\", "/"):
            continue
        item.add_marker(pytest.mark.browser)
        if reason and not in_ci():
            item.add_marker(pytest.mark.skip(reason=reason))


def run_cli(args: list[str], stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "hotspot.cli", *args], input=stdin,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def hotspot(tmp_path_factory):
    """The demo library on a real server, contributions on, a caretaker password set."""
    from pyrage import x25519

    root = tmp_path_factory.mktemp("browser-hotspot")
    data_dir, config = root / "data", root / "hotspot.toml"
    identity = x25519.Identity.generate()
    config.write_text('[server]\nthreads = 4\n'
                      f'[contributions]\nrecipients = ["{identity.to_public()}"]\n')
    base = ["--config", str(config), "--data-dir", str(data_dir)]
    run_cli(base + ["library", "install-demo"])
    run_cli(base + ["admin", "set-password", "--stdin"], stdin=CARETAKER_PASSWORD + "\n")
    server = ServerProcess(base + ["serve", "--host", "127.0.0.1", "--port", "0"])
    server.data_dir, server.config_path, server.base_args = data_dir, config, base
    yield server
    assert server.stop() == 0, "".join(server.output)


@pytest.fixture(scope="session")
def chromium():
    reason = _missing()
    if reason:
        pytest.fail(reason + " (CI must run the browser suite)") if in_ci() else pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # launch() starts Chromium on a fresh temporary profile (Playwright passes its own
        # --user-data-dir and deletes it on close); every context is a clean, cookie-less
        # incognito-like session on top of it.
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def phone_factory(chromium, hotspot):
    """Make phones: ``phone_factory(js=False, lang="es")``. Contexts close after the test."""
    contexts = []

    def make(*, js: bool = True, lang: str | None = None, slow: bool = True, name: str = "phone"):
        context = chromium.new_context(**PHONE, java_script_enabled=js, accept_downloads=True,
                                       locale={"es": "es-ES", "fr": "fr-FR", "pt": "pt-BR"}.get(lang, "en-US"))
        contexts.append(context)
        if lang:
            context.add_cookies([{"name": "lang", "value": lang, "url": hotspot.url + "/"}])
        return Phone(context, hotspot.url, slow=slow, name=name)

    yield make
    for context in contexts:
        context.close()


class BudgetTable:
    """Rows measured by the page tour; written to artifacts/budgets.{json,md} at the end."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, **row):
        self.rows.append(row)

    def write(self) -> None:
        if not self.rows:
            return
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "budgets.json").write_text(json.dumps(self.rows, indent=1) + "\n")
        from .budget_table import render_table
        (ARTIFACTS / "budgets.md").write_text(render_table(self.rows))


@pytest.fixture(scope="session")
def budgets():
    table = BudgetTable()
    yield table
    table.write()
