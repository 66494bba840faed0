"""Provisioning with the real tools: shellcheck, the installer into a staging tree (twice),
--dry-run, dnsmasq --test on the generated configuration, systemd-analyze verify and
systemd-analyze security on the units."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import in_ci
from hotspot import provision
from hotspot.config import load_config, render_toml

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "provisioning" / "install.sh"
NM_DNSMASQ_OPTIONS = [  # what NetworkManager's shared mode starts dnsmasq with (nm-dnsmasq-manager.c)
    "--conf-file=/dev/null", "--no-hosts", "--keep-in-foreground", "--bind-interfaces",
    "--except-interface=lo", "--clear-on-reload", "--strict-order",
    "--listen-address=10.42.0.1", "--dhcp-range=10.42.0.10,10.42.0.254,60m",
    "--dhcp-lease-max=50",
]


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if in_ci():
            pytest.fail(f"{name} is not installed (CI must install it)")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def need_root() -> None:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("CI runs the tests as root")
        pytest.skip("needs root: the installer sets file owners (chown)")


def run_install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          timeout=300)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path in the tree with its type, mode, owner, content hash and change time."""
    result = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path) \
            if stat.S_ISLNK(st.st_mode) else None
        result[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                               st.st_uid, st.st_gid, content, st.st_mtime_ns,
                                               st.st_ino)
    return result


def staging_ids(root: Path, name: str) -> tuple[int, int]:
    uid = gid = None
    for line in (root / "etc/passwd").read_text().splitlines():
        if line.startswith(name + ":"):
            uid = int(line.split(":")[2])
    for line in (root / "etc/group").read_text().splitlines():
        if line.startswith(name + ":"):
            gid = int(line.split(":")[2])
    return uid, gid


# -- shellcheck ---------------------------------------------------------------------------------

