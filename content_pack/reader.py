"""Opening a content pack safely: a folder or an uncompressed tar, as ``docs/content-pack.md``.

A pack comes from a USB drive or a download, so nothing in it is trusted until its signature
is checked. Opening a pack only looks at names and types (directory entries, tar headers) and
refuses anything but ``manifest.json``, ``manifest.json.minisig`` and ``files/<sha256>``
regular files. ``verify_pack`` then checks the signature of the manifest's exact bytes
**before** the manifest is parsed or any file is read, then parses the manifest and checks
that the pack holds exactly the files it lists, with the listed sizes. File contents are
hashed by whoever copies them (``hotspot.packs``), in the same pass as the copy.

    >>> keys = load_trusted_keys(Path("/etc/hotspot/trusted-keys"))
    >>> with verify_pack(Path("/media/usb/demo-3.hotspot-pack.tar"), keys) as verified:
    ...     verified.manifest.version, verified.trusted_comment
    (3, 'library:demo version:3 kind:full')
    ...     with verified.pack.open_file(verified.manifest.files[0].sha256) as f:
    ...         first_block = f.read(65536)

Nothing is ever extracted: tar members are streamed from their offset in the tar file, and
folder files are opened relative to the pack's directory with ``O_NOFOLLOW``, so a symlink
swapped in after the check is refused too.
"""

from __future__ import annotations

import abc
import errno
import os
import re
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

from hotspot.errors import PackError, SignatureError

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.minisig"
FILES_DIR = "files"
MAX_SIGNATURE_BYTES = 4096
# A pax or GNU long-name header is read into memory by tarfile before we see the member; an
# honest pack needs a few hundred bytes, so anything bigger is refused before it is read.
MAX_TAR_EXTENDED_HEADER = 64 * 1024
SHA256_NAME = re.compile(r"[0-9a-f]{64}")
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

__all__ = ["Pack", "PackReadError", "VerifiedPack", "open_pack", "verify_pack",
           "MAX_SIGNATURE_BYTES"]


class PackReadError(PackError):
    """The pack's drive or file cannot be read (removed, failing): not a fault of the pack."""

    exit_code = 1


def _max_manifest_bytes() -> int:
    from content_pack.manifest import MAX_MANIFEST_BYTES

    return MAX_MANIFEST_BYTES


class Pack(abc.ABC):
    """An opened pack whose structure was checked (names and types only, no contents read).

    Use it as a context manager; ``close`` releases the directory or tar file handle.
    """

    path: Path

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> "Pack":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # Implemented by FolderPack and TarPack.
    @abc.abstractmethod
    def read_manifest_bytes(self) -> bytes: ...

    @abc.abstractmethod
    def read_signature(self) -> str: ...

    @abc.abstractmethod
    def file_names(self) -> set[str]: ...

    @abc.abstractmethod
    def file_size(self, sha256: str) -> int: ...

    @abc.abstractmethod
    def open_file(self, sha256: str) -> BinaryIO: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- shared ------------------------------------------------------------------------------

    def _read_bounded(self, opener, name: str, limit: int, what: str) -> bytes:
        with opener() as handle:
            try:
                data = handle.read(limit + 1)
            except (OSError, tarfile.TarError) as exc:
                raise PackReadError(f"{self.path}: {name} cannot be read ({_reason(exc)}).") from None
        if len(data) > limit:
            raise PackError(f"{self.path}: {name} is larger than {what}; it is refused.")
        return data

    def _signature_text(self, data: bytes) -> str:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise PackError(f"{self.path}: {SIGNATURE_NAME} is not a text file.") from None

    def _check_sha(self, sha256: str) -> None:
        if sha256 not in self.file_names():
            raise PackError(f"{self.path}: the pack has no file files/{sha256}.")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- folder packs -----------------------------------------------------------------------------


