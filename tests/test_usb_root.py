"""The USB watcher on real drives: loop devices, real udev events, real mounts (root).

Each test builds an ext4 file system image from a folder (``mkfs.ext4 -d``: no mount needed),
starts the real ``hotspot usb-watch`` as a subprocess (``usb.allow_loop_devices = true``), and
attaches the image with ``losetup``: the kernel announces the device, ``systemd-udevd`` probes
it (``ID_FS_TYPE=ext4``) and the watcher receives the event over netlink, as it would for a USB
stick. (This kernel has no vfat and does not scan partitions on loop devices, so the drives
here are whole-disk ext4; FAT, exFAT and NTFS are tested on real hardware, see
docs/operators.md.) ``systemd-udevd`` is started for the session if it is not running.

**Taking a drive out in the middle of an import.** Reads from the loop device are slowed to
2 MB/s with the block I/O controller (``blkio.throttle.read_bps_device``), so the copy takes
seconds. Once the state file shows the first file copied, the test shuts the mounted file
system down (``FS_IOC_SHUTDOWN``: every read now fails with EIO, as when a stick is pulled
out) and detaches the loop device (``losetup -d``, done by the kernel when the watcher lets go
of the mount). No test-only switch in the code.

The service user is ``root`` here: the Python running the tests lives in a folder other users
cannot read. The drop to an unprivileged user is checked with ``id`` run as ``nobody``.

Marked ``root``; skipped with the reason when not root, failed in CI (``CI=true``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyrage import x25519

from conftest import ServerProcess, in_ci
from hotspot.bundle import OUTBOX_DIR, read_bundle
from hotspot.contributions import ContributionQueue
from hotspot.library import DataPaths
from hotspot.media import MediaStore
from hotspot.packs import import_pack, installed_state
from hotspot.usb import resolve_service_user
from hotspot.usb_state import read_usb_state
from test_packs import MB, Publisher, big_catalog, v1_catalog, v2_catalog
from test_reader import catalog_files, to_tar
from test_usb import submit, write_usb_config

pytestmark = pytest.mark.root

FS_IOC_SHUTDOWN = 0x8004587D        # _IOR('X', 125, __u32)
SHUTDOWN_NOLOGFLUSH = 2
THROTTLE = Path("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device")
UDEVD = ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd")


@pytest.fixture(autouse=True)
def needs_root():
    missing = [tool for tool in ("mkfs.ext4", "losetup", "mount", "umount", "udevadm",
                                 "debugfs") if shutil.which(tool) is None]
    reason = None
    if os.geteuid() != 0:
        reason = "needs root for loop devices and mounts"
    elif missing:
        reason = f"needs {', '.join(missing)} (Debian: e2fsprogs, util-linux, udev)"
    elif not Path("/dev/loop-control").exists():
        reason = "needs loop devices (/dev/loop-control)"
    elif not any(Path(p).exists() for p in UDEVD):
        reason = "needs systemd-udevd (Debian: udev)"
    if reason:
        if in_ci():
            pytest.fail(f"{reason} (CI=true: root tests must run)")
        pytest.skip(reason)


def udevd_running() -> bool:
    return subprocess.run(["udevadm", "control", "--ping", "--timeout=2"],
                          capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def udevd():
    """systemd-udevd, started for these tests when it is not running (and stopped after)."""
    if os.geteuid() != 0 or shutil.which("udevadm") is None:
        yield None
        return
    started = None
    if not udevd_running():
        binary = next(p for p in UDEVD if Path(p).exists())
        started = subprocess.Popen([binary], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not udevd_running():
            assert started.poll() is None, "systemd-udevd exited"
            assert time.monotonic() < deadline, "systemd-udevd did not start"
            time.sleep(0.1)
    try:
        yield started
    finally:
        if started is not None:
            started.terminate()
            try:
                started.wait(timeout=10)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait()


# -- drives --------------------------------------------------------------------------------------

class Drive:
    """An ext4 image made from a folder, attached and detached like a USB stick."""

    def __init__(self, tmp_path: Path, name: str, content: Path, size_mb: int = 48):
        self.image = tmp_path / f"{name}.img"
        subprocess.run(["truncate", "-s", f"{size_mb}M", str(self.image)], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", "-d", str(content), str(self.image)],
                       check=True)
        self.loop: str | None = None

    @property
    def name(self) -> str:
        return Path(self.loop).name

    def attach(self, loop: str | None = None) -> str:
        argv = ["losetup", "--show", loop, str(self.image)] if loop else \
            ["losetup", "--find", "--show", str(self.image)]
        self.loop = subprocess.run(argv, check=True, capture_output=True,
                                   text=True).stdout.strip() or loop
        return self.loop

    def attached(self) -> bool:
        if self.loop is None:
            return False
        out = subprocess.run(["losetup", "-j", str(self.image)], capture_output=True,
                             text=True).stdout
        return out.startswith(self.loop + ":")

    def detach(self) -> None:
        if self.attached():      # only our own device, never one reused by someone else
            subprocess.run(["losetup", "-d", self.loop], check=True)
        wait_for(lambda: not self.attached(), 20, "the loop device to be detached")

    def digest(self) -> str:
        return hashlib.sha256(self.image.read_bytes()).hexdigest()

    def extract(self, path: str, target: Path) -> Path:
        """Copy a folder out of the image without mounting it."""
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debugfs", "-R", f"rdump {path} {target}", str(self.image)],
                       check=True, capture_output=True)
        return target / Path(path).name


@pytest.fixture
def drives():
    made: list[Drive] = []
    yield made
    for drive in made:
        with contextlib.suppress(Exception):
            drive.detach()


def wait_for(predicate, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def mounts_under(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def mount_options(point: Path) -> set[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(point):
                return set(fields[5].split(","))
    return set()


# -- the watcher ---------------------------------------------------------------------------------

class Watcher:
    """``hotspot usb-watch`` as a real subprocess, its output in a file."""

    def __init__(self, tmp_path: Path, config: Path, data_dir: Path):
        self.data_dir = data_dir
        self.log = tmp_path / "usb-watch.log"
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "hotspot.cli", "--config",
                                      str(config), "usb-watch"],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "Watching for USB drives" in self.text() or self.proc.poll()
                     is not None, 30, "the watcher to start")
            assert self.proc.poll() is None, self.text()
        except BaseException:
            self.stop()
            raise

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def state(self) -> dict:
        return read_usb_state(self.data_dir)

    def finished(self, count: int = 1, timeout: float = 90) -> dict:
        """The newest history entry once ``count`` drives were finished."""
        def ready():
            history = self.state()["history"]
            return history[0] if len(history) >= count else None
        try:
            return wait_for(ready, timeout, f"{count} drives to be finished")
        except AssertionError:
            raise AssertionError(self.text()) from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        return self.proc.returncode


class Hotspot:
    """A data dir with version 1 of the test library, a publisher and a watcher config."""

    def __init__(self, tmp_path: Path, recipients: list[str] | None = None):
        self.tmp = tmp_path
        self.publisher = Publisher(tmp_path / "publisher")
        self.paths = DataPaths(tmp_path / "data")
        self.v1 = v1_catalog(self.publisher.files)
        import_pack(self.publisher.full(self.v1), self.paths, [self.publisher.public],
                    margin_bytes=0)
        self.mount_dir = tmp_path / "mnt"
        self.config = write_usb_config(tmp_path, self.publisher, self.paths.root, recipients,
                                       service_user="root", allow_loop_devices=True,
                                       mount_dir=str(self.mount_dir))
        self.watcher: Watcher | None = None

    def folder(self, name: str) -> Path:
        path = self.tmp / "content" / name
        path.mkdir(parents=True)
        return path

    def start(self) -> Watcher:
        self.watcher = Watcher(self.tmp, self.config, self.paths.root)
        return self.watcher

    def stop(self) -> None:
        if self.watcher is not None:
            code = self.watcher.stop()
            assert code == 0, self.watcher.text()
            assert mounts_under(self.mount_dir) == []


@pytest.fixture
def hotspot(tmp_path, udevd):
    made = []

    def make(**kwargs) -> Hotspot:
        made.append(Hotspot(tmp_path, **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.stop()


def make_drive(tmp_path: Path, drives: list, name: str, content: Path, **kwargs) -> Drive:
    drive = Drive(tmp_path, name, content, **kwargs)
    drives.append(drive)
    return drive


# -- the tests -----------------------------------------------------------------------------------

def test_a_drive_with_a_valid_pack_is_imported_and_served(tmp_path, hotspot, drives):
    h = hotspot()
    content = h.folder("stick")
    (content / "hotspot").mkdir()
    to_tar(h.publisher.full(v2_catalog(h.publisher.files))).rename(
        content / "hotspot" / "test-2.hotspot-pack.tar")
    drive = make_drive(tmp_path, drives, "stick", content)
    before = drive.digest()
    server = ServerProcess(["--data-dir", str(h.paths.root), "serve", "--host", "127.0.0.1",
                            "--port", "0"])
    try:
        assert server.get("/r/new-guide").status == 404
        watcher = h.start()
        drive.attach()
        entry = watcher.finished()
        assert entry["state"] == "done", entry
        assert entry["drive"]["device"] == drive.name
        assert entry["drive"]["filesystem"] == "ext4"
        assert entry["imported"] == [{"pack": "hotspot/test-2.hotspot-pack.tar",
                                      "library": "test", "version": 2}]
        assert watcher.state()["safe_to_remove"]
        wait_for(lambda: server.get("/r/new-guide").status == 200, 15, "the new resource")
        assert mounts_under(h.mount_dir) == []
    finally:
        assert server.stop() == 0, "".join(server.output)
    drive.detach()
    assert drive.digest() == before            # read-only: not one byte of the drive changed
    wait_for(lambda: h.watcher.state()["current"]["state"] == "idle", 20, "idle after removal")


def test_a_drive_already_attached_when_the_watcher_starts_is_handled(tmp_path, hotspot,
                                                                      drives):
    h = hotspot()
    content = h.folder("stick")
    shutil.copytree(h.publisher.full(v2_catalog(h.publisher.files)),
                    content / "test-2.hotspot-pack")
    drive = make_drive(tmp_path, drives, "stick", content)
    drive.attach()
    subprocess.run(["udevadm", "settle", "--timeout=20"], check=True)
    watcher = h.start()
    entry = watcher.finished()
    assert entry["state"] == "done" and entry["drive"]["device"] == drive.name, entry
    assert installed_state(h.paths)["version"] == 2


def test_a_drive_with_a_bad_pack_is_refused_and_nothing_changes(tmp_path, hotspot, drives):
    h = hotspot()
    before = h.paths.catalog.read_bytes()
    stored = set(MediaStore(h.paths.media).iter_hashes())
    new = big_catalog(h.publisher.files, 2, [1])
    pack = h.publisher.full(new)
    # The new file altered after signing (same size): found while it is copied, then refused.
    new_sha = new["resources"][-1]["files"][0]["sha256"]
    victim = pack / "files" / new_sha
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    content = h.folder("stick")
    shutil.copytree(pack, content / "test-2.hotspot-pack")
    drive = make_drive(tmp_path, drives, "stick", content)
    watcher = h.start()
    drive.attach()
    entry = watcher.finished()
    assert entry["state"] == "error" and entry["reason"] == "packs-refused", entry
    assert "damaged or was altered" in entry["refused"][0]["reason"]
    assert h.paths.catalog.read_bytes() == before
    assert set(MediaStore(h.paths.media).iter_hashes()) == stored


def test_a_drive_with_two_versions_imports_only_the_newest(tmp_path, hotspot, drives):
    h = hotspot()
    content = h.folder("stick")
    shutil.copytree(h.publisher.full(v2_catalog(h.publisher.files)),
                    content / "test-2.hotspot-pack")
    (content / "hotspot").mkdir()
    to_tar(h.publisher.full(v2_catalog(h.publisher.files, version=3))).rename(
        content / "hotspot" / "test-3.hotspot-pack.tar")
    drive = make_drive(tmp_path, drives, "stick", content)
    watcher = h.start()
    drive.attach()
    entry = watcher.finished()
    assert entry["state"] == "done", entry
    assert [i["version"] for i in entry["imported"]] == [3]
    state = installed_state(h.paths)
    assert state["version"] == 3 and state["previous"]["version"] == 1   # 2 never installed


@contextlib.contextmanager
def slow_reads(loop: str, bytes_per_second: int):
    """Throttle reads from one loop device (cgroup v1 block I/O controller, root cgroup)."""
    if not THROTTLE.exists():
        pytest.skip(f"needs the cgroup v1 block I/O throttle ({THROTTLE})")
    number = os.stat(loop).st_rdev
    rule = f"{os.major(number)}:{os.minor(number)}"
    THROTTLE.write_text(f"{rule} {bytes_per_second}\n")
    try:
        yield
    finally:
        THROTTLE.write_text(f"{rule} 0\n")


def pull_out(mountpoint: Path) -> None:
    """What a reader sees when a stick is pulled out: every read fails with EIO from now on."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", SHUTDOWN_NOLOGFLUSH))
    finally:
        os.close(fd)


