"""The caretaker's console: ``/admin`` on a phone, and ``hotspot admin`` / ``hotspot status``.

Access: a password (scrypt, salted) set with ``hotspot admin set-password`` or, on first
start, on a one-time setup page that exists only while no password is set. A login gives a
signed, HttpOnly, SameSite=Strict cookie that expires; every action carries a CSRF token bound
to the session; wrong passwords make the next try wait longer and longer (kept in memory,
keyed by a salted hash, never by an address). Pages work without JavaScript on 320 px.

Actions never run as root: "restart" writes a small request file that a narrow privileged
helper (``hotspot admin handle-requests``, started by a systemd path unit) checks, records
and carries out (see docs/operators.md, "Caretaker console").

Usage counting hooks into page views here (``after_request``): only successful views of
resource pages, plays, downloads and the number of searches (see ``hotspot.usage``).

    $ hotspot admin set-password            # asks twice; --stdin reads one line
    $ hotspot status --json
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import getpass
import gzip
import hashlib
import hmac
import importlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import bottle

from .durable import fsync_directory, write_atomically
from .errors import N_, BadRequest, HotspotError, NotFound
from .forms import load_or_create_secret
from .library import DataPaths

log = logging.getLogger("hotspot.admin")

SESSION_COOKIE = "admin"
PASSWORD_FILE = "admin-password"
SECRET_FILE = "admin-secret"
REQUESTS_DIR = "admin-requests"
AUDIT_FILE = "admin-audit.log"
MIN_PASSWORD = 8
MAX_PASSWORD = 200
SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
FREE_ATTEMPTS = 3           # wrong passwords before the first wait
MAX_DELAY = 15 * 60         # seconds
GLOBAL_FREE_ATTEMPTS = 30   # wrong passwords from everyone before everyone waits
REQUEST_PENDING_SECONDS = 600
ALLOWED_REQUESTS = ("restart",)
PROGRESS_REFRESH_SECONDS = 5


class TooManyTries(HotspotError):
    status = 429
    exit_code = 1


class Unavailable(HotspotError):
    status = 503


# -- the password ------------------------------------------------------------------------------
def _write_private(path: Path, data: bytes) -> None:
    """Atomically, mode 0600; owned by the data directory's owner when written by root (so
    ``sudo hotspot admin set-password`` leaves a file the hotspot user can read)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        if os.geteuid() == 0:
            st = os.stat(path.parent)
            os.fchown(fd, st.st_uid, st.st_gid)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(path.parent)


class PasswordStore:
    """The console password as a salted scrypt hash in ``<data_dir>/admin-password``."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / PASSWORD_FILE
        self._lock = threading.Lock()

    def exists(self) -> bool:
        return self.path.exists()

    def _record(self) -> dict | None:
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.error("The console password file %s cannot be read.", self.path)
            return None
        return record if isinstance(record, dict) else None

    def version(self) -> str:
        """Changes when the password changes, so old sessions stop working."""
        record = self._record()
        return record.get("hash", "")[:16] if record else ""

    @staticmethod
    def check_new(password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise BadRequest(N_("The password must have at least %(count)s characters."),
                             count=MIN_PASSWORD)
        if len(password) > MAX_PASSWORD:
            raise BadRequest(N_("The password is too long."))

    def set(self, password: str, *, only_if_unset: bool = False) -> bool:
        self.check_new(password)
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)
        record = {"scheme": "scrypt", **SCRYPT, "salt": salt.hex(), "hash": digest.hex()}
        with self._lock:
            if only_if_unset and self.exists():
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_private(self.path, json.dumps(record).encode())
        return True

    def verify(self, password: str) -> bool:
        record = self._record()
        if not record or record.get("scheme") != "scrypt" or len(password) > MAX_PASSWORD:
            return False
        try:
            digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(record["salt"]),
                                    n=int(record["n"]), r=int(record["r"]), p=int(record["p"]),
                                    dklen=32)
            return hmac.compare_digest(digest.hex(), record["hash"])
        except (KeyError, ValueError, TypeError):
            return False


# -- sessions and the login throttle -----------------------------------------------------------
class Sessions:
    """Signed cookie values ``<expiry>.<nonce>.<mac>``; logging out revokes the nonce."""

    def __init__(self, secret: bytes, lifetime: int, clock=time.time):
        self._secret = secret
        self.lifetime = lifetime
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    def _mac(self, expiry: int, nonce: str, version: str) -> str:
        return hmac.new(self._secret, f"session|{expiry}|{nonce}|{version}".encode(),
                        hashlib.sha256).hexdigest()[:40]

    def issue(self, version: str) -> str:
        expiry = int(self._clock()) + self.lifetime
        nonce = secrets.token_urlsafe(16)
        return f"{expiry}.{nonce}.{self._mac(expiry, nonce, version)}"

    def check(self, value: str | None, version: str) -> str | None:
        """The session's nonce, or None if the value is missing, forged, expired or revoked."""
        if not value or len(value) > 200 or value.count(".") != 2 or not version:
            return None
        expiry_text, nonce, mac = value.split(".")
        if not expiry_text.isdigit() or int(expiry_text) < self._clock():
            return None
        if not hmac.compare_digest(mac, self._mac(int(expiry_text), nonce, version)):
            return None
        with self._lock:
            if nonce in self._revoked:
                return None
        return nonce

    def revoke(self, value: str | None) -> None:
        if not value or value.count(".") != 2:
            return
        expiry_text, nonce, _mac = value.split(".")
        now = self._clock()
        with self._lock:
            self._revoked = {n: e for n, e in self._revoked.items() if e >= now}
            if expiry_text.isdigit():
                self._revoked[nonce] = int(expiry_text)


