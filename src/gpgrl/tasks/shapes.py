"""The old path of :mod:`gpgrl.data.shapes` (the built-in shapes task), kept for recipes that name
``gpgrl.tasks.shapes:answer_only`` as a reward."""

from gpgrl.data.shapes import COLOURS, SHAPES, ShapesTask, answer_only, draw

__all__ = ["COLOURS", "SHAPES", "ShapesTask", "answer_only", "draw"]
