"""The ``content-pack`` command, for people who publish content for the hotspot.

    $ content-pack check hotspot/demo/catalog.json --files hotspot/demo/files
    OK: 34 resources, 27 files

Exit codes: 0 success, 2 bad input (an invalid catalog, a missing file), 1 failure.
Errors are printed as messages, never as tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from content_pack import schema
from hotspot.errors import HotspotError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="content-pack",
        description="Check (and later build, sign and verify) content for the community hotspot.",
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
