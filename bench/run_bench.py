"""Load benchmark of the hotspot server against two peers, on this machine only (127.0.0.1).

Builds a 10,000-resource synthetic library, starts the real server (``python -m hotspot.cli
serve``) pinned to CPU 0, and measures it with ``wrk`` pinned to CPU 1: pages, search, resource
pages, media throughput, page latency while 40 slow clients stream a video, and the server's
memory. The same figures are taken for a bare waitress "hello world" app and for nginx with one
worker serving the same bytes from disk, and the results are printed as a table (and written to
``docs/performance.md`` with ``--out``).

    $ python bench/run_bench.py --quick                       # ~1.5 minutes, rough numbers
    $ python bench/run_bench.py --out docs/performance.md     # ~10 s per measurement

Every load loop is bounded in time and stops by itself; every process started here is in its
own process group and is stopped (SIGTERM, then SIGKILL) in ``finally`` blocks, and the
temporary directory is removed.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from catalog_gen import VIDEO_NAME, make_catalog, search_queries  # noqa: E402
from import_bench import SECTION_END as IMPORT_END  # noqa: E402
from import_bench import SECTION_START as IMPORT_START  # noqa: E402

HOST = "127.0.0.1"
SERVER_CPU = "0"
LOAD_CPU = "1"
THREADS = 4
CONNECTIONS = 50
MEDIA_CONNECTIONS = 20
SLOW_CLIENTS = 40
SLOW_RATE = 64 * 1024
RESOURCES = 10_000
HEADERS = ["Accept-Encoding: gzip, deflate", "Accept-Language: en-US,en;q=0.8",
           "User-Agent: Mozilla/5.0 (bench)"]
MiB = 1024 * 1024

TARGETS = {
    "page_ratio": 0.60,      # our page req/s / bare waitress req/s
    "search_ratio": 0.25,    # our search req/s / bare waitress req/s
    "media_ratio": 1.0,      # our media MiB/s / nginx MiB/s
    "page_p99_ms": 30.0,
    "search_p99_ms": 20.0,
    "rss_mb": 60.0,
}


# -- processes --------------------------------------------------------------------------------

class Service:
    """A server subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cpu: str = SERVER_CPU,
                 env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, **(env or {})})

    def wait_for_line(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log_path.read_text(errors="replace"))
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text(errors='replace')}")

    def processes(self) -> list[psutil.Process]:
        """The server's processes (taskset execs, so the pid is the server; nginx adds workers)."""
        try:
            main = psutil.Process(self.proc.pid)
            return [main, *main.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        # Anything left in the group (e.g. an nginx worker) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


class RssSampler:
    """Samples the summed RSS of a service's processes every 100 ms; peak per window."""

    def __init__(self, service: Service):
        self.service = service
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            total = 0
            for proc in self.service.processes():
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            with self._lock:
                self._peak = max(self._peak, total)

    def take_peak(self) -> float:
        """Peak RSS in MB since the last call, and start a new window."""
        time.sleep(0.25)
        with self._lock:
            peak, self._peak = self._peak, 0
        return peak / MiB

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def wait_http(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            http_get(port, "/")
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


# -- wrk --------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    mib_per_s: float = 0.0
    requests: int = 0
    errors: str = ""
    server_cpu: float = 0.0   # CPU time the server used / wall time (1.0 = all of CPU 0)
    other_cpu: float = 0.0    # CPU 0 busy time not used by the server / wall time (noise)
    raw: str = field(default="", repr=False)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_SIZES = {"B": 1, "KB": 1024, "MB": MiB, "GB": 1024 * MiB, "TB": MiB * MiB}


def parse_wrk(text: str) -> WrkResult:
    result = WrkResult(raw=text)
    for pct, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if match:
            setattr(result, attr, float(match.group(1)) * _UNITS[match.group(2)])
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        result.rps = float(match.group(1))
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)(B|KB|MB|GB|TB) read", text)
    if match:
        result.requests = int(match.group(1))
        seconds = float(match.group(2)) * _UNITS[match.group(3)] / 1000
        result.mib_per_s = float(match.group(4)) * _SIZES[match.group(5)] / MiB / seconds
    problems = []
    match = re.search(r"Socket errors: (.*)", text)
    if match:
        problems.append("socket errors: " + match.group(1).strip())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if match:
        problems.append(f"{match.group(1)} non-2xx/3xx")
    result.errors = "; ".join(problems)
    return result


def lua_rotation(paths: list[str], directory: Path, name: str) -> Path:
    """A wrk script that sends ``paths`` in turn (one wrk thread, so one shared counter)."""
    lines = ["local paths = {"]
    lines += [f'  "{path}",' for path in paths]
    lines += ["}", "local i = 0", "request = function()",
              "  i = i % #paths + 1", "  return wrk.format(\"GET\", paths[i])", "end", ""]
    script = directory / f"{name}.lua"
    script.write_text("\n".join(lines))
    return script


def run_wrk(url: str, seconds: float, connections: int = CONNECTIONS, script: Path | None = None,
            timeout: str = "10s") -> WrkResult:
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError("the benchmark only sends traffic to 127.0.0.1")
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
            "--latency", "--timeout", timeout]
    for header in HEADERS:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                          start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


