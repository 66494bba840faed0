"""Building packs end to end: the real `content-pack` command and the real `minisign` CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from content_pack.build import build_pack, diff_packs, write_tar
from content_pack.manifest import apply_delta, parse_manifest
from content_pack.reader import open_pack, verify_pack
from content_pack.signing import PublicKey, SecretKey, generate_keypair
from hotspot.errors import PackError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example-pack"
MINISIGN = shutil.which("minisign")
needs_minisign = pytest.mark.skipif(MINISIGN is None, reason="the minisign CLI is not installed")


def content_pack(*args, cwd: Path, env: dict | None = None, input: str | None = None):
    """Run the real command in a subprocess, as staff do."""
    full_env = {k: v for k, v in os.environ.items() if k != "CONTENT_PACK_PASSPHRASE"}
    full_env.update(env or {})
    result = subprocess.run([sys.executable, "-m", "content_pack.cli", *map(str, args)],
                            cwd=cwd, env=full_env, capture_output=True, text=True, input=input,
                            timeout=120)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working folder with a copy of the example source folder and a key pair."""
    shutil.copytree(EXAMPLE, tmp_path / "river")
    generate_keypair(tmp_path / "team", passphrase=None)
    return tmp_path


def secret(work: Path) -> SecretKey:
    return SecretKey.load(work / "team.key", None)


def build_v1(work: Path, **kwargs) -> Path:
    return build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                      secret_key=secret(work), out_dir=work / "packs", version=1, **kwargs)


def edit_catalog(work: Path) -> None:
    """Version 2 of the source: one resource changed, one removed, one added with a new file."""
    path = work / "river" / "catalog.csv"
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    rows = [r for r in rows if r["id"] != "patrol-log"]
    rows[0]["title_en"] = "Territorial patrol guide (2nd edition)"
    (work / "river" / "files" / "radio-plan.txt").write_text("Radio plan, week by week.\n")
    rows.append({**{k: "" for k in fields}, "id": "radio-plan", "type": "capacity-training",
                 "themes": "communication-radio", "strand": "what-is-needed", "languages": "en",
                 "title_en": "Radio training plan",
                 "files": "files/radio-plan.txt;files/patrol-cover.png"})
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def read_manifest(pack: Path):
    with open_pack(pack) as opened:
        return parse_manifest(opened.read_manifest_bytes())


# --- Full packs -------------------------------------------------------------------------

@needs_minisign
def test_cli_build_makes_a_pack_minisign_verifies(work):
    result = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                          "team.key", "--out", "packs", "--version", "1", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "Built river-alliance-1.hotspot-pack: full pack, version 1, 4 resources" in result.stdout
    pack = work / "packs" / "river-alliance-1.hotspot-pack"
    assert sorted(p.name for p in pack.iterdir()) == ["files", "manifest.json",
                                                      "manifest.json.minisig"]
    manifest = parse_manifest((pack / "manifest.json").read_bytes())
    assert (pack / "manifest.json").read_bytes() == manifest.to_bytes()  # canonical
    assert manifest.kind == "full" and manifest.publisher == "River alliance library team"
    for record in manifest.files:
        data = (pack / "files" / record.sha256).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record.sha256 and len(data) == record.size
    assert len(list((pack / "files").iterdir())) == len(manifest.files) == 4
    assert not [p for p in (work / "packs").iterdir() if p.name.startswith(".")]  # no leftovers

    checked = subprocess.run([MINISIGN, "-V", "-H", "-p", "team.pub", "-m",
                              pack / "manifest.json"], cwd=work, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "Trusted comment: library:river-alliance version:1 kind:full" in checked.stdout

    verified = content_pack("verify", pack, "--pubkey", "team.pub", cwd=work)
    assert verified.returncode == 0, verified.stderr
    assert "every size and sha256 checked" in verified.stdout
    assert f"Signed by key:   {PublicKey.load(work / 'team.pub').key_id_hex}" in verified.stdout


@needs_minisign
def test_manifest_signed_by_minisign_is_accepted(work):
    pack = build_v1(work)
    subprocess.run([MINISIGN, "-G", "-W", "-p", work / "staff.pub", "-s", work / "staff.key"],
                   check=True, capture_output=True)
    (pack / "manifest.json.minisig").unlink()
    subprocess.run([MINISIGN, "-S", "-s", work / "staff.key", "-m", pack / "manifest.json",
                    "-t", "library:river-alliance version:1 kind:full"],
                   check=True, capture_output=True)
    result = content_pack("verify", pack, "--pubkey", "staff.pub", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "library:river-alliance version:1 kind:full" in result.stdout
    # The team's own key did not sign it.
    refused = content_pack("verify", pack, "--pubkey", "team.pub", cwd=work)
    assert refused.returncode == 2 and "content-pack: error:" in refused.stderr


def test_refuses_to_overwrite(work):
    pack = build_v1(work)
    before = (pack / "manifest.json").read_bytes()
    with pytest.raises(PackError, match="already exists; it is not overwritten"):
        build_v1(work)
    result = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                          "team.key", "--out", "packs", "--version", "1", cwd=work)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (pack / "manifest.json").read_bytes() == before


def test_version_is_needed_for_a_full_pack(work):
    result = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                          "team.key", "--out", "packs", cwd=work)
    assert result.returncode == 2 and "--version N" in result.stderr


