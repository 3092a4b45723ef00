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
    # First, before anything imports sqlite3: process-wide SQLite settings (sqlite_threads.py).
    from convocore.adapters.sql.sqlite_threads import use_serving_mode

    sqlite_serving = use_serving_mode()
    import uvicorn

    from convocore.entrypoints.wsserver import WebSocketProtocol

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
    log.debug("SQLite in multi-thread mode, without memory statistics: %s", "yes" if sqlite_serving else "no")
    uvicorn.run(
        served_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=None,  # configure_logging did it, for uvicorn's loggers too
        proxy_headers=False,
        ws=WebSocketProtocol,  # uvicorn's default (websockets, sans-I/O), lighter per idle socket
        ws_ping_interval=settings.ws_ping_interval_s,  # the server pings; a peer that stops answering is closed
        ws_ping_timeout=settings.ws_ping_timeout_s,
        # Frames past our own limit get an error frame; far past it (64x) the server closes the
        # socket with 1009 rather than reading megabytes first.
        ws_max_size=settings.ws_max_frame_bytes * 64,
        # No permessage-deflate: compressing would be done per socket for every frame (and hold
        # a compressor per socket), where now a frame is encoded once for all (direct.py).
        ws_per_message_deflate=False,
    )
    return 0


def served_app(settings: Settings) -> "Litestar":
    """The app as ``serve`` runs it: ``create_app``, then the collector tuned once it has started.
    (``benchmarks.servers`` runs the same under another ASGI server.)"""
    from convocore.entrypoints.app import create_app

    app = create_app(settings)
    app.on_startup.append(tune_garbage_collection)  # after the lifespan's storage and realtime parts
    return app


def tune_garbage_collection() -> None:
    """Make CPython's full garbage collections rare and short in the serving process.

    A full collection walks every tracked object and stops the loop while it does. Two changes,
    measured with a fixed 3,000 deliveries/s 100x10 fan-out (docs/performance.md, lever 13):

    - What startup built (modules, the app, routes, compiled statements: ~125,000 objects) is
      frozen out of them: they live as long as the process, and walking them took ~110 ms of each
      collection on the benchmark machine. Frozen objects are still freed by reference counting;
      only a cycle among them would never be collected, and startup objects are not garbage.
    - A full collection is considered after 100 middle-generation ones instead of 10: what is
      left to walk is mostly the live sockets (~100 objects each), long-lived by nature, so
      walking them every ~25 s under load (100-140 ms at 1,000 sockets) found little garbage
      (~1,000 objects). Garbage that reaches the oldest generation now waits longer for it.

    Done by ``serve``, which owns the process, not by ``create_app``, which an embedding host
    may call in a process whose collector is its own business.
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


def migrate(args: argparse.Namespace) -> int:
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from convocore.adapters.sql import migrate as migrations
    from convocore.adapters.sql.unit_of_work import create_engine

    settings = Settings.from_env(database_url=args.database_url)
    configure_logging(level="warning", log_format=settings.log_format)

    async def upgrade() -> tuple[str | None, str | None]:
        engine = create_engine(settings.database_url)
        try:
            before = await migrations.upgrade(engine)
            return before, await migrations.current(engine)
        finally:
            await engine.dispose()

    try:
        before, after = asyncio.run(upgrade())
    except (migrations.SchemaError, SQLAlchemyError, OSError) as error:
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
