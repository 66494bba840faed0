"""The Pi's health: disk, memory, load, temperature, power, uptime and phones connected.

Every reading is optional. Off a Raspberry Pi (or in a container) some readings do not exist;
they come back as ``None`` and their name is listed in ``missing`` with the reason, so the
console shows what exists and says what does not. Pi-only readings come from ``/sys``, whose
root is a parameter so tests can point it at a fake tree.

Phones are only ever *counted*: the DHCP leases file and the Wi-Fi station list hold hardware
addresses, which are read line by line and never kept, returned or logged.

    >>> health = read_health(config, Path("/var/lib/hotspot"))
    >>> health["disk"]["free"], health["cpu_temperature"], health["phones"]
    (27012345856, {'celsius': 48.3, 'source': 'thermal zone'}, {'count': 3, 'limit': 20, ...})
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from . import __version__

# Bits of the firmware's throttled value (``vcgencmd get_throttled``, or
# /sys/devices/platform/soc/soc:firmware/get_throttled on recent kernels).
THROTTLE_BITS = {
    "under_voltage_now": 0, "frequency_capped_now": 1, "throttled_now": 2,
    "soft_temperature_limit_now": 3, "under_voltage_since_boot": 16,
    "frequency_capped_since_boot": 17, "throttled_since_boot": 18,
    "soft_temperature_limit_since_boot": 19,
}
CONTENT_SIZE_CACHE_SECONDS = 300
COMMAND_TIMEOUT = 3


def parse_throttled(text: str) -> dict[str, bool] | None:
    """``throttled=0x50005`` (vcgencmd) or ``50005`` (sysfs) -> named flags; None if unreadable."""
    value = text.strip().rsplit("=", 1)[-1].strip()
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return {name: bool(number >> bit & 1) for name, bit in THROTTLE_BITS.items()}


def disk_usage(path: Path) -> dict[str, int] | None:
    try:
        usage = psutil.disk_usage(str(path))
    except OSError:
        return None
    return {"total": usage.total, "used": usage.used, "free": usage.free}


_content_cache: dict[str, tuple[float, int]] = {}
_content_lock = threading.Lock()


def content_store_size(media_dir: Path, *, max_age: float = CONTENT_SIZE_CACHE_SECONDS) -> int | None:
    """Bytes in the media store (cached: walking 10,000 files on an SD card takes a while)."""
    key = str(media_dir)
    now = time.monotonic()
    with _content_lock:
        cached = _content_cache.get(key)
        if cached and now - cached[0] < max_age:
            return cached[1]
    if not media_dir.is_dir():
        return None
    total = 0
    for top, _dirs, files in os.walk(media_dir):
        for name in files:
            try:
                total += os.stat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                continue  # removed while we walked
    with _content_lock:
        _content_cache[key] = (now, total)
    return total


def memory() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {"total": vm.total, "available": vm.available, "used_percent": vm.percent}


def load() -> dict[str, Any] | None:
    try:
        one, five, fifteen = psutil.getloadavg()
    except (OSError, AttributeError):
        return None
    cpus = psutil.cpu_count() or 1
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2),
            "cpus": cpus}


def uptime_seconds() -> int | None:
    try:
        return max(0, int(time.time() - psutil.boot_time()))
    except (OSError, RuntimeError):
        return None


def cpu_temperature(sys_root: Path, *, use_psutil: bool = True) -> dict[str, Any] | None:
    """psutil's sensors where present (cpu_thermal on a Pi, coretemp on a PC), else the
    first thermal zone under ``sys_root``."""
    if use_psutil and hasattr(psutil, "sensors_temperatures"):
        try:
            sensors = psutil.sensors_temperatures()
        except (OSError, RuntimeError):
            sensors = {}
        for name in ("cpu_thermal", "coretemp", "k10temp", "soc_thermal", "cpu-thermal"):
            for entry in sensors.get(name, ()):
                if entry.current is not None:
                    return {"celsius": round(entry.current, 1), "source": f"psutil {name}"}
    zones = sorted((sys_root / "class" / "thermal").glob("thermal_zone*/temp"))
    for zone in zones:
        try:
            millidegrees = int(zone.read_text().strip())
        except (OSError, ValueError):
            continue
        return {"celsius": round(millidegrees / 1000, 1), "source": "thermal zone"}
    return None


def power(sys_root: Path, vcgencmd: str | None = "vcgencmd") -> dict[str, Any] | None:
    """Under-voltage and throttling: the firmware's throttled flags (sysfs or vcgencmd), else
    the Raspberry Pi voltage sensor in hwmon (``rpi_volt``: under-voltage only)."""
    firmware = sys_root / "devices" / "platform" / "soc" / "soc:firmware" / "get_throttled"
    try:
        flags = parse_throttled(firmware.read_text())
        if flags is not None:
            return {**flags, "source": "firmware"}
    except OSError:
        pass
    command = shutil.which(vcgencmd) if vcgencmd else None
    if command:
        try:
            out = subprocess.run([command, "get_throttled"], capture_output=True, text=True,
                                 timeout=COMMAND_TIMEOUT, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        flags = parse_throttled(out) if out.strip().startswith("throttled=") else None
        if flags is not None:
            return {**flags, "source": "vcgencmd"}
    for hwmon in sorted((sys_root / "class" / "hwmon").glob("hwmon*")):
        try:
            if (hwmon / "name").read_text().strip() != "rpi_volt":
                continue
            alarm = (hwmon / "in0_lcrit_alarm").read_text().strip() == "1"
        except OSError:
            continue
        # The hwmon alarm latches once under-voltage happened since boot.
        return {"under_voltage_now": None, "under_voltage_since_boot": alarm,
                "throttled_now": None, "throttled_since_boot": None, "source": "hwmon"}
    return None


def count_wifi_stations(interface: str, iw: str | None = "iw") -> int | None:
    """Phones associated to the access point now (``iw dev IF station dump``), count only."""
    command = shutil.which(iw) if iw else None
    if not command:
        return None
    try:
        result = subprocess.run([command, "dev", interface, "station", "dump"],
                                capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return sum(1 for line in result.stdout.splitlines() if line.startswith("Station "))


def count_dhcp_leases(leases_file: Path, now: float | None = None) -> int | None:
    """Unexpired leases in a dnsmasq leases file (``expiry mac ip name client-id`` lines)."""
    now = time.time() if now is None else now
    try:
        lines = leases_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    count = 0
    for line in lines:
        first = line.split(" ", 1)[0]
        if first.isdigit() and (int(first) == 0 or int(first) > now):
            count += 1
    return count


def phones(config, *, iw: str | None = "iw", now: float | None = None) -> dict[str, Any] | None:
    limit = config.health.wifi_client_limit
    interface = getattr(getattr(config, "network", None), "interface", None) or "wlan0"
    stations = count_wifi_stations(interface, iw)
    if stations is not None:
        count, source = stations, "wifi stations"
    else:
        leases = count_dhcp_leases(Path(config.health.dhcp_leases_file), now)
        if leases is None:
            return None
        count, source = leases, "dhcp leases"
    return {"count": count, "limit": limit, "near_limit": count >= max(1, int(limit * 0.8)),
            "source": source}


def read_health(config, data_dir: Path | None = None, *, sys_root: Path | str = "/sys",
                use_psutil_sensors: bool | None = None, vcgencmd: str | None = "vcgencmd",
                iw: str | None = "iw") -> dict[str, Any]:
    """Every reading, each ``None`` when this machine does not have it (listed in ``missing``).

    ``use_psutil_sensors`` defaults to True only for the real ``/sys``: psutil always reads
    the real one, so a test's fake tree would be bypassed.
    """
    sys_root = Path(sys_root)
    data_dir = Path(data_dir if data_dir is not None else config.data_dir)
    if use_psutil_sensors is None:
        use_psutil_sensors = sys_root == Path("/sys")
    readings: dict[str, Any] = {
        "version": __version__,
        "disk": disk_usage(data_dir),
        "content_size": content_store_size(data_dir / "media"),
        "memory": memory(),
        "load": load(),
        "uptime_seconds": uptime_seconds(),
        "cpu_temperature": cpu_temperature(sys_root, use_psutil=use_psutil_sensors),
        "power": power(sys_root, vcgencmd),
        "phones": phones(config, iw=iw),
    }
    readings["missing"] = sorted(name for name, value in readings.items() if value is None)
    return readings
