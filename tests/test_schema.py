"""The catalog format: the demo validates, each kind of problem is caught, the CLI works."""

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from content_pack import schema
from content_pack.cli import main
from hotspot.errors import CatalogError

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "hotspot" / "demo"
DEMO_FILES = DEMO / "files"

IMAGE = b"\x89PNG fake image bytes"
IMAGE_SHA = hashlib.sha256(IMAGE).hexdigest()


def small_catalog() -> dict:
    """A small valid catalog; tests break one thing in a copy."""
    return {
        "format": 1,
        "library": {"id": "test", "version": 1, "title": {"en": "Test library"}},
        "taxonomy": {
            "types": [{"id": "guides-manuals", "icon": "book", "label": {"en": "Guides"}}],
            "themes": [
                {"id": "patrols", "icon": "walk", "label": {"en": "Patrols"}},
                {"id": "early-warning", "icon": "bell", "label": {"en": "Early warning"}},
            ],
            "strands": [{"id": "what-works", "label": {"en": "What works"},
                         "description": {"en": "Strategies that worked."}}],
        },
        "resources": [
            {
                "id": "radio-basics",
                "title": {"en": "Radio basics", "es": "Radio básica"},
                "summary": {"en": "A summary."},
                "type": "guides-manuals",
                "themes": ["patrols"],
                "strand": "what-works",
                "languages": ["en"],
                "year": 2024,
                "added": "2026-01-31",
                "countries": ["CO"],
                "tags": ["radio"],
                "files": [{"name": "cover.png", "sha256": IMAGE_SHA, "size": len(IMAGE),
                           "media_type": "image/png"}],
                "thumbnail": IMAGE_SHA,
                "demo": True,
            },
            {
                "id": "online-only",
                "title": {"pt": "Só na web"},
                "type": "guides-manuals",
                "themes": ["early-warning"],
                "strand": "what-works",
                "languages": ["pt"],
                "link": "https://example.org/page",
            },
        ],
    }


def problems(data) -> list[str]:
    return list(schema.iter_problems(data))


# --- the demo library -------------------------------------------------------------------
# The demo's source is a publisher's folder (catalog.csv, taxonomy.json, library.json); its
# catalog is what `content-pack build` makes of it.

@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory) -> Path:
    from content_pack.csv_catalog import read_source

    data = read_source(DEMO, DEMO / "catalog.csv", version=1).catalog
    path = tmp_path_factory.mktemp("demo") / "catalog.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_demo_catalog_is_valid(demo_catalog):
    data = schema.load_catalog(demo_catalog)
    assert problems(data) == []
    schema.validate_catalog(data)


def test_demo_files_check_out(demo_catalog):
    data = schema.load_catalog(demo_catalog)
    assert schema.check_files(data, DEMO_FILES) == []


def test_demo_covers_the_taxonomy_and_languages(demo_catalog):
    data = schema.load_catalog(demo_catalog)
    resources = data["resources"]
    assert len(resources) >= 32
    assert {r["type"] for r in resources} == {t["id"] for t in data["taxonomy"]["types"]}
    assert {r["strand"] for r in resources} == {"what-works", "what-is-needed"}
    for theme in data["taxonomy"]["themes"]:
        assert sum(theme["id"] in r["themes"] for r in resources) >= 2, theme["id"]
    for entry in data["taxonomy"]["types"] + data["taxonomy"]["themes"] + data["taxonomy"]["strands"]:
        assert set(entry["label"]) == {"en", "es", "fr", "pt"}
    # Some resources lack a translation, so pages must fall back per field.
    assert any(set(r["title"]) == {"pt"} for r in resources)
    assert any("en" not in r["title"] for r in resources)
    assert all(r.get("demo") is True for r in resources if r.get("files"))
    assert data["library"]["demo"] is True


def test_demo_files_are_small_and_all_listed(demo_catalog):
    data = schema.load_catalog(demo_catalog)
    listed = {f["name"] for r in data["resources"] for f in r.get("files", [])}
    on_disk = {p.name for p in DEMO_FILES.iterdir()}
    assert listed == on_disk
    assert sum(p.stat().st_size for p in DEMO_FILES.iterdir()) < 5 * 1024 * 1024


# --- each kind of problem ---------------------------------------------------------------

def test_small_catalog_is_valid():
    assert problems(small_catalog()) == []


def broken(change) -> list[str]:
    data = copy.deepcopy(small_catalog())
    change(data)
    return problems(data)