class LoginThrottle:
    """After a few wrong passwords, each new try must wait longer (1 s, 2 s, 4 s ... 15 min).

    Kept in memory only. A client is a salted hash of its address (the salt is random per
    process): no address is kept. A second counter for everyone together stops guessing
    spread over many phones."""

    def __init__(self, clock=time.monotonic, max_clients: int = 10_000):
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        self._clients: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._global = (0, 0.0)
        self._max_clients = max_clients
        self._lock = threading.Lock()

    def _key(self, client: str) -> bytes:
        return hashlib.blake2b(client.encode(), key=self._salt, digest_size=16).digest()

    @staticmethod
    def _wait(failures: int, last: float, free: int, now: float) -> float:
        if failures < free:
            return 0.0
        delay = min(2 ** (failures - free), MAX_DELAY)
        return max(0.0, last + delay - now)

    def retry_after(self, client: str) -> int:
        """Seconds to wait before this client may try again (0: now)."""
        now = self._clock()
        with self._lock:
            failures, last = self._clients.get(self._key(client), (0, 0.0))
            wait = max(self._wait(failures, last, FREE_ATTEMPTS, now),
                       self._wait(*self._global, GLOBAL_FREE_ATTEMPTS, now))
        return int(wait) + (1 if wait % 1 else 0)

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            key = self._key(client)
            failures, _ = self._clients.pop(key, (0, 0.0))
            self._clients[key] = (failures + 1, now)
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            total, last = self._global
            if now - last > MAX_DELAY:
                total = 0  # a quiet quarter of an hour forgives everyone
            self._global = (total + 1, now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(self._key(client), None)


# -- privileged requests (restart) ---------------------------------------------------------------
def requests_dir(data_dir: Path) -> Path:
    return Path(data_dir) / REQUESTS_DIR


def write_request(data_dir: Path, action: str, clock=time.time) -> Path:
    """Ask the privileged helper for ``action``; refused while the same request is pending."""
    if action not in ALLOWED_REQUESTS:
        raise BadRequest(N_("This action is not possible here."))
    folder = requests_dir(data_dir)
    folder.mkdir(mode=0o750, exist_ok=True)
    path = folder / f"{action}.json"
    try:
        age = clock() - path.stat().st_mtime
    except FileNotFoundError:
        age = None
    if age is not None and age < REQUEST_PENDING_SECONDS:
        raise TooManyTries(N_("A restart was already asked for a moment ago. Wait a minute, "
                              "then look at this page again."))
    requested = datetime.datetime.fromtimestamp(clock(), datetime.timezone.utc)
    data = json.dumps({"action": action, "requested": requested.strftime("%Y-%m-%dT%H:%M:%SZ")})
    write_atomically(path, data.encode(), mode=0o640)
    log.info("The caretaker asked for: %s (waiting for the privileged helper).", action)
    return path


def audit(data_dir: Path, line: str) -> None:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(Path(data_dir) / AUDIT_FILE, "a", encoding="utf-8") as out:
        out.write(f"{stamp} {line}\n")
        out.flush()
        os.fsync(out.fileno())
    print(f"hotspot admin: {line}", flush=True)  # to the journal


def handle_requests(config, *, dry_run: bool = False, systemctl: str = "systemctl") -> list[str]:
    """The privileged helper: check each request file, record it, then carry it out.

    Only actions in ``ALLOWED_REQUESTS`` are done; what they touch (the units) comes from the
    configuration, never from the request. Returns the audit lines written."""
    data_dir = config.data_path
    folder = requests_dir(data_dir)
    lines: list[str] = []
    if not folder.is_dir():
        return lines
    for path in sorted(folder.glob("*.json")):
        try:
            raw = path.read_bytes()[:4097]
            request = json.loads(raw) if len(raw) <= 4096 else None
        except (OSError, ValueError):
            request = None
        action = request.get("action") if isinstance(request, dict) else None
        path.unlink(missing_ok=True)
        if (action not in ALLOWED_REQUESTS or path.stem != action
                or set(request) - {"action", "requested"}):
            line = f"refused request file {path.name}: not an allowed request"
            audit(data_dir, line)
            lines.append(line)
            continue
        units = [unit for unit in config.admin.restart_units
                 if unit.endswith((".service", ".target")) and "/" not in unit]
        line = (f"restart of {', '.join(units) or 'no units'} requested from the console at "
                f"{str(request.get('requested'))[:40]}" + (" (dry run)" if dry_run else ""))
        audit(data_dir, line)
        lines.append(line)
        if not dry_run:
            for unit in units:
                result = subprocess.run([systemctl, "restart", "--no-block", unit], check=False,
                                        capture_output=True, text=True, timeout=60)
                if result.returncode != 0:
                    fail = f"restart of {unit} failed: {result.stderr.strip()[:200]}"
                    audit(data_dir, fail)
                    lines.append(fail)
    return lines


# -- actions -------------------------------------------------------------------------------------
def optional_function(module_name: str, name: str):
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, name, None)


