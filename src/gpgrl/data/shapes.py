"""Coloured shapes: a generated-image task whose answer needs the image (``data.dataset: builtin:shapes``).

Each image is a white square of ``size`` pixels with one filled shape (square, circle or triangle) of
one of six colours, at a random place and size; the question asks for the shape's colour, and the
answer is the colour's name (``answer="word"``) or its letter in a multiple choice (``answer="letter"``:
``A`` red ... ``F`` orange, CV-Bench style) in ``<answer>...</answer>``. A policy that ignores the image
is right one time in six at best, so a rise in accuracy means the model reads the image. Records hold
the images themselves (small PIL images, generated on demand and cached), so the task needs no files.

>>> task = ShapesTask(num_train=4, num_test=2, seed=0)
>>> r = task.records("train")[0]
>>> sorted(r), r["image"].size, r["answer"] == r["colour"]
(['answer', 'colour', 'image', 'question', 'shape'], (56, 56), True)
>>> task.solution(r) == f"<answer>{r['answer']}</answer>"
True
>>> ShapesTask(num_train=4, num_test=2, seed=0, answer="letter").records("train")[0]["answer"] == "ABCDEF"[list(COLOURS).index(r["colour"])]
True
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gpgrl.data.splits import SplitTask

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 220),
    "yellow": (235, 200, 30), "purple": (140, 60, 180), "orange": (245, 140, 30),
}
SHAPES = ("square", "circle", "triangle")
LETTERS = dict(zip("ABCDEF", COLOURS))
QUESTIONS = {
    "word": "What colour is the shape? Answer with one word in <answer></answer>.",
    "letter": "What colour is the shape? " + " ".join(f"{k} {v}" for k, v in LETTERS.items())
              + ". Answer with the letter in <answer></answer>.",
}


def draw(shape: str, colour: str, box: tuple[int, int, int, int], size: int = 56):
    """A white ``size`` x ``size`` RGB image with one filled ``shape`` of ``colour`` inside ``box``."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    pen = ImageDraw.Draw(img)
    rgb = COLOURS[colour]
    x0, y0, x1, y1 = box
    if shape == "square":
        pen.rectangle(box, fill=rgb)
    elif shape == "circle":
        pen.ellipse(box, fill=rgb)
    elif shape == "triangle":
        pen.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=rgb)
    else:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    return img


@dataclass
class ShapesTask(SplitTask):
    """One shape of one colour per ``size`` x ``size`` image; the answer is its colour (or the colour's letter)."""

    name: ClassVar[str] = "shapes"
    size: int = 56
    answer: str = "word"
    colours: int = 6  # the first N of COLOURS
    _cache: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def records(self, split: str = "train") -> list[dict[str, Any]]:
        """``train`` and ``test`` come from one seeded stream (disjoint draws), the same for a given seed."""
        self.check_split(split)
        if not 2 <= self.colours <= len(COLOURS):
            raise ValueError(f"colours must be 2 to {len(COLOURS)}, got {self.colours}")
        if self.answer not in QUESTIONS:
            raise ValueError(f"answer must be 'word' or 'letter', got {self.answer!r}")
        if not self._cache:
            rng = random.Random(self.seed)
            rows = []
            for _ in range(self.num_train + self.num_test):
                colour, shape = rng.choice(list(COLOURS)[: self.colours]), rng.choice(SHAPES)
                side = rng.randint(self.size // 2, self.size)
                x0, y0 = rng.randint(0, self.size - side), rng.randint(0, self.size - side)
                box = (x0, y0, x0 + side - 1, y0 + side - 1)
                gold = colour if self.answer == "word" else "ABCDEF"[list(COLOURS).index(colour)]
                rows.append({"question": QUESTIONS[self.answer], "image": draw(shape, colour, box, self.size),
                             "answer": gold, "colour": colour, "shape": shape})
            self._cache = {"train": rows[: self.num_train], "test": rows[self.num_train :]}
        return self._cache[split]

    @staticmethod
    def solution(record: dict[str, Any]) -> str:
        """A correct completion: the answer (colour name or letter) in ``<answer>`` tags."""
        return f"<answer>{record['answer']}</answer>"

    def random_solution(self, rng: random.Random) -> str:
        """A well-formed completion with an answer drawn at random from the task's options, whatever the image.

        The vision quickstart's first warm-start phase imitates these: it learns the answer format
        without learning to read the image.

        >>> ShapesTask(answer="letter", colours=4).random_solution(random.Random(0))
        '<answer>D</answer>'
        """
        options = "ABCDEF"[: self.colours] if self.answer == "letter" else list(COLOURS)[: self.colours]
        return f"<answer>{rng.choice(options)}</answer>"


_ANSWER_ONLY = re.compile(r"\s*<answer>[^<>]*</answer>\s*")


def answer_only(completions: list[str], **_: Any) -> list[float]:
    """1.0 when the completion is exactly one ``<answer>...</answer>`` block, else 0.0.

    The quickstart's format reward (``gpgrl.data.shapes:answer_only``): without it a policy learns
    that repeating ``<answer>B<answer>B...`` still has a last answer block to grade.

    >>> answer_only(["<answer>B</answer>", "<answer>B<answer>B", "x <answer>B</answer>"])
    [1.0, 0.0, 0.0]
    """
    return [1.0 if _ANSWER_ONLY.fullmatch(c) else 0.0 for c in completions]
