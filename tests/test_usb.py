"""The USB watcher without root: its decisions, its event loop, and a whole drive read for real.

- **Decisions** (``classify``): which block devices are drives to read, and why the others are
  not (system disks, loop devices, unsupported formats), including a check against this
  machine's own mounted root disk.
- **The event loop** (``UsbWatcher``) driven by a fake monitor on a real socket pair (the
  pattern of pyudev's own tests): drives present at start, the same drive announced twice,
  a drive taken out in the middle, a loop device detached, stopping.
- **A drive read for real** (``DriveHandler`` with the real child process ``hotspot
  usb-read-drive`` / ``usb-write-outbox``): the only fake is the mount, a folder standing in
  for the mounted drive. Packs are real signed packs; the bundle is read back and checked.

The same flows on real loop devices, udev events and mounts are in ``test_usb_root.py``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from pyrage import x25519

from conftest import ServerProcess
from hotspot.bundle import OUTBOX_DIR, read_bundle
from hotspot.catalog import load_catalog
from hotspot.contributions import ContributionQueue
from hotspot.errors import ConfigError
from hotspot.library import DataPaths
from hotspot.packs import import_pack, installed_state
from hotspot.usb import (BlockDevice, ChildRunner, DriveHandler, DriveJob, Mounter, ServiceUser,
                         REQUEST_CHECK_SECONDS, SystemView, UsbWatcher, Verdict, classify,
                         resolve_service_user)
from hotspot.usb_state import (HISTORY_SIZE, STATE_FILE, UsbStateFile, describe_usb_state,
                               outbox_request_stamp, read_usb_state, request_outbox)
from test_packs import Publisher, v1_catalog, v2_catalog
from test_reader import to_tar

REPO = Path(__file__).resolve().parent.parent


# -- block devices as udev describes them ----------------------------------------------------------

def usb_partition(name: str = "sdb1", **fields) -> dict:
    disk = name.rstrip("0123456789")
    data = {"name": name, "devnode": f"/dev/{name}", "devtype": "partition", "disk": disk,
            "number": [8, 17], "action": "add", "fs_type": "vfat", "fs_usage": "filesystem",
            "fs_version": "FAT32", "fs_uuid": "ABCD-1234", "bus": "usb", "size": 16 * 10**9}
    data.update(fields)
    return data


def device(**fields) -> BlockDevice:
    return BlockDevice.from_dict(usb_partition(**fields))


NOTHING_MOUNTED = SystemView()


@pytest.mark.parametrize("fields, use, report, words", [
    ({}, True, False, "USB drive"),
    ({"fs_type": "exfat"}, True, False, ""),
    ({"fs_type": "ntfs"}, True, False, ""),
    ({"fs_type": "ext4", "devtype": "disk", "name": "sdc", "disk": "sdc"}, True, False, ""),
    ({"bus": "ata"}, False, False, "not a USB device"),
    ({"bus": None}, False, False, "not a USB device"),
    ({"name": "loop3", "disk": "loop3", "bus": None, "devtype": "disk"}, False, False,
     "loop device"),
    ({"size": 0}, False, False, "no medium"),
    ({"fs_type": None, "part_table": True, "devtype": "disk", "name": "sdb", "disk": "sdb"},
     False, False, "partitions"),
    ({"fs_type": None, "devtype": "disk", "name": "sdb", "disk": "sdb"}, False, True,
     "no file system"),
    ({"fs_type": "btrfs"}, False, True, "format (btrfs)"),
    ({"fs_type": "hfsplus"}, False, True, "format (hfsplus)"),
    ({"fs_type": "crypto_LUKS", "fs_usage": "crypto"}, False, True, "encrypted"),
    ({"fs_type": "swap", "fs_usage": "other"}, False, False, "not a file system"),
    ({"devtype": "partition_table"}, False, False, "not a disk"),
])
def test_classify(fields, use, report, words):
    verdict = classify(device(**fields), NOTHING_MOUNTED)
    assert (verdict.use, verdict.report) == (use, report), verdict
    assert words in verdict.reason


def test_loop_devices_only_when_allowed():
    loop = device(name="loop3", disk="loop3", bus=None, devtype="disk", fs_type="ext4")
    assert not classify(loop, NOTHING_MOUNTED).use
    assert classify(loop, NOTHING_MOUNTED, allow_loop=True).use


def test_disks_the_system_uses_are_never_read():
    view = SystemView(mounted={(8, 2): "/"}, busy_disks={"sdb": "/"}, held={"sdd"})
    # The Pi booting from a USB SSD: its other partitions are left alone too, quietly.
    verdict = classify(device(name="sdb1", number=[8, 17]), view)
    assert not verdict.use and not verdict.report and "system uses" in verdict.reason
    # A drive a desktop automounter took: told to the caretaker (nothing would happen else).
    view = SystemView(mounted={(8, 33): "/media/pi/STICK"}, busy_disks={"sdc": "/media/pi/STICK"})
    verdict = classify(device(name="sdc1", disk="sdc", number=[8, 33]), view)
    assert not verdict.use and verdict.report and "automounter" in verdict.reason
    assert not classify(device(name="sdd1", disk="sdd"), SystemView(held={"sdd"})).use


def test_this_machines_root_disk_is_seen_as_a_system_disk():
    st = os.stat("/")
    number = (os.major(st.st_dev), os.minor(st.st_dev))
    if number[0] == 0:
        pytest.skip("the root file system is not on a block device here (overlay, tmpfs)")
    view = SystemView.read()
    assert number in view.mounted
    fake = device(name="vdz9", disk="vdz", number=list(number))
    verdict = classify(fake, view)
    assert not verdict.use and "system uses" in verdict.reason


def test_our_own_mounts_do_not_count_as_the_systems(tmp_path):
    # Everything mounted under the watcher's folder is left out of the system's devices.
    view = SystemView.read(Path("/"))
    assert view.mounted == {}


# -- the event loop with a fake monitor on a real socket ------------------------------------------

class FakeMonitor:
    """Emits udev-like events over a real socket pair, like pyudev's tests/plugins/fake_monitor."""

    def __init__(self):
        self.client, self.server = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, action: str | None, **fields) -> None:
        self.server.send(json.dumps(usb_partition(action=action, **fields)).encode())

    def fileno(self) -> int:
        return self.client.fileno()

    def receive(self) -> BlockDevice:
        return BlockDevice.from_dict(json.loads(self.client.recv(65536)))

    def close(self) -> None:
        self.client.close()
        self.server.close()


