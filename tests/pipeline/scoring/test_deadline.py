"""The stall watchdog: rows pass through; silence beyond the timeout becomes a clear error."""

import threading

import pytest

from pipeline.scoring.driver import StalledError, rows_with_deadline


def test_rows_pass_through_and_errors_propagate():
    assert list(rows_with_deadline(iter(range(5)), 5.0)) == [0, 1, 2, 3, 4]

    def broken():
        yield 1
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(rows_with_deadline(broken(), 5.0))


def test_a_stalled_iterator_raises_with_the_facts():
    never = threading.Event()

    def stalled():
        yield "first"
        never.wait()  # a pipeline waiting for resources that never come

    got = []
    with pytest.raises(StalledError, match=r"no reference group finished in 0.2 s.*2 nodes gone.*rerun"):
        for row in rows_with_deadline(stalled(), 0.2, describe=lambda: "2 nodes gone"):
            got.append(row)
    assert got == ["first"]
    never.set()
