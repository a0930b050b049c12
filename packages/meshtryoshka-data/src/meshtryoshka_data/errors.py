"""The one exception type every loader raises for bad input."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed or unsupported.

    The message always starts with the offending file or folder, then says what is wrong,
    e.g. ``"datasets/lego/transforms_train.json: no 'frames' list"``. The loaders raise it
    before any :class:`~meshtryoshka_data.Dataset` is built, so nothing half-loaded escapes.

    Attributes:
        path: the file or folder at fault.
        problem: what is wrong with it, in words.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
