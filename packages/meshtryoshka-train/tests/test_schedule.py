"""Piecewise-constant step schedules."""

import pytest

from meshtryoshka_train.schedule import Schedule


def test_value_at_each_step():
    schedule = Schedule({1201: 64, 0: 32, 2401: 96})
    assert schedule.steps == [0, 1201, 2401]
    assert [schedule.at(s) for s in (0, 1200, 1201, 2400, 2401, 10**9)] == [32, 32, 64, 64, 96, 96]


def test_changes_at_marks_only_later_keys():
    schedule = Schedule({0: 1, 10: 2})
    assert not schedule.changes_at(0)
    assert schedule.changes_at(10)
    assert not schedule.changes_at(11)


@pytest.mark.parametrize("values", [{}, {5: 1}, {0: 1, -3: 2}])
def test_invalid_schedules(values):
    with pytest.raises(ValueError):
        Schedule(values)


def test_negative_step_is_refused():
    with pytest.raises(ValueError, match="step must be >= 0"):
        Schedule({0: 1}).at(-1)
