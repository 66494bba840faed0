"""content_pack.reader: opening folder and tar packs, refusing every structure the format
forbids, and checking the signature before anything else.

Packs are real: real files, real minisign signatures (``content_pack.signing``), hostile tars
written with ``tarfile`` by hand. ``write_pack`` and ``to_tar`` are shared with
``test_packs.py`` and ``test_packs_root.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import make_test_catalog
from content_pack.manifest import FileRecord, Manifest
from content_pack.reader import open_pack, verify_pack
from content_pack.signing import PublicKey, SecretKey, sign_bytes
from hotspot.errors import PackError, SignatureError

CREATED = "2026-11-24T06:00:00Z"


# -- helpers shared with test_packs.py ----------------------------------------------------------


def new_key() -> tuple[SecretKey, PublicKey]:
    secret = SecretKey.generate()
    return secret, secret.public_key()


def catalog_files(catalog: dict) -> dict[str, dict]:
    """sha256 -> first catalog file entry naming it."""
    found: dict[str, dict] = {}
    for resource in catalog["resources"]:
        for entry in resource.get("files", ()):
            found.setdefault(entry["sha256"], entry)
    return found


def write_pack(out_dir: Path, catalog: dict, files_dir: Path, secret: SecretKey, *,
               kind: str = "full", base_version: int | None = None, removed=(),
               only: set[str] | None = None, order: list[str] | None = None) -> Path:
    """A pack folder for ``catalog``, its files taken by name from ``files_dir``.

    For a delta, ``catalog["resources"]`` holds only added or changed records and ``only``
    the sha256 of the files the base lacks. ``order`` fixes the order of ``files``.
    """
    entries = catalog_files(catalog)
    shas = [sha for sha in entries if only is None or sha in only]
    if order is not None:
        shas = sorted(shas, key=order.index)
    manifest = Manifest(library=catalog["library"]["id"], version=catalog["library"]["version"],
                        created=CREATED, publisher="Test publisher", kind=kind,
                        base_version=base_version, catalog=catalog, removed=tuple(removed),
                        files=tuple(FileRecord(sha, entries[sha]["size"],
                                               entries[sha]["media_type"]) for sha in shas))
    pack = out_dir / manifest.pack_name()
    (pack / "files").mkdir(parents=True)
    data = manifest.to_bytes()
    (pack / "manifest.json").write_bytes(data)
    (pack / "manifest.json.minisig").write_text(
        sign_bytes(data, secret, trusted_comment=manifest.trusted_comment()))
    for sha in shas:
        shutil.copyfile(files_dir / entries[sha]["name"], pack / "files" / sha)
    return pack


def to_tar(pack: Path, *, extra=()) -> Path:
    """The pack folder as an uncompressed tar; ``extra`` = (TarInfo, bytes | None) appended."""
    target = pack.with_name(pack.name + ".tar")
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(pack, arcname=pack.name)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return target


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def keys():
    return new_key()


@pytest.fixture
def pack(tmp_path, keys):
    files = tmp_path / "files"
    catalog = make_test_catalog(files, extra=0)
    return write_pack(tmp_path / "out", catalog, files, keys[0])


def member(name: str, kind=tarfile.REGTYPE, data: bytes | None = b"x", **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if (data is not None and kind in (tarfile.REGTYPE,)) else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, (data if info.size else None)


# -- opening good packs -------------------------------------------------------------------------


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_good_pack_verifies_and_streams(pack, keys, as_tar):
    path = to_tar(pack) if as_tar else pack
    with verify_pack(path, [keys[1]]) as verified:
        assert verified.manifest.library == "test" and verified.manifest.version == 1
        assert verified.trusted_comment == "library:test version:1 kind:full"
        assert verified.key == keys[1]
        names = verified.pack.file_names()
        assert names == {p.name for p in (pack / "files").iterdir()}
        for sha in names:
            with verified.pack.open_file(sha) as f:
                assert hashlib.sha256(f.read()).hexdigest() == sha


def test_pack_that_is_neither_folder_nor_tar(tmp_path):
    with pytest.raises(PackError, match="There is no pack at"):
        open_pack(tmp_path / "nothing")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(PackError, match="neither a pack folder nor a pack tar"):
        open_pack(tmp_path / "fifo")
    (tmp_path / "junk.tar").write_bytes(b"hello" * 300)
    with pytest.raises(PackError, match="not an uncompressed tar"):
        open_pack(tmp_path / "junk.tar")


def test_compressed_tar_is_refused(pack):
    target = pack.with_name("p.tar.gz")
    with tarfile.open(target, "w:gz") as tar:
        tar.add(pack, arcname=pack.name)
    with pytest.raises(PackError, match="not an uncompressed tar"):
        open_pack(target)


# -- folder refusals ----------------------------------------------------------------------------


def test_folder_symlink_is_refused(pack, tmp_path):
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", pack / "files" / ("a" * 64))
    with pytest.raises(PackError, match=f"files/{'a' * 64} is a symbolic link"):
        open_pack(pack)


def test_folder_symlinked_files_dir_is_refused(pack, tmp_path):
    shutil.move(pack / "files", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", pack / "files")
    with pytest.raises(PackError, match="files is a symbolic link"):
        open_pack(pack)


def test_folder_hard_link_is_refused(pack, tmp_path):
    victim = next((pack / "files").iterdir())
    os.link(victim, tmp_path / "other-name")
    with pytest.raises(PackError, match=f"files/{victim.name} is a hard link"):
        open_pack(pack)


def test_folder_fifo_and_socket_are_refused(pack, monkeypatch):
    fifo = pack / "files" / ("b" * 64)
    os.mkfifo(fifo)
    with pytest.raises(PackError, match=f"files/{'b' * 64} is a FIFO"):
        open_pack(pack)
    fifo.unlink()
    sock = socket.socket(socket.AF_UNIX)
    try:
        monkeypatch.chdir(pack / "files")  # a socket's path must be short: bind relative
        sock.bind("c" * 64)
        with pytest.raises(PackError, match=f"files/{'c' * 64} is a socket"):
            open_pack(pack)
    finally:
        sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a device file needs root")
def test_folder_device_file_is_refused(pack):
    os.mknod(pack / "files" / ("d" * 64), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    with pytest.raises(PackError, match=f"files/{'d' * 64} is a device file"):
        open_pack(pack)


def test_folder_extra_entries_are_refused(pack):
    (pack / "README.txt").write_text("hi")
    with pytest.raises(PackError, match="unexpected entry 'README.txt'"):
        open_pack(pack)
    (pack / "README.txt").unlink()
    (pack / "files" / "notes.txt").write_text("hi")
    with pytest.raises(PackError, match="unexpected file 'files/notes.txt'"):
        open_pack(pack)
    (pack / "files" / "notes.txt").unlink()
    (pack / "files" / ("E" * 64)).write_text("uppercase hex is not a pack name")
    with pytest.raises(PackError, match=f"unexpected file 'files/{'E' * 64}'"):
        open_pack(pack)
    (pack / "files" / ("E" * 64)).unlink()
    (pack / "files" / "sub").mkdir()
    with pytest.raises(PackError, match="files/sub is a folder"):
        open_pack(pack)


def test_folder_missing_signature_is_refused(pack):
    (pack / "manifest.json.minisig").unlink()
    with pytest.raises(PackError, match="manifest.json.minisig is missing"):
        open_pack(pack)


# -- tar refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (member("P/files/" + "a" * 64, tarfile.SYMTYPE, None, linkname="/etc/passwd"),
     "is a symbolic link"),
    (member("P/files/" + "a" * 64, tarfile.LNKTYPE, None, linkname="P/manifest.json"),
     "is a hard link"),
    (member("P/files/" + "a" * 64, tarfile.CHRTYPE, None, devmajor=1, devminor=3),
     "is a device file"),
    (member("P/files/" + "a" * 64, tarfile.BLKTYPE, None, devmajor=7, devminor=0),
     "is a device file"),
    (member("P/files/" + "a" * 64, tarfile.FIFOTYPE, None), r"is a FIFO"),
    (member("P/files/../../x"), r"contains '\.\.'"),
    (member("../x"), r"contains '\.\.'"),
    (member("/etc/cron.d/x"), "has an absolute name"),
    (member("Other/manifest.json"), "is outside the pack folder"),
    (member("P/manifest.json"), "appears twice"),
    (member("P/notes.txt"), "unexpected file 'P/notes.txt'"),
    (member("P/files/sub/" + "a" * 64), "unexpected file"),
    (member("P/files/" + "a" * 63), "unexpected file"),
    (member("P/extra", tarfile.DIRTYPE, None), "unexpected folder 'P/extra'"),
    (member("P/files/" + "a" * 64, tarfile.CONTTYPE, None), "contiguous file"),
    (member("P/files/" + "a" * 64, tarfile.GNUTYPE_SPARSE, None), "is a sparse file"),
], ids=["symlink", "hardlink", "chardev", "blockdev", "fifo", "dotdot-inside", "dotdot",
        "absolute", "two-top-level", "duplicate", "extra-file", "nested-file", "bad-name",
        "extra-folder", "contiguous", "sparse"])
def test_hostile_tar_is_refused(tmp_path, keys, extra, message):
    files = tmp_path / "files"
    catalog = make_test_catalog(files, extra=0)
    pack = write_pack(tmp_path / "out", catalog, files, keys[0])
    pack = pack.rename(pack.with_name("P"))
    tar = to_tar(pack, extra=[extra])
    with pytest.raises(PackError, match=message) as refused:
        open_pack(tar)
    assert str(tar) in refused.value.message


def test_tar_pax_sparse_member_is_refused(pack):
    info = tarfile.TarInfo(f"{pack.name}/files/" + "f" * 64)
    info.size = 1
    info.pax_headers = {"GNU.sparse.size": "1000000", "GNU.sparse.map": "0,1"}  # format 0.1
    tar = to_tar(pack, extra=[(info, b"x")])
    with pytest.raises(PackError, match="is a sparse file"):
        open_pack(tar)
    # Format 1.0 with a malformed map makes tarfile raise ValueError: still a plain refusal.
    tar.unlink()
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": f"{pack.name}/files/" + "f" * 64,
                        "GNU.sparse.realsize": "1000000"}
    tar = to_tar(pack, extra=[(info, b"x")])
    with pytest.raises(PackError, match="damaged or cut short"):
        open_pack(tar)


def test_tar_huge_extended_header_is_refused(pack):
    info = tarfile.TarInfo(f"{pack.name}/files/" + "f" * 64)
    info.size = 1
    info.pax_headers = {"comment": "x" * 200_000}
    tar = to_tar(pack, extra=[(info, b"x")])
    with pytest.raises(PackError, match="extended header .* too large"):
        open_pack(tar)


def test_tar_cut_short_is_refused(pack, keys):
    tar = to_tar(pack)
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    with pytest.raises(PackError, match="damaged or cut short|missing from the pack"):
        verify_pack(tar, [keys[1]])


def test_tar_made_by_gnu_tar_is_accepted(pack, keys):
    """Real tools: GNU tar as a publisher might run it by hand."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    target = pack.with_name("by-gnu-tar.tar")
    subprocess.run(["tar", "-C", str(pack.parent), "-cf", str(target), pack.name], check=True)
    with verify_pack(target, [keys[1]]) as verified:
        assert len(verified.pack.file_names()) == 4


