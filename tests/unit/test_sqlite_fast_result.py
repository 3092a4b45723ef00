"""``sqlite_fast.Result.all()``: every row of a page with its datetime and boolean columns as the
column types read them, in order. The plan is the real one, compiled for SQLite; the records are
what ``sqlite3`` returns for the messages table's columns (text datetimes, 0/1 booleans)."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite

from convocore.adapters.sql import tables
from convocore.adapters.sql.rows import PAGE_COLUMNS
from convocore.adapters.sql.sqlite_fast import FastSqlite, Result

START = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
PARAMS = {"k_conversation_id": "c1"}
STATEMENT = select(*PAGE_COLUMNS).where(tables.messages.c.conversation_id == "c1")


def stored(n: int) -> tuple[object, ...]:
    """The n-th row as sqlite3 gives it: seq, id, sender_id, body, client_id, reply_to,
    created_at, edited_at, deleted."""
    created = (START + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f")
    edited = f"2026-12-02 00:00:{n % 60:02d}.000001" if n % 2 else None
    return (n, f"m{n}", "u1", f"body {n}", None, None, created, edited, int(n % 3 == 0))


def expected(n: int) -> list[object]:
    edited = datetime(2026, 12, 2, 0, 0, n % 60, 1, tzinfo=UTC) if n % 2 else None
    return [n, f"m{n}", "u1", f"body {n}", None, None, START + timedelta(seconds=n), edited, n % 3 == 0]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 51])
def test_each_row_comes_back_with_its_columns_read_as_their_types(count: int) -> None:
    plan = FastSqlite(sqlite.dialect()).plan(STATEMENT, PARAMS)
    assert plan is not None and plan.processed  # the datetimes and the boolean are processed
    rows = Result(plan, [stored(n) for n in range(count)], count).all()
    assert [list(row) for row in rows] == [expected(n) for n in range(count)]
    assert all(type(row[8]) is bool for row in rows)
