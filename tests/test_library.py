"""Installing a library into the data directory, and the catalog built from it."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from conftest import make_test_catalog
from hotspot.catalog import Filters, load_catalog, localize
from hotspot.errors import BadRequest, CatalogError, NotFound
from hotspot.library import DataPaths, install_catalog, install_demo, installed_hash
from hotspot.media import MediaStore


@pytest.fixture
def library(tmp_path):
    files = tmp_path / "files"
    data = make_test_catalog(files, extra=5)
    paths = DataPaths(tmp_path / "data")
    install_catalog(paths, data, files)
    return paths, data, files


def test_install_stores_files_and_catalog(library):
    paths, data, _ = library
    media = MediaStore(paths.media)
    for resource in data["resources"]:
        for entry in resource["files"]:
            assert media.has(entry["sha256"])
    catalog = load_catalog(paths.catalog)
    assert len(catalog.resources) == 8
    assert catalog.get("radio-basics").files[1].duration == 130
    assert catalog.version.startswith("test-1-")


def test_bad_catalog_changes_nothing(library):
    paths, data, files = library
    before = paths.catalog.read_bytes()
    broken = copy.deepcopy(data)
    broken["resources"][0]["type"] = "not-a-type"
    with pytest.raises(CatalogError, match="not-a-type"):
        install_catalog(paths, broken, files)
    assert paths.catalog.read_bytes() == before


def test_tampered_file_changes_nothing(library, tmp_path):
    paths, data, files = library
    before = paths.catalog.read_bytes()
    newer = copy.deepcopy(data)
    newer["library"]["version"] = 2
    (files / "new.pdf").write_bytes(b"real content")
    newer["resources"][2]["files"] = [{"name": "new.pdf", "sha256": "ab" * 32, "size": 12,
                                       "media_type": "application/pdf"}]
    with pytest.raises(CatalogError, match="File 'new.pdf' .* does not match the catalog"):
        install_catalog(paths, newer, files)
    assert paths.catalog.read_bytes() == before
    assert not MediaStore(paths.media).has("ab" * 32)


def test_missing_file_is_named(library, tmp_path):
    paths, data, _ = library
    newer = copy.deepcopy(data)
    newer["resources"][2]["files"] = [{"name": "gone.pdf", "sha256": "cd" * 32, "size": 3,
                                       "media_type": "application/pdf"}]
    with pytest.raises(CatalogError, match="gone.pdf"):
        install_catalog(paths, newer, tmp_path / "empty")


def test_catalog_filters_and_pages(library):
    paths, _, _ = library
    catalog = load_catalog(paths.catalog)
    page = catalog.browse(Filters(theme="patrols"), 1, 3)
    assert page.total == 3 + 1 and page.pages == 2 and len(page.items) == 3
    with pytest.raises(NotFound):
        catalog.browse(Filters(), 5, 20)
    with pytest.raises(BadRequest):
        catalog.parse_filters({"strand": "nope"})
    assert catalog.parse_filters({"type": "templates", "other": "x"}) == Filters(type="templates")
    assert [r.id for r in catalog.search("modelo numero 3", Filters(), 1, 20).items][0] == "generated-003"


def test_localize_falls_back_field_by_field():
    assert localize({"fr": "Bonjour", "en": "Hello"}, "fr") == ("Bonjour", "fr")
    assert localize({"fr": "Bonjour", "en": "Hello"}, "pt") == ("Hello", "en")
    assert localize({"pt": "Olá"}, "es") == ("Olá", "pt")
    assert localize({"qu": "Napaykullayki"}, "es") == ("Napaykullayki", "qu")
    assert localize({}, "es") == ("", "es")


def test_demo_install_is_idempotent(tmp_path):
    paths = DataPaths(tmp_path / "demo")
    assert install_demo(paths) is True
    digest = installed_hash(paths)
    assert install_demo(paths) is False
    assert installed_hash(paths) == digest


def test_cli_library_commands(tmp_path):
    files = tmp_path / "files"
    data = make_test_catalog(files, extra=0)
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(data))
    data_dir = tmp_path / "data"
    base = [sys.executable, "-m", "hotspot.cli", "--data-dir", str(data_dir), "library"]
    done = subprocess.run(base + ["install", str(catalog_file), "--files", str(files)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Installed library 'test' version 1 (3 resources" in done.stdout
    info = subprocess.run(base + ["info"], capture_output=True, text=True)
    assert json.loads(info.stdout)["resources"] == 3
    catalog_file.write_text("{not json")
    bad = subprocess.run(base + ["install", str(catalog_file)], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.startswith("hotspot:")
