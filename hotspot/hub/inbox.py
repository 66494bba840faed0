"""The hub's inbox: envelopes received from hotspots, receipts, USB bundles, reading them.

Receiving is idempotent and keyed by the envelope's UUID and sha256: under a per-UUID lock,
an envelope the hub does not hold is checked against its sha256 and stored (fsynced) before
the answer "stored"; the same UUID with the same sha256 is "already had it"; the same UUID
with another body is refused. The envelope's record (``envelopes/<aa>/<uuid>.json``) is
written after the envelope file, so a record always means a complete envelope.

    >>> inbox = Inbox(storage, hub_key)
    >>> status, signed = inbox.receive(hotspot, described, Path("work/upload-file"))
    >>> status
    'stored'
    >>> inbox.ingest_folder(Path("/media/usb"), registry)        # bundles carried by hand
    >>> inbox.export(identities, Path("out"), "csv")             # staff, with the hub's age key
"""

from __future__ import annotations

import csv
import datetime as dt
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyrage
from pyrage import x25519

from content_pack.signing import PublicKey, SecretKey
from hotspot.bundle import OUTBOX_DIR, BundleError, read_bundle
from hotspot.contributions import KINDS, _write_atomically, receipt_code
from hotspot.envelope import read_envelope_plaintext
from hotspot.errors import BadRequest, ConfigError, HotspotError, NotFound, SignatureError

from .receipts import RECEIPTS_FILE_FORMAT, sign_receipt
from .registry import Hotspot, Registry
from .storage import HubStorage

log = logging.getLogger("hotspot.hub")

INBOX_DIR = "hotspot-inbox"   # on a USB drive: receipts files the hub writes for hotspots
HUB_KEY_NAME = "hub.key"
HUB_PUB_NAME = "hub.pub"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CHUNK = 1 << 20


class Conflict(HotspotError):
    """Another body under a UUID the hub already holds."""

    status = 409
    exit_code = 1


class ChecksumMismatch(BadRequest):
    """The bytes received do not have the sha256 they were announced with."""

    status = 460  # tus checksum extension: "Checksum Mismatch"


@dataclass(frozen=True)
class Described:
    """An envelope as the hotspot announces it (and signs)."""

    uuid: str
    sha256: str
    size: int
    kind: str
    day: str
    encrypted: bool = True

    @classmethod
    def check(cls, uuid: Any, sha256: Any, size: Any, kind: Any, day: Any,
              encrypted: Any = True) -> Described:
        try:
            size = int(size)
        except (TypeError, ValueError):
            size = -1
        if not (isinstance(uuid, str) and _UUID.fullmatch(uuid) and isinstance(sha256, str)
                and _SHA256.fullmatch(sha256) and size >= 0 and kind in KINDS
                and isinstance(day, str) and _DAY.fullmatch(day)):
            raise BadRequest("The envelope's description (uuid, sha256, size, kind, day) is "
                             "missing or malformed.")
        return cls(uuid, sha256, size, kind, day, encrypted in (True, "1", "true"))

    def signed_text(self, hotspot_id: str) -> bytes:
        """What the hotspot signs for an upload: binds the UUID to this sha256 and size."""
        return (f"hotspot-envelope/1 hotspot:{hotspot_id} uuid:{self.uuid} sha256:{self.sha256}"
                f" size:{self.size} kind:{self.kind} day:{self.day}").encode("ascii")


def load_or_create_hub_key(storage_root: Path) -> SecretKey:
    """The hub's receipt-signing key, made on first start (0600; it only signs receipts)."""
    folder = Path(storage_root) / "keys"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = folder / HUB_KEY_NAME
    if not key_path.exists():
        secret = SecretKey.generate()
        try:
            _write_atomically(key_path, secret.to_text(None).replace(
                "content-pack secret key", "hub receipt signing key", 1).encode(), mode=0o600,
                replace=False)
        except FileExistsError:
            pass
    secret = SecretKey.load(key_path, passphrase=None)
    pub_path = folder / HUB_PUB_NAME
    text = secret.public_key().to_text(f"hub receipt key {secret.public_key().key_id_hex}")
    if not pub_path.exists() or pub_path.read_text() != text:
        _write_atomically(pub_path, text.encode("ascii"), mode=0o644)
    return secret


