"""Work kept off the event loop: WAL checkpoints of the embedded SQLite file run on a thread of
their own, and what startup built is frozen out of full garbage collections."""

import asyncio
import threading
from pathlib import Path

from litestar.testing import AsyncTestClient
from sqlalchemy import text

from convocore.adapters.sql.unit_of_work import create_engine, wal_checkpoints
from convocore.entrypoints.app import create_app
from convocore.entrypoints.settings import Settings

THREAD = "convocore-wal-checkpoints"


async def test_committed_pages_reach_the_database_file_without_a_checkpoint_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (body TEXT)"))
        empty = path.stat().st_size
        async with engine.begin() as connection:  # ~200 pages: well under wal_autocheckpoint
            for _ in range(200):
                await connection.execute(text("INSERT INTO t VALUES (:b)"), {"b": "x" * 3000})
        assert path.stat().st_size == empty  # committed, and only in the WAL: nothing copied it
        with wal_checkpoints(engine, interval_s=0.05) as checkpointer:
            assert checkpointer is not None
            for _ in range(200):  # bounded: 10 s at most
                if path.stat().st_size > 200 * 3000:
                    break
                await asyncio.sleep(0.05)
            assert path.stat().st_size > 200 * 3000  # copied by the thread
            assert checkpointer.runs > 0
            thread = checkpointer._thread
        assert thread is not None and not thread.is_alive()  # the block ended it
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM t"))).scalar() == 200
    finally:
        await engine.dispose()


async def test_no_thread_for_an_in_memory_database() -> None:
    engine = create_engine("sqlite:///:memory:")
    try:
        with wal_checkpoints(engine) as checkpointer:
            assert checkpointer is None
    finally:
        await engine.dispose()


async def test_the_app_checkpoints_its_sqlite_file_for_as_long_as_it_runs(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path}/chat.db", argon2_time_cost=1, argon2_memory_cost=1024)
    )

    def checkpointers() -> set[threading.Thread]:  # other tests' apps may be running too
        return {t for t in threading.enumerate() if t.name == THREAD}

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
