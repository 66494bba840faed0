"""Signing: minisign-compatible keys and signatures, checked against the real minisign CLI.

Passphrase-protected keys use minisign's scrypt limits (1 GiB, seconds each), so the few tests
that need one share module-scoped keys. minisign reads a password from stdin when stdin is not a
terminal (one line per prompt), which is how the tests feed it.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import needs_tools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from content_pack.signing import (
    PublicKey,
    SecretKey,
    Verified,
    generate_keypair,
    load_trusted_keys,
    sign_bytes,
    sign_file,
    verify_bytes,
    verify_file,
)
from hotspot.errors import SignatureError

PASSPHRASE = "correct horse battery staple"
COMMENT = "library:demo version:3 kind:full"
DATA = b'{"format": "hotspot-pack", "format_version": 1}\n' * 100

needs_minisign = needs_tools("minisign", package="minisign")


def minisign(*args: str, cwd: Path, password: str | None = None) -> subprocess.CompletedProcess:
    """Run the real minisign; a password is given once per prompt on stdin."""
    stdin = None if password is None else (password + "\n") * 2
    return subprocess.run(["minisign", *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=120)


def minisign_ok(*args: str, cwd: Path, password: str | None = None) -> str:
    result = minisign(*args, cwd=cwd, password=password)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- keys shared by tests ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def secret() -> SecretKey:
    return SecretKey.generate()


@pytest.fixture(scope="module")
def our_encrypted(tmp_path_factory) -> tuple[Path, Path, SecretKey]:
    """Our passphrase-protected key pair, loaded back once."""
    folder = tmp_path_factory.mktemp("our-encrypted")
    key_path, pub_path = generate_keypair(folder / "publisher", passphrase=PASSPHRASE)
    return key_path, pub_path, SecretKey.load(key_path, PASSPHRASE)


@pytest.fixture(scope="module")
def minisign_encrypted(tmp_path_factory) -> Path:
    """A passphrase-protected key pair made by ``minisign -G``: its folder holds x.key, x.pub."""
    folder = tmp_path_factory.mktemp("minisign-encrypted")
    minisign_ok("-G", "-p", "x.pub", "-s", "x.key", cwd=folder, password=PASSPHRASE)
    assert b"EdSc" in base64.b64decode((folder / "x.key").read_text().splitlines()[1])[:4]
    return folder


# -- our keys and signatures, checked by minisign ----------------------------------------------

@needs_minisign
def test_our_unencrypted_key_and_signature_verify_with_minisign(tmp_path):
    key_path, pub_path = generate_keypair(tmp_path / "publisher", passphrase=None)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert pub_path.name == "publisher.pub"
    (tmp_path / "manifest.json").write_bytes(DATA)
    secret = SecretKey.load(key_path, None)

    sig_path = sign_file(tmp_path / "manifest.json", secret, trusted_comment=COMMENT)
    assert sig_path == tmp_path / "manifest.json.minisig"
    out = minisign_ok("-V", "-H", "-p", pub_path.name, "-m", "manifest.json", cwd=tmp_path)
    assert f"Trusted comment: {COMMENT}" in out

    other = sign_file(tmp_path / "manifest.json", secret, trusted_comment="elsewhere",
                      sig_path=tmp_path / "other.sig")
    out = minisign_ok("-V", "-H", "-p", "publisher.pub", "-m", "manifest.json", "-x", other.name,
                      cwd=tmp_path)
    assert "Trusted comment: elsewhere" in out
    # Our key id is printed the way minisign prints it.
    public = PublicKey.load(pub_path)
    assert pub_path.read_text().startswith(f"untrusted comment: minisign public key "
                                           f"{public.key_id_hex}\n")

    # minisign can sign with our unencrypted key too.
    minisign_ok("-S", "-s", key_path.name, "-m", "manifest.json", "-x", "by-minisign.sig",
                "-t", COMMENT, cwd=tmp_path)
    verified = verify_file(tmp_path / "manifest.json",
                           (tmp_path / "by-minisign.sig").read_text(), [public])
    assert verified == Verified(public, COMMENT)


@needs_minisign
def test_our_encrypted_key_works_with_minisign(tmp_path, our_encrypted):
    key_path, pub_path, secret = our_encrypted
    raw = base64.b64decode(key_path.read_text().splitlines()[1])
    assert raw[:6] == b"EdScB2"
    assert int.from_bytes(raw[38:46], "little") == 33554432  # minisign's defaults
    assert int.from_bytes(raw[46:54], "little") == 1073741824
    assert secret.public_key() == PublicKey.load(pub_path)
    (tmp_path / "file.bin").write_bytes(DATA)

    sign_file(tmp_path / "file.bin", secret, trusted_comment=COMMENT)
    minisign_ok("-V", "-H", "-p", str(pub_path), "-m", "file.bin", cwd=tmp_path)

    # minisign decrypts our key with the passphrase (so our scrypt use matches its own).
    minisign_ok("-S", "-s", str(key_path), "-m", "file.bin", "-x", "m.sig", "-t", "by minisign",
                cwd=tmp_path, password=PASSPHRASE)
    verified = verify_file(tmp_path / "file.bin", (tmp_path / "m.sig").read_text(),
                           [secret.public_key()])
    assert verified.trusted_comment == "by minisign"


# -- minisign's keys and signatures, read by us ------------------------------------------------

@needs_minisign
def test_minisign_unencrypted_key_and_signatures(tmp_path):
    minisign_ok("-G", "-W", "-p", "x.pub", "-s", "x.key", cwd=tmp_path)
    public = PublicKey.load(tmp_path / "x.pub")
    secret = SecretKey.load(tmp_path / "x.key", None)
    assert secret.public_key() == public
    # key_id_hex is the number minisign prints (it drops leading zeros: one key in 16 shows
    # 15 digits), zero-padded to 16: the stored id bytes reversed, uppercase hex.
    printed = re.search(r"minisign public key ([0-9A-F]{1,16})\n", (tmp_path / "x.pub").read_text())
    assert int(printed.group(1), 16) == int(public.key_id_hex, 16)
    assert public.key_id_hex == public.key_id[::-1].hex().upper() and len(public.key_id_hex) == 16

    (tmp_path / "big.bin").write_bytes(os.urandom(3 << 20))
    comment = "  spaced, with: colons and ünïcode  "
    minisign_ok("-S", "-s", "x.key", "-m", "big.bin", "-t", comment, cwd=tmp_path)
    verified = verify_file(tmp_path / "big.bin", (tmp_path / "big.bin.minisig").read_text(),
                           [public])
    assert verified == Verified(public, comment)

    # We sign with minisign's key; minisign checks it.
    sign_file(tmp_path / "big.bin", secret, trusted_comment=COMMENT, sig_path=tmp_path / "o.sig")
    minisign_ok("-V", "-H", "-p", "x.pub", "-m", "big.bin", "-x", "o.sig", cwd=tmp_path)


@needs_minisign
def test_minisign_encrypted_key_right_and_wrong_passphrase(tmp_path, minisign_encrypted):
    folder = minisign_encrypted
    public = PublicKey.load(folder / "x.pub")
    with pytest.raises(SignatureError, match="protected by a passphrase"):
        SecretKey.load(folder / "x.key", None)
    with pytest.raises(SignatureError, match="wrong passphrase"):
        SecretKey.load(folder / "x.key", "not the passphrase")
    secret = SecretKey.load(folder / "x.key", PASSPHRASE)
    assert secret.public_key() == public
    assert verify_bytes(DATA, sign_bytes(DATA, secret, trusted_comment=COMMENT),
                        [public]).trusted_comment == COMMENT


@needs_minisign
def test_minisign_encrypted_key_signatures_verify(tmp_path, minisign_encrypted):
    folder = minisign_encrypted
    (tmp_path / "manifest.json").write_bytes(DATA)
    minisign_ok("-S", "-s", str(folder / "x.key"), "-m", "manifest.json", "-t", COMMENT,
                cwd=tmp_path, password=PASSPHRASE)
    public = PublicKey.load(folder / "x.pub")
    verified = verify_file(tmp_path / "manifest.json",
                           (tmp_path / "manifest.json.minisig").read_text(), [public])
    assert verified == Verified(public, COMMENT)


@needs_minisign
def test_minisign_legacy_signatures_are_refused(tmp_path):
    minisign_ok("-G", "-W", "-p", "x.pub", "-s", "x.key", cwd=tmp_path)
    (tmp_path / "file.bin").write_bytes(DATA)
    minisign_ok("-S", "-l", "-s", "x.key", "-m", "file.bin", "-t", COMMENT, cwd=tmp_path)
    signature = (tmp_path / "file.bin.minisig").read_text()
    assert base64.b64decode(signature.splitlines()[1])[:2] == b"Ed"
    with pytest.raises(SignatureError, match="legacy minisign signature"):
        verify_file(tmp_path / "file.bin", signature, [PublicKey.load(tmp_path / "x.pub")])


# -- tampering ---------------------------------------------------------------------------------

def flip_in_line(signature: str, line: int, index: int) -> str:
    """Change one decoded byte of a base64 line of a signature file."""
    lines = signature.splitlines()
    raw = bytearray(base64.b64decode(lines[line]))
    raw[index] ^= 0x01
    lines[line] = base64.b64encode(bytes(raw)).decode()
    return "\n".join(lines) + "\n"


def replace_line(signature: str, line: int, text: str) -> str:
    lines = signature.splitlines()
    lines[line] = text
    return "\n".join(lines) + "\n"


TAMPERING = {
    "file byte": (lambda d, s: (d[:10] + bytes([d[10] ^ 1]) + d[11:], s),
                  "does not match: the file was changed"),
    "signature byte": (lambda d, s: (d, flip_in_line(s, 1, 40)),
                       "does not match: the file was changed"),
    "key id byte": (lambda d, s: (d, flip_in_line(s, 1, 3)), "which is not trusted here"),
    "algorithm": (lambda d, s: (d, flip_in_line(s, 1, 0)), "unknown algorithm"),
    "trusted comment": (lambda d, s: (d, replace_line(s, 2, "trusted comment: library:evil")),
                        "trusted comment does not match"),
    "global signature byte": (lambda d, s: (d, flip_in_line(s, 3, 7)),
                              "trusted comment does not match"),
    "truncated": (lambda d, s: (d, "\n".join(s.splitlines()[:3])), "has 3 lines"),
    "cut mid-line": (lambda d, s: (d, s[:len(s) // 2]), "has 2 lines"),
    "garbage": (lambda d, s: (d, "\x00\xffnot a signature at all"), "has 1 line;"),
    "four garbage lines": (lambda d, s: (d, "a\nb\nc\nd\n"), "first line should start"),
    "no trusted comment prefix": (lambda d, s: (d, replace_line(s, 2, "library:demo")),
                                  "third line should start"),
    "bad base64": (lambda d, s: (d, replace_line(s, 1, "RUQ*not-base64*")), "not valid base64"),
    "short signature line": (lambda d, s: (d, replace_line(s, 1, base64.b64encode(
        b"ED" + bytes(60)).decode())), "signature line has the wrong length"),
    "short global signature": (lambda d, s: (d, replace_line(s, 3, "AAAA")),
                               "signature has the wrong length"),
    "1 MiB signature file": (lambda d, s: (d, s + "x" * (1 << 20)), "at most 4096 bytes"),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_tampering_is_caught(case, secret):
    signature = sign_bytes(DATA, secret, trusted_comment=COMMENT)
    assert verify_bytes(DATA, signature, [secret.public_key()]).trusted_comment == COMMENT
    tamper, message = TAMPERING[case]
    data, signature = tamper(DATA, signature)
    with pytest.raises(SignatureError, match=message):
        verify_bytes(data, signature, [secret.public_key()])


def test_wrong_untrusted_and_no_keys(tmp_path, secret):
    (tmp_path / "file.bin").write_bytes(DATA)
    signature = sign_file(tmp_path / "file.bin", secret, trusted_comment=COMMENT).read_text()
    other = SecretKey.generate().public_key()
    same_id_other_key = PublicKey(secret.key_id, other.key)
    with pytest.raises(SignatureError, match="the signature does not match"):
        verify_file(tmp_path / "file.bin", signature, [same_id_other_key])
    with pytest.raises(SignatureError) as caught:
        verify_file(tmp_path / "file.bin", signature, [other])
    assert str(caught.value) == (f"signed with key {secret.public_key().key_id_hex}, "
                                 "which is not trusted here")
    with pytest.raises(SignatureError, match="no trusted public keys"):
        verify_file(tmp_path / "file.bin", signature, [])
    # The right key among others (even one sharing its id) is found.
    trusted = iter([other, same_id_other_key, secret.public_key()])
    assert verify_file(tmp_path / "file.bin", signature, trusted).key == secret.public_key()
    (tmp_path / "file.bin").write_bytes(DATA + b" ")
    with pytest.raises(SignatureError, match="the file was changed"):
        verify_file(tmp_path / "file.bin", signature, [secret.public_key()])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=2048),
       comment=st.text(st.characters(blacklist_categories=("Cs",),
                                     blacklist_characters="\r\n\x00"), max_size=300),
       where=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_round_trip_and_any_flipped_byte_fails(secret, data, comment, where, bit):
    signature = sign_bytes(data, secret, trusted_comment=comment, untrusted_comment=comment)
    verified = verify_bytes(data, signature, [secret.public_key()])
    assert verified == Verified(secret.public_key(), comment)
    flipped = bytearray(data)
    flipped[where % len(data)] ^= 1 << bit
    with pytest.raises(SignatureError, match="does not match"):
        verify_bytes(bytes(flipped), signature, [secret.public_key()])


# -- signing rules, key files ------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["two\nlines", "carriage\rreturn", "nul\x00"])
def test_comments_must_be_one_line(secret, bad):
    with pytest.raises(ValueError, match="one line"):
        sign_bytes(DATA, secret, trusted_comment=bad)
    with pytest.raises(ValueError, match="one line"):
        sign_bytes(DATA, secret, trusted_comment="ok", untrusted_comment=bad)


def test_signatures_over_4_kib_are_not_made(secret):
    with pytest.raises(ValueError, match="at most 4096 bytes"):
        sign_bytes(DATA, secret, trusted_comment="x" * 4000)


def test_generate_keypair_refuses_to_overwrite(tmp_path):
    key_path, pub_path = generate_keypair(tmp_path / "team.v2", passphrase=None)
    assert (key_path.name, pub_path.name) == ("team.v2.key", "team.v2.pub")
    before = key_path.read_bytes()
    with pytest.raises(SignatureError, match="already exists"):
        generate_keypair(tmp_path / "team.v2", passphrase=None)
    assert key_path.read_bytes() == before
    pub_path.unlink()
    with pytest.raises(SignatureError, match="already exists"):
        generate_keypair(tmp_path / "team.v2", passphrase=None)
    assert not pub_path.exists()
    _, other_pub = generate_keypair(tmp_path / "other", passphrase=None)
    assert PublicKey.load(other_pub).key_id != SecretKey.load(key_path, None).key_id


def test_public_key_text_forms(secret):
    public = secret.public_key()
    text = public.to_text()
    bare = text.splitlines()[1]
    assert PublicKey.parse(text) == PublicKey.parse(bare) == public
    assert PublicKey.parse(public.to_text("my comment")) == public
    with pytest.raises(SignatureError, match="not valid base64"):
        PublicKey.parse("untrusted comment: x\n!!!!\n")
    with pytest.raises(SignatureError, match="not a minisign Ed25519 public key"):
        PublicKey.parse(base64.b64encode(b"ED" + bytes(40)).decode())


def test_damaged_unencrypted_secret_key_is_refused(tmp_path, secret):
    lines = secret.to_text(None).splitlines()
    raw = bytearray(base64.b64decode(lines[1]))
    raw[60] ^= 1  # inside the secret key
    (tmp_path / "bad.key").write_text(f"{lines[0]}\n{base64.b64encode(bytes(raw)).decode()}\n")
    with pytest.raises(SignatureError, match="bad.key: this secret key is damaged"):
        SecretKey.load(tmp_path / "bad.key", None)


def test_load_trusted_keys(tmp_path, secret, caplog):
    assert load_trusted_keys(tmp_path / "missing") == []
    folder = tmp_path / "trusted"
    folder.mkdir()
    assert load_trusted_keys(folder) == []
    first, second, ignored = (SecretKey.generate().public_key() for _ in range(3))
    (folder / "first.pub").write_text(first.to_text())
    (folder / "second.pub").write_text(second.to_text().splitlines()[1] + "\n")  # bare line
    (folder / "ignored.txt").write_text(ignored.to_text())
    (folder / "broken.pub").write_text("untrusted comment: x\nnot a key\n")
    (folder / "secret.pub").write_text(secret.to_text(None))
    (folder / "empty.pub").write_text("")
    (folder / "folder.pub").mkdir()

    with caplog.at_level(logging.WARNING, logger="content_pack.signing"):
        keys = load_trusted_keys(folder)
    assert keys == [first, second]
    warned = "\n".join(record.getMessage() for record in caplog.records)
    for name in ("broken.pub", "secret.pub", "empty.pub"):
        assert name in warned
    assert "ignored.txt" not in warned and "first.pub" not in warned