class FolderPack(Pack):
    """A pack as a folder. Files are opened relative to directory handles, never by full path."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._dir_fd: int | None = None
        self._files_fd: int | None = None
        try:
            self._dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _O_CLOEXEC)
            self._names = self._check_structure()
        except BaseException:
            self.close()
            raise

    def _check_structure(self) -> dict[str, int]:
        top_seen: set[str] = set()
        with os.scandir(self._dir_fd) as entries:
            for entry in entries:
                name = entry.name
                st = entry.stat(follow_symlinks=False)
                if name in (MANIFEST_NAME, SIGNATURE_NAME):
                    _check_folder_file(self.path, name, st)
                elif name == FILES_DIR:
                    if stat.S_ISLNK(st.st_mode):
                        raise PackError(f"{self.path}: files is a symbolic link; a pack may not "
                                        f"contain links.")
                    if not stat.S_ISDIR(st.st_mode):
                        raise PackError(f"{self.path}: files is not a folder.")
                else:
                    raise PackError(f"{self.path}: unexpected entry '{name}'; a pack holds only "
                                    f"{MANIFEST_NAME}, {SIGNATURE_NAME} and files/.")
                top_seen.add(name)
        for required in (MANIFEST_NAME, SIGNATURE_NAME):
            if required not in top_seen:
                raise PackError(f"{self.path}: {required} is missing; this is not a complete "
                                f"content pack.")
        names: dict[str, int] = {}
        if FILES_DIR not in top_seen:
            return names
        self._files_fd = os.open(FILES_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                 | _O_CLOEXEC, dir_fd=self._dir_fd)
        with os.scandir(self._files_fd) as entries:
            for entry in entries:
                where = f"files/{entry.name}"
                st = entry.stat(follow_symlinks=False)
                _check_folder_file(self.path, where, st)
                if not SHA256_NAME.fullmatch(entry.name):
                    raise PackError(f"{self.path}: unexpected file '{where}'; files in a pack are "
                                    f"named by their SHA-256 (64 lowercase hex digits).")
                names[entry.name] = st.st_size
        return names

    def _open(self, dir_fd: int | None, name: str, where: str) -> BinaryIO:
        if dir_fd is None:
            raise PackError(f"{self.path}: the pack has no {where}.")
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            raise PackReadError(f"{self.path}: {where} has disappeared from the pack.") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink was swapped in after the check
                raise PackError(f"{self.path}: {where} is a symbolic link; a pack may not "
                                f"contain links.") from None
            # EIO, ENODEV...: the drive went away or is failing
            raise PackReadError(f"{self.path}: {where} cannot be opened ({_reason(exc)}).") from None
        try:
            _check_folder_file(self.path, where, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def read_manifest_bytes(self) -> bytes:
        limit = _max_manifest_bytes()
        return self._read_bounded(lambda: self._open(self._dir_fd, MANIFEST_NAME, MANIFEST_NAME),
                                  MANIFEST_NAME, limit, f"{limit} bytes")

    def read_signature(self) -> str:
        data = self._read_bounded(lambda: self._open(self._dir_fd, SIGNATURE_NAME, SIGNATURE_NAME),
                                  SIGNATURE_NAME, MAX_SIGNATURE_BYTES, "4 KiB")
        return self._signature_text(data)

    def file_names(self) -> set[str]:
        return set(self._names)

    def file_size(self, sha256: str) -> int:
        self._check_sha(sha256)
        return self._names[sha256]

    def open_file(self, sha256: str) -> BinaryIO:
        self._check_sha(sha256)
        return self._open(self._files_fd, sha256, f"files/{sha256}")

    def close(self) -> None:
        for attr in ("_files_fd", "_dir_fd"):
            fd = getattr(self, attr, None)
            if fd is not None:
                os.close(fd)
                setattr(self, attr, None)


def _check_folder_file(pack: Path, where: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        raise PackError(f"{pack}: {where} is a symbolic link; a pack may not contain links.")
    if stat.S_ISDIR(mode):
        raise PackError(f"{pack}: {where} is a folder, but a file was expected.")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise PackError(f"{pack}: {where} is a device file; a pack holds only regular files.")
    if stat.S_ISFIFO(mode):
        raise PackError(f"{pack}: {where} is a FIFO (named pipe); a pack holds only regular files.")
    if stat.S_ISSOCK(mode):
        raise PackError(f"{pack}: {where} is a socket; a pack holds only regular files.")
    if not stat.S_ISREG(mode):
        raise PackError(f"{pack}: {where} is not a regular file.")
    if st.st_nlink > 1:
        # A hard link could make a pack file share its content with a file elsewhere on the
        # drive that changes later; a pack built by the publisher never has them.
        raise PackError(f"{pack}: {where} is a hard link (it has {st.st_nlink} names); a pack "
                        f"may not contain links.")


# -- tar packs --------------------------------------------------------------------------------


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses oversized extended headers and GNU sparse members before tarfile reads them.

    ``_proc_member`` is tarfile's (private, stable since Python 2) dispatch on the header type;
    hooking it is the only way to stop a hostile pax header of gigabytes from being read into
    memory while the headers are listed.
    """

    def _proc_member(self, tarfile_obj):
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise PackError(f"tar member '{self.name}' is a sparse file; a pack holds only "
                            f"regular files.")
        if (self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                          tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
                and self.size > MAX_TAR_EXTENDED_HEADER):
            raise PackError(f"a tar extended header of {self.size} bytes is too large; it is "
                            f"refused.")
        return super()._proc_member(tarfile_obj)


