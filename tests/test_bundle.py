"""Tests for hotspot.bundle: real files, the real ``minisign`` CLI and the real ``age`` CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import subprocess

import pytest

from content_pack.signing import PublicKey
from hotspot.bundle import (
    OUTBOX_DIR, BundleError, export_bundle, hotspot_id, load_or_create_hotspot_key, read_bundle,
    read_manifest_uuids, write_bundle,
)
from hotspot.contributions import ContributionQueue
from hotspot.envelope import read_envelope_plaintext
from hotspot.errors import SignatureError
from test_envelope import hub_identity, need  # noqa: F401 (fixture)


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def queue(data_dir, hub_identity):
    return ContributionQueue(data_dir / "contributions", [hub_identity[0]],
                             today=lambda: dt.date(2026, 10, 1))


@pytest.fixture
def key(data_dir):
    return load_or_create_hotspot_key(data_dir)


def submit(queue, text: str, attachment: bytes | None = None) -> str:
    writer = queue.new("report", "en")
    writer.add_field("what_happened", text)
    if attachment is not None:
        writer.begin_attachment("note.txt", "text/plain")
        writer.write_attachment(attachment)
        writer.end_attachment()
    return writer.commit().uuid


def envelope_bytes(queue, uuid: str) -> bytes:
    with queue.open_envelope(uuid) as f:
        return f.read()


def test_the_hotspot_key_is_made_once_and_kept_private(data_dir):
    key = load_or_create_hotspot_key(data_dir)
    folder = data_dir / "keys"
    assert (folder / "hotspot.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_hotspot_key(data_dir) == key
    assert PublicKey.load(folder / "hotspot.pub") == key.public_key()
    assert len(hotspot_id(key)) == 16


def test_a_bundle_is_written_verified_and_checked_by_the_minisign_cli(queue, key, data_dir,
                                                                      tmp_path):
    uuids = sorted(submit(queue, f"report {n}") for n in range(3))
    usb = tmp_path / "usb"
    path = write_bundle(queue, usb, key)

    assert path.parent == usb / OUTBOX_DIR
    assert path.name == f"bundle-{hotspot_id(key)}-20261001-1"
    assert not list(path.parent.glob("tmp-*"))
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted([f"{u}.age" for u in uuids] + ["manifest.json",
                                                          "manifest.json.minisig"])
    for name in names:  # FAT-safe: short, plain characters
        assert len(name) <= 64 and all(c.isalnum() or c in ".-" for c in name)

    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["hotspot"]["id"] == hotspot_id(key)
    assert [e["uuid"] for e in manifest["envelopes"]] == uuids
    for envelope in manifest["envelopes"]:
        entry = queue.entry(envelope["uuid"])
        assert (envelope["size"], envelope["sha256"], envelope["kind"], envelope["day"]) == (
            entry.size, entry.sha256, "report", "2026-10-01")
    assert read_manifest_uuids(path) == uuids

    minisign = need("minisign")
    result = subprocess.run([minisign, "-V", "-H", "-p", str(data_dir / "keys" / "hotspot.pub"),
                             "-m", str(path / "manifest.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"hotspot:{hotspot_id(key)}" in result.stdout

    items = read_bundle(path, [key.public_key()])
    assert [(i.uuid, i.sha256) for i in items] == [
        (u, queue.entry(u).sha256) for u in uuids]
    for item in items:
        assert item.stream.read() == envelope_bytes(queue, item.uuid)
    # Nothing moved in the queue: marking exported is the caller's step, after this returned.
    assert queue.counts()["queued"] == 3
    assert queue.mark_exported(read_manifest_uuids(path)) == 3


def test_split_parts_rejoin_and_decrypt_with_the_age_cli(queue, key, tmp_path, hub_identity):
    _, identity = hub_identity
    attachment = os.urandom(10_000)
    uuid = submit(queue, "a report with a file", attachment.hex().encode())
    size = queue.entry(uuid).size
    path = write_bundle(queue, tmp_path / "usb", key, split_bytes=4096)

    parts = sorted(path.glob(f"{uuid}.age.part*"))
    assert len(parts) == -(-size // 4096) >= 5
    assert all(p.stat().st_size == 4096 for p in parts[:-1])
    assert not (path / f"{uuid}.age").exists()
    [described] = json.loads((path / "manifest.json").read_text())["envelopes"]
    assert [f["name"] for f in described["files"]] == [p.name for p in parts]

    [item] = read_bundle(path, [key.public_key()])
    joined = tmp_path / "joined.age"
    joined.write_bytes(item.stream.read())
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == item.sha256
    need("age")
    plaintext = subprocess.run(["age", "-d", "-i", str(identity), str(joined)],
                               check=True, capture_output=True).stdout
    contribution = read_envelope_plaintext(io.BytesIO(plaintext))
    assert contribution.attachments[0].read_bytes() == attachment.hex().encode()


def test_an_envelope_exactly_at_the_split_size_is_one_file(queue, key, tmp_path):
    uuid = submit(queue, "exact")
    path = write_bundle(queue, tmp_path / "usb", key, split_bytes=queue.entry(uuid).size)
    assert (path / f"{uuid}.age").exists() and not list(path.glob("*.part*"))


@pytest.mark.parametrize("tamper", ["flip a byte", "truncate", "drop a part", "swap parts"])
def test_a_tampered_envelope_is_detected(queue, key, tmp_path, tamper):
    submit(queue, "first", b"x" * 9000)
    path = write_bundle(queue, tmp_path / "usb", key, split_bytes=4096)
    parts = sorted(path.glob("*.part*"))
    if tamper == "flip a byte":
        data = bytearray(parts[1].read_bytes())
        data[100] ^= 1
        parts[1].write_bytes(bytes(data))
    elif tamper == "truncate":
        parts[-1].write_bytes(parts[-1].read_bytes()[:-1])
    elif tamper == "drop a part":
        parts[-1].unlink()
    else:
        a, b = parts[0].read_bytes(), parts[1].read_bytes()
        parts[0].write_bytes(b)
        parts[1].write_bytes(a)
    with pytest.raises(BundleError):
        read_bundle(path, [key.public_key()])


def test_a_changed_manifest_or_an_untrusted_key_is_refused(queue, key, data_dir, tmp_path):
    submit(queue, "first")
    path = write_bundle(queue, tmp_path / "usb", key)
    other = load_or_create_hotspot_key(tmp_path / "other-hotspot")
    with pytest.raises(SignatureError, match="not trusted"):
        read_bundle(path, [other.public_key()])
    manifest = path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"report"', '"message"'))
    with pytest.raises(SignatureError):
        read_bundle(path, [key.public_key()])
    with pytest.raises(SignatureError):
        read_bundle(path)  # even checked against the key it names itself


def test_the_same_envelopes_give_the_same_manifest_and_the_same_items(queue, key, tmp_path):
    uuids = [submit(queue, f"report {n}") for n in range(3)]
    first = write_bundle(queue, tmp_path / "usb", key)
    queue.mark_exported(uuids)
    second = write_bundle(queue, tmp_path / "usb", key, uuids=reversed(uuids))
    assert second.name.endswith("-2") and first != second
    for name in ("manifest.json", "manifest.json.minisig"):
        assert (first / name).read_bytes() == (second / name).read_bytes()

    def imported(path):  # what a hub keys its import on
        return {(i.uuid, i.sha256, hashlib.sha256(i.stream.read()).hexdigest())
                for i in read_bundle(path, [key.public_key()])}
    assert imported(first) == imported(first) == imported(second)
    assert len(imported(first)) == 3


def test_nothing_to_export_writes_nothing(queue, key, tmp_path):
    assert write_bundle(queue, tmp_path / "usb", key) is None
    assert not (tmp_path / "usb" / OUTBOX_DIR).exists() or not list(
        (tmp_path / "usb" / OUTBOX_DIR).iterdir())


def test_an_unfinished_bundle_is_replaced_and_never_read(queue, key, tmp_path):
    submit(queue, "first")
    outbox = tmp_path / "usb" / OUTBOX_DIR
    stale = outbox / f"tmp-bundle-{hotspot_id(key)}-20261001-1"
    stale.mkdir(parents=True)
    (stale / "half-written.age").write_bytes(b"age-encryption.org/v1\n")
    path = write_bundle(queue, tmp_path / "usb", key)
    assert not stale.exists()
    assert path.name.endswith("-1")
    with pytest.raises(BundleError, match="no manifest"):
        read_bundle(stale)


def test_an_envelope_changed_in_the_queue_is_not_exported(queue, key, tmp_path):
    uuid = submit(queue, "first")
    entry = queue.entry(uuid)
    target = queue.root / "queued" / entry.name
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))  # same size, different content: the index still has the old
    with pytest.raises(BundleError, match="reindex"):
        write_bundle(queue, tmp_path / "usb", key)
    assert not list((tmp_path / "usb" / OUTBOX_DIR).iterdir())


def test_a_bundle_copied_elsewhere_still_reads(queue, key, tmp_path):
    submit(queue, "first")
    path = write_bundle(queue, tmp_path / "usb", key)
    copy = tmp_path / "hub-inbox" / path.name
    shutil.copytree(path, copy)
    assert [i.uuid for i in read_bundle(copy, [key.public_key()])] == read_manifest_uuids(path)


def test_export_bundle_marks_exported_only_what_the_bundle_holds(queue, data_dir, tmp_path):
    uuids = [submit(queue, f"report {n}") for n in range(2)]
    path = export_bundle(queue, tmp_path / "usb", data_dir)
    assert sorted(read_manifest_uuids(path)) == sorted(uuids)
    assert queue.counts() == {"queued": 0, "exported": 2, "delivered": 0}
    late = submit(queue, "arrived after")
    assert export_bundle(queue, tmp_path / "usb", data_dir).name.endswith("-2")
    assert queue.entry(late).state == "exported"
    assert export_bundle(queue, tmp_path / "usb", data_dir) is None
