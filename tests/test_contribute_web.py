"""Contribution forms over real HTTP: a real server, real multipart uploads, the real `age` CLI."""

from __future__ import annotations

import http.client
import io
import json
import socket
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pyrage import x25519

from conftest import ServerProcess, install_test_library, needs_tools
from hotspot.config import load_config
from hotspot.contributions import ContributionQueue
from hotspot.envelope import read_envelope_plaintext

DEMO_FILES = Path(__file__).resolve().parent.parent / "hotspot" / "demo" / "files"
JPEG = next(DEMO_FILES.glob("*.jpg")).read_bytes()
MP3 = next(DEMO_FILES.glob("*.mp3")).read_bytes()


def multipart_body(fields: list[tuple[str, str]], files: list[tuple[str, bytes, str]] = ()):
    boundary = "----hotspotTest" + "".join(random.choice("abcdef0123456789") for _ in range(16))
    out = io.BytesIO()
    for name, value in fields:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode())
        out.write(value.encode() + b"\r\n")
    for filename, data, content_type in files:
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class Hotspot:
    """A server with contributions switched on, and a hub identity to read them."""

    def __init__(self, root: Path, **settings):
        self.identity = x25519.Identity.generate()
        self.identity_file = root / "hub-identity.txt"
        self.identity_file.write_text(f"{self.identity}\n")
        self.data_dir = root / "data"
        if not (self.data_dir / "catalog.json").exists():
            install_test_library(self.data_dir, extra=0)
        lines = ["[contributions]", f'recipients = ["{self.identity.to_public()}"]']
        lines += [f"{key} = {value}" for key, value in settings.items()]
        self.config = root / "hotspot.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.server = self.start()

    def start(self) -> ServerProcess:
        return ServerProcess(["--config", str(self.config), "--data-dir", str(self.data_dir),
                              "serve", "--host", "127.0.0.1", "--port", "0"])

    def queue(self) -> ContributionQueue:
        config = load_config(self.config, {"data_dir": str(self.data_dir)})
        return ContributionQueue.from_config(config)

    def form(self, path: str, lang: str = "en") -> tuple[str, str]:
        response = self.server.get(path, Cookie=f"lang={lang}")
        assert response.status == 200, response.text
        token = re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)
        cookie = re.search(r"form=([^;]+)", response.headers["set-cookie"]).group(1)
        return token, cookie

    def send(self, path: str, fields, files=(), *, token=None, cookie=None, lang="en"):
        if token is None:
            token, cookie = self.form(path, lang)
        body, content_type = multipart_body([("csrf", token), *fields], list(files))
        headers = {"Content-Type": content_type, "Cookie": f"lang={lang}; form={cookie}"}
        return self.server.request("POST", path, headers, body)

    def decrypt(self, entry) -> dict:
        envelope = self.queue().root / entry.state / entry.name
        plain = subprocess.run(["age", "-d", "-i", str(self.identity_file), str(envelope)],
                               capture_output=True, check=True).stdout
        contribution = read_envelope_plaintext(io.BytesIO(plain))
        return {"meta": contribution.meta, "fields": contribution.fields,
                "files": [(a.name, a.media_type, a.read_bytes()) for a in contribution.attachments]}

    def stop(self):
        assert self.server.stop() == 0, "".join(self.server.output)


@pytest.fixture
def hotspot(tmp_path):
    spot = Hotspot(tmp_path, max_file_mb=2, max_files=3, rate_limit_per_hour=1000)
    yield spot
    spot.stop()


needs_age = needs_tools("age", package="age")


