"""The USB watcher: plug in a drive, the hotspot installs its update packs and fills its outbox.

``hotspot usb-watch`` runs as root (it mounts drives) under ``systemd/hotspot-usb.service``. It
listens to udev block-device events (filtered in the kernel on the ``block`` subsystem) and
also looks at the drives already plugged in when it starts. For each USB drive it can use
(FAT, exFAT, NTFS or ext4; a whole-disk file system or a partition; never a disk the system
itself uses) it:

1. mounts it read-only in a private folder (``usb.mount_dir``) with
   ``ro,nosuid,nodev,noexec,nosymfollow``, through mount(8) with an argument list;
2. runs ``hotspot usb-read-drive`` as the unprivileged service user (``usb.service_user``):
   that child finds, checks and imports the packs (``hotspot.usb_drive``) and reports JSON
   lines, which become the state people see (``hotspot.usb_state``);
3. if the drive has a ``hotspot-outbox`` folder and contributions are waiting, remounts it
   read-write for that step only and runs ``hotspot usb-write-outbox`` (same user), which
   writes a verified bundle and only then marks the contributions exported;
4. unmounts it, and only then says it is safe to remove.

Nothing on a drive is ever executed (``noexec``, and nothing is run from it). A drive pulled
out early stops the child (SIGTERM), the mount is cleaned up, and nothing is switched; putting
it back in starts again, and the import reuses the files already copied.

    $ sudo hotspot usb-watch                     # normally: systemctl start hotspot-usb
    Watching for USB drives (service user: hotspot).
    $ hotspot usb-status                         # what it is doing, and the drives it saw

The decision logic (``classify``, ``UsbWatcher``) takes its collaborators as arguments so the
tests drive it with a fake monitor on a real socket; the root tests use real loop devices.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pwd
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import ConfigError, HotspotError
# read_usb_state is imported from here by the status page and ``hotspot status``.
from .usb_state import (UsbStateFile, clean_text, describe_usb_state,  # noqa: F401
                        outbox_request_stamp, read_usb_state)

log = logging.getLogger("hotspot.usb")

# udev's ID_FS_TYPE -> the types to try with mount -t, in order.
MOUNT_TYPES = {"vfat": ("vfat",), "exfat": ("exfat",), "ntfs": ("ntfs3", "ntfs"),
               "ext4": ("ext4",)}
FS_NAMES = {"vfat": "FAT", "exfat": "exFAT", "ntfs": "NTFS", "ext4": "ext4"}
SAFE_OPTIONS = "nosuid,nodev,noexec,nosymfollow"
# File systems without owners of their own: files appear owned by the service user.
OWNERLESS = {"vfat", "exfat", "ntfs3", "ntfs"}
AUTOMOUNT_PREFIXES = ("/media/", "/run/media/", "/mnt/")
MAX_EVENT_LINE = 64 * 1024
UNMOUNT_TRIES = 5
GONE_WAIT_SECONDS = 2.0
CHILD_STOP_SECONDS = 10

__all__ = ["BlockDevice", "Verdict", "SystemView", "classify", "ServiceUser",
           "resolve_service_user", "Mounter", "MountError", "ChildRunner", "DriveJob",
           "DriveHandler", "UsbWatcher", "UdevMonitor", "read_usb_state", "add_commands"]


# -- block devices -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockDevice:
    """What the watcher needs to know of a udev block device (no label, no serial number)."""

    name: str                       # kernel name: sdb1, loop3
    devnode: str                    # /dev/sdb1
    devtype: str                    # disk or partition
    disk: str                       # kernel name of the whole disk (itself for a disk)
    number: tuple[int, int] = (0, 0)
    action: str | None = None       # add, change, remove; None for a drive present at start
    fs_type: str | None = None      # ID_FS_TYPE: vfat, exfat, ntfs, ext4, ...
    fs_usage: str | None = None     # ID_FS_USAGE: filesystem, crypto, raid, other
    fs_version: str | None = None   # ID_FS_VERSION: FAT32, FAT16, 1.0, ...
    fs_uuid: str | None = None      # only to tell two drives on one device apart; never stored
    part_table: bool = False        # the disk has a partition table
    bus: str | None = None          # "usb" when the device hangs off a USB port
    size: int = 0                   # bytes
    read_only: bool = False         # write-protected (a lock switch on a card)

    @property
    def key(self) -> tuple:
        return (self.name, self.fs_type, self.fs_uuid, self.size)

    @property
    def is_loop(self) -> bool:
        return self.name.startswith("loop")

    @classmethod
    def from_udev(cls, device) -> "BlockDevice":
        props = device.properties
        devtype = device.device_type or "disk"
        if devtype == "partition":
            parent = device.find_parent("block", "disk")
            disk = parent.sys_name if parent is not None else device.sys_name
        else:
            disk = device.sys_name
        bus = props.get("ID_BUS")
        if bus != "usb":
            with contextlib.suppress(Exception):
                if any(a.subsystem == "usb" for a in device.ancestors):
                    bus = "usb"
        number = (0, 0)
        with contextlib.suppress(Exception):
            number = (os.major(device.device_number), os.minor(device.device_number))
        return cls(name=device.sys_name, devnode=device.device_node or f"/dev/{device.sys_name}",
                   devtype=devtype, disk=disk, number=number, action=device.action,
                   fs_type=props.get("ID_FS_TYPE") or None,
                   fs_usage=props.get("ID_FS_USAGE") or None,
                   fs_version=props.get("ID_FS_VERSION") or None,
                   fs_uuid=props.get("ID_FS_UUID") or None,
                   part_table=bool(props.get("ID_PART_TABLE_TYPE")), bus=bus,
                   size=_sysfs_int(device.sys_path, "size") * 512,
                   read_only=_sysfs_int(device.sys_path, "ro") == 1)

    @classmethod
    def from_dict(cls, data: dict) -> "BlockDevice":
        data = dict(data)
        if "number" in data:
            data["number"] = tuple(data["number"])
        return cls(**data)

    def describe(self) -> dict[str, Any]:
        """For the state file: no label, serial or file system id."""
        kind = FS_NAMES.get(self.fs_type or "", self.fs_type or "unknown")
        if self.fs_type == "vfat" and self.fs_version in ("FAT32", "FAT16", "FAT12"):
            kind = self.fs_version
        return {"device": self.name, "filesystem": kind, "size": self.size,
                "description": f"{_size_words(self.size)} {kind} drive"}


def _sysfs_int(sys_path: str, name: str) -> int:
    try:
        with open(os.path.join(sys_path, name), encoding="ascii") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _size_words(size: int) -> str:
    if size >= 1_000_000_000:
        return f"{size / 1_000_000_000:.0f} GB" if size >= 10_000_000_000 else \
            f"{size / 1_000_000_000:.1f} GB"
    return f"{max(size, 0) / 1_000_000:.0f} MB"


def device_present(dev: BlockDevice) -> bool:
    """The device still has a medium (a pulled USB drive vanishes; a detached loop device
    stays with size 0)."""
    return _sysfs_int(f"/sys/class/block/{dev.name}", "size") > 0


# -- what the system itself uses -----------------------------------------------------------------

def _unescape(text: str) -> str:
    return text.encode().decode("unicode_escape") if "\\" in text else text


@dataclass
class SystemView:
    """Devices the system uses: mounted (outside our mount folder), swap, held by dm/md."""

    mounted: dict[tuple[int, int], str] = field(default_factory=dict)   # number -> mount point
    busy_disks: dict[str, str] = field(default_factory=dict)            # disk -> mount point
    held: set[str] = field(default_factory=set)                         # names with holders

    @classmethod
    def read(cls, own_mount_dir: Path | None = None) -> "SystemView":
        view = cls()
        own = str(own_mount_dir).rstrip("/") + "/" if own_mount_dir else None
        with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 5:
                    continue
                point = _unescape(fields[4])
                if own and (point + "/").startswith(own):
                    continue
                major, _, minor = fields[2].partition(":")
                number = (int(major), int(minor))
                if number[0] != 0:
                    view.mounted.setdefault(number, point)
        with contextlib.suppress(OSError), open("/proc/swaps", encoding="utf-8") as f:
            for line in list(f)[1:]:
                path = _unescape(line.split()[0])
                with contextlib.suppress(OSError):
                    rdev = os.stat(path).st_rdev
                    if rdev:
                        view.mounted.setdefault((os.major(rdev), os.minor(rdev)), "swap")
        for number, point in view.mounted.items():
            for disk in _disks_of(f"/sys/dev/block/{number[0]}:{number[1]}"):
                view.busy_disks.setdefault(disk, point)
        with contextlib.suppress(OSError):
            for name in os.listdir("/sys/class/block"):
                with contextlib.suppress(OSError):
                    if os.listdir(f"/sys/class/block/{name}/holders"):
                        view.held.add(name)
        return view


def _disks_of(sys_link: str, depth: int = 0) -> set[str]:
    """The whole disks under a block device (through partitions and dm/md slaves)."""
    try:
        path = os.path.realpath(sys_link)
    except OSError:
        return set()
    if not os.path.isdir(path) or depth > 8:
        return set()
    slaves = os.path.join(path, "slaves")
    with contextlib.suppress(OSError):
        names = os.listdir(slaves)
        if names:
            return set().union(*(_disks_of(os.path.join(slaves, n), depth + 1) for n in names))
    if os.path.exists(os.path.join(path, "partition")):
        return {os.path.basename(os.path.dirname(path))}
    return {os.path.basename(path)}


@dataclass(frozen=True)
class Verdict:
    use: bool
    reason: str
    report: bool = False      # show it to the caretaker (a USB drive they plugged in)


USE = Verdict(True, "a USB drive the hotspot can read")


def classify(dev: BlockDevice, system: SystemView, *, allow_loop: bool = False) -> Verdict:
    """Whether to read ``dev``, and why not. No side effects."""
    if dev.devtype not in ("disk", "partition"):
        return Verdict(False, f"not a disk or partition ({dev.devtype})")
    if dev.is_loop:
        if not allow_loop:
            return Verdict(False, "a loop device (usb.allow_loop_devices is off; it is for "
                                  "tests only)")
    elif dev.bus != "usb":
        return Verdict(False, "not a USB device (a disk of the system, or another kind)")
    if not dev.devnode.startswith("/dev/"):
        return Verdict(False, f"no usable device node ({dev.devnode})")
    if dev.size <= 0:
        return Verdict(False, "no medium (an empty card reader, or nothing attached)")
    point = system.mounted.get(dev.number)
    disk_point = system.busy_disks.get(dev.disk)
    if point or disk_point:
        where = point or disk_point
        if where.startswith(AUTOMOUNT_PREFIXES):
            return Verdict(False, f"already opened by another program at {where} (a desktop "
                                  f"automounter? see the udev rule in docs/operators.md)",
                           report=True)
        return Verdict(False, f"part of a disk the system uses (mounted at {where})")
    if dev.name in system.held or dev.disk in system.held:
        return Verdict(False, "used by the system (RAID, LVM or encryption)")
    if not dev.fs_type:
        if dev.part_table:
            return Verdict(False, "a disk with partitions; each partition is looked at by itself")
        if dev.devtype == "disk":
            return Verdict(False, "no file system the hotspot can read (a blank or unformatted "
                                  "drive?)", report=True)
        return Verdict(False, "a partition with no file system")
    if dev.fs_usage and dev.fs_usage != "filesystem":
        if dev.fs_usage == "crypto":
            return Verdict(False, "an encrypted drive, which the hotspot cannot open",
                           report=True)
        return Verdict(False, f"not a file system ({dev.fs_usage}: {dev.fs_type})")
    if dev.fs_type not in MOUNT_TYPES:
        return Verdict(False, f"its format ({dev.fs_type}) is not one the hotspot reads",
                       report=True)
    return USE


# -- the unprivileged user -----------------------------------------------------------------------

@dataclass(frozen=True)
class ServiceUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """Arguments for subprocess: drop to this user (and only its groups) when root."""
        if self.is_current:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


def resolve_service_user(name: str) -> ServiceUser:
    """The user that reads drives.

    - The watcher is not root (a developer's machine, the unit tests): the current user; it
      cannot change user, and it has no more rights than that anyway.
    - Root, and the user exists: that user, with its own groups only.
    - Root, and the user does not exist: refused. Reading untrusted drives as root is never a
      silent fallback; create the user (provisioning does), or name ``root`` explicitly, which
      the root tests do because their Python is not readable by other users.
    """
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise ConfigError(
                f"The user '{name}' that reads USB drives does not exist. Create it (the "
                f"provisioning does: useradd --system {name}) or set usb.service_user to an "
                f"existing unprivileged user.") from None
        if entry.pw_uid == 0:
            log.warning("usb.service_user is root: drives are read as root. Use this only for "
                        "tests.")
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir or "/")


# -- mounting ------------------------------------------------------------------------------------

class MountError(Exception):
    pass


def mounted_points() -> set[str]:
    points = set()
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 5:
                points.add(_unescape(fields[4]))
    return points


class Mounter:
    """mount(8) and umount(8) with argument lists, in the private ``mount_dir``."""

    def __init__(self, mount_dir: Path, user: ServiceUser):
        self.mount_dir = Path(mount_dir)
        self.user = user

    def prepare(self) -> None:
        """The private folder: root's, readable by the service user's group only."""
        self.mount_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.mount_dir, 0o750)
        if os.geteuid() == 0:
            os.chown(self.mount_dir, 0, self.user.gid)

    def cleanup_stale(self) -> None:
        """Mounts left by a watcher that was killed: lazily unmounted, folders removed."""
        prefix = str(self.mount_dir).rstrip("/") + "/"
        for point in sorted(mounted_points(), reverse=True):
            if point.startswith(prefix):
                log.info("Unmounting %s, left by an earlier run.", point)
                _run(["umount", "-n", "-l", point])
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.mount_dir):
                if entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.rmdir(entry.path)

    def options(self, fstype: str, *, writable: bool) -> str:
        opts = ["rw" if writable else "ro", SAFE_OPTIONS]
        if fstype in OWNERLESS:
            opts.append(f"uid={self.user.uid},gid={self.user.gid},fmask=0137,dmask=0027")
        if fstype == "vfat":
            opts.append("utf8,flush")
        return ",".join(opts)

    def mount(self, dev: BlockDevice, target: Path) -> str:
        """Mount read-only at ``target``; returns the type used."""
        self.prepare()
        if str(target) in mounted_points():
            self.unmount(target)
        target.mkdir(mode=0o750, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(target, 0, self.user.gid)
        errors = []
        for fstype in MOUNT_TYPES.get(dev.fs_type or "", ()):
            result = _run(["mount", "-n", "-t", fstype, "-o",
                           self.options(fstype, writable=False), "--", dev.devnode, str(target)])
            if result.returncode == 0:
                log.info("Mounted %s (%s) read-only at %s.", dev.devnode, fstype, target)
                return fstype
            errors.append(result.stderr.strip() or f"mount exited with {result.returncode}")
        with contextlib.suppress(OSError):
            target.rmdir()
        raise MountError("; ".join(errors) or f"no way to mount {dev.fs_type}")

    def remount(self, target: Path, *, writable: bool) -> None:
        mode = "rw" if writable else "ro"
        result = _run(["mount", "-n", "-o", f"remount,{mode},{SAFE_OPTIONS}", str(target)])
        if result.returncode != 0:
            raise MountError(result.stderr.strip() or f"mount exited with {result.returncode}")
        log.info("Remounted %s %s.", target, "read-write" if writable else "read-only")

    def unmount(self, target: Path) -> bool:
        """Unmount; True when cleanly done (all written), False when it had to be lazy."""
        clean = True
        if str(target) in mounted_points():
            for attempt in range(UNMOUNT_TRIES):
                result = _run(["umount", "-n", str(target)])
                if result.returncode == 0 or str(target) not in mounted_points():
                    break
                time.sleep(0.2 * (attempt + 1))
            else:
                log.warning("%s is busy; unmounting it lazily.", target)
                _run(["umount", "-n", "-l", str(target)])
                clean = False
        with contextlib.suppress(OSError):
            target.rmdir()
        return clean


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(argv, 127, "", str(exc))


# -- the unprivileged child ----------------------------------------------------------------------

@dataclass
class DriveJob:
    """One drive being handled; ``cancel`` comes from the event thread when it goes away."""

    device: BlockDevice
    report_only: Verdict | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    removed: bool = False
    process: subprocess.Popen | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self, *, removed: bool = True) -> None:
        with self._lock:
            self.removed = self.removed or removed
            self.cancelled.set()
            if self.process is not None and self.process.poll() is None:
                with contextlib.suppress(OSError):
                    self.process.terminate()


class ChildRunner:
    """Runs ``hotspot usb-read-drive`` / ``usb-write-outbox`` as the service user."""

    def __init__(self, user: ServiceUser, data_dir: Path, config_path: Path | None,
                 python: str = sys.executable):
        self.user = user
        self.data_dir = Path(data_dir)
        self.config_path = config_path
        self.python = python

    def argv(self, action: str, root: Path) -> list[str]:
        command = {"read": "usb-read-drive", "write": "usb-write-outbox"}[action]
        argv = [self.python, "-P", "-m", "hotspot.cli"]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        return argv + ["--data-dir", str(self.data_dir), command, str(root)]

    def environment(self) -> dict[str, str]:
        package_parent = str(Path(__file__).resolve().parent.parent)
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                "HOME": self.user.home, "PYTHONPATH": package_parent,
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}

    def run(self, action: str, root: Path, job: DriveJob,
            on_event: Callable[[dict], None]) -> int:
        """Start the child, pass each event it reports to ``on_event``; its exit code."""
        with job._lock:
            if job.cancelled.is_set():
                return -signal.SIGTERM
            process = subprocess.Popen(
                self.argv(action, root), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                env=self.environment(), cwd="/", umask=0o022, **self.user.popen_kwargs())
            job.process = process
        try:
            for raw in iter(lambda: process.stdout.readline(MAX_EVENT_LINE), b""):
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.warning("The drive reader said something unexpected: %r", raw[:200])
                    continue
                if isinstance(event, dict) and isinstance(event.get("event"), str):
                    on_event(event)
            try:
                return process.wait(timeout=CHILD_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            with job._lock:
                job.process = None


# -- handling one drive --------------------------------------------------------------------------

@dataclass
class _Outcome:
    failed: dict | None = None                 # {"reason", "message"} of the child
    outbox: bool = False
    queued: int = 0
    imported: list = field(default_factory=list)
    refused: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    exported: dict | None = None
    note: str | None = None                    # a problem with the outbox step
    note_reason: str | None = None


MESSAGES = {
    "removed-too-early": "The drive was taken out before the hotspot had finished. The library "
                         "was not changed by the unfinished step. Put the drive back in to "
                         "finish.",
    "drive-unreadable": "The hotspot could not read this drive (it may be damaged, or it was "
                        "taken out). The library was not changed by the unfinished step. Take "
                        "the drive out and put it back in to try again.",
    "mount-failed": "The hotspot could not open this drive. It may be damaged, or it was not "
                    "safely removed from a computer: check it on a computer, then try again.",
    "reader-failed": "Something went wrong while the hotspot read this drive. The library was "
                     "not changed. The details are in the hotspot's log for the operator.",
    "not-set-up": "The hotspot is not set up to install updates yet: the key that proves an "
                  "update is genuine is missing. Ask the person who looks after the hotspot.",
    "hotspot-disk-full": "The hotspot's memory card is too full for this update. Nothing was "
                         "changed. Ask the person who looks after the hotspot.",
    "watcher-stopped": "The hotspot stopped reading the drive before it had finished. Nothing "
                       "was changed. Take the drive out and put it back in to try again.",
}


class DriveHandler:
    """The steps for one drive: mount, read as the service user, outbox, unmount."""

    def __init__(self, state: UsbStateFile, mounter: Mounter, runner: ChildRunner):
        self.state = state
        self.mounter = mounter
        self.runner = runner

    def report(self, job: DriveJob) -> None:
        """A USB drive the hotspot cannot use: tell the caretaker why, in plain words."""
        dev, verdict = job.device, job.report_only
        self.state.begin(dev.describe())
        self.state.finish("error", _unusable_message(dev, verdict), reason="cannot-use-drive")

    def handle(self, job: DriveJob) -> None:
        if job.report_only is not None:
            self.report(job)
            return
        dev = job.device
        self.state.begin(dev.describe())
        target = self.mounter.mount_dir / dev.name
        outcome = _Outcome()
        mounted = False
        try:
            try:
                self.mounter.mount(dev, target)
                mounted = True
            except MountError as exc:
                log.warning("Could not mount %s: %s", dev.devnode, exc)
                outcome.failed = {"reason": "mount-failed", "message": str(exc)}
                return
            if job.cancelled.is_set():
                return
            self.state.set_state("checking")
            code = self.runner.run("read", target, job, lambda e: self._event(e, outcome))
            if code != 0 and outcome.failed is None and not job.cancelled.is_set():
                outcome.failed = {"reason": "reader-failed",
                                  "message": f"the drive reader exited with {code}"}
            if outcome.failed or job.cancelled.is_set():
                return
            if outcome.outbox:
                self._outbox(dev, target, job, outcome)
        finally:
            clean = self.mounter.unmount(target) if mounted else True
            self._finish(job, outcome, clean)

    def _outbox(self, dev: BlockDevice, target: Path, job: DriveJob, outcome: _Outcome) -> None:
        if outcome.queued == 0:
            outcome.exported = {"bundle": None, "contributions": 0}
            return
        if dev.read_only:
            outcome.note_reason = "drive-write-protected"
            outcome.note = ("The drive is locked against writing (check the small switch on "
                            "its side), so the contributions were not copied.")
            return
        try:
            self.mounter.remount(target, writable=True)
        except MountError as exc:
            log.warning("Could not remount %s read-write: %s", target, exc)
            outcome.note_reason = "drive-not-writable"
            outcome.note = ("The hotspot could not write to this drive (it may be locked, "
                            "damaged, or not safely removed from a computer), so the "
                            "contributions were not copied.")
            return
        try:
            self.state.set_state("writing-outbox")
            code = self.runner.run("write", target, job, lambda e: self._event(e, outcome))
            if code != 0 and outcome.failed is None and not job.cancelled.is_set():
                outcome.failed = {"reason": "reader-failed",
                                  "message": f"the outbox writer exited with {code}"}
        finally:
            if not job.cancelled.is_set():
                with contextlib.suppress(MountError):
                    self.mounter.remount(target, writable=False)

    def _event(self, event: dict, outcome: _Outcome) -> None:
        kind = event.get("event")
        # The child is trusted no more than the drive it reads: only known fields, numbers
        # as numbers, text cleaned and cut, go into the state file.
        if kind == "progress":
            progress = {k: _number(event.get(k)) for k in (
                "fraction", "files_done", "files_total", "bytes_done", "bytes_total",
                "eta_seconds")}
            progress.update(stage=clean_text(event.get("stage") or "", 20),
                            text=clean_text(event.get("text") or "", 200))
            self.state.progress(progress)
        elif kind == "importing":
            self.state.set_state(
                "importing", f"Adding version {event.get('version')} of library "
                             f"'{clean_text(event.get('library'), 80)}'. Please wait; do not "
                             f"take the drive out.")
        elif kind in ("imported", "refused", "skipped"):
            item = {k: event.get(k) for k in ("pack", "library", "version", "reason")
                    if event.get(k) is not None}
            getattr(outcome, kind).append(item)
            self.state.add(kind, item)
        elif kind == "summary":
            outcome.outbox = bool(event.get("outbox"))
            outcome.queued = int(_number(event.get("queued")) or 0)
        elif kind == "exported":
            bundle = event.get("bundle")
            outcome.exported = {"bundle": clean_text(bundle, 100) if bundle else None,
                                "contributions": int(_number(event.get("contributions")) or 0)}
            self.state.set_state("writing-outbox", exported=outcome.exported)
        elif kind == "failed":
            reason = str(event.get("reason") or "reader-failed")
            message = clean_text(event.get("message") or "")
            if outcome.exported is None and self.state.current.get("state") == "writing-outbox" \
                    and reason not in ("drive-lost", "stopped"):
                outcome.note_reason = reason
                outcome.note = _outbox_problem(reason, message)
            else:
                outcome.failed = {"reason": reason, "message": message}

    def _finish(self, job: DriveJob, outcome: _Outcome, clean: bool) -> None:
        dev = job.device
        failed = outcome.failed
        if job.cancelled.is_set() and not job.removed:
            self.state.finish("error", MESSAGES["watcher-stopped"], reason="watcher-stopped")
            return
        # Whatever the reader said (a read error, a failed mount), a drive that is no longer
        # there was taken out: checked after the unmount, when a detached loop device is gone.
        if job.removed or (failed is not None and _gone_soon(dev)):
            reason = "removed-too-early"
        elif failed is not None and failed["reason"] in ("drive-lost", "stopped"):
            reason = "drive-unreadable"
        else:
            reason = None
        if reason is not None:
            log.warning("Drive %s: %s (%s)", dev.name, reason, (failed or {}).get("message"))
            self.state.finish("error", _with_done(MESSAGES[reason], outcome), reason=reason)
            return
        if failed:
            reason = failed["reason"]
            message = MESSAGES.get(reason) or MESSAGES["reader-failed"]
            if reason == "import-failed" and failed.get("message"):
                message = (f"The update could not be installed: {failed['message']} The library "
                           f"in use was not changed.")
            log.warning("Drive %s: %s (%s)", dev.name, reason, failed.get("message"))
            self.state.finish("error", _with_done(message, outcome), reason=reason)
            return
        if not clean:
            self.state.finish("error", "The hotspot could not finish with the drive cleanly. "
                              "Wait a minute before taking it out.", reason="unmount-failed")
            return
        self._finish_done(outcome)

    def _finish_done(self, outcome: _Outcome) -> None:
        parts = []
        for item in outcome.imported:
            parts.append(f"The library now has version {item.get('version')} of "
                         f"'{item.get('library')}'.")
        if outcome.exported and outcome.exported.get("contributions"):
            count = outcome.exported["contributions"]
            parts.append(f"{count} contribution{'s were' if count != 1 else ' was'} copied "
                         f"onto the drive.")
        elif outcome.outbox and outcome.note is None:
            parts.append("No contributions were waiting to be copied.")
        if outcome.refused:
            count = len(outcome.refused)
            first = outcome.refused[0]
            parts.append(f"{count} update{'s' if count != 1 else ''} on the drive could not be "
                         f"used ({first.get('pack')}: {first.get('reason')})")
        if outcome.note:
            parts.append(outcome.note)
        if not outcome.imported and outcome.skipped and not outcome.refused:
            parts.append("The library is already up to date; nothing was changed.")
        if not (outcome.imported or outcome.refused or outcome.skipped or outcome.outbox):
            parts.append("There is nothing for the hotspot on this drive (no update and no "
                         "hotspot-outbox folder). Nothing was changed.")
        message = " ".join(parts)
        if outcome.refused and not outcome.imported:
            self.state.finish("error", f"{message} Nothing was changed. Ask the coalition for a "
                                       f"new copy of the update. You can take the drive out now.",
                              reason="packs-refused")
        elif outcome.note_reason:
            self.state.finish("error", f"{message} You can take the drive out now.",
                              reason=outcome.note_reason)
        else:
            self.state.finish("done", f"{message} You can take the drive out now.")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _with_done(message: str, outcome: _Outcome) -> str:
    done = [f"version {i.get('version')} of '{i.get('library')}'" for i in outcome.imported]
    if done:
        return f"{message} (Installed before that: {', '.join(done)}.)"
    return message


def _outbox_problem(reason: str, message: str) -> str:
    if reason == "outbox-not-writable":
        return ("The hotspot may not write into the hotspot-outbox folder of this drive, so the "
                "contributions were not copied (on a drive formatted as ext4 the folder must "
                "be writable by everyone).")
    if reason == "drive-full":
        return "The drive is full, so the contributions were not copied."
    return f"The contributions could not be copied onto the drive: {message}"


def _unusable_message(dev: BlockDevice, verdict: Verdict | None) -> str:
    reason = verdict.reason if verdict else ""
    if "automounter" in reason:
        return ("Another program on the hotspot opened this drive first, so the hotspot cannot "
                "read it. Ask the person who looks after the hotspot.")
    if "encrypted" in reason:
        return ("This drive is encrypted (locked with a password), so the hotspot cannot read "
                "it. Use a drive that is not encrypted.")
    return ("The hotspot cannot read this drive: it is not formatted in a way the hotspot "
            "understands. Use a drive formatted as FAT32, exFAT, NTFS or ext4.")


def _gone_soon(dev: BlockDevice) -> bool:
    """After a read failure: did the drive go away (taken out) or is it still there (failing)?"""
    deadline = time.monotonic() + GONE_WAIT_SECONDS
    while True:
        if not device_present(dev):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


# -- the event loop ------------------------------------------------------------------------------

REQUEST_CHECK_SECONDS = 2.0  # how often the watcher looks for a request from the console


class UsbWatcher:
    """Turns device events into drive jobs, one drive at a time, in a worker thread.

    ``classify_device(dev) -> Verdict`` and ``handler`` (``handle(job)``) are arguments, so the
    same loop runs with a fake monitor and handler in tests.
    """

    def __init__(self, classify_device: Callable[[BlockDevice], Verdict], handler, *,
                 on_removed: Callable[[BlockDevice], None] | None = None,
                 outbox_request: Callable[[], int | None] | None = None,
                 present: Callable[[BlockDevice], bool] = device_present):
        self.classify_device = classify_device
        self.handler = handler
        self.on_removed = on_removed
        # The console's "copy the contributions onto the drive": a changing stamp, or None.
        self.outbox_request = outbox_request
        self._request_seen: int | None = None
        self.present = present
        self.devices: dict[str, BlockDevice] = {}  # the drives taken on, by device name
        self.known: dict[str, tuple] = {}       # device name -> key of the drive taken on
        self.ignored: dict[str, tuple] = {}     # device name -> key last ignored (log once)
        self.jobs: queue.Queue[DriveJob | None] = queue.Queue()
        self.pending: dict[str, DriveJob] = {}
        self.active: DriveJob | None = None
        self._lock = threading.Lock()
        self._stop_read, self._stop_write = os.pipe()
        self._stopping = False

    def stop(self) -> None:
        """Safe from a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._stop_write, b"x")

    # events

    def on_device(self, dev: BlockDevice) -> None:
        if dev.action == "remove" or (not dev.fs_type and dev.name in self.known):
            self._gone(dev)
            return
        verdict = self.classify_device(dev)
        if not verdict.use:
            if self.ignored.get(dev.name) != dev.key:
                self.ignored[dev.name] = dev.key
                log.info("Ignoring %s: %s.", dev.devnode, verdict.reason)
                if verdict.report and dev.action != "remove":
                    self._enqueue(DriveJob(dev, report_only=verdict))
            return
        self.ignored.pop(dev.name, None)
        if self.known.get(dev.name) == dev.key:
            log.debug("%s: already taken care of.", dev.devnode)
            return
        if dev.name in self.known:
            self._gone(dev)            # another drive on the same device name
        self.known[dev.name] = dev.key
        self.devices[dev.name] = dev
        log.info("USB drive %s (%s, %s) found.", dev.devnode, dev.fs_type,
                 _size_words(dev.size))
        self._enqueue(DriveJob(dev))

    def _enqueue(self, job: DriveJob) -> None:
        with self._lock:
            self.pending[job.device.name] = job
        self.jobs.put(job)

    def _gone(self, dev: BlockDevice) -> None:
        was_known = self.known.pop(dev.name, None) is not None
        self.devices.pop(dev.name, None)
        self.ignored.pop(dev.name, None)
        with self._lock:
            pending = self.pending.pop(dev.name, None)
            active = self.active
        if pending is not None:
            pending.cancel()
        if active is not None and active.device.name == dev.name:
            log.warning("%s went away while it was being read.", dev.devnode)
            active.cancel()
        elif was_known:
            log.info("%s was taken out.", dev.devnode)
            if self.on_removed is not None:
                self.on_removed(dev)

    def check_outbox_request(self) -> None:
        """A new request from the console: read the drives that are plugged in again (their
        outbox is written then); with none plugged in, the next drive does it."""
        if self.outbox_request is None:
            return
        stamp = self.outbox_request()
        if stamp is None or stamp == self._request_seen:
            return
        self._request_seen = stamp
        with self._lock:
            busy = set(self.pending) | ({self.active.device.name} if self.active else set())
        for name, dev in list(self.devices.items()):
            if name not in busy and self.present(dev):
                log.info("Copying the contributions onto %s, as asked on the console.",
                         dev.devnode)
                self._enqueue(DriveJob(dev))

    # loop

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            with self._lock:
                if self.pending.get(job.device.name) is job:
                    del self.pending[job.device.name]
                if job.cancelled.is_set():
                    continue
                self.active = job
            try:
                self.handler.handle(job)
            except Exception:  # noqa: BLE001 - one drive must not stop the watcher
                log.exception("Handling %s failed.", job.device.devnode)
            finally:
                with self._lock:
                    self.active = None

    def run(self, monitor, existing: Callable[[], Iterable[BlockDevice]],
            ready: Callable[[], None] | None = None) -> None:
        """Handle the drives present now, then events, until ``stop``.

        The monitor must already be receiving, so nothing plugged in meanwhile is missed (a
        drive seen twice is taken on once).
        """
        worker = threading.Thread(target=self._work, name="usb-drives", daemon=True)
        worker.start()
        try:
            for dev in existing():
                if self._stopping:
                    break
                self.on_device(dev)
            if ready is not None:
                ready()
            while not self._stopping:
                readable, _, _ = select.select([monitor, self._stop_read], [], [],
                                               REQUEST_CHECK_SECONDS)
                if self._stop_read in readable:
                    break
                if monitor in readable:
                    dev = monitor.receive()
                    if dev is not None:
                        self.on_device(dev)
                self.check_outbox_request()
        finally:
            with self._lock:
                for job in self.pending.values():
                    job.cancel(removed=False)
                self.pending.clear()
                active = self.active
            if active is not None:
                active.cancel(removed=False)
            self.jobs.put(None)
            worker.join()
            os.close(self._stop_read)
            os.close(self._stop_write)