class FakeHandler:
    """Records jobs; a job can be held until released, to act on it in the middle."""

    def __init__(self):
        self.jobs: list[DriveJob] = []
        self.started = threading.Event()
        self.finished = threading.Event()
        self.hold = threading.Event()
        self.hold.set()

    def handle(self, job: DriveJob) -> None:
        self.jobs.append(job)
        self.started.set()
        while not self.hold.wait(0.01):
            if job.cancelled.is_set():
                break
        self.finished.set()


def wait_for(predicate, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Loop:
    """A watcher running in a thread on a fake monitor."""

    def __init__(self, existing=(), view: SystemView = NOTHING_MOUNTED, allow_loop=False):
        self.monitor = FakeMonitor()
        self.handler = FakeHandler()
        self.removed: list[str] = []
        self.watcher = UsbWatcher(lambda dev: classify(dev, view, allow_loop=allow_loop),
                                  self.handler,
                                  on_removed=lambda dev: self.removed.append(dev.name))
        self.ready = threading.Event()
        self.thread = threading.Thread(
            target=self.watcher.run,
            args=(self.monitor, lambda: [BlockDevice.from_dict(usb_partition(action=None, **f))
                                         for f in existing], self.ready.set))
        self.thread.start()
        assert self.ready.wait(10)

    def handled(self, count: int) -> list[DriveJob]:
        wait_for(lambda: len(self.handler.jobs) >= count, what=f"{count} jobs")
        return self.handler.jobs

    def settle(self) -> None:
        """Every event sent so far has been read (the socket is empty and the queue drained)."""
        wait_for(lambda: not _readable(self.monitor.client) and self.watcher.jobs.empty(),
                 what="events to be read")
        time.sleep(0.05)

    def stop(self) -> None:
        self.watcher.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        self.monitor.close()


def _readable(sock: socket.socket) -> bool:
    import select
    return bool(select.select([sock], [], [], 0)[0])


def test_a_drive_present_at_start_is_handled():
    loop = Loop(existing=[{"name": "sdb1"}])
    try:
        jobs = loop.handled(1)
        assert jobs[0].device.name == "sdb1" and jobs[0].device.action is None
    finally:
        loop.stop()


def test_the_same_drive_announced_twice_is_read_once(caplog):
    loop = Loop()
    try:
        loop.monitor.emit("add")
        loop.monitor.emit("change")          # udev often sends a change right after
        loop.monitor.emit("change")
        loop.handled(1)
        loop.settle()
        assert len(loop.handler.jobs) == 1
        # Taken out and put back in: read again.
        loop.monitor.emit("remove")
        loop.monitor.emit("add")
        loop.handled(2)
        loop.settle()
        assert len(loop.handler.jobs) == 2 and loop.removed == ["sdb1"]
        # Another drive on the same device name (a different file system) is a new drive.
        loop.monitor.emit("change", fs_uuid="FFFF-0000")
        loop.handled(3)
    finally:
        loop.stop()


def test_a_drive_taken_out_in_the_middle_cancels_its_job():
    loop = Loop()
    loop.handler.hold.clear()
    try:
        loop.monitor.emit("add")
        assert loop.handler.started.wait(10)
        job = loop.handler.jobs[0]
        loop.monitor.emit("remove")
        wait_for(job.cancelled.is_set, what="the job to be cancelled")
        assert job.removed
        assert loop.handler.finished.wait(10)
        loop.handler.hold.set()
        loop.monitor.emit("add")             # put back in: handled again
        assert len(loop.handled(2)) == 2 and not loop.handler.jobs[1].cancelled.is_set()
    finally:
        loop.handler.hold.set()
        loop.stop()


def test_a_detached_loop_device_is_a_drive_taken_out():
    loop = Loop(allow_loop=True)
    loop.handler.hold.clear()
    try:
        loop.monitor.emit("change", name="loop5", disk="loop5", devtype="disk", bus=None,
                          fs_type="ext4", number=[7, 5])
        assert loop.handler.started.wait(10)
        # losetup -d: udev sends a change with no file system any more.
        loop.monitor.emit("change", name="loop5", disk="loop5", devtype="disk", bus=None,
                          fs_type=None, fs_usage=None, fs_uuid=None, size=0, number=[7, 5])
        wait_for(loop.handler.jobs[0].cancelled.is_set, what="the job to be cancelled")
    finally:
        loop.handler.hold.set()
        loop.stop()


def test_drives_it_cannot_use_are_logged_once_and_reported_when_plugged_by_someone(caplog):
    view = SystemView(mounted={(8, 2): "/"}, busy_disks={"sda": "/"})
    caplog.set_level("INFO", logger="hotspot.usb")
    loop = Loop(view=view)
    try:
        loop.monitor.emit("change", name="sda2", disk="sda", bus="usb")       # the system disk
        loop.monitor.emit("change", name="sda2", disk="sda", bus="usb")
        loop.monitor.emit("add", name="sr0", disk="sr0", devtype="disk", bus="ata",
                          fs_type="iso9660")
        loop.monitor.emit("add", name="sdc1", disk="sdc", fs_type="hfsplus")
        loop.monitor.emit("change", name="sdc1", disk="sdc", fs_type="hfsplus")
        jobs = loop.handled(1)
        loop.settle()
        assert len(jobs) == 1 and jobs[0].report_only is not None
        assert jobs[0].device.name == "sdc1" and "hfsplus" in jobs[0].report_only.reason
        text = caplog.text
        assert text.count("Ignoring /dev/sda2: part of a disk the system uses") == 1
        assert "Ignoring /dev/sr0: not a USB device" in text
        assert "Ignoring /dev/sdc1: its format (hfsplus)" in text
    finally:
        loop.stop()


def test_stopping_cancels_the_drive_in_progress_without_calling_it_removed():
    loop = Loop()
    loop.handler.hold.clear()
    try:
        loop.monitor.emit("add")
        assert loop.handler.started.wait(10)
    finally:
        loop.stop()
    job = loop.handler.jobs[0]
    assert job.cancelled.is_set() and not job.removed


# -- the state file -------------------------------------------------------------------------------

def test_state_file_is_whole_and_tells_when_the_watcher_died(tmp_path):
    assert read_usb_state(tmp_path)["current"]["state"] == "idle"
    (tmp_path / STATE_FILE).write_text("{not json")
    state = read_usb_state(tmp_path)
    assert state["current"]["state"] == "idle" and state["history"] == []
    writer = UsbStateFile(tmp_path)
    writer.begin(device().describe())
    writer.set_state("importing")
    state = read_usb_state(tmp_path)
    assert state["current"]["state"] == "importing" and not state["safe_to_remove"]
    assert state["watcher_running"]
    # The watcher's process is gone (killed, power cut): the page must not say "importing".
    data = json.loads((tmp_path / STATE_FILE).read_text())
    data["watcher"]["pid"] = 2 ** 22 + 12345
    (tmp_path / STATE_FILE).write_text(json.dumps(data))
    state = read_usb_state(tmp_path)
    assert state["current"]["state"] == "error" and state["current"]["reason"] == "watcher-stopped"
    assert state["safe_to_remove"]
    # The next watcher puts that drive in the history and starts idle.
    again = UsbStateFile(tmp_path)
    assert again.current["state"] == "idle"
    assert again.data["history"][0]["reason"] == "watcher-stopped"


def test_history_is_short_and_keeps_no_labels(tmp_path):
    writer = UsbStateFile(tmp_path)
    for n in range(HISTORY_SIZE + 5):
        writer.begin(device(name=f"sdb{n}").describe())
        writer.finish("done", f"drive {n}")
    writer.drive_removed(f"sdb{HISTORY_SIZE + 4}")
    state = read_usb_state(tmp_path)
    assert state["current"]["state"] == "idle"
    assert len(state["history"]) == HISTORY_SIZE
    assert state["history"][0]["message"] == f"drive {HISTORY_SIZE + 4}"
    text = (tmp_path / STATE_FILE).read_text()
    assert "ABCD-1234" not in text                          # the file system id
    assert state["history"][0]["drive"] == {"device": f"sdb{HISTORY_SIZE + 4}",
                                            "filesystem": "FAT32", "size": 16 * 10**9,
                                            "description": "16 GB FAT32 drive"}
    assert any("16 GB FAT32 drive" in line for line in describe_usb_state(state))


def test_read_usb_state_takes_a_config_too(tmp_path):
    from hotspot.config import load_config
    config = load_config(None, {"data_dir": str(tmp_path)})
    UsbStateFile(tmp_path).set_state("done", "All done.")
    assert read_usb_state(config)["current"]["message"] == "All done."


# -- the service user and the mount options -------------------------------------------------------

def current_user() -> ServiceUser:
    entry = pwd.getpwuid(os.geteuid())
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid, (entry.pw_gid,), entry.pw_dir)