class SlowClients:
    """The slow-download helper process, pinned to the load CPU, bounded by ``duration``."""

    def __init__(self, port: int, path: str, duration: float, log_path: Path):
        self.service = Service("slow clients", [
            sys.executable, str(BENCH_DIR / "slow_clients.py"), "--host", HOST, "--port", str(port),
            "--path", path, "--clients", str(SLOW_CLIENTS), "--rate", str(SLOW_RATE),
            "--duration", f"{duration:g}"], log_path, cpu=LOAD_CPU)

    def wait_streaming(self) -> str:
        return self.service.wait_for_line(r"streaming (\d+)[^\n]*", timeout=30).group(0)

    def finish(self) -> str:
        try:
            self.service.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        self.service.stop()
        return self.service.log_path.read_text(errors="replace").strip()


# -- the measurements -------------------------------------------------------------------------

@dataclass
class Row:
    system: str
    what: str
    result: WrkResult | None = None
    note: str = ""


def _cpu0_busy() -> float:
    """User + system + steal time of CPU 0. Interrupt and softirq time are left out: loopback
    TCP work the server's own sends cause is counted there, not in the server's process."""
    times = psutil.cpu_times(percpu=True)[int(SERVER_CPU)]
    return times.user + times.nice + times.system + getattr(times, "steal", 0.0)


def _service_cpu(service: Service | None) -> float:
    total = 0.0
    for proc in service.processes() if service else ():
        try:
            cpu = proc.cpu_times()
            total += cpu.user + cpu.system
        except psutil.Error:
            pass
    return total


class Bench:
    def __init__(self, seconds: float, work: Path):
        self.seconds = seconds
        self.work = work
        self.rows: list[Row] = []
        self.rss: dict[str, float] = {}
        self.notes: list[str] = []
        self.service: Service | None = None  # the server under test, for its CPU time

    def measure(self, system: str, what: str, url: str, *, script: Path | None = None,
                connections: int = CONNECTIONS, timeout: str = "10s", note: str = "") -> WrkResult:
        # Other programs on CPU 0 (tests, builds) steal time from the server: measure it so a
        # noisy number can be recognised as such.
        busy0, server0, wall0 = _cpu0_busy(), _service_cpu(self.service), time.monotonic()
        result = run_wrk(url, self.seconds, connections, script, timeout)
        busy1, server1, wall1 = _cpu0_busy(), _service_cpu(self.service), time.monotonic()
        result.server_cpu = (server1 - server0) / (wall1 - wall0)
        result.other_cpu = max(0.0, (busy1 - busy0) - (server1 - server0)) / (wall1 - wall0)
        self.rows.append(Row(system, what, result, note))
        print(f"  {system:9} {what:42} {result.rps:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
              f"p99 {result.p99_ms:7.2f} ms  {result.mib_per_s:8.1f} MiB/s  "
              f"cpu {result.server_cpu:4.0%} other {result.other_cpu:4.0%}  {result.errors}",
              flush=True)
        return result

    def under_slow_clients(self, system: str, what: str, port: int, base: str, video_path: str,
                           *, script: Path | None = None, url_path: str = "/") -> WrkResult:
        slow = SlowClients(port, video_path, self.seconds + 8, self.work / f"slow-{system}.log")
        try:
            started = slow.wait_streaming()
            result = self.measure(system, what, base + url_path, script=script)
        finally:
            summary = slow.finish()
        self.notes.append(f"{system}: slow clients: {started} / {summary.splitlines()[-1]}")
        return result