class UdevMonitor:
    """pyudev's monitor as the watcher sees it: ``fileno()`` and ``receive() -> BlockDevice``."""

    def __init__(self, context=None):
        import pyudev

        self.context = context or pyudev.Context()
        self.monitor = pyudev.Monitor.from_netlink(self.context)
        self.monitor.filter_by("block")     # a socket filter: the kernel drops other events
        with contextlib.suppress(Exception):
            self.monitor.set_receive_buffer_size(4 * 1024 * 1024)
        self.monitor.start()

    def fileno(self) -> int:
        return self.monitor.fileno()

    def receive(self) -> BlockDevice | None:
        device = self.monitor.poll(timeout=0)
        if device is None:
            return None
        try:
            return BlockDevice.from_udev(device)
        except Exception as exc:  # noqa: BLE001 - a device that vanished mid-read
            log.debug("Could not read an event's device: %r", exc)
            return None

    def existing(self) -> list[BlockDevice]:
        found = []
        for device in self.context.list_devices(subsystem="block"):
            with contextlib.suppress(Exception):
                found.append(BlockDevice.from_udev(device))
        return found


# -- the commands --------------------------------------------------------------------------------

def add_commands(commands) -> dict[str, Callable]:
    watch = commands.add_parser(
        "usb-watch", help="watch for USB drives: install their update packs, fill their outbox "
                          "(runs as root, from hotspot-usb.service)")
    watch.add_argument("--no-existing", action="store_true",
                       help="do not look at drives already plugged in when starting")
    status = commands.add_parser("usb-status", help="what the USB watcher is doing, and the "
                                                    "drives it saw")
    status.add_argument("--json", action="store_true", help="print JSON")
    # Internal: what the watcher runs as the service user on a mounted drive (no help line).
    read = commands.add_parser("usb-read-drive")
    read.add_argument("mountpoint", type=Path)
    write = commands.add_parser("usb-write-outbox")
    write.add_argument("mountpoint", type=Path)
    return {"usb-watch": cmd_usb_watch, "usb-status": cmd_usb_status,
            "usb-read-drive": cmd_usb_read_drive, "usb-write-outbox": cmd_usb_write_outbox}


