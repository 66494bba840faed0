"""The hub's HTTP side: the API hotspots call, and a small staff view behind a login.

``create_hub_app(hub, identities=None)`` builds a ``bottle.Bottle``; routes parse the request,
call one method of the registry, inbox, uploads or pack shelf, and answer. API errors are JSON
``{"error": message}`` with the error's status; nothing here knows about files.

API (every call but OPTIONS needs ``Authorization: Bearer <hotspot token>``)::

    GET   /api/v1/hello                           who am I (the probe)
    GET   /api/v1/envelopes/<uuid>?sha256=<hex>   200 + signed receipt, 404, or 409
    POST  /api/v1/uploads                         tus creation (Upload-Length, Upload-Metadata)
    HEAD  /api/v1/uploads/<id>                    tus: confirmed Upload-Offset
    PATCH /api/v1/uploads/<id>                    tus: append at Upload-Offset (+ checksum)
    GET   /api/v1/packs/<library>/newest?installed=<version>
    GET   /api/v1/packs/<library>/<name>          the pack tar, with Range
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import time
from urllib.parse import quote

import bottle

from hotspot.contributions import receipt_code
from hotspot.errors import BadRequest, HotspotError, NotFound, RangeNotSatisfiable

from .inbox import Described
from .uploads import CHECKSUM_ALGORITHMS, TUS_VERSION

SESSION_COOKIE = "hub_staff"
SESSION_SECONDS = 8 * 3600
_CHUNK = 256 * 1024


USAGE_MAX_BYTES = 2 * 1024 * 1024


def _json(value, status: int = 200, headers: dict | None = None) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(json.dumps(value), status=status, headers={
        "Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})})


def _tus_headers(extra: dict | None = None) -> dict:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **(extra or {})}


def _metadata(header: str) -> dict[str, str]:
    """tus Upload-Metadata: comma-separated ``key base64value`` pairs."""
    values = {}
    for pair in filter(None, (p.strip() for p in (header or "").split(","))):
        key, _, value = pair.partition(" ")
        try:
            values[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("Upload-Metadata is not valid base64.") from None
    return values


def create_hub_app(hub, identities: list | None = None, *,
                   session_secret: bytes | None = None) -> bottle.Bottle:
    """The hub's WSGI app. ``hub`` has ``registry``, ``inbox``, ``uploads``, ``shelf``."""
    app = bottle.Bottle()
    secret = session_secret or secrets.token_bytes(32)

    def api(route_function):
        def wrapper(*args, **kwargs):
            try:
                return route_function(*args, **kwargs)
            except HotspotError as exc:
                return _json({"error": exc.message}, exc.status, _tus_headers())
        wrapper.__name__ = route_function.__name__
        return wrapper

    def hotspot():
        header = bottle.request.get_header("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        return hub.registry.authenticate(token)

    @app.get("/api/v1/hello")
    @api
    def hello():
        who = hotspot()
        return _json({"hub": hub.inbox.hub_key.public_key().key_id_hex, "hotspot": who.id,
                      "name": who.name})

    @app.post("/api/v1/usage")
    @api
    def usage():
        who = hotspot()
        raw = bottle.request.body.read(USAGE_MAX_BYTES + 1)
        if len(raw) > USAGE_MAX_BYTES:
            raise BadRequest("The usage report is too large.")
        try:
            days = json.loads(raw)
        except ValueError:
            raise BadRequest("The usage report is not JSON.") from None
        return _json({"stored_days": hub.usage.store(who.id, days)})

    @app.get("/api/v1/envelopes/<uuid>")
    @api
    def envelope(uuid):
        hotspot()
        receipt = hub.inbox.check_known(uuid, bottle.request.query.get("sha256", ""))
        if receipt is None:
            raise NotFound("The hub does not hold envelope %(uuid)s yet.", uuid=uuid)
        return _json({"status": "already had it", "receipt": receipt})

    @app.route("/api/v1/uploads", method="OPTIONS")
    def options():
        return bottle.HTTPResponse(status=204, headers=_tus_headers({
            "Tus-Version": TUS_VERSION, "Tus-Extension": "creation,checksum",
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            "Tus-Max-Size": str(hub.uploads.max_size)}))

    @app.post("/api/v1/uploads")
    @api
    def create():
        who = hotspot()
        meta = _metadata(bottle.request.get_header("Upload-Metadata", ""))
        length = bottle.request.get_header("Upload-Length")
        if not (length or "").isdigit():
            raise BadRequest("Upload-Length is required (tus creation).")
        described = Described.check(meta.get("uuid"), meta.get("sha256"), length,
                                    meta.get("kind"), meta.get("day"),
                                    meta.get("encrypted", "1"))
        known = hub.inbox.check_known(described.uuid, described.sha256)
        if known is not None:
            return _json({"status": "already had it", "receipt": known}, 200, _tus_headers())
        upload_id, offset = hub.uploads.create(who, described, meta.get("signature", ""))
        return bottle.HTTPResponse(status=201, headers=_tus_headers({
            "Location": f"/api/v1/uploads/{upload_id}", "Upload-Offset": str(offset)}))

    @app.route("/api/v1/uploads/<upload_id>", method="HEAD")
    @api
    def head(upload_id):
        offset, size = hub.uploads.offset(hotspot(), upload_id)
        return bottle.HTTPResponse(status=200, headers=_tus_headers({
            "Upload-Offset": str(offset), "Upload-Length": str(size)}))

    @app.route("/api/v1/uploads/<upload_id>", method="PATCH")
    @api
    def patch(upload_id):
        who = hotspot()
        request = bottle.request
        if request.content_type != "application/offset+octet-stream":
            raise BadRequest("A PATCH is Content-Type: application/offset+octet-stream.",
                             status=415)
        offset = request.get_header("Upload-Offset", "")
        if not offset.isdigit():
            raise BadRequest("Upload-Offset is required.")
        new_offset, status = hub.uploads.append(
            who, upload_id, int(offset), request.body, request.content_length,
            request.get_header("Upload-Checksum"))
        headers = {"Upload-Offset": str(new_offset)}
        if status:
            headers["Hub-Status"] = status
        return bottle.HTTPResponse(status=204, headers=_tus_headers(headers))

    @app.get("/api/v1/packs/<library>/newest")
    @api
    def newest(library):
        hotspot()
        installed = bottle.request.query.get("installed", "")
        entry = hub.shelf.newest(library, int(installed) if installed.isdigit() else None)
        if entry is None:
            return bottle.HTTPResponse(status=204, headers={"Cache-Control": "no-store"})
        return _json({**entry, "url": f"/api/v1/packs/{library}/{quote(entry['name'])}"})

    @app.get("/api/v1/packs/<library>/<name>")
    @api
    def pack_file(library, name):
        hotspot()
        entry, stream = hub.shelf.open(library, name)
        size = entry["size"]
        start, status = 0, 200
        wanted = bottle.request.get_header("Range")
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/x-tar",
                   "ETag": f'"{entry["sha256"]}"'}
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-", wanted.strip())
            if not match or int(match[1]) >= size:
                stream.close()
                raise RangeNotSatisfiable("The range is not satisfiable.")
            start, status = int(match[1]), 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        headers["Content-Length"] = str(size - start)
        stream.seek(start)

        def body():
            with stream:
                while chunk := stream.read(_CHUNK):
                    yield chunk
        return bottle.HTTPResponse(body(), status=status, headers=headers)

    # -- staff view ---------------------------------------------------------------------------

    def sign_session(name: str, expires: int) -> str:
        mac = hmac.new(secret, f"{name}|{expires}".encode(), hashlib.sha256).hexdigest()
        return f"{name}|{expires}|{mac}"

    def staff_name() -> str | None:
        value = bottle.request.get_cookie(SESSION_COOKIE) or ""
        parts = value.split("|")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
            return None
        if not hmac.compare_digest(sign_session(parts[0], int(parts[1])), value):
            return None
        return parts[0]

    def page(title: str, body: str, status: int = 200) -> bottle.HTTPResponse:
        return bottle.HTTPResponse(
            f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>body{{font:16px sans-serif;max-width:60em;margin:1em auto}}"
            f"td,th{{padding:.2em .6em;text-align:left}}</style><h1>{html.escape(title)}</h1>"
            f"{body}", status=status, headers={
                "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    def login_required():
        if staff_name() is None:
            raise bottle.HTTPResponse(status=303, headers={"Location": "/staff/login"})

    @app.get("/staff/login")
    def login_form(error: str = ""):
        return page("Hub staff login", (f"<p><strong>{html.escape(error)}</strong></p>"
                                        if error else "") +
                    "<form method=post action=/staff/login><p><label>Name <input name=name "
                    "autocomplete=username></label><p><label>Password <input type=password "
                    "name=password autocomplete=current-password></label><p><button>Log in"
                    "</button></form>", 401 if error else 200)

    @app.post("/staff/login")
    def login():
        name = bottle.request.forms.getunicode("name") or ""
        password = bottle.request.forms.getunicode("password") or ""
        if not hub.registry.check_staff(name, password):
            return login_form("Wrong name or password.")
        secure = bottle.request.urlparts.scheme == "https" or \
            bottle.request.get_header("X-Forwarded-Proto") == "https"
        response = bottle.HTTPResponse(status=303, headers={"Location": "/staff/"})
        response.set_cookie(SESSION_COOKIE, sign_session(name, int(time.time()) +
                                                         SESSION_SECONDS),
                            httponly=True, samesite="strict", secure=secure, path="/staff")
        return response

    @app.post("/staff/logout")
    def logout():
        response = bottle.HTTPResponse(status=303, headers={"Location": "/staff/login"})
        response.delete_cookie(SESSION_COOKIE, path="/staff")
        return response

    @app.get("/staff/")
    def staff_list():
        login_required()
        rows = "".join(
            f"<tr><td><a href='/staff/c/{r['uuid']}'>{receipt_code(r['uuid'])}</a></td>"
            f"<td>{html.escape(r['kind'])}</td><td>{r['day']}</td>"
            f"<td>{html.escape(r['hotspot_name'])}</td><td>{r['size']}</td></tr>"
            for r in reversed(hub.inbox.records()))
        note = "" if identities else ("<p>This hub was started without the age identity, so "
                                      "contributions are listed but cannot be opened.</p>")
        return page("Contributions", note + "<form method=post action=/staff/logout><button>"
                    "Log out</button></form><table><tr><th>Code<th>Kind<th>Day<th>Hotspot"
                    f"<th>Bytes</tr>{rows}</table>")

    @app.get("/staff/c/<uuid>")
    def staff_show(uuid):
        login_required()
        if hub.inbox.record(uuid) is None or not identities:
            return page("Not available", "<p>No such contribution, or no key to read it.</p>",
                        404)
        with hub.inbox.decrypt(uuid, identities, hub.spool_dir)[1] as spool:
            spool.seek(0)
            from hotspot.envelope import read_envelope_plaintext
            contribution = read_envelope_plaintext(spool)
            fields = "".join(
                f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                for k, v in contribution.fields.items())
            files = "".join(
                f"<li><a href='/staff/c/{uuid}/a/{a.index}'>{html.escape(a.name)}</a> "
                f"({html.escape(a.media_type)}, {a.size} bytes)</li>"
                for a in contribution.attachments)
            meta = contribution.meta
        return page(f"Contribution {receipt_code(uuid)}",
                    f"<p>{html.escape(meta.get('kind', ''))}, {html.escape(meta.get('day', ''))}"
                    f", language {html.escape(meta.get('language', ''))}</p><dl>{fields}</dl>"
                    f"<ul>{files}</ul><p><a href='/staff/'>All contributions</a></p>")

    @app.get("/staff/c/<uuid>/a/<index:int>")
    def staff_attachment(uuid, index):
        login_required()
        if hub.inbox.record(uuid) is None or not identities:
            return page("Not available", "", 404)
        contribution, spool = hub.inbox.decrypt(uuid, identities, hub.spool_dir)
        if not 0 <= index < len(contribution.attachments):
            spool.close()
            return page("Not available", "", 404)
        attachment = contribution.attachments[index]
        data = attachment.read_bytes()
        spool.close()
        return bottle.HTTPResponse(data, headers={
            "Content-Type": "application/octet-stream", "Cache-Control": "no-store",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.name)}",
            "X-Content-Type-Options": "nosniff"})

    @app.get("/")
    def root():
        return bottle.HTTPResponse(status=303, headers={"Location": "/staff/"})

    return app

