"""What every evaluation module shares and none owns: a :class:`Problem`, the rows a loader reads, and the
errors. It imports nothing from :mod:`gpgrl.eval`, so any module there can import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class UnknownBenchmarkError(ValueError):
    """A benchmark name that is not in the registry."""


class BenchmarkDownloadError(RuntimeError):
    """A Hugging Face dataset that could not be loaded (offline, no access, renamed)."""


class MissingImagesError(FileNotFoundError):
    """Images of a benchmark that are not where ``--image-dir`` says (the message names the first one)."""


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: ``gold`` is the bare reference answer (no ``\\boxed{}``).

    Vision benchmarks (:mod:`gpgrl.eval.vision`) add ``images``: file paths (already checked to exist) or
    image bytes, opened only when the prompt is built; and ``meta``: what their grading needs (a gold box,
    a CV-Bench task name as ``category``).
    """

    benchmark: str
    id: str
    question: str
    gold: str
    images: tuple[Any, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class RowContext:
    """What a benchmark's ``rows`` function is told besides the records: the benchmark's name, where the
    records came from (for error messages), whether that is a local copy (``--data-dir``, whose columns
    may differ from the Hub's), and the class list of a classification set (line i = label i), if any."""

    name: str
    source: str
    local: bool = False
    classes: tuple[str, ...] | None = None


#: One problem as a ``rows`` function gives it: id, question, gold, image references, meta.
Row = tuple[str, str, str, list[Any], dict[str, Any]]
