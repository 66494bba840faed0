"""End to end in network namespaces (root): a phone joins the hotspot and its OS's check opens
the library.

An "access point" namespace runs dnsmasq with the DNS/DHCP drop-in the installer writes and
the options NetworkManager's shared mode starts it with, plus the real hotspot server on port
80. A "phone" namespace, joined to it by a veth pair, gets a DHCP lease with busybox's udhcpc,
resolves each OS's probe host through the hotspot's DNS, and sends that OS's probe with its
user agent. All traffic stays between the two namespaces this test creates; both are deleted
at the end.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import in_ci, install_test_library
from hotspot import provision
from hotspot.config import load_config

pytestmark = [pytest.mark.root, pytest.mark.slow]

AP_ADDRESS = "10.42.0.1"
NM_DNSMASQ_OPTIONS = [  # nm-dnsmasq-manager.c, shared mode, on a /24 at 10.42.0.1
    "--conf-file=/dev/null", "--no-hosts", "--keep-in-foreground", "--bind-interfaces",
    "--except-interface=lo", "--clear-on-reload", "--strict-order",
    f"--listen-address={AP_ADDRESS}", "--dhcp-range=10.42.0.10,10.42.0.254,60m",
    "--dhcp-lease-max=50",
]

# Runs inside the phone namespace: resolve through the hotspot's DNS, then plain HTTP.
PHONE = r'''
import http.client, json, random, socket, struct, sys

def resolve(name, server):
    query_id = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + question + b"\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(packet, (server, 53))
        data = sock.recv(2048)
    ident, flags, qd, an = struct.unpack(">HHHH", data[:8])
    assert ident == query_id and an >= 1, (name, flags, an)
    at = 12 + len(question) + 4
    for _ in range(an):
        at += 2 if data[at] >= 0xC0 else len(name) + 2
        rtype, _, _, length = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        if rtype == 1:
            return socket.inet_ntoa(data[at:at + 4])
        at += length
    raise AssertionError(f"no A record for {name}")

def fetch(address, host, path, agent):
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    conn.request("GET", path, headers={"Host": host, "User-Agent": agent})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return {"status": response.status, "location": response.getheader("Location"),
            "body": body.decode("utf-8", "replace")}

def https_refused(address):
    try:
        socket.create_connection((address, 443), timeout=5).close()
        return False
    except ConnectionRefusedError:
        return True

steps = json.loads(sys.argv[1])
results = []
for step in steps:
    if step["do"] == "resolve":
        results.append(resolve(step["name"], step["server"]))
    elif step["do"] == "fetch":
        results.append(fetch(step["address"], step["host"], step["path"], step["agent"]))
    else:
        results.append(https_refused(step["address"]))
print(json.dumps(results))
'''

# (OS, probe host, path, user agent, status online, start of the body online)
OS_PROBES = [
    ("android", "connectivitycheck.gstatic.com", "/generate_204",
     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/60.0.3112.32 Safari/537.36", 204, ""),
    ("chromeos", "clients3.google.com", "/generate_204",
     "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36", 204, ""),
    ("ios", "captive.apple.com", "/hotspot-detect.html", "CaptiveNetworkSupport-481.0.1 wispr",
     200, "<HTML><HEAD><TITLE>Success</TITLE>"),
    ("windows", "www.msftconnecttest.com", "/connecttest.txt", "Microsoft NCSI", 200,
     "Microsoft Connect Test"),
    ("firefox", "detectportal.firefox.com", "/canonical.html",
     "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", 200,
     '<meta http-equiv="refresh"'),
]


def require(condition: bool, reason: str) -> None:
    if not condition:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


def sh(*command: str, timeout: float = 30) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
    return result.stdout


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if line:
                lines.append(line)
                if needle in line:
                    return lines
        if proc.poll() is not None:
            break
    raise AssertionError(f"never printed {needle!r}:\n{''.join(lines)}")


def wait_for_sockets(namespace: str, proc: subprocess.Popen, ports: tuple[str, ...],
                     timeout: float) -> None:
    """Poll until UDP ``ports`` are bound in ``namespace`` (dnsmasq is then serving)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dnsmasq stopped with status {proc.returncode}"
        listening = sh("ip", "netns", "exec", namespace, "ss", "-uln")
        if all(port in listening for port in ports):
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {ports} in {namespace}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture()
def hotspot_and_phone(tmp_path):
    require(os.geteuid() == 0, "needs root: creates network namespaces")
    for tool in ("ip", "dnsmasq", "udhcpc"):
        require(shutil.which(tool) is not None,
                f"{tool} is not installed (apt-get install iproute2 dnsmasq-base udhcpc)")
    tag = f"{os.getpid() % 100000}"
    ap, phone = f"hs-ap-{tag}", f"hs-phone-{tag}"
    ap_if, phone_if = f"hsap{tag}", f"hsph{tag}"
    processes: list[subprocess.Popen] = []
    try:
        sh("ip", "netns", "add", ap)
        sh("ip", "netns", "add", phone)
        sh("ip", "link", "add", ap_if, "type", "veth", "peer", "name", phone_if)
        sh("ip", "link", "set", ap_if, "netns", ap)
        sh("ip", "link", "set", phone_if, "netns", phone)
        sh("ip", "-n", ap, "addr", "add", f"{AP_ADDRESS}/24", "dev", ap_if)
        for namespace, interface in ((ap, ap_if), (phone, phone_if)):
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            sh("ip", "-n", namespace, "link", "set", interface, "up")

        # dnsmasq as NetworkManager starts it, reading the drop-in the installer writes.
        config = load_config(None, overrides={"network.interface": ap_if})
        shared = tmp_path / "dnsmasq-shared.d"
        shared.mkdir()
        (shared / "hotspot.conf").write_text(provision.render_dnsmasq_dropin(config))
        dnsmasq = subprocess.Popen(
            ["ip", "netns", "exec", ap, "dnsmasq", *NM_DNSMASQ_OPTIONS,
             f"--pid-file={tmp_path / 'dnsmasq.pid'}", f"--dhcp-leasefile={tmp_path / 'leases'}",
             f"--log-facility={tmp_path / 'dnsmasq.log'}", f"--conf-dir={shared}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(dnsmasq)
        wait_for_sockets(ap, dnsmasq, (":53 ", ":67 "), timeout=20)

        # The real server, on port 80 of the access point's address.
        data_dir = tmp_path / "data"
        install_test_library(data_dir, extra=0)
        toml = tmp_path / "hotspot.toml"
        toml.write_text(f'[network]\naddress = "{AP_ADDRESS}"\n[server]\nthreads = 4\n')
        server = subprocess.Popen(
            ["ip", "netns", "exec", ap, sys.executable, "-m", "hotspot.cli", "--config", str(toml),
             "--data-dir", str(data_dir), "serve", "--host", AP_ADDRESS, "--port", "80"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        processes.append(server)
        wait_for_line(server, "Library ready at", timeout=60)

        # The phone joins: a DHCP lease from the hotspot (udhcpc's script records it).
        lease_file = tmp_path / "lease.env"
        script = tmp_path / "udhcpc.sh"
        script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > "{lease_file}"\nexit 0\n')
        script.chmod(0o755)
        sh("ip", "netns", "exec", phone, "udhcpc", "-i", phone_if, "-f", "-q", "-n", "-t", "5",
           "-T", "2", "-s", str(script), timeout=60)
        lease = dict(line.split("=", 1) for line in lease_file.read_text().splitlines()
                     if "=" in line)
        sh("ip", "-n", phone, "addr", "add", f"{lease['ip']}/{lease.get('mask', '24')}",
           "dev", phone_if)
        sh("ip", "-n", phone, "route", "add", "default", "via", lease["router"])

        def run_phone(steps: list[dict]) -> list:
            out = sh("ip", "netns", "exec", phone, sys.executable, "-c", PHONE, json.dumps(steps),
                     timeout=120)
            return json.loads(out)

        yield lease, run_phone
    finally:
        for proc in reversed(processes):
            stop(proc)
        for namespace in (phone, ap):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def test_phone_joins_and_each_os_opens_the_library(hotspot_and_phone):
    lease, run_phone = hotspot_and_phone
    # The lease names the hotspot as router and DNS server (Android drops Wi-Fi without a
    # router), and the address comes from NetworkManager's shared range.
    assert lease["router"] == AP_ADDRESS
    assert lease["dns"].split()[0] == AP_ADDRESS
    assert lease["ip"].startswith("10.42.0.") and 10 <= int(lease["ip"].rsplit(".", 1)[1]) <= 254

    # Every probe host, any other name, and our own name resolve to the hotspot; the Windows
    # DNS check gets its real address so Windows reports a portal, not "no internet".
    names = [host for _, host, *_ in OS_PROBES] + ["example.com", "library.lan",
                                                   "dns.msftncsi.com"]
    answers = run_phone([{"do": "resolve", "name": name, "server": AP_ADDRESS} for name in names])
    assert answers[:-1] == [AP_ADDRESS] * (len(names) - 1)
    assert answers[-1] == "131.107.255.255"

    # Before the person taps anything: each OS's probe says "captive", pointing at the portal
    # page, which is a real page with the address to type. HTTPS fails at once (refused).
    steps = [{"do": "fetch", "address": AP_ADDRESS, "host": host, "path": path, "agent": agent}
             for _, host, path, agent, *_ in OS_PROBES]
    steps.append({"do": "fetch", "address": AP_ADDRESS, "host": AP_ADDRESS, "path": "/portal",
                  "agent": OS_PROBES[2][3]})
    steps.append({"do": "fetch", "address": AP_ADDRESS, "host": "example.com", "path": "/news",
                  "agent": "Mozilla/5.0"})
    steps.append({"do": "https", "address": AP_ADDRESS})
    *probes, portal, other_site, refused = run_phone(steps)
    for (os_name, *_), result in zip(OS_PROBES, probes):
        assert result["status"] == 302, (os_name, result)
        assert result["location"] == f"http://{AP_ADDRESS}/portal", os_name
    assert portal["status"] == 200
    assert f"http://{AP_ADDRESS}/" in portal["body"] and "Open the library" in portal["body"]
    assert other_site["status"] == 302 and other_site["location"] == f"http://{AP_ADDRESS}/"
    assert refused is True

    # The person taps "Open the library": the library itself, then every OS's probe gets the
    # answer that OS expects online, so the phone keeps using the hotspot.
    steps = [{"do": "fetch", "address": AP_ADDRESS, "host": AP_ADDRESS,
              "path": "/portal/continue", "agent": "x"},
             {"do": "fetch", "address": AP_ADDRESS, "host": "library.lan", "path": "/",
              "agent": "x"}]
    steps += [{"do": "fetch", "address": AP_ADDRESS, "host": host, "path": path, "agent": agent}
              for _, host, path, agent, *_ in OS_PROBES]
    tapped, home, *probes = run_phone(steps)
    assert tapped["status"] == 303 and tapped["location"] == f"http://{AP_ADDRESS}/"
    assert home["status"] == 200 and "Test library" in home["body"]
    for (os_name, _, _, _, status, body_start), result in zip(OS_PROBES, probes):
        assert result["status"] == status, (os_name, result)
        assert result["body"].startswith(body_start), (os_name, result["body"][:80])
