"""``hotspot hub ...``: run the coalition's hub and look after it.

    $ hotspot hub serve                                   # behind nginx (provisioning/)
    $ hotspot hub add-hotspot river-village --public-key hotspot.pub    # prints the token
    $ hotspot hub ingest /media/usb                        # bundles carried on a drive
    $ hotspot hub publish river-3.hotspot-pack.tar
    $ hotspot hub export --format csv ~/contributions --identity hub-identity.txt
"""

from __future__ import annotations

import argparse
import json
import getpass
import logging
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from content_pack.signing import PublicKey, load_trusted_keys
from hotspot.errors import BadRequest, ConfigError

from .inbox import Inbox, load_identities, load_or_create_hub_key
from .publishing import PackShelf
from .registry import Registry
from .storage import LocalStorage
from .uploads import Uploads
from .usage import UsageStore

MB = 1_000_000
log = logging.getLogger("hotspot.hub")


def open_hub(config) -> SimpleNamespace:
    """Everything the hub's commands and server use, built from the ``hub`` settings."""
    storage = LocalStorage(config.hub.data_dir)
    hub_key = load_or_create_hub_key(storage.root)
    inbox = Inbox(storage, hub_key)
    keys = load_trusted_keys(config.hub.publisher_keys_dir) \
        if config.hub.publisher_keys_dir else []
    if config.hub.publisher_keys_dir and not keys:
        raise ConfigError("hub.publisher_keys_dir %(dir)s holds no *.pub key.",
                          dir=config.hub.publisher_keys_dir)
    spool = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else tempfile.gettempdir()
    return SimpleNamespace(storage=storage, hub_key=hub_key, inbox=inbox,
                           registry=Registry(storage), shelf=PackShelf(storage, keys),
                           usage=UsageStore(storage),
                           uploads=Uploads(storage, inbox,
                                           max_size=config.hub.max_envelope_mb * MB),
                           spool_dir=spool)


def add_commands(commands) -> dict:
    hub = commands.add_parser("hub", help="the coalition hub that receives contributions")
    actions = hub.add_subparsers(dest="hub_command", required=True, metavar="ACTION")
    serve = actions.add_parser("serve", help="run the hub server (put it behind a TLS proxy)")
    serve.add_argument("--host", help="listen address (overrides hub.host)")
    serve.add_argument("--port", type=int, help="port, 0 for a free one (overrides hub.port)")
    serve.add_argument("--identity", metavar="FILE",
                       help="the hub's age identity, so the staff view can open contributions "
                            "(default: hub.identity_file; without one, asked at a terminal)")
    serve.add_argument("--no-identity", action="store_true",
                       help="start without the age identity (the staff view lists only)")
    add = actions.add_parser("add-hotspot", help="register a hotspot and print its token")
    add.add_argument("name", help="a name for people, e.g. river-village")
    add.add_argument("--public-key", required=True, type=Path, metavar="FILE",
                     help="the hotspot's keys/hotspot.pub")
    add.add_argument("--new-token", action="store_true",
                     help="issue a new token to a hotspot already registered (the old one "
                          "stops working)")
    actions.add_parser("hotspots", help="list registered hotspots")
    remove = actions.add_parser("remove-hotspot", help="unregister a hotspot (its token stops "
                                                       "working)")
    remove.add_argument("id", help="the hotspot id (16 hex digits)")
    staff = actions.add_parser("add-staff", help="create a staff login for the web view "
                                                 "(or change its password)")
    staff.add_argument("name")
    staff.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input instead of asking")
    ingest = actions.add_parser("ingest", help="import outbox bundles from a drive and write "
                                               "receipts onto it")
    ingest.add_argument("dir", type=Path, help="the drive (or its hotspot-outbox, or a bundle)")
    publish = actions.add_parser("publish", help="offer a signed pack to hotspots")
    publish.add_argument("pack", type=Path, help="a .hotspot-pack folder or .tar")
    actions.add_parser("packs", help="list published packs")
    export = actions.add_parser("export", help="decrypt every contribution into a folder")
    export.add_argument("dest", type=Path, help="folder to write into (kept by staff)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--identity", metavar="FILE",
                        help="the hub's age identity (default: hub.identity_file, or typed)")
    actions.add_parser("key", help="print the hub's public receipt key (for hotspots)")
    usage = actions.add_parser("usage", help="daily usage counts sent by hotspots, summed "
                                             "(no personal data is ever sent)")
    usage.add_argument("--since", help="first day, YYYY-MM-DD")
    return {"hub": cmd_hub}


