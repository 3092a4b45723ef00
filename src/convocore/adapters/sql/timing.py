"""How long each SQL statement an engine runs takes, handed to whoever asked (the server's
statement-time histogram).

On SQLAlchemy's path a statement is timed by its cursor events. A SQLite file's prebuilt
statements (``sqlite_fast``) run on ``sqlite3`` directly and tell the engine's cursor listeners
themselves; when this module's timers are the only listeners, they time the statement directly
instead of going through SQLAlchemy's event dispatch, which cost about six percent of a REST
send's instructions (docs/performance.md, lever 32). Any other listener an application adds to
the engine still sees every statement as before.
"""

import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext

Observe = Callable[[float], None]


class StatementTimer:
    """Times statements by the engine's cursor events and hands each duration to ``observe``."""

    __slots__ = ("_started", "observe")

    def __init__(self, observe: Observe) -> None:
        self.observe = observe
        self._started: dict[Connection, float] = {}

    def before(self, connection: Connection, *_: Any) -> None:
        # A connection runs one statement at a time, so its start is all there is to keep. A
        # statement cancelled mid-way (a request whose client left) may never report back: the
        # map is cleared before such leftovers could add up.
        if len(self._started) > 1024:
            self._started.clear()
        self._started[connection] = time.perf_counter()

    def after(self, connection: Connection, *_: Any) -> None:
        self._done(connection)

    def failed(self, context: ExceptionContext) -> None:
        if context.connection is not None:
            self._done(context.connection)  # a failed statement took its time too

    def _done(self, connection: Connection) -> None:
        started = self._started.pop(connection, None)
        if started is not None:
            self.observe(time.perf_counter() - started)


# An engine's timers, one list per engine, made on first ask by either side (the SQLite link
# keeps the list it got, and timers added later land in it).
_TIMERS: "weakref.WeakKeyDictionary[Engine, list[StatementTimer]]" = weakref.WeakKeyDictionary()


def timers_of(engine: Engine) -> list[StatementTimer]:
    found = _TIMERS.get(engine)
    if found is None:
        found = _TIMERS[engine] = []
    return found


def time_statements(engine: Engine, observe: Observe) -> None:
    """Hand the duration of every statement ``engine`` runs to ``observe`` (once, however often asked)."""
    timers = timers_of(engine)
    if any(timer.observe == observe for timer in timers):
        return
    timer = StatementTimer(observe)
    event.listen(engine, "before_cursor_execute", timer.before)
    event.listen(engine, "after_cursor_execute", timer.after)
    event.listen(engine, "handle_error", timer.failed)
    timers.append(timer)


def only_timers(engine: Engine, timers: list[StatementTimer]) -> bool:
    """Whether ``timers`` are all the engine's cursor listeners (so timing a statement directly
    is all its events would have done)."""
    dispatch = engine.dispatch
    before, after = dispatch.before_cursor_execute, dispatch.after_cursor_execute
    count = len(timers)
    return (
        len(before.listeners) + len(before.parent_listeners) == count
        and len(after.listeners) + len(after.parent_listeners) == count
    )
