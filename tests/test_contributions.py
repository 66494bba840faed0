"""Tests for hotspot.contributions: the envelope writer and the queue, on real files.

Envelopes are decrypted with the real ``age`` CLI; a real writer process is killed with
SIGKILL; a real small tmpfs fills up (as root).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from conftest import mounted_tmpfs

from hotspot.config import load_config
from hotspot.contributions import (
    MB, ContributionQueue, ContributionsNotConfigured, InsufficientStorage, Limits, TooLarge,
    UnsupportedFile, generate_demo_recipient, receipt_code,
)
from hotspot.envelope import MAGIC, read_envelope_plaintext
from hotspot.errors import BadRequest, NotFound
from test_envelope import age_decrypt, hub_identity  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parent.parent
JPEG_HEAD = (REPO / "hotspot" / "demo" / "files" / "cadena-alerta-temprana.jpg").read_bytes()
MARKER = b"ZQXJ-MARKER-7731"


class Clock:
    def __init__(self, day: str = "2026-10-01"):
        self.day = dt.date.fromisoformat(day)

    def __call__(self) -> dt.date:
        return self.day


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def queue(tmp_path, hub_identity, clock):
    recipient, _ = hub_identity
    return ContributionQueue(tmp_path / "data" / "contributions", [recipient], today=clock)


def decrypt(queue, entry, identity):
    plaintext = age_decrypt(queue.root / entry.state / entry.name, identity)
    return read_envelope_plaintext(io.BytesIO(plaintext))


def chunks(data: bytes, size: int = 65536):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def submit(queue, kind="message", fields=None, files=(), **kwargs):
    writer = queue.new(kind, kwargs.pop("language", "en"), **kwargs)
    for name, value in (fields or {"message": "Hello"}).items():
        writer.add_field(name, value)
    for name, data in files:
        writer.begin_attachment(name, None)
        for chunk in chunks(data):
            writer.write_attachment(chunk)
        writer.end_attachment()
    return writer.commit()


def every_file(root: Path):
    return sorted(p for p in root.rglob("*") if p.is_file())


def visible(queue) -> list[Path]:
    """Envelopes and temp files: what a failed submission must not leave behind."""
    return [p for p in every_file(queue.root) if p.parent.name in ("queued", "tmp")]


# -- writing and reading back -------------------------------------------------------------------

def test_an_envelope_decrypts_with_the_age_cli_to_the_same_fields_and_bytes(queue, hub_identity):
    _, identity = hub_identity
    photo = JPEG_HEAD + os.urandom(5 * 1024 * 1024)
    fields = {"what_happened": "Río contaminado cerca de la escuela.", "place": "Vereda 3"}
    writer = queue.new("report", "es")
    for name, value in fields.items():
        writer.add_field(name, value)
    writer.begin_attachment("IMG_0042.JPG", "image/jpeg")
    for chunk in chunks(photo):
        writer.write_attachment(chunk)
    described = writer.end_attachment()
    writer.add_field("date", "2026-09-30")  # fields may come after files in a form
    receipt = writer.commit()

    assert described["media_type"] == "image/jpeg" and described["size"] == len(photo)
    assert receipt.code == receipt_code(receipt.uuid) and len(receipt.code) == 8
    [entry] = queue.list()
    assert (entry.uuid, entry.state, entry.kind, entry.day) == (
        receipt.uuid, "queued", "report", "2026-10-01")
    path = queue.root / "queued" / entry.name
    assert entry.size == path.stat().st_size
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes().startswith(b"age-encryption.org/v1\n")

    contribution = decrypt(queue, entry, identity)
    assert contribution.fields == {**fields, "date": "2026-09-30"}
    assert contribution.meta["uuid"] == receipt.uuid
    assert contribution.meta["kind"] == "report" and contribution.meta["language"] == "es"
    assert contribution.meta["day"] == "2026-10-01"
    [attachment] = contribution.attachments
    assert attachment.name == "IMG_0042.JPG" and attachment.media_type == "image/jpeg"
    assert hashlib.sha256(attachment.read_bytes()).hexdigest() == \
        hashlib.sha256(photo).hexdigest()


def test_file_times_show_only_the_day(queue):
    submit(queue)
    [entry] = queue.list()
    midnight = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc).timestamp()
    assert (queue.root / "queued" / entry.name).stat().st_mtime == midnight


def test_feedback_names_its_resource_and_repeated_fields_are_kept(queue, hub_identity):
    _, identity = hub_identity
    writer = queue.new("feedback", "fr", resource_id="radio-basics")
    writer.add_field("useful", "yes")
    writer.add_field("theme", "patrols")
    writer.add_field("theme", "legal-support")
    writer.begin_attachment("", None)  # a file input left empty: dropped
    assert writer.end_attachment() is None
    writer.commit()
    contribution = decrypt(queue, queue.list()[0], identity)
    assert contribution.meta["resource_id"] == "radio-basics"
    assert contribution.fields == {"useful": "yes", "theme": ["patrols", "legal-support"]}
    assert contribution.attachments == []
    with pytest.raises(BadRequest):
        queue.new("feedback", "fr")
    with pytest.raises(BadRequest):
        queue.new("message", "fr", resource_id="radio-basics")
    with pytest.raises(BadRequest):
        queue.new("gossip", "fr")
    with pytest.raises(BadRequest):
        queue.new("message", "xx")


def test_nothing_readable_on_disk_during_and_after_writing(queue):
    text = (b"Line about " + MARKER + b" and the river.\n") * 20_000  # ~0.8 MB of text
    writer = queue.new("report", "en")
    writer.add_field("what_happened", f"Someone saw {MARKER.decode()} at the river")
    writer.add_field("contact", MARKER.decode())
    writer.begin_attachment(f"{MARKER.decode()}.txt", "text/plain")
    half = len(text) // 2
    for chunk in chunks(text[:half]):
        writer.write_attachment(chunk)
    # Mid-way: the temp file exists and holds only ciphertext.
    temps = list((queue.root / "tmp").iterdir())
    assert len(temps) == 1 and temps[0].stat().st_size > 100_000
    for path in every_file(queue.root.parent):
        assert MARKER not in path.read_bytes(), path
    for chunk in chunks(text[half:]):
        writer.write_attachment(chunk)
    writer.end_attachment()
    writer.commit()
    files = every_file(queue.root.parent)
    assert any(p.suffix == ".age" for p in files)
    for path in files:
        assert MARKER not in path.read_bytes(), path
        assert MARKER.lower() not in path.read_bytes().lower(), path


def test_memory_stays_bounded_while_writing_a_30_mb_attachment(tmp_path, hub_identity, clock):
    queue = ContributionQueue(tmp_path / "c", [hub_identity[0]], today=clock,
                              limits=Limits(max_file_bytes=40 * MB, max_total_bytes=40 * MB))
    chunk = os.urandom(65536)
    writer = queue.new("report", "en")
    writer.begin_attachment("video.mp4", "video/mp4")
    tracemalloc.start()
    try:
        writer.write_attachment(b"\x00\x00\x00\x18ftypmp42" + bytes(65536 - 12))
        for _ in range(30 * 16 - 1):
            writer.write_attachment(chunk)
        writer.end_attachment()
        writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert queue.list()[0].size > 30 * 1024 * 1024


# -- limits and refused files -------------------------------------------------------------------

@pytest.fixture
def small_queue(tmp_path, hub_identity, clock):
    recipient, _ = hub_identity
    limits = Limits(max_file_bytes=100_000, max_total_bytes=150_000, max_files=2,
                    max_field_chars=1000, max_fields_chars=1500, max_fields=4)
    return ContributionQueue(tmp_path / "contributions", [recipient], limits=limits, today=clock)


def refused(queue, error, steps):
    writer = queue.new("report", "en")
    with pytest.raises(error) as caught:
        steps(writer)
    assert visible(queue) == [] and queue.list() == []
    with pytest.raises(RuntimeError):  # the writer is aborted: nothing more goes in
        writer.add_field("more", "x")
    return caught.value


def attach(writer, name, data):
    writer.begin_attachment(name, None)
    for chunk in chunks(data, 10_000):
        writer.write_attachment(chunk)
    writer.end_attachment()


def test_a_file_over_the_per_file_limit(small_queue):
    error = refused(small_queue, TooLarge, lambda w: attach(w, "big.jpg", JPEG_HEAD[:4096] +
                                                            bytes(100_000)))
    assert error.status == 413 and isinstance(error, BadRequest)
    assert "big.jpg" in error.message and "0.1 MB" in error.message


def test_files_over_the_total_limit(small_queue):
    def steps(writer):
        attach(writer, "one.jpg", JPEG_HEAD[:4096] + bytes(90_000))
        attach(writer, "two.jpg", JPEG_HEAD[:4096] + bytes(90_000))
    error = refused(small_queue, TooLarge, steps)
    assert "all its files and texts together" in error.message


def test_too_many_files(small_queue):
    def steps(writer):
        for n in range(3):
            attach(writer, f"{n}.txt", b"a note\n")
    refused(small_queue, TooLarge, steps)


def test_field_limits(small_queue):
    refused(small_queue, TooLarge, lambda w: w.add_field("message", "x" * 1001))
    refused(small_queue, TooLarge, lambda w: [w.add_field(f"f{n}", "x" * 900) for n in range(2)])
    refused(small_queue, TooLarge, lambda w: [w.add_field(f"f{n}", "x") for n in range(5)])
    refused(small_queue, BadRequest, lambda w: w.add_field("Bad Name!", "x"))


@pytest.mark.parametrize("name, data", [
    ("photo.jpg", b"\x7fELF\x02\x01\x01\x00" + bytes(5000)),
    ("photo.jpg", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(5000)),
    ("photo.jpg", b"<!DOCTYPE html><html><body><script>steal()</script></body></html>"),
    ("notes.txt", b"plain text at first\n" * 300 + b"\x00\x01\x02binary later"),
    ("notes.txt", b"caf\xe9 in Latin-1, not UTF-8\n"),
])
def test_a_refused_type_is_decided_from_content(small_queue, name, data):
    error = refused(small_queue, UnsupportedFile, lambda w: attach(w, name, data))
    assert isinstance(error, BadRequest) and name in error.message


def test_a_jpeg_named_txt_is_accepted_as_a_jpeg(small_queue, hub_identity):
    _, identity = hub_identity
    writer = small_queue.new("report", "en")
    writer.begin_attachment("notes.txt", "text/plain")
    writer.write_attachment(JPEG_HEAD[:3])  # tiny chunks: the type waits for enough bytes
    writer.write_attachment(JPEG_HEAD[3:50_000])
    described = writer.end_attachment()
    writer.commit()
    assert described["media_type"] == "image/jpeg"
    assert described["declared_type"] == "text/plain"
    [attachment] = decrypt(small_queue, small_queue.list()[0], identity).attachments
    assert attachment.media_type == "image/jpeg" and attachment.read_bytes() == JPEG_HEAD[:50_000]


def test_abort_and_context_manager_leave_nothing(queue):
    writer = queue.new("message", "en")
    writer.add_field("message", "never mind")
    writer.abort()
    writer.abort()
    with queue.new("message", "en") as writer:
        writer.add_field("message", "the client went away")
    assert visible(queue) == [] and queue.list() == []


# -- keys and unencrypted storage ---------------------------------------------------------------

def test_without_recipients_contributions_are_refused_with_the_setting_to_configure(tmp_path):
    queue = ContributionQueue(tmp_path / "c", [])
    with pytest.raises(ContributionsNotConfigured) as caught:
        queue.new("message", "en")
    assert "contributions.recipients" in caught.value.message
    assert caught.value.status == 503
    assert isinstance(queue.refusal(), ContributionsNotConfigured)
    assert visible(queue) == []


def test_a_bad_recipient_key_is_a_config_error(tmp_path):
    from hotspot.errors import ConfigError
    with pytest.raises(ConfigError, match="age public key"):
        ContributionQueue(tmp_path / "c", ["age1notakey"])


def test_allow_unencrypted_stores_a_plain_container(tmp_path, clock):
    queue = ContributionQueue(tmp_path / "c", [], allow_unencrypted=True, today=clock)
    submit(queue, fields={"message": "in the clear"})
    [entry] = queue.list()
    assert entry.name.endswith(".plain") and not entry.encrypted
    raw = (queue.root / "queued" / entry.name).read_bytes()
    assert raw.startswith(MAGIC)
    assert read_envelope_plaintext(io.BytesIO(raw)).fields == {"message": "in the clear"}


def test_demo_recipient_is_labelled_reused_and_decrypts(tmp_path, clock):
    recipient, identity = generate_demo_recipient(tmp_path / "demo-keys")
    assert "DEMO" in identity.name and "NOT SAFE" in identity.read_text()
    assert identity.stat().st_mode & 0o777 == 0o600
    assert generate_demo_recipient(tmp_path / "demo-keys") == (recipient, identity)
    queue = ContributionQueue(tmp_path / "c", [recipient], today=clock)
    submit(queue, fields={"message": "demo"})
    assert decrypt(queue, queue.list()[0], identity).fields == {"message": "demo"}


def test_queue_from_config(tmp_path, hub_identity):
    recipient, _ = hub_identity
    config = load_config(None, overrides={
        "data_dir": str(tmp_path), "contributions.recipients": recipient,
        "contributions.max_file_mb": "3", "contributions.reserve_mb": "0"})
    queue = ContributionQueue.from_config(config)
    assert queue.root == tmp_path / "contributions"
    assert queue.limits.max_file_bytes == 3 * MB and queue.reserve_bytes == 0
    assert queue.encrypts


# -- states and the index -----------------------------------------------------------------------

def test_states_move_files_and_the_index_follows(queue, clock):
    first, second, third = (submit(queue, kind=k) for k in ("message", "report", "suggestion"))
    assert queue.counts() == {"queued": 3, "exported": 0, "delivered": 0}
    assert queue.mark_exported([first.uuid, second.uuid]) == 2
    assert queue.mark_exported([first.uuid]) == 0  # already exported: nothing moves
    with pytest.raises(NotFound):
        queue.mark_exported([third.uuid, "00000000-0000-4000-8000-000000000000"])
    assert queue.counts() == {"queued": 1, "exported": 2, "delivered": 0}
    assert {p.name.split(".")[0] for p in (queue.root / "exported").iterdir()} == {
        first.uuid, second.uuid}

    sha = queue.entry(first.uuid).sha256
    with pytest.raises(BadRequest, match="sha256"):
        queue.mark_delivered(first.uuid, {"sha256": "0" * 64})
    assert queue.mark_delivered(first.uuid, {"hub": "coalition", "sha256": sha})
    assert not queue.mark_delivered(first.uuid, {"hub": "coalition"})
    assert queue.entry(first.uuid).state == "delivered"
    assert queue.entry(first.uuid).delivered_day == "2026-10-01"
    receipt = json.loads((queue.root / "delivered" / f"{first.uuid}.receipt.json").read_text())
    assert receipt["receipt"] == {"hub": "coalition", "sha256": sha}

    clock.day = dt.date(2026, 10, 5)
    assert queue.oldest_undelivered_day() == "2026-10-01"
    assert queue.purge_delivered(30) == 0
    clock.day = dt.date(2026, 10, 31)
    assert queue.purge_delivered(30) == 1
    assert not any(first.uuid in p.name for p in every_file(queue.root))
    assert queue.counts() == {"queued": 1, "exported": 1, "delivered": 0}


def test_reindex_rebuilds_the_same_index_from_the_files(queue):
    uuids = [submit(queue).uuid for _ in range(4)]
    queue.mark_exported(uuids[:2])
    queue.mark_delivered(uuids[0], {"hub": "coalition"})
    before = queue.list()
    (queue.root / "index.json").unlink()
    assert queue.list() == before  # a missing index is rebuilt on the next operation
    assert queue.reindex() == 4
    assert queue.list() == before


@pytest.mark.parametrize("damage", [
    b"{not json", b"", b"[1, 2]",
    json.dumps({"contributions": {"1": {"uuid": "x", "state": "lost"}}}).encode(),
])
def test_a_damaged_index_is_moved_aside_and_rebuilt(queue, damage):
    uuids = {submit(queue).uuid for _ in range(2)}
    before = queue.list()
    (queue.root / "index.json").write_bytes(damage)
    assert queue.list() == before
    assert {e.uuid for e in queue.list()} == uuids
    aside = list(queue.root.glob("index.json.broken-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damage


def test_the_index_catches_up_with_files_moved_by_hand(queue):
    uuid = submit(queue).uuid
    [entry] = queue.list()
    os.rename(queue.root / "queued" / entry.name, queue.root / "exported" / entry.name)
    assert queue.entry(uuid).state == "exported"
    (queue.root / "exported" / entry.name).unlink()
    assert queue.list() == []


def test_open_envelope_gives_the_bytes(queue):
    uuid = submit(queue).uuid
    with queue.open_envelope(uuid) as f:
        assert hashlib.sha256(f.read()).hexdigest() == queue.entry(uuid).sha256
    with pytest.raises(NotFound):
        queue.open_envelope("00000000-0000-4000-8000-000000000000")


def test_an_interrupted_delivery_is_completed(queue):
    uuid = submit(queue).uuid
    [entry] = queue.list()
    # As if the process died after writing the receipt but before moving the envelope.
    (queue.root / "delivered" / f"{uuid}.receipt.json").write_text(json.dumps(
        {"uuid": uuid, "delivered_day": "2026-10-01", "receipt": {}}))
    assert queue.entry(uuid).state == "delivered"
    assert (queue.root / "delivered" / entry.name).exists()


# -- crash safety: a real writer process killed with SIGKILL ------------------------------------

WRITER_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[3])
from hotspot.contributions import ContributionQueue
queue = ContributionQueue(sys.argv[1], [sys.argv[2]])
for n in range(3):
    writer = queue.new("message", "en")
    writer.add_field("message", f"number {n}")
    print("ack", writer.commit().uuid, flush=True)
writer = queue.new("report", "en")
writer.add_field("what_happened", "ZQXJ-MARKER-7731")
writer.begin_attachment("clip.mp4", "video/mp4")
writer.write_attachment(b"\x00\x00\x00\x18ftypmp42" + bytes(65524))
for n in range(10_000):
    writer.write_attachment(b"ZQXJ-MARKER-7731" * 4096)
    if n == 20:
        print("writing", flush=True)
"""