def cmd_hub(args: argparse.Namespace, config) -> int:
    action = args.hub_command
    hub = open_hub(config)
    if action == "serve":
        return _serve(args, config, hub)
    if action == "add-hotspot":
        try:
            key = PublicKey.load(args.public_key)
        except OSError as exc:
            raise BadRequest("Cannot read %(path)s: %(reason)s", path=str(args.public_key),
                             reason=exc.strerror or str(exc)) from None
        hotspot, token = hub.registry.add_hotspot(args.name, key, new_token=args.new_token)
        print(f"Registered hotspot {hotspot.name} ({hotspot.id}).\n"
              f"Its token (shown once; put it in the hotspot's sync.token_file):\n{token}\n"
              f"The hub's receipt key (the hotspot's sync.hub_key_file):\n"
              f"{hub.hub_key.public_key().to_text()}", end="")
    elif action == "hotspots":
        for hotspot in hub.registry.hotspots():
            print(f"{hotspot.id}  {hotspot.added}  {hotspot.name}")
    elif action == "remove-hotspot":
        hub.registry.remove_hotspot(args.id)
        print(f"Removed hotspot {args.id}; its token no longer works.")
    elif action == "add-staff":
        if args.password_stdin or not sys.stdin.isatty():
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("Password (10 characters or more): ")
            if getpass.getpass("Again: ") != password:
                raise BadRequest("The two passwords differ.")
        hub.registry.set_staff_password(args.name, password)
        print(f"Staff login {args.name} is ready.")
    elif action == "ingest":
        for result in hub.inbox.ingest_folder(args.dir, hub.registry):
            print(f"{result['bundle']}: {result['stored']} stored, {result['already had it']} "
                  f"already here; receipts written to {result['receipts_file']}")
    elif action == "publish":
        entry = hub.shelf.publish(args.pack)
        print(f"Published {entry['name']} (library {entry['library']} version "
              f"{entry['version']}, {entry['kind']}, {entry['size']} bytes).")
    elif action == "packs":
        for entry in hub.shelf.listing():
            print(f"{entry['library']}  {entry['version']:>4}  {entry['kind']:<5}  "
                  f"{entry['name']}")
    elif action == "export":
        identities = load_identities(args.identity or config.hub.identity_file or None)
        count = hub.inbox.export(identities, args.dest, args.format)
        print(f"Wrote {count} contributions to {args.dest} "
              f"(contributions.{args.format}, attachments/).")
    elif action == "usage":
        print(json.dumps(hub.usage.totals(args.since), indent=2, sort_keys=True))
    else:
        print(hub.hub_key.public_key().to_text(), end="")
    return 0


def _serve(args, config, hub) -> int:
    import waitress

    from hotspot.server import serve_until_stopped, setup_logging

    from .web import create_hub_app

    setup_logging(config.server.log_level)
    identities = None
    if not args.no_identity:
        path = args.identity or config.hub.identity_file or None
        if path or sys.stdin.isatty():
            identities = load_identities(path)
    secret_path = hub.storage.root / "keys" / "session.secret"
    if not secret_path.exists():
        from hotspot.contributions import _write_atomically
        _write_atomically(secret_path, os.urandom(32), mode=0o600)
    app = create_hub_app(hub, identities, session_secret=secret_path.read_bytes())
    host = args.host or config.hub.host
    port = config.hub.port if args.port is None else args.port
    server = waitress.create_server(
        app, host=host, port=port, threads=config.hub.threads, ident="hotspot-hub",
        max_request_body_size=config.hub.max_chunk_mb * MB, expose_tracebacks=False,
        clear_untrusted_proxy_headers=True, channel_timeout=120)
    shown = f"[{host}]" if ":" in host else host
    print(f"Hub ready at http://{shown}:{server.effective_port}/", flush=True)
    serve_until_stopped(server)
    return 0

