"""Work kept off the event loop: WAL checkpoints of the embedded SQLite file run on a thread of
their own, and what startup built is frozen out of full garbage collections."""

import asyncio
import sqlite3
import threading
from pathlib import Path

from litestar.testing import AsyncTestClient

from convocore.adapters.sql.engine import WalCheckpointer, configure_sqlite
from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings

THREAD = "convocore-wal-checkpoints"


def checkpointers() -> set[threading.Thread]:  # other tests' apps may be running too
    return {t for t in threading.enumerate() if t.name == THREAD}


async def test_committed_pages_reach_the_database_file_without_a_checkpoint_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    connection = sqlite3.connect(path, isolation_level=None)
    configure_sqlite(connection, 5000)  # as the serving connection is
    try:
        connection.execute("CREATE TABLE t (body TEXT)")
        empty = path.stat().st_size
        connection.execute("BEGIN")
        for _ in range(200):  # ~200 pages: well under wal_autocheckpoint
            connection.execute("INSERT INTO t VALUES (?)", ("x" * 3000,))
        connection.execute("COMMIT")
        assert path.stat().st_size == empty  # committed, and only in the WAL: nothing copied it
        before = checkpointers()
        checkpointer = WalCheckpointer(str(path), interval_s=0.05)
        checkpointer.start()
        try:
            ours = checkpointers() - before
            for _ in range(200):  # bounded: 10 s at most
                if path.stat().st_size > 200 * 3000:
                    break
                await asyncio.sleep(0.05)
            assert path.stat().st_size > 200 * 3000  # copied by the thread
            assert checkpointer.runs > 0
        finally:
            checkpointer.stop()
        assert len(ours) == 1 and not any(t.is_alive() for t in ours)  # stopping ended it
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (200,)
    finally:
        connection.close()


async def test_no_thread_for_an_in_memory_database() -> None:
    before = checkpointers()
    app = create_app(Settings(database_url="sqlite://", argon2_time_cost=1, argon2_memory_cost=1024))
    async with AsyncTestClient(app) as client:
        assert (await client.get("/health")).status_code == 200
        assert checkpointers() - before == set()


async def test_the_app_checkpoints_its_sqlite_file_for_as_long_as_it_runs(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path}/chat.db", argon2_time_cost=1, argon2_memory_cost=1024)
    )

    before = checkpointers()
    async with AsyncTestClient(app) as client:
        assert (await client.get("/health")).status_code == 200
        ours = checkpointers() - before
        assert len(ours) == 1
    assert not any(t.is_alive() for t in ours)


def test_serve_keeps_full_collections_rare_and_short() -> None:
    import gc

    from convocore.entrypoints.cli import tune_garbage_collection

    before, threshold = gc.get_freeze_count(), gc.get_threshold()
    try:
        tune_garbage_collection()
        assert gc.get_freeze_count() > before  # startup's objects are left out of full collections
        assert gc.get_threshold()[2] == 100
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
