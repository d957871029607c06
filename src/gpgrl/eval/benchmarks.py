"""Math benchmarks for evaluation: where each one lives and how to read its question and gold answer.

Each benchmark loads either from its public Hugging Face dataset (the default) or from a local folder
(``data_dir``) laid out as in the Qwen2.5-Math / simpleRL evaluation harness::

    DIR/math500/test.jsonl          problem, answer
    DIR/aime24/test.jsonl           problem, answer ("025": compared as an integer)
    DIR/amc23/test.jsonl            problem, answer (a float such as 27.0 -> "27")
    DIR/minerva_math/test.jsonl     problem; gold = the single \\boxed{...} in solution
    DIR/olympiadbench/test.jsonl    question, final_answer (a list, usually of one item)
    DIR/gsm8k/test.jsonl            question; gold = the text after "####" in answer

``arithmetic`` is the held-out ``test`` split of the built-in 2-digit addition task (``builtin:arithmetic``,
200 questions such as ``23+48``; gold = its ``answer`` column). It is generated, so it needs neither
``--data-dir`` nor the Hub.

For minerva_math and olympiadbench another ``*.jsonl`` file in the folder is used when there is no
``test.jsonl`` (e.g. the 20-record ``sample20.jsonl`` files used by this project's tests).

The Hub sources (checked against their dataset cards) are listed in :data:`BENCHMARKS` and in
``docs/eval.md``. Vision benchmarks (GEOQA, the Visual-RFT classification sets, CV-Bench, LISA) are in
:mod:`gpgrl.eval.vision`; the functions here load both kinds. Unknown names raise :class:`UnknownBenchmarkError`, which lists the valid ones.

>>> [spec.name for spec in BENCHMARKS.values()]
['math500', 'aime24', 'amc23', 'minerva', 'olympiadbench', 'gsm8k', 'arithmetic']
>>> parse_benchmarks("math500, gsm8k,minerva_math")
['math500', 'gsm8k', 'minerva']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpgrl.data.datasets import read_jsonl


class UnknownBenchmarkError(ValueError):
    """A benchmark name that is not in the registry."""


class BenchmarkDownloadError(RuntimeError):
    """A Hugging Face dataset that could not be loaded (offline, no access, renamed)."""


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


# --- gold-answer helpers (pure) ----------------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; None if none.

    >>> last_boxed(r"so $x=\\boxed{\\frac{1}{2}}$ and then \\boxed{4.5e33}")
    '4.5e33'
    >>> last_boxed(r"\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}")
    '\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)'
    >>> last_boxed("no box") is None
    True
    """
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


