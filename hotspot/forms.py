"""Receiving contribution forms: CSRF tokens, the honeypot, a rate limit kept only in memory,
and a streaming multipart reader that hands fields and file chunks to an envelope writer.

Nothing here stores who sent what: the rate limit keys on a salted hash of the address that
lives only in this process's memory, and is never written anywhere.

    >>> guard = CsrfGuard(load_or_create_secret(data_dir / "form-secret"))
    >>> token = guard.issue(browser_id, "report")
    >>> guard.check(browser_id, "report", token)          # raises BadRequest if forged
    >>> receipt = receive_form(environ, FORMS["report"], writer, guard, browser_id, limits)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import multipart

from .contributions import ContributionQueue, Receipt, TooLarge, receipt_code
from .durable import write_atomically
from .errors import N_, BadRequest, HotspotError

READ_CHUNK = 64 * 1024
TOKEN_LIFETIME = 24 * 3600
HONEYPOT_FIELD = "website"
CSRF_FIELD = "csrf"
BROWSER_COOKIE = "form"


@dataclass(frozen=True)
class FormSpec:
    """The fields a form accepts: name -> (required, max characters); and how many files."""

    kind: str
    fields: dict[str, tuple[bool, int]]
    max_files: int = 0
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


FORMS = {
    "suggestion": FormSpec("suggestion", {
        "title": (True, 300), "link": (False, 2000), "why": (True, 5000),
        "language": (False, 40), "theme": (False, 80), "name": (False, 200), "contact": (False, 300),
    }, max_files=1),
    "feedback": FormSpec("feedback", {
        "useful": (True, 3), "comment": (False, 5000),
    }, choices={"useful": ("yes", "no")}),
    "message": FormSpec("message", {
        "subject": (False, 300), "message": (True, 10000), "reply": (False, 300), "name": (False, 200),
    }),
    "report": FormSpec("report", {
        "what": (True, 10000), "place": (False, 300), "when": (False, 100),
        "name": (False, 200), "contact": (False, 300),
    }, max_files=-1),  # -1: as many as contributions.max_files allows
}


class TooMany(BadRequest):
    status = 429


def switched_off() -> HotspotError:
    return HotspotError(N_("Contributions are switched off on this hotspot."), status=503)


# -- CSRF -------------------------------------------------------------------------------------
def load_or_create_secret(path: Path) -> bytes:
    """A random secret kept in the data directory, so forms keep working after a restart."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    write_atomically(path, secret, mode=0o600)
    return secret


class CsrfGuard:
    """Tokens bound to a random per-browser cookie, a form name and an expiry, signed with HMAC.

    Nothing is stored on the server: a token is ``<expiry>.<hmac>``.
    """

    def __init__(self, secret: bytes, clock=time.time):
        self._secret = secret
        self._clock = clock

    def _mac(self, browser_id: str, form: str, expiry: int) -> str:
        message = f"{browser_id}|{form}|{expiry}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def issue(self, browser_id: str, form: str) -> str:
        expiry = int(self._clock()) + TOKEN_LIFETIME
        return f"{expiry}.{self._mac(browser_id, form, expiry)}"

    def check(self, browser_id: str | None, form: str, token: str | None) -> None:
        problem = BadRequest(N_("This form has expired or did not come from this hotspot. "
                                "Please open the form again and send it once more."))
        if not browser_id or not token or "." not in token or len(token) > 100:
            raise problem
        expiry_text, mac = token.split(".", 1)
        if not expiry_text.isdigit() or int(expiry_text) < self._clock():
            raise problem
        if not hmac.compare_digest(mac, self._mac(browser_id, form, int(expiry_text))):
            raise problem


def new_browser_id() -> str:
    return secrets.token_urlsafe(18)


# -- rate limit -------------------------------------------------------------------------------
class RateLimiter:
    """At most ``per_hour`` contributions per client, counted in memory only.

    Clients are keyed by a salted hash of their address; the salt is random per process, so
    even this process's memory holds no address, and a restart forgets everything.
    """

    def __init__(self, per_hour: int, clock=time.monotonic, max_clients: int = 10_000):
        self.per_hour = per_hour
        self._clock = clock
        self._salt = secrets.token_bytes(16)
        self._seen: OrderedDict[bytes, deque[float]] = OrderedDict()
        self._max_clients = max_clients
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        key = hashlib.blake2b(client.encode(), key=self._salt, digest_size=16).digest()
        now = self._clock()
        with self._lock:
            times = self._seen.pop(key, deque())
            while times and times[0] <= now - 3600:
                times.popleft()
            allowed = len(times) < self.per_hour
            if allowed:
                times.append(now)
            self._seen[key] = times
            while len(self._seen) > self._max_clients:
                self._seen.popitem(last=False)
            return allowed


# -- streaming multipart ----------------------------------------------------------------------
class EnvelopeSink(Protocol):
    """Where attached files go, chunk by chunk (the contribution's envelope writer)."""

    def begin_attachment(self, filename: str, declared_type: str | None) -> None: ...
    def write_attachment(self, chunk: bytes) -> None: ...
    def end_attachment(self) -> None: ...


@dataclass(frozen=True)
class Limits:
    max_body: int      # bytes of the whole request (waitress has the same limit)
    max_files: int
    max_total_mb: int  # as configured, for messages


