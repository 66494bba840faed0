"""Provisioning: from a fresh Raspberry Pi OS (or Debian 12) to the village hotspot.

``provisioning/install.sh`` runs ``python3 -m hotspot.provision install`` from the source tree
(only the standard library is needed, so it runs before the virtualenv exists). Every step
looks first and acts only when something differs, so a second run changes nothing;
``--dry-run`` prints each change without making it; ``--root DIR`` installs into a staging
tree (tests, image builders). If a step fails, the files this run already changed are put back
as they were, so nothing is left half-configured.

At every boot ``hotspot-boot-config.service`` runs ``hotspot boot-config``: it merges
``/boot/firmware/hotspot.toml`` (editable on any computer) over ``/etc/hotspot/hotspot.toml``,
writes the effective file ``/run/hotspot/hotspot.toml`` that the server reads, and regenerates
the NetworkManager access point and its DNS/DHCP drop-in from it.

    $ sudo provisioning/install.sh --dry-run
    $ sudo provisioning/install.sh --root /tmp/image --skip-venv
    $ sudo hotspot boot-config --root /tmp/image
"""

from __future__ import annotations

import argparse
import grp
import hashlib
import io
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .config import (DEFAULT_CONFIG_PATH, Config, load_config, read_config_file, render_toml,
                     resolve_config_path)
from .errors import ConfigError, HotspotError

SOURCE_DIR = Path(__file__).resolve().parent.parent
USER = "hotspot"
BOOT_CONFIG = "/boot/firmware/hotspot.toml"
RUN_CONFIG = "/run/hotspot/hotspot.toml"
VENV = "/opt/hotspot/venv"
UNIT_DIR = "/etc/systemd/system"
NM_CONNECTION = "/etc/NetworkManager/system-connections/hotspot.nmconnection"
NM_DNSMASQ_DROPIN = "/etc/NetworkManager/dnsmasq-shared.d/hotspot.conf"
NM_DISPATCHER = "/etc/NetworkManager/dispatcher.d/90-hotspot-island"
NM_SYNC_DISPATCHER = "/etc/NetworkManager/dispatcher.d/90-hotspot-sync"
MODPROBE_COUNTRY = "/etc/modprobe.d/hotspot-wifi-country.conf"
FALLBACK_DIR = "/etc/hotspot/fallback"
DOCS = ("operators.md", "configuration.md", "captive-portal.md")
# Windows decides "portal" rather than "no internet" only when this name has its real address.
NCSI_DNS = ("dns.msftncsi.com", "131.107.255.255")


class ProvisionError(HotspotError):
    """A provisioning step failed; the message says which and why."""


