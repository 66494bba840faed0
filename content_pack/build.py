"""Building signed content packs: a full library, or an update (delta) from a previous pack.

    >>> key = SecretKey.load(Path("coalition.key"), passphrase)
    >>> build_pack(Path("river-library"), catalog_csv=Path("river-library/catalog.csv"),
    ...            secret_key=key, out_dir=Path("out"), publisher="Coalition", version=1)
    PosixPath('out/river-alliance-1.hotspot-pack')
    >>> build_pack(..., base=Path("out/river-alliance-1.hotspot-pack"))   # version 2, a delta
    PosixPath('out/river-alliance-1-to-2.hotspot-pack')
    >>> write_tar(Path("out/river-alliance-1.hotspot-pack"))
    PosixPath('out/river-alliance-1.hotspot-pack.tar')

Check first, act second: the spreadsheet and files are read and checked, and the manifest is
built and parsed back with ``parse_manifest`` (what a hotspot runs) before anything is written.
The pack is written into a hidden staging folder next to its final place (every file written
to a temporary name, synced, renamed; ``manifest.json`` last, then its signature) and renamed
into place at the end, so a pack folder that exists is complete.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from content_pack.csv_catalog import Source, read_source
from content_pack.manifest import FileRecord, Manifest, format_created, parse_manifest
from hotspot.durable import fsync_directory
from hotspot.errors import PackError

_COPY_CHUNK = 2**20
Progress = Callable[[str, int], None]  # (what is happening, bytes done in this step)


def read_pack_manifest(path: Path) -> Manifest:
    """The manifest of an existing pack (folder or tar), read through the safe reader."""
    from content_pack.reader import open_pack

    with open_pack(Path(path)) as pack:
        return parse_manifest(pack.read_manifest_bytes())


def read_full_pack_manifest(path: Path, role: str) -> Manifest:
    manifest = read_pack_manifest(path)
    if manifest.kind != "full":
        raise PackError(f"{path} is an update (delta) pack; {role} must be a full pack, such as "
                        f"{manifest.library}-{manifest.base_version}.hotspot-pack.")
    return manifest


def _write_file_durably(target: Path, chunks, expected_sha256: str) -> None:
    """Write ``chunks`` to a temporary name, check the hash, sync, rename to ``target``."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected_sha256:
            raise PackError(f"{target.name}: the file changed while the pack was being built "
                            "(its sha256 is not what it was when it was read); build again.")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_chunks(handle, progress: Progress | None, what: str):
    with handle:
        while chunk := handle.read(_COPY_CHUNK):
            if progress:
                progress(what, len(chunk))
            yield chunk


def _check_new_pack_dir(out_dir: Path, manifest: Manifest) -> Path:
    final = out_dir / manifest.pack_name()
    if final.exists() or final.is_symlink():
        raise PackError(f"{final} already exists; it is not overwritten. Move it away, or "
                        "build another version.")
    return final


