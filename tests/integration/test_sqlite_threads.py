"""SQLite's multi-thread mode without memory statistics (``adapters/sql/sqlite_threads.py``):
set before ``sqlite3`` is imported, a connection has no mutex and SQLite counts no memory; too
late, nothing changes; ``convocore serve`` sets both.

Each case runs in a fresh interpreter (the settings are the process's, and this one imported
sqlite3 long ago). Both are asked of SQLite itself. Whether a connection has a mutex:
``sqlite3_db_mutex``, NULL without one, with the ``sqlite3*`` read from the connection object (in
CPython 3.11 the field right after the object header). Whether it counts memory:
``sqlite3_memory_used``, which stays 0 without statistics while a connection is open. The probe
is checked both ways, so a wrong read fails.
"""

import subprocess
import sys
import textwrap

import pytest

# Prepended to every script; it imports sqlite3 only when called, so a script decides what runs first.
_PROBE = """
def probe() -> str:
    # Whether a connection has a mutex, and whether SQLite counts memory: "True True" by default.
    import ctypes, sqlite3, _sqlite3

    connection = sqlite3.connect(":memory:")
    db = ctypes.c_void_p.from_address(id(connection) + object.__basicsize__).value
    assert db, "no sqlite3* where the probe looked"
    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_db_mutex.argtypes, lib.sqlite3_db_mutex.restype = [ctypes.c_void_p], ctypes.c_void_p
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    mutex = lib.sqlite3_db_mutex(db) is not None
    assert connection.execute("SELECT 40 + 2").fetchall() == [(42,)]
    counted = lib.sqlite3_memory_used() > 0
    connection.close()
    return f"{mutex} {counted}"
"""


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_by_default_a_connection_has_its_mutex_and_memory_is_counted() -> None:
    assert _run("print(probe())") == "True True"


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("", "True False False"),  # in time: taken; no mutex, no memory counted
        ("import sqlite3", "False True True"),  # too late: refused, and nothing changes
    ],
)
def test_it_takes_only_before_sqlite3_is_imported(first: str, expected: str) -> None:
    out = _run(
        f"""
        {first}
        from convocore.adapters.sql.sqlite_threads import use_serving_mode
        took = use_serving_mode()
        print(took, probe())
        """
    )
    assert out == expected


def test_serve_sets_them_before_anything_imports_sqlite3() -> None:
    """``convocore serve`` as far as starting uvicorn, which here answers with the probe."""
    out = _run(
        """
        import uvicorn
        from convocore.entrypoints import cli

        def run(app, **options):
            print(probe())

        uvicorn.run = run
        cli.main(["serve", "--memory", "--log-level", "warning"])
        """
    )
    assert out == "False False"
