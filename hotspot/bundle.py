"""The outbox bundle: envelopes on their way to the hub, on a USB drive or over a connection.

A bundle is a folder of envelope files plus ``manifest.json`` (each envelope's UUID, kind, day,
size, sha256 and file parts) and ``manifest.json.minisig``, signed with the hotspot's own
Ed25519 key in minisign's format, so the hub (or anyone with ``minisign -V``) can check it came
intact from this hotspot. Names are FAT-safe and files are split before FAT's 4 GB limit. The
format is specified in ``docs/contributions.md``.

    >>> key = load_or_create_hotspot_key(data_dir)
    >>> path = write_bundle(queue, Path("/media/usb"), key)   # verified by reading it back
    >>> path
    PosixPath('/media/usb/hotspot-outbox/bundle-A97EA11666322D06-20261001-1')
    >>> queue.mark_exported(read_manifest_uuids(path))       # only after write_bundle returned
    >>> export_bundle(queue, Path("/media/usb"), data_dir)   # the same three steps in one call
    >>> for uuid, sha256, stream in read_bundle(path, [hotspot_public_key]):   # at the hub
    ...     import_envelope(uuid, sha256, stream)

Nothing here decrypts anything: the bundle carries the envelopes exactly as the queue holds
them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from content_pack.signing import PublicKey, SecretKey, sign_file, verify_bytes
from hotspot.contributions import ContributionQueue, IndexEntry, _write_atomically
from hotspot.errors import HotspotError, SignatureError

OUTBOX_DIR = "hotspot-outbox"
BUNDLE_FORMAT = "hotspot-outbox/1"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.minisig"
DEFAULT_SPLIT_BYTES = 4 * 10**9 - 1        # FAT32's largest file is 4 GiB - 1; stay below 4 GB
MAX_MANIFEST_BYTES = 64 * 2**20
HOTSPOT_KEY_DIR = "keys"
HOTSPOT_KEY_NAME = "hotspot.key"
HOTSPOT_PUB_NAME = "hotspot.pub"
_CHUNK = 1 << 20
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_FILE_NAME = re.compile(rf"(?P<uuid>{_UUID})\.(?P<suffix>age|plain)(?:\.part(?P<part>\d{{2,3}}))?")
_BUNDLE_NAME = re.compile(r"bundle-(?P<id>[0-9A-F]{16})-(?P<day>\d{8})-(?P<n>\d{1,6})")


class BundleError(HotspotError):
    """A bundle cannot be written, or one that was read is incomplete, damaged or altered."""


class BundleItem(NamedTuple):
    """One envelope of a verified bundle. ``stream`` also has ``kind``, ``day``, ``size``."""

    uuid: str
    sha256: str
    stream: io.RawIOBase


# -- the hotspot's own signing key -------------------------------------------------------------

def load_or_create_hotspot_key(data_dir: str | os.PathLike) -> SecretKey:
    """The hotspot's Ed25519 key, made on first use as ``<data_dir>/keys/hotspot.key``.

    The secret key is stored unencrypted (mode 0600): the device must start and export without
    anyone typing a passphrase. It only signs bundles, proving they came from this device; it
    cannot read contributions. ``hotspot.pub`` next to it is what the hub is given.
    """
    folder = Path(data_dir) / HOTSPOT_KEY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key_path, pub_path = folder / HOTSPOT_KEY_NAME, folder / HOTSPOT_PUB_NAME
    if not key_path.exists():
        secret = SecretKey.generate()
        text = secret.to_text(None).replace("content-pack secret key", "hotspot bundle "
                                                                     "signing key", 1)
        with contextlib.suppress(FileExistsError):  # another process made it first: use that
            _write_atomically(key_path, text.encode("ascii"), mode=0o600, replace=False)
    secret = SecretKey.load(key_path, passphrase=None)
    public_text = secret.public_key().to_text(
        f"hotspot bundle key {secret.public_key().key_id_hex}").encode("ascii")
    if not pub_path.exists() or pub_path.read_bytes() != public_text:
        _write_atomically(pub_path, public_text, mode=0o644)
    return secret


def hotspot_id(key: SecretKey | PublicKey) -> str:
    """The hotspot's id: its public key's id as minisign prints it (16 hex digits)."""
    public = key.public_key() if isinstance(key, SecretKey) else key
    return public.key_id_hex


# -- writing -----------------------------------------------------------------------------------

def write_bundle(queue: ContributionQueue, dest_dir: str | os.PathLike, hotspot_key: SecretKey,
                 *, uuids: Iterable[str] | None = None,
                 split_bytes: int = DEFAULT_SPLIT_BYTES) -> Path | None:
    """Write ``<dest_dir>/hotspot-outbox/bundle-<id>-<YYYYMMDD>-<n>/`` and verify it.

    ``uuids`` defaults to every queued envelope; returns None when there is nothing to write.
    The bundle is built under a ``tmp-`` name with every file fsynced, renamed into place, then
    read back (signature and every hash) before this returns. Only then may the caller
    ``queue.mark_exported`` the envelopes. The same envelopes always give the same manifest.
    """
    if split_bytes < 1:
        raise ValueError("split_bytes must be positive")
    if uuids is None:
        entries = queue.list("queued")
    else:
        entries = [queue.entry(uuid) for uuid in dict.fromkeys(uuids)]
    if not entries:
        return None
    entries.sort(key=lambda e: e.uuid)
    identity = hotspot_id(hotspot_key)
    outbox = Path(dest_dir) / OUTBOX_DIR
    try:
        outbox.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(outbox, exc) from exc
    with _export_lock(queue):
        _remove_unfinished(outbox, identity)
        name = _next_bundle_name(outbox, identity, queue.today().strftime("%Y%m%d"))
        final, temp = outbox / name, outbox / f"tmp-{name}"
        try:
            temp.mkdir()
            described = [_copy_envelope(queue, entry, temp, split_bytes) for entry in entries]
            manifest = {
                "format": BUNDLE_FORMAT,
                "hotspot": {"id": identity,
                            "public_key": hotspot_key.public_key().to_text().splitlines()[1]},
                "envelopes": described,
            }
            _write_file(temp / MANIFEST_NAME, manifest_bytes(manifest))
            sign_file(temp / MANIFEST_NAME, hotspot_key, trusted_comment=(
                f"{BUNDLE_FORMAT} hotspot:{identity} envelopes:{len(described)}"),
                untrusted_comment=f"hotspot outbox bundle from {identity}")
            _fsync_dir(temp)
            os.rename(temp, final)
            _fsync_dir(outbox)
        except OSError as exc:
            shutil.rmtree(temp, ignore_errors=True)
            raise _write_error(outbox, exc) from exc
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        try:
            for item in read_bundle(final, [hotspot_key.public_key()]):
                with item.stream as stream:
                    while stream.read(_CHUNK):
                        pass
        except (HotspotError, OSError) as exc:
            shutil.rmtree(final, ignore_errors=True)
            reason = exc.message if isinstance(exc, HotspotError) else str(exc)
            raise BundleError("The bundle written to %(path)s did not read back correctly, so "
                              "it was removed and nothing is marked exported: %(reason)s",
                              path=str(outbox), reason=reason) from exc
    return final


def export_bundle(queue: ContributionQueue, dest_dir: str | os.PathLike,
                  data_dir: str | os.PathLike, *, uuids: Iterable[str] | None = None,
                  split_bytes: int = DEFAULT_SPLIT_BYTES) -> Path | None:
    """Write a verified bundle of the queued envelopes, then mark them exported.

    What ``hotspot contributions export DIR`` and the USB watcher call: the order matters
    (nothing is marked exported unless the bundle read back correctly).
    """
    path = write_bundle(queue, dest_dir, load_or_create_hotspot_key(data_dir), uuids=uuids,
                        split_bytes=split_bytes)
    if path is not None:
        queue.mark_exported(read_manifest_uuids(path))
    return path


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The canonical form: same envelopes, same bytes (and so the same signature)."""
    return (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=True) + "\n").encode()


