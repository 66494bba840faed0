"""The ``content-pack`` command, for people who publish content for the hotspot.

    $ content-pack check catalog.json --files hotspot/demo/files
    OK: 34 resources, 27 files
    $ content-pack keygen --out coalition
    $ content-pack build river-library --catalog river-library/catalog.csv --key coalition.key \
          --out packs --version 1 --tar
    $ content-pack verify packs/river-alliance-1.hotspot-pack --pubkey coalition.pub
    $ content-pack inspect packs/river-alliance-1-to-2.hotspot-pack
    $ content-pack diff packs/river-alliance-1.hotspot-pack packs/river-alliance-2.hotspot-pack \
          --key coalition.key --out packs

``docs/publishers.md`` is the guide for coalition staff. A secret key's passphrase is asked
on the terminal, or read from the environment variable ``CONTENT_PACK_PASSPHRASE`` (for
scripts). Exit codes: 0 success, 2 bad input (an invalid catalog or spreadsheet, a refused
pack or signature, a missing file), 1 failure. Errors are printed as messages, never as
tracebacks.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import sys
from pathlib import Path

from content_pack import schema
from hotspot.errors import HotspotError, PackError, SignatureError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
PASSPHRASE_ENV = "CONTENT_PACK_PASSPHRASE"


class UsageError(HotspotError):
    """A command was given options that cannot work together, or lacks one."""

    exit_code = EXIT_BAD_INPUT


def _size(n: int) -> str:
    """Bytes for people, in units of 1000 like the hotspot's pages."""
    if n < 1000:
        return f"{n} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _ask(prompt: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"There is no terminal to ask for the passphrase. Set the environment "
                         f"variable {PASSPHRASE_ENV}, or make a key without a passphrase "
                         f"(--no-passphrase).")
    return getpass.getpass(prompt)


def _new_passphrase(args: argparse.Namespace) -> str | None:
    if args.no_passphrase:
        return None
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        if not from_env:
            raise UsageError(f"{PASSPHRASE_ENV} is set but empty; use --no-passphrase for a key "
                             "without a passphrase.")
        return from_env
    first = _ask("Passphrase for the new secret key: ")
    if not first:
        raise UsageError("The passphrase is empty; use --no-passphrase for a key without one.")
    if _ask("The same passphrase again: ") != first:
        raise UsageError("The two passphrases differ; nothing was written.")
    return first


def _load_secret_key(path: Path):
    from content_pack.signing import SecretKey

    from_env = os.environ.get(PASSPHRASE_ENV)
    try:
        return SecretKey.load(path, from_env)
    except SignatureError as exc:
        needs_passphrase = "protected by a passphrase" in exc.message
        if from_env is not None or not needs_passphrase:
            raise
    return SecretKey.load(path, _ask(f"Passphrase for {path}: "))


def _load_public_keys(paths: list[Path]) -> list:
    from content_pack.signing import PublicKey

    return [PublicKey.load(path) for path in paths]


def _title_of(catalog: dict) -> str:
    title = catalog["library"]["title"]
    return title.get("en") or next(iter(title.values()))


def _check(args: argparse.Namespace) -> int:
    data = schema.load_catalog(args.catalog)
    problems = list(schema.iter_problems(data))
    if not problems and args.files is not None:
        problems = schema.check_files(data, args.files)
    if problems:
        for problem in problems:
            print(problem)
        count = len(problems)
        print(f"{count} problem{'s' if count != 1 else ''} found in {args.catalog}.", file=sys.stderr)
        return EXIT_BAD_INPUT
    resources = data["resources"]
    n_files = sum(len(r.get("files", [])) for r in resources)
    print(f"OK: {len(resources)} resource{'s' if len(resources) != 1 else ''}, "
          f"{n_files} file{'s' if n_files != 1 else ''}")
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from content_pack.signing import generate_keypair

    passphrase = _new_passphrase(args)
    key_path, pub_path = generate_keypair(args.out, passphrase=passphrase)
    from content_pack.signing import PublicKey

    key_id = PublicKey.load(pub_path).key_id_hex
    print(f"Secret key: {key_path}  (keep it safe and private; it signs packs"
          f"{'' if passphrase else ', and it has NO passphrase'})")
    print(f"Public key: {pub_path}  (give it to hotspot operators; key id {key_id})")
    return EXIT_OK


def _library_overrides(args: argparse.Namespace) -> dict | None:
    overrides: dict = {}
    if args.library_id:
        overrides["id"] = args.library_id
    if args.title:
        titles = {}
        for item in args.title:
            lang, sep, text = item.partition("=")
            if not sep or not schema.LANGUAGE_PATTERN.fullmatch(lang) or not text.strip():
                raise UsageError(f"--title {item!r}: write it as LANG=TEXT, e.g. "
                                 "--title 'en=River library'.")
            titles[lang] = text.strip()
        overrides["title"] = titles
    return overrides or None


