"""The built-in demo library, and the README's first command (`hotspot serve --demo`)."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import LANGS, ServerProcess, needs_tools
from content_pack.csv_catalog import read_source
from content_pack.schema import validate_catalog
from hotspot.library import DEMO_DIR


@pytest.fixture(scope="module")
def demo():
    """The demo catalog as ``content-pack build`` makes it from hotspot/demo/catalog.csv."""
    return read_source(DEMO_DIR, DEMO_DIR / "catalog.csv", version=1).catalog


def test_demo_covers_the_whole_taxonomy(demo):
    validate_catalog(demo)
    resources = demo["resources"]
    assert len(resources) >= 30
    assert demo["library"]["demo"] is True
    # Everything made for the demo says so in its publisher (the spreadsheet has no per-resource
    # "demo" column; the library as a whole is marked); listed real publications (link only)
    # keep their real publisher.
    # Everything made for the demo is marked demo; listed real publications (link only) are not.
    assert all(r.get("demo") is True for r in resources if r.get("files"))
    assert all(not r.get("demo") for r in resources if not r.get("files"))
    assert any(not r.get("files") for r in resources)
    taxonomy = demo["taxonomy"]
    assert {r["type"] for r in resources} == {t["id"] for t in taxonomy["types"]}
    assert {t for r in resources for t in r["themes"]} == {t["id"] for t in taxonomy["themes"]}
    assert {r["strand"] for r in resources} == {s["id"] for s in taxonomy["strands"]}
    assert set(LANGS) <= {lang for r in resources for lang in r["languages"]}
    for group in ("types", "themes", "strands"):
        for entry in taxonomy[group]:
            assert set(LANGS) <= set(entry["label"]), entry["id"]
    # Some resources are deliberately not translated, so fallback is exercised.
    assert any(set(r["title"]) != set(LANGS) for r in resources)


def test_demo_files_are_small_and_real(demo):
    files = [f for r in demo["resources"] for f in r.get("files", [])]
    kinds = {f["media_type"].split("/")[0] for f in files} | {f["media_type"] for f in files}
    assert {"audio", "video", "image", "application/pdf"} <= kinds
    total = sum(path.stat().st_size for path in (DEMO_DIR / "files").iterdir())
    assert total < 5 * 1024 * 1024


@needs_tools("ffprobe", package="ffmpeg")
def test_demo_media_files_decode(demo):
    """The audio and video really play: ffprobe reads a stream of the right kind from each."""
    for resource in demo["resources"]:
        for entry in resource.get("files", []):
            kind = entry["media_type"].split("/")[0]
            if kind not in ("audio", "video"):
                continue
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                 str(DEMO_DIR / "files" / entry["name"])], capture_output=True, text=True)
            assert probe.returncode == 0, probe.stderr
            assert kind in probe.stdout.split(), entry["name"]


def test_readme_demo_command_serves_the_demo(tmp_path):
    server = ServerProcess(["serve", "--demo", "--port", "0"], env={"XDG_DATA_HOME": str(tmp_path)})
    try:
        assert server.url.startswith("http://127.0.0.1:")
        data_dir = tmp_path / "hotspot-demo"
        assert (data_dir / "catalog.json").exists()
        # Installed as a signed pack, through hotspot import's code.
        assert "Demo library installed" in "".join(server.output)
        assert (data_dir / "demo-pack" / "demo-1.hotspot-pack" / "manifest.json.minisig").exists()
        health = server.get("/healthz").text
        assert '"library": "demo-' in health
        home = server.get("/", Accept_Encoding="gzip")
        html = home.text
        assert "Demo library" in html
        css_url = re.search(r'href="(/static/[0-9a-f]+/site\.css)"', html).group(1)
        css = server.get(css_url, Accept_Encoding="gzip")
        # The budget for a phone on a crowded hotspot: home page HTML + CSS, compressed.
        assert len(home.raw) + len(css.raw) <= 14 * 1024
        for lang in LANGS:
            assert server.get("/", Cookie=f"lang={lang}").status == 200
        resource_ids = re.findall(r'href="/r/([a-z0-9-]+)"', server.get("/browse").text)
        assert resource_ids
        for resource_id in resource_ids[:5]:
            page = server.get(f"/r/{resource_id}")
            assert page.status == 200
            for media in re.findall(r'src="(/media/[0-9a-f]{64}/[^"]+)"', page.text):
                assert server.request("HEAD", media.replace("&amp;", "&")).status == 200
    finally:
        assert server.stop() == 0
    # A second start finds the demo installed already and serves it again.
    again = ServerProcess(["serve", "--demo", "--port", "0"], env={"XDG_DATA_HOME": str(tmp_path)})
    try:
        assert "Demo library installed" not in "".join(again.output)
        assert again.get("/").status == 200
    finally:
        assert again.stop() == 0
