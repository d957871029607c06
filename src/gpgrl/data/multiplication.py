"""Multi-digit multiplication, answered directly or with a calculator: the task of ``gpgrl quickstart --tools``.

A tiny model cannot multiply two 4-digit numbers in its head (its unaided answers are almost never exact), but
it can learn to ask the ``calculator`` tool and copy the result: the question is worth a tool call. Each
question has one exact integer answer (the ``answer`` column), graded by the ``accuracy`` reward on the last
``<answer>`` block of the episode (with ``number: true``, so that restating the question ``1234*5678`` inside
the block is not an answer).

Two reference episodes per question: :meth:`MultiplicationTask.solution`, the direct answer (one turn), and
:meth:`MultiplicationTask.tool_episode`, a calculator call in the Hermes format of the tiny model's chat
template, the tool's result, then the answer.

>>> task = MultiplicationTask(num_train=3, num_test=2, seed=0)
>>> r = task.records("test")[0]; int(r["answer"]) == eval(r["question"])
True
>>> MultiplicationTask.solution("1234*5678")
'<answer>7006652</answer>'
>>> turns = MultiplicationTask.tool_episode("1234*5678")
>>> print(turns[0])
<tool_call>{"name": "calculator", "arguments": {"expression": "1234*5678"}}</tool_call>
>>> turns[1], turns[2]
([{'role': 'tool', 'name': 'calculator', 'content': '7006652'}], '<answer>7006652</answer>')
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from gpgrl.data.splits import SplitTask


@dataclass
class MultiplicationTask(SplitTask):
    """``digits``-digit by ``digits``-digit products: ``num_train`` and ``num_test`` distinct questions ``"a*b"``."""

    name: ClassVar[str] = "multiplication"
    num_train: int = 2000
    digits: int = 4

    def records(self, split: str = "train") -> list[dict[str, str]]:
        """``train`` and ``test`` are disjoint sets of questions, the same for a given seed."""
        self.check_split(split)
        if self.digits < 1:
            raise ValueError(f"digits must be >= 1, got {self.digits}")
        lo, hi = 10 ** (self.digits - 1), 10**self.digits - 1
        total = self.num_train + self.num_test
        if total > (hi - lo + 1) ** 2:
            raise ValueError(f"{total} distinct {self.digits}-digit products asked for, but there are only "
                             f"{(hi - lo + 1) ** 2}: use fewer questions or more digits")
        rng = random.Random(self.seed)
        seen: set[tuple[int, int]] = set()
        out: list[dict[str, str]] = []
        while len(out) < total:
            a, b = rng.randint(lo, hi), rng.randint(lo, hi)
            if (a, b) in seen:
                continue
            seen.add((a, b))
            out.append({"question": f"{a}*{b}", "answer": str(a * b)})
        return self.split(out, split)

    @staticmethod
    def product(question: str) -> int:
        a, b = question.split("*")
        return int(a) * int(b)

    @staticmethod
    def solution(question: str) -> str:
        """The direct (unaided) answer: the product in an ``<answer>`` block."""
        return f"<answer>{MultiplicationTask.product(question)}</answer>"

    @staticmethod
    def tool_call(question: str) -> str:
        """The policy's turn that asks the calculator for the product (Hermes format, as ``gpgrl.tools`` parses it)."""
        call = {"name": "calculator", "arguments": {"expression": question}}
        return f"<tool_call>{json.dumps(call)}</tool_call>"

    @staticmethod
    def tool_episode(question: str) -> list[Any]:
        """The reference episode with the calculator: the call (a policy turn), the tool's message (what the
        calculator returns: the product), the answer (the final policy turn)."""
        result = [{"role": "tool", "name": "calculator", "content": str(MultiplicationTask.product(question))}]
        return [MultiplicationTask.tool_call(question), result, MultiplicationTask.solution(question)]
