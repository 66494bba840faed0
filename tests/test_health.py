"""Health readings: real psutil on this machine, fake /sys trees for the Pi-only readings."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from hotspot import __version__
from hotspot.config import load_config
from hotspot.health import (count_dhcp_leases, parse_throttled, power, read_health)
from hotspot.status import build_status, render_text
from hotspot.library import DataPaths


def make_config(tmp_path: Path, **overrides):
    return load_config(None, {"data_dir": str(tmp_path / "data"),
                              "health.dhcp_leases_file": str(tmp_path / "no-leases"),
                              **overrides})


def fake_pi_sys(root: Path, *, millidegrees: int = 52300, throttled: str | None = "50005",
                volt_alarm: str | None = None) -> Path:
    zone = root / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text(f"{millidegrees}\n")
    if throttled is not None:
        firmware = root / "devices" / "platform" / "soc" / "soc:firmware"
        firmware.mkdir(parents=True)
        (firmware / "get_throttled").write_text(throttled + "\n")
    if volt_alarm is not None:
        hwmon = root / "class" / "hwmon" / "hwmon1"
        hwmon.mkdir(parents=True)
        (hwmon / "name").write_text("rpi_volt\n")
        (hwmon / "in0_lcrit_alarm").write_text(volt_alarm + "\n")
    return root


def test_real_readings_on_this_machine(tmp_path):
    data = tmp_path / "data"
    (data / "media" / "ab").mkdir(parents=True)
    (data / "media" / "ab" / "abcd").write_bytes(b"x" * 50_000)
    health = read_health(make_config(tmp_path), data, vcgencmd=None, iw=None)
    disk = psutil.disk_usage(str(data))
    assert health["disk"]["total"] == disk.total
    assert abs(health["disk"]["free"] - disk.free) < 200_000_000
    assert health["content_size"] >= 50_000
    assert health["memory"]["total"] == psutil.virtual_memory().total
    assert 0 <= health["memory"]["used_percent"] <= 100
    assert health["load"]["cpus"] == psutil.cpu_count()
    assert abs(health["uptime_seconds"] - (time.time() - psutil.boot_time())) < 5
    assert health["version"] == __version__
    # What this machine lacks is listed, not invented.
    assert health["phones"] is None and "phones" in health["missing"]
    for name, value in health.items():
        if name != "missing":
            assert (value is None) == (name in health["missing"])


def test_fake_pi_thermal_zone_and_firmware_throttling(tmp_path):
    sys_root = fake_pi_sys(tmp_path / "sys", millidegrees=81234, throttled="50005")
    config = make_config(tmp_path)
    health = read_health(config, tmp_path, sys_root=sys_root, vcgencmd=None, iw=None)
    assert health["cpu_temperature"] == {"celsius": 81.2, "source": "thermal zone"}
    assert health["power"]["under_voltage_now"] is True
    assert health["power"]["throttled_now"] is True
    assert health["power"]["under_voltage_since_boot"] is True
    assert health["power"]["frequency_capped_now"] is False
    status = build_status(config, DataPaths(tmp_path), health=health)
    codes = {p["code"] for p in status["problems"]}
    assert {"too-hot", "under-voltage", "no-library"} <= codes
    assert status["verdict"] == "attention"
    assert "The Pi is too hot (81.2 °C)." in render_text(status)


def test_fake_pi_hwmon_voltage_sensor(tmp_path):
    sys_root = fake_pi_sys(tmp_path / "sys", throttled=None, volt_alarm="0")
    assert power(sys_root, vcgencmd=None)["under_voltage_since_boot"] is False
    (sys_root / "class" / "hwmon" / "hwmon1" / "in0_lcrit_alarm").write_text("1\n")
    reading = power(sys_root, vcgencmd=None)
    assert reading["under_voltage_since_boot"] is True and reading["source"] == "hwmon"


def test_no_pi_readings_in_an_empty_sys(tmp_path):
    (tmp_path / "sys").mkdir()
    health = read_health(make_config(tmp_path), tmp_path, sys_root=tmp_path / "sys",
                         vcgencmd=None, iw=None)
    assert health["cpu_temperature"] is None and health["power"] is None
    assert {"cpu_temperature", "power"} <= set(health["missing"])


def test_vcgencmd_output(tmp_path):
    assert parse_throttled("throttled=0x0") == {name: False for name in parse_throttled("0")}
    flags = parse_throttled("throttled=0x80008")
    assert flags["soft_temperature_limit_now"] and flags["soft_temperature_limit_since_boot"]
    assert parse_throttled("error=1 error_msg=\"Command not registered\"") is None
    # A fake vcgencmd on PATH, as on a Pi without the sysfs file.
    tool = tmp_path / "bin" / "vcgencmd"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho throttled=0x10000\n")
    tool.chmod(0o755)
    (tmp_path / "sys").mkdir()
    reading = power(tmp_path / "sys", vcgencmd=str(tool))
    assert reading["source"] == "vcgencmd"
    assert reading["under_voltage_since_boot"] and not reading["under_voltage_now"]


def test_phones_are_counted_from_leases_only_as_a_number(tmp_path):
    now = 1_800_000_000
    leases = tmp_path / "leases"
    leases.write_text(f"{now + 100} aa:bb:cc:00:00:01 10.42.0.10 phone-a *\n"
                      f"{now - 100} aa:bb:cc:00:00:02 10.42.0.11 phone-b *\n"
                      f"0 aa:bb:cc:00:00:03 10.42.0.12 * *\n"
                      "duid 00:01:00:01\n")
    assert count_dhcp_leases(leases, now) == 2
    assert count_dhcp_leases(tmp_path / "missing", now) is None
    config = make_config(tmp_path, **{"health.dhcp_leases_file": str(leases),
                                      "health.wifi_client_limit": 2})
    health = read_health(config, tmp_path, sys_root=tmp_path, vcgencmd=None, iw=None)
    phones = health["phones"]
    assert phones["count"] >= 1 and phones["limit"] == 2 and phones["source"] == "dhcp leases"
    assert "aa:bb" not in repr(health) and "10.42.0" not in repr(health)


def test_hotspot_status_command(tmp_path):
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    base = [sys.executable, "-m", "hotspot.cli", "--data-dir", str(data), "status"]
    env = {**os.environ, "HOTSPOT_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    text = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Needs attention:") and "No library is installed." in text.stdout
    as_json = subprocess.run(base + ["--json"], capture_output=True, text=True, timeout=60, env=env)
    status = json.loads(as_json.stdout)
    assert status["verdict"] == "attention" and status["health"]["memory"]["total"] > 0


def test_usb_and_sync_state_are_shown_when_their_modules_exist(tmp_path):
    pytest = __import__("pytest")
    usb_state = pytest.importorskip("hotspot.usb_state")
    pytest.importorskip("hotspot.sync")
    data = tmp_path / "data"
    data.mkdir()
    config = make_config(tmp_path)
    (data / usb_state.STATE_FILE).write_text(
        '{"format": 1, "watcher": {"pid": 999999999}, "history": [], "current": '
        '{"state": "importing", "message": "Copying", "drive": null}}')
    status = build_status(config, DataPaths(data), health=read_health(
        config, data, sys_root=tmp_path, vcgencmd=None, iw=None))
    assert status["features"] == {"usb": True, "sync": True}
    # The watcher is gone, so the drive is no longer being worked on: safe, and an error.
    assert status["usb"]["safe_to_remove"] is True
    assert "usb-error" in {p["code"] for p in status["problems"]}
    assert status["sync"]["last_run"] is None


def test_usb_error_advice_depends_on_what_went_wrong(tmp_path):
    from hotspot.status import USB_ADVICE, find_problems
    config = make_config(tmp_path)
    seen = set()
    for reason in ("removed-too-early", "packs-refused", "cannot-use-drive", "watcher-stopped",
                   "something-new"):
        status = {"library": {"version": 1}, "health": {},
                  "usb": {"current": {"state": "error", "reason": reason}}}
        (usb_problem,) = [p for p in find_problems(config, status) if p["code"] == "usb-error"]
        assert usb_problem["advice"] == USB_ADVICE.get(reason, USB_ADVICE[None])
        seen.add(usb_problem["advice"])
    assert len(seen) == 5
