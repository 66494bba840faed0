"""``hotspot sync``: deliver contributions to the hub and fetch newer packs when a link appears.

A run probes the hub (short timeout; no hub, a quick quiet exit), then delivers every queued
or exported-but-unacknowledged envelope, oldest first, and finally downloads and installs the
newest signed pack of the installed library. Uploads use tus 1.0.0 (core, creation, checksum)
in chunks of ``sync.chunk_kb``: a cut connection resumes from the offset the hub confirmed.
An envelope is marked delivered only after the hub's signed receipt is checked against the
hub's key (``sync.hub_key_file``). What happened is kept in ``<data_dir>/sync/state.json``
(written atomically) for ``hotspot status``: last error, consecutive failed runs, when the
next try is due, the oldest undelivered contribution. Failed runs back off exponentially with
jitter up to ``sync.backoff_max_seconds``; a network change starts again from the shortest wait.

    $ hotspot sync                       # now (operator)
    $ hotspot sync --if-due --quiet      # the systemd timer: respects the backoff
    $ hotspot sync --network-changed     # NetworkManager hook: reset the backoff, run
    $ hotspot sync --receipts /media/usb # receipts the hub wrote onto a drive
    $ hotspot sync --status              # the saved state, as JSON

    >>> read_sync_state(Path("/var/lib/hotspot"))["attempts"]
    0
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import http.client
import json
import logging
import os
import random
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from content_pack.signing import PublicKey, load_trusted_keys, sign_bytes
from hotspot.bundle import load_or_create_hotspot_key
from hotspot.contributions import UNDELIVERED, ContributionQueue, _write_atomically
from hotspot.errors import ConfigError, HotspotError, PackError, SignatureError
from hotspot.usage import USAGE_FILE, daily_aggregates

log = logging.getLogger("hotspot.sync")

STATE_DIR = "sync"
STATE_NAME = "state.json"
INBOX_DIR = "hotspot-inbox"
TUS_VERSION = "1.0.0"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_PIECE = 16 * 1024     # bytes sent or read between two bandwidth-cap checks
MB = 1_000_000


class HubUnreachable(HotspotError):
    """No connection to the hub (network down, DNS, timeout, connection cut)."""


class HubRefused(HotspotError):
    """The hub answered with an error (wrong token, unknown hotspot, refused envelope)."""


class BudgetSpent(HotspotError):
    """This run's data budget is used up; the rest waits for the next run."""


# -- state -------------------------------------------------------------------------------------

_DEFAULT_STATE: dict[str, Any] = {
    "last_run": None, "last_success": None, "last_error": None, "attempts": 0,
    "next_attempt_after": None, "network": None, "undelivered": None,
    "oldest_undelivered_day": None, "delivered_last_run": 0, "bytes_sent_last_run": 0,
    "bytes_received_last_run": 0, "refused": {}, "refused_packs": {}, "last_pack": None,
}


def _state_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / STATE_DIR / STATE_NAME


def read_sync_state(data_dir: str | os.PathLike, *,
                    today: dt.date | None = None) -> dict[str, Any]:
    """The last sync's outcome (for ``hotspot status`` and the status page); never raises.

    Keys: ``last_run``, ``last_success`` (ISO times), ``last_error`` (text or None),
    ``attempts`` (failed runs in a row), ``next_attempt_after``, ``undelivered``,
    ``oldest_undelivered_day`` and ``oldest_undelivered_age_days``, ``delivered_last_run``,
    ``bytes_sent_last_run``, ``bytes_received_last_run``, ``refused`` ({uuid: reason}),
    ``last_pack``.
    """
    state = dict(_DEFAULT_STATE)
    try:
        saved = json.loads(_state_path(data_dir).read_text("utf-8"))
        if isinstance(saved, dict):
            state.update(saved)
    except (OSError, ValueError):
        pass
    state.pop("uploads", None)
    day = state.get("oldest_undelivered_day")
    today = today or dt.datetime.now(dt.timezone.utc).date()
    try:
        state["oldest_undelivered_age_days"] = (today - dt.date.fromisoformat(day)).days \
            if day else None
    except (TypeError, ValueError):
        state["oldest_undelivered_age_days"] = None
    return state


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = _state_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, json.dumps(state, indent=1, sort_keys=True).encode(), mode=0o640)


