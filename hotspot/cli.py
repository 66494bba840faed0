"""The ``hotspot`` command.

Domain errors become one clear line on standard error and an exit code (2 for bad input,
1 for a failure); nobody sees a traceback for a mistake in a file or an option.

    $ hotspot serve --demo                 # the demo library on http://127.0.0.1:8080/
    $ hotspot --config my.toml config show
    $ hotspot library install catalog.json --files files/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .config import Config, load_config, render_toml, resolve_config_path
from .errors import HotspotError

DEMO_PORT = 8080


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
    library_commands.add_parser("install-demo", help="install the built-in demo library")
    return parser


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


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from .i18n import Translations
    from .library import DataPaths, install_demo
    from .media import MediaStore
    from .server import run, setup_logging
    from .web import CatalogHolder, create_app

    setup_logging(config.server.log_level)
    paths = DataPaths(config.data_path)
    try:
        paths.create()
    except PermissionError:
        raise HotspotError(f"Cannot create the data directory {paths.root} (permission denied). "
                           f"Run as the hotspot user, or use --data-dir or --demo.") from None
    if args.demo and install_demo(paths):
        print(f"Demo library installed in {paths.root}", flush=True)
    app = create_app(config, CatalogHolder(paths), MediaStore(paths.media), Translations.load())
    return run(config, app, announce=lambda line: print(line, flush=True))


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
        print("Demo library installed." if install_demo(paths) else "Demo library already installed.")
    else:
        catalog = load_catalog(paths.catalog)
        print(json.dumps({"library": catalog.library, "catalog_version": catalog.version,
                          "resources": len(catalog.resources), "data_dir": str(paths.root)},
                         ensure_ascii=False, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = effective_config(args)
        handler = {"serve": cmd_serve, "config": cmd_config, "library": cmd_library}[args.command]
        return handler(args, config)
    except HotspotError as exc:
        print(f"hotspot: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
