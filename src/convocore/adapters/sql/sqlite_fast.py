"""SQLite's statements run on ``sqlite3`` directly, compiled by SQLAlchemy once.

The repositories build their frequent statements once (``repositories.py``) and SQLite runs each
in microseconds; what a statement cost was SQLAlchemy's execution path around it (an execution
context, parameter processing, a cursor result): about 40 us per statement, six or seven per
posted message. Here a statement is compiled once per set of parameter names, with SQLAlchemy's
own SQLite dialect, and what the compiled form says (the SQL, the order of the parameters, each
column type's bind and result processing) is replayed on the raw ``sqlite3`` cursor, inside the
transaction the unit of work began. Types, SQL and constraint errors are SQLAlchemy's, so both
paths store and read the same bytes and fail the same way.

Used for statements marked ``prebuilt`` (the repositories' module-level ones) by the SQLite
unit of work (``unit_of_work.SqliteUnitOfWork``); any other statement, and any with expanding
parameters, goes through SQLAlchemy.
"""

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Executable, exc
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update

from convocore.adapters.sql.timing import StatementTimer, only_timers

Processor = Callable[[Any], Any] | None

_prebuilt: dict[int, Executable] = {}  # by id; holding them keeps each id theirs for good


def bind_none_directly() -> None:
    """Let ``sqlite3`` bind None without looking for a way to adapt it.

    Python 3.11's ``sqlite3`` binds an int, float or str as it is, but anything else, None
    included, only after looking for an adapter: the registry, then ``__adapt__`` on its protocol
    type (where CPython formats an AttributeError's message to learn there is none), then
    ``__conform__`` on the value. That was ~0.8 us per None bound, and a new message binds two
    (``reply_to``, ``edited_at``; docs/performance.md, lever 47). With an adapter registered for
    None the registry answers at once; an empty dict's ``get`` gives None for any value, in C.
    None still binds as NULL. The registry is the process's: one for None is added only if there
    is none (an app's own is left alone)."""
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        nothing: dict[None, None] = {}
        sqlite3.register_adapter(type(None), nothing.get)


bind_none_directly()


S = TypeVar("S", bound=Executable)


def prebuilt(statement: S) -> S:
    """Mark a module-level statement (built once, never mutated) as safe to run here."""
    _prebuilt[id(statement)] = statement
    return statement


def is_prebuilt(statement: Executable) -> bool:
    return id(statement) in _prebuilt


def execute(raw: sqlite3.Connection | sqlite3.Cursor, sql: str, values: Sequence[Any] = ()) -> sqlite3.Cursor:
    """One statement on ``raw`` (a connection, or a cursor of one), failing as SQLAlchemy would
    (so translate_errors knows it)."""
    try:
        return raw.execute(sql, values)
    except sqlite3.Error as error:
        raise exc.DBAPIError.instance(sql, values, error, sqlite3.Error) from error


class Row(dict[Any, Any]):
    """A result row read by column name, by ``Column`` (as ``rows.py`` reads) or as attributes.

    Each value is held under both its name and its ``Column``, so either read is a plain dict
    lookup (a Python ``__getitem__`` mapping one to the other was an eighth of a history page's
    CPU); a ``Column`` the statement did not name as such is found by its key."""

    __slots__ = ()

    def __missing__(self, key: Any) -> Any:
        name = getattr(key, "key", None)
        if name is None or name.__class__ is not str or not dict.__contains__(self, name):
            raise KeyError(key)
        return dict.__getitem__(self, name)

    def __getattr__(self, name: str) -> Any:
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            raise AttributeError(name) from None


class Result:
    """What the repositories use of a CursorResult, which it mirrors: ``all()`` gives the rows by
    position, ``mappings().first()/all()`` by name, iterating gives rows read by name or as
    attributes; and ``rowcount``. The records are fetched when the statement runs; the typed
    columns are processed, and rows by name built, only when asked for (a history page reads 50
    rows by position: built by name, they cost more than the messages made from them)."""

    __slots__ = ("_plan", "_records", "_rows", "rowcount")

    def __init__(self, plan: "Plan", records: list[tuple[Any, ...]], rowcount: int) -> None:
        self._plan, self._records, self.rowcount = plan, records, rowcount
        self._rows: list[Row] | None = None

    def mappings(self) -> "_Mappings":
        return _Mappings(self)

    def all(self) -> list[Sequence[Any]]:
        processed = self._plan.processed
        if not processed:
            return list(self._records)
        out: list[Sequence[Any]] = []
        for record in self._records:
            values = list(record)
            for index, process in processed:
                values[index] = process(record[index])
            out.append(values)
        return out

    def __iter__(self) -> Any:
        return iter(self.by_name())

    def by_name(self) -> list[Row]:
        rows = self._rows
        if rows is None:
            names, columns = self._plan.names, self._plan.columns
            rows = self._rows = []
            for values in self.all():
                row = Row(zip(names, values, strict=True))
                row.update(zip(columns, values, strict=True))
                rows.append(row)
        return rows


