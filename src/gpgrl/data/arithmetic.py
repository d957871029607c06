"""Multi-digit addition with a ``<think>..</think><answer>..</answer>`` answer format.

Every question has one exact integer answer, so the ``accuracy`` reward is verifiable, and a small
model can learn it on a CPU in minutes.

>>> task = ArithmeticTask(num_train=3, num_test=2, seed=0)
>>> [sorted(r) for r in task.records("train")][0]
['answer', 'question']
>>> r = task.records("test")[0]; int(r["answer"]) == sum(int(x) for x in r["question"].split("+"))
True
>>> task.solution("12+35")
'<think>2+5=7 1+3=4</think><answer>47</answer>'
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from gpgrl.data.splits import SplitTask


@dataclass
class ArithmeticTask(SplitTask):
    """``digits``-digit additions: ``num_train`` and ``num_test`` distinct questions."""

    name: ClassVar[str] = "arithmetic"
    num_train: int = 2000
    digits: int = 2

    def records(self, split: str = "train") -> list[dict[str, str]]:
        """``train`` and ``test`` are disjoint sets of questions, the same for a given seed."""
        self.check_split(split)
        rng = random.Random(self.seed)
        lo, hi = 10 ** (self.digits - 1), 10**self.digits - 1
        seen: set[tuple[int, int]] = set()
        out: list[dict[str, str]] = []
        total = self.num_train + self.num_test
        while len(out) < total:
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            if (a, b) in seen:
                continue
            seen.add((a, b))
            out.append({"question": f"{a}+{b}", "answer": str(a + b)})
        return self.split(out, split)

    @staticmethod
    def solution(question: str) -> str:
        """A correct completion: digit-by-digit sums (with carries) in ``<think>``, the sum in ``<answer>``."""
        a, b = question.split("+")
        width = max(len(a), len(b))
        a, b = a.zfill(width), b.zfill(width)
        steps, carry = [], 0
        for da, db in zip(reversed(a), reversed(b)):
            s = int(da) + int(db) + carry
            steps.append(f"{da}+{db}{'+1' if carry else ''}={s}")
            carry = s // 10
        return f"<think>{' '.join(steps)}</think><answer>{int(a) + int(b)}</answer>"
