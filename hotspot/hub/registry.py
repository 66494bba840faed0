"""Who may talk to the hub: registered hotspots (public key + token) and staff accounts.

A hotspot is registered once by staff with its public key (``keys/hotspot.pub`` on the
hotspot); the hub makes a random token, prints it once, and keeps only its SHA-256. The
hotspot sends the token as ``Authorization: Bearer ...`` and signs what it sends with its key;
the hub checks both. Staff accounts (for the web view) keep a salted scrypt hash.

    >>> registry = Registry(storage)
    >>> hotspot, token = registry.add_hotspot("river-village", PublicKey.load("hotspot.pub"))
    >>> registry.authenticate(token).id
    'A97EA11666322D06'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from content_pack.signing import PublicKey
from hotspot.errors import BadRequest, HotspotError

from .storage import HubStorage

HOTSPOTS_KEY = "registry/hotspots.json"
STAFF_KEY = "registry/staff.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,79}")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class Unauthorized(HotspotError):
    status = 401
    exit_code = 2


class Forbidden(HotspotError):
    status = 403
    exit_code = 2


@dataclass(frozen=True)
class Hotspot:
    id: str
    name: str
    public_key: PublicKey
    added: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Registry:
    def __init__(self, storage: HubStorage):
        self.storage = storage

    def _load(self) -> dict:
        return self.storage.read_json(HOTSPOTS_KEY, default={})

    def add_hotspot(self, name: str, public_key: PublicKey, *,
                    new_token: bool = False) -> tuple[Hotspot, str]:
        """Register (or, with ``new_token``, re-issue the token of) a hotspot; returns the token.

        The old token stops working when a new one is issued.
        """
        if not _NAME.fullmatch(name or ""):
            raise BadRequest("A hotspot name is 1 to 80 letters, digits, spaces, dots, "
                             "dashes or underscores.")
        token = "hst_" + secrets.token_urlsafe(32)
        with self.storage.lock("registry"):
            hotspots = self._load()
            record = hotspots.get(public_key.key_id_hex)
            if record is not None and not new_token:
                raise BadRequest("Hotspot %(id)s is already registered as %(name)r. Use "
                                 "--new-token to issue it a new token.",
                                 id=public_key.key_id_hex, name=record["name"])
            if record is not None and record["public_key"] != _key_text(public_key):
                raise BadRequest("A different key already uses the id %(id)s.",
                                 id=public_key.key_id_hex)
            hotspots[public_key.key_id_hex] = {
                "name": name, "public_key": _key_text(public_key),
                "token_sha256": _token_hash(token),
                "added": (record or {}).get("added") or dt.date.today().isoformat()}
            self.storage.write_json(HOTSPOTS_KEY, hotspots)
        return self.get(public_key.key_id_hex), token

    def remove_hotspot(self, hotspot_id: str) -> None:
        with self.storage.lock("registry"):
            hotspots = self._load()
            if hotspots.pop(hotspot_id.upper(), None) is None:
                raise BadRequest("There is no hotspot %(id)s.", id=hotspot_id)
            self.storage.write_json(HOTSPOTS_KEY, hotspots)

    def get(self, hotspot_id: str) -> Hotspot | None:
        record = self._load().get(hotspot_id)
        if record is None:
            return None
        return Hotspot(hotspot_id, record["name"], PublicKey.parse(record["public_key"]),
                       record["added"])

    def hotspots(self) -> list[Hotspot]:
        return [self.get(hotspot_id) for hotspot_id in sorted(self._load())]

    def public_keys(self) -> list[PublicKey]:
        return [hotspot.public_key for hotspot in self.hotspots()]

    def authenticate(self, token: str | None) -> Hotspot:
        """The hotspot this token was issued to; ``Unauthorized`` otherwise."""
        if not token:
            raise Unauthorized("No hotspot token was sent (Authorization: Bearer ...).")
        wanted = _token_hash(token)
        for hotspot_id, record in self._load().items():
            if hmac.compare_digest(record["token_sha256"], wanted):
                return self.get(hotspot_id)
        raise Unauthorized("The hub does not know this hotspot token: it is wrong, or the "
                           "hotspot was removed or issued a new token.")

    # -- staff ------------------------------------------------------------------------------

    def set_staff_password(self, name: str, password: str) -> None:
        if not _NAME.fullmatch(name or "") or len(password) < 10:
            raise BadRequest("A staff name is 1 to 80 plain characters and a password at "
                             "least 10 characters.")
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
        with self.storage.lock("registry"):
            staff = self.storage.read_json(STAFF_KEY, default={})
            staff[name] = {"salt": salt.hex(), "scrypt": digest.hex()}
            self.storage.write_json(STAFF_KEY, staff)

    def check_staff(self, name: str, password: str) -> bool:
        record = self.storage.read_json(STAFF_KEY, default={}).get(name)
        salt = bytes.fromhex(record["salt"]) if record else b"\0" * 16
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **_SCRYPT)
        return bool(record) and hmac.compare_digest(digest.hex(), record["scrypt"])


def _key_text(key: PublicKey) -> str:
    return key.to_text().splitlines()[1]
