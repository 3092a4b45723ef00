"""Acknowledged means on disk: for every message answered 201 (or acked by frame on a socket),
SQLite synced the write-ahead log (fdatasync) after writing the message to it and before the
answer was written to the socket.
Seen by tracing the real server's system calls (strace), on its default SQLite file."""

import asyncio
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.support.remote import Remote, next_frame
from tests.support.server import ServerProcess

_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)$")
_UNFINISHED = " <unfinished ...>"
_ACK = '{\\"type\\":\\"ack\\"'  # an ack frame's JSON, as strace shows a write's bytes
_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<call>\w+) resumed>(?P<rest>.*)$")


def _strace() -> str:
    found = shutil.which("strace")
    if found is None:
        if IN_CI:
            pytest.fail("strace is not installed (CI=true: apt-get install strace)")
        pytest.skip("strace is not installed (apt-get install strace)")
    return found


def _completed(trace: str) -> list[tuple[str, str]]:
    """(system call, its arguments and result) in the order they completed, across threads
    (strace splits a call another thread's interleaves into an unfinished and a resumed line)."""
    pending: dict[str, tuple[str, str]] = {}
    done: list[tuple[str, str]] = []
    for line in trace.splitlines():
        if resumed := _RESUMED.match(line):
            call, args = pending.pop(resumed["pid"], (resumed["call"], ""))
            done.append((call, args + resumed["rest"]))
        elif found := _LINE.match(line):
            if found["args"].endswith(_UNFINISHED):
                pending[found["pid"]] = (found["call"], found["args"].removesuffix(_UNFINISHED))
            else:
                done.append((found["call"], found["args"]))
    return done


def _ordering_faults(trace: str) -> tuple[int, list[str]]:
    """How many 201 answers the trace shows, and each one written while the message it
    acknowledges sat in the WAL unsynced."""
    wal_fds: set[str] = set()
    unsynced = False
    answers, faults = 0, []
    for call, args in _completed(trace):
        if call == "openat" and '-wal"' in args:
            wal_fds.add(args.rsplit("= ", 1)[-1].strip())
        elif call in ("pwrite64", "write") and args.split(",", 1)[0] in wal_fds:
            unsynced = True
        elif call in ("fdatasync", "fsync") and args.split(")", 1)[0] in wal_fds:
            unsynced = False
        elif call in ("write", "writev", "sendto") and ("HTTP/1.1 201" in args or _ACK in args):
            answers += args.count("HTTP/1.1 201") + args.count(_ACK)  # a socket's frames go out together
            if unsynced:
                faults.append(f"{call}({args}")
    return answers, faults


async def _post_messages(server: ServerProcess) -> None:
    remote = Remote(server.base_url, server.ws_url)
    try:
        people = [await remote.account() for _ in range(4)]
        cid = await remote.group(people[0], *people[1:])
        for n in range(10):  # one at a time
            await remote.send(people[n % 4], cid, f"alone {n}")
        await asyncio.gather(*(remote.send(people[n % 4], cid, f"together {n}") for n in range(8)))
        async with remote.socket(cid, people[1].token) as ws:  # and over a socket: acked by frame
            for n in range(6):
                await ws.send(json.dumps({"type": "message.send", "body": f"socket {n}", "client_id": f"s{n}"}))
            acks = 0
            while acks < 6:
                frame = await next_frame(ws, skip=("presence", "message.created"))
                assert frame["type"] == "ack", frame
                acks += 1
    finally:
        await remote.close()


@pytest.mark.parametrize(("synchronous", "durable"), [("full", True), ("normal", False)])
async def test_every_acknowledged_message_was_synced_before_its_answer(
    tmp_path: Path, synchronous: str, durable: bool
) -> None:
    trace_file = tmp_path / "server.trace"
    strace = (_strace(), "-f", "-qq", "-e", "trace=openat,write,writev,pwrite64,fdatasync,fsync,sendto", "-s", "4096")
    server = ServerProcess(
        env={"CONVOCORE_SQLITE_SYNCHRONOUS": synchronous}, cwd=tmp_path, under=(*strace, "-o", str(trace_file))
    )
    server.start()
    try:
        await _post_messages(server)
    finally:
        server.stop()
    answers, faults = _ordering_faults(trace_file.read_text())
    assert answers >= 18 + 6 + 4  # the 18 posts, 6 socket sends, and the sign-ups and the group
    if durable:
        assert faults == []
    else:  # the faster mode acknowledges before the sync: the check sees it
        assert faults
