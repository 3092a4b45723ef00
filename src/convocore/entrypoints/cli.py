"""`convocore serve`: run the server, by default on a SQLite file in the working directory.
`convocore migrate`: bring a database's schema up to this version's."""

import argparse
import gc
import logging
import sys
from typing import TYPE_CHECKING

from convocore import __version__
from convocore.entrypoints.logs import configure_logging
from convocore.entrypoints.settings import Settings

if TYPE_CHECKING:  # the CLI imports the app (and Litestar) only for the command that runs it
    from litestar import Litestar


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convocore", description="Convocore chat server")
    parser.add_argument("--version", action="version", version=f"convocore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP and WebSocket server")
    serve.add_argument("--host", help="interface to bind (CONVOCORE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (CONVOCORE_PORT, default 8000)")
    serve.add_argument(
        "--database-url",
        help="SQLAlchemy URL: sqlite+aiosqlite:///file.db or postgresql+asyncpg://... "
        "(CONVOCORE_DATABASE_URL, default sqlite+aiosqlite:///./convocore.db)",
    )
    serve.add_argument(
        "--redis-url",
        help="Redis for live delivery across processes, e.g. redis://127.0.0.1:6379/0 (CONVOCORE_REDIS_URL); "
        "without it, delivery stays in this process",
    )
    serve.add_argument(
        "--memory",
        action="store_const",
        const=True,
        help="keep everything in memory, nothing persisted (CONVOCORE_MEMORY=1)",
    )
    serve.add_argument(
        "--migrate",
        action="store_const",
        const=True,
        help="upgrade the database schema before serving (CONVOCORE_MIGRATE=1); SQLite always is",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="log lines as text or JSON (CONVOCORE_LOG_FORMAT, default text)"
    )
    migrate = commands.add_parser("migrate", help="upgrade the database schema to this version's, then exit")
    migrate.add_argument("--database-url", help="the database to upgrade (CONVOCORE_DATABASE_URL, default as serve)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "migrate":
        return migrate(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from convocore.entrypoints.read_deadlines import Deadlines, ReadDeadlines
    from convocore.entrypoints.uvicorn_sockets import serving_protocol

    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        database_url=args.database_url,
        memory=args.memory,
        redis_url=args.redis_url,
        migrate=args.migrate,
        log_format=args.log_format,
    )
    configure_logging(level=args.log_level, log_format=settings.log_format)
    where = "memory (nothing persisted)" if settings.memory else _shown(settings.database_url)
    live = f"Redis at {settings.redis_url}" if settings.redis_url else "this process only"
    log = logging.getLogger("convocore")
    log.info("convocore %s storing in %s; live delivery: %s", __version__, where, live)
    deadlines = Deadlines(settings.http_header_timeout_s, settings.http_body_timeout_s, settings.http_body_min_rate)
    uvicorn.run(
        served_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=None,  # configure_logging did it, for uvicorn's loggers too
        proxy_headers=False,
        # uvicorn's own HTTP protocol (httptools, or h11 without it), behind read deadlines.
        http=ReadDeadlines.around(AutoHTTPProtocol, deadlines),
        # Connections (HTTP and WebSocket) past the cap are answered 503 rather than accepted
        # until the process runs out of file descriptors.
        limit_concurrency=connection_cap(settings.max_connections),
        # uvicorn's websockets sans-I/O protocol, or the accelerator's lighter subclass of it.
        ws=serving_protocol(enabled=settings.accelerate),
        ws_ping_interval=settings.ws_ping_interval_s,  # the server pings; a peer that stops answering is closed
        ws_ping_timeout=settings.ws_ping_timeout_s,
        # Frames past our own limit get an error frame; far past it (64x) the server closes the
        # socket with 1009 rather than reading megabytes first.
        ws_max_size=settings.ws_max_frame_bytes * 64,
        # No permessage-deflate: compressing would be done per socket for every frame (and hold
        # a compressor per socket), where a frame is encoded once for all.
        ws_per_message_deflate=False,
    )
    return 0


def connection_cap(wanted: int) -> int:
    """The connection cap this process can honour: the soft file-descriptor limit is raised to
    fit ``wanted`` connections and some room for the database, logs and Redis (up to the hard
    limit); where the hard limit is lower, the cap is lowered to fit, with a warning."""
    import resource

    room = 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + room
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft != resource.RLIM_INFINITY and soft < needed:
        fitted = max(soft - room, 1)
        logging.getLogger("convocore").warning(
            "max_connections %d lowered to %d: the file-descriptor limit is %d", wanted, fitted, soft
        )
        return fitted
    return wanted


def served_app(settings: Settings) -> "Litestar":
    """The app as ``serve`` runs it: ``create_app``, then the collector tuned once it has started."""
    from convocore.entrypoints.app import create_app

    app = create_app(settings)
    app.on_startup.append(tune_garbage_collection)  # after the lifespan's storage and realtime parts
    return app


def tune_garbage_collection() -> None:
    """Make CPython's full garbage collections rare and short in the serving process: a full
    collection stops the loop while it walks every tracked object. What startup built (modules,
    the app, compiled statements) lives as long as the process, so it is frozen out of them;
    and a full collection is considered after 100 middle-generation ones instead of 10 (what is
    left is mostly the live sockets, long-lived by nature). Done by ``serve``, which owns the
    process, not by ``create_app``: an embedding host's collector is its own business."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def migrate(args: argparse.Namespace) -> int:
    import asyncio

    from convocore.entrypoints.container import MigrationFailed, migrate_database

    settings = Settings.from_env(database_url=args.database_url)
    configure_logging(level="warning", log_format=settings.log_format)
    try:
        before, after = asyncio.run(migrate_database(settings.database_url))
    except MigrationFailed as error:
        print(f"convocore migrate: {_shown(settings.database_url)}: {error}", file=sys.stderr)
        return 1
    change = f"upgraded from {before or 'an empty database'} to {after}" if before != after else f"already at {after}"
    print(f"{_shown(settings.database_url)}: {change}")
    return 0


def _shown(url: str) -> str:
    """The URL without its password, for logs and messages."""
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