def action_sync(config, paths: DataPaths) -> str:
    run_sync = optional_function("hotspot.sync", "run_sync")
    if run_sync is None:
        return N_("Sync is not part of this hotspot's software yet. Carry contributions on a "
                  "USB drive instead.")
    if not getattr(getattr(config, "sync", None), "hub_url", ""):
        return N_("This hotspot has no hub address, so it cannot sync. Carry contributions on "
                  "a USB drive instead.")
    threading.Thread(target=_run_logged, args=(run_sync, config), name="sync-now",
                     daemon=True).start()
    return N_("Sync started. It can take a few minutes; this page shows the result when it "
              "is done.")


def _run_logged(function, *args) -> None:
    try:
        function(*args, out=lambda *_: None)
    except HotspotError as exc:
        log.error("Sync failed: %s", exc.message)
    except Exception as exc:  # noqa: BLE001 - a background thread must say why it died
        log.error("Sync failed: %r", exc)


def action_rollback(config, paths: DataPaths) -> tuple[str, dict]:
    from .packs import rollback

    from_version, to_version = rollback(paths)
    return N_("The library went back from version %(from)s to version %(to)s. Do it again to "
              "go forward."), {"from": from_version, "to": to_version}


def action_export(config, paths: DataPaths) -> tuple[str, dict]:
    """Ask the USB watcher (root) to copy the waiting contributions onto the drive that is
    plugged in, or onto the next one: the web server never touches a drive itself."""
    usb_state = optional_function("hotspot.usb_state", "request_outbox")
    if usb_state is None:
        return N_("Exporting to a USB drive from this page is not part of this hotspot's "
                  "software yet. On the command line: hotspot contributions export FOLDER"), {}
    usb_state(paths.root)
    audit(paths.root, "export requested: copy the contributions onto the USB drive")
    return N_("The contributions will be copied onto the USB drive that is plugged in, or onto "
              "the next one you plug in. The status page says when it is safe to remove."), {}


# -- the web console -----------------------------------------------------------------------------
def _static_url(name: str) -> str:
    path = Path(__file__).parent / "static" / name
    return f"/static/{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}/{name}"