def test_service_user_rules():
    if os.geteuid() != 0:
        assert resolve_service_user("does-not-exist").uid == os.geteuid()
        return
    nobody = resolve_service_user("nobody")
    assert nobody.uid != 0 and nobody.popen_kwargs()["user"] == nobody.uid
    assert 0 not in nobody.popen_kwargs()["extra_groups"]
    with pytest.raises(ConfigError, match="does not exist. Create it"):
        resolve_service_user("no-such-hotspot-user")


def test_mount_options_are_safe():
    mounter = Mounter(Path("/run/x"), ServiceUser("hotspot", 999, 998, (998,), "/"))
    for fstype in ("vfat", "exfat", "ntfs3", "ext4"):
        options = mounter.options(fstype, writable=False).split(",")
        assert options[0] == "ro"
        assert {"nosuid", "nodev", "noexec", "nosymfollow"} <= set(options)
    assert "uid=999" in mounter.options("vfat", writable=False)
    assert "uid=999" not in mounter.options("ext4", writable=False)
    assert mounter.options("vfat", writable=True).startswith("rw,")


def test_the_child_gets_an_argument_list_and_a_clean_environment(tmp_path):
    runner = ChildRunner(current_user(), tmp_path / "data", tmp_path / "h.toml")
    argv = runner.argv("read", Path("/run/hotspot-usb/sdb1"))
    assert argv[-2:] == ["usb-read-drive", "/run/hotspot-usb/sdb1"]
    assert "-P" in argv and argv[argv.index("--config") + 1] == str(tmp_path / "h.toml")
    env = runner.environment()
    assert set(env) == {"PATH", "LANG", "HOME", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
                        "PYTHONUNBUFFERED"}
    assert Path(env["PYTHONPATH"], "hotspot", "usb.py").is_file()


