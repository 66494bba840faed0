"""Resumable envelope uploads: the small part of the tus protocol the hub speaks.

tus 1.0.0 (https://tus.io/protocols/resumable-upload) core, creation and checksum: ``POST``
creates an upload for one envelope, ``HEAD`` tells the offset the hub has confirmed, ``PATCH``
appends bytes at that offset. Each PATCH may carry ``Upload-Checksum: sha1|sha256 <base64>``;
its bytes are fsynced, checked, and only then count (a bad chunk is cut off again, answer 460).
The confirmed offset is kept in the upload's small JSON file, written after the data is on
disk, so a crash never confirms bytes that were not stored. When the last byte arrives, the
whole envelope is checked against its sha256 and handed to ``Inbox.receive``.

An upload's id is ``<hotspot id>-<envelope uuid>``: the same hotspot re-sending the same
envelope finds its upload again even if it lost the URL.

    >>> upload_id, offset = uploads.create(hotspot, described, signature_text)
    >>> uploads.append(hotspot, upload_id, offset, request_body, checksum_header)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from content_pack.signing import verify_bytes
from hotspot.contributions import _write_atomically
from hotspot.errors import BadRequest, HotspotError, NotFound, SignatureError

from .inbox import ChecksumMismatch, Described, Inbox
from .registry import Forbidden, Hotspot
from .storage import LocalStorage

TUS_VERSION = "1.0.0"
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
_CHUNK = 1 << 20


class OffsetConflict(HotspotError):
    status = 409
    exit_code = 1


class TooLargeUpload(BadRequest):
    status = 413


class Uploads:
    def __init__(self, storage: LocalStorage, inbox: Inbox, *, max_size: int):
        self.storage = storage
        self.inbox = inbox
        self.max_size = max_size
        self.folder = Path(storage.work_dir) / "uploads"
        self.folder.mkdir(parents=True, exist_ok=True)

    def _paths(self, upload_id: str) -> tuple[Path, Path]:
        return self.folder / f"{upload_id}.data", self.folder / f"{upload_id}.json"

    def _info(self, hotspot: Hotspot, upload_id: str) -> dict[str, Any]:
        if not upload_id.startswith(hotspot.id + "-"):
            raise NotFound("There is no such upload.")
        try:
            return json.loads(self._paths(upload_id)[1].read_bytes())
        except (FileNotFoundError, ValueError):
            raise NotFound("There is no such upload (it finished, or never started).") from None

    def create(self, hotspot: Hotspot, described: Described, signature: str) -> tuple[str, int]:
        """Start (or find again) the upload of one envelope; returns its id and offset."""
        try:
            verify_bytes(described.signed_text(hotspot.id), signature, [hotspot.public_key])
        except SignatureError:
            raise Forbidden("The envelope's description is not signed by the key of hotspot "
                            "%(id)s; it is refused.", id=hotspot.id) from None
        if described.size > self.max_size:
            raise TooLargeUpload("The envelope is larger than this hub accepts (%(size)s "
                                 "bytes).", size=self.max_size)
        upload_id = f"{hotspot.id}-{described.uuid}"
        data_path, info_path = self._paths(upload_id)
        with self.storage.lock(f"upload-{upload_id}"):
            try:
                info = json.loads(info_path.read_bytes())
            except (FileNotFoundError, ValueError):
                info = None
            if info is None or info["sha256"] != described.sha256 or \
                    info["size"] != described.size:
                with open(data_path, "wb") as f:
                    os.fsync(f.fileno())
                info = {"uuid": described.uuid, "sha256": described.sha256,
                        "size": described.size, "kind": described.kind, "day": described.day,
                        "encrypted": described.encrypted, "offset": 0}
                _write_atomically(info_path, json.dumps(info).encode(), mode=0o640)
            return upload_id, info["offset"]

    def offset(self, hotspot: Hotspot, upload_id: str) -> tuple[int, int]:
        info = self._info(hotspot, upload_id)
        return info["offset"], info["size"]

    def append(self, hotspot: Hotspot, upload_id: str, offset: int, body: BinaryIO,
               body_length: int, checksum: str | None) -> tuple[int, str | None]:
        """Append one PATCH body; returns the new offset and, when complete, the status."""
        algorithm, expected = _parse_checksum(checksum)
        data_path, info_path = self._paths(upload_id)
        with self.storage.lock(f"upload-{upload_id}"):
            info = self._info(hotspot, upload_id)
            if offset != info["offset"]:
                raise OffsetConflict("Upload-Offset %(sent)s is not the hub's offset %(ours)s.",
                                     sent=offset, ours=info["offset"])
            if offset + body_length > info["size"]:
                raise BadRequest("This PATCH goes past the upload's length.")
            digest = hashlib.new(algorithm) if algorithm else None
            written = 0
            with open(data_path, "r+b") as f:
                f.truncate(offset)  # drop bytes of an earlier chunk that was never confirmed
                f.seek(offset)
                while written < body_length:
                    chunk = body.read(min(_CHUNK, body_length - written))
                    if not chunk:
                        break
                    f.write(chunk)
                    if digest:
                        digest.update(chunk)
                    written += len(chunk)
                if written != body_length or (digest and digest.digest() != expected):
                    f.truncate(offset)
                    if written != body_length:
                        raise BadRequest("The PATCH body ended early.")
                    raise ChecksumMismatch("The chunk's Upload-Checksum does not match its "
                                           "bytes; it was not kept.")
                f.flush()
                os.fsync(f.fileno())
            info["offset"] = offset + written
            _write_atomically(info_path, json.dumps(info).encode(), mode=0o640)
            if info["offset"] < info["size"]:
                return info["offset"], None
            described = Described(info["uuid"], info["sha256"], info["size"], info["kind"],
                                  info["day"], info["encrypted"])
            try:
                status, _receipt = self.inbox.receive(hotspot, described, data_path)
            finally:
                data_path.unlink(missing_ok=True)
                info_path.unlink(missing_ok=True)
            return info["offset"], status


def _parse_checksum(header: str | None) -> tuple[str | None, bytes | None]:
    if not header:
        return None, None
    try:
        algorithm, value = header.strip().split(" ", 1)
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        raise BadRequest("Upload-Checksum is '<algorithm> <base64>'.") from None
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest("Upload-Checksum algorithm %(name)s is not supported (sha1, sha256).",
                         name=algorithm)
    return algorithm, raw
