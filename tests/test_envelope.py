"""Tests for hotspot.envelope (the container, the age stream) and hotspot.sniff.

Real files, the real ``age`` CLI to decrypt, real media files (the demo library's, and more
made with ffmpeg when it is installed).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pyrage import x25519

from hotspot.envelope import (
    MAGIC, AgeSink, ContainerWriter, EnvelopeFormatError, read_envelope_plaintext,
)
from hotspot.sniff import SNIFF_BYTES, TextChecker, sniff_media_type

DEMO_FILES = Path(__file__).resolve().parent.parent / "hotspot" / "demo" / "files"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed; CI must have it")
        pytest.skip(f"{tool} is not installed (apt-get install -y {tool})")
    return path


@pytest.fixture
def hub_identity(tmp_path) -> tuple[str, Path]:
    """A hub key pair made by the real ``age-keygen``: (recipient, identity file)."""
    need("age-keygen")
    key = tmp_path / "hub.key"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    public = next(line.split(": ", 1)[1] for line in key.read_text().splitlines()
                  if line.startswith("# public key: "))
    return public, key


def age_decrypt(path: Path, identity: Path) -> bytes:
    need("age")
    return subprocess.run(["age", "-d", "-i", str(identity), str(path)], check=True,
                          capture_output=True).stdout


def write_container(sink, files: dict[str, bytes], meta: dict, chunk: int = 65536) -> None:
    container = ContainerWriter(sink)
    listed = []
    for index, (name, data) in enumerate(files.items()):
        container.start_attachment({"index": index, "name": name, "media_type": "text/plain"})
        for start in range(0, len(data), chunk):
            container.attachment_data(data[start:start + chunk])
        sha256 = hashlib.sha256(data).hexdigest()
        container.end_attachment({"index": index, "size": len(data), "sha256": sha256})
        listed.append({"index": index, "sha256": sha256})
    container.finish({**meta, "attachments": listed})


# -- the container ------------------------------------------------------------------------------

def test_container_round_trip_in_memory():
    out = io.BytesIO()
    files = {"a.txt": b"first file\n", "empty-ish.txt": b"x", "big.bin": os.urandom(200_000)}
    write_container(out, files, {"uuid": "u-1", "fields": {"message": "¡Hola!"}})
    raw = out.getvalue()
    assert raw.startswith(MAGIC)
    assert raw.endswith(b"END 0\n")
    contribution = read_envelope_plaintext(io.BytesIO(raw))
    assert contribution.fields == {"message": "¡Hola!"}
    assert [(a.index, a.name, a.read_bytes()) for a in contribution.attachments] == [
        (i, name, data) for i, (name, data) in enumerate(files.items())]
    # ATTACHMENT-DATA records hold at most 64 KiB even when given more at once.
    assert raw.count(b"ATTACHMENT-DATA 65536\n") == 3


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-6], "cut short"),
    (lambda raw: raw.replace(b"first file", b"first File"), "damaged"),
    (lambda raw: b"HOTSPOT-CONTRIBUTION/2\n" + raw[len(MAGIC):], "newer format"),
    (lambda raw: b"GIF89a" + raw, "not a decrypted contribution"),
    (lambda raw: raw.replace(b"META ", b"MOTA "), "Unknown record"),
    (lambda raw: raw.replace(b"ATTACHMENT-END", b"ATTACHMENT-XXX", 1), "Unknown record"),
])
def test_damaged_containers_are_refused_with_a_reason(damage, message):
    out = io.BytesIO()
    write_container(out, {"a.txt": b"first file\n"}, {"uuid": "u-1", "fields": {}})
    with pytest.raises(EnvelopeFormatError, match=message):
        read_envelope_plaintext(io.BytesIO(damage(out.getvalue())))


def test_container_writer_refuses_records_out_of_order():
    container = ContainerWriter(io.BytesIO())
    with pytest.raises(RuntimeError):
        container.attachment_data(b"data outside a file")
    container.start_attachment({"index": 0})
    with pytest.raises(RuntimeError):
        container.finish({})


# -- the age stream -----------------------------------------------------------------------------

def test_age_cli_decrypts_a_5_mb_stream_written_in_64_kb_chunks(tmp_path, hub_identity):
    recipient, identity = hub_identity
    data = os.urandom(5 * 1024 * 1024)
    path = tmp_path / "envelope.age"
    with open(path, "wb") as out:
        sink = AgeSink(out, [x25519.Recipient.from_str(recipient)])
        write_container(sink, {"voice.ogg": data}, {"uuid": "u-5", "fields": {"a": "b"}})
        sink.close()
    plaintext = age_decrypt(path, identity)
    contribution = read_envelope_plaintext(io.BytesIO(plaintext))
    attachment = contribution.attachments[0]
    assert hashlib.sha256(attachment.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert attachment.sha256 == hashlib.sha256(data).hexdigest()
    assert contribution.meta["uuid"] == "u-5"


def test_reading_from_a_pipe_spools_the_attachments(tmp_path, hub_identity):
    recipient, identity = hub_identity
    data = os.urandom(300_000)
    path = tmp_path / "envelope.age"
    with open(path, "wb") as out:
        sink = AgeSink(out, [x25519.Recipient.from_str(recipient)])
        write_container(sink, {"f": data}, {"uuid": "u", "fields": {}})
        sink.close()
    need("age")
    with subprocess.Popen(["age", "-d", "-i", str(identity), str(path)],
                          stdout=subprocess.PIPE) as proc:
        contribution = read_envelope_plaintext(proc.stdout, spool_dir=tmp_path)
        assert contribution.attachments[0].read_bytes() == data


def test_a_failing_disk_surfaces_as_an_oserror_with_its_errno(hub_identity):
    recipient, _ = hub_identity

    class FullDisk:
        def write(self, data):
            raise OSError(28, "No space left on device")

    sink = AgeSink(FullDisk(), [x25519.Recipient.from_str(recipient)])
    with pytest.raises(OSError) as caught:
        for _ in range(100):  # the pipe fills, then breaks when the encryption thread stops
            sink.write(b"x" * 65536)
        sink.close()
    assert caught.value.errno == 28


# -- sniffing -----------------------------------------------------------------------------------

BY_EXTENSION = {
    ".pdf": "application/pdf", ".mp3": "audio/mpeg", ".mp4": "video/mp4",
    ".jpg": "image/jpeg", ".png": "image/png", ".txt": "text/plain", ".csv": "text/plain",
    ".gpx": None,  # XML is markup: refused, a browser at the hub could run it
}


def demo_files():
    return sorted((p.name, BY_EXTENSION[p.suffix]) for p in DEMO_FILES.iterdir()
                  if p.suffix in BY_EXTENSION)


@pytest.mark.parametrize("name, media_type", demo_files())
def test_sniffing_the_demo_librarys_real_files(name, media_type):
    assert sniff_media_type((DEMO_FILES / name).read_bytes()[:SNIFF_BYTES]) == media_type


FFMPEG_FILES = [
    ("voice.ogg", ["-c:a", "libopus"], "audio/ogg"),
    ("voice.opus", [], "audio/ogg"),
    ("music.ogg", ["-c:a", "libvorbis"], "audio/ogg"),
    ("voice.m4a", ["-c:a", "aac"], "audio/mp4"),
    ("voice.aac", ["-c:a", "aac"], "audio/aac"),
    ("voice.wav", [], "audio/wav"),
    ("voice.mp3", [], "audio/mpeg"),
    ("voice.webm", ["-c:a", "libopus"], "video/webm"),
]


@pytest.mark.parametrize("name, args, media_type", FFMPEG_FILES)
def test_sniffing_audio_made_by_ffmpeg(tmp_path, name, args, media_type):
    ffmpeg = need("ffmpeg")
    path = tmp_path / name
    result = subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                             "sine=d=1", *args, str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this ffmpeg cannot make {name}: {result.stderr.strip()[:200]}")
    assert sniff_media_type(path.read_bytes()[:SNIFF_BYTES]) == media_type


@pytest.mark.parametrize("name, media_type", [
    ("clip.webm", "video/webm"), ("clip.mp4", "video/mp4"), ("clip.3gp", "video/3gpp"),
    ("clip.mov", "video/quicktime"),
])
def test_sniffing_video_made_by_ffmpeg(tmp_path, name, media_type):
    ffmpeg = need("ffmpeg")
    path = tmp_path / name
    result = subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                             "testsrc=d=1:s=176x144", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"this ffmpeg cannot make {name}: {result.stderr.strip()[:200]}")
    assert sniff_media_type(path.read_bytes()[:SNIFF_BYTES]) == media_type


@pytest.mark.parametrize("head, media_type", [
    (b"GIF89a\x01\x00\x01\x00\x80\x00\x00", "image/gif"),
    (b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00", "image/webp"),
    (b"#!AMR\n\x3c\x91\x17\x16", "audio/amr"),
    (b"#!AMR-WB\n\x04", "audio/amr"),
    (b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x00", "video/3gpp"),
    (b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00", "audio/mp4"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    (b"Una l\xc3\xadnea de texto\n", "text/plain"),
    # Refused: programs, markup, archives, unknown binary.
    (b"\x7fELF\x02\x01\x01\x00", None),
    (b"MZ\x90\x00\x03\x00\x00\x00", None),
    (b"<!DOCTYPE html><html><script>alert(1)</script>", None),
    (b"  \n<svg xmlns='http://www.w3.org/2000/svg' onload='x()'/>", None),
    (b"\xef\xbb\xbf<html>", None),
    (b"PK\x03\x04\x14\x00\x00\x00", None),
    (b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1fB\x82\x88matroska", None),
    (b"OggS\x00\x02" + b"\x00" * 22 + b"\x80theora", None),
    (b"\x00\x01\x02\x03binary", None),
    (b"", None),
])
def test_sniffing_headers(head, media_type):
    assert sniff_media_type(head) == media_type


def test_text_checker_looks_at_every_chunk():
    checker = TextChecker()
    text = "Texto con acentos: ação\n".encode()
    cut = text.index("ç".encode()) + 1  # the chunks split the two bytes of "ç"
    checker.feed(text[:cut])
    checker.feed(text[cut:])
    checker.finish()
    with pytest.raises(ValueError):
        TextChecker().feed(b"text then a NUL \x00")
    unfinished = TextChecker()
    unfinished.feed("ç".encode()[:1])
    with pytest.raises(ValueError):
        unfinished.finish()
