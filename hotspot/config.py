"""The one settings table, and loading the configuration file.

Every setting is declared once in ``SETTINGS`` with its default, its converter and a help
text. The TOML file, ``hotspot config show`` and ``docs/configuration.md`` all come from this
table; an unknown key in the file is an error that names the key.

    >>> cfg = load_config(None, overrides={"server.port": "0"})
    >>> cfg.server.port
    0
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from .errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/hotspot/hotspot.toml"
DEFAULT_DATA_DIR = "/var/lib/hotspot"
UI_LANGUAGES = ("en", "es", "fr", "pt")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError("expected a whole number")
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return number

    convert.type_name = "integer"  # type: ignore[attr-defined]
    return convert


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected text")
    return value


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of texts")
    return list(value)


_str_list.type_name = "list of strings"  # type: ignore[attr-defined]


def _language(value: Any) -> str:
    value = _str(value)
    if value not in UI_LANGUAGES:
        raise ValueError(f"expected one of {', '.join(UI_LANGUAGES)}")
    return value


def _log_level(value: Any) -> str:
    value = _str(value).upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
    return value


def _ipv4(value: Any) -> str:
    import ipaddress
    try:
        address = ipaddress.IPv4Address(_str(value))
    except ipaddress.AddressValueError:
        raise ValueError("expected an IPv4 address such as 10.42.0.1") from None
    if not (address.is_private or address.is_loopback) or str(address).endswith((".0", ".255")):
        raise ValueError("expected a private IPv4 address for a host (not .0 or .255)")
    return str(address)


def _ssid(value: Any) -> str:
    value = _str(value)
    if not 1 <= len(value.encode("utf-8")) <= 32:
        raise ValueError("expected a network name of 1 to 32 bytes")
    if value != value.strip() or any(ord(ch) < 32 or ch in "\\\x7f" for ch in value):
        raise ValueError("no spaces at either end, no control characters or backslashes")
    return value


def _passphrase(value: Any) -> str:
    value = _str(value)
    if value and not (8 <= len(value) <= 63 and all(32 <= ord(ch) < 127 for ch in value)):
        raise ValueError("expected empty (an open network) or 8 to 63 plain ASCII characters")
    return value


def _country(value: Any) -> str:
    value = _str(value).upper()
    if value != "00" and not (len(value) == 2 and value.isascii() and value.isalpha()):
        raise ValueError("expected a two-letter country code such as CO or BR (00: world)")
    return value


def _interface(value: Any) -> str:
    value = _str(value)
    if not 1 <= len(value) <= 15 or not all(ch.isascii() and (ch.isalnum() or ch in "-_.")
                                            for ch in value):
        raise ValueError("expected a network interface name such as wlan0")
    return value


def _hostname(value: Any) -> str:
    value = _str(value).lower().rstrip(".")
    labels = value.split(".") if value else []
    if value and not all(label and len(label) <= 63 and label.isascii()
                         and all(ch.isalnum() or ch == "-" for ch in label) for label in labels):
        raise ValueError("expected a host name such as library.lan, or empty")
    return value


def _https_url(value: Any) -> str:
    value = _str(value).rstrip("/")
    if value and (not value.startswith("https://") or len(value) <= 8
                  or any(ord(ch) <= 32 or ch in '"\\' for ch in value)):
        raise ValueError("expected empty or an https:// address")
    return value


for _converter in (_ipv4, _ssid, _passphrase, _country, _interface, _hostname, _https_url):
    _converter.type_name = "string"  # type: ignore[attr-defined]


_bool.type_name = "boolean"  # type: ignore[attr-defined]
_str.type_name = "string"  # type: ignore[attr-defined]
_language.type_name = "string"  # type: ignore[attr-defined]
_log_level.type_name = "string"  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Setting:
    name: str  # "section.key"; data_dir is the only top-level key
    default: Any
    convert: Callable[[Any], Any]
    help: str

    @property
    def section(self) -> str:
        return self.name.split(".")[0] if "." in self.name else ""

    @property
    def key(self) -> str:
        return self.name.split(".")[-1]


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", DEFAULT_DATA_DIR, _str,
            "Where the library, its files and the contributions are kept."),
    Setting("server.host", "0.0.0.0", _str,
            "Address the web server listens on (0.0.0.0: every network of the hotspot)."),
    Setting("server.port", 80, _int_range(0, 65535),
            "Port the web server listens on (0 picks a free port)."),
    Setting("server.threads", 8, _int_range(1, 64),
            "Worker threads that build pages. Media is sent by the main loop, not by these."),
    Setting("server.connection_limit", 200, _int_range(10, 10000),
            "Most phones connected to the web server at once."),
    Setting("server.channel_timeout", 120, _int_range(5, 3600),
            "Seconds an idle connection is kept open (slow phones need time)."),
    Setting("server.access_log", False, _bool,
            "Log one line per request (method, path, status, size). "
            "Never logs addresses or browsers, even when on."),
    Setting("server.log_level", "INFO", _log_level,
            "How much the server writes to its log: DEBUG, INFO, WARNING or ERROR."),
    Setting("library.default_language", "en", _language,
            "Language of the pages when the phone asks for none we have."),
    Setting("library.page_size", 20, _int_range(5, 100),
            "Resources listed on one page of browse and search results."),
    Setting("library.page_cache_entries", 512, _int_range(0, 100000),
            "Rendered pages kept in memory (per catalog version and language)."),
    Setting("library.max_query_length", 200, _int_range(10, 1000),
            "Longest search text accepted, in characters."),
    Setting("packs.trusted_keys_dir", "/etc/hotspot/trusted-keys", _str,
            "Folder of minisign public keys (*.pub) whose signed update packs are installed."),
    Setting("packs.free_space_margin_mb", 200, _int_range(0, 1_000_000),
            "Free space (MB) always left on the data disk after copying a pack's files."),
    Setting("usb.service_user", "hotspot", _str,
            "User that reads USB drives and installs their packs (the USB watcher runs as root "
            "only to mount them; it refuses to start if this user does not exist)."),
    Setting("usb.mount_dir", "/run/hotspot-usb", _str,
            "Private folder where the USB watcher mounts a drive while it reads it."),
    Setting("usb.allow_loop_devices", False, _bool,
            "Treat loop devices like USB drives. For tests only."),
    Setting("contributions.recipients", [], _str_list,
            "The hub's age public keys (age1...): contributions are encrypted to them on arrival."),
    Setting("contributions.allow_unencrypted", False, _bool,
            "Accept contributions without a recipient key, stored UNENCRYPTED. Avoid."),
    Setting("contributions.max_file_mb", 25, _int_range(1, 4000),
            "Largest attached file, in MB."),
    Setting("contributions.max_total_mb", 50, _int_range(1, 8000),
            "Largest contribution (all fields and files together), in MB."),
    Setting("contributions.max_files", 5, _int_range(0, 50),
            "Most files attached to one contribution."),
    Setting("contributions.reserve_mb", 500, _int_range(0, 1_000_000),
            "Free disk space (MB) kept for the library: below it, new contributions are refused."),
    Setting("contributions.retention_days", 30, _int_range(0, 3650),
            "Days a contribution the hub has acknowledged is kept before it is deleted."),
    Setting("contributions.rate_limit_per_hour", 20, _int_range(1, 10000),
            "Contributions one phone may send per hour (counted in memory only, never stored)."),
    Setting("sync.hub_url", "", _str,
            "The coalition hub's address (https://...); empty: no sync over the network."),
    Setting("sync.token_file", "/etc/hotspot/hub-token", _str,
            "File holding this hotspot's token, issued by 'hotspot hub add-hotspot'."),
    Setting("sync.hub_key_file", "/etc/hotspot/hub.pub", _str,
            "The hub's public receipt key (minisign .pub): receipts are checked against it."),
    Setting("sync.ca_file", "", _str,
            "CA certificates (PEM) to verify the hub's TLS certificate; empty: the system's."),
    Setting("sync.connect_timeout", 10, _int_range(1, 300),
            "Seconds to wait for the hub when probing it and connecting."),
    Setting("sync.timeout", 60, _int_range(5, 3600),
            "Seconds a request may wait for the hub to answer before the run stops."),
    Setting("sync.chunk_kb", 512, _int_range(16, 65536),
            "Size (KB) of each upload request: a cut connection re-sends at most this much."),
    Setting("sync.max_bytes_per_second", 0, _int_range(0, 10**10),
            "Bandwidth cap for sync, in bytes per second (0: no cap)."),
    Setting("sync.budget_mb_per_run", 0, _int_range(0, 10**7),
            "Most data (MB) one sync run sends and receives, for metered links (0: no limit)."),
    Setting("sync.backoff_initial_seconds", 60, _int_range(1, 86400),
            "Wait after a failed run before the timer tries again; doubles with each failure."),
    Setting("sync.backoff_max_seconds", 21600, _int_range(1, 604800),
            "Longest wait between tries (the doubling stops here; a network change resets it)."),
    Setting("sync.download_packs", True, _bool,
            "Fetch and install the newest signed pack of the installed library from the hub."),
    Setting("hub.data_dir", "/var/lib/hotspot-hub", _str,
            "Where the hub keeps envelopes, packs, the hotspot registry and its receipt key."),
    Setting("hub.host", "127.0.0.1", _str,
            "Address the hub listens on (keep 127.0.0.1 behind the TLS reverse proxy)."),
    Setting("hub.port", 8470, _int_range(0, 65535),
            "Port the hub listens on (0 picks a free port)."),
    Setting("hub.threads", 4, _int_range(1, 64),
            "Worker threads of the hub's server."),
    Setting("hub.identity_file", "", _str,
            "The hub's age identity (may be passphrase-protected with age -p) for reading "
            "contributions; empty: typed at the terminal."),
    Setting("hub.publisher_keys_dir", "", _str,
            "Folder of publishers' *.pub keys: packs are checked before publishing (empty: "
            "not checked here; hotspots always check)."),
    Setting("hub.max_envelope_mb", 8000, _int_range(1, 100000),
            "Largest envelope the hub accepts, in MB."),
    Setting("hub.max_chunk_mb", 64, _int_range(1, 4096),
            "Largest single upload request (one tus PATCH), in MB."),
    Setting("admin.session_hours", 12, _int_range(1, 720),
            "Hours a caretaker stays logged in to the console (/admin) before logging in again."),
    Setting("admin.setup_page", True, _bool,
            "Offer the one-time page that sets the console password while none is set."),
    Setting("admin.restart_units", ["hotspot.service"], _str_list,
            "systemd units the console may ask the privileged helper to restart."),
    Setting("health.dhcp_leases_file", "/var/lib/misc/dnsmasq.leases", _str,
            "DHCP leases file used to count phones when the Wi-Fi station list is not readable."),
    Setting("health.wifi_client_limit", 20, _int_range(1, 1000),
            "Phones the Wi-Fi can serve at once; the console warns from 80 % of it."),
    Setting("health.temperature_warning_c", 75, _int_range(40, 110),
            "CPU temperature (°C) from which the console says the Pi is too hot."),
    Setting("usage.enabled", True, _bool,
            "Count page views, searches, plays and downloads per resource per day "
            "(numbers only, nothing about people)."),
    Setting("usage.write_every_seconds", 300, _int_range(1, 86400),
            "How often the usage counts kept in memory are written to the data disk."),
    Setting("usage.keep_days", 90, _int_range(1, 3650),
            "Days of usage counts kept on the hotspot."),
    # -- network and captive portal (provisioning, hotspot.portal) --------------------------
    Setting("network.interface", "wlan0", _interface,
            "Wi-Fi interface that opens the hotspot's network."),
    Setting("network.ssid", "Community library", _ssid,
            "Name of the Wi-Fi network phones see (1 to 32 bytes)."),
    Setting("network.passphrase", "", _passphrase,
            "Wi-Fi password (WPA2, 8 to 63 characters); empty: an open network anyone can join."),
    Setting("network.country", "00", _country,
            "Wi-Fi country code (CO, BR, CD, ID...), which decides the legal channels and power. "
            "00: the world setting, channels 1 to 11 only."),
    Setting("network.channel", 6, _int_range(1, 13),
            "Wi-Fi channel on 2.4 GHz (1, 6 or 11 overlap least; 12 and 13 not everywhere)."),
    Setting("network.address", "10.42.0.1", _ipv4,
            "The hotspot's own address on its Wi-Fi network; phones get addresses next to it "
            "and every name they look up answers with it."),
    Setting("network.forwarding", False, _bool,
            "Let phones reach the Pi's own uplink (cable, modem). Off: the hotspot is an island."),
    Setting("portal.enabled", True, _bool,
            "Answer phones' connectivity checks so they open the library by themselves, and send "
            "requests for other sites to the library's home page."),
    Setting("portal.hostname", "library.lan", _hostname,
            "A name that also reaches the library (besides the address); empty for none."),
    Setting("portal.remember_minutes", 720, _int_range(0, 10080),
            "After a phone taps 'Open the library', its checks are answered 'online' for this "
            "long (kept in memory only, never stored), so it stays on the hotspot."),
    Setting("portal.https_url", "", _https_url,
            "An https:// address with a valid certificate for this hotspot, if it has one: it is "
            "announced to phones (DHCP option 114, RFC 8910). Usually empty offline."),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


class Config(SimpleNamespace):
    """Effective settings: ``cfg.server.port``, ``cfg.data_dir``; ``cfg.value("server.port")``."""

    def value(self, name: str) -> Any:
        node: Any = self
        for part in name.split("."):
            node = getattr(node, part)
        return node

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


def _apply(values: dict[str, Any], name: str, raw: Any, origin: str) -> None:
    setting = _BY_NAME.get(name)
    if setting is None:
        raise ConfigError(f"{origin}: unknown setting '{name}'. "
                          f"Run 'hotspot config show' to see every setting.")
    try:
        values[name] = setting.convert(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: setting '{name}' has a bad value {raw!r}: {exc}.") from None


def _flatten(data: dict[str, Any], origin: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            for subkey, subvalue in value.items():
                if isinstance(subvalue, dict):
                    raise ConfigError(f"{origin}: unknown section '{key}.{subkey}'.")
                flat[f"{key}.{subkey}"] = subvalue
        else:
            flat[key] = value
    return flat


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse one TOML file into ``{"section.key": raw value}``; errors name the file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"Configuration file {path} does not exist.") from None
    except PermissionError:
        raise ConfigError(f"Configuration file {path} cannot be read (permission denied).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Configuration file {path} is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Configuration file {path} is not UTF-8 text.") from None
    return _flatten(data, str(path))


def resolve_config_path(cli_path: str | None, environ: dict[str, str] | None = None) -> Path | None:
    """``--config`` wins, then ``HOTSPOT_CONFIG``, then the default file if it exists."""
    environ = os.environ if environ is None else environ
    if cli_path:
        return Path(cli_path)
    if environ.get("HOTSPOT_CONFIG"):
        return Path(environ["HOTSPOT_CONFIG"])
    default = Path(DEFAULT_CONFIG_PATH)
    return default if default.exists() else None


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the file at ``path`` (if any), then ``overrides`` (from the command line)."""
    values = {setting.name: setting.default for setting in SETTINGS}
    if path is not None:
        for name, raw in read_config_file(Path(path)).items():
            _apply(values, name, raw, str(path))
    for name, raw in (overrides or {}).items():
        if raw is not None:
            _apply(values, name, raw, "command line")
    return _build(values)


