"""The ``hotspot`` command.

Domain errors become one clear line on standard error and an exit code (2 for bad input,
1 for a failure); nobody sees a traceback for a mistake in a file or an option.

    $ hotspot serve --demo                 # the demo library on http://127.0.0.1:8080/
    $ hotspot --config my.toml config show
    $ hotspot library install catalog.json --files files/
    $ hotspot import /media/usb/demo-3.hotspot-pack.tar    # a signed content pack
    $ hotspot rollback                                      # back to the library before it
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .config import Config, load_config, render_toml, resolve_config_path
from .errors import HotspotError

DEMO_PORT = 8080

# Feature modules that bring their own subcommands. Each has
#   add_commands(commands) -> dict[str, handler]
# where ``commands`` is the argparse sub-parsers object and a handler is
# ``handler(args, config) -> exit code``. Keeps this file from growing with every feature.
EXTENSION_MODULES: tuple[str, ...] = (
    "hotspot.admin",
    "hotspot.provision",
    "hotspot.sync",
    "hotspot.hub.cli",
    "hotspot.usb",
)


def demo_data_dir(environ: dict[str, str] | None = None) -> Path:
    """Per-user data directory for ``--demo`` (no root needed)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hotspot-demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotspot", description="Community hotspot library: serve the library on the hotspot.")
    parser.add_argument("--version", action="version", version=f"hotspot {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $HOTSPOT_CONFIG, then "
                             "/etc/hotspot/hotspot.toml if it exists)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the config)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web server")
    serve.add_argument("--demo", action="store_true",
                       help=f"serve the built-in demo library from a per-user folder, on "
                            f"127.0.0.1:{DEMO_PORT} unless --host/--port say otherwise")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="port, 0 for a free one (overrides server.port)")

    config = commands.add_parser("config", help="configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser("show", help="print the effective configuration as TOML")
    show.add_argument("--defaults", action="store_true",
                      help="print every setting commented out with its default "
                           "(the file provisioning installs)")

    library = commands.add_parser("library", help="the installed library")
    library_commands = library.add_subparsers(dest="library_command", required=True,
                                              metavar="ACTION")
    library_commands.add_parser("info", help="show what library is installed")
    install = library_commands.add_parser("install", help="install a catalog and its files")
    install.add_argument("catalog", type=Path, help="catalog JSON file")
    install.add_argument("--files", type=Path, help="folder with the files the catalog names")
    install_demo = library_commands.add_parser(
        "install-demo", help="install the built-in demo library (a pack signed with the demo key)")
    install_demo.add_argument("--replace-library", action="store_true",
                              help="replace an installed library that is not the demo")

    pack_import = commands.add_parser(
        "import", help="install a signed content pack (a .hotspot-pack folder or .tar file)")
    pack_import.add_argument("pack", type=Path, help="the pack folder or tar file")
    pack_import.add_argument("--allow-downgrade", action="store_true",
                             help="install even if the pack's version is not newer than the "
                                  "installed one")
    pack_import.add_argument("--replace-library", action="store_true",
                             help="install even if the pack holds another library than the "
                                  "installed one (the demo is always replaced)")
    commands.add_parser("rollback", help="go back to the library installed before the last "
                                         "import (run again to go forward)")

    contributions = commands.add_parser("contributions", help="the contribution queue")
    contribution_commands = contributions.add_subparsers(dest="contributions_command",
                                                         required=True, metavar="ACTION")
    listing = contribution_commands.add_parser(
        "list", help="list contributions (state, kind, size, day; never their content)")
    listing.add_argument("--state", choices=("queued", "exported", "delivered"))
    listing.add_argument("--json", action="store_true", help="print JSON")
    export = contribution_commands.add_parser(
        "export", help="write the queued contributions as a signed bundle into a folder "
                       "(e.g. a USB drive)")
    export.add_argument("dest", type=Path, help="folder to write hotspot-outbox/ into")
    contribution_commands.add_parser("reindex", help="rebuild the index from the envelope files")
    purge = contribution_commands.add_parser(
        "purge", help="delete contributions the hub acknowledged longer ago than "
                      "contributions.retention_days")
    purge.add_argument("--delivered", action="store_true", required=True,
                       help="required: only acknowledged contributions are ever purged")
    for module_name in EXTENSION_MODULES:
        for name, handler in importlib.import_module(module_name).add_commands(commands).items():
            EXTENSION_HANDLERS[name] = handler
    return parser


EXTENSION_HANDLERS: dict = {}


def effective_config(args: argparse.Namespace) -> Config:
    demo = getattr(args, "demo", False)
    # The demo ignores the system's config file unless one is named explicitly.
    path = resolve_config_path(args.config) if (args.config or not demo) else None
    if demo and os.environ.get("HOTSPOT_CONFIG") and not args.config:
        path = Path(os.environ["HOTSPOT_CONFIG"])
    overrides: dict[str, object] = {"data_dir": args.data_dir}
    if demo:
        overrides["data_dir"] = args.data_dir or str(demo_data_dir())
        overrides["server.host"] = "127.0.0.1"
        overrides["server.port"] = DEMO_PORT
    overrides["server.host"] = getattr(args, "host", None) or overrides.get("server.host")
    port = getattr(args, "port", None)
    if port is not None:
        overrides["server.port"] = port
    return load_config(path, overrides)


def _margin_bytes(config: Config) -> int:
    return config.packs.free_space_margin_mb * 1_000_000


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from .i18n import Translations
    from .library import DataPaths, install_demo
    from .media import MediaStore
    from .bundle import load_or_create_hotspot_key
    from .forms import load_or_create_secret
    from .server import run, setup_logging
    from .web import CatalogHolder, create_app

    setup_logging(config.server.log_level)
    paths = DataPaths(config.data_path)
    try:
        paths.create()
    except PermissionError:
        raise HotspotError(f"Cannot create the data directory {paths.root} (permission denied). "
                           f"Run as the hotspot user, or use --data-dir or --demo.") from None
    if args.demo and install_demo(paths, margin_bytes=_margin_bytes(config)):
        print(f"Demo library installed in {paths.root} (a content pack signed with the demo "
              f"key, built in {paths.demo_pack_cache})", flush=True)
    queue = contribution_queue(config, paths, demo=args.demo)
    load_or_create_hotspot_key(paths.root)  # the hotspot's own signing key, made on first start
    app = create_app(config, CatalogHolder(paths), MediaStore(paths.media), Translations.load(),
                     queue=queue, form_secret=load_or_create_secret(paths.root / "form-secret"),
                     services={"paths": paths})
    return run(config, app, announce=lambda line: print(line, flush=True))


def contribution_queue(config: Config, paths, *, demo: bool):
    """The contribution queue; the demo encrypts to a clearly labelled DEMO hub key."""
    from .contributions import ContributionQueue, generate_demo_recipient

    if demo and not config.contributions.recipients:
        recipient, identity = generate_demo_recipient(paths.root)
        config.contributions.recipients = [recipient]
        print(f"Demo contributions are encrypted to a DEMO key; decrypt with "
              f"age -d -i {identity}", flush=True)
    return ContributionQueue.from_config(config)


def cmd_config(args: argparse.Namespace, config: Config) -> int:
    sys.stdout.write(render_toml(None if args.defaults else config, commented_defaults=args.defaults))
    return 0


def cmd_library(args: argparse.Namespace, config: Config) -> int:
    from .catalog import load_catalog
    from .library import DataPaths, install_catalog, install_demo, load_catalog_file

    paths = DataPaths(config.data_path)
    if args.library_command == "install":
        data = load_catalog_file(args.catalog)
        digest = install_catalog(paths, data, args.files)
        print(f"Installed library '{data['library']['id']}' version {data['library']['version']} "
              f"({len(data['resources'])} resources, {digest[:12]}).")
    elif args.library_command == "install-demo":
        logging.getLogger("hotspot").addHandler(logging.NullHandler())
        installed = install_demo(paths, margin_bytes=_margin_bytes(config),
                                 replace_library=args.replace_library)
        print("Demo library installed." if installed else "Demo library already installed.")
    else:
        from .packs import installed_state

        catalog = load_catalog(paths.catalog)
        state = installed_state(paths)
        print(json.dumps({"library": catalog.library, "catalog_version": catalog.version,
                          "resources": len(catalog.resources),
                          "installed_version": state["version"],
                          "previous": state["previous"], "data_dir": str(paths.root)},
                         ensure_ascii=False, indent=2))
    return 0


class ProgressDisplay:
    """A one-line bar redrawn with ``\\r`` on a terminal; plain lines every 5 % otherwise
    (logs, the journal, a test reading a pipe)."""

    STEP = 5

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._stage = None
        self._bucket = -1
        self._width = 0

    def __call__(self, progress) -> None:
        if progress.stage != "copying":
            if progress.stage != self._stage and progress.stage not in ("done", "failed"):
                self._line(progress.describe(), final=True)
            self._stage = progress.stage
            return
        self._stage = "copying"
        if self.tty:
            filled = int(progress.fraction * 20)
            self._line(f"[{'#' * filled}{'.' * (20 - filled)}] {progress.describe()}")
            return
        bucket = int(progress.fraction * 100) // self.STEP
        if bucket != self._bucket:
            self._bucket = bucket
            self._line(progress.describe(), final=True)

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            padding = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + padding)
            self._width = len(text)
            if final:
                self.stream.write("\n")
                self._width = 0
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    from content_pack.signing import load_trusted_keys

    from .errors import ConfigError
    from .i18n import format_size
    from .library import DataPaths
    from .packs import import_pack

    # The outcome is printed below; the log lines of hotspot.packs (meant for the journal when
    # a service imports) would only repeat it on stderr.
    logging.getLogger("hotspot").addHandler(logging.NullHandler())
    keys_dir = Path(config.packs.trusted_keys_dir)
    if not keys_dir.is_dir():
        raise ConfigError(f"The trusted keys folder {keys_dir} does not exist. Put the "
                          f"publisher's public key (.pub) there, or set packs.trusted_keys_dir.")
    keys = load_trusted_keys(keys_dir)
    if not keys:
        raise ConfigError(f"There are no trusted keys (*.pub) in {keys_dir}, so no pack can be "
                          f"installed. Put the publisher's public key there.")
    display = ProgressDisplay()
    try:
        result = import_pack(args.pack, DataPaths(config.data_path), keys,
                             allow_downgrade=args.allow_downgrade,
                             replace_library=args.replace_library,
                             margin_bytes=config.packs.free_space_margin_mb * 1_000_000,
                             progress=display)
    except KeyboardInterrupt:
        display.end()
        print("hotspot: the import was interrupted; the library was not changed.",
              file=sys.stderr)
        return 1
    finally:
        display.end()
    kind = "full pack" if result.kind == "full" else "update"
    print(f"Installed library '{result.library}' version {result.version} ({kind}): "
          f"{result.files_copied} files copied ({format_size(result.bytes_copied, 'en')}), "
          f"{result.files_reused} already on the hotspot, {result.removed_files} unused files "
          f"removed.")
    return 0