def cmd_usb_status(args: argparse.Namespace, config) -> int:
    state = read_usb_state(config.data_path)
    if args.json:
        print(json.dumps(state, ensure_ascii=False, indent=2))
    else:
        print("\n".join(describe_usb_state(state)))
    return 0


def cmd_usb_read_drive(args: argparse.Namespace, config) -> int:
    from .usb_drive import run_child

    return run_child("read", args.mountpoint, config)


def cmd_usb_write_outbox(args: argparse.Namespace, config) -> int:
    from .usb_drive import run_child

    return run_child("write", args.mountpoint, config)


def _prepare_data_dir(config, user: ServiceUser) -> Path:
    from .library import DataPaths

    paths = DataPaths(config.data_path)
    existed = paths.root.exists()
    paths.create()
    if not existed and os.geteuid() == 0 and not user.is_current:
        # Made here by root: give it to the user the server and the imports run as.
        for path in (paths.root, paths.media):
            os.chown(path, user.uid, user.gid)
    return paths.root


def cmd_usb_watch(args: argparse.Namespace, config) -> int:
    from .config import resolve_config_path
    from .server import setup_logging

    setup_logging(config.server.log_level)
    if os.geteuid() != 0:
        raise HotspotError("hotspot usb-watch must run as root: it mounts drives. It reads "
                           "them as usb.service_user. (Run it from hotspot-usb.service.)")
    user = resolve_service_user(config.usb.service_user)
    data_dir = _prepare_data_dir(config, user)
    mount_dir = Path(config.usb.mount_dir)
    mounter = Mounter(mount_dir, user)
    mounter.prepare()
    mounter.cleanup_stale()
    state = UsbStateFile(data_dir)
    config_path = resolve_config_path(args.config)
    runner = ChildRunner(user, data_dir, Path(config_path).resolve() if config_path else None)
    handler = DriveHandler(state, mounter, runner)
    allow_loop = config.usb.allow_loop_devices
    if allow_loop:
        log.warning("usb.allow_loop_devices is on: loop devices are read like USB drives "
                    "(for tests only).")

    def classify_now(dev: BlockDevice) -> Verdict:
        return classify(dev, SystemView.read(mount_dir), allow_loop=allow_loop)

    watcher = UsbWatcher(classify_now, handler,
                         on_removed=lambda dev: state.drive_removed(dev.name),
                         outbox_request=lambda: outbox_request_stamp(data_dir))
    monitor = UdevMonitor()      # receiving before the present drives are listed
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watcher.stop())
    existing = (lambda: []) if args.no_existing else monitor.existing

    def ready() -> None:
        print(f"Watching for USB drives (service user: {user.name}).", flush=True)

    try:
        watcher.run(monitor, existing, ready)
    finally:
        state.watcher_stopped()
    log.info("Stopped watching for USB drives.")
    return 0

