"""hotspot.packs: importing signed packs, version rules, rollback, garbage collection, and
imports that are interrupted or run while the real server is serving.

Everything is real: pack folders and tars on disk, minisign signatures, the media store, a
``hotspot import`` subprocess killed with SIGKILL, a ``hotspot serve`` subprocess polled over
HTTP during an import.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ServerProcess, make_test_catalog
from content_pack.reader import verify_pack
from hotspot.catalog import load_catalog
from hotspot.errors import HotspotError, PackError, SignatureError
from hotspot.library import DataPaths, install_demo
from hotspot.media import MediaStore
from hotspot.packs import (ImportFailed, Progress, import_pack, installed_state, rollback)
from test_reader import catalog_files, new_key, to_tar, write_pack

MB = 1024 * 1024


# -- catalogs and packs -------------------------------------------------------------------------


def v1_catalog(files: Path) -> dict:
    return make_test_catalog(files, version=1, extra=0)


def v2_catalog(files: Path, version: int = 2) -> dict:
    """v1 with 'security-workbook' removed, 'radio-basics' retitled and 'new-guide' added."""
    data = make_test_catalog(files, version=version, extra=0)
    data["resources"] = [r for r in data["resources"] if r["id"] != "security-workbook"]
    data["resources"][0]["title"]["en"] = "Community radio basics, second edition"
    content = b"%PDF-1.4 the new guide\n" + hashlib.sha512(b"new").digest() * 100
    (files / "new-guide.pdf").write_bytes(content)
    data["resources"].append({
        "id": "new-guide", "type": "guides-manuals", "themes": ["patrols"],
        "strand": "what-works", "languages": ["en"], "title": {"en": "The new guide"},
        "added": "2026-11-01",
        "files": [{"name": "new-guide.pdf", "sha256": hashlib.sha256(content).hexdigest(),
                   "size": len(content), "media_type": "application/pdf"}],
    })
    return data


def delta_parts(base: dict, new: dict) -> tuple[dict, list[str], set[str]]:
    """The delta catalog (changed + added records), removed ids and new file hashes."""
    old = {r["id"]: r for r in base["resources"]}
    changed = [r for r in new["resources"] if old.get(r["id"]) != r]
    removed = sorted(set(old) - {r["id"] for r in new["resources"]})
    new_files = set(catalog_files(new)) - set(catalog_files(base))
    return {**new, "resources": changed}, removed, new_files


class Publisher:
    """Makes the packs of one library, signed with its own key."""

    def __init__(self, root: Path):
        self.root = root
        self.files = root / "files"
        self.secret, self.public = new_key()
        self.count = 0

    def out(self) -> Path:
        self.count += 1
        return self.root / f"out{self.count}"

    def full(self, catalog: dict, **kwargs) -> Path:
        return write_pack(self.out(), catalog, self.files, self.secret, **kwargs)

    def delta(self, base: dict, new: dict) -> Path:
        part, removed, only = delta_parts(base, new)
        return write_pack(self.out(), part, self.files, self.secret, kind="delta",
                          base_version=base["library"]["version"], removed=removed, only=only)


@pytest.fixture
def publisher(tmp_path):
    return Publisher(tmp_path / "publisher")


@pytest.fixture
def paths(tmp_path):
    return DataPaths(tmp_path / "data")


def do_import(pack: Path, paths: DataPaths, publisher: Publisher, **kwargs):
    kwargs.setdefault("margin_bytes", 0)
    return import_pack(pack, paths, [publisher.public], **kwargs)


def temp_files(paths: DataPaths) -> list[Path]:
    return [p for p in paths.root.rglob("*") if p.name.startswith(".") and p.is_file()
            and p.name != ".library.lock"]


# -- importing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_full_import_installs_everything(publisher, paths, as_tar):
    catalog = v1_catalog(publisher.files)
    pack = publisher.full(catalog)
    seen: list[Progress] = []
    result = do_import(to_tar(pack) if as_tar else pack, paths, publisher, progress=seen.append)
    assert (result.library, result.version, result.kind) == ("test", 1, "full")
    assert result.files_copied == 4 and result.files_reused == 0 and result.removed_files == 0
    assert result.bytes_copied == sum(e["size"] for e in catalog_files(catalog).values())
    media = MediaStore(paths.media)
    assert set(media.iter_hashes()) == set(catalog_files(catalog))
    assert load_catalog(paths.catalog).version.startswith("test-1-")
    stages = [p.stage for p in seen]
    assert stages[0] == "verifying" and stages[-1] == "done"
    assert {"copying", "switching", "cleaning"} <= set(stages)
    copying = [p for p in seen if p.stage == "copying"]
    assert copying[-1].files_done == 4 and copying[-1].bytes_done == result.bytes_copied
    progress = json.loads(paths.import_progress.read_text())
    assert progress["state"] == "done" and progress["version"] == 1
    assert progress["result"]["files_copied"] == 4
    assert installed_state(paths) == {"library": "test", "version": 1, "demo": False,
                                      "resources": 3, "previous": None}
    assert temp_files(paths) == []


def test_delta_import_copies_only_new_files(publisher, paths):
    base, new = v1_catalog(publisher.files), v2_catalog(publisher.files)
    do_import(publisher.full(base), paths, publisher)
    result = do_import(publisher.delta(base, new), paths, publisher)
    assert (result.kind, result.version, result.files_copied, result.files_reused) == \
        ("delta", 2, 1, 0)
    catalog = load_catalog(paths.catalog)
    assert catalog.version.startswith("test-2-")
    ids = {r.id for r in catalog.resources}
    assert "security-workbook" not in ids and "new-guide" in ids
    assert catalog.get("radio-basics").title["en"] == "Community radio basics, second edition"
    state = installed_state(paths)
    assert state["version"] == 2 and state["previous"]["version"] == 1


def test_same_version_is_refused_unless_downgrade_allowed(publisher, paths):
    catalog = v1_catalog(publisher.files)
    pack = publisher.full(catalog)
    do_import(pack, paths, publisher)
    before = paths.catalog.read_bytes()
    with pytest.raises(PackError, match="already has this version.*--allow-downgrade"):
        do_import(pack, paths, publisher)
    assert paths.catalog.read_bytes() == before
    again = do_import(pack, paths, publisher, allow_downgrade=True)
    assert again.files_copied == 0 and again.files_reused == 4
    do_import(publisher.full(v2_catalog(publisher.files)), paths, publisher)
    with pytest.raises(PackError, match="already has the newer version 2"):
        do_import(pack, paths, publisher)
    assert do_import(pack, paths, publisher, allow_downgrade=True).version == 1


def test_other_library_needs_replace_library(publisher, paths):
    do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
    other = make_test_catalog(publisher.files, version=5, extra=0)
    other["library"]["id"] = "other"
    pack = publisher.full(other)
    with pytest.raises(PackError, match="holds library 'other', but this hotspot has library "
                                        "'test'.*--replace-library"):
        do_import(pack, paths, publisher)
    assert do_import(pack, paths, publisher, replace_library=True).library == "other"


def test_demo_library_is_replaced_without_asking(publisher, paths):
    install_demo(paths)
    assert installed_state(paths)["demo"] is True
    result = do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
    assert result.library == "test"
    assert installed_state(paths)["previous"]["library"] == "demo"


def test_unknown_key_is_refused_and_changes_nothing(publisher, paths):
    do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
    before = paths.catalog.read_bytes()
    stranger = Publisher(publisher.root.parent / "stranger")
    stranger.files = publisher.files
    pack = stranger.full(v2_catalog(publisher.files))
    with pytest.raises(SignatureError, match="not trusted here"):
        do_import(pack, paths, publisher)
    assert paths.catalog.read_bytes() == before
    progress = json.loads(paths.import_progress.read_text())
    assert progress["state"] == "failed" and "not trusted" in progress["reason"]


def test_tampered_file_is_caught_while_copying(publisher, paths):
    do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
    before = paths.catalog.read_bytes()
    new = v2_catalog(publisher.files)
    pack = publisher.full(new)
    new_sha = new["resources"][-1]["files"][0]["sha256"]
    victim = pack / "files" / new_sha
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF  # same size, other content
    victim.write_bytes(bytes(data))
    with pytest.raises(PackError, match=f"File {new_sha} of the pack is damaged or was "
                                        f"altered.*Nothing was changed") as refused:
        do_import(pack, paths, publisher)
    assert refused.value.exit_code == 2
    assert paths.catalog.read_bytes() == before
    assert not MediaStore(paths.media).has(new_sha)
    assert temp_files(paths) == []


def test_missing_and_extra_files_are_refused(publisher, paths):
    pack = publisher.full(v1_catalog(publisher.files))
    victim = sorted((pack / "files").iterdir())[0]
    kept = victim.read_bytes()
    victim.unlink()
    with pytest.raises(PackError, match=f"files/{victim.name} is listed in the manifest but "
                                        f"missing"):
        do_import(pack, paths, publisher)
    victim.write_bytes(kept)
    (pack / "files" / ("0" * 64)).write_bytes(b"extra")
    with pytest.raises(PackError, match=f"files/{'0' * 64} is in the pack but not listed"):
        do_import(pack, paths, publisher)
    assert not paths.catalog.exists()


def test_truncated_file_is_refused_before_or_during_the_copy(publisher, paths):
    catalog = v1_catalog(publisher.files)
    pack = publisher.full(catalog)
    big = max(catalog_files(catalog).values(), key=lambda e: e["size"])["sha256"]
    data = (pack / "files" / big).read_bytes()
    (pack / "files" / big).write_bytes(data[:-10])
    with pytest.raises(PackError, match="cut short"):
        do_import(pack, paths, publisher)
    (pack / "files" / big).write_bytes(data)

    # Cut short after the check, while the copy runs (a drive being overwritten, a bad card).
    def cut_when_copying(progress: Progress):
        if progress.stage == "copying" and progress.files_done == 0:
            os.truncate(pack / "files" / big, 1000)

    with pytest.raises(PackError, match=f"File {big} of the pack is damaged.*cut short"):
        do_import(pack, paths, publisher, progress=cut_when_copying)
    assert not paths.catalog.exists() and temp_files(paths) == []


def test_delta_needs_its_base_installed(publisher, paths):
    base, new = v1_catalog(publisher.files), v2_catalog(publisher.files)
    delta = publisher.delta(base, new)
    with pytest.raises(PackError, match="needs version 1 of library 'test' installed; this "
                                        "hotspot has no library"):
        do_import(delta, paths, publisher)
    do_import(publisher.full(v2_catalog(publisher.files, version=3)), paths, publisher)
    before = paths.catalog.read_bytes()
    with pytest.raises(PackError, match="This update needs version 1 installed; this hotspot "
                                        "has 3"):
        do_import(delta, paths, publisher)
    assert paths.catalog.read_bytes() == before


def test_free_space_is_checked_before_copying(publisher, paths):
    pack = publisher.full(v1_catalog(publisher.files))
    with pytest.raises(ImportFailed, match="Not enough free space.*must stay free") as refused:
        do_import(pack, paths, publisher, margin_bytes=10**18)
    assert refused.value.exit_code == 1
    assert list(MediaStore(paths.media).iter_hashes()) == [] and not paths.catalog.exists()


# -- rollback and garbage collection ------------------------------------------------------------


def test_rollback_and_roll_forward(publisher, paths):
    with pytest.raises(PackError, match="no previous library version"):
        rollback(paths)
    base, new = v1_catalog(publisher.files), v2_catalog(publisher.files)
    do_import(publisher.full(base), paths, publisher)
    do_import(publisher.delta(base, new), paths, publisher)
    assert rollback(paths) == (2, 1)
    assert load_catalog(paths.catalog).version.startswith("test-1-")
    assert load_catalog(paths.catalog).get("security-workbook")
    assert installed_state(paths)["previous"]["version"] == 2
    assert rollback(paths) == (1, 2)
    assert load_catalog(paths.catalog).get("new-guide")
    assert temp_files(paths) == []


def test_garbage_collection_keeps_current_and_previous_files(publisher, paths):
    v1 = v1_catalog(publisher.files)
    v2 = v2_catalog(publisher.files)
    v3 = copy.deepcopy(v2)
    v3["library"]["version"] = 3
    v3["resources"] = [r for r in v3["resources"] if r["id"] != "proteccion-colectiva"]
    media = MediaStore(paths.media)
    do_import(publisher.full(v1), paths, publisher)
    assert do_import(publisher.full(v2), paths, publisher).removed_files == 0
    assert set(media.iter_hashes()) == set(catalog_files(v1)) | set(catalog_files(v2))
    result = do_import(publisher.full(v3), paths, publisher)
    # v1 files named by neither v3 nor v2 are gone; v2 files stay for a rollback.
    only_v1 = set(catalog_files(v1)) - set(catalog_files(v2)) - set(catalog_files(v3))
    assert set(media.iter_hashes()) == set(catalog_files(v2)) | set(catalog_files(v3))
    assert result.removed_files == len(only_v1)
    assert rollback(paths) == (3, 2)  # the previous version is complete
    for sha in catalog_files(v2):
        assert media.has(sha)


# -- interrupted imports ------------------------------------------------------------------------


def big_catalog(files: Path, version: int, sizes_mb: list[int]) -> dict:
    """The test library plus one resource with a file per entry of ``sizes_mb``."""
    data = make_test_catalog(files, version=version, extra=0)
    entries = []
    for n, size in enumerate(sizes_mb):
        name = f"big-{version}-{n}.bin"
        block = hashlib.sha512(name.encode()).digest() * (MB // 64)
        with open(files / name, "wb") as out:
            for _ in range(size):
                out.write(block)
        entries.append({"name": name, "sha256": hashlib.sha256((files / name).read_bytes()).hexdigest(),
                        "size": size * MB, "media_type": "application/octet-stream"})
    data["resources"].append({
        "id": "big-files", "type": "digital-tools", "themes": ["patrols"], "strand": "what-works",
        "languages": ["en"], "title": {"en": "Big files"}, "added": "2026-11-01",
        "files": entries})
    return data


def write_config(tmp_path: Path, publisher: Publisher, margin_mb: int = 0) -> Path:
    keys = tmp_path / "trusted-keys"
    keys.mkdir(exist_ok=True)
    (keys / "publisher.pub").write_text(publisher.public.to_text())
    config = tmp_path / "hotspot.toml"
    config.write_text(f'[packs]\ntrusted_keys_dir = "{keys}"\nfree_space_margin_mb = {margin_mb}\n')
    return config


def hotspot(config: Path, paths: DataPaths, *args: str, **kwargs):
    return subprocess.run([sys.executable, "-m", "hotspot.cli", "--config", str(config),
                           "--data-dir", str(paths.root), *args],
                          capture_output=True, text=True, **kwargs)


def test_import_killed_mid_copy_changes_nothing_and_is_resumed(publisher, paths, tmp_path):
    do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
    before = paths.catalog.read_bytes()
    # A small first file, then big ones: the first "Copying" line (every 5 %) comes after the
    # first file is complete and long before the last one is.
    catalog = big_catalog(publisher.files, 2, [6, 30, 30, 30])
    order = [e["sha256"] for e in catalog["resources"][-1]["files"]]
    pack = publisher.full(catalog, order=order + [s for s in catalog_files(catalog)
                                                  if s not in order])
    config = write_config(tmp_path, publisher)
    proc = subprocess.Popen([sys.executable, "-m", "hotspot.cli", "--config", str(config),
                             "--data-dir", str(paths.root), "import", str(pack)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            match = re.match(r"Copying (\d+)/(\d+) files", line)
            if match and int(match.group(1)) >= 1:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(lines) + proc.stderr.read()
    copied = int(re.match(r"Copying (\d+)/", lines[-1]).group(1))
    assert 1 <= copied < 4, lines
    assert paths.catalog.read_bytes() == before
    assert load_catalog(paths.catalog).version.startswith("test-1-")
    assert json.loads(paths.import_progress.read_text())["state"] == "running"  # it was killed

    result = do_import(pack, paths, publisher)
    # The 4 files of version 1 were here already; the big ones copied before the kill too.
    assert result.files_reused >= 4 + copied and result.files_copied + result.files_reused == 8
    assert load_catalog(paths.catalog).version.startswith("test-2-")
    for sha in order:
        assert hashlib.sha256(MediaStore(paths.media).path_for(sha).read_bytes()).hexdigest() == sha


def test_import_while_serving_switches_without_a_gap(publisher, paths):
    base = v1_catalog(publisher.files)
    do_import(publisher.full(base), paths, publisher)
    new = big_catalog(publisher.files, 2, [20, 20])
    new["resources"] = [r for r in new["resources"] if r["id"] != "security-workbook"]
    pack = to_tar(publisher.full(new))
    server = ServerProcess(["--data-dir", str(paths.root), "serve", "--host", "127.0.0.1",
                            "--port", "0"])
    seen_versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    # Media of version 2 is only checked before the rollback starts (after it, a 404 for a
    # file the served library no longer names is right); the gate orders the two.
    gate = threading.Lock()
    rolling_back = threading.Event()

    def poll():
        while not stop.is_set():
            with gate:
                poll_once()

    def poll_once():
        health = server.get("/healthz")
        page = server.get("/browse")
        if health.status != 200 or page.status != 200:
            failures.append(f"{health.status} {page.status}")
            return
        version = json.loads(health.text)["library"]
        if not version.startswith(("test-1-", "test-2-")):
            failures.append(version)
        if version.startswith("test-2-") and not rolling_back.is_set():
            # The new version names files that must already be served.
            for entry in new["resources"][-1]["files"]:
                media = server.request("HEAD", f"/media/{entry['sha256']}/{entry['name']}")
                if media.status != 200:
                    failures.append(f"media {media.status}")
        seen_versions.append(version)

    poller = threading.Thread(target=poll)
    try:
        poller.start()
        do_import(pack, paths, publisher)
        switched = time.monotonic()
        while not (seen_versions and seen_versions[-1].startswith("test-2-")):
            assert time.monotonic() - switched < 10, "new library not served"
            time.sleep(0.1)
        with gate:
            rolling_back.set()
        assert rollback(paths) == (2, 1)
        rolled = time.monotonic()
        while not seen_versions[-1].startswith("test-1-"):
            assert time.monotonic() - rolled < 10, "rolled back library not served"
            time.sleep(0.1)
        assert server.get("/r/security-workbook").status == 200
    finally:
        stop.set()
        poller.join(timeout=30)
        assert server.stop() == 0, "".join(server.output)
    assert failures == []
    assert any(v.startswith("test-1-") for v in seen_versions)
    # Never back to the old version before the rollback: old, then new, then old.
    changes = [v[:7] for i, v in enumerate(seen_versions) if i == 0 or v != seen_versions[i - 1]]
    assert changes == ["test-1-", "test-2-", "test-1-"]


# -- the command line ---------------------------------------------------------------------------


def test_cli_import_rollback_and_exit_codes(publisher, paths, tmp_path):
    config = write_config(tmp_path, publisher)
    base, new = v1_catalog(publisher.files), v2_catalog(publisher.files)
    full = publisher.full(base)
    done = hotspot(config, paths, "import", str(full))
    assert done.returncode == 0, done.stderr
    assert "Installed library 'test' version 1 (full pack): 4 files copied" in done.stdout
    assert "Copying 4/4 files" in done.stdout

    again = hotspot(config, paths, "import", str(full))
    assert again.returncode == 2 and again.stderr.startswith("hotspot: This pack is version 1")
    assert "Traceback" not in again.stderr
    assert hotspot(config, paths, "import", str(full), "--allow-downgrade").returncode == 0

    delta = hotspot(config, paths, "import", str(to_tar(publisher.delta(base, new))))
    assert delta.returncode == 0, delta.stderr
    assert "version 2 (update): 1 files copied" in delta.stdout
    info = json.loads(hotspot(config, paths, "library", "info").stdout)
    assert info["installed_version"] == 2 and info["previous"]["version"] == 1

    back = hotspot(config, paths, "rollback")
    assert back.returncode == 0 and "from version 2 to version 1" in back.stdout

    missing = hotspot(config, paths, "import", str(tmp_path / "nothing.tar"))
    assert missing.returncode == 2 and "There is no pack at" in missing.stderr

    tight = write_config(tmp_path, publisher, margin_mb=1_000_000)
    full_disk = hotspot(tight, paths, "import", str(publisher.full(v2_catalog(publisher.files,
                                                                             version=7))))
    assert full_disk.returncode == 1 and "Not enough free space" in full_disk.stderr

    no_keys = tmp_path / "empty.toml"
    (tmp_path / "no-keys").mkdir()
    no_keys.write_text(f'[packs]\ntrusted_keys_dir = "{tmp_path / "no-keys"}"\n')
    refused = hotspot(no_keys, paths, "import", str(full))
    assert refused.returncode == 2 and "no trusted keys" in refused.stderr


def test_cli_rollback_without_previous(paths, tmp_path, publisher):
    config = write_config(tmp_path, publisher)
    done = hotspot(config, paths, "rollback")
    assert done.returncode == 2 and "no previous library version" in done.stderr


def test_second_import_waits_for_none(publisher, paths):
    """Two imports never run at once: the second is refused while the first holds the lock."""
    from hotspot.library import library_lock

    pack = publisher.full(v1_catalog(publisher.files))
    with library_lock(paths):
        with pytest.raises(HotspotError, match="Another import"):
            do_import(pack, paths, publisher)
    assert not paths.import_progress.exists()  # the running import's progress is not touched
    assert do_import(pack, paths, publisher).version == 1


def test_verified_pack_is_closed_after_import(publisher, paths):
    pack = to_tar(publisher.full(v1_catalog(publisher.files)))
    do_import(pack, paths, publisher)
    with verify_pack(pack, [publisher.public]) as verified:
        assert verified.manifest.version == 1
    own = Path(f"/proc/{os.getpid()}/fd")
    assert not any(os.path.realpath(own / fd) == str(pack) for fd in os.listdir(own))
