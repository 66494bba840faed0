"""Shared test fixtures: a small real library on disk and a real server process.

Servers are started as real subprocesses (`python -m hotspot.cli serve --port 0`) and polled
until they print their address; requests go over real HTTP to 127.0.0.1.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hotspot.library import DataPaths, install_catalog

LANGS = ("en", "es", "fr", "pt")


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def label(en: str, es: str, fr: str, pt: str) -> dict[str, str]:
    return {"en": en, "es": es, "fr": fr, "pt": pt}


def make_test_catalog(files_dir: Path, *, version: int = 1, extra: int = 45,
                      big_file_mb: int = 0) -> dict:
    """A library with hand-written resources plus ``extra`` generated ones (for paging)."""
    files_dir.mkdir(parents=True, exist_ok=True)

    def file_entry(name: str, data: bytes, media_type: str, **more) -> dict:
        (files_dir / name).write_bytes(data)
        return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "media_type": media_type, **more}

    big = bytes(range(256)) * 8192  # 2 MiB of every byte value
    resources = [
        {
            "id": "radio-basics", "type": "guides-manuals", "themes": ["communication-radio"],
            "strand": "what-works", "languages": ["en", "fr"],
            "title": {"en": "Community radio basics", "fr": "Les bases de la radio communautaire"},
            "summary": {"en": "How to start a community radio.", "fr": "Comment lancer une radio."},
            "description": {"en": "First paragraph.\n\nSecond paragraph about antennas."},
            "publisher": "Ondas del Territorio", "year": 2024, "licence": "CC BY 4.0",
            "tags": ["antenna", "broadcast"], "added": "2026-10-01",
            "files": [file_entry("radio guide.pdf", b"%PDF-1.4 test guide\n", "application/pdf"),
                      file_entry("clip.mp3", big, "audio/mpeg", duration=130)],
        },
        {
            "id": "proteccion-colectiva", "type": "videos-webinars", "themes": ["patrols", "early-warning"],
            "strand": "what-is-needed", "languages": ["es"],
            "title": {"es": "Protección colectiva del territorio"},
            "summary": {"es": "Guardias comunitarias y alertas tempranas."},
            "publisher": "Guardia Indígena", "added": "2026-09-15", "region": "Latin America",
            "countries": ["CO"],
            "files": [file_entry("video.mp4", b"\x00\x00\x00\x18ftypmp42" + b"v" * 5000, "video/mp4",
                                 duration=600),
                      file_entry("poster.png", b"\x89PNG\r\n\x1a\n" + b"p" * 100, "image/png")],
            "thumbnail": None,
        },
        {
            "id": "security-workbook", "type": "digital-tools", "themes": ["digital-security"],
            "strand": "what-works", "languages": ["en", "es", "fr", "pt"],
            "title": label("Digital security workbook", "Cuaderno de seguridad digital",
                           "Cahier de sécurité numérique", "Caderno de segurança digital"),
            "summary": label("Protect phones.", "Proteger teléfonos.", "Protéger les téléphones.",
                             "Proteger telefones."),
            "publisher": "Demo publisher", "added": "2026-08-01",
            "link": "https://example.org/workbook", "files": [],
        },
    ]
    resources[1]["thumbnail"] = resources[1]["files"][1]["sha256"]
    if big_file_mb:
        resources[0]["files"].append(file_entry("big.bin", bytes(range(256)) * 4096 * big_file_mb,
                                                "application/octet-stream"))
    for n in range(extra):
        resources.append({
            "id": f"generated-{n:03d}", "type": "templates" if n % 2 else "infographics",
            "themes": ["patrols"] if n % 3 else ["legal-support"], "strand": "what-works",
            "languages": ["pt"], "title": {"pt": f"Modelo número {n}"},
            "summary": {"pt": "Um modelo para a comunidade."}, "added": f"2025-01-{1 + n % 28:02d}",
            "files": [],
            "link": f"https://example.org/model/{n}",
        })
    taxonomy = {
        "types": [
            {"id": "guides-manuals", "icon": "book", "label": label("Guides & manuals", "Guías y manuales", "Guides et manuels", "Guias e manuais")},
            {"id": "videos-webinars", "icon": "video", "label": label("Videos & webinars", "Videos y seminarios web", "Vidéos et webinaires", "Vídeos e webinars")},
            {"id": "digital-tools", "icon": "tool", "label": label("Digital tools", "Herramientas digitales", "Outils numériques", "Ferramentas digitais")},
            {"id": "templates", "icon": "template", "label": label("Templates", "Plantillas", "Modèles", "Modelos")},
            {"id": "infographics", "icon": "chart", "label": label("Infographics", "Infografías", "Infographies", "Infográficos")},
        ],
        "themes": [
            {"id": "communication-radio", "icon": "radio", "label": label("Communication & radio", "Comunicación y radio", "Communication et radio", "Comunicação e rádio")},
            {"id": "patrols", "icon": "walk", "label": label("Patrols", "Patrullas", "Patrouilles", "Patrulhas")},
            {"id": "early-warning", "icon": "bell", "label": label("Early warning", "Alerta temprana", "Alerte précoce", "Alerta precoce")},
            {"id": "digital-security", "icon": "lock", "label": label("Digital security", "Seguridad digital", "Sécurité numérique", "Segurança digital")},
            {"id": "legal-support", "icon": "scale", "label": label("Legal support", "Apoyo legal", "Soutien juridique", "Apoio jurídico")},
        ],
        "strands": [
            {"id": "what-works", "label": label("What works", "Lo que funciona", "Ce qui marche", "O que funciona")},
            {"id": "what-is-needed", "label": label("What is needed", "Lo que se necesita", "Ce qui manque", "O que é preciso")},
        ],
    }
    return {
        "format": 1,
        "library": {"id": "test", "version": version,
                    "title": label("Test library", "Biblioteca de prueba", "Bibliothèque de test", "Biblioteca de teste")},
        "taxonomy": taxonomy,
        "resources": resources,
    }


def install_test_library(data_dir: Path, **kwargs) -> dict:
    files = data_dir.parent / (data_dir.name + "-files")
    data = make_test_catalog(files, **kwargs)
    install_catalog(DataPaths(data_dir), data, files)
    return data


class ServerProcess:
    """A real ``hotspot serve`` subprocess on a free port."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 30):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hotspot.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
            text=True, bufsize=1)
        self.output: list[str] = []
        self.url = self._wait_for_url(timeout)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if not line and self.proc.poll() is not None:
                    break
                self.output.append(line)
                match = re.search(r"Library ready at (http://\S+)/", line)
                if match:
                    return match.group(1)
            elif self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("server did not start:\n" + "".join(self.output))

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, timeout: float = 30):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
        finally:
            conn.close()

    def get(self, path: str, **headers: str):
        return self.request("GET", path, {k.replace("_", "-"): v for k, v in headers.items()})

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rest = self.proc.stdout.read() if self.proc.stdout else ""
        self.output.append(rest or "")
        self.proc.stdout.close()
        return self.proc.returncode


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.raw = body

    @property
    def body(self) -> bytes:
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.raw)
        return self.raw

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@pytest.fixture(scope="session")
def library_server(tmp_path_factory):
    """A real server on the test library, default settings but a free port."""
    root = tmp_path_factory.mktemp("library")
    data_dir = root / "data"
    catalog = install_test_library(data_dir)
    config = root / "hotspot.toml"
    config.write_text('[server]\nthreads = 4\n[library]\npage_size = 20\n')
    server = ServerProcess(["--config", str(config), "--data-dir", str(data_dir), "serve",
                            "--host", "127.0.0.1", "--port", "0"])
    server.catalog = catalog
    server.data_dir = data_dir
    yield server
    assert server.stop() == 0, "".join(server.output)


def needs_tools(*names: str, package: str):
    """Skip when a command-line tool is missing, except in CI, where every test must run."""
    import shutil
    missing = [name for name in names if shutil.which(name) is None]
    return pytest.mark.skipif(bool(missing) and not in_ci(),
                              reason=f"needs {', '.join(missing)} (Debian package {package})")


def require_root(why: str) -> None:
    """Root-only tests run in CI (as root); elsewhere they skip and say why."""
    import os as _os
    if _os.geteuid() == 0:
        return
    if in_ci():
        pytest.fail(f"This test needs root ({why}) and CI must run it as root.")
    pytest.skip(f"needs root ({why}); run as root (CI does)")


def mounted_tmpfs(tmp_path: Path, size: str):
    """A real small file system (tmpfs of ``size``) at ``tmp_path/tiny``, unmounted afterwards."""
    require_root("to mount a small tmpfs")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                             str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        reason = f"could not mount a tmpfs: {result.stderr.strip()}"
        pytest.fail(reason) if in_ci() else pytest.skip(reason)
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)  # a failed test
