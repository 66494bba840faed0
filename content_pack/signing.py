"""Minisign-compatible Ed25519 keys and signatures for content packs.

Key files and signatures are byte-for-byte minisign's (https://jedisct1.github.io/minisign/),
so staff can sign with ``minisign -S`` and check with ``minisign -V -H`` as well as with this
module. Only minisign's prehashed ``ED`` algorithm is produced or accepted: Ed25519 over the
BLAKE2b-512 of the file, plus a global signature over the signature and the trusted comment.
Legacy ``Ed`` signatures are refused.

    >>> from content_pack.signing import (generate_keypair, load_trusted_keys, SecretKey,
    ...                                   sign_file, verify_file)
    >>> key_path, pub_path = generate_keypair(Path("coalition"), passphrase="correct horse")
    >>> secret = SecretKey.load(key_path, passphrase="correct horse")
    >>> sign_file(Path("manifest.json"), secret, trusted_comment="library:demo version:3 kind:full")
    PosixPath('manifest.json.minisig')
    >>> verify_file(Path("manifest.json"), Path("manifest.json.minisig").read_text(),
    ...             load_trusted_keys(Path("/etc/hotspot/trusted-keys")))
    Verified(key=PublicKey(key_id_hex='A97EA11666322D06'),
             trusted_comment='library:demo version:3 kind:full')

Every problem (malformed file, wrong passphrase, untrusted key, mismatch) is a
``SignatureError`` whose message is meant for a person.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nacl.exceptions
import nacl.pwhash.scrypt
import nacl.signing

from hotspot.durable import fsync_directory
from hotspot.errors import SignatureError

log = logging.getLogger("content_pack.signing")

SIG_ALG = b"Ed"            # keys, and minisign's legacy (non-prehashed) signatures
SIG_ALG_PREHASHED = b"ED"  # signatures over BLAKE2b-512 of the file: the only kind we accept
KDF_SCRYPT = b"Sc"
KDF_NONE = b"\0\0"
CHK_ALG = b"B2"
# minisign's defaults (libsodium's scryptsalsa208sha256 "sensitive" limits): ~1 GiB, a few seconds.
DEFAULT_OPSLIMIT = 33554432
DEFAULT_MEMLIMIT = 1073741824
MAX_SIGNATURE_BYTES = 4096  # the pack format's limit for manifest.json.minisig
MAX_KEY_FILE_BYTES = 4096

UNTRUSTED_PREFIX = "untrusted comment: "
TRUSTED_PREFIX = "trusted comment: "
DEFAULT_UNTRUSTED_COMMENT = "signature from content-pack secret key"

_KEYNUM_SK_LEN = 8 + 64 + 32  # key id, secret key, checksum
_SECRET_FILE_LEN = 2 + 2 + 2 + 32 + 8 + 8 + _KEYNUM_SK_LEN
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PublicKey:
    """A minisign public key; ``key_id`` is the 8 bytes as stored in the file."""

    key_id: bytes
    key: bytes

    def __post_init__(self):
        if len(self.key_id) != 8 or len(self.key) != 32:
            raise ValueError("a public key has an 8-byte id and a 32-byte key")

    def __repr__(self) -> str:
        return f"PublicKey(key_id_hex={self.key_id_hex!r})"

    @property
    def key_id_hex(self) -> str:
        """The id as 16 hex digits: the stored bytes read as a little-endian u64.

        minisign prints the same number without leading zeros ("%" PRIX64), so one key in
        sixteen shows 15 digits there; compare ids as numbers, not as text."""
        return _key_id_hex(self.key_id)

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """Read a ``.pub`` file's content, or a bare base64 key as ``minisign -P`` takes it."""
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if len(lines) == 2 and lines[0].startswith(UNTRUSTED_PREFIX.strip()):
            lines = lines[1:]
        if len(lines) != 1:
            raise SignatureError("a public key is one base64 line, after an optional "
                                 "'untrusted comment:' line")
        raw = _b64decode(lines[0], "the public key")
        if len(raw) != 42 or raw[:2] != SIG_ALG:
            raise SignatureError("this is not a minisign Ed25519 public key")
        return cls(raw[2:10], raw[10:])

    @classmethod
    def load(cls, path: str | os.PathLike) -> PublicKey:
        path = Path(path)
        try:
            return cls.parse(_read_small(path, MAX_KEY_FILE_BYTES, "public key"))
        except SignatureError as exc:
            raise SignatureError(f"{path}: {exc.message}") from None

    def to_text(self, comment: str | None = None) -> str:
        """The ``.pub`` file content, as ``minisign -G`` writes it."""
        comment = _one_line(comment or f"minisign public key {self.key_id_hex}", "comment")
        return f"{UNTRUSTED_PREFIX}{comment}\n{_b64encode(SIG_ALG + self.key_id + self.key)}\n"


