"""The six workloads of the suite, each on fresh servers in a fresh directory. The orchestrator
(this process) starts and stops the servers; a separate load-generator process drives them."""

import asyncio
import signal
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import client, harness
from benchmarks.seed import seed_history

# The ceiling's relays, run one after the other in every shape: the first is the ceiling (the
# fastest relay written here) that ratios and targets use; the others are reported beside it
# (benchmarks/relay.py). "websockets", the per-frame relay, is run beside it for comparison.
RELAYS = ("coalesced", "websockets")
SEND_LIMIT_OFF = {"CONVOCORE_SEND_LIMIT": "1000000"}


@dataclass(frozen=True, slots=True)
class Sizes:
    rest_clients: int
    rest_users_per_client: int
    rest_seconds: float
    shapes: tuple[tuple[int, int], ...]
    fan_start: float  # deliveries/s of the first step
    fan_seconds: float
    fan_drain_s: float
    fan_steps: int
    fan_resolution: float  # the ladder bisects until its failed and passed rates are this close
    history_depth: int
    history_requests: int
    history_users: int
    history_posts: int  # one at a time, into the deep conversation; under history_users x 20 (the send limit)
    idle_sockets: int
    idle_users: int
    idle_group: int
    reference_repeats: int  # scale-out: steps at one same rate for 1 and 2 processes


# The full ladders bisect to 10% (30% until 2026-12-01: 100x10 passed 40,000 asked, read 39,948,
# and the next step tried was 47,568, so a run could not say which side of its target it was on).
FULL = Sizes(64, 32, 5.0, ((10, 100), (100, 10)), 5000, 4.0, 3.0, 13, 1.1, 1_000_050, 1000, 16, 220, 5000, 1000, 10, 3)
# The quick run's REST clients rotate over 48 users each: 4 x 48 x 20 sends per 10 s is 3,840,
# more than the fastest machine seen posts in its 0.3 s (about 1,700 with 4 clients), so no send
# meets the person-sized limit (16 users each did, there: 429s).
QUICK = Sizes(4, 48, 0.3, ((3, 4),), 120, 0.3, 1.0, 2, 1.3, 2_050, 30, 4, 20, 40, 10, 5, 1)


def _prefix() -> str:
    return f"b{uuid.uuid4().hex[:6]}_"


def _send_limit_env(rooms: int, members: int) -> tuple[dict[str, str], list[str]]:
    """A person may send 20 messages per 10 s. Ten-member rooms need more than that per person
    to reach the fan-out target, so that shape alone runs with the budget raised (the limiter
    still runs on every send)."""
    if members >= 100:
        return {}, []
    return SEND_LIMIT_OFF, ["CONVOCORE_SEND_LIMIT=1000000 (small rooms need > 2 msgs/s per person to reach the target)"]


# -- 1. REST send -------------------------------------------------------------------------------


def rest_job(sizes: Sizes, server: harness.Server) -> dict[str, Any]:
    return {
        "kind": "rest",
        "base_url": server.http_url,
        "clients": sizes.rest_clients,
        "users_per_client": sizes.rest_users_per_client,
        "seconds": sizes.rest_seconds,
        "prefix": _prefix(),
    }


def rest(sizes: Sizes) -> dict[str, Any]:
    """The default (``synchronous=full``: the WAL synced before each acknowledgement), then the
    faster setting (``normal``), so the run shows what durability against a power cut costs."""
    result = _rest_on(sizes, {})
    result["storage"] = "SQLite file (default: synchronous=full), 1 process"
    normal = _rest_on(sizes, {"CONVOCORE_SQLITE_SYNCHRONOUS": "normal"})
    result["synchronous_normal"] = {**normal, "storage": "SQLite file, CONVOCORE_SQLITE_SYNCHRONOUS=normal"}
    return result


def _rest_on(sizes: Sizes, env: dict[str, str]) -> dict[str, Any]:
    with harness.workdir() as work:
        server = harness.convocore("convocore-rest", work, env=env)
        try:
            job = rest_job(sizes, server)
            result = harness.run_loadgen(job, work, timeout=300)
            server.stop(signal.SIGKILL)  # a crash right after the run: what was acknowledged must be on disk
            result["durable"] = _durable(work / "convocore.db", result.pop("acked_per_conversation"))
        finally:
            server.stop()
    return result


def _durable(db: Path, acked: dict[str, int]) -> dict[str, Any]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        stored = dict(connection.execute("SELECT conversation_id, count(*) FROM messages GROUP BY conversation_id"))
    finally:
        connection.close()
    missing = sum(max(n - stored.get(cid, 0), 0) for cid, n in acked.items())
    return {"acked": sum(acked.values()), "stored_after_kill": sum(stored.values()), "missing": missing}


# -- 2, 5, 6. fan-out ---------------------------------------------------------------------------


def _fanout_job(sizes: Sizes, rooms: int, members: int, servers: list[harness.Server], relay: bool) -> dict[str, Any]:
    return {
        "kind": "fanout",
        "http_url": servers[0].http_url,
        "ws_urls": [s.ws_url for s in servers],
        "server_pids": [s.pid for s in servers],
        "rooms": rooms,
        "members": members,
        "relay": relay,
        "start_deliveries_per_s": sizes.fan_start,
        "seconds": sizes.fan_seconds,
        "drain_s": sizes.fan_drain_s,
        "max_steps": sizes.fan_steps,
        "resolution": sizes.fan_resolution,
        "prefix": _prefix(),
    }


