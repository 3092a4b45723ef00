"""`convocore serve`: run the server, by default on a SQLite file in the working directory."""

import argparse
import logging
import sys

from convocore import __version__
from convocore.entrypoints.settings import Settings


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
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from convocore.entrypoints.app import create_app

    settings = Settings.from_env(
        host=args.host, port=args.port, database_url=args.database_url, memory=args.memory, redis_url=args.redis_url
    )
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    where = "memory (nothing persisted)" if settings.memory else settings.database_url
    live = f"Redis at {settings.redis_url}" if settings.redis_url else "this process only"
    logging.getLogger("convocore").info("convocore %s storing in %s; live delivery: %s", __version__, where, live)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        proxy_headers=False,
        ws_ping_interval=settings.ws_ping_interval_s,  # the server pings; a peer that stops answering is closed
        ws_ping_timeout=settings.ws_ping_timeout_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