# -- a whole drive, read by the real child process ------------------------------------------------

class FolderMounter(Mounter):
    """The only fake: 'mounting' a drive is making a folder stand for it."""

    def __init__(self, drives: dict[str, Path], user: ServiceUser, mount_dir: Path):
        super().__init__(mount_dir, user)
        self.drives = drives
        self.calls: list[str] = []

    def mount(self, dev, target):
        self.calls.append("mount-ro")
        if target.exists() or target.is_symlink():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(self.drives[dev.name])
        return dev.fs_type

    def remount(self, target, *, writable):
        self.calls.append("remount-rw" if writable else "remount-ro")

    def unmount(self, target):
        self.calls.append("unmount")
        target.unlink()
        return True


class Setup:
    """A data dir with version 1 installed, a publisher, a config, and a handler."""

    def __init__(self, tmp_path: Path, recipients: list[str] | None = None):
        self.tmp = tmp_path
        self.publisher = Publisher(tmp_path / "publisher")
        self.paths = DataPaths(tmp_path / "data")
        self.v1 = v1_catalog(self.publisher.files)
        import_pack(self.publisher.full(self.v1), self.paths, [self.publisher.public],
                    margin_bytes=0)
        self.config = write_usb_config(tmp_path, self.publisher, self.paths.root, recipients)
        self.drives: dict[str, Path] = {}
        self.state = UsbStateFile(self.paths.root)
        self.mounter = FolderMounter(self.drives, current_user(), tmp_path / "mnt")
        self.handler = DriveHandler(self.state, self.mounter,
                                    ChildRunner(current_user(), self.paths.root, self.config))

    def drive(self, name: str = "sdb1") -> Path:
        path = self.tmp / f"drive-{name}"
        path.mkdir()
        self.drives[name] = path
        return path

    def read(self, name: str = "sdb1") -> dict:
        self.handler.handle(DriveJob(device(name=name)))
        return read_usb_state(self.paths.root)


