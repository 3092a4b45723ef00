"""Statements compiled once by SQLAlchemy and run on the driver's own connection.

Every statement a unit of work runs takes this one path, on both databases: SQLAlchemy's public
``compile()`` turns it into SQL for the dialect, with its parameters in order
(``positiontup``); each parameter's and each result column's type says, through the public
``TypeEngine.dialect_impl(...).bind_processor/result_processor``, how values are converted on
the way in and out. The SQL then runs on ``sqlite3`` or asyncpg directly (``sqlite.py``,
``postgres.py``), and the rows come back as a ``Result`` that the repositories read by position
or by name.

A statement built once at import (``prebuilt``) is compiled once per set of parameter names;
any other (an ``IN`` list of as many values as the call has) is compiled for its call.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Executable, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, Update

Processor = Callable[[Any], Any] | None
Params = Mapping[str, Any]
S = TypeVar("S", bound=Executable)

_prebuilt: dict[int, Executable] = {}  # by id; holding them keeps each id theirs for good


def prebuilt(statement: S) -> S:
    """Mark a module-level statement (built once, never changed): its plans are kept."""
    _prebuilt[id(statement)] = statement
    return statement


class Row(dict[Any, Any]):
    """A result row read by column name, by ``Column`` (as ``rows.py`` reads) or as attributes.

    Each value is held under both its name and its ``Column``, so either read is a plain dict
    lookup; a ``Column`` the statement did not name as such is found by its key."""

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
    """A statement's rows: ``all()`` by position, ``mappings().first()/all()`` by name, iterating
    by name or attribute; and ``rowcount``. Typed columns (datetimes, booleans) are processed,
    and rows by name built, only when asked for: a history page reads 50 rows by position."""

    __slots__ = ("_plan", "_records", "_rows", "rowcount")

    def __init__(self, plan: "Plan", records: Sequence[Sequence[Any]], rowcount: int) -> None:
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
    """One compiled statement: its SQL, its parameters in order with their conversions, and its
    result columns with theirs."""

    __slots__ = ("binds", "columns", "names", "processed", "sql")

    def __init__(self, statement: Executable, compiled: SQLCompiler, dialect: Dialect) -> None:
        self.sql: str = compiled.string
        # (name, value compiled into the statement or None, conversion)
        self.binds: list[tuple[str, Any, Processor]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds.get(name)
            if bind is None:  # one value of an expanded IN list: ids, unconverted text
                self.binds.append((name, None, None))
            else:
                self.binds.append((name, bind.value, bind.type.dialect_impl(dialect).bind_processor(dialect)))
        columns = list(statement.selected_columns) if isinstance(statement, Select) else []
        self.names: tuple[str, ...] = tuple(str(column.key) for column in columns)
        self.columns: tuple[Any, ...] = tuple(_column_of(column) for column in columns)
        processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        self.processed: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def values(self, params: Params) -> list[Any]:
        """The statement's parameters in order, each through its type's conversion."""
        values = []
        for name, fixed, process in self.binds:
            value = params.get(name, fixed)
            values.append(process(value) if process is not None else value)
        return values


def _column_of(column: Any) -> Any:
    """The key a row is also read by: the ``Column`` itself, or one no reader uses."""
    return column if isinstance(column, ColumnElement) else object()


class Plans:
    """The plans of one dialect's statements."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._plans: dict[tuple[int, tuple[str, ...]], Plan] = {}

    def plan(self, statement: Executable, params: Params) -> tuple[Plan, Params]:
        """The plan and the values to run it with (a one-off statement's own, added)."""
        key = (id(statement), tuple(params))
        found = self._plans.get(key)
        if found is not None:
            return found, params
        if id(statement) in _prebuilt:
            found = self._plans[key] = self._compile(statement, params)
            return found, params
        compiled = statement.compile(  # type: ignore[attr-defined]
            dialect=self._dialect, compile_kwargs={"render_postcompile": True}
        )
        return Plan(statement, compiled, self._dialect), compiled.construct_params(params)

    def _compile(self, statement: Executable, params: Params) -> Plan:
        # An INSERT or UPDATE sets the columns named (a where-clause's names start with "k_").
        keys = [k for k in params if not k.startswith("k_")] if isinstance(statement, Insert | Update) else None
        compiled = statement.compile(dialect=self._dialect, column_keys=keys)  # type: ignore[attr-defined]
        if not isinstance(compiled, SQLCompiler) or compiled.literal_execute_params or compiled.post_compile_params:
            raise TypeError("a prebuilt statement must not expand (an IN list): leave it one-off")
        return Plan(statement, compiled, self._dialect)


def rowcount_of(status: str | None) -> int:
    """Rows a PostgreSQL command touched, from its status (``INSERT 0 1``, ``UPDATE 3``)."""
    count = (status or "").rpartition(" ")[2]
    return int(count) if count.isdigit() else -1