def test_a_drive_taken_out_mid_import_changes_nothing_and_plugging_it_back_finishes(
        tmp_path, hotspot, drives):
    h = hotspot()
    before = h.paths.catalog.read_bytes()
    new = big_catalog(h.publisher.files, 2, [1, 6, 6])
    order = [e["sha256"] for e in new["resources"][-1]["files"]]
    pack = h.publisher.full(new, order=order + [s for s in catalog_files(new) if s not in order])
    content = h.folder("stick")
    shutil.copytree(pack, content / "test-2.hotspot-pack")
    drive = make_drive(tmp_path, drives, "stick", content)
    watcher = h.start()
    loop = subprocess.run(["losetup", "--find"], check=True, capture_output=True,
                          text=True).stdout.strip()
    with slow_reads(loop, 2 * MB):
        drive.attach(loop)
        mountpoint = h.mount_dir / drive.name

        def first_file_copied():
            current = watcher.state()["current"]
            progress = current.get("progress") or {}
            return current["state"] == "importing" and progress.get("files_done", 0) >= 1 \
                and progress.get("stage") == "copying"

        wait_for(first_file_copied, 60, "the first file to be copied")
        assert {"ro", "nosuid", "nodev", "noexec", "nosymfollow"} <= mount_options(mountpoint)
        assert not watcher.state()["safe_to_remove"]
        pull_out(mountpoint)
        subprocess.run(["losetup", "-d", drive.loop], check=True)   # gone once unmounted
        entry = watcher.finished()
    assert entry["state"] == "error" and entry["reason"] == "removed-too-early", entry
    assert "Put the drive back in to finish" in entry["message"]
    assert h.paths.catalog.read_bytes() == before
    assert installed_state(h.paths)["version"] == 1
    assert mounts_under(h.mount_dir) == []
    wait_for(lambda: not drive.attached(), 20, "the loop device to go")
    media = MediaStore(h.paths.media)
    assert media.has(order[0]) and not media.has(order[2])

    drive.attach()                                  # put back in: the import finishes
    entry = watcher.finished(2)
    assert entry["state"] == "done", entry
    assert [i["version"] for i in entry["imported"]] == [2]
    assert installed_state(h.paths)["version"] == 2
    for sha in order:
        assert hashlib.sha256(media.path_for(sha).read_bytes()).hexdigest() == sha


