"""The invite poster: a QR code that joins the Wi-Fi, a QR code with the library's address,
and three lines of instructions in the chosen languages.

QR codes are made on the hotspot as SVG with segno (no network, no JavaScript). The Wi-Fi
code uses the common ``WIFI:`` format that phone cameras understand.

    >>> wifi_payload("Community library", "")
    'WIFI:T:nopass;S:Community library;;'
    >>> svg = qr_svg("http://10.42.0.1/")     # '<svg ...>...</svg>'
"""

from __future__ import annotations

from dataclasses import dataclass

import segno
import segno.helpers

from .errors import N_

SIZES = ("a4", "card")

INSTRUCTIONS = (
    N_("1. Join the Wi-Fi “%(name)s”: scan the first code with the phone's camera."),
    N_("2. Open %(url)s in the browser, or scan the second code."),
    N_("3. Read, listen and download guides for protecting your community. No internet "
       "needed, and nothing about you is recorded."),
)
PASSWORD_LINE = N_("Wi-Fi password: %(password)s")


def wifi_payload(name: str, password: str = "") -> str:
    """The ``WIFI:`` text for a WPA network, or an open one when there is no password."""
    if password:
        return segno.helpers.make_wifi_data(name, password, "WPA")
    return segno.helpers.make_wifi_data(name, None, "nopass")


def qr_svg(data: str, *, scale: int = 6) -> str:
    """An inline ``<svg>`` of ``data``, dark on a white background, with a quiet zone."""
    # Non-ASCII text is UTF-8 with an ECI marker saying so: segno would otherwise pick
    # ISO 8859-1 for "Comunitária", and readers that guess (zbar, some phones) misread UTF-8
    # without the marker. Plain ASCII stays unmarked, which every reader understands.
    marked = not data.isascii()
    code = segno.make(data, error="m", micro=False, encoding="utf-8", eci=marked)
    return code.svg_inline(scale=scale, border=4, dark="#000", light="#fff", omitsize=False)


@dataclass(frozen=True)
class Poster:
    wifi_name: str
    wifi_password: str
    url: str
    wifi_data: str
    wifi_svg: str
    url_svg: str


def network_details(config) -> tuple[str, str, str]:
    """(Wi-Fi name, password, library address) from the network and portal settings."""
    network = getattr(config, "network", None)
    portal = getattr(config, "portal", None)
    name = getattr(network, "ssid", None) or "Community library"
    password = getattr(network, "passphrase", None) or ""
    host = getattr(portal, "hostname", None) or getattr(network, "address", None) or "10.42.0.1"
    return name, password, f"http://{host}/"


def make_poster(config, size: str = "a4") -> Poster:
    scale = 8 if size == "a4" else 4
    name, password, url = network_details(config)
    data = wifi_payload(name, password)
    return Poster(wifi_name=name, wifi_password=password, url=url, wifi_data=data,
                  wifi_svg=qr_svg(data, scale=scale), url_svg=qr_svg(url, scale=scale))


def instruction_lines(poster: Poster, gettext) -> list[str]:
    """The three lines (plus the password when there is one) in one language."""
    lines = [gettext(INSTRUCTIONS[0]) % {"name": poster.wifi_name},
             gettext(INSTRUCTIONS[1]) % {"url": poster.url},
             gettext(INSTRUCTIONS[2])]
    if poster.wifi_password:
        lines.insert(1, gettext(PASSWORD_LINE) % {"password": poster.wifi_password})
    return lines
