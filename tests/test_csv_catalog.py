"""The publisher's spreadsheet: every problem by row and column, all at once; paths; media types."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from content_pack.csv_catalog import CsvCatalogError, media_type_of, read_source

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example-pack"

HEADER = "id,type,themes,strand,languages,title_en,title_es,files,thumbnail,link"


def make_source(tmp_path: Path, rows: list[str], *, header: str = HEADER,
                encoding: str = "utf-8") -> Path:
    """A source folder with the example's taxonomy and library, a few files and a CSV."""
    src = tmp_path / "src"
    (src / "files").mkdir(parents=True)
    shutil.copy(EXAMPLE / "taxonomy.json", src / "taxonomy.json")
    shutil.copy(EXAMPLE / "library.json", src / "library.json")
    (src / "files" / "guide.pdf").write_bytes(b"%PDF-1.4 a guide\n")
    (src / "files" / "cover.png").write_bytes(b"\x89PNG\r\n\x1a\n a cover")
    (src / "files" / "notes.txt").write_text("notes\n")
    (src / "catalog.csv").write_text("\n".join([header, *rows]) + "\n", encoding=encoding)
    return src


def read(src: Path, version: int = 1):
    return read_source(src, src / "catalog.csv", version=version)


def problems_of(src: Path) -> list[str]:
    with pytest.raises(CsvCatalogError) as info:
        read(src)
    return info.value.problems


GOOD = ("guide,guides-manuals,patrols;early-warning,what-works,es;pt,Guide,Guía,"
        "files/guide.pdf|es;files/cover.png,files/cover.png,")


def test_a_good_row_becomes_a_valid_catalog(tmp_path):
    source = read(make_source(tmp_path, [GOOD]), version=4)
    catalog = source.catalog
    assert catalog["library"]["id"] == "river-alliance"
    assert catalog["library"]["version"] == 4
    [res] = catalog["resources"]
    assert res["themes"] == ["patrols", "early-warning"]
    assert res["languages"] == ["es", "pt"]
    assert res["title"] == {"en": "Guide", "es": "Guía"}
    pdf, png = res["files"]
    assert pdf["name"] == "guide.pdf" and pdf["language"] == "es"
    assert pdf["media_type"] == "application/pdf"
    assert pdf["sha256"] == hashlib.sha256(b"%PDF-1.4 a guide\n").hexdigest()
    assert res["thumbnail"] == png["sha256"]
    assert set(source.files) == {pdf["sha256"], png["sha256"]}
    assert source.publisher == "River alliance library team"


