"""Small helpers for writes that survive a power cut.

A file is durable only once its data *and* its directory entry are on the card: after
``os.replace`` the directory must be fsynced too, or a power cut can bring back the old name.

    >>> fsync_directory(Path("/var/lib/hotspot"))
"""

from __future__ import annotations

import os


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory's entries (new, renamed or removed names) to disk."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