def first_resource(data) -> dict:
    return data["resources"][0]


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.pop("format"), "catalog: missing required key 'format'"),
    (lambda d: d.update(format=2), "format is 2"),
    (lambda d: d.update(extra=1), "catalog: unknown key 'extra'"),
    (lambda d: d["library"].update(version=0), "library.version must be a whole number"),
    (lambda d: d["library"].update(titel={}), "library: unknown key 'titel'"),
    (lambda d: d["library"].update(title={}), "library.title needs at least one language"),
    (lambda d: first_resource(d).update(titel={"en": "x"}),
     "resources[0] (id 'radio-basics'): unknown key 'titel'"),
    (lambda d: first_resource(d).pop("title"),
     "resources[0] (id 'radio-basics'): missing required key 'title'"),
    (lambda d: first_resource(d).update(title={}),
     "resources[0] (id 'radio-basics'): title needs at least one language"),
    (lambda d: first_resource(d).update(title="Radio"),
     "resources[0] (id 'radio-basics'): title must be an object of language code to text, not a string"),
    (lambda d: first_resource(d).update(title={"english": "Radio"}),
     "key 'english' is not a language code"),
    (lambda d: first_resource(d).update(summary={"en": 5}),
     "summary['en'] must be a string, not an integer"),
    (lambda d: first_resource(d).update(summary={"en": "x" * 1001}),
     "summary['en'] is 1001 characters long; the limit is 1000"),
    (lambda d: first_resource(d).update(id="Radio Basics"), "is not a valid id"),
    (lambda d: first_resource(d).update(type="video"),
     "resources[0] (id 'radio-basics'): type 'video' is not in taxonomy.types"),
    (lambda d: first_resource(d).update(strand="maybe"), "strand 'maybe' is not in taxonomy.strands"),
    (lambda d: first_resource(d).update(themes=["fishing"]), "theme 'fishing' is not in taxonomy.themes"),
    (lambda d: first_resource(d).update(themes=[]), "themes must not be empty"),
    (lambda d: first_resource(d).update(themes=["patrols", "patrols"]), "themes lists 'patrols' more than once"),
    (lambda d: first_resource(d).update(languages=[]), "languages must not be empty"),
    (lambda d: first_resource(d).update(languages=["EN"]), "languages[0] 'EN' is not a language code"),
    (lambda d: first_resource(d).update(countries=["co"]), "countries[0] 'co' is not an ISO 3166-1"),
    (lambda d: first_resource(d).update(year=1850), "year must be a whole number from 1900 to 2100"),
    (lambda d: first_resource(d).update(year=True), "year must be a whole number"),
    (lambda d: first_resource(d).update(added="2026-02-30"), "added must be a date written YYYY-MM-DD"),
    (lambda d: first_resource(d).update(added="31/01/2026"), "added must be a date written YYYY-MM-DD"),
    (lambda d: first_resource(d).update(tags=["t"] * 31), "tags has 31 entries; the limit is 30"),
    (lambda d: first_resource(d).update(tags=["x" * 61]), "tags[0] is 61 characters long; the limit is 60"),
    (lambda d: first_resource(d).update(region="r" * 101), "region is 101 characters long"),
    (lambda d: first_resource(d).update(publisher=""), "publisher must not be empty"),
    (lambda d: first_resource(d).update(demo="yes"), "demo must be true or false"),
    (lambda d: first_resource(d).update(link="ftp://example.org/x"), "is not an http:// or https:// address"),
    (lambda d: first_resource(d).update(link="javascript:alert(1)"), "is not an http:// or https:// address"),
    (lambda d: first_resource(d).update(link="https://e.org/" + "a" * 2000), "the limit is 2000"),
    (lambda d: d["resources"][1].pop("link"),
     "resources[1] (id 'online-only'): has no files, so it needs a link to the original"),
    (lambda d: d["resources"][1].update(id="radio-basics"),
     "resources[1] (id 'radio-basics'): id is already used by resources[0]"),
    (lambda d: first_resource(d).update(files={}), "files must be a list, not an object"),
    (lambda d: first_resource(d)["files"][0].update(name="../etc/passwd"), "is not a plain file name"),
    (lambda d: first_resource(d)["files"][0].update(name=".."), "is not a plain file name"),
    (lambda d: first_resource(d)["files"][0].update(name="a\\b.png"), "is not a plain file name"),
    (lambda d: first_resource(d)["files"][0].update(name="a\x00b.png"), "is not a plain file name"),
    (lambda d: first_resource(d)["files"][0].update(name="n" * 201), "the limit is 200"),
    (lambda d: first_resource(d)["files"][0].update(sha256="ABC"), "sha256 must be 64 lowercase hexadecimal"),
    (lambda d: first_resource(d)["files"][0].update(size=-1), "size must be a whole number of bytes"),
    (lambda d: first_resource(d)["files"][0].update(size=9 * 1024**3), "size must be a whole number of bytes"),
    (lambda d: first_resource(d)["files"][0].update(media_type="model/gltf"), "is not a media type"),
    (lambda d: first_resource(d)["files"][0].update(media_type="pdf"), "is not a media type"),
    (lambda d: first_resource(d)["files"][0].update(duration=5), "duration is only for audio and video"),
    (lambda d: first_resource(d)["files"][0].update(language="english"), "language 'english' is not a language code"),
    (lambda d: first_resource(d)["files"][0].update(size_bytes=1), "files[0]: unknown key 'size_bytes'"),
    (lambda d: first_resource(d)["files"][0].pop("sha256"), "files[0]: missing required key 'sha256'"),
    (lambda d: first_resource(d)["files"].append(dict(first_resource(d)["files"][0])),
     "file name 'cover.png' is used twice"),
    (lambda d: first_resource(d).update(files=[{"name": "f", "sha256": "0" * 64, "size": 1,
                                                "media_type": "image/png"}] * 51),
     "files has 51 entries; the limit is 50"),
    (lambda d: first_resource(d).update(thumbnail="f" * 64), "is not the sha256 of one of its files"),
    (lambda d: first_resource(d)["files"][0].update(media_type="application/pdf"),
     "is not an image"),
    (lambda d: d["taxonomy"]["types"][0].update(icon="rocket"), "icon 'rocket' is not one of"),
    (lambda d: d["taxonomy"]["types"][0].pop("icon"), "taxonomy.types[0] (id 'guides-manuals'): missing required key 'icon'"),
    (lambda d: d["taxonomy"]["themes"].append(dict(d["taxonomy"]["themes"][0])),
     "id 'patrols' is used twice in taxonomy.themes"),
    (lambda d: d["taxonomy"]["themes"][0].update(label={"en": "x" * 81}), "the limit is 80"),
    (lambda d: d["taxonomy"].update(topics=[]), "taxonomy: unknown key 'topics'"),
    (lambda d: d["taxonomy"].pop("strands"), "taxonomy: missing required key 'strands'"),
    (lambda d: d["taxonomy"].update(types=[{"id": f"t{i}", "icon": "book", "label": {"en": "T"}}
                                           for i in range(41)]),
     "taxonomy.types has 41 entries; the limit is 40"),
    (lambda d: d.update(resources={}), "resources must be a list, not an object"),
    (lambda d: d["resources"].append("radio"), "resources[2] must be an object, not a string"),
])
def test_each_problem_is_caught(change, expected):
    found = broken(change)
    assert any(expected in p for p in found), found