def test_a_drive_with_an_outbox_receives_the_bundle(tmp_path, hotspot, drives):
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    h = hotspot(recipients=[recipient])
    queue = ContributionQueue(h.paths.root / "contributions", [recipient])
    uuids = sorted(submit(queue, f"report {n}") for n in range(2))
    content = h.folder("stick")
    (content / OUTBOX_DIR).mkdir()
    drive = make_drive(tmp_path, drives, "stick", content)
    watcher = h.start()
    drive.attach()
    entry = watcher.finished()
    assert entry["state"] == "done", entry
    assert entry["exported"]["contributions"] == 2
    assert mounts_under(h.mount_dir) == []
    drive.detach()
    outbox = drive.extract(f"/{OUTBOX_DIR}", tmp_path / "from-the-drive")
    bundles = sorted(outbox.iterdir())
    assert [b.name for b in bundles] == [entry["exported"]["bundle"]]
    assert sorted(item.uuid for item in read_bundle(bundles[0])) == uuids
    assert {e.state for e in queue.list()} == {"exported"}


def test_a_drive_with_no_packs_is_ignored_politely(tmp_path, hotspot, drives):
    h = hotspot()
    before = h.paths.catalog.read_bytes()
    content = h.folder("photos")
    (content / "DCIM").mkdir()
    (content / "DCIM" / "IMG_0001.JPG").write_bytes(b"\xff\xd8\xff" + os.urandom(5000))
    (content / "backup.zip").write_bytes(os.urandom(3000))
    drive = make_drive(tmp_path, drives, "photos", content)
    before_drive = drive.digest()
    watcher = h.start()
    drive.attach()
    entry = watcher.finished()
    assert entry["state"] == "done" and entry["reason"] is None, entry
    assert "nothing for the hotspot on this drive" in entry["message"]
    assert entry["imported"] == [] and entry["refused"] == []
    assert h.paths.catalog.read_bytes() == before
    drive.detach()
    assert drive.digest() == before_drive


