"""The hub's signed delivery receipts, made at the hub and checked on the hotspot.

A receipt says "the hub holds envelope UUID with this sha256". It is canonical JSON signed with
the hub's Ed25519 key in minisign's format (``content_pack.signing``), so a hotspot, or anyone
with ``minisign -V -H -p hub.pub``, can check it::

    {"format": "hub-receipt/1", "hub": "<hub key id>", "hotspot": "<hotspot key id>",
     "uuid": "...", "sha256": "...", "size": 1187345, "received_day": "2026-10-01"}

What travels (over HTTP, or in a receipts file on a USB drive) and what the hotspot keeps with
the delivered envelope is ``{"uuid", "sha256", "receipt": <that JSON text>, "signature":
<.minisig text>}``.

    >>> signed = sign_receipt(hub_key, {"uuid": u, "sha256": s, ...})
    >>> verify_receipt(signed, [hub_public_key], uuid=u, sha256=s)   # raises SignatureError
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from content_pack.signing import PublicKey, SecretKey, sign_bytes, verify_bytes
from hotspot.errors import SignatureError

RECEIPT_FORMAT = "hub-receipt/1"
RECEIPTS_FILE_FORMAT = "hub-receipts/1"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign_receipt(hub_key: SecretKey, record: dict[str, Any]) -> dict[str, str]:
    body = {"format": RECEIPT_FORMAT, "hub": hub_key.public_key().key_id_hex,
            "hotspot": record["hotspot"], "uuid": record["uuid"], "sha256": record["sha256"],
            "size": record["size"], "received_day": record["received_day"]}
    text = canonical(body).decode("ascii")
    signature = sign_bytes(text.encode("ascii"), hub_key,
                           trusted_comment=f"{RECEIPT_FORMAT} uuid:{body['uuid']}",
                           untrusted_comment="hub delivery receipt")
    return {"uuid": body["uuid"], "sha256": body["sha256"], "receipt": text,
            "signature": signature}


def verify_receipt(signed: Any, hub_keys: Iterable[PublicKey], *, uuid: str | None = None,
                   sha256: str | None = None) -> dict[str, Any]:
    """Check a receipt's signature and content; returns the receipt's fields."""
    if not isinstance(signed, dict) or not isinstance(signed.get("receipt"), str) \
            or not isinstance(signed.get("signature"), str):
        raise SignatureError("This is not a hub receipt.")
    verify_bytes(signed["receipt"].encode("utf-8"), signed["signature"], list(hub_keys))
    try:
        body = json.loads(signed["receipt"])
    except ValueError:
        raise SignatureError("The hub receipt is not JSON.") from None
    if not isinstance(body, dict) or body.get("format") != RECEIPT_FORMAT:
        raise SignatureError("The hub receipt has an unknown format.")
    if body.get("uuid") != signed.get("uuid") or body.get("sha256") != signed.get("sha256"):
        raise SignatureError("The hub receipt's signed content does not match its labels.")
    if (uuid is not None and body["uuid"] != uuid) or (sha256 is not None
                                                      and body["sha256"] != sha256):
        raise SignatureError("The hub receipt is for another envelope.")
    return body