def test_catalog_must_be_an_object():
    assert problems([]) == ["the catalog must be a JSON object, not a list"]


def test_too_many_resources(monkeypatch):
    monkeypatch.setattr(schema, "MAX_RESOURCES", 2)
    found = broken(lambda d: d["resources"].append(copy.deepcopy(d["resources"][1])))
    assert found == ["resources has 3 entries; the limit is 2"]


def test_total_text_is_bounded(monkeypatch):
    monkeypatch.setattr(schema, "MAX_TOTAL_TEXT", 100)
    found = broken(lambda d: first_resource(d).update(description={"en": "x" * 200}))
    assert any("characters of text; the limit is 100" in p for p in found), found


def test_validate_catalog_lists_the_first_20_problems():
    data = small_catalog()
    data["resources"] = [dict(data["resources"][1], id=f"r{i}", type="nope") for i in range(25)]
    with pytest.raises(CatalogError) as info:
        schema.validate_catalog(data)
    message = info.value.message
    assert message.startswith("The catalog has 25 problems:")
    assert message.count("\n- ") == 20
    assert message.endswith("... and 5 more problems")
    assert info.value.exit_code == 2


# --- check_files ------------------------------------------------------------------------

def test_check_files_by_name_or_sha(tmp_path):
    data = small_catalog()
    (tmp_path / "cover.png").write_bytes(IMAGE)
    assert schema.check_files(data, tmp_path) == []
    (tmp_path / "cover.png").unlink()
    (tmp_path / IMAGE_SHA).write_bytes(IMAGE)
    assert schema.check_files(data, tmp_path) == []