def test_bom_and_semicolons_and_quoted_cells(tmp_path):
    header = HEADER.replace(",", ";")
    row = ('guide;guides-manuals;"patrols;early-warning";what-works;es;"Guide, with comma";'
           '"Guía ""dos""";files/guide.pdf;;')
    src = make_source(tmp_path, [row], header=header, encoding="utf-8-sig")
    assert (src / "catalog.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    [res] = read(src).catalog["resources"]
    assert res["themes"] == ["patrols", "early-warning"]
    assert res["title"] == {"en": "Guide, with comma", "es": 'Guía "dos"'}


def test_all_problems_are_reported_with_row_and_column(tmp_path):
    rows = [
        GOOD,
        "Bad Id,videos,patrols,what-works,en,T,,files/guide.pdf,,",
        "other,guides-manuals,sailing;patrols,maybe,english,T,,,,",
        "guide,guides-manuals,patrols,what-works,en,,,files/guide.pdf,files/guide.pdf,",
    ]
    problems = problems_of(make_source(tmp_path, rows))
    text = "\n".join(problems)
    assert "catalog.csv row 3, column 'id': 'Bad Id' is not a valid id" in text
    assert ("catalog.csv row 3, column 'type': 'videos' is not a type; known types: "
            "audio-visual, capacity-training") in text
    assert "catalog.csv row 4, column 'themes': 'sailing' is not a theme" in text
    assert "catalog.csv row 4, column 'strand': 'maybe' is not a strand" in text
    assert "catalog.csv row 4, column 'languages': 'english' is not a language code" in text
    assert "catalog.csv row 4, column 'files': is empty and there is no link" in text
    assert "catalog.csv row 5, column 'id': 'guide' is already used on row 2" in text
    assert "catalog.csv row 5, column 'title_<lang>'" in text
    assert "catalog.csv row 5, column 'thumbnail': 'files/guide.pdf' is not an image" in text
    assert len(problems) == 9


def test_other_cell_problems(tmp_path):
    header = HEADER + ",year,added,countries,summary_fr"
    row = ("g,guides-manuals,patrols,what-works,en,T,,files/notes.txt|95,files/cover.png,"
           "ftp://x,20x4,31/01/2026,Brazil," + "x" * 1001)
    text = "\n".join(problems_of(make_source(tmp_path, [row], header=header)))
    for fragment in ("column 'year': '20x4' is not a year",
                     "column 'added': '31/01/2026' is not a date written YYYY-MM-DD",
                     "column 'countries': 'Brazil' is not a country code",
                     "column 'summary_fr': is 1001 characters long; the limit is 1000",
                     "column 'link': 'ftp://x' is not a web address",
                     "a duration is only for audio and video",
                     "column 'thumbnail': 'files/cover.png' is not one of the files"):
        assert fragment in text


def test_header_problems(tmp_path):
    header = "id,Type,themes,strand,titel_en,# notes"
    text = "\n".join(problems_of(make_source(tmp_path, ["a,b,c,d,e,f"], header=header)))
    assert "row 1: unknown column 'Type' (did you mean 'type'?)" in text
    assert "row 1: unknown column 'titel_en'" in text
    assert "row 1: missing columns type, languages, title_<lang>" in text
    assert "# notes" not in text  # note columns are for people, and ignored


@pytest.mark.parametrize("path, reason", [
    ("../outside.pdf", "goes outside the source folder"),
    ("files/../../outside.pdf", "goes outside the source folder"),
    ("/etc/passwd", "is not relative to the source folder"),
    ("C:/docs/guide.pdf", "is not relative to the source folder"),
    ("files/missing.pdf", "does not exist in the source folder"),
    ("files", "is not a regular file"),
    ("files/link.pdf", "is a symbolic link"),
    ("linked/guide.pdf", "is a symbolic link (linked)"),
])
def test_bad_paths_are_refused(tmp_path, path, reason):
    (tmp_path / "outside.pdf").write_bytes(b"%PDF-1.4 outside\n")
    src = make_source(tmp_path, [f"g,guides-manuals,patrols,what-works,en,T,,{path},,"])
    os.symlink(tmp_path / "outside.pdf", src / "files" / "link.pdf")
    os.symlink(src / "files", src / "linked")
    [problem] = problems_of(src)
    assert problem.startswith("catalog.csv row 2, column 'files': ")
    assert reason in problem


def test_backslashes_and_durations(tmp_path):
    src = make_source(tmp_path, ["g,audio-visual,patrols,what-works,es,T,,files\\talk.mp3|es|1:35,,"])
    (src / "files" / "talk.mp3").write_bytes(b"ID3\x04\x00 some audio")
    [res] = read(src).catalog["resources"]
    assert res["files"] == [{"name": "talk.mp3", "language": "es", "duration": 95,
                             "sha256": hashlib.sha256(b"ID3\x04\x00 some audio").hexdigest(),
                             "size": 16, "media_type": "audio/mpeg"}]


def test_missing_taxonomy_and_bad_library(tmp_path):
    src = make_source(tmp_path, [GOOD])
    (src / "taxonomy.json").unlink()
    (src / "library.json").write_text(json.dumps({"id": "x", "version": 3, "title": {"en": "X"}}))
    text = "\n".join(problems_of(src))
    assert "taxonomy.json is missing from the source folder" in text
    assert "library.json: unknown key 'version'" in text


def test_library_overrides_replace_library_json(tmp_path):
    src = make_source(tmp_path, [GOOD])
    (src / "library.json").unlink()
    source = read_source(src, src / "catalog.csv", version=1,
                         library={"id": "other", "title": {"fr": "Autre"}})
    assert source.catalog["library"] == {"id": "other", "title": {"fr": "Autre"}, "version": 1}


def test_not_utf8_is_explained(tmp_path):
    src = make_source(tmp_path, [GOOD.replace("Guía", "Gu\xeda")], encoding="latin-1")
    [problem] = problems_of(src)
    assert "not UTF-8" in problem and "line 2" in problem and "CSV UTF-8" in problem


def test_media_types_from_content_then_extension(tmp_path):
    docx = tmp_path / "letter.docx"
    with zipfile.ZipFile(docx, "w") as z:
        z.writestr("[Content_Types].xml", "<x/>")
        z.writestr("word/document.xml", "<x/>")
    odt = tmp_path / "letter.bin"
    with zipfile.ZipFile(odt, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
    cases = {
        (tmp_path / "a.jpg", b"\x89PNG\r\n\x1a\n"): "image/png",  # content wins
        (tmp_path / "a", b"\xff\xd8\xff\xe0"): "image/jpeg",
        (tmp_path / "a", b"GIF89a"): "image/gif",
        (tmp_path / "a", b"RIFF\0\0\0\0WEBPVP8 "): "image/webp",
        (tmp_path / "a", b"RIFF\0\0\0\0WAVEfmt "): "audio/wav",
        (tmp_path / "a", b"\xff\xfb\x90\x00"): "audio/mpeg",
        (tmp_path / "a", b"\0\0\0\x20ftypM4A \0"): "audio/mp4",
        (tmp_path / "a", b"\0\0\0\x20ftypisom\0"): "video/mp4",
        (tmp_path / "a", b"OggS\0\x02" + b"\0" * 22 + b"\x01vorbis"): "audio/ogg",
        (tmp_path / "a", b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm"): "video/webm",
        (tmp_path / "a.txt", b"hello"): "text/plain",
        (tmp_path / "a.md", b"# hello"): "text/plain",
        (tmp_path / "a.csv", b"a,b"): "text/csv",
        (tmp_path / "a.gpx", b"<?xml"): "application/gpx+xml",
        (tmp_path / "a.unknownext", b"??"): "application/octet-stream",
    }
    for (path, head), expected in cases.items():
        assert media_type_of(path, head) == expected, (path, head)
    assert media_type_of(docx, docx.read_bytes()[:512]).endswith("wordprocessingml.document")
    assert media_type_of(odt, odt.read_bytes()[:512]) == "application/vnd.oasis.opendocument.text"


def test_the_example_folder_reads_cleanly():
    source = read_source(EXAMPLE, EXAMPLE / "catalog.csv", version=1)
    assert len(source.catalog["resources"]) == 4
    assert len(source.files) == 4


def test_demo_column_marks_demo_content(tmp_path):
    header = HEADER + ",demo"
    source = read(make_source(tmp_path, [GOOD + ",yes"], header=header))
    assert source.catalog["resources"][0]["demo"] is True
    plain = read(make_source(tmp_path / "b", [GOOD + ","], header=header))
    assert "demo" not in plain.catalog["resources"][0]
    problems = problems_of(make_source(tmp_path / "c", [GOOD + ",maybe"], header=header))
    assert any("column 'demo'" in p and "'maybe'" in p for p in problems), problems