def cmd_rollback(args: argparse.Namespace, config: Config) -> int:
    from .library import DataPaths
    from .packs import installed_state, rollback

    logging.getLogger("hotspot").addHandler(logging.NullHandler())
    paths = DataPaths(config.data_path)
    from_version, to_version = rollback(paths)
    library = installed_state(paths)["library"]
    print(f"Rolled back library '{library}' from version {from_version} to version "
          f"{to_version}. Run 'hotspot rollback' again to go forward.")
    return 0


def cmd_contributions(args: argparse.Namespace, config: Config) -> int:
    from .bundle import export_bundle
    from .contributions import ContributionQueue

    queue = ContributionQueue.from_config(config)
    action = args.contributions_command
    if action == "list":
        entries = queue.list(args.state)
        if args.json:
            print(json.dumps([{"code": e.code, "state": e.state, "kind": e.kind, "day": e.day,
                               "size": e.size} for e in entries], indent=2))
        else:
            for e in entries:
                print(f"{e.code}  {e.state:<9}  {e.kind:<10}  {e.day}  {e.size:>10} bytes")
            counts = queue.counts()
            print(", ".join(f"{n} {state}" for state, n in counts.items()) or "No contributions.")
    elif action == "export":
        bundle = export_bundle(queue, args.dest, config.data_dir)
        print(f"Wrote and checked {bundle}." if bundle else "Nothing to export: no queued contributions.")
    elif action == "reindex":
        print(f"Index rebuilt from {queue.reindex()} envelope files.")
    else:
        removed = queue.purge_delivered(config.contributions.retention_days)
        print(f"Deleted {removed} acknowledged contributions older than "
              f"{config.contributions.retention_days} days.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = effective_config(args)
        handler = {"serve": cmd_serve, "config": cmd_config, "library": cmd_library,
                   "import": cmd_import, "rollback": cmd_rollback,
                   "contributions": cmd_contributions, **EXTENSION_HANDLERS}[args.command]
        return handler(args, config)
    except HotspotError as exc:
        print(f"hotspot: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
