"""What the generated tasks share: a ``train`` and a ``test`` split drawn from one seeded stream.

>>> SplitTask(num_train=2, num_test=1).split([1, 2, 3], "test")
[3]
>>> SplitTask().split([], "validation")
Traceback (most recent call last):
...
ValueError: the generated task has splits 'train' and 'test', not 'validation'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class SplitTask:
    """``num_train`` then ``num_test`` records from one stream seeded with ``seed``: disjoint, repeatable."""

    name: ClassVar[str] = "generated"  # the builtin:NAME it is read as
    num_train: int = 1000
    num_test: int = 200
    seed: int = 1234

    def check_split(self, split: str) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"the {self.name} task has splits 'train' and 'test', not {split!r}")

    def split(self, rows: list[Any], split: str) -> list[Any]:
        """The ``split`` part of the ``num_train + num_test`` rows drawn."""
        self.check_split(split)
        return rows[: self.num_train] if split == "train" else rows[self.num_train :]