@needs_age
def test_report_with_photo_and_voice_is_encrypted_for_the_hub(hotspot):
    response = hotspot.send("/contribute/report",
                            [("what", "Loggers entered the north boundary"), ("place", "Río Claro"),
                             ("when", "2026-11-20"), ("website", "")],
                            [("photo.jpg", JPEG, "image/jpeg"), ("voice.mp3", MP3, "audio/mpeg")])
    assert response.status == 200, response.text
    code = re.search(r'<strong class="code">([A-Z0-9-]+)</strong>', response.text).group(1)
    entries = hotspot.queue().list()
    assert [e.code for e in entries] == [code]
    assert entries[0].kind == "report"
    opened = hotspot.decrypt(entries[0])
    assert opened["fields"]["what"] == "Loggers entered the north boundary"
    assert opened["fields"]["place"] == "Río Claro"
    assert [(n, t) for n, t, _ in opened["files"]] == [("photo.jpg", "image/jpeg"), ("voice.mp3", "audio/mpeg")]
    assert opened["files"][0][2] == JPEG and opened["files"][1][2] == MP3
    # Nothing readable, and no address, anywhere in the data directory.
    for path in hotspot.data_dir.rglob("*"):
        if path.is_file() and path.name != "hub-identity.txt":
            data = path.read_bytes()
            assert b"Loggers entered" not in data and b"127.0.0.1" not in data, path


@needs_age
@pytest.mark.parametrize("path,fields,kind", [
    ("/contribute/suggestion", [("title", "Radio guide"), ("why", "It helped us")], "suggestion"),
    ("/contribute/message", [("message", "We need GPS training"), ("reply", "via the radio")], "message"),
    ("/r/radio-basics/feedback", [("useful", "yes"), ("comment", "Clear and short")], "feedback"),
])
def test_every_form_is_received(hotspot, path, fields, kind):
    response = hotspot.send(path, fields, lang="es")
    assert response.status == 200 and response.headers["content-language"] == "es"
    assert "Gracias" in response.text
    (entry,) = hotspot.queue().list()
    assert entry.kind == kind
    opened = hotspot.decrypt(entry)
    for name, value in fields:
        assert opened["fields"][name] == value
    if kind == "feedback":
        assert opened["meta"].get("resource_id") == "radio-basics"


def test_forms_render_in_every_language(hotspot):
    for lang in ("en", "es", "fr", "pt"):
        for path in ("/contribute", "/contribute/report", "/contribute/suggestion",
                     "/contribute/message", "/r/radio-basics/feedback"):
            response = hotspot.server.get(path, Cookie=f"lang={lang}")
            assert response.status == 200 and response.headers["content-language"] == lang
            assert "Traceback" not in response.text
    assert hotspot.server.get("/contribute/other").status == 404
    assert hotspot.server.get("/r/nope/feedback").status == 404


@pytest.mark.parametrize("case", ["no token", "other form's token", "no cookie", "forged"])
def test_csrf_is_required(hotspot, case):
    token, cookie = hotspot.form("/contribute/message")
    other_token, _ = hotspot.form("/contribute/report")
    fields = [("message", "hello")]
    if case == "no token":
        body, content_type = multipart_body(fields)
        response = hotspot.server.request("POST", "/contribute/message",
                                          {"Content-Type": content_type, "Cookie": f"form={cookie}"}, body)
    elif case == "other form's token":
        response = hotspot.send("/contribute/message", fields, token=other_token, cookie=cookie)
    elif case == "no cookie":
        response = hotspot.send("/contribute/message", fields, token=token, cookie="")
    else:
        response = hotspot.send("/contribute/message", fields, token=token[:-4] + ("1111" if token.endswith("0000") else "0000"), cookie=cookie)
    assert response.status == 400
    assert "open the form again" in response.text
    assert hotspot.queue().list() == []


def test_honeypot_looks_like_success_but_keeps_nothing(hotspot):
    response = hotspot.send("/contribute/message", [("message", "buy now"), ("website", "http://spam")])
    assert response.status == 200 and 'class="code"' in response.text
    assert hotspot.queue().list() == []


@pytest.mark.parametrize("files,status", [
    ([("big.jpg", JPEG + b"\0" * (3 * 1024 * 1024), "image/jpeg")], 413),
    ([("a.jpg", JPEG, "image/jpeg")] * 4, 413),
    ([("photo.jpg", b"\x7fELF" + b"\0" * 1000, "image/jpeg")], 415),
    ([("page.jpg", b"<html><script>alert(1)</script></html>", "image/jpeg")], 415),
])
def test_file_limits_and_types(hotspot, files, status):
    response = hotspot.send("/contribute/report", [("what", "x")], files, lang="fr")
    assert response.status == status
    assert response.headers["content-language"] == "fr" and "Traceback" not in response.text
    assert hotspot.queue().list() == []
    assert not any(hotspot.queue().temp_dir.iterdir())