@dataclass(frozen=True)
class SecretKey:
    """A decrypted minisign secret key: ``secret`` is libsodium's 64 bytes (seed + public key)."""

    key_id: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self):
        if len(self.key_id) != 8 or len(self.secret) != 64:
            raise ValueError("a secret key has an 8-byte id and a 64-byte secret")

    @classmethod
    def generate(cls) -> SecretKey:
        signing = nacl.signing.SigningKey.generate()
        return cls(os.urandom(8), bytes(signing) + bytes(signing.verify_key))

    @classmethod
    def parse(cls, text: str, passphrase: str | None) -> SecretKey:
        """Read a ``.key`` file's content. A passphrase given for an unencrypted key is unused."""
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if len(lines) != 2 or not lines[0].startswith(UNTRUSTED_PREFIX.strip()):
            raise SignatureError("a secret key file has a comment line and a base64 line")
        raw = _b64decode(lines[1], "the secret key")
        if len(raw) != _SECRET_FILE_LEN or raw[:2] != SIG_ALG or raw[4:6] != CHK_ALG:
            raise SignatureError("this is not a minisign Ed25519 secret key")
        kdf_alg, salt, keynum_sk = raw[2:4], raw[6:38], raw[54:]
        opslimit, memlimit = struct.unpack("<QQ", raw[38:54])
        if kdf_alg == KDF_SCRYPT:
            if passphrase is None:
                raise SignatureError("this secret key is protected by a passphrase; give it")
            try:
                stream = nacl.pwhash.scrypt.kdf(_KEYNUM_SK_LEN, passphrase.encode("utf-8"), salt,
                                                opslimit=opslimit, memlimit=memlimit)
            except (nacl.exceptions.CryptoError, ValueError, MemoryError) as exc:
                raise SignatureError(f"cannot derive the key from the passphrase: {exc}") from None
            keynum_sk = bytes(a ^ b for a, b in zip(keynum_sk, stream))
        elif kdf_alg != KDF_NONE:
            raise SignatureError("this secret key uses an unknown key derivation function")
        key_id, secret, checksum = keynum_sk[:8], keynum_sk[8:72], keynum_sk[72:]
        if checksum != _checksum(key_id, secret):
            if kdf_alg == KDF_SCRYPT:
                raise SignatureError("wrong passphrase for this secret key")
            # minisign -W leaves the checksum of an unencrypted key as zeros.
            if checksum != bytes(32):
                raise SignatureError("this secret key is damaged (its checksum does not match)")
        if bytes(nacl.signing.SigningKey(secret[:32]).verify_key) != secret[32:]:
            raise SignatureError("this secret key is damaged (its two halves do not match)")
        return cls(key_id, secret)

    @classmethod
    def load(cls, path: str | os.PathLike, passphrase: str | None) -> SecretKey:
        path = Path(path)
        try:
            return cls.parse(_read_small(path, MAX_KEY_FILE_BYTES, "secret key"), passphrase)
        except SignatureError as exc:
            raise SignatureError(f"{path}: {exc.message}") from None

    def to_text(self, passphrase: str | None, *, opslimit: int = DEFAULT_OPSLIMIT,
                memlimit: int = DEFAULT_MEMLIMIT) -> str:
        """The ``.key`` file content; encrypted with scrypt unless ``passphrase`` is None."""
        keynum_sk = self.key_id + self.secret + _checksum(self.key_id, self.secret)
        if passphrase is None:
            kdf_alg, salt, opslimit, memlimit = KDF_NONE, bytes(32), 0, 0
            comment = "content-pack secret key (not encrypted)"
        else:
            if not passphrase:
                raise ValueError("an empty passphrase; pass None for an unencrypted key")
            kdf_alg, salt = KDF_SCRYPT, os.urandom(32)
            stream = nacl.pwhash.scrypt.kdf(_KEYNUM_SK_LEN, passphrase.encode("utf-8"), salt,
                                            opslimit=opslimit, memlimit=memlimit)
            keynum_sk = bytes(a ^ b for a, b in zip(keynum_sk, stream))
            comment = "minisign encrypted secret key"
        raw = (SIG_ALG + kdf_alg + CHK_ALG + salt + struct.pack("<QQ", opslimit, memlimit)
               + keynum_sk)
        return f"{UNTRUSTED_PREFIX}{comment}\n{_b64encode(raw)}\n"

    def public_key(self) -> PublicKey:
        return PublicKey(self.key_id, self.secret[32:])