def _describe_built(path: Path, tar: Path | None) -> None:
    from content_pack.build import read_pack_manifest

    manifest = read_pack_manifest(path)
    if manifest.kind == "full":
        what = (f"full pack, version {manifest.version}, "
                f"{_plural(len(manifest.catalog['resources']), 'resource')}")
    else:
        what = (f"update from version {manifest.base_version} to {manifest.version}, "
                f"{len(manifest.catalog['resources'])} added or changed, "
                f"{len(manifest.removed)} removed")
    print(f"Built {manifest.pack_name()}: {what}, "
          f"{_plural(len(manifest.files), 'file')} ({_size(manifest.total_size)})")
    print(f"  {path}")
    if tar is not None:
        print(f"  {tar}")


def _build(args: argparse.Namespace) -> int:
    from content_pack.build import build_pack, write_tar

    if not args.source_dir.is_dir():
        raise UsageError(f"The source folder {args.source_dir} does not exist.")
    library = _library_overrides(args)
    secret = _load_secret_key(args.key)
    path = build_pack(args.source_dir, catalog_csv=args.catalog, secret_key=secret,
                      out_dir=args.out, base=args.base, publisher=args.publisher,
                      version=args.version, library=library)
    tar = write_tar(path) if args.tar else None
    _describe_built(path, tar)
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from content_pack.build import diff_packs, write_tar

    secret = _load_secret_key(args.key)
    path = diff_packs(args.old, args.new, args.out, secret, publisher=args.publisher)
    tar = write_tar(path) if args.tar else None
    _describe_built(path, tar)
    return EXIT_OK


def _check_file_hashes(verified) -> int:
    """Hash every file of a verified pack; raise PackError on the first that differs."""
    total = 0
    for record in verified.manifest.files:
        digest = hashlib.sha256()
        with verified.pack.open_file(record.sha256) as f:
            while chunk := f.read(2**20):
                digest.update(chunk)
                total += len(chunk)
        if digest.hexdigest() != record.sha256:
            raise PackError(f"files/{record.sha256} is damaged: its content does not match its "
                            "sha256. Copy the pack again.")
    return total