def test_a_writer_killed_mid_attachment_leaves_no_visible_envelope(tmp_path, hub_identity):
    recipient, _ = hub_identity
    root = tmp_path / "contributions"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(root), recipient,
                             str(REPO)], stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "the writer process did not report"
            line = proc.stdout.readline()
            assert line, "the writer process ended early"
            if line.startswith("ack "):
                acked.append(line.split()[1])
            elif line.startswith("writing"):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert len(acked) == 3
    leftovers = list((root / "tmp").iterdir())
    assert len(leftovers) == 1
    for path in every_file(root):
        assert MARKER not in path.read_bytes()
    queue = ContributionQueue(root, [recipient])  # start-up removes the dead writer's temp
    assert list((root / "tmp").iterdir()) == []
    assert sorted(e.uuid for e in queue.list()) == sorted(acked)
    assert all(e.kind == "message" for e in queue.list())


def test_start_up_cleanup_spares_a_live_writers_temp_file(queue, hub_identity):
    recipient, _ = hub_identity
    writer = queue.new("message", "en")
    writer.add_field("message", "still typing")
    other = ContributionQueue(queue.root, [recipient])  # another process starting meanwhile
    assert len(list((other.root / "tmp").iterdir())) == 1
    writer.commit()
    assert len(other.list()) == 1