def test_csv_problems_exit_2_and_write_nothing(work):
    path = work / "river" / "catalog.csv"
    text = path.read_text().replace("guides-manuals,patrols;territory-monitoring",
                                    "videos,patrols;territory-monitoring")
    path.write_text(text.replace("files/patrol-log-template.csv", "../secret.csv"))
    result = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                          "team.key", "--out", "packs", "--version", "1", cwd=work)
    assert result.returncode == 2
    assert "2 problems" in result.stderr
    assert "catalog.csv row 2, column 'type': 'videos' is not a type" in result.stderr
    assert "catalog.csv row 4, column 'files': '../secret.csv' goes outside" in result.stderr
    assert not (work / "packs").exists() or not list((work / "packs").iterdir())


def test_tampered_file_is_caught_by_verify(work):
    pack = build_v1(work)
    victim = next((pack / "files").iterdir())
    data = bytearray(victim.read_bytes())
    data[0] ^= 1
    victim.write_bytes(bytes(data))
    result = content_pack("verify", pack, "--pubkey", "team.pub", cwd=work)
    assert result.returncode == 2 and "damaged" in result.stderr


def test_missing_key_and_bad_usage_exit_codes(work):
    missing = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                           "nope.key", "--out", "packs", "--version", "1", cwd=work)
    assert missing.returncode in (1, 2) and "nope.key" in missing.stderr
    usage = content_pack("build", "river", cwd=work)
    assert usage.returncode == 2
    no_pack = content_pack("inspect", "nothing-here", cwd=work)
    assert no_pack.returncode == 2 and "There is no pack" in no_pack.stderr


# --- Updates (deltas) -------------------------------------------------------------------

def test_delta_from_base_holds_only_the_changes(work):
    v1 = build_v1(work)
    v1_tar = write_tar(v1)
    edit_catalog(work)
    delta = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                       secret_key=secret(work), out_dir=work / "packs", base=v1_tar)
    assert delta.name == "river-alliance-1-to-2.hotspot-pack"
    with verify_pack(delta, [secret(work).public_key()]) as verified:
        manifest = verified.manifest
    assert manifest.kind == "delta" and manifest.base_version == 1 and manifest.version == 2
    assert manifest.removed == ("patrol-log",)
    assert [r["id"] for r in manifest.catalog["resources"]] == ["patrol-guide", "radio-plan"]
    new_file = hashlib.sha256(b"Radio plan, week by week.\n").hexdigest()
    # patrol-cover.png is in the base already: only the new text file travels.
    assert [f.sha256 for f in manifest.files] == [new_file]
    assert [p.name for p in (delta / "files").iterdir()] == [new_file]

    full2 = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                       secret_key=secret(work), out_dir=work / "full", version=2)
    expected = read_manifest(full2).catalog
    assert apply_delta(read_manifest(v1).catalog, manifest) == expected


def test_diff_of_two_full_packs_equals_build_with_base(work):
    v1 = build_v1(work)
    edit_catalog(work)
    v2 = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                    secret_key=secret(work), out_dir=work / "packs", version=2)
    result = content_pack("diff", v1, v2, "--key", "team.key", "--out", "updates", "--tar",
                          cwd=work)
    assert result.returncode == 0, result.stderr
    assert "update from version 1 to 2, 2 added or changed, 1 removed, 1 file" in result.stdout
    delta = work / "updates" / "river-alliance-1-to-2.hotspot-pack"
    assert (work / "updates" / "river-alliance-1-to-2.hotspot-pack.tar").is_file()
    built = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                       secret_key=secret(work), out_dir=work / "built", base=v1)
    a, b = read_manifest(delta), read_manifest(built)
    assert (a.catalog, a.removed, a.files) == (b.catalog, b.removed, b.files)
    verified = content_pack("verify", delta, "--pubkey", "team.pub", cwd=work)
    assert verified.returncode == 0 and "delta (update from version 1)" in verified.stdout


def test_diff_refuses_a_new_pack_not_signed_by_the_key(work):
    v1 = build_v1(work)
    edit_catalog(work)
    generate_keypair(work / "other", passphrase=None)
    v2 = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                    secret_key=SecretKey.load(work / "other.key", None),
                    out_dir=work / "packs", version=2)
    with pytest.raises(PackError):
        diff_packs(v1, v2, work / "updates", secret(work))