def generate_keypair(out: str | os.PathLike, *, passphrase: str | None) -> tuple[Path, Path]:
    """Write a new key pair as ``OUT.key`` (mode 0600) and ``OUT.pub``; never overwrite."""
    out = Path(out)
    key_path, pub_path = out.with_name(out.name + ".key"), out.with_name(out.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise SignatureError(f"{path} already exists; it is not overwritten. "
                                 "Choose another name or move the old key away first.")
    secret = SecretKey.generate()
    _write_new(key_path, secret.to_text(passphrase).encode("ascii"), 0o600)
    _write_new(pub_path, secret.public_key().to_text().encode("ascii"), 0o644)
    fsync_directory(key_path.parent)
    return key_path, pub_path


def sign_bytes(data: bytes, secret: SecretKey, *, trusted_comment: str,
               untrusted_comment: str = DEFAULT_UNTRUSTED_COMMENT) -> str:
    """A ``.minisig`` text for ``data`` (prehashed, as ``minisign -S`` makes)."""
    return _signature_text(hashlib.blake2b(data, digest_size=64).digest(), secret,
                           trusted_comment, untrusted_comment)


def sign_file(path: str | os.PathLike, secret: SecretKey, *, trusted_comment: str,
              sig_path: str | os.PathLike | None = None,
              untrusted_comment: str = DEFAULT_UNTRUSTED_COMMENT) -> Path:
    """Sign a file of any size; write ``<path>.minisig`` (or ``sig_path``) atomically."""
    path = Path(path)
    sig_path = Path(sig_path) if sig_path is not None else path.with_name(path.name + ".minisig")
    text = _signature_text(_hash_file(path), secret, trusted_comment, untrusted_comment)
    _write_atomically(sig_path, text.encode("utf-8"))
    return sig_path


@dataclass(frozen=True)
class Verified:
    """A signature that checked out: which trusted key made it, and its trusted comment."""

    key: PublicKey
    trusted_comment: str


def verify_bytes(data: bytes, signature_text: str | bytes,
                 trusted: Iterable[PublicKey]) -> Verified:
    trusted = list(trusted)
    signature = _parse_signature(signature_text)
    return _check(signature, hashlib.blake2b(data, digest_size=64).digest(), trusted)


def verify_file(path: str | os.PathLike, signature_text: str | bytes,
                trusted: Iterable[PublicKey]) -> Verified:
    """Like ``verify_bytes``; the file is hashed in chunks, after the signature is parsed."""
    trusted = list(trusted)
    signature = _parse_signature(signature_text)
    return _check(signature, _hash_file(Path(path)), trusted)


def load_trusted_keys(directory: str | os.PathLike) -> list[PublicKey]:
    """Every ``*.pub`` key in ``directory``; malformed ones are skipped with a warning."""
    keys = []
    for path in sorted(Path(directory).glob("*.pub")):
        if not path.is_file():
            continue
        try:
            keys.append(PublicKey.load(path))
        except SignatureError as exc:
            log.warning("Skipping trusted key file %s: %s", path, exc.message)
    return keys


# -- signature files ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Signature:
    key_id: bytes
    signature: bytes
    trusted_comment: bytes
    global_signature: bytes


def _signature_text(digest: bytes, secret: SecretKey, trusted_comment: str,
                    untrusted_comment: str) -> str:
    trusted_comment = _one_line(trusted_comment, "trusted comment")
    untrusted_comment = _one_line(untrusted_comment, "untrusted comment")
    signer = nacl.signing.SigningKey(secret.secret[:32])
    signature = signer.sign(digest).signature
    global_signature = signer.sign(signature + trusted_comment.encode("utf-8")).signature
    text = (f"{UNTRUSTED_PREFIX}{untrusted_comment}\n"
            f"{_b64encode(SIG_ALG_PREHASHED + secret.key_id + signature)}\n"
            f"{TRUSTED_PREFIX}{trusted_comment}\n"
            f"{_b64encode(global_signature)}\n")
    if len(text.encode("utf-8")) > MAX_SIGNATURE_BYTES:
        raise ValueError(f"the comments are too long: a signature file may be at most "
                         f"{MAX_SIGNATURE_BYTES} bytes")
    return text


def _parse_signature(text: str | bytes) -> _Signature:
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_SIGNATURE_BYTES:
        raise SignatureError(f"the signature file is {len(raw)} bytes; a minisign signature "
                             f"file is at most {MAX_SIGNATURE_BYTES} bytes")
    lines = raw.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    lines = [line.removesuffix(b"\r") for line in lines]
    if len(lines) != 4:
        count = f"{len(lines)} line{'s' if len(lines) != 1 else ''}"
        raise SignatureError(f"the signature file has {count}; a minisign signature file "
                             "has 4")
    if not lines[0].startswith(UNTRUSTED_PREFIX.encode()):
        raise SignatureError(f"the signature file's first line should start with "
                             f"'{UNTRUSTED_PREFIX}'")
    if not lines[2].startswith(TRUSTED_PREFIX.encode()):
        raise SignatureError(f"the signature file's third line should start with "
                             f"'{TRUSTED_PREFIX}'")
    sig = _b64decode(lines[1], "the signature line")
    if len(sig) != 2 + 8 + 64:
        raise SignatureError("the signature line has the wrong length")
    if sig[:2] == SIG_ALG:
        raise SignatureError("this is a legacy minisign signature (not prehashed), which is "
                             "not accepted; sign again with minisign 0.10 or later")
    if sig[:2] != SIG_ALG_PREHASHED:
        raise SignatureError("the signature uses an unknown algorithm")
    global_signature = _b64decode(lines[3], "the trusted comment's signature")
    if len(global_signature) != 64:
        raise SignatureError("the trusted comment's signature has the wrong length")
    return _Signature(sig[2:10], sig[10:], lines[2][len(TRUSTED_PREFIX):], global_signature)


def _check(signature: _Signature, digest: bytes, trusted: list[PublicKey]) -> Verified:
    if not trusted:
        raise SignatureError("no trusted public keys are installed, so no signature can be "
                             "checked; add the publisher's .pub file to the trusted keys")
    candidates = [key for key in trusted if key.key_id == signature.key_id]
    if not candidates:
        raise SignatureError(f"signed with key {_key_id_hex(signature.key_id)}, "
                             "which is not trusted here")
    for key in candidates:
        verifier = nacl.signing.VerifyKey(key.key)
        try:
            verifier.verify(digest, signature.signature)
        except nacl.exceptions.BadSignatureError:
            continue  # another trusted key may share this id
        try:
            verifier.verify(signature.signature + signature.trusted_comment,
                            signature.global_signature)
        except nacl.exceptions.BadSignatureError:
            raise SignatureError("the trusted comment does not match its signature: it was "
                                 "changed after signing") from None
        try:
            comment = signature.trusted_comment.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureError("the trusted comment is not UTF-8 text") from None
        return Verified(key, comment)
    raise SignatureError("the signature does not match: the file was changed or the "
                         "signature is for another file")


# -- small helpers -----------------------------------------------------------------------------

def _key_id_hex(key_id: bytes) -> str:
    # The little-endian u64 minisign prints, zero-padded to a stable 16 digits.
    return key_id[::-1].hex().upper()


def _checksum(key_id: bytes, secret: bytes) -> bytes:
    return hashlib.blake2b(SIG_ALG + key_id + secret, digest_size=32).digest()


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str | bytes, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None


def _one_line(text: str, what: str) -> str:
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"the {what} must be one line (no line breaks or NUL)")
    return text


def _read_small(path: Path, limit: int, what: str) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise SignatureError(f"cannot read the {what}: {exc.strerror}") from None
    if len(data) > limit:
        raise SignatureError(f"too large for a {what} file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError(f"not a {what} file (not text)") from None


def _hash_file(path: Path) -> bytes:
    digest = hashlib.blake2b(digest_size=64)
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise SignatureError(f"cannot read {path}: {exc.strerror}") from None
    return digest.digest()


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (failing if it exists) and flush it to disk."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SignatureError(f"{path} already exists; it is not overwritten") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` so that readers see the old or the new content, never a mix."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
