"""``statements``: a statement's plan, compiled by SQLAlchemy for the dialect, and the ``Result``
its rows come back as. Every row of a page with its datetime and boolean columns as the column
types read them, in order; rows by name, by ``Column`` and as attributes; parameters in the
order the SQL takes them, each converted as its type binds it; and a PostgreSQL command's row
count. The plans are the real ones; the records are what each driver returns for the messages
table's columns (``sqlite3``: text datetimes, 0/1 booleans; asyncpg: aware datetimes, booleans).
No database is involved."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Dialect

from convocore.adapters.sql import tables
from convocore.adapters.sql.rows import PAGE_COLUMNS
from convocore.adapters.sql.statements import Plans, Result, Row, rowcount_of

START = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
PARAMS = {"k_conversation_id": "c1"}
messages = tables.messages
ASYNCPG: Dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # what PostgresStorage compiles for
STATEMENT = select(*PAGE_COLUMNS).where(messages.c.conversation_id == bindparam("k_conversation_id"))


def stored(n: int) -> tuple[object, ...]:
    """The n-th row as sqlite3 gives it: seq, id, sender_id, body, client_id, reply_to,
    created_at, edited_at, deleted."""
    created = (START + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.%f")
    edited = f"2026-12-02 00:00:{n % 60:02d}.000001" if n % 2 else None
    return (n, f"m{n}", "u1", f"body {n}", None, None, created, edited, int(n % 3 == 0))


def fetched(n: int) -> tuple[object, ...]:
    """The n-th row as asyncpg gives it: aware datetimes (in the session's zone), booleans."""
    zone = timezone(timedelta(hours=2))
    edited = datetime(2026, 12, 2, 0, 0, n % 60, 1, tzinfo=UTC).astimezone(zone) if n % 2 else None
    return (
        n,
        f"m{n}",
        "u1",
        f"body {n}",
        None,
        None,
        (START + timedelta(seconds=n)).astimezone(zone),
        edited,
        n % 3 == 0,
    )


def expected(n: int) -> list[object]:
    edited = datetime(2026, 12, 2, 0, 0, n % 60, 1, tzinfo=UTC) if n % 2 else None
    return [n, f"m{n}", "u1", f"body {n}", None, None, START + timedelta(seconds=n), edited, n % 3 == 0]


@pytest.mark.parametrize("count", [0, 1, 2, 3, 51])
def test_each_sqlite_row_comes_back_with_its_columns_read_as_their_types(count: int) -> None:
    plan, _ = Plans(sqlite.dialect()).plan(STATEMENT, PARAMS)
    assert plan.processed  # the datetimes and the boolean are processed
    rows = Result(plan, [stored(n) for n in range(count)], count).all()
    assert [list(row) for row in rows] == [expected(n) for n in range(count)]
    assert all(type(row[8]) is bool for row in rows)
    assert all(row[6].tzinfo is UTC for row in rows)


@pytest.mark.parametrize("count", [0, 1, 51])
def test_each_postgresql_row_comes_back_in_utc(count: int) -> None:
    plan, _ = Plans(ASYNCPG).plan(STATEMENT, PARAMS)
    rows = Result(plan, [fetched(n) for n in range(count)], count).all()
    assert [list(row) for row in rows] == [expected(n) for n in range(count)]
    assert all(row[6].utcoffset() == timedelta(0) for row in rows)


def test_rows_are_read_by_name_by_column_and_as_attributes() -> None:
    plan, _ = Plans(sqlite.dialect()).plan(STATEMENT, PARAMS)
    result = Result(plan, [stored(3), stored(4)], 2)
    first = result.mappings().first()
    assert isinstance(first, Row)
    assert first["seq"] == first[messages.c.seq] == first.seq == 3
    assert first["created_at"] == first[messages.c.created_at] == START + timedelta(seconds=3)
    assert first.deleted is True
    assert [row["id"] for row in result.mappings().all()] == ["m3", "m4"]
    assert [row.id for row in result] == ["m3", "m4"]
    with pytest.raises(KeyError):
        first["no such column"]
    with pytest.raises(KeyError):
        first[tables.users.c.username]  # a column of no statement here
    with pytest.raises(AttributeError):
        _ = first.nothing
    assert Result(plan, [], 0).mappings().first() is None


def test_a_row_is_read_by_the_key_of_a_column_it_names_otherwise() -> None:
    """A column the statement labels is found by its label and by its ``Column``'s key."""
    statement = select(tables.conversations.c.id, tables.conversations.c.last_seq.label("last"))
    plan, _ = Plans(sqlite.dialect()).plan(statement, {})
    [row] = Result(plan, [("c1", 7)], 1).mappings().all()
    assert row["last"] == 7 and row.last == 7
    assert row[tables.conversations.c.id] == "c1"


@pytest.mark.parametrize("dialect", [sqlite.dialect(), ASYNCPG], ids=["sqlite", "asyncpg"])
def test_parameters_come_in_the_order_the_sql_takes_them_each_bound_as_its_type(dialect: Dialect) -> None:
    at = datetime(2026, 12, 1, 12, 30, tzinfo=timezone(timedelta(hours=1)))
    statement = select(messages.c.seq).where(
        messages.c.conversation_id == bindparam("k_conversation_id"),
        messages.c.created_at > bindparam("k_at", type_=messages.c.created_at.type),
        messages.c.deleted.is_(False),
    )
    plan, values = Plans(dialect).plan(statement, {"k_at": at, "k_conversation_id": "c1"})
    bound = plan.values(values)
    assert bound[0] == "c1"
    if dialect.name == "sqlite":
        assert bound[1] == "2026-12-01 11:30:00.000000"  # naive UTC text, as stored
        assert plan.sql.count("?") == len(bound)
    else:
        assert bound[1] == at and bound[1].utcoffset() == timedelta(0)  # aware UTC
        assert f"${len(bound)}" in plan.sql and f"${len(bound) + 1}" not in plan.sql


def test_a_one_off_in_list_is_compiled_for_its_values() -> None:
    plans = Plans(sqlite.dialect())
    for ids in (["a"], ["a", "b", "c"]):
        statement = select(tables.users.c.id).where(tables.users.c.id.in_(ids))
        plan, values = plans.plan(statement, {})
        assert plan.sql.count("?") == len(ids)
        assert plan.values(values) == ids


@pytest.mark.parametrize(
    ("status", "count"),
    [("INSERT 0 1", 1), ("UPDATE 3", 3), ("DELETE 0", 0), ("SELECT 12", 12), ("BEGIN", -1), (None, -1)],
)
def test_a_postgresql_commands_rowcount_is_read_from_its_status(status: str | None, count: int) -> None:
    assert rowcount_of(status) == count