def number_to_str(value: Any) -> str:
    """A gold stored as a number or a zero-padded string, written as a plain number.

    >>> number_to_str(27.0), number_to_str("025"), number_to_str(0.5), number_to_str("\\\\frac{1}{2}")
    ('27', '25', '0.5', '\\\\frac{1}{2}')
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return str(int(text))
    return text


def gsm8k_gold(answer: str) -> str:
    """The number after ``####`` in a GSM8K solution, thousands commas removed.

    >>> gsm8k_gold("She makes 9 * 2 = $<<9*2=18>>18.\\n#### 18")
    '18'
    >>> gsm8k_gold("#### 1,200")
    '1200'
    """
    tail = answer.split("####")[-1].strip()
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", tail)


def olympiad_gold(final_answer: Any) -> str:
    """OlympiadBench ``final_answer``: a list (one item, or several joined by ", ") of ``$...$`` strings.

    Every unescaped ``$`` goes, also inside an item (``"69$,$84"`` -> ``"69,84"``).

    >>> olympiad_gold(["$\\\\frac{1}{2 n+2}$"]), olympiad_gold(["$1$", "$2$"]), olympiad_gold(["f(n)=n$, $g(n)=1"])
    ('\\\\frac{1}{2 n+2}', '1, 2', 'f(n)=n, g(n)=1')
    """
    items = final_answer if isinstance(final_answer, list) else [final_answer]
    return ", ".join(re.sub(r"(?<!\\)\$", "", str(a)).strip() for a in items)


def _field(name: str) -> Callable[[dict[str, Any]], str]:
    def get(row: dict[str, Any]) -> str:
        return str(row[name]).strip()

    get.__name__ = f"field_{name}"
    return get


def _minerva_local_gold(row: dict[str, Any]) -> str:
    gold = last_boxed(row["solution"])
    if gold is None:
        raise ValueError(
            f"minerva record has no \\boxed{{}} answer in its solution: {row['solution'][:80]!r}"
        )
    return gold


# --- the registry --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives and how to read it.

    Hub fields describe the default source (``datasets.load_dataset(hub_id, hub_config, split=hub_split)``);
    ``local_*`` fields describe ``DIR/<local_dir>/<file>`` with ``--data-dir DIR``.
    """

    name: str
    description: str
    hub_id: str
    hub_split: str
    hub_config: str | None
    hub_question: str
    hub_gold: Callable[[dict[str, Any]], str]
    local_dir: str
    local_question: str
    local_gold: Callable[[dict[str, Any]], str]
    id_field: str | None = None  # a stable id column when the data has one; else the row index
    any_jsonl: bool = False  # fall back to any *.jsonl in the folder when test.jsonl is missing

    @property
    def builtin(self) -> bool:
        """A generated ``builtin:`` dataset: read with ``load_records`` whatever ``data_dir`` says."""
        return self.hub_id.startswith("builtin:")

    def local_path(self, data_dir: str | Path) -> Path:
        """The file read under ``data_dir`` (raises FileNotFoundError naming what was expected)."""
        folder = Path(data_dir).expanduser() / self.local_dir
        test = folder / "test.jsonl"
        if test.is_file():
            return test
        if self.any_jsonl and folder.is_dir():
            others = sorted(folder.glob("*.jsonl"))
            if others:
                return others[0]
        also = f" (or another .jsonl file in {folder})" if self.any_jsonl else ""
        raise FileNotFoundError(
            f"{self.name}: no data file at {test}{also}. Pass --data-dir DIR with {self.local_dir}/test.jsonl "
            f"inside, or leave --data-dir out to load {self.hub_id} from the Hugging Face Hub."
        )


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        BenchmarkSpec(
            name="math500",
            description="MATH-500: the 500-problem MATH test subset of 'Let's Verify Step by Step'",
            hub_id="HuggingFaceH4/MATH-500",
            hub_split="test",
            hub_config=None,
            hub_question="problem",
            hub_gold=_field("answer"),
            local_dir="math500",
            local_question="problem",
            local_gold=_field("answer"),
            id_field="unique_id",
        ),
        BenchmarkSpec(
            name="aime24",
            description="AIME 2024 I and II (30 problems, integer answers 0-999)",
            hub_id="HuggingFaceH4/aime_2024",
            hub_split="train",
            hub_config=None,
            hub_question="problem",
            hub_gold=lambda row: number_to_str(row["answer"]),
            local_dir="aime24",
            local_question="problem",
            local_gold=lambda row: number_to_str(row["answer"]),
            id_field="id",
        ),
        BenchmarkSpec(
            name="amc23",
            description="AMC 2023 (40 problems, as in the Qwen2.5-Math / simpleRL harness)",
            hub_id="math-ai/amc23",
            hub_split="test",
            hub_config=None,
            hub_question="question",
            hub_gold=lambda row: number_to_str(row["answer"]),
            local_dir="amc23",
            local_question="problem",
            local_gold=lambda row: number_to_str(row["answer"]),
            id_field="id",
        ),
        BenchmarkSpec(
            name="minerva",
            description="Minerva Math (272 MIT OCW science problems)",
            hub_id="math-ai/minervamath",
            hub_split="test",
            hub_config=None,
            hub_question="question",
            hub_gold=_field("answer"),
            local_dir="minerva_math",
            local_question="problem",
            local_gold=_minerva_local_gold,
            id_field="idx",
            any_jsonl=True,
        ),
        BenchmarkSpec(
            name="olympiadbench",
            description="OlympiadBench, English open-ended text-only maths (675 problems, Qwen2.5-Math split)",
            hub_id="math-ai/olympiadbench",
            hub_split="test",
            hub_config=None,
            hub_question="question",
            hub_gold=lambda row: olympiad_gold(row["final_answer"]),
            local_dir="olympiadbench",
            local_question="question",
            local_gold=lambda row: olympiad_gold(row["final_answer"]),
            id_field="id",
            any_jsonl=True,
        ),
        BenchmarkSpec(
            name="gsm8k",
            description="GSM8K test (1319 grade-school word problems)",
            hub_id="openai/gsm8k",
            hub_split="test",
            hub_config="main",
            hub_question="question",
            hub_gold=lambda row: gsm8k_gold(row["answer"]),
            local_dir="gsm8k",
            local_question="question",
            local_gold=lambda row: gsm8k_gold(row["answer"]),
            id_field="idx",
        ),
        BenchmarkSpec(
            name="arithmetic",
            description="2-digit addition, the held-out test split of builtin:arithmetic (200 questions)",
            hub_id="builtin:arithmetic",
            hub_split="test",
            hub_config=None,
            hub_question="question",
            hub_gold=_field("answer"),
            local_dir="arithmetic",  # unused: a builtin dataset is generated, never read from data_dir
            local_question="question",
            local_gold=_field("answer"),
        ),
    ]
}