@dataclass
class Installer:
    """Applies changes under ``root``; remembers what it changed so a failure can undo it."""

    root: Path
    dry_run: bool = False
    out: io.TextIOBase = field(default_factory=lambda: sys.stdout)
    changes: int = 0
    _undo: list = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.root == Path("/") and not self.dry_run

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _change(self, text: str) -> None:
        self.changes += 1
        self.say(("would " if self.dry_run else "") + text)

    # -- users -----------------------------------------------------------------------------
    def ids(self, user: str, group: str) -> tuple[int, int]:
        if self.root == Path("/"):
            try:
                return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
            except KeyError:
                if self.dry_run:
                    return -1, -1
                raise ProvisionError(f"The user {user} or group {group} does not exist.") from None
        uid = 0 if user == "root" else _lookup(self.path("/etc/passwd"), user, 2)
        gid = 0 if group == "root" else _lookup(self.path("/etc/group"), group, 2)
        if uid is None or gid is None:
            if self.dry_run:
                return -1, -1
            raise ProvisionError(f"The user {user} or group {group} is not in {self.root}/etc.")
        return uid, gid

    def ensure_system_user(self, name: str, home: str) -> None:
        if self.root == Path("/"):
            try:
                pwd.getpwnam(name)
                return
            except KeyError:
                pass
            self._change(f"create system user {name}")
            if not self.dry_run:
                _run(["useradd", "--system", "--user-group", "--home-dir", home,
                      "--no-create-home", "--shell", "/usr/sbin/nologin",
                      "--comment", "Community hotspot library", name])
            return
        passwd, group = self.path("/etc/passwd"), self.path("/etc/group")
        if _lookup(passwd, name, 2) is not None and _lookup(group, name, 2) is not None:
            return
        self._change(f"create system user {name} in {self.root}/etc")
        if self.dry_run:
            return
        used = _ids_in(passwd) | _ids_in(group)
        number = next(n for n in range(999, 99, -1) if n not in used)
        passwd.parent.mkdir(parents=True, exist_ok=True)
        self._remember(passwd)
        self._remember(group)
        with open(passwd, "a", encoding="utf-8") as handle:
            handle.write(f"{name}:x:{number}:{number}:Community hotspot library:{home}:"
                         f"/usr/sbin/nologin\n")
        with open(group, "a", encoding="utf-8") as handle:
            handle.write(f"{name}:x:{number}:\n")

    # -- files -----------------------------------------------------------------------------
    def _remember(self, target: Path) -> None:
        """Keep what ``target`` was, to put it back if a later step fails."""
        if target.is_symlink():
            self._undo.append((target, "link", os.readlink(target), None))
        elif target.exists():
            st = target.stat()
            self._undo.append((target, "file", target.read_bytes(), (st.st_mode, st.st_uid,
                                                                      st.st_gid)))
        else:
            self._undo.append((target, "absent", None, None))

    def undo(self) -> None:
        for target, kind, data, meta in reversed(self._undo):
            try:
                if target.is_symlink() or target.is_file():
                    target.unlink()
                if kind == "file":
                    target.write_bytes(data)
                    os.chmod(target, meta[0] & 0o7777)
                    os.chown(target, meta[1], meta[2])
                elif kind == "link":
                    target.symlink_to(data)
            except OSError as exc:
                self.say(f"could not restore {target}: {exc}")
        self._undo.clear()

    def directory(self, absolute: str, mode: int, user: str = "root", group: str = "root") -> None:
        target = self.path(absolute)
        uid, gid = self.ids(user, group)
        if not target.is_dir():
            self._change(f"create {absolute}/ ({oct(mode)[2:]} {user}:{group})")
            if self.dry_run:
                return
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, mode)
            os.chown(target, uid, gid)
            return
        st = target.stat()
        if st.st_mode & 0o7777 != mode or (st.st_uid, st.st_gid) != (uid, gid):
            self._change(f"set {absolute}/ to {oct(mode)[2:]} {user}:{group}")
            if not self.dry_run:
                os.chmod(target, mode)
                os.chown(target, uid, gid)

    def file(self, absolute: str, content: str | bytes, mode: int = 0o644, user: str = "root",
             group: str = "root", keep_existing: bool = False) -> bool:
        """Write ``content`` unless the file already has it (and the mode and owner)."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        target = self.path(absolute)
        uid, gid = self.ids(user, group)
        if target.is_file() and not target.is_symlink():
            st = target.stat()
            same_meta = st.st_mode & 0o7777 == mode and (st.st_uid, st.st_gid) == (uid, gid)
            if keep_existing or target.read_bytes() == data:
                if not same_meta:
                    self._change(f"set {absolute} to {oct(mode)[2:]} {user}:{group}")
                    if not self.dry_run:
                        os.chmod(target, mode)
                        os.chown(target, uid, gid)
                return False
            self._change(f"update {absolute}")
        else:
            self._change(f"write {absolute} ({oct(mode)[2:]} {user}:{group})")
        if self.dry_run:
            return True
        self._remember(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.hotspot-new")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.chown(temporary, uid, gid)
        os.replace(temporary, target)
        return True

    def remove(self, absolute: str) -> None:
        target = self.path(absolute)
        if target.exists() or target.is_symlink():
            self._change(f"remove {absolute}")
            if not self.dry_run:
                self._remember(target)
                target.unlink()

    def symlink(self, absolute: str, points_to: str) -> None:
        target = self.path(absolute)
        if target.is_symlink() and os.readlink(target) == points_to:
            return
        self._change(f"link {absolute} -> {points_to}")
        if self.dry_run:
            return
        self._remember(target)
        if target.is_symlink() or target.exists():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(points_to)


def _lookup(path: Path, name: str, column: int) -> int | None:
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split(":")
            if parts[0] == name and len(parts) > column:
                return int(parts[column])
    except FileNotFoundError:
        return None
    return None


def _ids_in(path: Path) -> set[int]:
    try:
        return {int(line.split(":")[2]) for line in path.read_text(encoding="utf-8").splitlines()
                if line.count(":") >= 2 and line.split(":")[2].isdigit()}
    except FileNotFoundError:
        return set()


def _run(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise ProvisionError(f"The command {command[0]} is not installed.") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise ProvisionError(f"{' '.join(command[:3])} failed: {' / '.join(detail)}")


# -- network files (pure functions of the configuration) ---------------------------------------

def dhcp_range(address: str) -> tuple[str, str]:
    """The range NetworkManager's shared mode hands out on a /24: .10 to .254."""
    prefix = address.rsplit(".", 1)[0]
    return f"{prefix}.10", f"{prefix}.254"


