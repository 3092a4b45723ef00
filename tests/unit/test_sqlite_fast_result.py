"""``sqlite_fast.Result.all()``: the processed columns of each row, rows in order, on both of
its ways (row by row for one or two records, column by column for more)."""

from typing import Any

import pytest

from convocore.adapters.sql.sqlite_fast import Result


class _Plan:
    """What ``Result`` reads of a plan: which columns are processed, and how."""

    def __init__(self, processed: tuple[tuple[int, Any], ...]) -> None:
        self.processed = processed


@pytest.mark.parametrize("count", [0, 1, 2, 3, 51])
def test_each_processed_column_is_processed_in_every_row_and_the_rest_left_alone(count: int) -> None:
    records = [(n, f"{n}", None if n % 2 else n * 10, n % 3 == 0) for n in range(count)]
    plan = _Plan(((1, int), (2, lambda value: None if value is None else -value)))
    rows = Result(plan, list(records), count).all()  # type: ignore[arg-type]
    assert [list(row) for row in rows] == [[n, n, None if n % 2 else -n * 10, n % 3 == 0] for n in range(count)]


def test_rows_with_nothing_to_process_are_the_records() -> None:
    records = [(1, "a"), (2, "b"), (3, "c")]
    assert Result(_Plan(()), records, 3).all() == records  # type: ignore[arg-type]
