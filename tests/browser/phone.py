"""A cheap phone on a crowded hotspot, as seen from a test: one Playwright page in headless
Chromium with a 360x640 touch screen and a throttled link, plus the checks every page must pass.

    phone = Phone(context, server_url, slow=True)
    visit = phone.visit("/")           # navigates, waits for "load", measures the page
    visit.transfer_kb, visit.lcp_ms    # bytes on the wire (compressed) and Largest Contentful Paint
    phone.axe_violations()             # serious / critical axe-core findings
    phone.keyboard_walk()              # every control reachable with Tab, with a visible focus
    phone.overflow_at_text_zoom(2.0)   # elements wider than the screen at 200 % text size

Network figures come from the DevTools protocol (``Network.loadingFinished``'s
``encodedDataLength``: header and body bytes as received, i.e. compressed), not from the page,
so they are the same with JavaScript switched off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ARTIFACTS = Path(os.environ.get("HOTSPOT_BROWSER_ARTIFACTS", HERE / "artifacts"))

# About a crowded 2.4 GHz hotspot or 2G: 250 kbit/s down, 300 ms round trip.
SLOW_LINK = {"offline": False, "latency": 300,
             "downloadThroughput": 250_000 / 8, "uploadThroughput": 250_000 / 8}
PHONE = {"viewport": {"width": 360, "height": 640}, "device_scale_factor": 2,
         "is_mobile": True, "has_touch": True}

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"]

# axe-core is fetched from the npm registry with npm itself, pinned by version and checked
# against the registry's sha512 (see docs/browser-tests.md, "axe-core").
AXE_VERSION = "4.14.1"
AXE_CACHE = Path(os.environ.get("HOTSPOT_AXE_CACHE", HERE / ".cache"))


def chromium_path() -> str | None:
    for name in (os.environ.get("HOTSPOT_CHROMIUM"), "/usr/bin/chromium", "chromium"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def axe_source() -> str:
    """The minified axe-core script, downloaded once into the cache with `npm pack`."""
    override = os.environ.get("HOTSPOT_AXE_JS")
    if override:
        return Path(override).read_text(encoding="utf-8")
    target = AXE_CACHE / f"axe-core-{AXE_VERSION}.min.js"
    if not target.exists():
        AXE_CACHE.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to fetch axe-core (Debian package npm), "
                               "or set HOTSPOT_AXE_JS to an axe.min.js file")
        result = subprocess.run([npm, "pack", f"axe-core@{AXE_VERSION}", "--json",
                                 "--pack-destination", str(AXE_CACHE)],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "npm_config_update_notifier": "false",
                                     "npm_config_fund": "false", "npm_config_audit": "false"})
        if result.returncode != 0:
            raise RuntimeError(f"npm pack axe-core@{AXE_VERSION} failed:\n{result.stderr}")
        info = json.loads(result.stdout)[0]
        tarball = AXE_CACHE / info["filename"]
        # npm checked the download against the registry's integrity; check what is on disk too.
        algorithm, _, digest = info["integrity"].partition("-")
        import base64
        actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
        if actual != digest:
            raise RuntimeError(f"{tarball} does not match its registry integrity {info['integrity']}")
        with tarfile.open(tarball) as tar:
            script = tar.extractfile("package/axe.min.js").read()
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(script)
        tmp.replace(target)
        tarball.unlink()
    return target.read_text(encoding="utf-8")


@dataclass
class Request:
    url: str
    resource_type: str = ""
    status: int = 0
    encoded_bytes: int = 0
    finished: bool = False
    failed: str = ""


@dataclass
class Visit:
    path: str
    url: str
    requests: list[Request]
    lcp_ms: float
    load_ms: float
    screenshot: Path | None = None
    rows: dict = field(default_factory=dict)

    @property
    def page_requests(self) -> list[Request]:
        """Everything but media (audio, video, images from the library's media store)."""
        return [r for r in self.requests if "/media/" not in urlsplit(r.url).path]

    @property
    def transfer_bytes(self) -> int:
        return sum(r.encoded_bytes for r in self.page_requests)

    @property
    def transfer_kb(self) -> float:
        return self.transfer_bytes / 1024


class Phone:
    """One tab on the phone. Every request it makes is recorded, from the first one."""

    def __init__(self, context, base_url: str, *, slow: bool = True, name: str = "phone"):
        self.context = context
        self.base_url = base_url.rstrip("/")
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base_url))
        self.page = context.new_page()
        self.page.set_default_timeout(30_000)
        self.name = name
        self.cdp = context.new_cdp_session(self.page)
        self.requests: dict[str, Request] = {}
        self.all_urls: list[str] = []
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.responseReceived", self._response)
        self.cdp.on("Network.requestServedFromCache", self._cached)
        self.cdp.on("Network.loadingFinished", self._finished)
        self.cdp.on("Network.loadingFailed", self._failed)
        self.cdp.send("Network.enable")
        self.lcp_events: list[dict] = []
        self.cdp.on("PerformanceTimeline.timelineEventAdded",
                    lambda event: self.lcp_events.append(event["event"]["lcpDetails"]))
        self.cdp.send("PerformanceTimeline.enable", {"eventTypes": ["largest-contentful-paint"]})
        if slow:
            self.cdp.send("Network.emulateNetworkConditions", SLOW_LINK)
        self._axe_loaded_for = None

    # -- network record ---------------------------------------------------------------------
    def _sent(self, event):
        url = event["request"]["url"]
        self.all_urls.append(url)
        self.requests[event["requestId"]] = Request(url, event.get("type", ""))

    def _response(self, event):
        request = self.requests.get(event["requestId"])
        if request:
            request.status = event["response"]["status"]
            request.resource_type = event.get("type", request.resource_type)

    def _cached(self, event):
        request = self.requests.get(event["requestId"])
        if request:
            request.status = request.status or 200
            request.resource_type += " (cache)"

    def _finished(self, event):
        request = self.requests.get(event["requestId"])
        if request:
            request.encoded_bytes = int(event["encodedDataLength"])
            request.finished = True

    def _failed(self, event):
        request = self.requests.get(event["requestId"])
        if request:
            request.failed = event.get("errorText", "failed")
            request.finished = True

    def foreign_urls(self) -> list[str]:
        """Requests that left the hotspot's origin (data: and blob: never touch the network)."""
        return [url for url in self.all_urls
                if not url.startswith(self.origin + "/") and url != self.origin
                and not url.startswith(("data:", "blob:"))]

    def _settle(self, since: set[str], timeout: float = 10.0) -> None:
        """Wait (bounded) until every request of the visit has finished or failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [r for key, r in self.requests.items() if key not in since and not r.finished
                       and "/media/" not in r.url]
            if not pending:
                return
            self.page.wait_for_timeout(50)

    # -- pages --------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return self.base_url + path

    def measure(self, action, path: str) -> Visit:
        """Run ``action`` (a navigation or a click that navigates) and measure the new page."""
        before = set(self.requests)
        self.lcp_events.clear()
        action()
        self.page.wait_for_load_state("load")
        self._settle(before)
        # Largest Contentful Paint from the DevTools timeline, which works with the page's
        # JavaScript off too (a PerformanceObserver in the page would not run then).
        deadline = time.monotonic() + 5
        while not self.lcp_events and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
        self.page.wait_for_timeout(100)  # a later, larger paint may follow the first one
        origin = self.page.evaluate("performance.timeOrigin")
        load = self.page.evaluate(
            "(performance.getEntriesByType('navigation')[0] || {loadEventEnd: 0}).loadEventEnd")
        lcp = max((e["renderTime"] or e["loadTime"] for e in self.lcp_events), default=0)
        timing = {"lcp": max(0, lcp * 1000 - origin) if lcp else 0, "load": load}
        # The icon is fetched after "load": wait for what the page started while being measured.
        self._settle(before)
        new = [r for key, r in self.requests.items() if key not in before]
        return Visit(path, self.page.url, new, round(timing["lcp"]), round(timing["load"]))

    def visit(self, path: str, *, cold: bool = False) -> Visit:
        """Open a page; ``cold`` empties the browser cache first (a first visit)."""
        if cold:
            self.cdp.send("Network.clearBrowserCache")
        return self.measure(lambda: self.page.goto(self.url(path), wait_until="load"), path)

    def click_and_measure(self, locator, path: str = "") -> Visit:
        def click():
            with self.page.expect_navigation(wait_until="load"):
                locator.click()
        return self.measure(click, path or "(click)")

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        target = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=True)
        return target

    # -- checks -------------------------------------------------------------------------------
    def axe_violations(self, impacts=("serious", "critical")) -> list[dict]:
        """axe-core's serious and critical findings. The script is evaluated through the
        DevTools protocol (Runtime.evaluate), which the page's CSP does not restrict, so the
        site's own CSP stays in force for everything else."""
        source = axe_source()
        result = self.cdp.send("Runtime.evaluate", {"expression": source + "\n;typeof axe"})
        assert result["result"].get("value") == "object", result
        found = self.page.evaluate("""async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' +
                                                 (n.failureSummary || '').slice(0, 200))}));
        }""")
        return [v for v in found if v["impact"] in impacts]

    def keyboard_walk(self, max_steps: int = 200) -> dict:
        """Press Tab through the page. Returns the controls never reached and the reached ones
        whose look did not change on focus (no outline, box-shadow, border or background)."""
        controls = self.page.evaluate("""() => {
            const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, ' +
                        'audio[controls], video[controls], [tabindex]';
            const style = el => { const s = getComputedStyle(el);
              return [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow,
                      s.borderColor, s.backgroundColor, s.textDecorationLine].join('|'); };
            const out = [];
            document.querySelectorAll(sel).forEach((el, i) => {
              el.setAttribute('data-walk', i);
              const r = el.getBoundingClientRect();
              // checkVisibility() also knows that the inside of a closed <details> is hidden.
              const visible = r.width > 0 && r.height > 0 &&
                (el.checkVisibility ? el.checkVisibility({visibilityProperty: true})
                                    : getComputedStyle(el).visibility !== 'hidden');
              const skip = el.tabIndex < 0 || el.disabled;
              out.push({i, tag: el.tagName.toLowerCase(), type: el.type || '', name: el.name || '',
                        text: (el.textContent || el.id || '').trim().slice(0, 40),
                        visible, skip, rest: style(el)});
            });
            if (document.activeElement) document.activeElement.blur();
            window.scrollTo(0, 0);
            return out;
        }""")
        by_index = {c["i"]: c for c in controls}
        reached: dict[int, str] = {}
        self.page.evaluate("() => { document.body.focus(); }")
        first = None
        for _ in range(max_steps):
            self.page.keyboard.press("Tab")
            info = self.page.evaluate("""() => {
                const el = document.activeElement;
                if (!el || el === document.body) return null;
                const s = getComputedStyle(el);
                const focusVisible = el.matches(':focus-visible');
                return {i: el.getAttribute('data-walk'), focusVisible,
                        style: [s.outlineStyle, s.outlineWidth, s.outlineColor, s.boxShadow,
                                s.borderColor, s.backgroundColor, s.textDecorationLine].join('|'),
                        outline: s.outlineStyle, width: parseFloat(s.outlineWidth)};
            }""")
            if info is None or info["i"] is None:
                if first is not None:
                    break
                continue
            index = int(info["i"])
            if index == first:
                break
            if first is None:
                first = index
            if index in reached:
                continue  # media controls take several Tab presses inside one element
            control = by_index[index]
            changed = info["style"] != control["rest"]
            drawn = info["outline"] not in ("none", "") and (info["width"] >= 2 or info["outline"] == "auto")
            reached[index] = "ok" if (changed or drawn) else "invisible"
        # A radio group is one Tab stop: the group counts as reached when one of it is.
        groups_reached = {by_index[i]["name"] for i in reached if by_index[i]["type"] == "radio"}
        missed = [c for c in controls if c["visible"] and not c["skip"] and c["i"] not in reached
                  and not (c["type"] == "radio" and c["name"] in groups_reached)]
        no_focus_style = [by_index[i] for i, verdict in reached.items() if verdict == "invisible"]
        return {"reached": len(reached), "missed": missed, "no_focus_style": no_focus_style}

    def overflow_at_text_zoom(self, factor: float = 2.0) -> list[str]:
        """Double the root font size (what Android's text size setting does to rem/em) and
        list what sticks out of the 360 px screen."""
        return self.page.evaluate("""factor => {
            const root = document.documentElement;
            const before = root.style.fontSize;
            root.style.fontSize = (100 * factor) + '%';
            const width = window.innerWidth;
            const out = [];
            if (root.scrollWidth > width + 1) out.push('page is ' + root.scrollWidth + ' px wide');
            document.querySelectorAll('body *').forEach(el => {
              const r = el.getBoundingClientRect();
              if (r.width > 0 && r.right > width + 1 && out.length < 12)
                out.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') +
                         ' right=' + Math.round(r.right) + ' "' + (el.textContent || '').trim().slice(0, 30) + '"');
            });
            root.style.fontSize = before;
            return out;
        }""", factor)