def write_usb_config(root: Path, publisher: Publisher, data_dir: Path,
                     recipients: list[str] | None = None, **usb) -> Path:
    keys = root / "trusted-keys"
    keys.mkdir(exist_ok=True)
    (keys / "publisher.pub").write_text(publisher.public.to_text())
    lines = [f'data_dir = "{data_dir}"', "[packs]", f'trusted_keys_dir = "{keys}"',
             "free_space_margin_mb = 0", "[contributions]",
             f"recipients = {json.dumps(recipients or [])}", "[usb]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in usb.items()]
    config = root / "hotspot.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_a_valid_pack_is_imported_and_the_server_shows_it(tmp_path):
    setup = Setup(tmp_path)
    server = ServerProcess(["--data-dir", str(setup.paths.root), "serve", "--host", "127.0.0.1",
                            "--port", "0"])
    try:
        assert server.get("/r/new-guide").status == 404
        drive = setup.drive()
        shutil.copytree(setup.publisher.full(v2_catalog(setup.publisher.files)),
                        drive / "test-2.hotspot-pack")
        state = setup.read()
        current = state["current"]
        assert current["state"] == "done", current
        assert current["imported"] == [{"pack": "test-2.hotspot-pack", "library": "test",
                                        "version": 2}]
        assert "The library now has version 2 of 'test'" in current["message"]
        assert "You can take the drive out now" in current["message"]
        assert setup.mounter.calls == ["mount-ro", "unmount"]
        wait_for(lambda: server.get("/r/new-guide").status == 200, 15, "the new resource")
    finally:
        assert server.stop() == 0, "".join(server.output)
    assert state["history"][0]["state"] == "done"
    assert describe_usb_state(state)[0].startswith("USB: done: The library now has version 2")


def test_a_bad_pack_is_refused_and_nothing_changes(tmp_path):
    setup = Setup(tmp_path)
    before = setup.paths.catalog.read_bytes()
    stranger = Publisher(tmp_path / "stranger")
    drive = setup.drive()
    (drive / "hotspot").mkdir()
    to_tar(stranger.full(v2_catalog(stranger.files))).rename(drive / "hotspot" / "update.tar")
    (drive / "hotspot" / "._update.tar").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS leftovers
    state = setup.read()
    current = state["current"]
    assert current["state"] == "error" and current["reason"] == "packs-refused", current
    assert [r["pack"] for r in current["refused"]] == ["hotspot/update.tar"]
    assert "signature is not accepted" in current["refused"][0]["reason"]
    assert str(setup.mounter.mount_dir) not in json.dumps(current)   # no private paths shown
    assert "Nothing was changed" in current["message"] and state["safe_to_remove"]
    assert setup.paths.catalog.read_bytes() == before


def test_two_versions_only_the_newest_is_imported(tmp_path):
    setup = Setup(tmp_path)
    drive = setup.drive()
    (drive / "hotspot").mkdir()
    v2 = setup.publisher.full(v2_catalog(setup.publisher.files))
    v3 = setup.publisher.full(v2_catalog(setup.publisher.files, version=3))
    to_tar(v2).rename(drive / "hotspot" / "test-2.hotspot-pack.tar")
    shutil.copytree(v3, drive / "test-3.hotspot-pack")
    seen = []
    original = setup.state.add
    setup.state.add = lambda key, item: (seen.append((key, item.get("version"))),
                                         original(key, item))
    current = setup.read()["current"]
    assert current["state"] == "done", current
    assert seen == [("imported", 3), ("skipped", 2)]
    assert installed_state(setup.paths)["version"] == 3
    assert installed_state(setup.paths)["previous"]["version"] == 1   # v2 never installed
    # The same drive again: already up to date, nothing imported.
    current = setup.read()["current"]
    assert current["state"] == "done" and current["imported"] == []
    assert "already up to date" in current["message"]


def test_updates_are_applied_in_a_chain(tmp_path):
    setup = Setup(tmp_path)
    v2 = v2_catalog(setup.publisher.files)
    v3 = v2_catalog(setup.publisher.files, version=3)
    v3["resources"][0]["title"]["en"] = "Third edition"
    drive = setup.drive()
    shutil.copytree(setup.publisher.delta(setup.v1, v2), drive / "test-1-to-2.hotspot-pack")
    shutil.copytree(setup.publisher.delta(v2, v3), drive / "test-2-to-3.hotspot-pack")
    current = setup.read()["current"]
    assert current["state"] == "done", current
    assert [i["version"] for i in current["imported"]] == [2, 3]
    assert load_catalog(setup.paths.catalog).version.startswith("test-3-")


def test_a_drive_with_no_packs_is_left_politely(tmp_path):
    setup = Setup(tmp_path)
    before = setup.paths.catalog.read_bytes()
    drive = setup.drive()
    (drive / "holiday photos").mkdir()
    (drive / "holiday photos" / "beach.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    (drive / "notes.txt").write_text("nothing to see")
    current = setup.read()["current"]
    assert current["state"] == "done" and current["reason"] is None
    assert "There is nothing for the hotspot on this drive" in current["message"]
    assert setup.paths.catalog.read_bytes() == before
    assert sorted(p.name for p in drive.rglob("*")) == ["beach.jpg", "holiday photos",
                                                         "notes.txt"]


def test_links_on_the_drive_are_not_followed(tmp_path):
    setup = Setup(tmp_path)
    before = setup.paths.catalog.read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    good = setup.publisher.full(v2_catalog(setup.publisher.files))
    shutil.copytree(good, outside / "test-2.hotspot-pack")
    drive = setup.drive()
    (drive / "test-2.hotspot-pack").symlink_to(outside / "test-2.hotspot-pack")
    (drive / "hotspot").symlink_to(outside)
    current = setup.read()["current"]
    assert current["state"] == "error" and current["reason"] == "packs-refused", current
    assert {r["pack"] for r in current["refused"]} == {"test-2.hotspot-pack", "hotspot/"}
    assert all("never followed" in r["reason"] for r in current["refused"])
    assert setup.paths.catalog.read_bytes() == before


def submit(queue: ContributionQueue, text: str) -> str:
    writer = queue.new("report", "en")
    writer.add_field("what_happened", text)
    return writer.commit().uuid


def test_the_outbox_receives_the_bundle(tmp_path):
    identity = x25519.Identity.generate()
    setup = Setup(tmp_path, recipients=[str(identity.to_public())])
    queue = ContributionQueue(setup.paths.root / "contributions", [str(identity.to_public())])
    uuids = sorted(submit(queue, f"report {n}") for n in range(3))
    drive = setup.drive()
    (drive / OUTBOX_DIR).mkdir()
    current = setup.read()["current"]
    assert current["state"] == "done", current
    assert current["exported"]["contributions"] == 3
    assert "3 contributions were copied onto the drive" in current["message"]
    assert setup.mounter.calls == ["mount-ro", "remount-rw", "remount-ro", "unmount"]
    bundles = list((drive / OUTBOX_DIR).iterdir())
    assert [b.name for b in bundles] == [current["exported"]["bundle"]]
    assert sorted(item.uuid for item in read_bundle(bundles[0])) == uuids
    assert {e.state for e in queue.list()} == {"exported"}
    # Nothing waiting now: the drive is only read, never remounted read-write.
    setup.mounter.calls.clear()
    current = setup.read()["current"]
    assert current["state"] == "done" and "No contributions were waiting" in current["message"]
    assert setup.mounter.calls == ["mount-ro", "unmount"]


def test_an_outbox_that_is_a_link_is_not_written(tmp_path):
    identity = x25519.Identity.generate()
    setup = Setup(tmp_path, recipients=[str(identity.to_public())])
    queue = ContributionQueue(setup.paths.root / "contributions", [str(identity.to_public())])
    submit(queue, "report")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    drive = setup.drive()
    (drive / OUTBOX_DIR).symlink_to(elsewhere)
    current = setup.read()["current"]
    assert current["state"] == "done" and current["exported"] is None, current
    assert list(elsewhere.iterdir()) == [] and "remount-rw" not in setup.mounter.calls
    assert {e.state for e in queue.list()} == {"queued"}


def test_a_drive_taken_out_before_reading_changes_nothing(tmp_path):
    setup = Setup(tmp_path)
    before = setup.paths.catalog.read_bytes()
    drive = setup.drive()
    shutil.copytree(setup.publisher.full(v2_catalog(setup.publisher.files)),
                    drive / "test-2.hotspot-pack")
    job = DriveJob(device())
    job.cancel()
    setup.handler.handle(job)
    current = read_usb_state(setup.paths.root)["current"]
    assert current["state"] == "error" and current["reason"] == "removed-too-early"
    assert "Put the drive back in to finish" in current["message"]
    assert setup.paths.catalog.read_bytes() == before
    assert setup.mounter.calls == ["mount-ro", "unmount"]


def test_an_unusable_drive_is_explained(tmp_path):
    setup = Setup(tmp_path)
    dev = device(fs_type="hfsplus")
    setup.handler.handle(DriveJob(dev, report_only=Verdict(False, "its format (hfsplus)",
                                                           report=True)))
    current = read_usb_state(setup.paths.root)["current"]
    assert current["state"] == "error" and "FAT32, exFAT, NTFS or ext4" in current["message"]
    assert setup.mounter.calls == []


# -- the service files ----------------------------------------------------------------------------

def test_the_unit_can_mount_and_is_hardened():
    text = (REPO / "systemd/hotspot-usb.service").read_text()
    assert "ExecStart=/opt/hotspot/venv/bin/hotspot usb-watch\n" in text
    for line in ("CapabilityBoundingSet=CAP_SYS_ADMIN", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/hotspot",
                 "RuntimeDirectory=hotspot-usb", "PrivateMounts=yes",
                 "RestrictAddressFamilies=AF_UNIX AF_NETLINK", "IPAddressDeny=any"):
        assert line in text, line
    assert "PrivateNetwork=yes" not in text     # udev events come over netlink in the host's


def test_the_udev_rule_keeps_desktop_automounters_away():
    text = (REPO / "systemd/90-hotspot-usb.rules").read_text()
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rules) == 1
    assert 'SUBSYSTEM=="block"' in rules[0] and 'ENV{ID_BUS}=="usb"' in rules[0]
    assert 'ENV{UDISKS_IGNORE}="1"' in rules[0]


# -- "copy the contributions onto the drive", asked on the caretaker's console -------------------

def test_a_request_from_the_console_reads_the_plugged_in_drive_again(tmp_path):
    stamp = [None]
    monitor, handler = FakeMonitor(), FakeHandler()
    watcher = UsbWatcher(lambda dev: classify(dev, NOTHING_MOUNTED), handler,
                         outbox_request=lambda: stamp[0], present=lambda dev: True)
    ready = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(monitor, lambda: [], ready.set))
    thread.start()
    try:
        assert ready.wait(10)
        monitor.emit("add")
        wait_for(lambda: len(handler.jobs) == 1 and not watcher.active, what="the first read")
        stamp[0] = 1  # the console asked
        wait_for(lambda: len(handler.jobs) == 2, timeout=10, what="the drive read again")
        assert handler.jobs[1].device.name == "sdb1"
        time.sleep(2 * REQUEST_CHECK_SECONDS)  # the same request is acted on once
        assert len(handler.jobs) == 2
    finally:
        watcher.stop()
        thread.join(10)
        monitor.close()
    assert not thread.is_alive()


def test_the_console_request_writes_an_outbox_on_a_drive_without_one(tmp_path):
    identity = x25519.Identity.generate()
    setup = Setup(tmp_path, recipients=[str(identity.to_public())])
    queue = ContributionQueue(setup.paths.root / "contributions", [str(identity.to_public())])
    uuids = sorted(submit(queue, f"report {n}") for n in range(2))
    drive = setup.drive()  # no hotspot-outbox folder on it
    setup.read()
    assert not (drive / OUTBOX_DIR).exists()  # not asked for: nothing is written
    assert {e.state for e in queue.list()} == {"queued"}
    request_outbox(setup.paths.root)
    current = setup.read()["current"]
    assert current["state"] == "done" and current["exported"]["contributions"] == 2, current
    (bundle,) = list((drive / OUTBOX_DIR).iterdir())
    assert sorted(item.uuid for item in read_bundle(bundle)) == uuids
    assert outbox_request_stamp(setup.paths.root) is None  # done: the request is gone
    # Asked with nothing waiting: the request is simply dropped.
    request_outbox(setup.paths.root)
    assert setup.read()["current"]["state"] == "done"
    assert outbox_request_stamp(setup.paths.root) is None
