"""Configuration: the settings table, the TOML file, and `hotspot config show`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hotspot.config import SETTINGS, load_config, render_markdown, render_toml, resolve_config_path
from hotspot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_overrides(tmp_path):
    config = load_config(None)
    assert config.server.port == 80 and config.data_dir == "/var/lib/hotspot"
    path = tmp_path / "h.toml"
    path.write_text('data_dir = "/srv/x"\n[server]\nport = 8081\naccess_log = true\n')
    config = load_config(path, {"server.port": "0", "data_dir": None})
    assert config.server.port == 0 and config.data_dir == "/srv/x" and config.server.access_log is True


@pytest.mark.parametrize("text,fragment", [
    ("[server]\nprot = 1\n", "unknown setting 'server.prot'"),
    ("colour = 'red'\n", "unknown setting 'colour'"),
    ("[server]\nport = 'eighty'\n", "'server.port' has a bad value"),
    ("[server]\nport = 70000\n", "from 0 to 65535"),
    ("[server]\naccess_log = 3\n", "'server.access_log' has a bad value"),
    ("[library]\ndefault_language = 'de'\n", "expected one of en, es, fr, pt"),
    ("[server\nport=1", "is not valid TOML"),
    ("[server.deep]\nx = 1\n", "unknown section 'server.deep'"),
])
def test_bad_files_name_the_problem(tmp_path, text, fragment):
    path = tmp_path / "h.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert fragment in error.value.message
    assert str(path) in error.value.message


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_config_path_resolution(tmp_path):
    assert resolve_config_path("/a.toml", {"HOTSPOT_CONFIG": "/b.toml"}) == Path("/a.toml")
    assert resolve_config_path(None, {"HOTSPOT_CONFIG": "/b.toml"}) == Path("/b.toml")


def test_show_round_trips():
    config = load_config(None, {"server.port": 1234, "library.default_language": "pt"})
    text = render_toml(config)
    parsed = tomllib.loads(text)
    assert parsed["server"]["port"] == 1234 and parsed["library"]["default_language"] == "pt"
    for setting in SETTINGS:
        assert setting.help in text
    # The commented template parses to nothing, and uncommenting it gives the defaults.
    template = render_toml(None, commented_defaults=True)
    assert all(not values for values in tomllib.loads(template).values())
    uncommented = "\n".join(line[2:] if line.startswith("# ") and " = " in line and "(default" not in line
                            else line for line in template.splitlines())
    assert tomllib.loads(uncommented)["server"]["port"] == 80


def test_cli_config_show_and_errors(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text("[server]\nthreads = 3\n")
    run = subprocess.run([sys.executable, "-m", "hotspot.cli", "--config", str(path), "config", "show"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "threads = 3" in run.stdout
    env_run = subprocess.run([sys.executable, "-m", "hotspot.cli", "config", "show"],
                             capture_output=True, text=True, env={"HOTSPOT_CONFIG": str(path), "PATH": ""})
    assert env_run.returncode == 0 and "threads = 3" in env_run.stdout
    path.write_text("[server]\nthreds = 3\n")
    bad = subprocess.run([sys.executable, "-m", "hotspot.cli", "--config", str(path), "config", "show"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "unknown setting 'server.threds'" in bad.stderr and "Traceback" not in bad.stderr


def test_docs_list_every_setting():
    docs = (ROOT / "docs" / "configuration.md").read_text()
    table = docs.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert table == render_markdown(), "docs/configuration.md is out of date: regenerate the table"