def render_nm_connection(config: Config) -> str:
    net = config.network
    connection_id = uuid.uuid5(uuid.NAMESPACE_URL, f"hotspot:{net.interface}:{net.ssid}")
    lines = [
        "# Written by 'hotspot boot-config' from the hotspot configuration; edits are replaced.",
        "[connection]", "id=hotspot", f"uuid={connection_id}", "type=wifi",
        f"interface-name={net.interface}", "autoconnect=true", "autoconnect-priority=100", "",
        "[wifi]", "mode=ap", f"ssid={net.ssid}", "band=bg", f"channel={net.channel}",
        "powersave=2", "",
    ]
    if net.passphrase:
        lines += ["[wifi-security]", "key-mgmt=wpa-psk", "proto=rsn", "pairwise=ccmp",
                  "group=ccmp", "pmf=1", f"psk={net.passphrase}", ""]
    lines += ["[ipv4]", "method=shared", f"address1={net.address}/24", "",
              "[ipv6]", "method=disabled", ""]
    return "\n".join(lines)


def render_dnsmasq_dropin(config: Config, *, standalone: bool = False) -> str:
    """Options for NetworkManager's shared-mode dnsmasq (or, ``standalone``, a whole dnsmasq
    configuration for the hostapd fallback)."""
    net, portal = config.network, config.portal
    lines = ["# Written by 'hotspot boot-config' from the hotspot configuration; edits are "
             "replaced.", "# No log-queries: the names phones look up are never written down."]
    if standalone:
        first, last = dhcp_range(net.address)
        lines += [f"interface={net.interface}", "bind-interfaces", "except-interface=lo",
                  f"listen-address={net.address}", "no-hosts",
                  f"dhcp-range={first},{last},255.255.255.0,1h", "dhcp-lease-max=250"]
    lines += [
        # Android drops a Wi-Fi network whose DHCP answer has no router; NetworkManager only
        # sends one when the Pi itself has a default route, which an island hotspot lacks.
        f"dhcp-option=option:router,{net.address}",
        f"dhcp-option=option:dns-server,{net.address}",
        "dhcp-authoritative",
    ]
    if portal.https_url:
        lines.append(f'dhcp-option-force=114,"{portal.https_url}/captive-portal/api"')
    if portal.hostname:
        lines.append(f"address=/{portal.hostname}/{net.address}")
    if not net.forwarding:
        lines += ["no-resolv",
                  f"address=/{NCSI_DNS[0]}/{NCSI_DNS[1]}",
                  "# Every other name is the hotspot: phones' connectivity checks and any site "
                  "typed land on the library.",
                  f"address=/#/{net.address}"]
    return "\n".join(lines) + "\n"


def render_dispatcher(config: Config) -> str:
    interface = config.network.interface
    return f"""#!/bin/sh
# Written by 'hotspot boot-config' (network.forwarding = false): the hotspot is an island.
# NetworkManager's shared mode switches IPv4 forwarding on; packets that phones send towards
# other networks are refused on the hotspot's interface.
[ "$1" = "{interface}" ] || exit 0
case "$2" in
  up|pre-up) sysctl -q -w "net.ipv4.conf.{interface}.forwarding=0" ;;
  *) ;;
esac
exit 0
"""


def render_template(name: str, config: Config) -> str:
    """A fallback template from provisioning/fallback/ with @KEY@ placeholders filled in."""
    text = (SOURCE_DIR / "provisioning" / "fallback" / name).read_text(encoding="utf-8")
    net = config.network
    first, last = dhcp_range(net.address)
    security = (f"wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase={net.passphrase}"
                if net.passphrase else "# open network: no passphrase (network.passphrase)")
    values = {"INTERFACE": net.interface, "SSID": net.ssid, "CHANNEL": str(net.channel),
              "COUNTRY": net.country if net.country != "00" else "US",
              "ADDRESS": net.address, "DHCP_FIRST": first, "DHCP_LAST": last,
              "SECURITY": security, "DNS": render_dnsmasq_dropin(config, standalone=True)}
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


# -- boot-time configuration ----------------------------------------------------------------

