"""Soak: many sockets, many conversations, a steady rate, for minutes; nothing lost,
duplicated or reordered, and server memory that stays flat.

    python scripts/soak.py [--sockets 1000] [--conversations 100] [--rate 100] [--minutes 5]
        [--database-url URL] [--redis-url URL]

Starts its own `convocore serve` (SQLite in a temporary directory unless told otherwise) with
the default limits, except account creation (the script registers every user from one
address) and argon2 costs (set low so setup takes seconds; login is not what is soaked).
Each conversation has sockets/conversations members, each with one open per-conversation
socket; senders rotate through the members, so each user sends well inside the default
per-user budget. Prints a JSON summary; exits 1 if any message was lost, duplicated or
reordered.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _register(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    r = await http.post("/api/register/", json={"username": name, "password": "soak-password"})
    r.raise_for_status()
    r = await http.post("/api/login/", json={"username": name, "password": "soak-password"})
    r.raise_for_status()
    body = r.json()
    return body["user"]["id"], body["access_token"]


class Receiver:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.errors = 0

    def check(self) -> dict[str, int]:
        expected = list(range(self.seqs[0], self.seqs[0] + len(self.seqs))) if self.seqs else []
        return {
            "received": len(self.seqs),
            "duplicated": len(self.seqs) - len(set(self.seqs)),
            "out_of_order": sum(1 for a, b in itertools.pairwise(self.seqs) if b <= a),
            "gaps": 0 if self.seqs == expected else len(set(expected) - set(self.seqs)),
        }


async def _listen(url: str, receiver: Receiver, stop: asyncio.Event) -> None:
    async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 1)
            except TimeoutError:
                continue
            frame = json.loads(raw)
            if frame["type"] == "message.created":
                receiver.seqs.append(frame["message"]["seq"])


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    members = args.sockets // args.conversations
    workdir = Path(tempfile.mkdtemp(prefix="convocore-soak-"))
    port = _free_port()
    env = {
        **os.environ,
        "CONVOCORE_AUTH_RATE_PER_MINUTE": "1000000",
        "CONVOCORE_ARGON2_TIME_COST": "1",
        "CONVOCORE_ARGON2_MEMORY_COST": "1024",
    }
    command = [
        sys.executable,
        "-m",
        "convocore.entrypoints.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if args.database_url:
        command += ["--database-url", args.database_url]
    if args.redis_url:
        command += ["--redis-url", args.redis_url]
    log = (workdir / "server.log").open("wb")
    # Started once, before any traffic: blocking here costs nothing.
    server = subprocess.Popen(  # noqa: ASYNC220
        command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_raise_fd_limit
    )
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=50)) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            users = await asyncio.gather(*(_register(http, f"soak{i}") for i in range(members * args.conversations)))
            rooms: list[tuple[str, list[tuple[str, str]]]] = []
            for c in range(args.conversations):
                people = users[c * members : (c + 1) * members]
                owner_token = people[0][1]
                r = await http.post(
                    "/api/conversations/",
                    json={"kind": "group", "title": f"soak {c}", "members": [uid for uid, _ in people[1:]]},
                    headers={"Authorization": f"Bearer {owner_token}"},
                )
                r.raise_for_status()
                rooms.append((r.json()["id"], people))
            receivers: list[tuple[str, Receiver]] = []
            listeners = []
            for cid, people in rooms:
                for _, token in people:
                    receiver = Receiver()
                    receivers.append((cid, receiver))
                    url = f"ws://127.0.0.1:{port}/ws/chat/{cid}/?token={token}"
                    listeners.append(asyncio.create_task(_listen(url, receiver, stop)))
            await asyncio.sleep(3)  # every socket connected and following
            rss = [(_rss_kib(server.pid), 0.0)]
            sent: dict[str, int] = {cid: 0 for cid, _ in rooms}
            failures = 0
            started = time.monotonic()
            deadline = started + args.minutes * 60
            interval = 1 / args.rate
            turn = 0
            next_sample = started + 10
            while time.monotonic() < deadline:
                tick = time.monotonic()
                cid, people = rooms[turn % len(rooms)]
                _, token = people[(turn // len(rooms)) % len(people)]
                turn += 1
                r = await http.post(
                    "/api/messages/",
                    json={"conversation_id": cid, "body": f"soak {turn}", "client_id": f"s{turn}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if r.status_code == 201:
                    sent[cid] += 1
                else:
                    failures += 1
                if tick >= next_sample:
                    rss.append((_rss_kib(server.pid), round(tick - started, 1)))
                    next_sample += 10
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
            await asyncio.sleep(3)  # let the last frames arrive
            rss.append((_rss_kib(server.pid), round(time.monotonic() - started, 1)))
            stop.set()
            await asyncio.gather(*listeners, return_exceptions=True)
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=20)
    totals = {"received": 0, "duplicated": 0, "out_of_order": 0, "gaps": 0}
    lost = 0
    for cid, receiver in receivers:
        result = receiver.check()
        for key in totals:
            totals[key] += result[key]
        lost += sent[cid] - result["received"]
    after_warmup = rss[1][0] if len(rss) > 1 else rss[0][0]
    return {
        "sockets": len(receivers),
        "conversations": len(rooms),
        "minutes": args.minutes,
        "rate_msgs_per_s": args.rate,
        "sent": sum(sent.values()),
        "send_failures": failures,
        "deliveries_expected": sum(sent[cid] for cid, _ in receivers),
        **totals,
        "lost": lost,
        "rss_kib": {"start": rss[0][0], "after_10s": after_warmup, "end": rss[-1][0], "max": max(r for r, _ in rss)},
        "rss_growth_after_warmup_pct": round(100 * (rss[-1][0] - after_warmup) / after_warmup, 1),
        "rss_samples": rss,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100, help="messages per second, all conversations together")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    _raise_fd_limit()
    result = asyncio.run(soak(args))
    print(json.dumps(result, indent=2))
    bad = result["lost"] or result["duplicated"] or result["out_of_order"] or result["gaps"] or result["send_failures"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