class _Mappings:
    __slots__ = ("_result",)

    def __init__(self, result: Result) -> None:
        self._result = result

    def first(self) -> Row | None:
        rows = self._result.by_name()
        return rows[0] if rows else None

    def all(self) -> list[Row]:
        return self._result.by_name()


class Plan:
    __slots__ = ("binds", "columns", "names", "processed", "sql")

    def __init__(self, compiled: SQLCompiler, dialect: Dialect) -> None:
        self.sql: str = compiled.string
        processors = compiled._bind_processors
        names: Sequence[str] = compiled.positiontup or ()
        # (name, fixed value or None, processor): a bound value built into the statement is fixed.
        self.binds: list[tuple[str, Any, Processor]] = [
            (name, compiled.binds[name].value, cast(Processor, processors.get(name))) for name in names
        ]
        # Only the columns whose type processes what SQLite returns (datetimes, booleans) are
        # touched per record; a row by name is then built from the columns' names and the values,
        # and from their Columns and the values, in two C-level steps.
        columns = [
            (entry[0], _column_of(entry[2]), entry[3]._cached_result_processor(dialect, None))
            for entry in compiled._result_columns
        ]
        self.names: tuple[str, ...] = tuple(name for name, _, _ in columns)
        self.columns: tuple[Any, ...] = tuple(column for _, column, _ in columns)
        self.processed: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (index, process) for index, (_, _, process) in enumerate(columns) if process is not None
        )

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        """The statement's parameters in order, each through its type's bind processing."""
        values = []
        for name, fixed, process in self.binds:
            value = params.get(name, fixed)
            values.append(process(value) if process is not None else value)
        return values


def _column_of(objects: Sequence[Any]) -> Any:
    """The ``Column`` a result column stands for, or a key no reader uses."""
    return next((found for found in objects if isinstance(found, ColumnElement)), object())


class Plans:
    """Compiled plans for one engine's dialect (``pg_fast`` runs them on PostgreSQL)."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._plans: dict[tuple[int, tuple[str, ...]], Plan | None] = {}

    def plan(self, statement: Executable, params: Mapping[str, Any]) -> Plan | None:
        key = (id(statement), tuple(params))
        found = self._plans.get(key, False)
        if found is False:
            found = self._plans[key] = self._compile(statement, params)
        return found  # type: ignore[return-value]

    def _compile(self, statement: Executable, params: Mapping[str, Any]) -> Plan | None:
        keys = [k for k in params if not k.startswith("k_")] if isinstance(statement, Insert | Update) else None
        compiled = statement.compile(dialect=self._dialect, column_keys=keys)  # type: ignore[attr-defined]
        if not isinstance(compiled, SQLCompiler) or compiled.literal_execute_params or compiled.post_compile_params:
            return None  # expanding IN lists and the like: SQLAlchemy's path handles them
        return Plan(compiled, self._dialect)


class FastSqlite(Plans):
    """Compiled plans for one SQLite engine, run on ``sqlite3``."""

    def run(
        self,
        engine: Engine,
        raw: sqlite3.Connection | sqlite3.Cursor,
        plan: Plan,
        params: Mapping[str, Any],
        timers: list[StatementTimer],
    ) -> Result:
        """Run ``plan`` on ``raw``, telling ``engine``'s cursor listeners as SQLAlchemy would,
        with the engine standing in for the connection; or, when ``timers`` (the engine's, from
        ``timing.timers_of``) are all the listeners there are, timing the statement for them
        directly."""
        values = plan.values(params)
        if only_timers(engine, timers):
            started = time.perf_counter()
            try:
                cursor = execute(raw, plan.sql, values)
                return Result(plan, cursor.fetchall() if plan.names else [], cursor.rowcount)
            finally:
                elapsed = time.perf_counter() - started
                for timer in timers:
                    timer.observe(elapsed)
        dispatch = engine.dispatch
        dispatch.before_cursor_execute(engine, None, plan.sql, values, None, False)
        try:
            cursor = execute(raw, plan.sql, values)
            return Result(plan, cursor.fetchall() if plan.names else [], cursor.rowcount)
        finally:
            dispatch.after_cursor_execute(engine, None, plan.sql, values, None, False)