def test_a_link_on_the_drive_pointing_outside_it_is_not_followed(tmp_path, hotspot, drives):
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    h = hotspot(recipients=[recipient])
    queue = ContributionQueue(h.paths.root / "contributions", [recipient])
    submit(queue, "report")
    before = h.paths.catalog.read_bytes()
    # A valid, newer pack and an empty folder on the hotspot's own disk, outside the drive.
    outside = tmp_path / "outside"
    shutil.copytree(h.publisher.full(v2_catalog(h.publisher.files)),
                    outside / "test-2.hotspot-pack")
    (outside / "outbox").mkdir()
    content = h.folder("stick")
    (content / "test-2.hotspot-pack").symlink_to(outside / "test-2.hotspot-pack")
    (content / "hotspot").symlink_to(outside)
    (content / OUTBOX_DIR).symlink_to(outside / "outbox")
    drive = make_drive(tmp_path, drives, "stick", content)
    watcher = h.start()
    drive.attach()
    entry = watcher.finished()
    assert entry["state"] == "error" and entry["reason"] == "packs-refused", entry
    assert {r["pack"] for r in entry["refused"]} == {"test-2.hotspot-pack", "hotspot/"}
    assert h.paths.catalog.read_bytes() == before
    assert list((outside / "outbox").iterdir()) == []
    assert {e.state for e in queue.list()} == {"queued"}
    assert "remount" not in watcher.text().lower()      # never made writable