# -- verification -------------------------------------------------------------------------------


def test_signature_is_checked_before_the_manifest_is_parsed(pack, keys):
    (pack / "manifest.json").write_bytes(b"{not json at all")
    with pytest.raises(SignatureError, match="signature is not accepted"):
        verify_pack(pack, [keys[1]])
    # Signed correctly, the same garbage is then refused by the manifest parser.
    (pack / "manifest.json.minisig").write_text(
        sign_bytes(b"{not json at all", keys[0], trusted_comment="library:test version:1 kind:full"))
    with pytest.raises(PackError) as refused:
        verify_pack(pack, [keys[1]])
    assert not isinstance(refused.value, SignatureError)


def test_unknown_key_is_refused(pack):
    with pytest.raises(SignatureError, match="not trusted here"):
        verify_pack(pack, [new_key()[1]])
    with pytest.raises(SignatureError, match="no trusted public keys"):
        verify_pack(pack, [])


def test_oversized_signature_is_refused_before_reading_it(pack, keys):
    (pack / "manifest.json.minisig").write_bytes(b"x" * 5000)
    with pytest.raises(PackError, match="larger than 4 KiB"):
        verify_pack(pack, [keys[1]])


def test_trusted_comment_must_agree_with_the_manifest(pack, keys):
    data = (pack / "manifest.json").read_bytes()
    (pack / "manifest.json.minisig").write_text(
        sign_bytes(data, keys[0], trusted_comment="library:test version:9 kind:full"))
    with pytest.raises(PackError, match="trusted comment says version 9"):
        verify_pack(pack, [keys[1]])


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_missing_and_extra_files_are_named(pack, keys, as_tar):
    victim = sorted((pack / "files").iterdir())[0]
    moved = victim.read_bytes()
    victim.unlink()
    with pytest.raises(PackError, match=f"files/{victim.name} is listed in the manifest but "
                                        f"missing from the pack"):
        verify_pack(to_tar(pack) if as_tar else pack, [keys[1]])
    victim.write_bytes(moved)
    if as_tar:
        pack.with_name(pack.name + ".tar").unlink()
    stranger = pack / "files" / hashlib.sha256(b"stranger").hexdigest()
    stranger.write_bytes(b"stranger")
    with pytest.raises(PackError, match=f"files/{stranger.name} is in the pack but not listed"):
        verify_pack(to_tar(pack) if as_tar else pack, [keys[1]])


def test_truncated_file_is_caught_by_size(pack, keys):
    victim = max((pack / "files").iterdir(), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(PackError, match=f"files/{victim.name} has 1000 bytes, but the "
                                        f"manifest says .*cut short"):
        verify_pack(pack, [keys[1]])