def build_library(work: Path) -> tuple[dict, Path]:
    from hotspot.library import DataPaths, install_catalog

    started = time.monotonic()
    files = work / "files"
    data = make_catalog(files, resources=RESOURCES)
    data_dir = work / "data"
    install_catalog(DataPaths(data_dir), data, files)
    print(f"Library: {RESOURCES} resources installed in {time.monotonic() - started:.1f} s", flush=True)
    return data, data_dir


def bench_hotspot(bench: Bench, data: dict, data_dir: Path) -> dict:
    """Our server. Returns what the peers need: the home page as served, and the video file."""
    config = bench.work / "hotspot.toml"
    config.write_text(f"[server]\nthreads = {THREADS}\n")
    server = Service("hotspot", [sys.executable, "-m", "hotspot.cli", "--config", str(config),
                                 "--data-dir", str(data_dir), "serve", "--host", HOST, "--port", "0"],
                     bench.work / "hotspot.log")
    bench.service = server
    sampler = None
    try:
        started = time.monotonic()
        port = int(server.wait_for_line(r"Library ready at http://127\.0\.0\.1:(\d+)/").group(1))
        print(f"hotspot ready in {time.monotonic() - started:.1f} s (pid {server.proc.pid})", flush=True)
        sampler = RssSampler(server)
        time.sleep(2)
        bench.rss["hotspot idle"] = sampler.take_peak()
        base = f"http://{HOST}:{port}"

        video = next(f for r in data["resources"] for f in r["files"] if f["name"] == VIDEO_NAME)
        video_path = f"/media/{video['sha256']}/{quote(VIDEO_NAME)}"
        browse_path = "/browse?" + urlencode({"theme": "patrols", "type": "guides-manuals"})
        gzip_headers = {"Accept-Encoding": "gzip"}
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("GET", "/", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        home_gz, home_headers = response.read(), response.getheaders()
        conn.close()
        assert response.status == 200 and response.getheader("Content-Encoding") == "gzip", home_headers
        for path in (browse_path, "/search?q=radio", f"/r/{data['resources'][0]['id']}"):
            status, _, _ = http_get(port, path, gzip_headers)
            assert status == 200, (path, status)
        status, headers, _ = http_get(port, video_path, {"Range": "bytes=0-0"})
        assert status == 206, (video_path, status)

        queries = search_queries(data, 300 + 8000)
        cached_queries = [f"/search?q={quote(q)}" for q in queries[:300]]
        uncached_queries = [f"/search?q={quote(q)}" for q in queries[300:]]
        detail_paths = [f"/r/{r['id']}" for r in data["resources"]]
        hits = sum(len(http_get(port, path, gzip_headers)[2]) > 0 for path in cached_queries)
        print(f"search cache warmed with {hits} queries", flush=True)

        bench.measure("hotspot", "search (cached, 300 queries)", base + "/",
                      script=lua_rotation(cached_queries, bench.work, "search-cached"))
        bench.measure("hotspot", f"search (uncached, {len(uncached_queries)} queries)", base + "/",
                      script=lua_rotation(uncached_queries, bench.work, "search-uncached"))
        bench.measure("hotspot", "home page /", base + "/")
        bench.measure("hotspot", "browse ?theme&type", base + browse_path)
        bench.measure("hotspot", "resource page, 10k ids (uncached)", base + "/",
                      script=lua_rotation(detail_paths, bench.work, "detail"))
        sampler.take_peak()
        bench.measure("hotspot", f"media, {MEDIA_CONNECTIONS} downloads of 20 MiB", base + video_path,
                      connections=MEDIA_CONNECTIONS, timeout="60s")
        bench.rss["hotspot downloads"] = sampler.take_peak()
        http_get(port, "/")
        bench.under_slow_clients("hotspot", f"home+browse, {SLOW_CLIENTS} slow video clients",
                                 port, base, video_path,
                                 script=lua_rotation(["/", browse_path], bench.work, "pages"))
        bench.rss["hotspot slow clients"] = sampler.take_peak()
        (bench.work / "home.html.gz").write_bytes(home_gz)
        (bench.work / "home.json").write_text(json.dumps({
            "body_file": str(bench.work / "home.html.gz"),
            "headers": [[k, v] for k, v in home_headers
                        if k.lower() not in ("date", "server", "connection")]}))
        return {"home_gz": home_gz, "home_spec": bench.work / "home.json",
                "video_file": data_dir / "media" / video["sha256"][:2] / video["sha256"]}
    finally:
        if sampler:
            sampler.close()
        server.stop()


def bench_waitress(bench: Bench, video_file: Path, home_spec: Path) -> None:
    server = Service("waitress", [sys.executable, str(BENCH_DIR / "hello_wsgi.py"),
                                  "--threads", str(THREADS), "--video", str(video_file),
                                  "--page", str(home_spec)],
                     bench.work / "waitress.log")
    bench.service = server
    sampler = None
    try:
        port = int(server.wait_for_line(r"Ready at http://127\.0\.0\.1:(\d+)/").group(1))
        sampler = RssSampler(server)
        time.sleep(1)
        bench.rss["waitress idle"] = sampler.take_peak()
        base = f"http://{HOST}:{port}"
        bench.measure("waitress", "hello world /", base + "/")
        bench.measure("waitress", "our home page replayed (same bytes)", base + "/page")
        sampler.take_peak()
        bench.measure("waitress", f"media, {MEDIA_CONNECTIONS} downloads (file_wrapper)", base + "/video",
                      connections=MEDIA_CONNECTIONS, timeout="60s")
        bench.rss["waitress downloads"] = sampler.take_peak()
        bench.under_slow_clients("waitress", f"hello, {SLOW_CLIENTS} slow video clients", port, base, "/video")
    finally:
        if sampler:
            sampler.close()
        server.stop()
    # The same download with the file wrapper reading at most 256 KiB per send (waitress reads
    # SO_SNDBUF bytes, megabytes on loopback): shows where the memory during downloads goes.
    server = Service("waitress-capped", [sys.executable, str(BENCH_DIR / "hello_wsgi.py"),
                                         "--threads", str(THREADS), "--video", str(video_file),
                                         "--max-chunk", str(256 * 1024)],
                     bench.work / "waitress-capped.log")
    bench.service = server
    sampler = None
    try:
        port = int(server.wait_for_line(r"Ready at http://127\.0\.0\.1:(\d+)/").group(1))
        sampler = RssSampler(server)
        time.sleep(1)
        sampler.take_peak()
        bench.measure("waitress", f"media, {MEDIA_CONNECTIONS} downloads, 256 KiB reads",
                      f"http://{HOST}:{port}/video", connections=MEDIA_CONNECTIONS, timeout="60s")
        bench.rss["waitress downloads, 256 KiB reads"] = sampler.take_peak()
    finally:
        if sampler:
            sampler.close()
        server.stop()


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    types {{ text/html html; video/mp4 mp4; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        gzip off;
        gzip_static on;
        location = / {{
            try_files /index.html =404;
            add_header Cache-Control no-cache;
            add_header Content-Language en;
        }}
    }}
}}
"""


def bench_nginx(bench: Bench, home_gz: bytes, video_file: Path) -> None:
    root = bench.work / "nginx"
    www = root / "www"
    www.mkdir(parents=True)
    # The same bytes as our server sends: index.html.gz is served as-is with gzip_static.
    (www / "index.html").write_bytes(gzip.decompress(home_gz))
    (www / "index.html.gz").write_bytes(home_gz)
    shutil.copyfile(video_file, www / VIDEO_NAME)
    for path in (bench.work, root, www, *www.iterdir()):  # the worker runs as nobody
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port))
    server = Service("nginx", ["nginx", "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)],
                     bench.work / "nginx.log")
    bench.service = server
    sampler = None
    try:
        wait_http(port)
        status, headers, body = http_get(port, "/", {"Accept-Encoding": "gzip"})
        assert status == 200 and headers.get("content-encoding") == "gzip" and body == home_gz, headers
        sampler = RssSampler(server)
        time.sleep(1)
        bench.rss["nginx idle"] = sampler.take_peak()
        base = f"http://{HOST}:{port}"
        bench.measure("nginx", "home page (same gzip bytes)", base + "/")
        sampler.take_peak()
        bench.measure("nginx", f"media, {MEDIA_CONNECTIONS} downloads (sendfile)", base + "/" + VIDEO_NAME,
                      connections=MEDIA_CONNECTIONS, timeout="60s")
        bench.rss["nginx downloads"] = sampler.take_peak()
        bench.under_slow_clients("nginx", f"home, {SLOW_CLIENTS} slow video clients", port, base,
                                 "/" + VIDEO_NAME)
    finally:
        if sampler:
            sampler.close()
        server.stop()


# -- report -----------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 1024**3

    def version(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout + done.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": model or "?",
        "Memory": f"{mem:.1f} GiB",
        "Kernel": platform.release(),
        "Python": platform.python_version(),
        "waitress": importlib.metadata.version("waitress"),
        "bottle": importlib.metadata.version("bottle"),
        "wrk": version(["wrk", "-v"]).split(" [")[0],
        "nginx": version(["nginx", "-v"]),
    }


def find(bench: Bench, system: str, prefix: str) -> WrkResult | None:
    return next((r.result for r in bench.rows if r.system == system and r.what.startswith(prefix)), None)


def verdicts(bench: Bench) -> list[tuple[str, str, str, bool | None]]:
    """(figure, value, target, met) for every target."""
    out: list[tuple[str, str, str, bool | None]] = []
    hello = find(bench, "waitress", "hello world")
    nginx_media = find(bench, "nginx", "media")
    ours = {key: find(bench, "hotspot", key) for key in
            ("home", "browse", "resource", "search (cached", "search (uncached", "media", "home+browse")}

    def ratio(name: str, value: WrkResult | None, base: WrkResult | None, target: float, attr="rps"):
        if value and base and getattr(base, attr):
            r = getattr(value, attr) / getattr(base, attr)
            out.append((name, f"{r:.0%}" if attr == "rps" else f"{r:.2f}×",
                        f">= {target:.0%}" if attr == "rps" else f">= {target:.1f}×", r >= target))

    ratio("home page req/s vs bare waitress", ours["home"], hello, TARGETS["page_ratio"])
    ratio("home page req/s vs waitress replaying its bytes", ours["home"],
          find(bench, "waitress", "our home page replayed"), TARGETS["page_ratio"])
    ratio("browse req/s vs bare waitress", ours["browse"], hello, TARGETS["page_ratio"])
    ratio("resource page (uncached) req/s vs bare waitress", ours["resource"], hello, TARGETS["page_ratio"])
    ratio("search (cached) req/s vs bare waitress", ours["search (cached"], hello, TARGETS["search_ratio"])
    ratio("search (uncached) req/s vs bare waitress", ours["search (uncached"], hello, TARGETS["search_ratio"])
    ratio("media MiB/s vs nginx", ours["media"], nginx_media, TARGETS["media_ratio"], attr="mib_per_s")
    for key, label in (("home", "home p99"), ("browse", "browse p99"), ("resource", "resource page p99"),
                       ("home+browse", "home+browse p99 with 40 slow clients")):
        if ours[key]:
            out.append((label, f"{ours[key].p99_ms:.1f} ms", f"< {TARGETS['page_p99_ms']:.0f} ms",
                        ours[key].p99_ms < TARGETS["page_p99_ms"]))
    for key, label in (("search (cached", "search (cached) p99"), ("search (uncached", "search (uncached) p99")):
        if ours[key]:
            out.append((label, f"{ours[key].p99_ms:.1f} ms", f"< {TARGETS['search_p99_ms']:.0f} ms",
                        ours[key].p99_ms < TARGETS["search_p99_ms"]))
    for key in ("hotspot idle", "hotspot downloads", "hotspot slow clients"):
        if key in bench.rss:
            out.append((f"RSS, {key.split(' ', 1)[1]} (peak)", f"{bench.rss[key]:.1f} MB",
                        f"< {TARGETS['rss_mb']:.0f} MB", bench.rss[key] < TARGETS["rss_mb"]))
    return out


def results_table(bench: Bench) -> list[str]:
    lines = ["| Server | Measurement | req/s | p50 ms | p99 ms | MiB/s | Server CPU | Other load on CPU 0 | Errors |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in bench.rows:
        r = row.result
        lines.append(f"| {row.system} | {row.what} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                     f"{r.mib_per_s:,.1f} | {r.server_cpu:.0%} | {r.other_cpu:.0%} | {r.errors or '-'} |")
    return lines


def print_report(bench: Bench) -> None:
    print("\n" + "\n".join(results_table(bench)))
    print("\n| Server RSS | MB |\n| --- | ---: |")
    for key, value in bench.rss.items():
        print(f"| {key} | {value:.1f} |")
    print("\n| Target | Value | Target | Met |\n| --- | --- | --- | --- |")
    for name, value, target, met in verdicts(bench):
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    for note in bench.notes:
        print(note)
    print()
    for line in auto_reading(bench):
        print(line)


ANALYSIS_START = "<!-- analysis: kept when the benchmark rewrites this file -->"
ANALYSIS_END = "<!-- /analysis -->"


def auto_reading(bench: Bench) -> list[str]:
    """Which targets are met, which are not, and whether other programs disturbed the run."""
    checks = verdicts(bench)
    met = [name for name, _, _, ok in checks if ok]
    missed = [f"{name} ({value}, target {target})" for name, value, target, ok in checks if not ok]
    lines = [f"* Met ({len(met)} of {len(checks)}): " + ("; ".join(met) or "none") + ".",
             f"* Not met ({len(missed)}): " + ("; ".join(missed) or "none") + "."]
    noisy = [f"{r.system} {r.what} ({r.result.other_cpu:.0%})" for r in bench.rows
             if r.result.other_cpu > 0.10]
    if noisy:
        lines.append("* Other programs used more than 10 % of CPU 0 during: " + "; ".join(noisy) +
                     ". Those numbers are low by about that share; rerun on a quiet machine.")
    else:
        lines.append("* No other program used more than 10 % of CPU 0 during any measurement.")
    lines.append(f"* With {CONNECTIONS} connections always busy, latency is mostly queueing "
                 f"(Little's law: mean latency = {CONNECTIONS} / throughput), so a p99 target "
                 f"below 20-30 ms at -c{CONNECTIONS} is also a throughput target of roughly "
                 f"{CONNECTIONS * 1000 // 30:,}-{CONNECTIONS * 1000 // 20:,} req/s.")
    return lines


def kept_analysis(out: Path) -> str:
    try:
        text = out.read_text()
    except OSError:
        return ""
    start, end = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if start == -1 or end == -1:
        return ""
    return text[start + len(ANALYSIS_START):end].strip()


def kept_section(out: Path, start_marker: str, end_marker: str) -> list[str]:
    """A section another script writes (between its markers), kept as it is."""
    try:
        text = out.read_text()
    except OSError:
        return []
    start, end = text.find(start_marker), text.find(end_marker)
    if start == -1 or end == -1:
        return []
    return [text[start:end + len(end_marker)], ""]


def kept_import_section(out: Path) -> list[str]:
    """The section "Importing packs" (bench/import_bench.py writes it)."""
    return kept_section(out, IMPORT_START, IMPORT_END)


def kept_browser_section(out: Path) -> list[str]:
    """The section "Pages in a real browser" (tests/browser/budget_table.py writes it)."""
    return kept_section(out, "<!-- browser-pages:", "<!-- /browser-pages -->")


def write_markdown(bench: Bench, out: Path, command: str) -> None:
    info = machine()
    analysis = kept_analysis(out) or "(Nobody has written an analysis of these numbers yet.)"
    import_section = kept_import_section(out)
    browser_section = kept_browser_section(out)
    lines = [
        "# Performance",
        "",
        "How fast the hotspot server is on one CPU core, compared with two peers on the same core:",
        "a bare waitress \"hello world\" app (the ceiling for any page waitress serves) and nginx with",
        "one worker serving the same bytes from disk with `sendfile` (the ceiling for media).",
        "This file is written by `bench/run_bench.py`; rerun it after a change that touches serving.",
        "The analysis section at the end is written by people and kept when the file is rewritten;",
        "so is the section \"Importing packs\", written by `bench/import_bench.py`.",
        "",
        "## What is measured",
        "",
        f"* A synthetic library of {RESOURCES:,} resources (seeded; titles ~60, summaries ~200,",
        "  descriptions ~600 characters in 1-4 of en/es/fr/pt with accented words; full taxonomy;",
        "  a 20 MiB random-bytes \"video\" referenced by every 50th resource), installed with",
        "  `hotspot.library.install_catalog` (bench/catalog_gen.py).",
        f"* The real server, `python -m hotspot.cli serve` with `threads = {THREADS}` and the default",
        "  page cache, pinned to CPU 0 with `taskset -c 0`. The load generator `wrk` (one thread) and",
        "  the slow-client helper run on CPU 1. All traffic is to 127.0.0.1.",
        f"* Pages: `wrk -t1 -c{CONNECTIONS} -d<N>s --latency --timeout 10s` with browser-like",
        "  `Accept-Encoding: gzip`. The home page and one filtered browse page are one URL each, so",
        "  they come from the page cache. Search is measured twice with a Lua script that rotates",
        "  URLs: 300 queries warmed into the cache (cached), and 8,000 distinct queries, more than",
        "  the 512-entry LRU holds, so every request misses the cache and runs the search and the",
        "  template (uncached). Resource pages rotate through all 10,000 ids (uncached).",
        f"* Media: `wrk -c{MEDIA_CONNECTIONS}` downloading the 20 MiB file over and over (MiB/s of",
        "  bytes read).",
        f"* Pages while {SLOW_CLIENTS} slow clients each stream the video at {SLOW_RATE // 1024} KiB/s",
        "  (an asyncio helper, bench/slow_clients.py): wrk alternates the home and browse pages.",
        "* Server RSS (psutil, sampled every 100 ms, peak): idle after start, during the downloads,",
        "  and during the slow-client run. For nginx it is master + worker.",
        "* Server CPU is the server's CPU time over wall time; \"other load on CPU 0\" is CPU 0's user,",
        "  system and steal time not used by the server (other programs on the machine, or the VM",
        "  host): a sign of a noisy number. Softirq time (loopback TCP) is in neither column.",
        "* Peers: bench/hello_wsgi.py (waitress, same threads, a 14-byte body; `/video` through",
        "  `wsgi.file_wrapper`, once more with reads capped at 256 KiB) and nginx 1 worker",
        "  (`sendfile on`, `gzip_static on` serving our home page's gzip bytes).",
        "",
        "## Command",
        "",
        "```",
        command,
        "```",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in info.items()],
        f"| Date | {time.strftime('%Y-%m-%d')} |",
        f"| Duration per measurement | {bench.seconds:g} s |",
        "",
        "## Results",
        "",
        *results_table(bench),
        "",
        "| Server RSS (peak) | MB |",
        "| --- | ---: |",
        *[f"| {k} | {v:.1f} |" for k, v in bench.rss.items()],
        "",
        "## Targets",
        "",
        "| Figure | Value | Target | Met |",
        "| --- | --- | --- | --- |",
        *[f"| {name} | {value} | {target} | {'yes' if met else '**no**'} |"
          for name, value, target, met in verdicts(bench)],
        "",
        "## Reading (generated)",
        "",
        *auto_reading(bench),
        "",
        *import_section,
        *(["## Pages in a real browser", "", *browser_section] if browser_section else []),
        "## Analysis",
        "",
        ANALYSIS_START,
        analysis,
        ANALYSIS_END,
        "",
    ]
    out.write_text("\n".join(lines))
    print(f"Wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per measurement instead of 10 s")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (overrides --quick)")
    parser.add_argument("--out", type=Path, help="write the report (Markdown) to this file")
    parser.add_argument("--json", type=Path, help="also save the raw numbers as JSON")
    parser.add_argument("--skip-peers", action="store_true", help="measure only our server")
    args = parser.parse_args(argv)
    for tool in ("wrk", "taskset", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    if not {0, 1} <= os.sched_getaffinity(0):
        parser.error("needs CPUs 0 and 1")
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    # This process samples memory and writes scripts: keep it off the server's CPU.
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    work = Path(tempfile.mkdtemp(prefix="hotspot-bench-"))
    bench = Bench(seconds, work)
    started = time.monotonic()
    try:
        data, data_dir = build_library(work)
        peers = bench_hotspot(bench, data, data_dir)
        if not args.skip_peers:
            bench_waitress(bench, peers["video_file"], peers["home_spec"])
            bench_nginx(bench, peers["home_gz"], peers["video_file"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nTotal time {time.monotonic() - started:.0f} s")
    print_report(bench)
    if args.json:
        args.json.write_text(json.dumps({
            "seconds": seconds, "rss_mb": bench.rss, "notes": bench.notes,
            "rows": [{"system": r.system, "what": r.what, "rps": r.result.rps, "p50_ms": r.result.p50_ms,
                      "p99_ms": r.result.p99_ms, "mib_per_s": r.result.mib_per_s,
                      "errors": r.result.errors} for r in bench.rows]}, indent=2))
    if args.out:
        command = "python bench/run_bench.py" + (" --quick" if args.quick else "") + \
                  (f" --seconds {args.seconds:g}" if args.seconds else "") + f" --out {args.out}"
        write_markdown(bench, args.out, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