_TAR_KINDS = {
    tarfile.SYMTYPE: "a symbolic link; a pack may not contain links",
    tarfile.LNKTYPE: "a hard link; a pack may not contain links",
    tarfile.CHRTYPE: "a device file; a pack holds only regular files",
    tarfile.BLKTYPE: "a device file; a pack holds only regular files",
    tarfile.FIFOTYPE: "a FIFO (named pipe); a pack holds only regular files",
    tarfile.CONTTYPE: "a contiguous file, a tar type packs do not use",
}


class TarPack(Pack):
    """A pack as one uncompressed tar holding the pack folder as its single top-level entry."""

    def __init__(self, path: Path):
        super().__init__(path)
        self._tar: tarfile.TarFile | None = None
        self._file: BinaryIO | None = None
        try:
            self._file = open(path, "rb")
            try:
                # "r:" is uncompressed only; a compressed file fails here instead of being
                # decompressed, since it cannot be streamed member by member cheaply.
                self._tar = tarfile.open(fileobj=self._file, mode="r:", tarinfo=_BoundedTarInfo)
                self._members = self._check_structure()
            except PackError as exc:
                raise PackError(f"{path}: {exc.message}") from None
            except (tarfile.TarError, EOFError, ValueError, IndexError, OverflowError) as exc:
                # A hostile header can make tarfile fail in ways it does not wrap (a malformed
                # GNU sparse map raises ValueError): all of them mean a damaged tar.
                raise PackError(f"{path}: this is not an uncompressed tar file, or it is damaged "
                                f"or cut short ({exc}).") from None
            except OSError as exc:
                raise PackReadError(f"{path}: the pack cannot be read ({_reason(exc)}).") from None
        except BaseException:
            self.close()
            raise

    def _check_structure(self) -> dict[str, tarfile.TarInfo]:
        top: str | None = None
        seen: set[str] = set()
        members: dict[str, tarfile.TarInfo] = {}
        while True:
            member = self._tar.next()
            if member is None:
                break
            raw = member.name
            name = raw[:-1] if member.isdir() and raw.endswith("/") else raw
            if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or "\\" in raw:
                raise PackError(f"tar member '{raw}' has an absolute name; a pack may only hold "
                                f"names inside its folder.")
            parts = name.split("/")
            if any(part == ".." for part in parts):
                raise PackError(f"tar member '{raw}' contains '..'; a pack may only hold names "
                                f"inside its folder.")
            if any(part in ("", ".") for part in parts) or "\x00" in raw:
                raise PackError(f"tar member '{raw}' has a malformed name.")
            if top is None:
                top = parts[0]
            elif parts[0] != top:
                raise PackError(f"tar member '{raw}' is outside the pack folder '{top}/'; a pack "
                                f"tar holds a single top-level folder.")
            if name in seen:
                raise PackError(f"tar member '{raw}' appears twice; it is refused.")
            seen.add(name)
            kind = _TAR_KINDS.get(member.type)
            if kind is not None:
                raise PackError(f"tar member '{raw}' is {kind}.")
            if getattr(member, "sparse", None) is not None:
                raise PackError(f"tar member '{raw}' is a sparse file; a pack holds only regular "
                                f"files.")
            rest = "/".join(parts[1:])
            if member.isdir():
                if rest in ("", FILES_DIR):
                    continue
                raise PackError(f"unexpected folder '{raw}'; a pack holds only {MANIFEST_NAME}, "
                                f"{SIGNATURE_NAME} and files/.")
            if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                raise PackError(f"tar member '{raw}' is of a type packs do not use "
                                f"({member.type!r}); a pack holds only regular files.")
            if rest in (MANIFEST_NAME, SIGNATURE_NAME):
                members[rest] = member
            elif (len(parts) == 3 and parts[1] == FILES_DIR and SHA256_NAME.fullmatch(parts[2])):
                members[rest] = member
            else:
                raise PackError(f"unexpected file '{raw}'; a pack holds only {MANIFEST_NAME}, "
                                f"{SIGNATURE_NAME} and files/<sha256>.")
        if top is None:
            raise PackError("the tar file is empty.")
        for required in (MANIFEST_NAME, SIGNATURE_NAME):
            if required not in members:
                raise PackError(f"{required} is missing; this is not a complete content pack.")
        return members

    def _open_member(self, key: str) -> BinaryIO:
        member = self._members.get(key)
        if member is None or self._tar is None:
            raise PackError(f"{self.path}: the pack has no {key}.")
        handle = self._tar.extractfile(member)
        if handle is None:  # cannot happen for regular members; never trust it silently
            raise PackError(f"{self.path}: {key} cannot be read from the tar file.")
        return handle

    def read_manifest_bytes(self) -> bytes:
        limit = _max_manifest_bytes()
        if self._members[MANIFEST_NAME].size > limit:
            raise PackError(f"{self.path}: {MANIFEST_NAME} is larger than {limit} bytes; it is "
                            f"refused.")
        return self._read_bounded(lambda: self._open_member(MANIFEST_NAME), MANIFEST_NAME, limit,
                                  f"{limit} bytes")

    def read_signature(self) -> str:
        if self._members[SIGNATURE_NAME].size > MAX_SIGNATURE_BYTES:
            raise PackError(f"{self.path}: {SIGNATURE_NAME} is larger than 4 KiB; it is refused.")
        data = self._read_bounded(lambda: self._open_member(SIGNATURE_NAME), SIGNATURE_NAME,
                                  MAX_SIGNATURE_BYTES, "4 KiB")
        return self._signature_text(data)

    def file_names(self) -> set[str]:
        return {key.split("/", 1)[1] for key in self._members if key.startswith(FILES_DIR + "/")}

    def file_size(self, sha256: str) -> int:
        self._check_sha(sha256)
        return self._members[f"{FILES_DIR}/{sha256}"].size

    def open_file(self, sha256: str) -> BinaryIO:
        self._check_sha(sha256)
        return self._open_member(f"{FILES_DIR}/{sha256}")

    def close(self) -> None:
        if getattr(self, "_tar", None) is not None:
            self._tar.close()
            self._tar = None
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None


