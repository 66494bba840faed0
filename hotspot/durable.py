"""Small helpers for writes that survive a power cut.

A file is durable only once its data *and* its directory entry are on the card: after
``os.replace`` the directory must be fsynced too, or a power cut can bring back the old name.

    >>> write_atomically(Path("/var/lib/hotspot/usage.json"), b"{}")
    >>> fsync_directory(Path("/var/lib/hotspot"))
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (new, renamed or removed names) to disk."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str | os.PathLike, data: bytes, *, mode: int = 0o644,
                     durable: bool = True, replace: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers (and a power cut) see the old file or the new
    one, never a mix: a temp file in the same folder, fsync, rename, fsync of the folder.

    ``durable=False`` skips the fsyncs (progress files rewritten every second); with
    ``replace=False`` an existing file is never replaced (``FileExistsError``).
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # FileExistsError when someone else was first
    finally:
        temp.unlink(missing_ok=True)
    if durable:
        fsync_directory(path.parent)