def _load_state(data_dir: Path) -> dict[str, Any]:
    state = dict(_DEFAULT_STATE, uploads={})
    try:
        saved = json.loads(_state_path(data_dir).read_text("utf-8"))
        if isinstance(saved, dict):
            state.update(saved)
    except (OSError, ValueError):
        pass
    return state


def backoff_seconds(attempts: int, initial: float, cap: float,
                    rand: random.Random | None = None) -> float:
    """Wait before try ``attempts + 1``: doubling from ``initial``, capped, "equal jitter"
    (between half and all of it, so many hotspots that failed together do not return
    together)."""
    if attempts <= 0:
        return 0.0
    delay = min(cap, initial * 2 ** min(attempts - 1, 40))
    return (rand or random).uniform(delay / 2, delay)


def network_fingerprint() -> str:
    """Changes when an interface gains or loses an address or the default route changes."""
    parts = []
    try:
        import psutil
        for name, addresses in sorted(psutil.net_if_addrs().items()):
            if name == "lo":
                continue
            parts += [f"{name}={a.address}" for a in addresses
                      if a.family in (socket.AF_INET, socket.AF_INET6)]
    except Exception:  # noqa: BLE001 - a fingerprint must never stop a sync
        pass
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 2 and fields[1] == "00000000":
                parts.append(f"default={fields[0]}:{fields[2]}")
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


# -- the connection ----------------------------------------------------------------------------

class Meter:
    """Counts bytes against the per-run budget and keeps to the bandwidth cap."""

    def __init__(self, bytes_per_second: int = 0, budget: int = 0,
                 clock=time.monotonic, sleep=time.sleep):
        self.rate = bytes_per_second
        self.budget = budget
        self.sent = 0
        self.received = 0
        self._clock, self._sleep = clock, sleep
        self._start = clock()
        self._counted = 0

    @property
    def used(self) -> int:
        return self.sent + self.received

    def remaining(self) -> int | None:
        return None if not self.budget else max(0, self.budget - self.used)

    def check(self, upcoming: int) -> None:
        remaining = self.remaining()
        if remaining is not None and upcoming > remaining:
            raise BudgetSpent("This run's data budget (sync.budget_mb_per_run) is used up; "
                              "the rest is sent next time.")

    def count(self, nbytes: int, *, sent: bool) -> None:
        if sent:
            self.sent += nbytes
        else:
            self.received += nbytes
        if self.rate:
            self._counted += nbytes
            ahead = self._counted / self.rate - (self._clock() - self._start)
            if ahead > 0:
                self._sleep(ahead)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def error(self) -> str:
        value = self.json()
        if isinstance(value, dict) and isinstance(value.get("error"), str):
            return value["error"]
        return f"HTTP {self.status}"


