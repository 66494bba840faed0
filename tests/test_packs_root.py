"""hotspot.packs on real small filesystems (root: loop devices and mounts).

- **Disk full during the copy.** The data directory is an 8 MB ext4 image. The free-space
  check passes honestly (margin 0, the pack fits); then, from the progress callback at the
  start of the copy, a ballast file fills the disk, as another writer on the hotspot would.
  The copy then meets a real ENOSPC from the kernel. No test-only switch in the code.
- **The free-space check itself** refuses a pack larger than the free space, before copying.
- **The drive removed during the copy.** The pack lives on a loop-mounted ext4 image. After the
  first file is copied, the progress callback shuts the filesystem down
  (``FS_IOC_SHUTDOWN``: from then on every read returns EIO, even of cached data, which is what
  a reader sees when a USB drive is pulled out), lazily unmounts it and detaches the loop
  device. (A lazy unmount alone would not do: files already open stay readable.)

Marked ``root``; skipped with the reason when not root, failed in CI (``CI=true``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import in_ci
from hotspot.library import DataPaths
from hotspot.media import MediaStore
from hotspot.packs import ImportFailed, Progress
from test_packs import (MB, Publisher, big_catalog, do_import, temp_files, v1_catalog)
from test_reader import catalog_files, to_tar

pytestmark = pytest.mark.root

FS_IOC_SHUTDOWN = 0x8004587D        # _IOR('X', 125, __u32)
SHUTDOWN_NOLOGFLUSH = 2             # like a device that vanished: nothing more is written


@pytest.fixture(autouse=True)
def needs_root():
    missing = [tool for tool in ("mkfs.ext4", "losetup", "mount", "umount")
               if shutil.which(tool) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root for loop devices and mounts"
    elif missing:
        reason = f"needs {', '.join(missing)}"
    elif not Path("/dev/loop-control").exists():
        reason = "needs loop devices (/dev/loop-control)"
    if reason:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: root tests must run)")
        pytest.skip(reason)


@dataclass
class Mounted:
    path: Path
    loop: str
    image: Path

    def attached(self) -> bool:
        out = subprocess.run(["losetup", "-j", str(self.image)], capture_output=True,
                             text=True).stdout
        return out.startswith(self.loop + ":")

    def pull_out(self) -> None:
        """What a reader sees when the drive is pulled out: EIO, then the mount is gone."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
        finally:
            os.close(fd)
        subprocess.run(["umount", "-l", str(self.path)], check=True)
        subprocess.run(["losetup", "-d", self.loop], check=True)


@contextlib.contextmanager
def ext4_image(tmp_path: Path, name: str, size_mb: int):
    image = tmp_path / f"{name}.img"
    mountpoint = tmp_path / name
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", f"{size_mb}M", str(image)], check=True)
    # -m 0: no blocks reserved for root, so "free" means the same to root and to psutil.
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                          capture_output=True, text=True).stdout.strip()
    mounted = Mounted(mountpoint, loop, image)
    try:
        subprocess.run(["mount", loop, str(mountpoint)], check=True)
        yield mounted
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", str(mountpoint)], capture_output=True)
            if os.path.ismount(mountpoint):
                subprocess.run(["umount", "-l", str(mountpoint)], check=True)
        if mounted.attached():  # only our own device, never one reused by someone else
            subprocess.run(["losetup", "-d", loop], check=True)


def fill_disk(directory: Path) -> None:
    """Write a ballast file until the filesystem says it is full."""
    with open(directory / "ballast", "wb") as out:
        for size in (MB, 4096):
            block = b"\0" * size
            while True:
                try:
                    out.write(block)
                    out.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
        with contextlib.suppress(OSError):
            os.fsync(out.fileno())


def test_disk_full_during_the_copy(tmp_path):
    publisher = Publisher(tmp_path / "publisher")
    with ext4_image(tmp_path, "data", 8) as mounted:
        paths = DataPaths(mounted.path / "hotspot")
        do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
        before = paths.catalog.read_bytes()
        new = big_catalog(publisher.files, 2, [2])
        new_sha = new["resources"][-1]["files"][0]["sha256"]
        pack = publisher.full(new)

        filled = []

        def another_writer_fills_the_disk(progress: Progress):
            if progress.stage == "copying" and not filled:
                filled.append(True)
                fill_disk(mounted.path)

        with pytest.raises(ImportFailed, match="The hotspot's disk is full") as failed:
            do_import(pack, paths, publisher, margin_bytes=0,
                      progress=another_writer_fills_the_disk)
        assert filled, "the free-space check should have passed"
        assert failed.value.exit_code == 1
        assert paths.catalog.read_bytes() == before
        assert not MediaStore(paths.media).has(new_sha)
        assert temp_files(paths) == []
        # With the ballast gone the same pack installs.
        (mounted.path / "ballast").unlink()
        assert do_import(pack, paths, publisher).version == 2


def test_free_space_check_refuses_a_pack_too_big(tmp_path):
    publisher = Publisher(tmp_path / "publisher")
    with ext4_image(tmp_path, "data", 8) as mounted:
        paths = DataPaths(mounted.path / "hotspot")
        do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
        before = paths.catalog.read_bytes()
        stored = set(MediaStore(paths.media).iter_hashes())
        pack = publisher.full(big_catalog(publisher.files, 2, [12]))
        with pytest.raises(ImportFailed, match=r"Not enough free space .*needs 12\.\d MB .*"
                                               r"only .* is free"):
            do_import(pack, paths, publisher, margin_bytes=0)
        assert paths.catalog.read_bytes() == before
        assert set(MediaStore(paths.media).iter_hashes()) == stored


@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar"])
def test_drive_removed_during_the_copy(tmp_path, as_tar):
    publisher = Publisher(tmp_path / "publisher")
    paths = DataPaths(tmp_path / "data")
    do_import(publisher.full(v1_catalog(publisher.files)), paths, publisher)
    before = paths.catalog.read_bytes()
    new = big_catalog(publisher.files, 2, [1, 4, 4])
    order = [e["sha256"] for e in new["resources"][-1]["files"]]
    with ext4_image(tmp_path, "usb", 48) as drive:
        pack = publisher.full(new, order=order + [s for s in catalog_files(new)
                                                  if s not in order])
        on_drive = shutil.copytree(pack, drive.path / pack.name)
        if as_tar:
            on_drive = to_tar(on_drive)
            shutil.rmtree(drive.path / pack.name)
        pulled = []

        def pull_after_first_file(progress: Progress):
            if progress.stage == "copying" and progress.files_done == 1 and not pulled:
                pulled.append(True)
                drive.pull_out()

        with pytest.raises(ImportFailed, match="The drive was removed during the copy") as failed:
            do_import(on_drive, paths, publisher, progress=pull_after_first_file)
    assert pulled and failed.value.exit_code == 1
    assert paths.catalog.read_bytes() == before
    assert temp_files(paths) == []
    media = MediaStore(paths.media)
    assert media.has(order[0]) and not media.has(order[2])
    # The drive comes back (here: the same pack from elsewhere): the first file is reused.
    result = do_import(pack, paths, publisher)
    assert result.files_reused == 4 + 1 and result.files_copied == 2
