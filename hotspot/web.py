"""The web application: thin bottle routes over the catalog, the views and the media store.

Routes parse the request, call the catalog or the media module, and render. Pages are cached
per catalog version, language and address as gzip bytes, with an ``ETag`` so a phone that has
a page already gets a 304. Errors (``HotspotError``) become a friendly page in the reader's
language, never a traceback.

    >>> app = create_app(config, CatalogHolder(paths), MediaStore(paths.media), Translations.load())
"""

from __future__ import annotations

import ctypes
import functools
import gzip
import hashlib
import importlib
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

import bottle

from . import __version__
from .catalog import Catalog, load_catalog
from .config import UI_LANGUAGES, Config
from .errors import N_, BadRequest, HotspotError, NotFound
from .i18n import Translations, choose_language
from .library import DataPaths
from .media import MediaStore, prepare_media_response
from .views import Site, Views
from . import forms
from .contributions import ContributionQueue

log = logging.getLogger("hotspot.web")

STATIC_DIR = Path(__file__).parent / "static"
MAX_QUERY_STRING = 2048
MAX_QUERY_FIELDS = 20
MAX_PAGE = 100_000
LANG_COOKIE = "lang"
PUBLIC_FORMS = ("suggestion", "message", "report")
FORM_OVERHEAD = 1024 * 1024  # multipart headers and text fields, on top of the files


def request_body_limit(config: Config) -> int:
    """The largest request body: a full contribution plus form overhead. waitress is given the
    same limit, so a larger upload is cut off before it is even read."""
    return config.contributions.max_total_mb * 1024 * 1024 + FORM_OVERHEAD


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'self'; form-action 'self'; "
                               "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def release_free_memory() -> None:
    """Give memory freed after loading a catalog back to the system (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to do


class CatalogHolder:
    """Owns the catalog in memory and reloads it when its file is replaced (a new pack)."""

    def __init__(self, paths: DataPaths, check_every: float = 2.0):
        self.paths = paths
        self._check_every = check_every
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._catalog = load_catalog(paths.catalog, in_subprocess=True)
        release_free_memory()
        self._checked = time.monotonic()

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.paths.catalog)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @property
    def current(self) -> Catalog:
        """The catalog to serve now. A replaced file is loaded in a background thread; requests
        keep getting the old catalog until the new one is complete, then the new one."""
        now = time.monotonic()
        if now - self._checked >= self._check_every and self._lock.acquire(blocking=False):
            self._checked = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                threading.Thread(target=self._reload, args=(stamp,), daemon=True,
                                 name="catalog-reload").start()  # releases the lock when done
            else:
                self._lock.release()
        return self._catalog

    def _reload(self, stamp: tuple | None) -> None:
        try:
            catalog = load_catalog(self.paths.catalog, in_subprocess=True)
            self._catalog, self._stamp = catalog, stamp
            release_free_memory()
            log.info("Library reloaded: %s", catalog.version)
        except HotspotError as exc:
            self._stamp = stamp  # do not retry a broken file every 2 s; a new one has a new stamp
            log.error("Keeping the current library; the new one cannot be read: %s", exc.message)
        finally:
            self._lock.release()


class PageCache:
    """A small LRU of pages: ``(etag, gzip-compressed body)``."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str, bytes] | None:
        with self._lock:
            body = self._items.get(key)
            if body is not None:
                self._items.move_to_end(key)
            return body

    def put(self, key: str, body: tuple[str, bytes]) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._items[key] = body
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


class StaticFiles:
    """The stylesheet and icon, kept in memory with their gzip form and a content hash."""

    TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}

    def __init__(self, directory: Path = STATIC_DIR):
        self.files: dict[str, tuple[bytes, bytes, str, str]] = {}
        for path in sorted(directory.iterdir()):
            if path.suffix not in self.TYPES:
                continue
            raw = path.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()[:12]
            self.files[path.name] = (raw, gzip.compress(raw, 9, mtime=0), self.TYPES[path.suffix], digest)

    def url(self, name: str) -> str:
        return f"/static/{self.files[name][3]}/{name}"


def read_query(environ: dict) -> dict[str, str]:
    """The query string as ``{name: first value}``; bad encodings and floods are refused."""
    raw = environ.get("QUERY_STRING", "")
    if len(raw) > MAX_QUERY_STRING:
        raise BadRequest(N_("This address is too long."), status=414)
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict",
                          max_num_fields=MAX_QUERY_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(N_("This address contains characters we cannot read.")) from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in name + value):
            raise BadRequest(N_("This address contains characters we cannot read."))
        params.setdefault(name, value)
    return params