def fanout(sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rooms, members in sizes.shapes:
        env, changed = _send_limit_env(rooms, members)
        with harness.workdir() as work:
            server = harness.convocore("convocore-fanout", work, env=env)
            try:
                result = harness.run_loadgen(_fanout_job(sizes, rooms, members, [server], False), work, timeout=900)
            finally:
                server.stop()
        out[f"{rooms}x{members}"] = {**result, "storage": "SQLite file (default), 1 process", "changed": changed}
    return out


def ceiling(sizes: Sizes, impls: tuple[str, ...] = RELAYS) -> dict[str, Any]:
    """Per shape, the first relay's result, with the others' under ``also``."""
    out: dict[str, Any] = {}
    for rooms, members in sizes.shapes:
        found: dict[str, Any] = {}
        for impl in impls:
            with harness.workdir() as work:
                server = harness.relay(impl, work)
                try:
                    job = _fanout_job(sizes, rooms, members, [server], True)
                    found[impl] = {**harness.run_loadgen(job, work, timeout=900), "relay": impl}
                finally:
                    server.stop()
        first, *others = impls
        out[f"{rooms}x{members}"] = {**found[first], "also": {impl: found[impl] for impl in others}}
    return out


def scaleout(sizes: Sizes) -> dict[str, Any]:
    """The same fan-out on one PostgreSQL database: 1 process alone, then 2 processes + Redis."""
    out: dict[str, Any] = {}
    for rooms, members in sizes.shapes:
        env, changed = _send_limit_env(rooms, members)
        shape: dict[str, Any] = {"changed": changed}
        for label, processes in (("one", 1), ("two", 2)):
            with harness.workdir() as work, harness.postgres_database() as database_url:
                servers: list[harness.Server] = []
                extra = {**env, "CONVOCORE_REDIS_PREFIX": f"convocore-bench-{uuid.uuid4().hex[:10]}"}
                args = ["--database-url", database_url]
                if processes > 1:
                    args += ["--redis-url", harness.REDIS_URL]
                try:
                    for n in range(processes):  # the first brings the new database's schema up to date
                        migrate = {"CONVOCORE_MIGRATE": "1"} if n == 0 else {}
                        servers.append(
                            harness.convocore(f"convocore-{label}-{n}", work, *args, env={**extra, **migrate})
                        )
                    job = {
                        **_fanout_job(sizes, rooms, members, servers, False),
                        "reference_rate": sizes.fan_start / 5,
                        "reference_repeats": sizes.reference_repeats,
                    }
                    shape[label] = harness.run_loadgen(job, work, timeout=900)
                finally:
                    harness.stop_all(servers)  # type: ignore[arg-type]
        shape["storage"] = "PostgreSQL; 'two' adds Redis between the processes"
        out[f"{rooms}x{members}"] = shape
    return out


# -- 3. history ---------------------------------------------------------------------------------


def history(sizes: Sizes) -> dict[str, Any]:
    with harness.workdir() as work:
        setup = harness.convocore("convocore-history-setup", work)
        try:
            users, cid = asyncio.run(_history_setup(setup.http_url, sizes.history_users))
        finally:
            setup.stop()
        started = time.perf_counter()
        seed_history(
            work / "convocore.db", conversation_id=cid, sender_ids=[u.id for u in users], count=sizes.history_depth
        )
        seeded_s = time.perf_counter() - started
        server = harness.convocore("convocore-history", work)
        try:
            job = {
                "kind": "history",
                "base_url": server.http_url,
                "conversation_id": cid,
                "tokens": [u.token for u in users],
                "depth": sizes.history_depth,
                "requests": sizes.history_requests,
                "warmup": max(10, sizes.history_requests // 10),
                "posts": sizes.history_posts,
            }
            result = harness.run_loadgen(job, work, timeout=600)
        finally:
            server.stop()
    return {**result, "users": len(users), "seeded_in_s": round(seeded_s, 1), "storage": "SQLite file (default)"}


async def _history_setup(base_url: str, users: int) -> tuple[list[client.Account], str]:
    accounts = await client.accounts(base_url, users, prefix=_prefix())
    [cid] = await client.groups(base_url, [accounts], title="history")
    return accounts, cid


# -- 4. idle connections ------------------------------------------------------------------------


def connections(sizes: Sizes) -> dict[str, Any]:
    with harness.workdir() as work:
        server = harness.convocore("convocore-connections", work)
        try:
            job = {
                "kind": "connections",
                "base_url": server.http_url,
                "ws_url": server.ws_url,
                "server_pid": server.pid,
                "sockets": sizes.idle_sockets,
                "users": sizes.idle_users,
                "group_size": sizes.idle_group,
                "prefix": _prefix(),
            }
            result = harness.run_loadgen(job, work, timeout=600)
        finally:
            server.stop()
    return {**result, "socket": "user socket /ws/ (follows the user's one group)", "storage": "SQLite file (default)"}


WORKLOADS = {
    "rest": rest,
    "fanout": fanout,
    "history": history,
    "connections": connections,
    "scaleout": scaleout,
    "ceiling": ceiling,
}