ALIASES = {
    "math_500": "math500",
    "math-500": "math500",
    "aime": "aime24",
    "amc": "amc23",
    "minerva_math": "minerva",
    "olympiad_bench": "olympiadbench",
    "olympiad": "olympiadbench",
    "addition": "arithmetic",
}

# The five benchmarks of the paper's text results (GSM8K is extra).
PAPER_BENCHMARKS = ("math500", "aime24", "amc23", "minerva", "olympiadbench")


def all_benchmark_names() -> list[str]:
    """Every benchmark ``gpgrl eval`` knows: the math ones, then the vision ones."""
    from gpgrl.eval.vision import VISION_BENCHMARKS

    return [*BENCHMARKS, *VISION_BENCHMARKS]


def canonical_name(name: str) -> str:
    """The canonical name of a math or vision benchmark (case-insensitive, aliases); raises
    :class:`UnknownBenchmarkError` listing the valid names."""
    from gpgrl.eval.vision import vision_spec

    spec = vision_spec(name)
    return spec.name if spec is not None else get_benchmark(name).name


def is_vision_benchmark(name: str) -> bool:
    """Whether ``name`` is a vision benchmark (see :mod:`gpgrl.eval.vision`)."""
    from gpgrl.eval.vision import vision_spec

    return vision_spec(name) is not None