def effective_config(main: Path | None, boot: Path, warn) -> Config:
    """The main file, then the boot partition's file over it. A broken boot file is reported
    and ignored, so a typo made on a laptop never keeps the hotspot from starting."""
    if main is not None and not main.exists():
        main = None
    base = load_config(main)
    if not boot.exists():
        return base
    try:
        load_config(boot)  # validates it alone: errors name the boot file
        return load_config(main, overrides=read_config_file(boot))
    except ConfigError as exc:
        warn(f"Ignoring {boot}: {exc.message}")
        return base


def apply_boot_config(installer: Installer, main: Path | None, boot: Path) -> Config:
    config = effective_config(main, boot, installer.say)
    installer.directory("/run/hotspot", 0o750, "root", USER)
    installer.file(RUN_CONFIG, render_toml(config), 0o640, "root", USER)
    apply_network(installer, config)
    return config


def apply_network(installer: Installer, config: Config) -> None:
    installer.directory("/etc/NetworkManager/system-connections", 0o700)
    installer.file(NM_CONNECTION, render_nm_connection(config), 0o600)
    installer.directory("/etc/NetworkManager/dnsmasq-shared.d", 0o755)
    installer.file(NM_DNSMASQ_DROPIN, render_dnsmasq_dropin(config), 0o644)
    if config.network.forwarding:
        installer.remove(NM_DISPATCHER)
    else:
        installer.directory("/etc/NetworkManager/dispatcher.d", 0o755)
        installer.file(NM_DISPATCHER, render_dispatcher(config), 0o755)
    country = config.network.country
    installer.file(MODPROBE_COUNTRY, f"# Written by 'hotspot boot-config': Wi-Fi country.\n"
                                     f"options cfg80211 ieee80211_regdom={country}\n", 0o644)
    installer.directory(FALLBACK_DIR, 0o750, "root", "root")
    installer.file(f"{FALLBACK_DIR}/hostapd.conf", render_template("hostapd.conf.in", config),
                   0o600)
    installer.file(f"{FALLBACK_DIR}/dnsmasq.conf", render_template("dnsmasq.conf.in", config),
                   0o644)
    if installer.live:
        # Raspberry Pi OS keeps Wi-Fi blocked until a country is set; best effort, no failure.
        for command in (["rfkill", "unblock", "wifi"], ["iw", "reg", "set", country]):
            if shutil.which(command[0]) and not (command[0] == "iw" and country == "00"):
                subprocess.run(command, capture_output=True, timeout=30)


# -- the whole install ---------------------------------------------------------------------

def unit_files(source: Path = SOURCE_DIR) -> list[Path]:
    return sorted(path for path in (source / "systemd").iterdir()
                  if path.suffix in (".service", ".socket", ".timer", ".path"))


def wanted_by(unit_text: str) -> list[str]:
    targets, section = [], ""
    for line in unit_text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Install]" and line.startswith("WantedBy="):
            targets += line.split("=", 1)[1].split()
    return targets