def test_check_files_reports_missing_wrong_size_and_wrong_hash(tmp_path):
    data = small_catalog()
    [missing] = schema.check_files(data, tmp_path)
    assert "resources[0] (id 'radio-basics'): files[0] 'cover.png': no file named 'cover.png'" in missing
    (tmp_path / "cover.png").write_bytes(IMAGE + b"!")
    [wrong_size] = schema.check_files(data, tmp_path)
    assert f"is {len(IMAGE) + 1} bytes; the catalog says {len(IMAGE)}" in wrong_size
    (tmp_path / "cover.png").write_bytes(b"X" * len(IMAGE))
    [wrong_hash] = schema.check_files(data, tmp_path)
    assert "the sha256 of cover.png is" in wrong_hash


def test_check_files_needs_a_directory(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        schema.check_files(small_catalog(), tmp_path / "nope")


# --- load_catalog -----------------------------------------------------------------------

def test_load_catalog_reports_line_and_column(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n  "format": 1,\n  "library": }\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="line 3, column 14"):
        schema.load_catalog(path)


@pytest.mark.parametrize("content, expected", [
    (b'{"a": 1, "a": 2}', "appears twice"),
    (b'{"a": NaN}', "NaN is not allowed"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b"[1, 2]", "must hold a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_load_catalog_rejects_bad_input(tmp_path, content, expected):
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(CatalogError, match=expected):
        schema.load_catalog(path)


def test_load_catalog_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(schema, "MAX_CATALOG_BYTES", 10)
    path = tmp_path / "c.json"
    path.write_text('{"format": 1}', encoding="utf-8")
    with pytest.raises(CatalogError, match="larger than"):
        schema.load_catalog(path)


def test_load_catalog_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="No catalog file"):
        schema.load_catalog(tmp_path / "none.json")


# --- the CLI ----------------------------------------------------------------------------

def test_cli_check_demo(demo_catalog, capsys):
    assert main(["check", str(demo_catalog), "--files", str(DEMO_FILES)]) == 0
    data = json.loads(demo_catalog.read_text(encoding="utf-8"))
    n_files = sum(len(r.get("files", [])) for r in data["resources"])
    assert capsys.readouterr().out == f"OK: {len(data['resources'])} resources, {n_files} files\n"


def test_cli_check_reports_problems(tmp_path, capsys):
    data = small_catalog()
    data["resources"][0]["type"] = "video"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr()
    assert "resources[0] (id 'radio-basics'): type 'video' is not in taxonomy.types" in out.out
    assert "1 problem found" in out.err


def test_cli_check_missing_files(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(small_catalog()), encoding="utf-8")
    assert main(["check", str(path), "--files", str(tmp_path)]) == 2
    assert "no file named 'cover.png'" in capsys.readouterr().out


def test_cli_bad_json_is_a_message_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text("{oops", encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("content-pack: error:") and "line 1, column 2" in err
    assert "Traceback" not in err


def test_cli_usage_errors(capsys):
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    assert "check" in capsys.readouterr().out


def test_cli_as_a_real_process(demo_catalog):
    result = subprocess.run(
        [sys.executable, "-m", "content_pack.cli", "check", str(demo_catalog), "--files", str(DEMO_FILES)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")
    result = subprocess.run(
        [sys.executable, "-m", "content_pack.cli", "check", str(ROOT / "no-such.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "No catalog file" in result.stderr and "Traceback" not in result.stderr


def test_every_key_is_documented():
    doc = (ROOT / "docs" / "catalog-format.md").read_text(encoding="utf-8")
    keys = (schema.TOP_KEYS | schema.LIBRARY_KEYS | schema.TAXONOMY_ENTRY_KEYS | schema.RESOURCE_KEYS
            | schema.FILE_KEYS | set(schema.TAXONOMY_LISTS) | schema.ICONS)
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert missing == []


def test_documented_example_is_valid():
    doc = (ROOT / "docs" / "catalog-format.md").read_text(encoding="utf-8")
    example = doc.split("## Example")[1].split("```json")[1].split("```")[0]
    assert problems(json.loads(example)) == []