class Inbox:
    def __init__(self, storage: HubStorage, hub_key: SecretKey, *,
                 today=lambda: dt.datetime.now(dt.timezone.utc).date()):
        self.storage = storage
        self.hub_key = hub_key
        self.today = today

    @staticmethod
    def _keys(uuid: str) -> tuple[str, str]:
        return f"envelopes/{uuid[:2]}/{uuid}.age", f"envelopes/{uuid[:2]}/{uuid}.json"

    def record(self, uuid: str) -> dict[str, Any] | None:
        if not _UUID.fullmatch(uuid or ""):
            return None
        return self.storage.read_json(self._keys(uuid)[1])

    def check_known(self, uuid: str, sha256: str) -> dict[str, str] | None:
        """The signed receipt if the hub holds this exact envelope; None if it holds none.

        ``Conflict`` if it holds another body under this UUID.
        """
        record = self.record(uuid)
        if record is None:
            return None
        if record["sha256"] != sha256:
            raise Conflict("The hub already holds a different envelope under %(uuid)s; this "
                           "one is refused (same UUID, other content).", uuid=uuid)
        return self.receipt(record)

    def receipt(self, record: dict[str, Any]) -> dict[str, str]:
        return sign_receipt(self.hub_key, record)

    def receive(self, hotspot: Hotspot, described: Described, path: Path,
                via: str = "upload") -> tuple[str, dict[str, str]]:
        """Store the complete local file ``path`` (moved away) as this envelope.

        Returns ``("stored" | "already had it", signed receipt)``.
        """
        body_key, record_key = self._keys(described.uuid)
        with self.storage.lock(f"envelope-{described.uuid}"):
            known = self.check_known(described.uuid, described.sha256)
            if known is not None:
                Path(path).unlink(missing_ok=True)
                return "already had it", known
            size, digest = _hash_file(path)
            if size != described.size or digest != described.sha256:
                Path(path).unlink(missing_ok=True)
                raise ChecksumMismatch("The envelope %(uuid)s does not match its sha256 and "
                                       "size: it was damaged or changed on the way, and is "
                                       "refused.", uuid=described.uuid)
            if hasattr(self.storage, "put_file"):
                self.storage.put_file(body_key, Path(path))
            else:
                with open(path, "rb") as f:
                    self.storage.put(body_key, f)
                Path(path).unlink(missing_ok=True)
            record = {"uuid": described.uuid, "sha256": described.sha256,
                      "size": described.size, "kind": described.kind, "day": described.day,
                      "encrypted": described.encrypted, "hotspot": hotspot.id,
                      "hotspot_name": hotspot.name, "via": via,
                      "received_day": self.today().isoformat()}
            self.storage.write_json(record_key, record)
        log.info("Stored envelope %s from hotspot %s (%s).", described.uuid, hotspot.id, via)
        return "stored", self.receipt(record)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for key in self.storage.list("envelopes"):
            if key.endswith(".json"):
                record = self.storage.read_json(key)
                if record:
                    out.append(record)
        return sorted(out, key=lambda r: (r["day"], r["uuid"]))

    def open_envelope(self, uuid: str) -> BinaryIO:
        if self.record(uuid) is None:
            raise NotFound("The hub holds no envelope %(uuid)s.", uuid=uuid)
        return self.storage.open(self._keys(uuid)[0])

    # -- bundles carried on drives -----------------------------------------------------------

    def ingest_folder(self, folder: Path, registry: Registry) -> list[dict[str, Any]]:
        """Import every bundle under ``folder`` (a drive, its hotspot-outbox, or one bundle).

        Writes ``<drive>/hotspot-inbox/receipts-<bundle>.json`` for each bundle, to be carried
        back to the hotspot. Idempotent: a bundle ingested again stores nothing new and writes
        the same receipts file.
        """
        folder = Path(folder)
        if (folder / "manifest.json").is_file():
            bundles, drive = [folder], folder.parent.parent
        else:
            outbox = folder / OUTBOX_DIR if (folder / OUTBOX_DIR).is_dir() else folder
            bundles = sorted(p for p in outbox.glob("bundle-*") if p.is_dir())
            drive = outbox.parent if outbox.name == OUTBOX_DIR else outbox
        if not bundles:
            raise NotFound("There is no outbox bundle in %(path)s (looked for "
                           "hotspot-outbox/bundle-*).", path=str(folder))
        known = {key.key_id_hex: key for key in registry.public_keys()}
        results = []
        for bundle in bundles:
            results.append(self._ingest_bundle(bundle, drive, registry, known))
        return results

    def _ingest_bundle(self, bundle: Path, drive: Path, registry: Registry,
                       known: dict[str, PublicKey]) -> dict[str, Any]:
        try:
            named = json.loads((bundle / "manifest.json").read_bytes())["hotspot"]["id"]
        except (OSError, ValueError, KeyError, TypeError):
            raise BundleError("%(path)s has no readable manifest.", path=str(bundle)) from None
        hotspot = registry.get(named) if isinstance(named, str) else None
        if hotspot is None:
            raise SignatureError("The bundle %(name)s comes from hotspot %(id)s, which is not "
                                 "registered at this hub: nothing was imported. Register it "
                                 "with 'hotspot hub add-hotspot'.", name=bundle.name, id=named)
        items = read_bundle(bundle, [hotspot.public_key])
        counts = {"stored": 0, "already had it": 0}
        receipts = []
        work = Path(self.storage.work_dir) if hasattr(self.storage, "work_dir") else \
            Path(tempfile.gettempdir())
        for item in items:
            with item.stream as stream:
                described = Described(item.uuid, item.sha256, stream.size, stream.kind,
                                      stream.day, stream.encrypted)
                if self.check_known(item.uuid, item.sha256) is None:
                    fd, temp = tempfile.mkstemp(dir=work, prefix="ingest-")
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(stream, out, _CHUNK)
                    status, signed = self.receive(hotspot, described, Path(temp), via="bundle")
                else:
                    status, signed = "already had it", self.check_known(item.uuid, item.sha256)
            counts[status] += 1
            receipts.append(signed)
        inbox = drive / INBOX_DIR
        inbox.mkdir(parents=True, exist_ok=True)
        target = inbox / f"receipts-{bundle.name}.json"
        data = (json.dumps({"format": RECEIPTS_FILE_FORMAT,
                            "hub": self.hub_key.public_key().key_id_hex,
                            "hotspot": hotspot.id, "bundle": bundle.name,
                            "receipts": receipts}, indent=1, sort_keys=True) + "\n").encode()
        if not target.exists() or target.read_bytes() != data:
            _write_atomically(target, data, mode=0o644)
        return {"bundle": bundle.name, "hotspot": hotspot.id, **counts,
                "receipts_file": str(target)}

    # -- reading contributions (staff) -------------------------------------------------------

    def decrypt(self, uuid: str, identities: list, spool_dir: Path):
        """The decrypted contribution (plaintext spooled in ``spool_dir``, which staff chose)."""
        spool = tempfile.TemporaryFile(dir=spool_dir)
        with self.open_envelope(uuid) as envelope:
            if self.record(uuid).get("encrypted", True):
                try:
                    pyrage.decrypt_io(envelope, spool, identities)
                except pyrage.DecryptError as exc:
                    spool.close()
                    raise HotspotError("Envelope %(uuid)s cannot be decrypted with this key "
                                       "(%(reason)s).", uuid=uuid, reason=str(exc)) from None
            else:
                shutil.copyfileobj(envelope, spool, _CHUNK)
        spool.seek(0)
        return read_envelope_plaintext(spool), spool

    def export(self, identities: list, dest: Path, fmt: str) -> int:
        """Decrypt every envelope into ``dest``: one table plus attachments as files."""
        if fmt not in ("csv", "json"):
            raise BadRequest("The export format is csv or json.")
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        rows = []
        for record in self.records():
            contribution, spool = self.decrypt(record["uuid"], identities, dest)
            with spool:
                code = receipt_code(record["uuid"])
                files = []
                for attachment in contribution.attachments:
                    folder = dest / "attachments" / code
                    folder.mkdir(parents=True, exist_ok=True)
                    name = f"{attachment.index + 1}-{_safe_name(attachment.name)}"
                    with open(folder / name, "wb") as out:
                        for chunk in attachment.iter_chunks():
                            out.write(chunk)
                    files.append(f"attachments/{code}/{name}")
                meta = contribution.meta
                rows.append({"code": code, "uuid": record["uuid"], "kind": meta.get("kind"),
                             "day": meta.get("day"), "language": meta.get("language"),
                             "resource_id": meta.get("resource_id", ""),
                             "hotspot": record["hotspot_name"], "hotspot_id": record["hotspot"],
                             "received_day": record["received_day"],
                             "fields": meta.get("fields", {}), "attachments": files})
        if fmt == "json":
            (dest / "contributions.json").write_text(
                json.dumps(rows, indent=1, ensure_ascii=False) + "\n", "utf-8")
        else:
            with open(dest / "contributions.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["code", "uuid", "kind", "day", "language", "resource_id",
                                 "hotspot", "hotspot_id", "received_day", "fields",
                                 "attachments"])
                for row in rows:
                    writer.writerow([row[k] for k in ("code", "uuid", "kind", "day", "language",
                                                      "resource_id", "hotspot", "hotspot_id",
                                                      "received_day")]
                                    + [json.dumps(row["fields"], ensure_ascii=False),
                                       " ".join(row["attachments"])])
        return len(rows)


