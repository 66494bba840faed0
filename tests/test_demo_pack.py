"""The demo library is a real content pack, signed with a DEMO key trusted only in demo mode.

`hotspot serve --demo` builds the pack from hotspot/demo/ (catalog.csv, taxonomy.json,
library.json, files/) and installs it with the same `import_pack` as `hotspot import`; the
real `minisign` verifies it; outside demo mode the demo key opens nothing.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ServerProcess, needs_tools
from content_pack.signing import PublicKey, SecretKey, generate_keypair
from hotspot.errors import HotspotError
from hotspot.library import (DEMO_DIR, DataPaths, demo_is_current, install_catalog,
                             install_demo, installed_library)
from hotspot.packs import installed_state, rollback

ROOT = Path(__file__).resolve().parent.parent
DEMO_COMMENT = "DEMO KEY - publicly known - trusted only by `hotspot serve --demo`"


@pytest.fixture
def paths(tmp_path):
    return DataPaths(tmp_path / "data")


def demo_pack(paths: DataPaths) -> Path:
    packs = sorted(paths.demo_pack_cache.glob("demo-*.hotspot-pack"))
    assert len(packs) == 1, packs
    return packs[0]


def hotspot(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hotspot.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env)


def test_demo_keys_are_labelled_and_match():
    for name in ("demo-signing.key", "demo-signing.pub"):
        first_line = (DEMO_DIR / name).read_text().splitlines()[0]
        assert first_line == f"untrusted comment: {DEMO_COMMENT}"
    secret = SecretKey.load(DEMO_DIR / "demo-signing.key", None)  # no passphrase, on purpose
    assert secret.public_key() == PublicKey.load(DEMO_DIR / "demo-signing.pub")


@needs_tools("minisign", package="minisign")
def test_demo_pack_verifies_with_the_real_minisign(paths):
    assert install_demo(paths) is True
    pack = demo_pack(paths)
    result = subprocess.run(["minisign", "-V", "-H", "-p", str(DEMO_DIR / "demo-signing.pub"),
                             "-m", str(pack / "manifest.json")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Trusted comment: library:demo version:1 kind:full" in result.stdout


def test_demo_is_installed_through_import_pack_once(paths):
    assert install_demo(paths) is True
    progress = json.loads(paths.import_progress.read_text())
    assert progress["state"] == "done"
    assert progress["pack"] == str(demo_pack(paths))
    assert progress["result"]["files_copied"] == 25
    state = installed_state(paths)
    assert (state["library"], state["version"], state["demo"]) == ("demo", 1, True)
    assert state["previous"] is None  # nothing was installed before
    assert demo_is_current(paths)
    stamps = {p: p.stat().st_mtime_ns for p in (paths.catalog, paths.import_progress,
                                                demo_pack(paths) / "manifest.json")}
    assert install_demo(paths) is False
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_changed_demo_source_is_a_higher_version(paths, tmp_path):
    source = tmp_path / "demo-source"
    shutil.copytree(DEMO_DIR, source)
    assert install_demo(paths, demo_dir=source) is True
    csv_path = source / "catalog.csv"
    csv_path.write_text(csv_path.read_text(encoding="utf-8").replace(
        "Community radio for early warning", "Community radio for early warning (2nd edition)", 1),
        encoding="utf-8")
    assert install_demo(paths, demo_dir=source) is True
    state = installed_state(paths)
    assert (state["version"], state["previous"]["version"]) == (2, 1)
    assert [p.name for p in paths.demo_pack_cache.iterdir()] == ["demo-2.hotspot-pack"]
    assert install_demo(paths, demo_dir=source) is False
    # After a rollback to version 1 the demo is out of date again, and comes back as 3.
    assert rollback(paths) == (2, 1)
    assert install_demo(paths, demo_dir=source) is True
    assert installed_state(paths)["version"] == 3


def test_an_old_direct_demo_install_is_upgraded(paths):
    """Data dirs from before the demo was a pack hold demo version 1 without a marker."""
    from content_pack.csv_catalog import read_source

    source = read_source(DEMO_DIR, DEMO_DIR / "catalog.csv", version=1)
    install_catalog(paths, source.catalog, DEMO_DIR / "files")
    assert not demo_is_current(paths)
    assert install_demo(paths) is True
    assert installed_library(paths)["version"] == 2


def test_the_demo_does_not_replace_a_real_library(paths):
    from content_pack.csv_catalog import read_source

    real = read_source(DEMO_DIR, DEMO_DIR / "catalog.csv", version=4,
                       library={"id": "river", "title": {"en": "River"}, "demo": False}).catalog
    install_catalog(paths, real, DEMO_DIR / "files")
    with pytest.raises(HotspotError, match="not the demo"):
        install_demo(paths)
    assert installed_library(paths)["id"] == "river"
    assert install_demo(paths, replace_library=True) is True
    state = installed_state(paths)
    assert (state["library"], state["previous"]["library"]) == ("demo", "river")


@pytest.mark.parametrize("keys", ["empty", "unrelated"])
def test_hotspot_import_does_not_trust_the_demo_key(paths, tmp_path, keys):
    """Outside demo mode the demo key is just another unknown key: its pack is refused."""
    install_demo(DataPaths(tmp_path / "demo-data"))
    pack = demo_pack(DataPaths(tmp_path / "demo-data"))
    keys_dir = tmp_path / "trusted-keys"
    keys_dir.mkdir()
    if keys == "unrelated":
        generate_keypair(keys_dir / "publisher", passphrase=None)
        (keys_dir / "publisher.key").unlink()
    config = tmp_path / "hotspot.toml"
    config.write_text(f'[packs]\ntrusted_keys_dir = "{keys_dir}"\nfree_space_margin_mb = 0\n')
    result = hotspot("--config", str(config), "--data-dir", str(paths.root), "import", str(pack))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not paths.catalog.exists()


def test_serve_demo_builds_and_imports_once(tmp_path):
    env = {"XDG_DATA_HOME": str(tmp_path)}
    data = DataPaths(tmp_path / "hotspot-demo")
    server = ServerProcess(["serve", "--demo", "--port", "0"], env=env)
    try:
        assert "Demo library installed" in "".join(server.output)
        assert server.get("/healthz").status == 200
    finally:
        assert server.stop() == 0
    progress = json.loads(data.import_progress.read_text())
    assert (progress["state"], progress["library"], progress["version"]) == ("done", "demo", 1)
    stamps = {p: p.stat().st_mtime_ns for p in (data.catalog, data.import_progress,
                                                data.demo_pack_cache)}
    again = ServerProcess(["serve", "--demo", "--port", "0"], env=env)
    try:
        assert "Demo library installed" not in "".join(again.output)
        assert again.get("/healthz").status == 200
    finally:
        assert again.stop() == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_cli_install_demo(paths):
    first = hotspot("--data-dir", str(paths.root), "library", "install-demo")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Demo library installed.\n"
    second = hotspot("--data-dir", str(paths.root), "library", "install-demo")
    assert second.stdout == "Demo library already installed.\n"


def test_package_data_ships_the_demo_source():
    """A non-editable install copies only package-data: it must hold all the demo needs."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["hotspot"]
    needed = ["demo/catalog.csv", "demo/taxonomy.json", "demo/library.json",
              "demo/demo-signing.key", "demo/demo-signing.pub"]
    needed += [f"demo/files/{p.name}" for p in (DEMO_DIR / "files").iterdir()]
    missing = [n for n in needed if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    assert missing == []