class Console:
    """The routes' collaborators: who is logged in, the status, the usage counter."""

    def __init__(self, app: bottle.Bottle, site):
        self.site = site
        self.config = site.config
        self.paths = site.services.get("paths") or DataPaths(self.config.data_path)
        self.passwords = PasswordStore(self.paths.root)
        self.sessions = Sessions(load_or_create_secret(self.paths.root / SECRET_FILE)
                                 if self.paths.root.is_dir() else secrets.token_bytes(32),
                                 self.config.admin.session_hours * 3600)
        self.throttle = LoginThrottle()
        self.css_url = _static_url("admin.css")
        self.counter = None
        if self.config.usage.enabled:
            from .usage import USAGE_FILE, PeriodicWriter, UsageCounter

            self.counter = UsageCounter(self.paths.root / USAGE_FILE,
                                        keep_days=self.config.usage.keep_days)
            writer = PeriodicWriter(self.counter, self.config.usage.write_every_seconds)
            writer.start()
            atexit.register(writer.stop)
        self._file_owner: tuple[str, dict[str, Any]] | None = None

    # -- helpers
    def gettext(self, message: str) -> str:
        return self.site.translations.gettext(self.site.language(), message)

    def render(self, name: str, http_status: int = 200, **values) -> bytes:
        lang = self.site.language()
        html = self.site.views.render(name, self.site.catalogs.current, lang,
                                      self.site.current_path(), admin_css=self.css_url,
                                      **values)
        bottle.response.status = http_status
        body = self.site.send_html(gzip.compress(html.encode("utf-8"), 6, mtime=0), None, lang)
        bottle.response.set_header("Cache-Control", "no-store")
        return body

    def session(self) -> str | None:
        return self.sessions.check(bottle.request.get_cookie(SESSION_COOKIE),
                                   self.passwords.version())

    def require_session(self) -> str:
        nonce = self.session()
        if nonce is None:
            bottle.redirect("/admin/login" if self.passwords.exists() else "/admin/setup", 303)
        return nonce

    def start_session(self) -> None:
        bottle.response.set_cookie(SESSION_COOKIE, self.sessions.issue(self.passwords.version()),
                                   path="/admin", httponly=True, samesite="strict",
                                   max_age=self.sessions.lifetime)

    def check_form(self, binding: str | None, form: str) -> dict[str, str]:
        fields = {key: bottle.request.forms.getunicode(key) or ""
                  for key in list(bottle.request.forms.keys())[:10]}
        self.site.guard.check(binding, form, fields.get("csrf"))
        return fields

    def status(self) -> dict[str, Any]:
        from .status import build_status

        usage_days = self.counter.snapshot() if self.counter else None
        return build_status(self.config, self.paths, catalog=self.site.catalogs.current,
                            queue=self.site.queue, usage_days=usage_days)

    def resource_for_file(self, sha256: str):
        catalog = self.site.catalogs.current
        if self._file_owner is None or self._file_owner[0] != catalog.version:
            owners: dict[str, Any] = {}
            for resource in catalog.resources:
                for entry in resource.files:
                    owners.setdefault(entry.sha256, resource)
            self._file_owner = (catalog.version, owners)
        return self._file_owner[1].get(sha256)

    def count_usage(self) -> None:
        """after_request: count successful GETs of resource pages, searches and media."""
        request = bottle.request
        if self.counter is None or request.method != "GET":
            return
        if bottle.response.status_code not in (200, 206, 304):
            return
        route = request.environ.get("route.handle")
        if route is None:
            return
        args = request.environ.get("route.url_args") or {}
        rule = route.rule
        if rule == "/r/<resource_id>":
            resource = self.site.catalogs.current.by_id.get(args.get("resource_id"))
            if resource is not None:
                self.counter.count("view", resource_id=resource.id, themes=resource.themes,
                                   type_id=resource.type)
        elif rule == "/search":
            query = request.query
            if (query.get("q") or "").strip() and query.get("page", "1") in ("", "1"):
                self.counter.count("search")  # the number only, never the words
        elif rule == "/media/<sha256>/<name>":
            range_header = request.headers.get("Range", "")
            if range_header and not range_header.replace(" ", "").startswith("bytes=0-"):
                return  # the rest of a file already counted
            resource = self.resource_for_file(args.get("sha256", ""))
            if resource is None:
                return
            entry = next((f for f in resource.files if f.sha256 == args.get("sha256")), None)
            if request.query.get("download") == "1":
                event = "download"
            elif entry is not None and entry.kind in ("audio", "video"):
                event = "play"
            else:
                return  # images and documents shown inside pages are not counted
            self.counter.count(event, resource_id=resource.id, themes=resource.themes,
                               type_id=resource.type)