def load_identities(path: str | None, *, prompt: bool = True) -> list:
    """The hub's age identities, from a file (plain, or protected with ``age -p``) or typed.

    The private key is never written anywhere by the hub.
    """
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError("The hub's age identity %(path)s cannot be read: %(reason)s",
                              path=path, reason=exc.strerror or str(exc)) from None
        if data.startswith(b"age-encryption.org/") or data.startswith(b"-----BEGIN AGE"):
            if not (prompt and sys.stdin.isatty()):
                raise ConfigError("%(path)s is protected by a passphrase; run this at a "
                                  "terminal to type it.", path=path)
            try:
                data = pyrage.passphrase.decrypt(data, getpass.getpass(
                    f"Passphrase for {path}: "))
            except pyrage.DecryptError:
                raise ConfigError("Wrong passphrase for %(path)s.", path=path) from None
        text = data.decode("utf-8", "replace")
    elif prompt and sys.stdin.isatty():
        text = getpass.getpass("The hub's age identity (AGE-SECRET-KEY-..., not shown): ")
    else:
        raise ConfigError("Reading contributions needs the hub's age identity: set "
                          "hub.identity_file or pass --identity FILE, or run at a terminal "
                          "to type it.")
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("AGE-SECRET-KEY-"):
            try:
                identities.append(x25519.Identity.from_str(line))
            except (pyrage.IdentityError, ValueError):
                raise ConfigError("An AGE-SECRET-KEY line is not a valid age identity.") \
                    from None
    if not identities:
        raise ConfigError("No age identity (AGE-SECRET-KEY-...) was found.")
    return identities


def _safe_name(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name or "attachment").strip("._")
    return name[:100] or "attachment"


def _hash_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
