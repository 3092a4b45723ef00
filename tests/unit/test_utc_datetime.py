"""UtcDateTime's SQLite processors, one step each, against SQLAlchemy's two layers they replace."""

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite

from convocore.adapters.sql.tables import UtcDateTime

SQLITE = sqlite.dialect()


def _two_layers() -> tuple[object, object]:
    """What SQLAlchemy's TypeDecorator would build for UtcDateTime on SQLite."""
    t = cast(UtcDateTime, UtcDateTime().dialect_impl(SQLITE))  # as the dialect's type cache builds them
    bind = TypeDecorator.bind_processor(t, SQLITE)
    result = TypeDecorator.result_processor(t, SQLITE, None)
    return bind, result


def _moments() -> list[datetime]:
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    fixed = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 0, 30, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    drawn = [
        datetime(2000, 1, 1, tzinfo=rng.choice(zones)) + timedelta(microseconds=rng.randrange(10**17))
        for _ in range(2000)
    ]
    return fixed + drawn


def test_the_sqlite_processors_store_and_read_what_sqlalchemys_did() -> None:
    bind, result = _two_layers()
    fast_bind = UtcDateTime()._cached_bind_processor(SQLITE)  # what both SQL paths use
    fast_result = UtcDateTime()._cached_result_processor(SQLITE, None)
    assert fast_bind is not None and fast_result is not None
    for moment in _moments():
        stored = bind(moment)  # type: ignore[operator]
        assert fast_bind(moment) == stored
        assert fast_result(stored) == result(stored) == moment  # type: ignore[operator]
        restored = fast_result(stored)
        assert restored is not None and restored.tzinfo is UTC
    assert fast_bind(None) is None and fast_result(None) is None
    for text in ("2026-11-30 12:00:00", "2026-11-30 12:00", "2026-11-30"):  # shorter forms SQLAlchemy reads too
        assert fast_result(text) == result(text)  # type: ignore[operator]
        read = fast_result(text)
        assert read is not None and read.tzinfo is UTC


def test_binding_again_gives_each_value_its_own_text() -> None:
    """The last bound value's text is kept (a post binds one clock reading several times):
    it must never answer for another value, equal or not."""
    bind, _ = _two_layers()
    fast_bind = UtcDateTime()._cached_bind_processor(SQLITE)
    assert fast_bind is not None
    moments = _moments()[:300]
    for previous, moment in itertools.pairwise(moments):
        for value in (moment, moment, previous, moment.astimezone(timezone(timedelta(hours=-3))), moment):
            assert fast_bind(value) == bind(value)  # type: ignore[operator]


def test_a_naive_datetime_is_refused_as_before() -> None:
    bind, _ = _two_layers()
    fast_bind = UtcDateTime()._cached_bind_processor(SQLITE)
    assert fast_bind is not None
    for processor in (bind, fast_bind):
        with pytest.raises(ValueError, match="naive datetimes are ambiguous"):
            processor(datetime(2026, 1, 1))  # type: ignore[operator]


def test_other_dialects_keep_sqlalchemys_processors() -> None:
    pg = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves PGDialect.__init__ unannotated
    bind = UtcDateTime()._cached_bind_processor(pg)
    assert bind is not None
    moment = datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=3)))
    processed = bind(moment)
    assert processed == moment and processed.tzinfo == UTC  # aware, not text: asyncpg stores it
    result = UtcDateTime()._cached_result_processor(pg, None)
    assert result is not None
    read = result(moment)
    assert read == moment and read.tzinfo is UTC