def parse_page(params: dict[str, str]) -> int:
    raw = params.get("page", "1") or "1"
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(N_("“%(page)s” is not a page number."), page=raw[:20])
    return int(raw)


def parse_search_text(params: dict[str, str], max_length: int) -> str:
    query = params.get("q", "").strip()
    if len(query) > max_length:
        raise BadRequest(N_("The search text is too long (at most %(max)s characters)."),
                         max=max_length)
    return query


def safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme, no host, no backslash tricks."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or len(target) > MAX_QUERY_STRING
            or any(ord(ch) < 32 for ch in target)):
        return "/"
    return target


# Feature modules that add routes (captive portal, caretaker console...). Each has
#   install_routes(app: bottle.Bottle, site: SiteTools) -> None
# and is listed here; see SiteTools for what they can use (rendering, errors, language).
ROUTE_MODULES: tuple[str, ...] = (
    "hotspot.portal",
    "hotspot.admin",
)


class SiteTools:
    """What feature modules get to build pages the same way the library's own pages are built."""

    def __init__(self, **tools):
        self.__dict__.update(tools)


def create_app(config: Config, catalogs: CatalogHolder, media: MediaStore,
               translations: Translations, *, queue: ContributionQueue | None = None,
               form_secret: bytes | None = None, services: dict | None = None) -> bottle.Bottle:
    """The WSGI app. Without ``queue`` the contribution forms say they are switched off.

    ``services`` holds collaborators of feature modules (e.g. the data paths), by name."""
    app = bottle.Bottle()
    static = StaticFiles()
    views = Views(translations, Site(css_url=static.url("site.css"), icon_url=static.url("icon.svg"),
                                     max_query=config.library.max_query_length))
    cache = PageCache(config.library.page_cache_entries)
    page_size = config.library.page_size
    default_lang = config.library.default_language

    # Phones send the same few Accept-Language headers over and over: remember the answers.
    @functools.lru_cache(maxsize=1024)
    def negotiated(cookie: str | None, accept_language: str | None) -> str:
        return choose_language(cookie, accept_language, default_lang)

    def language() -> str:
        environ = bottle.request.environ
        cookie = bottle.request.get_cookie(LANG_COOKIE) if "HTTP_COOKIE" in environ else None
        return negotiated(cookie, environ.get("HTTP_ACCEPT_LANGUAGE"))

    def current_path() -> str:
        query = bottle.request.environ.get("QUERY_STRING", "")
        path = bottle.request.path
        return f"{path}?{query}" if query and len(query) <= MAX_QUERY_STRING else path

    def send_html(body: bytes, etag: str | None, lang: str) -> bytes:
        response = bottle.response
        response.content_type = "text/html; charset=utf-8"
        response.set_header("Content-Language", lang)
        response.set_header("Vary", "Accept-Encoding, Accept-Language, Cookie")
        response.set_header("Cache-Control", "no-cache")
        if etag:
            response.set_header("ETag", etag)
        if "gzip" in bottle.request.headers.get("Accept-Encoding", ""):
            response.set_header("Content-Encoding", "gzip")
            return body
        return gzip.decompress(body)

    def page(key: str, render: Callable[[Catalog, str], str], catalog: Catalog | None = None) -> bytes:
        """Serve a cached page, a 304, or render it now. ``key`` names the page's content.

        ``render`` runs only on a cache miss, so searches and listings are computed once per
        catalog version, language and address.
        """
        catalog = catalog or catalogs.current
        lang = language()
        cache_key = f"{__version__}|{catalog.version}|{lang}|{key}"
        entry = cache.get(cache_key)
        etag = entry[0] if entry else '"' + hashlib.sha256(cache_key.encode()).hexdigest()[:24] + '"'
        if etag in bottle.request.environ.get("HTTP_IF_NONE_MATCH", ""):
            bottle.response.status = 304
            bottle.response.set_header("ETag", etag)
            bottle.response.set_header("Vary", "Accept-Encoding, Accept-Language, Cookie")
            return b""
        if entry is None:
            entry = (etag, gzip.compress(render(catalog, lang).encode("utf-8"), 6, mtime=0))
            cache.put(cache_key, entry)
        return send_html(entry[1], etag, lang)

    def error_page(status: int, detail: str) -> bytes:
        catalog = catalogs.current
        lang = language()
        bottle.response.status = status
        html = views.error(catalog, lang, current_path(), status, detail)
        return send_html(gzip.compress(html.encode("utf-8"), 6, mtime=0), None, lang)

    def handle_errors(callback):
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except HotspotError as exc:
                lang = language()
                for name, value in getattr(exc, "headers", {}).items():
                    bottle.response.set_header(name, value)
                return error_page(exc.status, exc.translated(lambda m: translations.gettext(lang, m)))
        return wrapper

    app.install(handle_errors)

    @app.hook("after_request")
    def security_headers():
        for name, value in SECURITY_HEADERS.items():
            if name not in bottle.response.headers:  # media may set a stricter sandbox policy
                bottle.response.set_header(name, value)

    @app.get("/")
    def home():
        read_query(bottle.request.environ)
        return page("home", lambda catalog, lang: views.home(catalog, lang))

    def listing(searching: bool) -> bytes:
        """Browse (filters only) or search (words and filters): the same page, one code path."""
        params = read_query(bottle.request.environ)
        catalog = catalogs.current
        filters = catalog.parse_filters(params)
        number = parse_page(params)
        query = parse_search_text(params, config.library.max_query_length) if searching else None

        def render(catalog: Catalog, lang: str) -> str:
            if query:
                result = catalog.search(query, filters, number, page_size)
            else:
                result = catalog.browse(filters, number, page_size)
            return views.listing(catalog, lang, current_path(), result, filters, query)
        key = f"{'search' if searching else 'browse'}|{query}|{sorted(filters.active().items())}|{number}"
        return page(key, render, catalog)

    app.get("/browse")(lambda: listing(searching=False))
    app.get("/search")(lambda: listing(searching=True))

    @app.get("/r/<resource_id>")
    def resource(resource_id: str):
        read_query(bottle.request.environ)
        catalog = catalogs.current
        item = catalog.get(resource_id)
        return page(f"resource|{resource_id}",
                    lambda catalog, lang: views.resource(catalog, lang, bottle.request.path, item),
                    catalog)

    @app.get("/about")
    def about():
        read_query(bottle.request.environ)
        return page("about", lambda catalog, lang: views.about(catalog, lang))

    # -- contributions ------------------------------------------------------------------------
    guard = forms.CsrfGuard(form_secret or secrets.token_bytes(32))
    limiter = forms.RateLimiter(config.contributions.rate_limit_per_hour)
    form_limits = forms.Limits(max_body=request_body_limit(config),
                               max_files=config.contributions.max_files,
                               max_total_mb=config.contributions.max_total_mb)

    def browser_id(create: bool) -> str | None:
        """A random id in a cookie that binds CSRF tokens to this browser (nothing else)."""
        value = bottle.request.get_cookie(forms.BROWSER_COOKIE)
        if value and len(value) <= 64 and value.isascii():
            return value
        if not create:
            return None
        value = forms.new_browser_id()
        bottle.response.set_cookie(forms.BROWSER_COOKIE, value, path="/", httponly=True,
                                   samesite="strict", max_age=30 * 24 * 3600)
        return value

    def form_page(kind: str, resource_id: str | None = None) -> bytes:
        read_query(bottle.request.environ)
        catalog = catalogs.current
        resource = catalog.get(resource_id) if resource_id else None
        lang = language()
        refusal = queue.refusal() if queue is not None else forms.switched_off()
        token = guard.issue(browser_id(create=True), kind)
        bottle.response.set_header("Cache-Control", "no-store")
        html = views.form(catalog, lang, current_path(), kind, token=token, resource=resource,
                          refusal=refusal.translated(lambda m: translations.gettext(lang, m))
                          if refusal else "", limits=config.contributions)
        return send_html(gzip.compress(html.encode("utf-8"), 6, mtime=0), None, lang)

    def receive(kind: str, resource_id: str | None = None) -> bytes:
        catalog = catalogs.current
        if resource_id:
            catalog.get(resource_id)
        if queue is None:
            raise forms.switched_off()
        if not limiter.allow(bottle.request.environ.get("REMOTE_ADDR", "")):
            raise forms.TooMany(N_("You have sent many contributions in a short time. "
                                   "Please wait a while and try again."))
        receipt = forms.submit(bottle.request.environ, queue, forms.FORMS[kind], guard,
                               browser_id(create=False), form_limits, language=language(),
                               resource_id=resource_id)
        lang = language()
        bottle.response.set_header("Cache-Control", "no-store")
        html = views.thanks(catalog, lang, current_path(), receipt.code)
        return send_html(gzip.compress(html.encode("utf-8"), 6, mtime=0), None, lang)

    @app.get("/contribute")
    def contribute_menu():
        read_query(bottle.request.environ)
        return page("contribute", lambda catalog, lang: views.contribute(catalog, lang))

    @app.get("/contribute/<kind>")
    def contribute_form(kind: str):
        if kind not in PUBLIC_FORMS:
            raise NotFound(N_("There is no page at this address."))
        return form_page(kind)

    @app.post("/contribute/<kind>")
    def contribute_post(kind: str):
        if kind not in PUBLIC_FORMS:
            raise NotFound(N_("There is no page at this address."))
        return receive(kind)

    @app.get("/r/<resource_id>/feedback")
    def feedback_form(resource_id: str):
        return form_page("feedback", resource_id)

    @app.post("/r/<resource_id>/feedback")
    def feedback_post(resource_id: str):
        return receive("feedback", resource_id)

    @app.get("/lang/<code>")
    def set_language(code: str):
        if code not in UI_LANGUAGES:
            raise NotFound(N_("This language is not available."))
        target = safe_next(read_query(bottle.request.environ).get("next"))
        bottle.response.set_cookie(LANG_COOKIE, code, max_age=365 * 24 * 3600, path="/",
                                   httponly=True, samesite="lax")
        bottle.response.status = 303
        bottle.response.set_header("Location", target)
        bottle.response.set_header("Cache-Control", "no-store")
        return b""

    @app.get("/media/<sha256>/<name>")
    def media_file(sha256: str, name: str):
        params = read_query(bottle.request.environ)
        entry = catalogs.current.files_by_sha.get(sha256)
        if entry is None:
            raise NotFound(N_("This file is not in the library."))
        result = prepare_media_response(
            media, sha256, media_type=entry.media_type, filename=entry.name,
            method=bottle.request.method, request_headers=bottle.request.headers,
            as_attachment=params.get("download") == "1")
        bottle.response.status = result.status
        for header, value in result.headers:
            bottle.response.set_header(header, value)
        # A file object is handed to waitress's wsgi.file_wrapper by bottle: the main loop
        # sends it, so a slow phone does not hold a worker thread.
        return result.file if result.file is not None else b""

    @app.get("/static/<version>/<name>")
    def static_file(version: str, name: str):
        if name not in static.files:
            raise NotFound(N_("This file is not in the library."))
        raw, compressed, content_type, digest = static.files[name]
        response = bottle.response
        response.content_type = content_type
        response.set_header("ETag", f'"{digest}"')
        response.set_header("Vary", "Accept-Encoding")
        if version == digest:
            response.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            response.set_header("Cache-Control", "no-cache")
        if f'"{digest}"' in bottle.request.headers.get("If-None-Match", ""):
            response.status = 304
            return b""
        if "gzip" in bottle.request.headers.get("Accept-Encoding", ""):
            response.set_header("Content-Encoding", "gzip")
            return compressed
        return raw

    @app.get("/favicon.ico")
    def favicon():
        bottle.response.status = 301
        bottle.response.set_header("Location", static.url("icon.svg"))
        return b""

    @app.get("/healthz")
    def healthz():
        catalog = catalogs.current
        bottle.response.content_type = "application/json"
        bottle.response.set_header("Cache-Control", "no-store")
        return json.dumps({"status": "ok", "version": __version__, "library": catalog.version,
                           "resources": len(catalog.resources)})

    def router_error(error: bottle.HTTPError) -> bytes:
        if error.status_code == 404:
            detail = translations.gettext(language(), N_("There is no page at this address."))
        elif error.status_code == 405:
            detail = ""
        else:
            if error.exception is not None:
                log.error("Error while serving %s: %r", bottle.request.path, error.exception)
            detail = ""
        for name, value in SECURITY_HEADERS.items():
            bottle.response.set_header(name, value)
        try:
            return error_page(error.status_code, detail)
        except Exception:  # the catalog itself failed: still answer plainly
            bottle.response.content_type = "text/plain; charset=utf-8"
            return b"The hotspot has a problem. Try again in a moment."

    for code in (400, 404, 405, 413, 500):
        app.error(code)(router_error)

    tools = SiteTools(config=config, catalogs=catalogs, media=media, queue=queue, views=views,
                      translations=translations, language=language, send_html=send_html,
                      page=page, error_page=error_page, current_path=current_path,
                      read_query=read_query, guard=guard, browser_id=browser_id,
                      services=services or {})
    for module_name in ROUTE_MODULES:
        importlib.import_module(module_name).install_routes(app, tools)
    return app
