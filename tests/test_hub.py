"""The hub: a real ``hotspot hub serve`` process, a real hotspot server, real ``hotspot sync``
and ``hotspot hub`` CLI runs, real age identities, HTTP only on 127.0.0.1.

Helpers here (``Hub``, ``HotspotSide``, ``CutProxy``) are also used by ``test_sync.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hotspot.bundle import export_bundle, load_or_create_hotspot_key
from hotspot.config import load_config
from hotspot.contributions import ContributionQueue
from hotspot.hub.storage import LocalStorage
from hotspot.sync import read_sync_state
from hotspot.usage import USAGE_FILE, UsageCounter
from conftest import ServerProcess, install_test_library
from test_contribute_web import JPEG, Hotspot, needs_age

pytestmark = pytest.mark.slow


def hotspot_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotspot.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


class Hub:
    """A real hub: its config, its data folder, and (when started) its server process."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "hub.toml"
        self.config.write_text(f'[hub]\ndata_dir = "{root / "hub-data"}"\nthreads = 2\n')
        self.proc = None
        self.url = None

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hotspot.cli", "--config", str(self.config),
                               "hub", *args], capture_output=True, text=True, timeout=120,
                              input=input)

    def start(self, *args: str, port: int = 0) -> Hub:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotspot.cli", "--config", str(self.config), "hub", "serve",
             "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, bufsize=1)
        deadline, output = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                output.append(line)
                match = re.search(r"Hub ready at (http://\S+)/", line)
                if match:
                    self.url = match.group(1)
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("the hub did not start:\n" + "".join(output))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def register(self, hotspot: HotspotSide, name: str = "river-village") -> str:
        done = self.cli("add-hotspot", name, "--public-key",
                        str(hotspot.data_dir / "keys" / "hotspot.pub"))
        assert done.returncode == 0, done.stderr
        token = next(line for line in done.stdout.splitlines() if line.startswith("hst_"))
        hotspot.token_file.write_text(token + "\n")
        shutil.copyfile(self.root / "hub-data" / "keys" / "hub.pub", hotspot.hub_key_file)
        return token

    def records(self) -> list[dict]:
        storage = LocalStorage(self.root / "hub-data")
        return [storage.read_json(k) for k in storage.list("envelopes") if k.endswith(".json")]


class HotspotSide:
    """A hotspot's data folder and config for ``hotspot sync`` (optionally a live server)."""

    def __init__(self, root: Path, hub_url: str | None = None, **sync_settings):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.spot = None
        self.identity_file = root / "hub-identity.txt"
        from pyrage import x25519
        self.identity = x25519.Identity.generate()
        self.identity_file.write_text(f"{self.identity}\n")
        self.data_dir = root / "data"
        self.token_file = root / "hub-token"
        self.hub_key_file = root / "hub.pub"
        self.trusted = root / "trusted-keys"
        self.trusted.mkdir(exist_ok=True)
        self.config = root / "hotspot.toml"
        self.settings = {"hub_url": f'"{hub_url}"' if hub_url else '""',
                         "token_file": f'"{self.token_file}"',
                         "hub_key_file": f'"{self.hub_key_file}"',
                         "backoff_initial_seconds": 1, "backoff_max_seconds": 4,
                         "connect_timeout": 5, "timeout": 20, **sync_settings}
        self.write_config()
        load_or_create_hotspot_key(self.data_dir)

    def write_config(self, **changes) -> None:
        self.settings.update(changes)
        lines = ["[contributions]", f'recipients = ["{self.identity.to_public()}"]',
                 "reserve_mb = 0", "max_file_mb = 40", "max_total_mb = 40",
                 "rate_limit_per_hour = 1000",
                 "[packs]", f'trusted_keys_dir = "{self.trusted}"', "free_space_margin_mb = 0",
                 "[sync]"] + [f"{k} = {v}" for k, v in self.settings.items()]
        self.config.write_text("\n".join(lines) + "\n")

    def set_hub(self, url: str, **changes) -> None:
        self.write_config(hub_url=f'"{url}"', **changes)

    def queue(self) -> ContributionQueue:
        return ContributionQueue.from_config(load_config(self.config,
                                                         {"data_dir": str(self.data_dir)}))

    def submit(self, text: str, attachment: bytes | None = None) -> str:
        writer = self.queue().new("report", "en")
        writer.add_field("what_happened", text)
        if attachment is not None:
            writer.begin_attachment("photo.jpg", "image/jpeg")
            for start in range(0, len(attachment), 1 << 20):
                writer.write_attachment(attachment[start:start + (1 << 20)])
            writer.end_attachment()
        return writer.commit().uuid

    def sync(self, *args: str) -> subprocess.CompletedProcess:
        return hotspot_cli("--config", str(self.config), "--data-dir", str(self.data_dir),
                           "sync", *args)

    def state(self) -> dict:
        return read_sync_state(self.data_dir)