def test_base_must_be_a_full_pack(work):
    v1 = build_v1(work)
    edit_catalog(work)
    delta = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                       secret_key=secret(work), out_dir=work / "packs", base=v1)
    with pytest.raises(PackError, match="is an update \\(delta\\) pack; --base must be a full"):
        build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                   secret_key=secret(work), out_dir=work / "packs", base=delta)


def test_inspect_output(work):
    v1 = build_v1(work)
    edit_catalog(work)
    delta = build_pack(work / "river", catalog_csv=work / "river" / "catalog.csv",
                       secret_key=secret(work), out_dir=work / "packs", base=v1)
    full = content_pack("inspect", v1, cwd=work)
    assert full.returncode == 0
    for line in ("Pack:       river-alliance-1.hotspot-pack", "Kind:       full",
                 "Resources:  4", "Publisher:  River alliance library team",
                 "Signature:  NOT checked"):
        assert line in full.stdout
    update = content_pack("inspect", delta, "--base", v1, "--pubkey", "team.pub", cwd=work)
    assert update.returncode == 0, update.stderr
    for line in ("Kind:       delta (update from version 1)", "Added:      radio-plan",
                 "Changed:    patrol-guide", "Removed:    patrol-log", "New files:  1 (26 B)",
                 "Signature:  checked: signed by key"):
        assert line in update.stdout
    plain = content_pack("inspect", delta, cwd=work)
    assert "Added or changed: patrol-guide, radio-plan" in plain.stdout


# --- Tar output -------------------------------------------------------------------------

def test_tar_output(work):
    pack = build_v1(work)
    tar_path = write_tar(pack)
    assert tar_path == pack.with_name(pack.name + ".tar")
    with tarfile.open(tar_path, "r:") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:2] == [f"{pack.name}/manifest.json", f"{pack.name}/manifest.json.minisig"]
    assert sorted(names[2:]) == sorted(f"{pack.name}/files/{p.name}"
                                       for p in (pack / "files").iterdir())
    assert all(m.isreg() and m.mode == 0o644 and m.uid == 0 and m.gid == 0
               and m.uname == "" and m.gname == "" for m in members)
    with verify_pack(tar_path, [secret(work).public_key()]) as verified:
        assert verified.manifest.version == 1
    with pytest.raises(PackError, match="already exists"):
        write_tar(pack)
    result = content_pack("verify", tar_path, "--pubkey", "team.pub", cwd=work)
    assert result.returncode == 0, result.stderr


# --- Keys -------------------------------------------------------------------------------

def test_keygen_refuses_overwrite_and_needs_a_terminal_or_env(work):
    made = content_pack("keygen", "--out", "new", "--no-passphrase", cwd=work)
    assert made.returncode == 0 and "NO passphrase" in made.stdout
    again = content_pack("keygen", "--out", "new", "--no-passphrase", cwd=work)
    assert again.returncode == 2 and "not overwritten" in again.stderr
    no_tty = content_pack("keygen", "--out", "other", cwd=work)
    assert no_tty.returncode == 2 and "CONTENT_PACK_PASSPHRASE" in no_tty.stderr
    assert not (work / "other.key").exists()


@pytest.mark.slow
def test_passphrase_from_environment(work):
    env = {"CONTENT_PACK_PASSPHRASE": "correct horse"}
    made = content_pack("keygen", "--out", "locked", cwd=work, env=env)
    assert made.returncode == 0, made.stderr
    built = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                         "locked.key", "--out", "packs", "--version", "1", cwd=work, env=env)
    assert built.returncode == 0, built.stderr
    wrong = content_pack("build", "river", "--catalog", "river/catalog.csv", "--key",
                         "locked.key", "--out", "packs2", "--version", "1", cwd=work,
                         env={"CONTENT_PACK_PASSPHRASE": "wrong"})
    assert wrong.returncode == 2 and "wrong passphrase" in wrong.stderr
    if MINISIGN:  # minisign reads the encrypted key too
        signed = subprocess.run([MINISIGN, "-S", "-s", work / "locked.key", "-m",
                                 work / "river" / "catalog.csv"], input="correct horse\n",
                                capture_output=True, text=True, cwd=work)
        assert signed.returncode == 0, signed.stderr


# --- The worked example in docs/publishers.md --------------------------------------------

def test_publishers_guide_example_commands_work(work):
    """The commands of the guide's worked example, run as written."""
    guide = (ROOT / "docs" / "publishers.md").read_text()
    for command in ("content-pack build river --catalog river/catalog.csv --key team.key "
                    "--out packs --version 1 --tar",
                    "content-pack verify packs/river-alliance-1.hotspot-pack.tar --pubkey team.pub"):
        assert command in guide
        args = command.split()[1:]
        result = content_pack(*args, cwd=work)
        assert result.returncode == 0, result.stderr
    assert json.loads((work / "river" / "library.json").read_text())["id"] == "river-alliance"