def get_benchmark(name: str) -> BenchmarkSpec:
    """The spec of math benchmark ``name`` (case-insensitive, a few aliases such as ``minerva_math``)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}; choose from {', '.join(all_benchmark_names())} (comma-separated)"
        )
    return BENCHMARKS[key]


def parse_benchmarks(names: str | Iterable[str]) -> list[str]:
    """Canonical names from ``"a,b"`` or a list, duplicates dropped, order kept."""
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for item in items:
        if not item.strip():
            continue
        name = canonical_name(item)
        if name not in out:
            out.append(name)
    if not out:
        raise UnknownBenchmarkError(f"no benchmark given; choose from {', '.join(all_benchmark_names())}")
    return out


def _read_hub(spec: BenchmarkSpec) -> list[dict[str, Any]]:
    from gpgrl.data.datasets import DatasetError, load_records

    try:
        return load_records(spec.hub_id, split=spec.hub_split, subset=spec.hub_config)
    except DatasetError as e:  # network, auth, renamed dataset: all mean "use a local copy"
        raise BenchmarkDownloadError(
            f"{spec.name}: could not load {spec.hub_id} (split {spec.hub_split}) from the Hugging Face Hub "
            f"({str(e).split(': ', 1)[-1].split('. Pass')[0]}). Offline, pass --data-dir DIR with "
            f"{spec.local_dir}/test.jsonl inside."
        ) from e


def parse_sources(sources: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """``{canonical name: file or Hub id}`` from a mapping or ``"NAME=PATH_OR_ID"`` strings (``--source``).

    >>> parse_sources(["cv-bench=data/cvbench.parquet"])
    {'cvbench': 'data/cvbench.parquet'}
    """
    if not sources:
        return {}
    if isinstance(sources, Mapping):
        return {canonical_name(name): str(where).strip() for name, where in sources.items()}
    out: dict[str, str] = {}
    for item in sources:
        name, sep, where = item.partition("=")
        if not sep or not name.strip() or not where.strip():
            raise ValueError(f"--source {item!r}: write NAME=PATH_OR_ID, e.g. lisa=data/lisa_test.jsonl")
        out[canonical_name(name)] = where.strip()
    return out


def load_benchmark(
    name: str,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    image_dir: str | Path | None = None,
    source: str | None = None,
) -> list[Problem]:
    """The problems of one benchmark, from ``data_dir`` if given, else from the Hub; first ``limit`` only.

    Vision benchmarks also take ``image_dir`` (the folder their image paths are relative to) and
    ``source`` (a file or Hub id to read instead), see :func:`gpgrl.eval.vision.load_vision_benchmark`.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if is_vision_benchmark(name):
        from gpgrl.eval.vision import load_vision_benchmark

        return load_vision_benchmark(name, data_dir=data_dir, image_dir=image_dir, source=source, limit=limit)
    spec = get_benchmark(name)
    if source is not None:
        raise ValueError(f"--source is for vision benchmarks; {spec.name} reads --data-dir or {spec.hub_id}")
    if spec.builtin:
        from gpgrl.data.datasets import load_records

        rows, q_field, gold_fn, source = (load_records(spec.hub_id, split=spec.hub_split), spec.hub_question,
                                          spec.hub_gold, spec.hub_id)
    elif data_dir is not None:
        path = spec.local_path(data_dir)
        rows, q_field, gold_fn, source = read_jsonl(path), spec.local_question, spec.local_gold, str(path)
    else:
        rows, q_field, gold_fn, source = _read_hub(spec), spec.hub_question, spec.hub_gold, spec.hub_id
    if limit is not None:
        rows = rows[:limit]
    problems = []
    for i, row in enumerate(rows):
        if q_field not in row:
            raise ValueError(f"{source}: record {i} has no {q_field!r} field (fields: {', '.join(row)})")
        pid = row.get(spec.id_field) if spec.id_field else None
        problems.append(
            Problem(spec.name, str(pid if pid is not None else i), str(row[q_field]), gold_fn(row))
        )
    return problems


def load_benchmarks(
    names: str | Sequence[str],
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    image_dir: str | Path | None = None,
    sources: Mapping[str, str] | Iterable[str] | None = None,
) -> dict[str, list[Problem]]:
    """``{name: problems}`` for several benchmarks (validates every name before loading any).

    ``sources`` maps a benchmark to a file or Hub id to read instead (``{"lisa": "lisa_test.jsonl"}`` or
    ``["lisa=lisa_test.jsonl"]``); ``image_dir`` is where vision benchmarks' image paths point.
    """
    canonical = parse_benchmarks(names)
    where = parse_sources(sources)
    unused = [n for n in where if n not in canonical]
    if unused:
        raise ValueError(f"--source names {', '.join(unused)}, which is not among the benchmarks "
                         f"({', '.join(canonical)})")
    return {name: load_benchmark(name, data_dir=data_dir, limit=limit, image_dir=image_dir, source=where.get(name))
            for name in canonical}