def big_photo(megabytes: int) -> bytes:
    """JPEG start, then incompressible bytes (the envelope is about as large)."""
    return JPEG[:4096] + os.urandom(megabytes * 1_000_000)


class CutProxy:
    """A loopback TCP proxy to ``target_port``; after ``cut_after`` bytes sent upstream (or
    ``cut_down_after`` bytes back), every connection is dropped. Optionally speaks TLS to the
    client (``tls``: an ``ssl.SSLContext`` for the server side)."""

    def __init__(self, target_port: int, *, cut_after: int | None = None,
                 cut_down_after: int | None = None, tls: ssl.SSLContext | None = None):
        self.target_port = target_port
        self.cut_after, self.cut_down_after = cut_after, cut_down_after
        self.tls = tls
        self.up = self.down = 0
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.tls is not None:
                try:
                    client.settimeout(10)
                    client = self.tls.wrap_socket(client, server_side=True)
                except (ssl.SSLError, OSError):
                    client.close()
                    continue
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pipe(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        sockets = [client, upstream]
        try:
            deadline = time.monotonic() + 120
            while not self._stop.is_set() and time.monotonic() < deadline:
                readable = [s for s in sockets if isinstance(s, ssl.SSLSocket) and s.pending()]
                if not readable:
                    readable, _, _ = select.select(sockets, [], [], 0.2)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is client:
                        if self.cut_after is not None and self.up + len(data) > self.cut_after:
                            self.cut.set()
                            return
                        self.up += len(data)
                        upstream.sendall(data)
                    else:
                        if self.cut_down_after is not None and \
                                self.down + len(data) > self.cut_down_after:
                            client.sendall(data[:max(0, self.cut_down_after - self.down)])
                            self.cut.set()
                            return
                        self.down += len(data)
                        client.sendall(data)
        except OSError:
            return
        finally:
            for s in sockets:
                try:
                    s.close()
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def hub(tmp_path):
    hub = Hub(tmp_path / "hub")
    hub.start("--no-identity")
    yield hub
    hub.stop()


@pytest.fixture
def hotspot(tmp_path, hub):
    side = HotspotSide(tmp_path / "hotspot", hub.url)
    hub.register(side)
    return side


# -- the storage interface ---------------------------------------------------------------------

def test_local_storage_writes_whole_objects_and_refuses_odd_keys(tmp_path):
    storage = LocalStorage(tmp_path / "s")
    storage.put("envelopes/ab/x.age", io.BytesIO(b"data"))
    storage.write_json("registry/hotspots.json", {"a": 1})
    assert storage.read_bytes("envelopes/ab/x.age") == b"data"
    assert storage.list("envelopes") == ["envelopes/ab/x.age"]
    assert storage.read_json("registry/hotspots.json") == {"a": 1}
    assert storage.size("nothing/here") is None
    assert not list((tmp_path / "s" / "objects").rglob(".*.tmp"))
    for bad in ("../escape", "/abs", "a/../b", ""):
        with pytest.raises(ValueError):
            storage.put(bad, io.BytesIO(b""))


# -- end to end --------------------------------------------------------------------------------

@needs_age
def test_contributions_flow_from_a_hotspot_server_to_the_hub_and_are_read_there(tmp_path, hub):
    side = HotspotSide(tmp_path / "spot", hub.url)
    hub.register(side)
    install_test_library(side.data_dir, extra=0)
    web = Hotspot.__new__(Hotspot)  # its form helpers, on a server of this hotspot's config
    web.server = ServerProcess(["--config", str(side.config), "--data-dir", str(side.data_dir),
                                "serve", "--host", "127.0.0.1", "--port", "0"])
    try:
        response = web.send("/contribute/report",
                            [("what", "Loggers at the north boundary"), ("place", "Río Claro"),
                             ("website", "")], [("photo.jpg", JPEG, "image/jpeg")])
        assert response.status == 200, response.text
        response = web.send("/contribute/message", [("message", "We need GPS training"),
                                                    ("website", "")])
        assert response.status == 200, response.text
    finally:
        assert web.server.stop() == 0
    done = side.sync()
    assert done.returncode == 0, done.stderr
    assert "Delivered 2 contribution(s) (2 stored" in done.stdout
    assert {e.state for e in side.queue().list()} == {"delivered"}
    receipt = json.loads(next((side.data_dir / "contributions" / "delivered")
                              .glob("*.receipt.json")).read_text())
    assert receipt["receipt"]["status"] == "stored" and "signature" in receipt["receipt"]
    state = side.state()
    assert state["last_error"] is None and state["attempts"] == 0
    assert state["undelivered"] == 0 and state["oldest_undelivered_age_days"] is None

    # Again: nothing is sent twice, the hub holds each envelope once.
    again = side.sync()
    assert again.returncode == 0 and "Delivered 0" in again.stdout
    records = hub.records()
    assert len(records) == 2 and {r["via"] for r in records} == {"upload"}

    # The real age CLI opens what the hub stored.
    report = next(r for r in records if r["kind"] == "report")
    stored = hub.root / "hub-data" / "objects" / "envelopes" / report["uuid"][:2] / \
        f"{report['uuid']}.age"
    plain = subprocess.run(["age", "-d", "-i", str(side.identity_file), str(stored)],
                           capture_output=True, check=True).stdout
    assert b"Loggers at the north boundary" in plain

    # Staff export, with the identity file.
    out = tmp_path / "export"
    done = hub.cli("export", "--format", "json", str(out), "--identity", str(side.identity_file))
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "contributions.json").read_text())
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["report"]["fields"]["place"] == "Río Claro"
    assert (out / by_kind["report"]["attachments"][0]).read_bytes() == JPEG
    assert by_kind["message"]["hotspot"] == "river-village"
    done = hub.cli("export", "--format", "csv", str(out), "--identity", str(side.identity_file))
    assert done.returncode == 0 and "GPS training" in (out / "contributions.csv").read_text()
    # Without a key at a non-terminal: a clear refusal, not a traceback.
    done = hub.cli("export", str(tmp_path / "nokey"))
    assert done.returncode == 2 and "age identity" in done.stderr


