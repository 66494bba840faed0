"""The invite poster's QR codes, rendered from the SVG and read back with a real decoder (zbar)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import needs_tools as conftest_needs_tools
from hotspot.config import SETTINGS, load_config
from hotspot.poster import instruction_lines, make_poster, qr_svg, wifi_payload

needs_tools = conftest_needs_tools("zbarimg", "rsvg-convert", package="zbar-tools, librsvg2-bin")


def decode_svg(svg: str, tmp_path) -> str:
    """Render the SVG to PNG with librsvg, then read the QR code with zbarimg."""
    source = tmp_path / "code.svg"
    source.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + svg)
    png = tmp_path / "code.png"
    subprocess.run(["rsvg-convert", "-b", "white", "-o", str(png), str(source)], check=True,
                   timeout=60)
    result = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.rstrip("\n")


def test_wifi_payloads():
    assert wifi_payload("Community library") == "WIFI:T:nopass;S:Community library;;"
    assert wifi_payload("Red;Comunal", 'se:cr"et') == 'WIFI:T:WPA;S:Red\\;Comunal;P:se\\:cr\\"et;;'


@needs_tools
@pytest.mark.parametrize("text", ["WIFI:T:nopass;S:Community library;;",
                                  "WIFI:T:WPA;S:Biblioteca Comunitária;P:semillas2026;;",
                                  "http://library.lan/"])
def test_qr_codes_decode_back(text, tmp_path):
    assert decode_svg(qr_svg(text), tmp_path) == text


@needs_tools
def test_poster_codes_follow_the_settings(tmp_path):
    overrides = {"data_dir": str(tmp_path)}
    if any(s.name == "network.ssid" for s in SETTINGS):
        overrides.update({"network.ssid": "Biblioteca", "network.passphrase": "semillas2026"})
    config = load_config(None, overrides)
    for size in ("a4", "card"):
        poster = make_poster(config, size)
        assert decode_svg(poster.wifi_svg, tmp_path) == poster.wifi_data
        assert decode_svg(poster.url_svg, tmp_path) == poster.url
    if "network.ssid" in overrides:
        assert poster.wifi_data == "WIFI:T:WPA;S:Biblioteca;P:semillas2026;;"
    lines = instruction_lines(poster, lambda m: m)
    assert len(lines) >= 3 and poster.url in " ".join(lines)
