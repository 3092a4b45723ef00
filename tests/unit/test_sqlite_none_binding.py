"""``sqlite_fast.bind_none_directly``: sqlite3 finds an adapter for None at once (lever 47), None
still binds as NULL, and an adapter an app registered for None itself is left in place."""

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from convocore.adapters.sql import sqlite_fast

KEY = (type(None), sqlite3.PrepareProtocol)


@pytest.fixture
def registry() -> Iterator[dict[Any, Any]]:
    """The process's adapters, restored afterwards."""
    saved = dict(sqlite3.adapters)
    try:
        yield sqlite3.adapters
    finally:
        sqlite3.adapters.clear()
        sqlite3.adapters.update(saved)


def test_importing_the_fast_path_registers_an_adapter_for_none() -> None:
    adapter = sqlite3.adapters.get(KEY)
    assert adapter is not None and not hasattr(adapter, "__code__")  # found at once, and C, not Python
    assert adapter(None) is None


def test_none_still_binds_as_null(registry: dict[Any, Any]) -> None:
    registry.pop(KEY, None)
    sqlite_fast.bind_none_directly()
    assert KEY in registry
    raw = sqlite3.connect(":memory:", isolation_level=None)
    raw.execute("CREATE TABLE t (a INTEGER, b TEXT)")
    sqlite_fast.execute(raw, "INSERT INTO t VALUES (?, ?)", [None, None])
    assert raw.execute("SELECT a IS NULL, typeof(b) FROM t").fetchall() == [(1, "null")]


def test_an_apps_own_adapter_for_none_is_kept(registry: dict[Any, Any]) -> None:
    def own(value: None) -> str:
        return "nothing"

    sqlite3.register_adapter(type(None), own)
    sqlite_fast.bind_none_directly()
    assert registry[KEY] is own