def test_shellcheck_every_script(tmp_path):
    shellcheck = need_tool("shellcheck")
    scripts = sorted(REPO.glob("provisioning/**/*.sh"))
    assert INSTALL in scripts
    generated = tmp_path / "90-hotspot-island"  # the dispatcher script we write on the device
    generated.write_text(provision.render_dispatcher(load_config(None)))
    for script in [*scripts, generated]:
        result = subprocess.run([shellcheck, "--severity=style", str(script)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{script}:\n{result.stdout}"


# -- the installer --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """An install into a staging tree, and the output of a second run."""
    need_root()
    root = tmp_path_factory.mktemp("stage") / "root"
    first = run_install("--root", str(root), "--skip-venv")
    assert first.returncode == 0, first.stderr + first.stdout
    before = snapshot(root)
    second = run_install("--root", str(root), "--skip-venv")
    assert second.returncode == 0, second.stderr
    return root, first, second, before


@pytest.mark.root
def test_second_run_changes_nothing(staged):
    root, first, second, before = staged
    assert "changes made" in first.stdout
    assert "Nothing to change" in second.stdout
    assert snapshot(root) == before  # same files, modes, owners, contents, even mtimes and inodes


@pytest.mark.root
def test_staging_tree_file_by_file(staged):
    root, *_ = staged
    uid, gid = staging_ids(root, "hotspot")
    assert uid is not None and 100 <= uid < 1000 and gid is not None
    passwd_line = next(line for line in (root / "etc/passwd").read_text().splitlines()
                       if line.startswith("hotspot:"))
    assert passwd_line.endswith(":/var/lib/hotspot:/usr/sbin/nologin")
    config = load_config(None)
    expected = {
        # path: (mode, uid, gid, content or None)
        "etc/hotspot": (0o755, 0, 0, None),
        "etc/hotspot/trusted-keys": (0o755, 0, 0, None),
        "etc/hotspot/hotspot.toml": (0o640, 0, gid, render_toml(None, commented_defaults=True)),
        "var/lib/hotspot": (0o750, uid, gid, None),
        "opt/hotspot/docs/operators.md": (0o644, 0, 0, (REPO / "docs/operators.md").read_text()),
        "etc/systemd/system/hotspot.service":
            (0o644, 0, 0, (REPO / "systemd/hotspot.service").read_text()),
        "etc/systemd/system/hotspot-boot-config.service":
            (0o644, 0, 0, (REPO / "systemd/hotspot-boot-config.service").read_text()),
        "run/hotspot": (0o750, 0, gid, None),
        "run/hotspot/hotspot.toml": (0o640, 0, gid, render_toml(config)),
        "etc/NetworkManager/system-connections/hotspot.nmconnection":
            (0o600, 0, 0, provision.render_nm_connection(config)),
        "etc/NetworkManager/dnsmasq-shared.d/hotspot.conf":
            (0o644, 0, 0, provision.render_dnsmasq_dropin(config)),
        "etc/NetworkManager/dispatcher.d/90-hotspot-island":
            (0o755, 0, 0, provision.render_dispatcher(config)),
        "etc/udev/rules.d/90-hotspot-usb.rules":
            (0o644, 0, 0, (REPO / "systemd" / "90-hotspot-usb.rules").read_text()),
        "etc/NetworkManager/dispatcher.d/90-hotspot-sync":
            (0o755, 0, 0, (REPO / "provisioning" / "nm-dispatcher-hotspot-sync").read_text()),
        "etc/modprobe.d/hotspot-wifi-country.conf": (0o644, 0, 0, None),
        "etc/hotspot/fallback/hostapd.conf": (0o600, 0, 0, None),
        "etc/hotspot/fallback/dnsmasq.conf": (0o644, 0, 0, None),
    }
    for relative, (mode, owner, group, content) in expected.items():
        st = (root / relative).lstat()
        assert stat.S_IMODE(st.st_mode) == mode, relative
        assert (st.st_uid, st.st_gid) == (owner, group), relative
        if content is not None:
            assert (root / relative).read_text() == content, relative
    # Every key is in the installed config, commented, with its default: it parses as empty.
    toml = (root / "etc/hotspot/hotspot.toml").read_text()
    assert all(section == {} for section in tomllib.loads(toml).values())
    assert "# ssid = \"Community library\"" in toml and "# address = \"10.42.0.1\"" in toml
    # Units are enabled the way systemctl enable does it.
    for unit in provision.unit_files():
        for target in provision.wanted_by(unit.read_text()):
            link = root / f"etc/systemd/system/{target}.wants" / unit.name
            assert os.readlink(link) == f"/etc/systemd/system/{unit.name}"
    assert (root / "etc/systemd/system/multi-user.target.wants/hotspot.service").is_symlink()
    assert os.readlink(root / "usr/local/bin/hotspot") == "/opt/hotspot/venv/bin/hotspot"
    # The access point: open network, fixed 2.4 GHz channel, power saving off, shared IPv4 on
    # the documented address, no IPv6.
    nm = (root / "etc/NetworkManager/system-connections/hotspot.nmconnection").read_text()
    for line in ("mode=ap", "ssid=Community library", "band=bg", "channel=6", "powersave=2",
                 "method=shared", "address1=10.42.0.1/24", "method=disabled"):
        assert f"\n{line}\n" in nm, line
    assert "[wifi-security]" not in nm
    assert "ieee80211_regdom=00" in (root / "etc/modprobe.d/hotspot-wifi-country.conf").read_text()


@pytest.mark.root
def test_dry_run_prints_every_change_and_makes_none(tmp_path, staged):
    root = tmp_path / "fresh"
    result = run_install("--root", str(root), "--skip-venv", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not root.exists() or not any(root.rglob("*"))
    lines = result.stdout.splitlines()
    for path in ("/etc/hotspot/hotspot.toml", "/etc/systemd/system/hotspot.service",
                 "/etc/NetworkManager/system-connections/hotspot.nmconnection",
                 "/etc/NetworkManager/dnsmasq-shared.d/hotspot.conf", "/var/lib/hotspot/"):
        assert any(line.startswith("would ") and path in line for line in lines), path
    assert "dry run: nothing was changed" in result.stdout
    # On an installed tree, a dry run has nothing to say.
    installed, *_ = staged
    result = run_install("--root", str(installed), "--skip-venv", "--dry-run")
    assert result.returncode == 0 and "Nothing to change" in result.stdout
    assert "would " not in result.stdout


@pytest.mark.root
def test_boot_partition_overrides_at_boot(tmp_path):
    need_root()
    root = tmp_path / "root"
    assert run_install("--root", str(root), "--skip-venv").returncode == 0
    boot = root / "boot/firmware/hotspot.toml"
    boot.parent.mkdir(parents=True)
    boot.write_text('[network]\nssid = "Biblioteca comunitaria"\npassphrase = "territorio2026"\n'
                    'country = "co"\nchannel = 11\n')
    cli = [sys.executable, "-m", "hotspot.cli", "boot-config", "--root", str(root)]
    result = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    nm = (root / "etc/NetworkManager/system-connections/hotspot.nmconnection").read_text()
    assert "ssid=Biblioteca comunitaria" in nm and "channel=11" in nm
    assert "key-mgmt=wpa-psk" in nm and "psk=territorio2026" in nm
    assert "ieee80211_regdom=CO" in (root / "etc/modprobe.d/hotspot-wifi-country.conf").read_text()
    effective = tomllib.loads((root / "run/hotspot/hotspot.toml").read_text())
    assert effective["network"]["ssid"] == "Biblioteca comunitaria"
    # A mistake typed on a laptop is reported and ignored: the hotspot still comes up.
    boot.write_text('[network]\nchannel = 99\n')
    result = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "Ignoring" in result.stdout and "network.channel" in result.stdout
    nm = (root / "etc/NetworkManager/system-connections/hotspot.nmconnection").read_text()
    assert "ssid=Community library" in nm and "channel=6" in nm


@pytest.mark.root
def test_failure_puts_back_what_it_changed(tmp_path):
    need_root()
    root = tmp_path / "root"
    # A directory where the installer must write a file: the step fails late.
    (root / "etc/modprobe.d/hotspot-wifi-country.conf").mkdir(parents=True)
    result = run_install("--root", str(root), "--skip-venv")
    assert result.returncode != 0
    assert "install:" in result.stderr and "Traceback" not in result.stderr
    assert "putting back" in result.stdout
    # Files written before the failure are gone again: nothing half-configured.
    assert not (root / "etc/NetworkManager/system-connections/hotspot.nmconnection").exists()
    assert not (root / "etc/systemd/system/hotspot.service").exists()


def test_bad_arguments_are_refused():
    result = run_install("--no-such-option")
    assert result.returncode == 2 and "usage" in result.stderr


# -- generated configuration with the real tools ------------------------------------------------

def test_dnsmasq_accepts_the_generated_configuration(tmp_path):
    dnsmasq = need_tool("dnsmasq")
    for overrides in ({}, {"network.passphrase": "territorio2026", "network.forwarding": True},
                      {"portal.https_url": "https://library.example.org", "portal.hostname": ""}):
        config = load_config(None, overrides=overrides)
        shared = tmp_path / "dnsmasq-shared.d"
        shared.mkdir(exist_ok=True)
        (shared / "hotspot.conf").write_text(provision.render_dnsmasq_dropin(config))
        result = subprocess.run([dnsmasq, "--test", *NM_DNSMASQ_OPTIONS, f"--conf-dir={shared}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "syntax check OK" in result.stderr, result.stderr
        fallback = tmp_path / "fallback.conf"
        fallback.write_text(provision.render_template("dnsmasq.conf.in", config))
        result = subprocess.run([dnsmasq, "--test", f"--conf-file={fallback}"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    dropin = provision.render_dnsmasq_dropin(load_config(None))
    assert "address=/#/10.42.0.1" in dropin and "no-resolv" in dropin
    assert "\nlog-queries" not in dropin
    https = provision.render_dnsmasq_dropin(load_config(
        None, overrides={"portal.https_url": "https://library.example.org"}))
    assert 'dhcp-option-force=114,"https://library.example.org/captive-portal/api"' in https


def test_hostapd_fallback_template():
    config = load_config(None, overrides={"network.passphrase": "territorio2026",
                                          "network.country": "BR", "network.channel": 1})
    text = provision.render_template("hostapd.conf.in", config)
    assert "@" not in text.replace("@INTERFACE", "")
    for line in ("interface=wlan0", "ssid=Community library", "country_code=BR", "channel=1",
                 "hw_mode=g", "wpa=2", "wpa_passphrase=territorio2026"):
        assert f"\n{line}\n" in text, line


# -- systemd ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def unit_root(tmp_path_factory):
    """A tree with systemd's own units, ours, and an executable where ExecStart points."""
    need_tool("systemd-analyze")
    root = tmp_path_factory.mktemp("units")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in provision.unit_files():
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    stub = root / "opt/hotspot/venv/bin/hotspot"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return root


def test_systemd_analyze_verify_every_unit(unit_root):
    units = [f"/etc/systemd/system/{unit.name}" for unit in provision.unit_files()]
    assert "/etc/systemd/system/hotspot.service" in units
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={unit_root}",
                             *units], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_every_unit_has_the_house_shape():
    for unit in provision.unit_files():
        if unit.suffix != ".service":
            continue  # timers, sockets and paths only start a service
        text = unit.read_text()
        for key in ("Documentation=", "ProtectSystem=", "NoNewPrivileges=yes", "PrivateTmp=yes",
                    "ProtectHome=yes", "RestrictAddressFamilies="):
            assert key in text, (unit.name, key)
        if "Type=oneshot" not in text:
            assert "Restart=" in text and "MemoryMax=" in text, unit.name


def test_web_service_exposure_is_at_most_2(unit_root):
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                             f"--root={unit_root}", "hotspot.service"],
                            capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for hotspot\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout
    text = (REPO / "systemd/hotspot.service").read_text()
    assert "\nUser=hotspot\n" in text and "AmbientCapabilities=CAP_NET_BIND_SERVICE" in text
    assert "ReadWritePaths=/var/lib/hotspot\n" in text


# -- pinned versions ------------------------------------------------------------------------------

def test_requirements_pin_every_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO / "provisioning/requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~ \[;]", requirement, 1)[0].lower()
        assert name in pins, f"{name} is not pinned in provisioning/requirements.txt"
    assert all(re.fullmatch(r"\d+(\.\d+)*", version) for version in pins.values())