# -- the disk reserve, on a real small file system ----------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    yield from mounted_tmpfs(tmp_path, "4m")


@pytest.mark.root
def test_the_reserve_refuses_before_and_during_writing(tiny_disk, hub_identity, clock):
    recipient, _ = hub_identity
    queue = ContributionQueue(tiny_disk / "c", [recipient], reserve_bytes=2 * MB, today=clock)
    submit(queue)  # plenty of room for a message
    writer = queue.new("report", "en")
    writer.begin_attachment("clip.mp4", None)
    with pytest.raises(InsufficientStorage) as caught:
        for chunk in chunks(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3_500_000)):
            writer.write_attachment(chunk)
    assert caught.value.status == 507
    assert caught.value.__cause__ is None  # the reserve stopped it, not a full disk
    assert list((queue.root / "tmp").iterdir()) == [] and len(queue.list()) == 1

    strict = ContributionQueue(tiny_disk / "c", [recipient], reserve_bytes=5 * MB)
    with pytest.raises(InsufficientStorage):
        strict.new("message", "en")
    assert isinstance(strict.refusal(), InsufficientStorage)


@pytest.mark.root
def test_a_full_disk_is_insufficient_storage_and_leaves_nothing(tiny_disk, hub_identity, clock):
    recipient, _ = hub_identity
    queue = ContributionQueue(tiny_disk / "c", [recipient], reserve_bytes=0, today=clock,
                              limits=Limits(max_file_bytes=50 * MB, max_total_bytes=50 * MB))
    kept = submit(queue)
    with pytest.raises(InsufficientStorage):
        submit(queue, kind="report", files=[("clip.mp4", b"\x00\x00\x00\x18ftypmp42" +
                                             os.urandom(5 * MB))])
    assert list((queue.root / "tmp").iterdir()) == []
    assert [e.uuid for e in queue.list()] == [kept.uuid]
    submit(queue)  # the space came back
    assert len(queue.list()) == 2
