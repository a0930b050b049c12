"""Piecewise-constant step schedules (resolution, batch size, SH degree, shells, LR)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Schedule(Generic[T]):
    """A value that changes at given training steps.

    ``Schedule({0: 32, 1201: 64})`` is 32 for steps 0..1200 and 64 from step 1201 on. Keys are
    the steps at which a value becomes active; step 0 must be present. In TOML a schedule is an
    inline table with step keys, ``resolution = { 0 = 32, 1201 = 64 }``; a plain value means
    "this value from step 0".
    """

    values: Mapping[int, T]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a schedule needs at least one entry, got {}")
        steps = sorted(self.values)
        if steps[0] != 0:
            raise ValueError(f"a schedule must start at step 0, got first step {steps[0]}")
        if any(step < 0 for step in steps):
            raise ValueError(f"schedule steps must be >= 0, got {steps}")
        object.__setattr__(self, "values", {step: self.values[step] for step in steps})

    @property
    def steps(self) -> list[int]:
        """The steps at which a value becomes active, ascending (starts with 0)."""
        return list(self.values)

    def at(self, step: int) -> T:
        """The value active at `step` (the entry with the largest key <= step)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        steps = self.steps
        return self.values[steps[bisect.bisect_right(steps, step) - 1]]

    def changes_at(self, step: int) -> bool:
        """True when a new value becomes active exactly at `step` (> 0)."""
        return step > 0 and step in self.values

    def to_toml(self) -> dict[str, T]:
        return {str(step): value for step, value in self.values.items()}
