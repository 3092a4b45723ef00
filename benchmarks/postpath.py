"""The storage path alone, in process: CPU per posted message and per history page through the
use cases and the SQL adapter, with no HTTP and no sockets.

    python -m benchmarks.postpath [--posts 3000] [--database postgres]

Posts go into 64 two-member groups, one at a time, then 64 at once (one task per group); then
1,000 history pages of 50 alternate between the newest end and seq 20. CPU is this process's
(user + system), per operation. The one-at-a-time posts also report their wall time's tail: a
post that waits on the disk (a WAL checkpoint, the WAL growing) shows there. The storage starts
as the server's does (a SQLite file's WAL checkpointed from a thread). ``--database postgres``
runs the same on a new database on the machine's PostgreSQL, dropped afterwards.
"""

import argparse
import asyncio
import contextlib
import resource
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from convocore.adapters.argon2_hasher import Argon2PasswordHasher
from convocore.adapters.memory import InProcessBroadcaster
from convocore.adapters.sql.storage import open_storage
from convocore.adapters.system import SystemClock, UuidGenerator
from convocore.application.accounts import RegisterUser
from convocore.application.conversations import StartConversation
from convocore.application.messages import ListMessages, PostMessage
from convocore.domain.conversations import Kind

GROUPS = 64
_TAIL = (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(posts: int, *, database_url: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="convocore-postpath-") as work:
        uow = open_storage(database_url or f"sqlite:///{Path(work) / 'postpath.db'}", migrate=True)
        await uow.start()
        try:
            clock, ids, bus = SystemClock(), UuidGenerator(), InProcessBroadcaster()
            hasher = Argon2PasswordHasher(time_cost=1, memory_cost=1024)
            register = RegisterUser(uow=uow, hasher=hasher, ids=ids, clock=clock)
            users = [await register.execute(username=f"user{i}", password="correct horse") for i in range(2 * GROUPS)]
            start = StartConversation(uow=uow, broadcaster=bus, ids=ids, clock=clock)
            groups = []
            for i in range(GROUPS):
                owner, other = users[2 * i], users[2 * i + 1]
                detail, _ = await start.execute(user_id=owner.id, kind=Kind.GROUP, members=[other.id], title=f"g{i}")
                groups.append(detail.conversation.id)
            post = PostMessage(uow=uow, broadcaster=bus, ids=ids, clock=clock)  # no limiter: storage only
            pages = ListMessages(uow=uow)

            walls: list[float] = []

            async def sender(group: int, count: int) -> None:
                for j in range(count):
                    sender_id = users[2 * group + (j & 1)].id
                    began = time.perf_counter()
                    await post.execute(user_id=sender_id, conversation_id=groups[group], body="x" * 100)
                    walls.append(time.perf_counter() - began)

            for label, concurrent in (("one at a time", 1), (f"{GROUPS} at once", GROUPS)):
                each = posts // concurrent
                started, cpu = time.perf_counter(), _cpu()
                await asyncio.gather(*(sender(g, each) for g in range(concurrent)))
                wall, used = time.perf_counter() - started, _cpu() - cpu
                done = each * concurrent
                print(f"post, {label:13s}: {done / wall:7.0f}/s  {used / done * 1e6:6.0f} us CPU each")
                if concurrent == 1:
                    walls.sort()
                    tail = "  ".join(f"{q} {walls[int(len(walls) * f)] * 1e3:.2f}" for q, f in _TAIL)
                    slow = sum(w > 0.005 for w in walls)
                    print(f"  wall per post, ms: {tail}  max {walls[-1] * 1e3:.1f}; over 5 ms: {slow}")
            started, cpu = time.perf_counter(), _cpu()
            for j in range(1000):
                before = None if j & 1 else 20
                await pages.execute(user_id=users[0].id, conversation_id=groups[0], before=before, limit=50)
            wall, used = time.perf_counter() - started, _cpu() - cpu
            print(f"history page of 50:   {1000 / wall:7.0f}/s  {used / 1000 * 1e6:6.0f} us CPU each")
        finally:
            await uow.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.postpath", description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(harness.postgres_database()) if args.database == "postgres" else None
        asyncio.run(run(args.posts, database_url=url))


if __name__ == "__main__":
    main()