def _build(values: dict[str, Any]) -> Config:
    config = Config()
    for name, value in values.items():
        if "." in name:
            section, key = name.split(".", 1)
            if not hasattr(config, section):
                setattr(config, section, SimpleNamespace())
            setattr(getattr(config, section), key, value)
        else:
            setattr(config, name, value)
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_toml(config: Config | None = None, *, commented_defaults: bool = False) -> str:
    """The configuration as TOML, every key with its help and default.

    With ``commented_defaults`` every line is commented out (the file provisioning installs).
    """
    lines = ["# Community hotspot configuration. Every setting, with its help and default."]
    section = None
    for setting in SETTINGS:
        if setting.section != section:
            section = setting.section
            lines.append("")
            if section:
                lines.append(f"[{section}]")
        value = setting.default if config is None else config.value(setting.name)
        lines.append(f"# {setting.help} (default: {_toml_value(setting.default)})")
        prefix = "# " if commented_defaults else ""
        lines.append(f"{prefix}{setting.key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The settings table for ``docs/configuration.md``."""
    rows = ["| Setting | Type | Default | What it does |", "| --- | --- | --- | --- |"]
    for setting in SETTINGS:
        type_name = getattr(setting.convert, "type_name", "string")
        rows.append(f"| `{setting.name}` | {type_name} | `{_toml_value(setting.default)}` | {setting.help} |")
    return "\n".join(rows) + "\n"
