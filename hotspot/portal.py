"""The captive portal: phones that join the hotspot open the library by themselves.

Every name a phone looks up answers with the hotspot's address (the DNS drop-in written by
``hotspot.provision``), so each operating system's connectivity check lands here. Until the
person taps "Open the library", a check gets an answer that its OS reads as "sign in to this
network", which makes the phone open its portal window on ``/portal``. After that tap, checks
from that phone get the answer each OS expects from the real internet, so the phone stays on the
Wi-Fi and its normal browser reaches the library. The policy per OS and its sources are in
``docs/captive-portal.md``.

Which phones tapped is kept in memory only, as salted hashes of their addresses, forgotten
after ``portal.remember_minutes`` and at every restart; nothing is logged.

Also here: any request whose Host header names another site is sent to the library's home
(``302``), and the RFC 8908 Captive Portal API document is served at ``/captive-portal/api``.

    >>> policy = PortalPolicy.from_config(config)
    >>> policy.probe_response("/generate_204", released=False)
    ProbeAnswer(status=302, location='http://10.42.0.1/portal', ...)
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import bottle

from .config import UI_LANGUAGES, Config
from .errors import N_

API_PATH = "/captive-portal/api"
PORTAL_PATH = "/portal"
CONTINUE_PATH = "/portal/continue"

# What each OS's check expects from the real internet. Served only to phones that were let in.
APPLE_SUCCESS = b"<HTML><HEAD><TITLE>Success</TITLE></HEAD><BODY>Success</BODY></HTML>"
FIREFOX_CANONICAL = (b'<meta http-equiv="refresh" '
                     b'content="0;url=https://support.mozilla.org/kb/captive-portal"/>')


@dataclass(frozen=True)
class Probe:
    """One connectivity check: the OS that sends it and the "online" answer it expects."""

    os: str
    status: int
    body: bytes = b""
    content_type: str = "text/plain"


PROBES: dict[str, Probe] = {
    # Android, ChromeOS and Chrome: connectivitycheck.gstatic.com, www.google.com,
    # clients3.google.com, connectivitycheck.android.com...; 204 and an empty body mean online.
    "/generate_204": Probe("android", 204),
    "/gen_204": Probe("android", 204),
    # Apple (iOS, iPadOS, macOS): captive.apple.com and www.apple.com; the Success page.
    "/hotspot-detect.html": Probe("apple", 200, APPLE_SUCCESS, "text/html"),
    "/library/test/success.html": Probe("apple", 200, APPLE_SUCCESS, "text/html"),
    # Windows NCSI (www.msftconnecttest.com and, before Windows 10, www.msftncsi.com).
    "/connecttest.txt": Probe("windows", 200, b"Microsoft Connect Test"),
    "/ncsi.txt": Probe("windows", 200, b"Microsoft NCSI"),
    # Windows opens its browser on /redirect when it finds a portal: always the portal page.
    "/redirect": Probe("windows-browser", 302),
    # Firefox (detectportal.firefox.com).
    "/canonical.html": Probe("firefox", 200, FIREFOX_CANONICAL, "text/html"),
    "/success.txt": Probe("firefox", 200, b"success\n"),
}


@dataclass(frozen=True)
class ProbeAnswer:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    location: str | None = None
    headers: dict = field(default_factory=dict)


class ReleasedPhones:
    """Phones that tapped "Open the library", in memory only, forgotten after ``minutes``.

    Keyed by a hash of the address salted with a random per-process key (as the forms' rate
    limit does): this process's memory holds no address, and a restart forgets everything.
    """

    def __init__(self, minutes: int, clock=time.monotonic, max_phones: int = 10_000):
        self.seconds = minutes * 60
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        self._until: OrderedDict[bytes, float] = OrderedDict()
        self._max = max_phones
        self._lock = threading.Lock()

    def _key(self, address: str) -> bytes:
        return hashlib.blake2b(address.encode(), key=self._salt, digest_size=16).digest()

    def release(self, address: str) -> None:
        if not address or self.seconds <= 0:
            return
        with self._lock:
            key = self._key(address)
            self._until.pop(key, None)
            self._until[key] = self._clock() + self.seconds
            while len(self._until) > self._max:
                self._until.popitem(last=False)

    def is_released(self, address: str) -> bool:
        if not address:
            return False
        with self._lock:
            key = self._key(address)
            until = self._until.get(key)
            if until is None:
                return False
            if until <= self._clock():
                del self._until[key]
                return False
            return True


class PortalPolicy:
    """Which hosts are ours and what each check gets; knows nothing about HTTP frameworks."""

    def __init__(self, address: str, port: int, hostname: str = "", https_url: str = "",
                 extra_hosts: tuple[str, ...] = ()):
        self.address = address
        self.hostname = hostname
        self.https_url = https_url
        self.set_port(port)
        self.known_names = {name for name in ("localhost", hostname, *extra_hosts) if name}

    def set_port(self, port: int) -> None:
        """Port 0 (a free port, in tests) is learned from the first request."""
        self.port = port
        suffix = "" if port in (80, 0) else f":{port}"
        self.base_url = f"http://{self.address}{suffix}"
        self.home_url = self.base_url + "/"
        self.portal_url = self.base_url + PORTAL_PATH

    @classmethod
    def from_config(cls, config: Config, port: int | None = None) -> "PortalPolicy":
        host = config.server.host
        extra = () if host in ("0.0.0.0", "::", "") else (host,)
        return cls(config.network.address, config.server.port if port is None else port,
                   config.portal.hostname, config.portal.https_url, extra)

    def is_our_host(self, host_header: str | None) -> bool:
        """A Host we serve: an IP address, ``localhost``, or the configured name. Any other name
        is a site the phone wanted on the internet (the DNS answered it with our address)."""
        if not host_header:
            return True  # HTTP/1.0 without Host: nothing to redirect away from
        host = host_header.strip().lower()
        if host.startswith("["):
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        host = host.rstrip(".")
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            return host in self.known_names

    def probe_response(self, path: str, released: bool) -> ProbeAnswer | None:
        """The answer to a connectivity check at ``path``, or None when ``path`` is not one."""
        probe = PROBES.get(path)
        if probe is None:
            return None
        no_store = {"Cache-Control": "no-store, no-cache, must-revalidate", "Pragma": "no-cache"}
        if probe.os == "windows-browser":
            target = self.home_url if released else self.portal_url
            return ProbeAnswer(302, location=target, headers=no_store)
        if released:
            return ProbeAnswer(probe.status, probe.body, probe.content_type, headers=no_store)
        # Not let in yet: a redirect to the portal page. Every OS reads it as a captive portal
        # and follows it in its portal window (docs/captive-portal.md).
        return ProbeAnswer(302, location=self.portal_url, headers=no_store)

    def api_document(self, released: bool) -> dict:
        """The RFC 8908 Captive Portal API state for one phone."""
        portal = (self.https_url + PORTAL_PATH) if self.https_url else self.portal_url
        document = {"captive": not released, "user-portal-url": portal,
                    "venue-info-url": self.base_url + "/about"}
        if released:
            document["can-extend-session"] = False
        return document


# The portal page says, in every UI language at once, how to open the library in the normal
# browser: the phone's language may not be the reader's.
PORTAL_TEXTS = (
    N_("You are connected to the community library."),
    N_("To read and download in your usual browser (Chrome, Safari, Firefox...), open it and "
       "type this address:"),
    N_("This small window may not save downloads. Your usual browser can."),
)


def install_routes(app: bottle.Bottle, site) -> None:
    config: Config = site.config
    if not config.portal.enabled:
        return
    policy = PortalPolicy.from_config(config)
    released = ReleasedPhones(config.portal.remember_minutes)

    def client() -> str:
        return bottle.request.environ.get("REMOTE_ADDR", "")

    def answer(result: ProbeAnswer) -> bytes:
        response = bottle.response
        response.status = result.status
        for name, value in result.headers.items():
            response.set_header(name, value)
        if result.location:
            response.set_header("Location", result.location)
            response.content_type = "text/plain"
            return b""
        response.content_type = result.content_type + (
            "; charset=utf-8" if result.content_type.startswith("text/") and result.body else "")
        return result.body

    def probe_or_none() -> bytes | None:
        result = policy.probe_response(bottle.request.path, released.is_released(client()))
        return None if result is None else answer(result)

    @app.hook("before_request")
    def other_sites_go_home():
        environ = bottle.request.environ
        if policy.port == 0 and str(environ.get("SERVER_PORT", "")).isdigit():
            policy.set_port(int(environ["SERVER_PORT"]))
        if policy.is_our_host(environ.get("HTTP_HOST")):
            return
        path = environ.get("PATH_INFO", "")
        if path in PROBES or path == API_PATH:
            return  # answered by their routes below, whatever the Host
        raise bottle.HTTPResponse(status=302, body=b"", Location=policy.home_url,
                                  **{"Cache-Control": "no-store", "Content-Type": "text/plain"})

    for probe_path in PROBES:
        app.route(probe_path, ["GET", "HEAD"], probe_or_none)

    @app.get(API_PATH)
    def captive_api():
        bottle.response.content_type = "application/captive+json"
        bottle.response.set_header("Cache-Control", "private, no-store")
        return json.dumps(policy.api_document(released.is_released(client())))

    @app.get(PORTAL_PATH)
    def portal_page():
        site.read_query(bottle.request.environ)
        catalog = site.catalogs.current
        lang = site.language()
        translations = site.translations

        def texts(code: str) -> list[str]:
            return [translations.gettext(code, message) for message in PORTAL_TEXTS]

        # Reader's language first, then the others.
        order = [lang] + [code for code in UI_LANGUAGES if code != lang]
        html = site.views.render(
            "portal", catalog, lang, PORTAL_PATH, address=policy.home_url,
            continue_url=policy.base_url + CONTINUE_PATH, home_url=policy.home_url,
            blocks=[(code, texts(code)) for code in order])
        bottle.response.set_header("Cache-Control", "no-store")
        return site.send_html(gzip.compress(html.encode("utf-8"), 6, mtime=0), None, lang)

    @app.get(CONTINUE_PATH)
    def portal_continue():
        released.release(client())
        bottle.response.status = 303
        bottle.response.set_header("Location", policy.home_url)
        bottle.response.set_header("Cache-Control", "no-store")
        return b""
