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

With it goes one global mutex that a serving process does not need either: by default SQLite
counts the memory it holds (``SQLITE_CONFIG_MEMSTATUS``), taking a global mutex for every
allocation and every free, ~55 of each per message posted over a socket (lever 43). The counts serve
only ``sqlite3_memory_used``, ``sqlite3_status`` and a soft heap limit, none of which Python's
``sqlite3`` or Convocore uses.

``use_serving_mode`` sets both in the SQLite library that ``sqlite3`` will use: the one the
``_sqlite3`` extension links to, found through the extension's own file without importing it.
SQLite takes these settings only before it initializes, which importing ``sqlite3`` does; later it
answers SQLITE_MISUSE and nothing changes. They are the whole process's, so only
``convocore serve``, which owns its process, asks for them; an app embedding Convocore keeps what
its SQLite was built with.
"""

import ctypes
import importlib.util
import sys

_SQLITE_CONFIG_MULTITHREAD = 2
_SQLITE_CONFIG_MEMSTATUS = 9
_SQLITE_OK = 0


def use_serving_mode() -> bool:
    """Put SQLite in multi-thread mode, without memory statistics, for this process; True if it
    took both, False if it was too late (``sqlite3`` already imported: neither is taken) or the
    library cannot be reached or refused."""
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
    # ctypes' default conversion: ints in, an int out.
    if config(_SQLITE_CONFIG_MULTITHREAD) != _SQLITE_OK:
        return False
    return bool(config(_SQLITE_CONFIG_MEMSTATUS, 0) == _SQLITE_OK)