def _copy_envelope(queue: ContributionQueue, entry: IndexEntry, folder: Path,
                   split_bytes: int) -> dict[str, Any]:
    base = f"{entry.uuid}.{'age' if entry.encrypted else 'plain'}"
    split = entry.size > split_bytes
    part_count = -(-entry.size // split_bytes) if split else 1
    width = max(2, len(str(part_count - 1)))
    whole = hashlib.sha256()
    files: list[dict[str, Any]] = []
    copied = 0
    with queue.open_envelope(entry.uuid) as source:
        for number in range(part_count):
            name = f"{base}.part{number:0{width}d}" if split else base
            want = min(split_bytes, entry.size - copied)
            part_hash, size = hashlib.sha256(), 0
            with open(folder / name, "xb") as out:
                while size < want:
                    chunk = source.read(min(_CHUNK, want - size))
                    if not chunk:
                        break
                    out.write(chunk)
                    part_hash.update(chunk)
                    whole.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            copied += size
            files.append({"name": name, "size": size, "sha256": part_hash.hexdigest()})
        extra = source.read(1)
    if copied != entry.size or extra or whole.hexdigest() != entry.sha256:
        raise BundleError("The envelope %(uuid)s no longer matches the queue's record of it "
                          "(size or sha256). Run 'hotspot contributions reindex' and try again.",
                          uuid=entry.uuid)
    return {"uuid": entry.uuid, "kind": entry.kind, "day": entry.day,
            "encrypted": entry.encrypted, "size": entry.size, "sha256": entry.sha256,
            "files": files}


@contextlib.contextmanager
def _export_lock(queue: ContributionQueue) -> Iterator[None]:
    # Bundles are written without the queue's lock (copying takes minutes; contributions must
    # keep arriving meanwhile), but two writers of the same hotspot's bundles take turns.
    fd = os.open(queue.root / ".export.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_unfinished(outbox: Path, identity: str) -> None:
    for item in outbox.glob(f"tmp-bundle-{identity}-*"):
        shutil.rmtree(item, ignore_errors=True)


def _next_bundle_name(outbox: Path, identity: str, day: str) -> str:
    numbers = [int(m["n"]) for item in outbox.iterdir()
               if (m := _BUNDLE_NAME.fullmatch(item.name.removeprefix("tmp-")))
               and m["id"] == identity and m["day"] == day]
    return f"bundle-{identity}-{day}-{max(numbers, default=0) + 1}"


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some drive file systems refuse fsync on a folder
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def _write_error(outbox: Path, exc: OSError) -> BundleError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return BundleError("The drive at %(path)s is full: the bundle was not written.",
                           path=str(outbox))
    return BundleError("The bundle could not be written to %(path)s: %(reason)s",
                       path=str(outbox), reason=exc.strerror or str(exc))


# -- reading (the hub's side; also the read-back check) ----------------------------------------

def read_bundle(path: str | os.PathLike,
                trusted_hotspot_keys: Iterable[PublicKey] | None = None) -> list[BundleItem]:
    """Check a bundle's signature and every file's hash; returns its envelopes.

    With ``trusted_hotspot_keys`` the manifest must be signed by one of them (the hub knows
    its hotspots). Without, the key named in the manifest itself is used: that proves the
    bundle is intact, not where it came from. Every part is hashed here, before returning;
    each stream joins the parts and checks the sha256 again as it is read. Importing is
    idempotent by UUID and sha256: the same bundle read twice gives the same items.
    """
    folder = Path(path)
    raw = _read_limited(folder / MANIFEST_NAME, MAX_MANIFEST_BYTES, "manifest")
    signature = _read_limited(folder / SIGNATURE_NAME, 4096, "manifest signature")
    if trusted_hotspot_keys is None:
        trusted = [_embedded_key(raw)]
    else:
        trusted = list(trusted_hotspot_keys)
    verified = verify_bytes(raw, signature, trusted)
    manifest = _parse_manifest(raw)
    if manifest["hotspot"]["id"] != verified.key.key_id_hex:
        raise SignatureError("The bundle's manifest names hotspot %(named)s but is signed by "
                             "%(signer)s.", named=manifest["hotspot"]["id"],
                             signer=verified.key.key_id_hex)
    items = []
    for envelope in manifest["envelopes"]:
        paths = []
        whole = hashlib.sha256()
        for described in envelope["files"]:
            file_path = folder / described["name"]
            size, digest = _hash_path(file_path, whole)
            if size != described["size"] or digest != described["sha256"]:
                raise BundleError("%(name)s in the bundle is damaged or was changed (its size "
                                  "or sha256 does not match the signed manifest).",
                                  name=described["name"])
            paths.append(file_path)
        if whole.hexdigest() != envelope["sha256"]:
            raise BundleError("The envelope %(uuid)s in the bundle does not match the signed "
                              "manifest.", uuid=envelope["uuid"])
        stream = _JoinedParts(paths, envelope)
        items.append(BundleItem(envelope["uuid"], envelope["sha256"], stream))
    return items


def read_manifest_uuids(path: str | os.PathLike) -> list[str]:
    """The UUIDs a bundle's manifest lists (after ``write_bundle`` verified it)."""
    manifest = _parse_manifest(_read_limited(Path(path) / MANIFEST_NAME, MAX_MANIFEST_BYTES,
                                             "manifest"))
    return [envelope["uuid"] for envelope in manifest["envelopes"]]


class _JoinedParts(io.RawIOBase):
    """Reads an envelope's parts as one stream, checking its sha256 at the end."""

    def __init__(self, paths: list[Path], envelope: dict[str, Any]):
        self._paths = list(paths)
        self._current: io.BufferedReader | None = None
        self._hash = hashlib.sha256()
        self._expected = envelope["sha256"]
        self.uuid = envelope["uuid"]
        self.kind = envelope["kind"]
        self.day = envelope["day"]
        self.size = envelope["size"]
        self.encrypted = envelope["encrypted"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._current is None:
                if not self._paths:
                    if self._hash is not None and self._hash.hexdigest() != self._expected:
                        raise BundleError("The envelope %(uuid)s changed while it was read.",
                                          uuid=self.uuid)
                    self._hash = None
                    return 0
                self._current = open(self._paths.pop(0), "rb")
            count = self._current.readinto(buffer)
            if count:
                self._hash.update(memoryview(buffer)[:count])
                return count
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


def _embedded_key(raw: bytes) -> PublicKey:
    try:
        return PublicKey.parse(json.loads(raw)["hotspot"]["public_key"])
    except (ValueError, KeyError, TypeError):
        raise SignatureError("The bundle's manifest does not name the key that signed it.") \
            from None


def _parse_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BundleError("The bundle's manifest is not valid JSON.") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise BundleError("The bundle's manifest is not valid: %(problem)s.", problem=problem)
    return manifest


def _manifest_problem(manifest: Any) -> str | None:
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        return f"it is not format {BUNDLE_FORMAT}"
    hotspot = manifest.get("hotspot")
    if not isinstance(hotspot, dict) or not isinstance(hotspot.get("id"), str):
        return "it does not name its hotspot"
    envelopes = manifest.get("envelopes")
    if not isinstance(envelopes, list):
        return "it has no list of envelopes"
    seen: set[str] = set()
    for envelope in envelopes:
        if not isinstance(envelope, dict):
            return "an envelope is not an object"
        uuid = envelope.get("uuid")
        if not isinstance(uuid, str) or not re.fullmatch(_UUID, uuid) or uuid in seen:
            return "an envelope has a missing, malformed or repeated uuid"
        seen.add(uuid)
        files = envelope.get("files")
        if (not isinstance(envelope.get("sha256"), str) or not isinstance(envelope.get("size"), int)
                or not isinstance(files, list) or not files):
            return f"envelope {uuid} has no sha256, size or files"
        for described in files:
            match = isinstance(described, dict) and isinstance(described.get("name"), str) \
                and _FILE_NAME.fullmatch(described["name"])
            if not match or match["uuid"] != uuid or not isinstance(described.get("size"), int) \
                    or not isinstance(described.get("sha256"), str):
                return f"envelope {uuid} lists a file with a bad name, size or sha256"
        if sum(d["size"] for d in files) != envelope["size"]:
            return f"the parts of envelope {uuid} do not add up to its size"
    return None


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise BundleError("The bundle has no %(what)s (%(name)s).", what=what,
                          name=path.name) from None
    except OSError as exc:
        raise BundleError("The bundle's %(what)s cannot be read: %(reason)s", what=what,
                          reason=exc.strerror or str(exc)) from None
    if len(data) > limit:
        raise BundleError("The bundle's %(what)s is too large.", what=what)
    return data


def _hash_path(path: Path, whole) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            # Drop cached pages first, so that a read-back after writing reads the drive itself.
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                whole.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise BundleError("%(name)s is missing from the bundle.", name=path.name) from None
    except OSError as exc:
        raise BundleError("%(name)s in the bundle cannot be read: %(reason)s", name=path.name,
                          reason=exc.strerror or str(exc)) from None
    return size, digest.hexdigest()
