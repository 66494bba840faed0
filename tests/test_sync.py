"""``hotspot sync`` against a real hub process: a cut upload resumes from the hub's confirmed
offset, packs are downloaded (resuming a cut download) and installed only when signed by a
trusted key, backoff and its reset, TLS verified against a CA made here. Loopback only.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_test_catalog
from hotspot.hub.storage import LocalStorage
from hotspot.library import DataPaths
from hotspot.packs import import_pack, installed_state
from hotspot.sync import Meter, backoff_seconds, read_sync_state
from test_hub import CutProxy, HotspotSide, big_photo, hub, hotspot  # noqa: F401 (fixtures)
from test_reader import new_key, to_tar, write_pack

pytestmark = pytest.mark.slow


# -- small pieces ------------------------------------------------------------------------------

def test_backoff_doubles_with_jitter_up_to_the_cap():
    rand = random.Random(7)
    assert backoff_seconds(0, 60, 3600) == 0
    for attempts, full in [(1, 60), (2, 120), (3, 240), (7, 3600), (30, 3600)]:
        for _ in range(20):
            assert full / 2 <= backoff_seconds(attempts, 60, 3600, rand) <= full


def test_meter_keeps_to_the_cap_and_the_budget():
    now = [0.0]
    slept = []
    meter = Meter(1000, 5000, clock=lambda: now[0], sleep=lambda s: (slept.append(s),
                                                                     now.__setitem__(0, now[0] + s)))
    meter.count(2000, sent=True)
    assert slept == [2.0]
    meter.check(3000)
    with pytest.raises(Exception, match="budget"):
        meter.check(3001)


def test_state_is_readable_before_any_run(tmp_path):
    state = read_sync_state(tmp_path)
    assert state["attempts"] == 0 and state["last_error"] is None
    (tmp_path / "sync").mkdir()
    (tmp_path / "sync" / "state.json").write_text(json.dumps(
        {"oldest_undelivered_day": "2026-10-01", "attempts": 3, "uploads": {"x": "y"}}))
    state = read_sync_state(tmp_path, today=dt.date(2026, 10, 11))
    assert state["oldest_undelivered_age_days"] == 10 and state["attempts"] == 3
    assert "uploads" not in state


# -- uploads -----------------------------------------------------------------------------------

def test_a_cut_upload_resumes_from_the_confirmed_offset(tmp_path, hub, hotspot):
    uuid = hotspot.submit("a long video of the incursion", big_photo(6))
    size = hotspot.queue().entry(uuid).size
    proxy = CutProxy(hub.port, cut_after=3_000_000)
    try:
        hotspot.set_hub(proxy.url, chunk_kb=256)
        first = hotspot.sync()
        assert proxy.cut.is_set()
        assert first.returncode == 1 and "connection to the hub failed" in first.stderr
        state = hotspot.state()
        assert state["attempts"] == 1 and state["undelivered"] == 1
        assert state["oldest_undelivered_day"] == hotspot.queue().entry(uuid).day
        assert hotspot.queue().entry(uuid).state == "queued"
        confirmed = json.loads(next((hub.root / "hub-data" / "work" / "uploads")
                                    .glob("*.json")).read_text())["offset"]
        assert 1_000_000 < confirmed < size

        # The timer waits out the backoff (nothing sent)...
        due = hotspot.sync("--if-due")
        assert due.returncode == 0 and hotspot.state()["attempts"] == 1
    finally:
        proxy.close()
    # ... the network hook does not.
    hotspot.set_hub(hub.url, chunk_kb=256)
    second = hotspot.sync("--network-changed")
    assert second.returncode == 0, second.stderr
    state = hotspot.state()
    assert state["attempts"] == 0 and state["last_error"] is None
    resent = state["bytes_sent_last_run"]
    assert resent < size - confirmed + 300_000, (resent, size, confirmed)
    assert resent < size
    assert hotspot.queue().entry(uuid).state == "delivered"
    [record] = hub.records()
    assert record["size"] == size and record["sha256"] == hotspot.queue().entry(uuid).sha256


def test_a_data_budget_stops_the_run_and_the_next_run_continues(hub, hotspot):
    uuid = hotspot.submit("photos", big_photo(3))
    hotspot.write_config(budget_mb_per_run=1, chunk_kb=256)
    done = hotspot.sync()
    assert done.returncode == 0 and "budget" in done.stdout
    assert hotspot.queue().entry(uuid).state == "queued"
    assert hotspot.state()["bytes_sent_last_run"] <= 1_000_000
    hotspot.write_config(budget_mb_per_run=0)
    assert hotspot.sync().returncode == 0
    assert hotspot.queue().entry(uuid).state == "delivered"


def test_no_hub_reachable_is_quick_and_quiet_for_the_timer(tmp_path):
    side = HotspotSide(tmp_path / "lonely", "http://127.0.0.1:9")
    side.token_file.write_text("hst_x\n")
    side.hub_key_file.write_text(new_key()[1].to_text())
    started = time.monotonic()
    done = side.sync("--if-due", "--quiet")
    assert done.returncode == 0 and done.stdout == "" and time.monotonic() - started < 20
    assert "connection to the hub failed" in side.state()["last_error"]
    done = side.sync()
    assert done.returncode == 1 and "connection to the hub failed" in done.stderr


# -- packs -------------------------------------------------------------------------------------

class Library:
    """A publisher key and versions of one library; the hotspot trusts the key."""

    def __init__(self, root: Path, side: HotspotSide):
        self.root = root
        self.files = root / "files"
        self.secret, self.public = new_key()
        (side.trusted / "publisher.pub").write_text(self.public.to_text())

    def pack(self, version: int, big_file_mb: int = 0, secret=None) -> Path:
        catalog = make_test_catalog(self.files, version=version, extra=0,
                                    big_file_mb=big_file_mb)
        folder = write_pack(self.root / f"v{version}-{random.randrange(10**6)}", catalog,
                            self.files, secret or self.secret)
        return to_tar(folder)


def test_the_hotspot_fetches_a_newer_pack_resuming_a_cut_download(tmp_path, hub, hotspot):
    library = Library(tmp_path / "publisher", hotspot)
    import_pack(library.pack(1), DataPaths(hotspot.data_dir), [library.public], margin_bytes=0)
    v2 = library.pack(2, big_file_mb=4)
    published = hub.cli("publish", str(v2))
    assert published.returncode == 0, published.stderr
    size = v2.stat().st_size

    proxy = CutProxy(hub.port, cut_down_after=2_000_000)
    try:
        hotspot.set_hub(proxy.url)
        first = hotspot.sync()
        assert first.returncode == 1 and proxy.cut.is_set()
        assert installed_state(DataPaths(hotspot.data_dir))["version"] == 1
        partial = next((hotspot.data_dir / "sync" / "downloads").glob("*.part"))
        have = partial.stat().st_size
        assert 0 < have < size
    finally:
        proxy.close()
    hotspot.set_hub(hub.url)
    second = hotspot.sync("--network-changed")
    assert second.returncode == 0, second.stderr
    assert "Installed test version 2" in second.stdout
    assert installed_state(DataPaths(hotspot.data_dir))["version"] == 2
    assert hotspot.state()["bytes_received_last_run"] < size - have + 200_000
    assert not list((hotspot.data_dir / "sync" / "downloads").glob("*.part"))
    # Up to date: nothing more to fetch.
    third = hotspot.sync()
    assert third.returncode == 0 and "Installed" not in third.stdout


def test_a_pack_signed_by_an_unknown_key_is_refused_and_not_fetched_again(tmp_path, hub,
                                                                         hotspot):
    library = Library(tmp_path / "publisher", hotspot)
    import_pack(library.pack(1), DataPaths(hotspot.data_dir), [library.public], margin_bytes=0)
    forged = library.pack(2, secret=new_key()[0])
    assert hub.cli("publish", str(forged)).returncode == 0
    done = hotspot.sync()
    assert done.returncode == 1 and "signature" in done.stderr
    assert installed_state(DataPaths(hotspot.data_dir))["version"] == 1
    state = hotspot.state()
    assert "was refused" in state["last_error"] and state["attempts"] == 1
    assert state["refused_packs"]
    again = hotspot.sync()  # the same refused bytes are not downloaded again
    assert again.returncode == 0, again.stderr
    assert hotspot.state()["bytes_received_last_run"] < 10_000


def test_packs_from_the_hub_cli_list_and_reject_garbage(tmp_path, hub):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar")
    done = hub.cli("publish", str(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr


# -- TLS ---------------------------------------------------------------------------------------

def make_ca_and_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test hub CA")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "hub.key", "-out", "hub.csr", "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "hub.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "hub.pem", "-days", "2", "-extfile", "ext.cnf")
    return folder / "ca.pem", folder / "hub.pem", folder / "hub.key"


def test_tls_is_verified_and_a_custom_ca_can_be_configured(tmp_path, hub, hotspot):
    import shutil
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    ca, cert, key = make_ca_and_certificate(tmp_path / "tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    proxy = CutProxy(hub.port, tls=context)
    try:
        hotspot.submit("over TLS")
        hotspot.set_hub(proxy.url)
        refused = hotspot.sync()
        assert refused.returncode == 1 and "TLS certificate is not trusted" in refused.stderr
        hotspot.set_hub(proxy.url, ca_file=f'"{ca}"')
        done = hotspot.sync()
        assert done.returncode == 0 and "1 stored" in done.stdout, done.stderr
    finally:
        proxy.close()


def test_plain_http_is_refused_for_a_remote_hub(tmp_path):
    side = HotspotSide(tmp_path / "h", "http://hub.example.org")
    side.token_file.write_text("hst_x\n")
    side.hub_key_file.write_text(new_key()[1].to_text())
    done = side.sync()
    assert done.returncode == 2 and "must use https" in done.stderr


def test_storage_holds_what_was_published(tmp_path, hub, hotspot):
    library = Library(tmp_path / "publisher", hotspot)
    pack = library.pack(1)
    assert hub.cli("publish", str(pack)).returncode == 0
    assert hub.cli("publish", str(pack)).returncode == 0  # again: one entry
    storage = LocalStorage(hub.root / "hub-data")
    index = storage.read_json("packs/test/index.json")
    assert [e["version"] for e in index] == [1]
    assert "test     1  full" in hub.cli("packs").stdout