def test_wrong_token_unknown_hotspot_and_tampered_envelope_are_refused(tmp_path, hub, hotspot):
    first = hotspot.submit("first")
    hotspot.token_file.write_text("hst_not-a-real-token\n")
    done = hotspot.sync()
    assert done.returncode == 1
    assert "does not know this hotspot token" in done.stderr
    state = hotspot.state()
    assert state["attempts"] == 1 and "token" in state["last_error"]
    assert state["next_attempt_after"] is not None and state["undelivered"] == 1
    assert hotspot.queue().entry(first).state == "queued"

    # A tampered envelope: its bytes changed after it was queued.
    done = hub.cli("add-hotspot", "river-village", "--new-token", "--public-key",
                   str(hotspot.data_dir / "keys" / "hotspot.pub"))
    hotspot.token_file.write_text(next(line for line in done.stdout.splitlines()
                                       if line.startswith("hst_")))
    entry = hotspot.queue().entry(first)
    path = hotspot.data_dir / "contributions" / "queued" / entry.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    done = hotspot.sync()
    assert done.returncode == 1
    assert "refused 1 contribution" in done.stderr
    refused = hotspot.state()["refused"]
    assert "does not match its sha256" in refused[first]
    assert hotspot.queue().entry(first).state == "queued" and hub.records() == []

    # An unknown hotspot's bundle is refused by ingest, with its id named.
    stranger = HotspotSide(tmp_path / "stranger")
    stranger.submit("hello")
    export_bundle(stranger.queue(), tmp_path / "usb", stranger.data_dir)
    done = hub.cli("ingest", str(tmp_path / "usb"))
    assert done.returncode == 2 and "not registered" in done.stderr
    assert hub.records() == []


def test_bundles_ingested_twice_store_once_and_receipts_ride_back_on_the_drive(tmp_path, hub,
                                                                              hotspot):
    uuids = {hotspot.submit(f"report {n}") for n in range(3)}
    usb = tmp_path / "usb"
    assert export_bundle(hotspot.queue(), usb, hotspot.data_dir) is not None
    first = hub.cli("ingest", str(usb))
    assert first.returncode == 0 and "3 stored, 0 already here" in first.stdout, first.stderr
    receipts_file = next((usb / "hotspot-inbox").glob("receipts-*.json"))
    content = receipts_file.read_bytes()
    second = hub.cli("ingest", str(usb))
    assert second.returncode == 0 and "0 stored, 3 already here" in second.stdout
    assert receipts_file.read_bytes() == content and len(hub.records()) == 3
    assert {r["via"] for r in hub.records()} == {"bundle"}

    assert {e.state for e in hotspot.queue().list()} == {"exported"}
    done = hotspot.sync("--receipts", str(usb))
    assert done.returncode == 0 and "Marked 3" in done.stdout, done.stderr
    assert {e.uuid for e in hotspot.queue().list("delivered")} == uuids
    assert "Marked 0" in hotspot.sync("--receipts", str(usb)).stdout

    # A forged receipts file (signed by another key) marks nothing.
    other = hotspot.submit("later")
    forged = json.loads(content)
    forged["receipts"][0]["uuid"] = other
    receipts_file.write_text(json.dumps(forged))
    done = hotspot.sync("--receipts", str(usb))
    assert done.returncode != 0 and hotspot.queue().entry(other).state == "queued"

    # A sync over the network after the drive: the hub already has them, nothing is re-sent.
    done = hotspot.sync()
    assert done.returncode == 0 and "1 stored" in done.stdout
    assert len(hub.records()) == 4


