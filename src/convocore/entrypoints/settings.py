"""Run-time settings, from CONVOCORE_* environment variables, overridable by the command line."""

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./convocore.db"


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    memory: bool = False
    migrate: bool = False  # upgrade the schema on start; SQLite always does (see app.storage)
    log_format: str = "text"  # or "json": one object per line
    redis_url: str | None = None
    redis_prefix: str = "convocore"  # channel and key prefix, so deployments can share a Redis
    access_ttl_s: int = 3600
    refresh_ttl_s: int = 30 * 24 * 3600
    auth_cache_s: float = 5.0  # how long an accepted access token skips the session read (0: off)
    argon2_time_cost: int | None = None
    argon2_memory_cost: int | None = None
    max_request_bytes: int = 64 * 1024
    max_connections: int = 10_000  # HTTP and WebSocket, per process; past it new ones get 503
    http_header_timeout_s: float = 20.0  # a request head must arrive within this of its start
    http_body_timeout_s: float = 20.0  # a body within this of its head, plus a second per ...
    http_body_min_rate: int = 500  # ... this many bytes received
    ws_max_frame_bytes: int = 16 * 1024
    ws_send_queue: int = 1024
    ws_max_sockets_per_user: int = 16  # live sockets a person may hold on one process
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    resync_limit: int = 500
    typing_burst: int = 5
    typing_window_s: float = 5.0
    send_limit: int = 20  # messages per user per send_window_s, REST and sockets together
    send_window_s: float = 10.0
    auth_rate_per_minute: int = 20  # register, login and token refresh, per client IP
    http_rate_per_minute: int = 1200  # any authenticated HTTP request, per access token
    sqlite_busy_timeout_ms: int = 5000
    sqlite_synchronous: str = "full"  # or "normal": survives a killed process, not a power cut
    presence_ttl_s: int = 30
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    # The uvicorn accelerator (uvicorn_sockets.py): a lighter WebSocket protocol, and frames
    # written straight to its transport; off, uvicorn's own protocol and the ASGI send.
    accelerate: bool = True

    @property
    def storage(self) -> str:
        return "memory" if self.memory else "sql"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then CONVOCORE_<NAME> variables, then explicit (non-None) overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CONVOCORE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.type, raw)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def _parse(kind: Any, raw: str) -> Any:
    text = str(kind)
    if text.startswith("bool") or kind is bool:
        return _env_bool(raw)
    if text.startswith("int") or kind is int:
        return int(raw)
    if text.startswith("float") or kind is float:
        return float(raw)
    if text.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