ACTIONS = ("sync", "rollback", "export", "restart")


def install_routes(app: bottle.Bottle, site) -> None:
    console = Console(app, site)

    @app.hook("after_request")
    def count_usage():
        try:
            console.count_usage()
        except Exception as exc:  # noqa: BLE001 - counting must never break a page
            log.warning("Usage counting failed: %r", exc)

    def client() -> str:
        return bottle.request.environ.get("REMOTE_ADDR", "")

    @app.get("/admin")
    @app.get("/admin/")
    def admin_home():
        site.read_query(bottle.request.environ)
        nonce = console.require_session()
        status = console.status()
        last = status["library"].get("last_import") or {}
        usb_busy = status.get("usb") is not None and not status["usb"].get("safe_to_remove", True)
        refresh = PROGRESS_REFRESH_SECONDS if last.get("state") == "running" or usb_busy else None
        return console.render("admin", status=status, token=site.guard.issue(nonce, "admin"),
                              refresh=refresh, logged_in=True)

    @app.get("/admin/status.json")
    def admin_json():
        if console.session() is None:
            bottle.response.status = 401
            bottle.response.content_type = "application/json"
            bottle.response.set_header("Cache-Control", "no-store")
            return json.dumps({"error": "login needed"})
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Cache-Control", "no-store")
        return json.dumps(console.status(), ensure_ascii=False, default=str)

    # -- login, logout, setup
    @app.get("/admin/login")
    def login_form(error: str = "", status: int = 200):
        if not console.passwords.exists():
            bottle.redirect("/admin/setup", 303)
        if console.session() is not None:
            bottle.redirect("/admin", 303)
        token = site.guard.issue(site.browser_id(create=True), "admin-login")
        return console.render("admin_login", http_status=status, token=token, error=error,
                              logged_in=False)

    @app.post("/admin/login")
    def login():
        wait = console.throttle.retry_after(client())
        if wait:
            exc = TooManyTries(N_("Too many wrong passwords. Wait %(seconds)s seconds, then "
                                  "try again."), seconds=wait)
            exc.headers = {"Retry-After": str(wait)}
            raise exc
        fields = console.check_form(site.browser_id(create=False), "admin-login")
        if not console.passwords.verify(fields.get("password", "")):
            console.throttle.failed(client())
            log.info("A wrong console password was given.")
            return login_form(error=console.gettext(N_("That password is not right.")),
                              status=403)
        console.throttle.succeeded(client())
        console.start_session()
        log.info("The caretaker logged in to the console.")
        bottle.redirect("/admin", 303)

    @app.post("/admin/logout")
    def logout():
        nonce = console.session()
        if nonce is not None:
            console.check_form(nonce, "admin")
            console.sessions.revoke(bottle.request.get_cookie(SESSION_COOKIE))
        bottle.response.delete_cookie(SESSION_COOKIE, path="/admin")
        bottle.redirect("/admin/login", 303)

    def setup_open() -> bool:
        return console.config.admin.setup_page and not console.passwords.exists()

    @app.get("/admin/setup")
    def setup_form(error: str = "", status: int = 200):
        if not setup_open():
            raise NotFound(N_("There is no page at this address."))
        token = site.guard.issue(site.browser_id(create=True), "admin-setup")
        return console.render("admin_setup", http_status=status, token=token, error=error,
                              logged_in=False, min_length=MIN_PASSWORD)

    @app.post("/admin/setup")
    def setup():
        if not setup_open():
            raise NotFound(N_("There is no page at this address."))
        fields = console.check_form(site.browser_id(create=False), "admin-setup")
        password = fields.get("password", "")
        if password != fields.get("confirm", ""):
            return setup_form(error=console.gettext(N_("The two passwords are not the same.")),
                              status=400)
        try:
            if not console.passwords.set(password, only_if_unset=True):
                raise NotFound(N_("There is no page at this address."))
        except BadRequest as exc:
            return setup_form(error=exc.translated(console.gettext), status=400)
        log.info("The console password was set on the setup page.")
        console.start_session()
        bottle.redirect("/admin", 303)

    # -- actions
    @app.post("/admin/action/<name>")
    def action(name: str):
        if name not in ACTIONS:
            raise NotFound(N_("There is no page at this address."))
        nonce = console.session()
        if nonce is None:
            raise HotspotError(N_("Please log in again."), status=403)
        console.check_form(nonce, "admin")
        params: dict = {}
        ok = True
        try:
            if name == "sync":
                message = action_sync(console.config, console.paths)
            elif name == "rollback":
                message, params = action_rollback(console.config, console.paths)
                log.info("The caretaker rolled the library back.")
            elif name == "export":
                message, params = action_export(console.config, console.paths)
            else:
                write_request(console.paths.root, "restart")
                message = N_("The hotspot will restart in a moment. The pages stop for about a "
                             "minute; then open this page again.")
        except HotspotError as exc:
            ok, message, params = False, exc.template, exc.params
            bottle.response.status = exc.status
        text = console.gettext(message)
        text = text % params if params else text
        return console.render("admin_done", http_status=bottle.response.status_code, message=text,
                              ok=ok, logged_in=True, token=site.guard.issue(nonce, "admin"))

    @app.get("/admin/import-report")
    def import_report():
        console.require_session()
        try:
            data = console.paths.import_progress.read_bytes()
        except FileNotFoundError:
            raise NotFound(N_("No library update has been made on this hotspot yet.")) from None
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Content-Disposition",
                                   'attachment; filename="import-report.json"')
        bottle.response.set_header("Cache-Control", "no-store")
        return data

    # -- the invite poster
    @app.get("/admin/poster")
    def poster_page():
        from .config import UI_LANGUAGES
        from .poster import SIZES, instruction_lines, make_poster

        params = site.read_query(bottle.request.environ)
        console.require_session()
        size = params.get("size") or "a4"
        if size not in SIZES:
            raise BadRequest(N_("This address is not right."))
        langs = [code for code in (params.get("langs") or site.language()).split(",")
                 if code in UI_LANGUAGES][:4] or [site.language()]
        poster = make_poster(console.config, size)
        translations = site.translations
        blocks = [(code, instruction_lines(poster, lambda m, c=code: translations.gettext(c, m)))
                  for code in langs]
        return console.render("admin_poster", poster=poster, size=size, blocks=blocks,
                              langs=langs, logged_in=True)

    @app.get("/admin/poster/<which>.svg")
    def poster_svg(which: str):
        from .poster import make_poster

        console.require_session()
        poster = make_poster(console.config)
        if which not in ("wifi", "url"):
            raise NotFound(N_("There is no page at this address."))
        bottle.response.content_type = "image/svg+xml"
        bottle.response.set_header("Cache-Control", "no-store")
        svg = poster.wifi_svg if which == "wifi" else poster.url_svg
        return ('<?xml version="1.0" encoding="utf-8"?>\n' + svg).encode("utf-8")