def requirements_stamp(source: Path = SOURCE_DIR) -> str:
    digest = hashlib.sha256((source / "provisioning" / "requirements.txt").read_bytes())
    for path in sorted((source / "hotspot").rglob("*")) + sorted((source / "content_pack").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def install_venv(installer: Installer, source: Path) -> None:
    stamp_path = installer.path(f"{VENV}/.hotspot-stamp")
    stamp = requirements_stamp(source)
    if stamp_path.is_file() and stamp_path.read_text().strip() == stamp:
        return
    installer._change(f"build the virtualenv {VENV} (pinned: provisioning/requirements.txt)")
    if installer.dry_run:
        return
    venv = installer.path(VENV)
    _run([sys.executable, "-m", "venv", "--clear", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]
    _run(pip + ["--no-deps", "-r", str(source / "provisioning" / "requirements.txt")])
    _run(pip + ["--no-deps", "--no-build-isolation", str(source)])
    stamp_path.write_text(stamp + "\n")


def install(installer: Installer, source: Path = SOURCE_DIR, skip_venv: bool = False) -> None:
    installer.ensure_system_user(USER, "/var/lib/hotspot")
    installer.directory("/etc/hotspot", 0o755)
    installer.directory("/etc/hotspot/trusted-keys", 0o755)
    installer.file(DEFAULT_CONFIG_PATH, render_toml(None, commented_defaults=True), 0o640, "root",
                   USER, keep_existing=True)
    installer.directory("/var/lib/hotspot", 0o750, USER, USER)
    installer.directory("/opt/hotspot", 0o755)
    installer.directory("/opt/hotspot/docs", 0o755)
    for name in DOCS:
        if (source / "docs" / name).exists():
            installer.file(f"/opt/hotspot/docs/{name}", (source / "docs" / name).read_bytes())
    if skip_venv:
        installer.say(f"skipping the virtualenv {VENV} (--skip-venv)")
    elif installer.root != Path("/"):
        installer.say(f"skipping the virtualenv {VENV}: its paths would point into the staging "
                      f"tree; build it on the device, or run this installer in a chroot")
    else:
        install_venv(installer, source)
    installer.symlink("/usr/local/bin/hotspot", f"{VENV}/bin/hotspot")
    for unit in unit_files(source):
        text = unit.read_text(encoding="utf-8")
        installer.file(f"{UNIT_DIR}/{unit.name}", text)
        for target in wanted_by(text):
            installer.symlink(f"{UNIT_DIR}/{target}.wants/{unit.name}", f"{UNIT_DIR}/{unit.name}")
    # Keeps desktop automounters (udisks2) away from drives the USB watcher handles.
    for rule in sorted((source / "systemd").glob("*.rules")):
        installer.directory("/etc/udev/rules.d", 0o755)
        installer.file(f"/etc/udev/rules.d/{rule.name}", rule.read_bytes(), 0o644)
    # Starts `hotspot sync` when a connection comes up (NetworkManager runs dispatcher hooks).
    installer.directory("/etc/NetworkManager/dispatcher.d", 0o755)
    installer.file(NM_SYNC_DISPATCHER,
                   (source / "provisioning" / "nm-dispatcher-hotspot-sync").read_bytes(), 0o755)
    apply_boot_config(installer, installer.path(DEFAULT_CONFIG_PATH), installer.path(BOOT_CONFIG))
    if installer.live:
        _run(["systemctl", "daemon-reload"])
        if shutil.which("nmcli"):
            subprocess.run(["nmcli", "connection", "reload"], capture_output=True, timeout=60)


def run_install(root: Path, dry_run: bool, skip_venv: bool, out=None) -> int:
    installer = Installer(Path(root), dry_run, out or sys.stdout)
    if installer.root == Path("/") and not dry_run and os.geteuid() != 0:
        raise ProvisionError("Run the installer as root (sudo), or use --root DIR or --dry-run.")
    try:
        install(installer, skip_venv=skip_venv)
    except BaseException:
        if installer._undo:
            installer.say("Installation failed: putting back the files this run changed.")
            installer.undo()
        raise
    if installer.changes == 0:
        installer.say("Nothing to change: the hotspot is installed as configured.")
    elif dry_run:
        installer.say(f"{installer.changes} changes would be made (dry run: nothing was changed).")
    else:
        installer.say(f"{installer.changes} changes made.")
        if installer.root == Path("/"):
            installer.say("Reboot to start the hotspot (the Wi-Fi access point replaces any "
                          "Wi-Fi connection the Pi has now).")
    return 0


# -- command line ----------------------------------------------------------------------------

def add_commands(commands) -> dict:
    boot = commands.add_parser(
        "boot-config", help="merge /boot/firmware/hotspot.toml over the configuration and write "
                            "the access point's settings (run at boot by systemd)")
    boot.add_argument("--root", type=Path, default=Path("/"), help="apply inside this tree")
    boot.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    boot.add_argument("--boot-file", type=Path, help=f"boot overrides (default: {BOOT_CONFIG})")
    return {"boot-config": cmd_boot_config}


def cmd_boot_config(args, config: Config) -> int:
    installer = Installer(args.root, args.dry_run)
    main = resolve_config_path(args.config)
    if args.root != Path("/") and not args.config:
        main = installer.path(DEFAULT_CONFIG_PATH)
    boot = args.boot_file or installer.path(BOOT_CONFIG)
    try:
        apply_boot_config(installer, main, boot)
    except BaseException:
        installer.undo()
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="provisioning/install.sh",
        description="Install the community hotspot on this Raspberry Pi OS / Debian 12 system.")
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="install into this staging tree instead of the running system")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every change that would be made, and make none")
    parser.add_argument("--skip-venv", action="store_true",
                        help=f"do not build {VENV} (it is built elsewhere)")
    parser.add_argument("command", nargs="?", default="install", choices=("install",))
    args = parser.parse_args(argv)
    try:
        return run_install(args.root.resolve(), args.dry_run, args.skip_venv)
    except HotspotError as exc:
        print(f"install: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"install: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