def test_malformed_forms(hotspot):
    token, cookie = hotspot.form("/contribute/message")
    bad = [
        (b"not multipart", "text/plain"),
        (b"--x\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + token.encode(), "multipart/form-data; boundary=x"),
        (b"\xff\xfe" * 100, "multipart/form-data; boundary=zz"),
    ]
    for body, content_type in bad:
        response = hotspot.server.request("POST", "/contribute/message",
                                          {"Content-Type": content_type, "Cookie": f"form={cookie}"}, body)
        assert response.status == 400, body[:40]
    missing = hotspot.send("/contribute/message", [("subject", "no message")])
    assert missing.status == 400
    unknown = hotspot.send("/contribute/message", [("message", "hi"), ("ip", "1.2.3.4")])
    assert unknown.status == 400
    assert hotspot.queue().list() == []


def test_body_over_the_server_limit_is_refused(tmp_path):
    """A declared body over the limit is refused by waitress from the headers alone (its limit
    follows contributions.max_total_mb), before a byte of it is read or spooled."""
    spot = Hotspot(tmp_path, max_total_mb=1, max_file_mb=1)
    try:
        token, cookie = spot.form("/contribute/report")
        sock = socket.create_connection((spot.server.host, spot.server.port), timeout=10)
        try:
            sock.sendall((f"POST /contribute/report HTTP/1.1\r\n"
                          f"Host: {spot.server.host}:{spot.server.port}\r\n"
                          f"Content-Type: multipart/form-data; boundary=x\r\nCookie: form={cookie}\r\n"
                          f"Content-Length: {3 * 1024 * 1024}\r\n\r\n").encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
        # Just under waitress's limit but over the contribution's: our own page, translated.
        response = spot.send("/contribute/report", [("what", "x")],
                             [("a.jpg", JPEG + b"\0" * (1024 * 1024 + 200_000), "image/jpeg")],
                             token=token, cookie=cookie, lang="es")
        assert response.status == 413 and response.headers["content-language"] == "es"
        assert spot.queue().list() == []
    finally:
        spot.stop()


def test_rate_limit_in_memory_only(tmp_path):
    spot = Hotspot(tmp_path, rate_limit_per_hour=2)
    try:
        assert spot.send("/contribute/message", [("message", "one")]).status == 200
        assert spot.send("/contribute/message", [("message", "two")]).status == 200
        third = spot.send("/contribute/message", [("message", "three")], lang="pt")
        assert third.status == 429 and third.headers["content-language"] == "pt"
        assert len(spot.queue().list()) == 2
    finally:
        spot.stop()


def test_without_a_recipient_contributions_are_refused(tmp_path):
    data_dir = tmp_path / "data"
    install_test_library(data_dir, extra=0)
    server = ServerProcess(["--data-dir", str(data_dir), "serve", "--host", "127.0.0.1", "--port", "0"])
    try:
        page = server.get("/contribute/message")
        assert "contributions.recipients" in page.text and "<form class=\"contribute\"" not in page.text
        token = "1.x"
        body, content_type = multipart_body([("csrf", token), ("message", "hello")])
        response = server.request("POST", "/contribute/message", {"Content-Type": content_type}, body)
        assert response.status == 503
    finally:
        assert server.stop() == 0


def test_disk_reserve_refuses_new_contributions(tmp_path):
    spot = Hotspot(tmp_path, reserve_mb=1_000_000)
    try:
        page = spot.server.get("/contribute/report")
        assert "storage is almost full" in page.text
        token = "1.x"
        body, content_type = multipart_body([("csrf", token), ("what", "x")])
        response = spot.server.request("POST", "/contribute/report", {"Content-Type": content_type}, body)
        assert response.status == 507
    finally:
        spot.stop()


@needs_age
def test_kill_9_during_submissions_loses_nothing_acknowledged(tmp_path):
    """Submissions run while the server is killed with SIGKILL, again and again: every
    contribution that got its thank-you page is there afterwards, and nothing half-written is."""
    spot = Hotspot(tmp_path, rate_limit_per_hour=10000, max_file_mb=4)
    acknowledged: list[str] = []
    try:
        for cycle in range(5):
            server = spot.server
            stop = threading.Event()

            def submit_loop():
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        response = spot.send("/contribute/report", [("what", f"cycle {cycle} n {n}")],
                                             [("photo.jpg", JPEG + os.urandom(random.randint(1, 600_000)), "image/jpeg")])
                    except (OSError, AttributeError, http.client.HTTPException):
                        continue  # the server was killed mid-request: not acknowledged
                    if response.status == 200:
                        acknowledged.append(re.search(r'class="code">([A-Z0-9-]+)<', response.text).group(1))

            workers = [threading.Thread(target=submit_loop) for _ in range(3)]
            for worker in workers:
                worker.start()
            time.sleep(random.uniform(0.3, 1.2))  # let submissions be in flight
            server.proc.kill()
            server.proc.wait()
            stop.set()
            for worker in workers:
                worker.join()
            server.proc.stdout.close()
            spot.server = spot.start()
        codes = {entry.code for entry in spot.queue().list()}
        assert acknowledged and set(acknowledged) <= codes
        queued = list((spot.queue().root / "queued").iterdir())
        for envelope in queued:
            subprocess.run(["age", "-d", "-i", str(spot.identity_file), str(envelope)],
                           capture_output=True, check=True)
    finally:
        spot.stop()


def test_large_uploads_are_spooled_in_ram_not_on_disk(hotspot):
    """waitress spools big request bodies to a temp file before the app runs: that file must be
    in RAM (/dev/shm), never on the SD card where deleted blocks can be recovered."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this machine")
    token, cookie = hotspot.form("/contribute/report")
    body, content_type = multipart_body([("csrf", token), ("what", "x")],
                                        [("photo.jpg", JPEG + b"\0" * 1_500_000, "image/jpeg")])
    sock = socket.create_connection((hotspot.server.host, hotspot.server.port), timeout=10)
    try:
        host = f"{hotspot.server.host}:{hotspot.server.port}"
        sock.sendall((f"POST /contribute/report HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
                      f"Cookie: form={cookie}\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        sock.sendall(body[:1_000_000])  # more than waitress keeps in memory, not all of it
        pid = hotspot.server.proc.pid
        deadline = time.monotonic() + 10
        spooled = []
        while not spooled and time.monotonic() < deadline:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.endswith("(deleted)") and "/contributions/" not in target:
                    spooled.append(target)
            time.sleep(0.05)
        assert spooled, "no spool file seen"
        assert all(path.startswith("/dev/shm/hotspot-spool-") for path in spooled), spooled
        sock.sendall(body[1_000_000:])
        assert b"200 OK" in sock.recv(4096)
    finally:
        sock.close()


def test_cli_lists_exports_and_purges(hotspot, tmp_path):
    for n in range(3):
        assert hotspot.send("/contribute/message", [("message", f"secret words {n}")]).status == 200
    base = [sys.executable, "-m", "hotspot.cli", "--config", str(hotspot.config),
            "--data-dir", str(hotspot.data_dir), "contributions"]
    listing = subprocess.run(base + ["list"], capture_output=True, text=True, check=True).stdout
    assert listing.count("queued") >= 3 and "message" in listing and "secret" not in listing
    drive = tmp_path / "usb"
    drive.mkdir()
    exported = subprocess.run(base + ["export", str(drive)], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    (bundle,) = list((drive / "hotspot-outbox").iterdir())
    pub = next((hotspot.data_dir).rglob("hotspot.pub"))
    check = subprocess.run(["minisign", "-V", "-H", "-p", str(pub), "-m", str(bundle / "manifest.json")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert len(list(bundle.glob("*.age"))) == 3
    states = subprocess.run(base + ["list", "--json"], capture_output=True, text=True, check=True).stdout
    assert {e["state"] for e in json.loads(states)} == {"exported"}
    again = subprocess.run(base + ["export", str(drive)], capture_output=True, text=True, check=True)
    assert "Nothing to export" in again.stdout
    assert subprocess.run(base + ["reindex"], capture_output=True, text=True, check=True).stdout.startswith("Index rebuilt from 3")
    assert subprocess.run(base + ["purge"], capture_output=True, text=True).returncode == 2
    purged = subprocess.run(base + ["purge", "--delivered"], capture_output=True, text=True, check=True)
    assert "Deleted 0" in purged.stdout