def test_the_child_runs_as_the_unprivileged_user_with_only_its_groups():
    nobody = resolve_service_user("nobody")
    result = subprocess.run(["id", "-u", "-n"], capture_output=True, text=True,
                            **nobody.popen_kwargs())
    assert result.stdout.strip() == "nobody"
    groups = subprocess.run(["id", "-G"], capture_output=True, text=True,
                            **nobody.popen_kwargs()).stdout.split()
    assert "0" not in groups and set(groups) == {str(g) for g in nobody.groups}


def test_stopping_the_watcher_while_it_works_cleans_up(tmp_path, hotspot, drives):
    h = hotspot()
    new = big_catalog(h.publisher.files, 2, [4, 4])
    content = h.folder("stick")
    shutil.copytree(h.publisher.full(new), content / "test-2.hotspot-pack")
    drive = make_drive(tmp_path, drives, "stick", content)
    watcher = h.start()
    loop = subprocess.run(["losetup", "--find"], check=True, capture_output=True,
                          text=True).stdout.strip()
    with slow_reads(loop, 1 * MB):
        drive.attach(loop)
        wait_for(lambda: watcher.state()["current"]["state"] == "importing", 60, "importing")
        assert watcher.stop() == 0, watcher.text()
    h.watcher = None
    assert mounts_under(h.mount_dir) == []
    state = read_usb_state(h.paths.root)
    assert state["current"]["state"] == "error"
    assert state["current"]["reason"] == "watcher-stopped" and state["safe_to_remove"]
    assert installed_state(h.paths)["version"] == 1
    progress = json.loads(h.paths.import_progress.read_text())
    assert progress["state"] == "failed" and "interrupted" in progress["reason"]
