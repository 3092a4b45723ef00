"""SQLite's multi-thread mode (``adapters/sql/sqlite_threads.py``): set before ``sqlite3`` is
imported, a connection has no mutex; too late, nothing changes; ``convocore serve`` sets it.

Each case runs in a fresh interpreter (the mode is the process's, and this one imported sqlite3
long ago). Whether a connection has a mutex is asked of SQLite itself (``sqlite3_db_mutex``,
NULL without one), with the ``sqlite3*`` read from the connection object: in CPython 3.11 it is
the field right after the object header. The probe is checked both ways, so a wrong read fails.
"""

import subprocess
import sys
import textwrap

import pytest

# Prepended to every script; it imports sqlite3 only when called, so a script decides what runs first.
_PROBE = """
def has_mutex() -> bool:
    import ctypes, sqlite3, _sqlite3

    connection = sqlite3.connect(":memory:")
    db = ctypes.c_void_p.from_address(id(connection) + object.__basicsize__).value
    assert db, "no sqlite3* where the probe looked"
    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_db_mutex.argtypes, lib.sqlite3_db_mutex.restype = [ctypes.c_void_p], ctypes.c_void_p
    found = lib.sqlite3_db_mutex(db) is not None
    assert connection.execute("SELECT 40 + 2").fetchall() == [(42,)]
    connection.close()
    return found
"""


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_connection_has_its_mutex_by_default() -> None:
    assert _run("print(has_mutex())") == "True"


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("", "True False"),  # in time: taken, and connections have no mutex
        ("import sqlite3", "False True"),  # too late: refused, and nothing changes
    ],
)
def test_it_takes_only_before_sqlite3_is_imported(first: str, expected: str) -> None:
    out = _run(
        f"""
        {first}
        from convocore.adapters.sql.sqlite_threads import use_multithread_mode
        took = use_multithread_mode()
        print(took, has_mutex())
        """
    )
    assert out == expected


def test_serve_sets_it_before_anything_imports_sqlite3() -> None:
    """``convocore serve`` as far as starting uvicorn, which here answers with the probe."""
    out = _run(
        """
        import uvicorn
        from convocore.entrypoints import cli

        def probe(app, **options):
            print(has_mutex())

        uvicorn.run = probe
        cli.main(["serve", "--memory", "--log-level", "warning"])
        """
    )
    assert out == "False"