class HubClient:
    """One keep-alive connection to the hub; every failure of the link is ``HubUnreachable``."""

    def __init__(self, url: str, token: str, *, ca_file: str = "", connect_timeout: float = 10,
                 timeout: float = 60, meter: Meter | None = None):
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError("sync.hub_url must be https://HOST[:PORT][/PATH], not %(url)r.",
                              url=url)
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
            raise ConfigError("sync.hub_url must use https (the token and contributions cross "
                              "the network); plain http is only for 127.0.0.1.")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.meter = meter or Meter()
        self._context = None
        if self.scheme == "https":
            try:
                self._context = ssl.create_default_context(cafile=ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("sync.ca_file %(path)s cannot be used: %(reason)s",
                                  path=ca_file, reason=str(exc)) from None
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                                         context=self._context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._conn.connect()
        self._conn.sock.settimeout(timeout)
        return self._conn

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None, timeout: float | None = None,
                stream: bool = False) -> Answer | http.client.HTTPResponse:
        all_headers = {"Authorization": f"Bearer {self.token}", "Tus-Resumable": TUS_VERSION,
                       "User-Agent": "hotspot-sync", **(headers or {})}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        try:
            conn = self._connection(timeout or self.timeout)
            conn.request(method, self.prefix + path, body=self._metered(body)
                         if body else body, headers=all_headers)
            response = conn.getresponse()
            if stream:
                return response
            data = response.read()
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise HubUnreachable("The hub's TLS certificate is not trusted (%(reason)s). "
                                 "Set sync.ca_file if the hub uses its own CA.",
                                 reason=exc.verify_message or str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise HubUnreachable("The connection to the hub failed: %(reason)s",
                                 reason=str(exc) or type(exc).__name__) from None
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        self.meter.count(len(data), sent=False)
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def _metered(self, body: bytes) -> Iterator[bytes]:
        view = memoryview(body)
        for start in range(0, len(view), _PIECE):
            piece = view[start:start + _PIECE]
            yield bytes(piece)
            self.meter.count(len(piece), sent=True)


# -- one run -----------------------------------------------------------------------------------

@dataclass
class RunResult:
    delivered: list[tuple[str, str]] = field(default_factory=list)  # (uuid, status)
    refused: dict[str, str] = field(default_factory=dict)
    pack: str | None = None
    notes: list[str] = field(default_factory=list)
    usage_days: int = 0


class Syncer:
    def __init__(self, config, queue: ContributionQueue, client: HubClient, hub_key: PublicKey,
                 state: dict[str, Any]):
        self.config = config
        self.queue = queue
        self.client = client
        self.hub_key = hub_key
        self.state = state
        self.data_dir = Path(config.data_dir)
        self.hotspot_key = load_or_create_hotspot_key(self.data_dir)
        self.hotspot_id = self.hotspot_key.public_key().key_id_hex
        self.chunk = config.sync.chunk_kb * 1024

    def probe(self) -> dict[str, Any]:
        answer = self.client.request("GET", "/api/v1/hello",
                                     timeout=self.config.sync.connect_timeout)
        if answer.status != 200:
            raise HubRefused("The hub refused this hotspot: %(reason)s", reason=answer.error())
        return answer.json()

    def deliver_all(self, result: RunResult) -> None:
        entries = [e for e in self.queue.list() if e.state in UNDELIVERED]
        for entry in entries:  # list() is sorted by day then UUID: oldest first
            try:
                status = self.deliver(entry)
            except HubRefusedRun:
                raise
            except HubRefused as exc:
                result.refused[entry.uuid] = exc.message
                log.warning("The hub refused contribution %s: %s", entry.code, exc.message)
                continue
            result.delivered.append((entry.uuid, status))
            self.state["refused"].pop(entry.uuid, None)

    def send_usage(self, result: RunResult) -> None:
        """Send the daily usage counts (aggregates only; see docs/privacy.md) to the hub.

        A day is re-sent until it is over (the hub replaces a hotspot's day, so nothing counts
        twice); ``usage_sent_through`` remembers the last finished day the hub has."""
        since = self.state.get("usage_sent_through")
        days = daily_aggregates(self.data_dir / USAGE_FILE, since=since)
        if not days:
            return
        answer = self.client.request("POST", "/api/v1/usage",
                                     headers={"Content-Type": "application/json"},
                                     body=json.dumps(days, sort_keys=True).encode())
        if answer.status != 200:
            result.notes.append(f"The hub did not take the usage counts ({answer.error()}).")
            return
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        finished = [item["day"] for item in days if item["day"] < today]
        if finished:
            self.state["usage_sent_through"] = max(finished)
        result.usage_days = len(days)

    def deliver(self, entry) -> str:
        known = self._known(entry)
        if known is not None:
            self._mark(entry, known, "already had it")
            return "already had it"
        url, offset = self._create(entry)
        if url is None:  # the creation answer said the hub already has it
            self._mark(entry, offset, "already had it")
            return "already had it"
        with self.queue.open_envelope(entry.uuid) as envelope:
            offset = self._upload(entry, url, offset, envelope)
        receipt = self._known(entry)
        if receipt is None:
            raise HubRefused("The hub confirmed every byte of %(code)s but has no receipt for "
                             "it.", code=entry.code)
        self._mark(entry, receipt, "stored")
        return "stored"

    def _known(self, entry) -> dict | None:
        answer = self.client.request(
            "GET", f"/api/v1/envelopes/{entry.uuid}?sha256={entry.sha256}")
        if answer.status == 200:
            return answer.json()["receipt"]
        if answer.status == 404:
            return None
        self._refuse(answer)

    def _refuse(self, answer: Answer):
        if answer.status == 401:  # the hotspot itself is refused: nothing more this run
            raise HubRefusedRun("The hub refused this hotspot: %(reason)s",
                                reason=answer.error())
        raise HubRefused("%(reason)s (HTTP %(code)s)", reason=answer.error(),
                         code=answer.status)

    def _create(self, entry) -> tuple[str | None, Any]:
        from hotspot.hub.inbox import Described

        described = Described(entry.uuid, entry.sha256, entry.size, entry.kind, entry.day,
                              entry.encrypted)
        signature = sign_bytes(described.signed_text(self.hotspot_id), self.hotspot_key,
                               trusted_comment=f"hotspot-envelope/1 uuid:{entry.uuid}",
                               untrusted_comment="hotspot envelope description")
        meta = {"uuid": entry.uuid, "sha256": entry.sha256, "kind": entry.kind,
                "day": entry.day, "encrypted": "1" if entry.encrypted else "0",
                "signature": signature}
        answer = self.client.request("POST", "/api/v1/uploads", headers={
            "Upload-Length": str(entry.size),
            "Upload-Metadata": ",".join(f"{k} {base64.b64encode(v.encode()).decode()}"
                                        for k, v in meta.items())})
        if answer.status == 200:
            return None, answer.json()["receipt"]
        if answer.status != 201 or "location" not in answer.headers:
            self._refuse(answer)
        location = answer.headers["location"]
        path = urlsplit(location).path
        if self.client.prefix and path.startswith(self.client.prefix):
            path = path[len(self.client.prefix):]
        head = self.client.request("HEAD", path)
        if head.status != 200:
            self._refuse(head)
        return path, int(head.headers.get("upload-offset", "0"))

    def _upload(self, entry, path: str, offset: int, envelope: BinaryIO) -> int:
        if offset:
            log.info("Resuming contribution %s at byte %d of %d.", entry.code, offset,
                     entry.size)
        retried_chunk = False
        while offset < entry.size:
            envelope.seek(offset)
            data = envelope.read(min(self.chunk, entry.size - offset))
            if not data:
                raise HubRefused("Contribution %(code)s is shorter than its record; run "
                                 "'hotspot contributions reindex'.", code=entry.code)
            self.client.meter.check(len(data))
            answer = self.client.request("PATCH", path, body=data, headers={
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
                "Upload-Checksum": "sha256 " + base64.b64encode(
                    hashlib.sha256(data).digest()).decode()})
            if answer.status == 204:
                offset = int(answer.headers["upload-offset"])
                retried_chunk = False
                continue
            if answer.status in (409, 460) and not retried_chunk and \
                    offset + len(data) < entry.size:
                retried_chunk = True  # ask the hub where it stands, try once more
                head = self.client.request("HEAD", path)
                if head.status == 200:
                    offset = int(head.headers["upload-offset"])
                    continue
            self._refuse(answer)
        return offset

    def _mark(self, entry, receipt: dict, status: str) -> None:
        from hotspot.hub.receipts import verify_receipt

        try:
            verify_receipt(receipt, [self.hub_key], uuid=entry.uuid, sha256=entry.sha256)
        except SignatureError as exc:
            raise HubRefused("The hub's receipt for %(code)s does not check out (%(reason)s); "
                             "it is not marked delivered.", code=entry.code,
                             reason=exc.message) from None
        self.queue.mark_delivered(entry.uuid, {**receipt, "status": status})

    # -- packs --------------------------------------------------------------------------------

    def fetch_pack(self, result: RunResult) -> None:
        from hotspot.library import DataPaths
        from hotspot.packs import import_pack, installed_state

        paths = DataPaths(self.data_dir)
        installed = installed_state(paths)
        library = installed["library"]
        if not library:
            return
        version = installed["version"]
        answer = self.client.request(
            "GET", f"/api/v1/packs/{quote(library)}/newest?installed={version or ''}")
        if answer.status == 204:
            return
        if answer.status != 200:
            self._refuse(answer)
        entry = answer.json()
        if entry["sha256"] in self.state["refused_packs"]:
            return  # refused before: the same bytes would be refused again
        staged = self._download(entry)
        keys = load_trusted_keys(self.config.packs.trusted_keys_dir) \
            if Path(self.config.packs.trusted_keys_dir).is_dir() else []
        try:
            imported = import_pack(staged, paths, keys, margin_bytes=(
                self.config.packs.free_space_margin_mb * MB))
        except PackError as exc:  # SignatureError included: a bad pack is not retried
            self.state["refused_packs"][entry["sha256"]] = exc.message
            staged.unlink(missing_ok=True)
            raise HubRefused("The pack %(name)s from the hub was refused: %(reason)s",
                             name=entry["name"], reason=exc.message) from None
        staged.unlink(missing_ok=True)
        result.pack = f"{imported.library} version {imported.version}"
        self.state["last_pack"] = {"name": entry["name"], "version": imported.version,
                                   "installed": _now()}

    def _download(self, entry: dict) -> Path:
        folder = self.data_dir / STATE_DIR / "downloads"
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(entry["name"]).name
        part, final = folder / f"{name}.part", folder / name
        marker = folder / f"{name}.sha256"
        if not marker.exists() or marker.read_text().strip() != entry["sha256"]:
            for old in folder.iterdir():
                old.unlink()
            _write_atomically(marker, entry["sha256"].encode(), mode=0o640)
        if final.exists():
            return final
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if 0 < have < entry["size"] else {}
        if have < entry["size"]:
            response = self.client.request("GET", urlsplit(entry["url"]).path,
                                           headers=headers, stream=True)
            if response.status not in (200, 206):
                answer = Answer(response.status, {}, response.read())
                self.client.close()
                self._refuse(answer)
            mode = "ab" if response.status == 206 else "wb"
            try:
                with open(part, mode) as out:
                    while True:
                        self.client.meter.check(_PIECE)
                        piece = response.read(_PIECE)
                        if not piece:
                            break
                        out.write(piece)
                        self.client.meter.count(len(piece), sent=False)
                    out.flush()
                    os.fsync(out.fileno())
            except (OSError, http.client.HTTPException) as exc:
                self.client.close()
                raise HubUnreachable("The pack download was cut: %(reason)s",
                                     reason=str(exc) or type(exc).__name__) from None
            finally:
                response.close()
            self.client.close()
        size, digest = _hash(part)
        if size < entry["size"]:
            raise HubUnreachable("The pack download stopped at %(have)s of %(size)s bytes; it "
                                 "resumes next time.", have=size, size=entry["size"])
        if size != entry["size"] or digest != entry["sha256"]:
            part.unlink(missing_ok=True)
            raise HubRefused("The downloaded pack %(name)s does not match the hub's sha256; it "
                             "was deleted and is fetched again next time.", name=name)
        os.replace(part, final)
        return final


class HubRefusedRun(HubRefused):
    """The hub refused the hotspot itself (token): nothing else can be sent this run."""


# -- receipts carried back on a drive ----------------------------------------------------------

def apply_receipt_files(queue: ContributionQueue, folder: str | os.PathLike,
                        hub_keys: list[PublicKey], hotspot_id: str) -> int:
    """Mark delivered the envelopes that receipt files on a drive acknowledge; returns how many.

    Looks in ``<folder>/hotspot-inbox/`` (or ``folder`` itself) for ``receipts-*.json`` the
    hub's ``ingest`` wrote. Each receipt's signature is checked against the hub's key; files
    for other hotspots are skipped; repeated runs change nothing.
    """
    folder = Path(folder)
    inbox = folder / INBOX_DIR if (folder / INBOX_DIR).is_dir() else folder
    from hotspot.hub.receipts import RECEIPTS_FILE_FORMAT, verify_receipt

    marked = 0
    known = {entry.uuid: entry for entry in queue.list()}
    for path in sorted(inbox.glob("receipts-*.json")):
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            log.warning("Skipping %s: not a readable receipts file.", path)
            continue
        if not isinstance(data, dict) or data.get("format") != RECEIPTS_FILE_FORMAT \
                or data.get("hotspot") != hotspot_id:
            continue
        for signed in data.get("receipts", []):
            body = verify_receipt(signed, hub_keys)
            entry = known.get(body["uuid"])
            if entry is None or entry.state == "delivered" or entry.sha256 != body["sha256"]:
                continue
            if queue.mark_delivered(entry.uuid, {**signed, "status": "via drive"}):
                marked += 1
    return marked


# -- the command -------------------------------------------------------------------------------

def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


@contextlib.contextmanager
def _run_lock(data_dir: Path) -> Iterator[bool]:
    folder = data_dir / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _read_token(config) -> str:
    try:
        token = Path(config.sync.token_file).read_text("utf-8").strip()
    except OSError as exc:
        raise ConfigError("The hub token file %(path)s (sync.token_file) cannot be read: "
                          "%(reason)s. Staff make a token with 'hotspot hub add-hotspot'.",
                          path=config.sync.token_file, reason=exc.strerror or str(exc)) \
            from None
    if not token:
        raise ConfigError("The hub token file %(path)s is empty.", path=config.sync.token_file)
    return token


def _hub_key(config) -> PublicKey:
    try:
        return PublicKey.load(config.sync.hub_key_file)
    except OSError as exc:
        raise ConfigError("The hub's key %(path)s (sync.hub_key_file) cannot be read: "
                          "%(reason)s. 'hotspot hub key' prints it at the hub.",
                          path=config.sync.hub_key_file, reason=exc.strerror or str(exc)) \
            from None


def run_sync(config, *, if_due: bool = False, network_changed: bool = False,
             out=print) -> int:
    """One sync run; returns an exit code. Quiet runs (timer, hook) exit 0 when offline."""
    data_dir = Path(config.data_dir)
    quiet_offline = if_due or network_changed
    if not config.sync.hub_url:
        if quiet_offline:
            return 0
        raise ConfigError("sync.hub_url is not set: there is no hub to sync with.")
    with _run_lock(data_dir) as got:
        if not got:
            out("Another sync is running.")
            return 0
        state = _load_state(data_dir)
        fingerprint = network_fingerprint()
        if network_changed or fingerprint != state.get("network"):
            state["attempts"], state["next_attempt_after"] = 0, None
        state["network"] = fingerprint
        due = state.get("next_attempt_after")
        if if_due and due and time.time() < due:
            _write_state(data_dir, state)
            return 0
        queue = ContributionQueue.from_config(config)
        meter = Meter(config.sync.max_bytes_per_second, config.sync.budget_mb_per_run * MB)
        client = HubClient(config.sync.hub_url, _read_token(config), ca_file=config.sync.ca_file,
                           connect_timeout=config.sync.connect_timeout,
                           timeout=config.sync.timeout, meter=meter)
        syncer = Syncer(config, queue, client, _hub_key(config), state)
        result = RunResult()
        state["last_run"] = _now()
        error: HotspotError | None = None
        offline = False
        try:
            syncer.probe()
            syncer.deliver_all(result)
            syncer.send_usage(result)
            if config.sync.download_packs:
                syncer.fetch_pack(result)
        except BudgetSpent as exc:
            result.notes.append(exc.message)
        except HubUnreachable as exc:
            error, offline = exc, True
        except HubRefused as exc:
            error = exc
        finally:
            client.close()
        state["refused"] = {**{k: v for k, v in state.get("refused", {}).items()
                               if k not in dict(result.delivered)}, **result.refused}
        if error is None and result.refused:
            error = HubRefused("The hub refused %(count)s contribution(s); see 'hotspot sync "
                               "--status'.", count=len(result.refused))
        undelivered = [e for e in queue.list() if e.state in UNDELIVERED]
        state.update(
            undelivered=len(undelivered),
            oldest_undelivered_day=min((e.day for e in undelivered), default=None),
            delivered_last_run=len(result.delivered), bytes_sent_last_run=meter.sent,
            bytes_received_last_run=meter.received)
        if error is None:
            state.update(last_success=state["last_run"], last_error=None, attempts=0,
                         next_attempt_after=None)
        else:
            state["attempts"] = int(state.get("attempts") or 0) + 1
            state["last_error"] = error.message
            state["next_attempt_after"] = time.time() + backoff_seconds(
                state["attempts"], config.sync.backoff_initial_seconds,
                config.sync.backoff_max_seconds)
        _write_state(data_dir, state)
    stored = sum(1 for _, status in result.delivered if status == "stored")
    if error is None or result.delivered:
        out(f"Delivered {len(result.delivered)} contribution(s) ({stored} stored, "
            f"{len(result.delivered) - stored} already at the hub); {len(undelivered)} left."
            + (f" Installed {result.pack}." if result.pack else "")
            + "".join(f" {note}" for note in result.notes))
    if error is not None:
        if offline and quiet_offline:
            log.info("Hub not reachable: %s", error.message)
            return 0
        print(f"hotspot: {error.message}", file=sys.stderr)
        return 1
    return 0


def add_commands(commands) -> dict:
    sync = commands.add_parser("sync", help="deliver contributions to the hub and fetch newer "
                                            "packs (when a connection is there)")
    mode = sync.add_mutually_exclusive_group()
    mode.add_argument("--if-due", action="store_true",
                      help="for the timer: do nothing while waiting after a failure, unless "
                           "the network changed")
    mode.add_argument("--network-changed", action="store_true",
                      help="for the network hook: forget the backoff and run now")
    mode.add_argument("--receipts", type=Path, metavar="DIR",
                      help="mark delivered what the hub's receipt files on a drive acknowledge")
    mode.add_argument("--status", action="store_true", help="print the saved sync state (JSON)")
    sync.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    return {"sync": cmd_sync}


def cmd_sync(args, config) -> int:
    if args.status:
        print(json.dumps(read_sync_state(config.data_dir), indent=1, sort_keys=True))
        return 0
    if args.receipts:
        queue = ContributionQueue.from_config(config)
        hotspot_id = load_or_create_hotspot_key(config.data_dir).public_key().key_id_hex
        marked = apply_receipt_files(queue, args.receipts, [_hub_key(config)], hotspot_id)
        print(f"Marked {marked} contribution(s) delivered from the hub's receipts.")
        return 0
    return run_sync(config, if_due=args.if_due, network_changed=args.network_changed,
                    out=(lambda line: None) if args.quiet else print)