# -- the command line ---------------------------------------------------------------------------
def add_commands(commands) -> dict:
    admin = commands.add_parser("admin", help="the caretaker console")
    actions = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    setpw = actions.add_parser("set-password", help="set the console password (asked twice)")
    setpw.add_argument("--stdin", action="store_true",
                       help="read the password from one line of standard input")
    handle = actions.add_parser(
        "handle-requests", help="(privileged helper, run by systemd as root) carry out the "
                                "console's restart requests, recording each one")
    handle.add_argument("--dry-run", action="store_true",
                        help="check and record requests without restarting anything")
    status = commands.add_parser("status", help="the hotspot's status at a glance")
    status.add_argument("--json", action="store_true", help="print JSON")
    return {"admin": cmd_admin, "status": cmd_status}


def cmd_admin(args: argparse.Namespace, config) -> int:
    paths = DataPaths(config.data_path)
    if args.admin_command == "set-password":
        if args.stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("New console password: ")
            if getpass.getpass("The same password again: ") != password:
                raise BadRequest("The two passwords are not the same.")
        if not paths.root.is_dir():
            raise HotspotError(f"The data directory {paths.root} does not exist.")
        PasswordStore(paths.root).set(password)
        print("Console password set. Open /admin on the hotspot to log in.")
        return 0
    for line in handle_requests(config, dry_run=args.dry_run):
        pass  # each line is already printed (journal) and in the audit file
    return 0


def cmd_status(args: argparse.Namespace, config) -> int:
    from .status import build_status, render_text

    logging.getLogger("hotspot").addHandler(logging.NullHandler())
    status = build_status(config, DataPaths(config.data_path))
    if args.json:
        print(json.dumps(status, ensure_ascii=False, indent=2, default=str))
    else:
        sys.stdout.write(render_text(status))
    return 0