def _verify(args: argparse.Namespace) -> int:
    from content_pack.reader import verify_pack

    keys = _load_public_keys(args.pubkey)
    with verify_pack(args.pack, keys) as verified:
        manifest = verified.manifest
        total = _check_file_hashes(verified)
        kind = ("full" if manifest.kind == "full"
                else f"delta (update from version {manifest.base_version})")
        print(f"OK: {args.pack}")
        print(f"Library:         {manifest.library} ({_title_of(manifest.catalog)})")
        print(f"Version:         {manifest.version}")
        print(f"Kind:            {kind}")
        print(f"Signed by key:   {verified.key.key_id_hex}")
        print(f"Trusted comment: {verified.trusted_comment}")
        print(f"Files:           {_plural(len(manifest.files), 'file')} ({_size(total)}), "
              "every size and sha256 checked")
    return EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    from content_pack.build import read_full_pack_manifest
    from content_pack.manifest import parse_manifest
    from content_pack.reader import open_pack, verify_pack

    verified_line = None
    if args.pubkey:
        with verify_pack(args.pack, _load_public_keys(args.pubkey)) as verified:
            manifest = verified.manifest
            verified_line = (f"checked: signed by key {verified.key.key_id_hex} "
                             f"({verified.trusted_comment}); file contents not hashed, use "
                             "'content-pack verify' for that")
    else:
        with open_pack(args.pack) as pack:
            manifest = parse_manifest(pack.read_manifest_bytes())
    resources = manifest.catalog["resources"]
    print(f"Pack:       {manifest.pack_name()}")
    print(f"Library:    {manifest.library} ({_title_of(manifest.catalog)})")
    print(f"Version:    {manifest.version}")
    if manifest.kind == "full":
        print("Kind:       full (the whole library)")
    else:
        print(f"Kind:       delta (update from version {manifest.base_version})")
    print(f"Created:    {manifest.created}")
    print(f"Publisher:  {manifest.publisher}")
    if manifest.kind == "full":
        print(f"Resources:  {len(resources)}")
        print(f"Files:      {len(manifest.files)} ({_size(manifest.total_size)})")
    else:
        ids = [r["id"] for r in resources]
        if args.base is not None:
            base = read_full_pack_manifest(args.base, "--base")
            if base.version != manifest.base_version or base.library != manifest.library:
                raise UsageError(f"--base is {base.library} version {base.version}, but this "
                                 f"update applies to {manifest.library} version "
                                 f"{manifest.base_version}.")
            base_ids = {r["id"] for r in base.catalog["resources"]}
            print(f"Added:      {', '.join(i for i in ids if i not in base_ids) or '(none)'}")
            print(f"Changed:    {', '.join(i for i in ids if i in base_ids) or '(none)'}")
        else:
            print(f"Added or changed: {', '.join(ids) or '(none)'}"
                  + ("  (give --base OLD_PACK to tell them apart)" if ids else ""))
        print(f"Removed:    {', '.join(manifest.removed) or '(none)'}")
        print(f"New files:  {len(manifest.files)} ({_size(manifest.total_size)})")
    if verified_line:
        print(f"Signature:  {verified_line}")
    else:
        print("Signature:  NOT checked (give --pubkey KEY.pub to check who signed this pack)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="content-pack",
        description="Check, build, sign, verify and inspect content packs for the community "
                    "hotspot. See docs/publishers.md.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check", help="check a catalog JSON file against the catalog format",
        description="Check a catalog against the catalog format; with --files, also check "
                    "that every listed file is present with the right size and sha256.",
    )
    check.add_argument("catalog", type=Path, metavar="CATALOG.json")
    check.add_argument("--files", type=Path, metavar="DIR",
                       help="directory holding the files, each named by its name or sha256")
    check.set_defaults(run=_check)

    keygen = commands.add_parser(
        "keygen", help="make a signing key pair (NAME.key and NAME.pub)",
        description="Make a new minisign key pair: NAME.key (secret: keep it safe) and NAME.pub "
                    "(public: give it to hotspot operators). The passphrase is asked twice on "
                    f"the terminal, or read from {PASSPHRASE_ENV}. Existing files are never "
                    "overwritten.",
    )
    keygen.add_argument("--out", type=Path, required=True, metavar="NAME",
                        help="where to write NAME.key and NAME.pub")
    keygen.add_argument("--no-passphrase", action="store_true",
                        help="do not protect the secret key with a passphrase")
    keygen.set_defaults(run=_keygen)

    build = commands.add_parser(
        "build", help="build and sign a pack from a folder and its spreadsheet",
        description="Build a signed content pack from SOURCE_DIR (holding taxonomy.json, "
                    "library.json and the files) and the spreadsheet exported as CSV. With "
                    "--base, build an update (delta) from that previous full pack.",
    )
    build.add_argument("source_dir", type=Path, metavar="SOURCE_DIR")
    build.add_argument("--catalog", type=Path, required=True, metavar="CATALOG.csv",
                       help="the spreadsheet, saved as CSV (UTF-8)")
    build.add_argument("--key", type=Path, required=True, metavar="NAME.key",
                       help="the secret key that signs the pack")
    build.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="folder where the pack folder is written")
    build.add_argument("--base", type=Path, metavar="PREVIOUS_PACK",
                       help="a previous full pack (folder or .tar): build an update from it")
    build.add_argument("--publisher", metavar="TEXT",
                       help="who makes the pack (default: \"publisher\" in library.json)")
    build.add_argument("--version", type=int, metavar="N",
                       help="the pack's version (needed without --base; default with --base: "
                            "the base's version + 1)")
    build.add_argument("--library-id", metavar="ID", help="the library id (instead of library.json)")
    build.add_argument("--title", action="append", metavar="LANG=TEXT",
                       help="the library title in one language (repeat for more); replaces "
                            "library.json's title")
    build.add_argument("--tar", action="store_true",
                       help="also write the pack as one .tar file next to the folder")
    build.set_defaults(run=_build)

    verify = commands.add_parser(
        "verify", help="check a pack's signature and every file",
        description="Check a pack as a hotspot does: its signature against the given public "
                    "key(s), its manifest, and every file's size and sha256.",
    )
    verify.add_argument("pack", type=Path, metavar="PACK", help="pack folder or .tar")
    verify.add_argument("--pubkey", type=Path, action="append", required=True,
                        metavar="NAME.pub", help="a trusted public key (repeat for more)")
    verify.set_defaults(run=_verify)

    inspect = commands.add_parser(
        "inspect", help="show what a pack holds (without checking its signature)",
        description="Show a pack's library, version, kind, publisher and contents. The "
                    "signature is NOT checked unless --pubkey is given.",
    )
    inspect.add_argument("pack", type=Path, metavar="PACK", help="pack folder or .tar")
    inspect.add_argument("--pubkey", type=Path, action="append", metavar="NAME.pub",
                         help="also check the signature against this public key")
    inspect.add_argument("--base", type=Path, metavar="BASE_PACK",
                         help="for an update: the full pack it applies to, to tell added "
                              "resources from changed ones")
    inspect.set_defaults(run=_inspect)

    diff = commands.add_parser(
        "diff", help="make an update (delta) pack between two full packs",
        description="Make an update pack that turns full pack OLD into full pack NEW. NEW must "
                    "be signed by the given key; the update is signed with it.",
    )
    diff.add_argument("old", type=Path, metavar="OLD")
    diff.add_argument("new", type=Path, metavar="NEW")
    diff.add_argument("--key", type=Path, required=True, metavar="NAME.key")
    diff.add_argument("--out", type=Path, required=True, metavar="DIR")
    diff.add_argument("--publisher", metavar="TEXT",
                      help="who makes the update (default: the publisher of NEW)")
    diff.add_argument("--tar", action="store_true",
                      help="also write the update as one .tar file next to the folder")
    diff.set_defaults(run=_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return args.run(args)
    except HotspotError as exc:
        print(f"content-pack: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"content-pack: error: {exc.strerror or exc}"
              f"{f' ({exc.filename})' if exc.filename else ''}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("content-pack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