def _write_pack(out_dir: Path, manifest: Manifest, open_file: Callable[[str], object],
                secret_key, progress: Progress | None) -> Path:
    """Write files/, manifest.json and its signature into a staging folder, then rename."""
    from content_pack.signing import sign_file

    out_dir.mkdir(parents=True, exist_ok=True)
    final = _check_new_pack_dir(out_dir, manifest)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{manifest.pack_name()}.partial-"))
    try:
        os.chmod(staging, 0o755)
        files_dir = staging / "files"
        files_dir.mkdir(mode=0o755)
        for record in manifest.files:
            _write_file_durably(files_dir / record.sha256,
                                _read_chunks(open_file(record.sha256), progress, "copy"),
                                record.sha256)
        fsync_directory(files_dir)
        manifest_path = staging / "manifest.json"
        data = manifest.to_bytes()
        _write_file_durably(manifest_path, [data], hashlib.sha256(data).hexdigest())
        sign_file(manifest_path, secret_key, trusted_comment=manifest.trusted_comment())
        fsync_directory(staging)
        if final.exists():
            raise PackError(f"{final} appeared while the pack was being built; it is not "
                            "overwritten.")
        os.rename(staging, final)
        fsync_directory(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _delta_parts(base_catalog: dict, new_catalog: dict) -> tuple[list[dict], list[str]]:
    """(added or changed records in the new catalog's order, removed ids in base order)."""
    base_by_id = {r["id"]: r for r in base_catalog["resources"]}
    new_ids = {r["id"] for r in new_catalog["resources"]}
    records = [r for r in new_catalog["resources"] if base_by_id.get(r["id"]) != r]
    removed = [r["id"] for r in base_catalog["resources"] if r["id"] not in new_ids]
    return records, removed


def _catalog_shas(catalog: dict) -> set[str]:
    return {f["sha256"] for r in catalog["resources"] for f in r.get("files", ())}


def _records_for(catalog: dict, only: set[str] | None = None) -> tuple[FileRecord, ...]:
    found: dict[str, FileRecord] = {}
    for res in catalog["resources"]:
        for f in res.get("files", ()):
            if only is None or f["sha256"] in only:
                found.setdefault(f["sha256"], FileRecord(f["sha256"], f["size"], f["media_type"]))
    return tuple(sorted(found.values(), key=lambda r: r.sha256))


def _make_manifest(*, catalog: dict, publisher: str, created: datetime.datetime | None,
                   base: Manifest | None) -> Manifest:
    created_text = format_created(created or datetime.datetime.now(datetime.timezone.utc))
    library = catalog["library"]
    if base is None:
        manifest = Manifest(library=library["id"], version=library["version"],
                            created=created_text, publisher=publisher, kind="full",
                            base_version=None, catalog=catalog, removed=(),
                            files=_records_for(catalog))
    else:
        records, removed = _delta_parts(base.catalog, catalog)
        delta_catalog = {**catalog, "resources": records}
        new_shas = _catalog_shas(delta_catalog) - _catalog_shas(base.catalog)
        manifest = Manifest(library=library["id"], version=library["version"],
                            created=created_text, publisher=publisher, kind="delta",
                            base_version=base.version, catalog=delta_catalog,
                            removed=tuple(removed), files=_records_for(delta_catalog, new_shas))
    # What a hotspot will run on it: a pack we build is never one a hotspot refuses.
    return parse_manifest(manifest.to_bytes())


def _choose_version(version: int | None, base: Manifest | None) -> int:
    if base is None:
        if version is None:
            raise PackError("Say which version this pack is: --version N (1 for the first "
                            "edition, then one more than the last published version).")
        if version < 1:
            raise PackError(f"--version must be 1 or more, not {version}.")
        return version
    if version is None:
        return base.version + 1
    if version <= base.version:
        raise PackError(f"An update must have a higher version than its base (version "
                        f"{base.version}), not {version}.")
    return version


def build_pack(source_dir: Path, *, catalog_csv: Path, secret_key, out_dir: Path,
               base: Path | None = None, publisher: str | None = None,
               version: int | None = None, created: datetime.datetime | None = None,
               progress: Progress | None = None, library: dict | None = None) -> Path:
    """Build and sign a pack from a source folder and its spreadsheet; return its folder.

    With ``base`` (a previous full pack, folder or tar) the pack is a delta holding only the
    added and changed records, the removed ids, and the files the base does not have;
    ``version`` then defaults to the base's version + 1. ``publisher`` defaults to
    ``library.json``'s ``publisher``. ``library`` overrides keys of ``library.json``.
    """
    base_manifest = read_full_pack_manifest(base, "--base") if base is not None else None
    chosen = _choose_version(version, base_manifest)
    hash_progress = (lambda n: progress("hash", n)) if progress else None
    source: Source = read_source(Path(source_dir), Path(catalog_csv), version=chosen,
                                 library=library, progress=hash_progress)
    publisher = publisher or source.publisher
    if not publisher:
        raise PackError("Say who publishes this pack: --publisher 'Team name', or a "
                        "\"publisher\" in library.json.")
    if base_manifest is not None and base_manifest.library != source.catalog["library"]["id"]:
        raise PackError(f"The base pack is for library {base_manifest.library!r} but the "
                        f"source folder is for {source.catalog['library']['id']!r}.")
    manifest = _make_manifest(catalog=source.catalog, publisher=publisher, created=created,
                              base=base_manifest)
    out_dir = Path(out_dir)
    _check_new_pack_dir(out_dir, manifest)

    def open_source(sha256: str):
        return source.files[sha256].path.open("rb")

    return _write_pack(out_dir, manifest, open_source, secret_key, progress)


def diff_packs(old: Path, new: Path, out_dir: Path, secret_key, *,
               publisher: str | None = None, created: datetime.datetime | None = None,
               progress: Progress | None = None) -> Path:
    """An update (delta) from full pack ``old`` to full pack ``new``; return its folder.

    ``new`` must be signed by ``secret_key`` (its files are copied into the delta and signed
    again, so they are checked first). The delta keeps ``new``'s publisher unless one is given.
    """
    from content_pack.reader import verify_pack

    old_manifest = read_full_pack_manifest(old, "the old pack")
    with verify_pack(Path(new), [secret_key.public_key()]) as verified:
        new_manifest = verified.manifest
        if new_manifest.kind != "full":
            raise PackError(f"{new} is an update (delta) pack; the new pack must be a full pack.")
        if new_manifest.library != old_manifest.library:
            raise PackError(f"The old pack is for library {old_manifest.library!r} and the new "
                            f"one for {new_manifest.library!r}.")
        if new_manifest.version <= old_manifest.version:
            raise PackError(f"The new pack (version {new_manifest.version}) must have a higher "
                            f"version than the old one (version {old_manifest.version}).")
        manifest = _make_manifest(catalog=new_manifest.catalog,
                                  publisher=publisher or new_manifest.publisher,
                                  created=created, base=old_manifest)
        out_dir = Path(out_dir)
        _check_new_pack_dir(out_dir, manifest)
        return _write_pack(out_dir, manifest, verified.pack.open_file, secret_key, progress)


def write_tar(pack_dir: Path) -> Path:
    """Write ``<pack_dir>.tar`` next to the pack folder; return its path.

    An uncompressed POSIX (pax) tar holding the pack folder as its single top-level entry:
    regular files only (``manifest.json`` and its signature first, so a reader checks the
    signature before it reaches the files), mode 0644, owner 0:0, the manifest's time.
    """
    pack_dir = Path(pack_dir)
    manifest = read_pack_manifest(pack_dir)
    if pack_dir.name != manifest.pack_name():
        raise PackError(f"{pack_dir} should be named {manifest.pack_name()}; rename it first.")
    target = pack_dir.with_name(pack_dir.name + ".tar")
    if target.exists() or target.is_symlink():
        raise PackError(f"{target} already exists; it is not overwritten.")
    mtime = int(datetime.datetime.strptime(manifest.created, "%Y-%m-%dT%H:%M:%SZ")
                .replace(tzinfo=datetime.timezone.utc).timestamp())
    names = ["manifest.json", "manifest.json.minisig"]
    names += [f"files/{sha}" for sha in sorted(f.sha256 for f in manifest.files)]
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.partial-")
    try:
        with os.fdopen(fd, "wb") as raw, \
                tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                source = pack_dir / name
                st = os.lstat(source)
                if not os.path.isfile(source) or os.path.islink(source):
                    raise PackError(f"{source} is not a regular file.")
                info = tarfile.TarInfo(f"{pack_dir.name}/{name}")
                info.size, info.mode, info.mtime = st.st_size, 0o644, mtime
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(source, "rb") as f:
                    tar.addfile(info, f)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        if target.exists():
            raise PackError(f"{target} already exists; it is not overwritten.")
        os.replace(tmp, target)
        fsync_directory(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