@dataclass
class FormResult:
    honeypot: bool = False
    files: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def receive_form(environ: dict, spec: FormSpec, sink: EnvelopeSink, guard: CsrfGuard,
                 browser_id: str | None, limits: Limits) -> FormResult:
    """Read a multipart form: text fields are checked against ``spec`` and returned; files go
    to ``sink`` chunk by chunk (never whole in memory, never on disk in clear).

    The CSRF token must come before any file (it is the form's first field). Raises
    BadRequest or TooLarge; the caller then aborts the envelope, so nothing is kept.
    """
    content_type = environ.get("CONTENT_TYPE", "")
    kind, options = multipart.parse_options_header(content_type)
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise BadRequest(N_("This form was not sent correctly. Please try again."))
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        raise BadRequest(N_("This form was not sent correctly. Please try again.")) from None
    if length > limits.max_body:
        raise TooLarge(N_("The contribution is too large: all its files and texts together "
                          "can be up to %(limit_mb)s MB."), limit_mb=limits.max_total_mb)
    max_files = limits.max_files if spec.max_files < 0 else min(spec.max_files, limits.max_files)
    result = FormResult()
    seen_csrf = False
    text_parts: dict[str, bytearray] = {}
    current: multipart.MultipartSegment | None = None
    in_file = False
    stream = environ["wsgi.input"]
    remaining = length if length >= 0 else limits.max_body + 1
    received = 0
    parser = multipart.PushMultipartParser(options["boundary"], content_length=length,
                                           max_header_count=8, max_segment_count=64)
    try:
        with parser:
            while not parser.closed:
                chunk = stream.read(min(READ_CHUNK, remaining)) if remaining > 0 else b""
                remaining -= len(chunk)
                received += len(chunk)
                if received > limits.max_body:
                    raise TooLarge(N_("The contribution is too large: all its files and texts "
                                      "together can be up to %(limit_mb)s MB."),
                                   limit_mb=limits.max_total_mb)
                for event in parser.parse(chunk):
                    if isinstance(event, multipart.MultipartSegment):
                        current = event
                        if event.filename is not None:
                            if event.name != "files":
                                raise BadRequest(N_("This form was not sent correctly. Please try again."))
                            if not seen_csrf:
                                raise BadRequest(N_("This form has expired or did not come from this "
                                                    "hotspot. Please open the form again and send it once more."))
                            if not event.filename:
                                in_file = False  # an empty file input: nothing chosen
                                current = None
                                continue
                            result.files += 1
                            if result.files > max_files:
                                raise TooLarge(N_("Too many files: a contribution can have up "
                                                  "to %(count)s."), count=max_files)
                            sink.begin_attachment(event.filename[-200:], event.content_type)
                            in_file = True
                        else:
                            in_file = False
                            text_parts[event.name] = bytearray()
                    elif event is None:
                        if in_file:
                            sink.end_attachment()
                        elif current is not None:
                            name = current.name
                            value = _decode(text_parts.pop(name, bytearray()))
                            seen_csrf |= _handle_field(name, value, spec, guard, browser_id, result)
                        in_file = False
                        current = None
                    elif current is not None:
                        if in_file:
                            sink.write_attachment(event)
                        else:
                            part = text_parts[current.name]
                            part += event
                            if len(part) > 40_000:
                                raise TooLarge(N_("A text you wrote is too long."))
                if not chunk and not parser.closed:
                    raise BadRequest(N_("The form arrived incomplete. Please try again."))
    except multipart.ParserLimitReached:
        raise TooLarge(N_("This form was not sent correctly. Please try again.")) from None
    except multipart.ParserError:
        raise BadRequest(N_("This form was not sent correctly. Please try again.")) from None
    if not seen_csrf:
        raise BadRequest(N_("This form has expired or did not come from this hotspot. "
                            "Please open the form again and send it once more."))
    if not result.honeypot:
        for name, (required, _limit) in spec.fields.items():
            if required and not result.fields.get(name, "").strip():
                raise BadRequest(N_("Please fill in the fields marked as needed."))
    return result


def submit(environ: dict, queue: ContributionQueue, spec: FormSpec, guard: CsrfGuard,
           browser_id: str | None, limits: Limits, *, language: str,
           resource_id: str | None = None) -> Receipt:
    """Receive one contribution and keep it: the envelope is durable before this returns.

    A filled honeypot gets a receipt that looks real, but nothing is kept.
    """
    queue.check_accepting()
    writer = queue.new(spec.kind, language, resource_id=resource_id)
    try:
        result = receive_form(environ, spec, writer, guard, browser_id, limits)
        if result.honeypot:
            writer.abort()
            return Receipt(uuid="", code=receipt_code(str(uuid.uuid4())))
        for name, value in result.fields.items():
            if value:
                writer.add_field(name, value)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _decode(raw: bytes | bytearray) -> str:
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(N_("This form was not sent correctly. Please try again.")) from None
    return text.replace("\r\n", "\n")


def _handle_field(name: str, value: str, spec: FormSpec, guard: CsrfGuard,
                  browser_id: str | None, result: FormResult) -> bool:
    """Check one text field; returns True for a valid CSRF token."""
    if name == CSRF_FIELD:
        guard.check(browser_id, spec.kind, value)
        return True
    if name == HONEYPOT_FIELD:
        result.honeypot = bool(value.strip())
        return False
    if name not in spec.fields:
        raise BadRequest(N_("This form was not sent correctly. Please try again."))
    limit = spec.fields[name][1]
    if len(value) > limit:
        raise TooLarge(N_("A text you wrote is too long."))
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise BadRequest(N_("This form was not sent correctly. Please try again."))
    allowed = spec.choices.get(name)
    if allowed and value and value not in allowed:
        raise BadRequest(N_("This form was not sent correctly. Please try again."))
    result.fields[name] = value.strip()
    return False