def open_pack(path: Path) -> Pack:
    """Open a pack folder or tar file, refusing any structure the format does not allow."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise PackError(f"There is no pack at {path}.") from None
    except OSError as exc:
        raise PackReadError(f"{path} cannot be read ({_reason(exc)}).") from None
    if stat.S_ISDIR(st.st_mode):
        try:
            return FolderPack(path)
        except OSError as exc:
            raise PackReadError(f"{path}: the pack folder cannot be read ({_reason(exc)}).") from None
    if stat.S_ISREG(st.st_mode):
        return TarPack(path)
    raise PackError(f"{path} is neither a pack folder nor a pack tar file.")


# -- verification -----------------------------------------------------------------------------


@dataclass
class VerifiedPack:
    """A pack whose manifest is signed by a trusted key and whose files match the manifest's
    list and sizes. The file *contents* are checked by hash when they are copied."""

    pack: Pack
    manifest: object  # content_pack.manifest.Manifest
    key: object       # content_pack.signing.PublicKey
    trusted_comment: str

    def __enter__(self) -> "VerifiedPack":
        return self

    def __exit__(self, *exc_info) -> None:
        self.pack.close()

    def close(self) -> None:
        self.pack.close()


_COMMENT_FIELD = re.compile(r"(library|version|kind):(\S+)")


def _check_trusted_comment(path: Path, comment: str, manifest) -> None:
    """The signed comment names library, version and kind; it must agree with the manifest."""
    expected = {"library": str(manifest.library), "version": str(manifest.version),
                "kind": str(manifest.kind)}
    for field, value in _COMMENT_FIELD.findall(comment or ""):
        if expected[field] != value:
            raise PackError(f"{path}: the signature's trusted comment says {field} {value}, but "
                            f"the manifest says {expected[field]}; the pack is refused.")


def verify_pack(path: Path, trusted_keys: Iterable) -> VerifiedPack:
    """Open ``path`` and check it: signature first, then manifest, then the list of files.

    Raises ``SignatureError`` (no trusted key signed the manifest) or ``PackError``. The
    returned ``VerifiedPack`` keeps the pack open; close it (or use ``with``).
    """
    from content_pack.manifest import parse_manifest
    from content_pack.signing import verify_bytes

    trusted_keys = list(trusted_keys)
    pack = open_pack(path)
    try:
        signature = pack.read_signature()
        manifest_bytes = pack.read_manifest_bytes()
        # Nothing of the manifest is parsed before this line: an unsigned pack is only bytes.
        try:
            verified = verify_bytes(manifest_bytes, signature, trusted_keys)
        except SignatureError as exc:
            raise SignatureError(f"{pack.path}: the pack's signature is not accepted: "
                                 f"{exc.message.rstrip('.')}. Nothing was installed.") from None
        manifest = parse_manifest(manifest_bytes)
        _check_trusted_comment(pack.path, verified.trusted_comment, manifest)
        listed = {record.sha256: record for record in manifest.files}
        present = pack.file_names()
        missing = sorted(set(listed) - present)
        extra = sorted(present - set(listed))
        if missing:
            raise PackError(f"{pack.path}: files/{missing[0]} is listed in the manifest but "
                            f"missing from the pack" + _and_more(missing) + ".")
        if extra:
            raise PackError(f"{pack.path}: files/{extra[0]} is in the pack but not listed in "
                            f"the manifest" + _and_more(extra) + "; the pack is refused.")
        for sha, record in listed.items():
            size = pack.file_size(sha)
            if size != record.size:
                raise PackError(f"{pack.path}: files/{sha} has {size} bytes, but the manifest "
                                f"says {record.size}; the file is damaged or cut short.")
        return VerifiedPack(pack, manifest, verified.key, verified.trusted_comment)
    except BaseException:
        pack.close()
        raise


def _and_more(names: list[str]) -> str:
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""
