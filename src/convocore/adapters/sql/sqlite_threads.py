"""SQLite connections without a mutex of their own, for a process that never shares one.

Most SQLite libraries, Debian's among them, are built "serialized": every call on a connection
takes that connection's mutex, so threads may share it at will. Python 3.11's ``sqlite3`` cannot
open a connection without it (``connect`` passes no ``SQLITE_OPEN_NOMUTEX``), and it calls SQLite
several times for each column value it reads: a history page of 51 rows took and left the mutex
some 1,400 times, ~4% of the page's CPU (docs/performance.md, lever 42).

Convocore's server never shares a connection between threads at once: the serving connection
runs on the event loop's thread only (``unit_of_work._SqliteLink``); the engine's pooled one is
opened and closed on aiosqlite's thread and used on the loop's in between, one after the other;
the WAL checkpointer has its own, on its own thread. That is what SQLite's multi-thread mode
(``SQLITE_CONFIG_MULTITHREAD``) asks: no connection used by two threads at the same time. Its
global structures keep their mutexes.

``use_multithread_mode`` sets that mode in the SQLite library that ``sqlite3`` will use: the one
the ``_sqlite3`` extension links to, found through the extension's own file without importing it.
SQLite takes the setting only before it initializes, which importing ``sqlite3`` does; later it
answers SQLITE_MISUSE and nothing changes. The mode is the whole process's, so only
``convocore serve``, which owns its process, asks for it; an app embedding Convocore keeps the
mode its SQLite was built with.
"""

import ctypes
import importlib.util
import sys

_SQLITE_CONFIG_MULTITHREAD = 2
_SQLITE_OK = 0


def use_multithread_mode() -> bool:
    """Put SQLite in multi-thread mode for this process; True if it took it, False if it was
    too late (``sqlite3`` already imported) or the library cannot be reached or refused."""
    if "_sqlite3" in sys.modules:
        return False
    spec = importlib.util.find_spec("_sqlite3")
    if spec is None or not spec.has_location or not spec.origin:
        return False
    try:
        # Loading the extension's file runs none of its code; symbols resolve in it or in the
        # library it links to, the same one `import sqlite3` will use.
        config = ctypes.CDLL(spec.origin).sqlite3_config
    except (OSError, AttributeError):
        return False
    return bool(config(_SQLITE_CONFIG_MULTITHREAD) == _SQLITE_OK)  # ctypes' default: int in, int out