def test_staff_view_needs_a_login_and_shows_contributions(tmp_path, hotspot):
    hub = Hub(tmp_path / "hub2")
    hub.cli("key")
    hub.register(hotspot)
    hotspot.set_hub("http://127.0.0.1:1")  # replaced below once the hub runs
    done = hub.cli("add-staff", "ana", input="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    hub.start("--identity", str(hotspot.identity_file))
    try:
        hotspot.set_hub(hub.url)
        hotspot.submit("Water source poisoned near the school", JPEG)
        assert hotspot.sync().returncode == 0
        import http.client
        from urllib.parse import urlencode

        def request(method, path, body=None, cookie=None):
            conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            if cookie:
                headers["Cookie"] = cookie
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode(
                "utf-8", "replace")

        status, headers, _ = request("GET", "/staff/")
        assert status == 303 and headers["Location"].endswith("/staff/login")
        status, _, body = request("POST", "/staff/login",
                                  urlencode({"name": "ana", "password": "wrong password!"}))
        assert status == 401 and "Wrong name or password" in body
        status, headers, _ = request("POST", "/staff/login", urlencode(
            {"name": "ana", "password": "correct horse battery"}))
        assert status == 303
        cookie = headers["Set-Cookie"].split(";")[0]
        assert "httponly" in headers["Set-Cookie"].lower() and "samesite=strict" in headers["Set-Cookie"].lower()
        status, _, body = request("GET", "/staff/", cookie=cookie)
        uuid = re.search(r"/staff/c/([0-9a-f-]{36})", body).group(1)
        status, _, body = request("GET", f"/staff/c/{uuid}", cookie=cookie)
        assert status == 200 and "Water source poisoned" in body
        status, _, body = request("GET", f"/staff/c/{uuid}/a/0", cookie=cookie)
        assert status == 200
        forged = cookie[:-3] + ("xyz" if cookie.endswith("abc") else "abc")
        status, _, _ = request("GET", f"/staff/c/{uuid}", cookie=forged)
        assert status == 303
    finally:
        hub.stop()


def test_usage_counts_reach_the_hub_and_are_never_counted_twice(hub, hotspot):
    """Daily aggregates only (no address, device or search text) go to the hub with a sync."""
    counter = UsageCounter(hotspot.data_dir / USAGE_FILE, today=lambda: "2026-11-20")
    for _ in range(3):
        counter.count("view", resource_id="radio-basics", themes=["communication-radio"],
                      type_id="guides-manuals")
    counter.count("download", resource_id="radio-basics")
    assert counter.flush()
    for _ in range(2):  # a second run re-sends the same days: the hub replaces, never adds
        done = hotspot.sync()
        assert done.returncode == 0, done.stderr
    totals = json.loads(hub.cli("usage").stdout)
    (day,) = totals
    assert day["day"] == "2026-11-20" and day["hotspots"] == 1
    assert day["resources"]["radio-basics"]["view"] == 3
    assert day["resources"]["radio-basics"]["download"] == 1
    assert day["themes"]["communication-radio"]["view"] == 3
    assert hotspot.state()["usage_sent_through"] == "2026-11-20"
    stored = list((hub.root / "hub-data").rglob("usage/*/*.json"))
    assert len(stored) == 1
    text = stored[0].read_text()
    assert "127.0.0.1" not in text and "hotspot-sync" not in text


@pytest.mark.parametrize("days", [
    "not a list", [{"views": 1}], [{"day": "yesterday"}], [{"day": "2026-11-20", "view": -1}],
    [{"day": "2026-11-20", "resources": {"a": {"b": {"c": {"d": 1}}}}}],
    [{"day": "2026-11-20", "resources": {"127.0.0.1 Mozilla/5.0": 1}}],
    [{"day": "2026-11-20", "search": "land defenders"}],
])
def test_hub_refuses_malformed_usage_and_stores_nothing(tmp_path, days):
    from hotspot.errors import BadRequest
    from hotspot.hub.usage import UsageStore
    store = UsageStore(LocalStorage(tmp_path / "hub"))
    with pytest.raises(BadRequest):
        store.store("hotspot-1", days if not isinstance(days, list) else
                    [{"day": "2026-11-19", "searches": 2}] + days)
    assert store.totals() == []
