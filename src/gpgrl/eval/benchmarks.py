"""Every benchmark ``gpgrl eval`` knows, math and vision, in one registry: where it lives, its prompt, how
an answer is graded, its generation budget.

A :class:`Benchmark` loads from the benchmark data folder when it holds the benchmark's file (``data_dir``,
else ``$GPGRL_DATA``, else ``../shared/data`` beside a source checkout: :mod:`gpgrl.paths`), else from its
public Hugging Face dataset; or from a given file or Hub id (``source``, the ``--source NAME=PATH_OR_ID``
flag); or, for a generated ``builtin:`` task, from nothing at all. The math benchmarks' local layout (in
the data folder's ``math/``) is the Qwen2.5-Math / simpleRL evaluation harness's::

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

The vision benchmarks (GEOQA, the Visual-RFT classification sets, CV-Bench, LISA) are entries of the same
registry; their prompts, image look-up and grading are in :mod:`gpgrl.eval.vision`. Adding a benchmark is
one entry in :data:`BENCHMARKS` (``docs/eval.md``, "Adding a benchmark"). Unknown names raise
:class:`UnknownBenchmarkError`, which lists the valid ones.

>>> [name for name, spec in BENCHMARKS.items() if not spec.vision]
['math500', 'aime24', 'amc23', 'minerva', 'olympiadbench', 'gsm8k', 'arithmetic']
>>> list(VISION_BENCHMARKS)
['geoqa', 'flowers102', 'pets37', 'fgvc_aircraft', 'cars196', 'cvbench', 'lisa']
>>> parse_benchmarks("math500, gsm8k,minerva_math,CV-Bench")
['math500', 'gsm8k', 'minerva', 'cvbench']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gpgrl.data.prompts import PromptPreset, resolve_prompt
from gpgrl.eval import vision as v
from gpgrl.eval.metrics import extract_final_answer
from gpgrl.eval.problem import (
    BenchmarkDownloadError,
    MissingImagesError,
    Problem,
    Row,
    RowContext,
    UnknownBenchmarkError,
)
from gpgrl.paths import ENV, DataDir, find_data_dir, hub_unreachable

__all__ = ["BENCHMARKS", "PAPER_BENCHMARKS", "VISION_BENCHMARKS", "Benchmark", "BenchmarkDownloadError",
           "MissingImagesError", "Problem", "UnknownBenchmarkError", "get_benchmark", "load_benchmark",
           "load_benchmarks", "parse_benchmarks", "parse_sources"]

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



# --- math records -> problems ----------------------------------------------------------------------------

Gold = Callable[[dict[str, Any]], str]


def _field(name: str) -> Gold:
    def get(row: dict[str, Any]) -> str:
        return str(row[name]).strip()

    get.__name__ = f"field_{name}"
    return get


def _number(name: str) -> Gold:
    return lambda row: number_to_str(row[name])


def _minerva_local_gold(row: dict[str, Any]) -> str:
    gold = last_boxed(row["solution"])
    if gold is None:
        raise ValueError(
            f"minerva record has no \\boxed{{}} answer in its solution: {row['solution'][:80]!r}"
        )
    return gold


def math_rows(question: str, gold: Gold, *, id_field: str | None = None, local_question: str | None = None,
              local_gold: Gold | None = None) -> Callable[[list[dict[str, Any]], RowContext], list[Row]]:
    """A ``rows`` function for a text benchmark: the ``question`` column and ``gold(record)``; a local copy
    (``--data-dir``) may name them differently (``local_question``, ``local_gold``). ``id_field``: a stable
    id column, else the record's index."""

    def rows(records: list[dict[str, Any]], ctx: RowContext) -> list[Row]:
        q_field = (local_question or question) if ctx.local else question
        gold_fn = (local_gold or gold) if ctx.local else gold
        out: list[Row] = []
        for i, row in enumerate(records):
            if q_field not in row:
                raise ValueError(f"{ctx.source}: record {i} has no {q_field!r} field (fields: {', '.join(row)})")
            pid = row.get(id_field) if id_field else None
            out.append((str(pid if pid is not None else i), str(row[q_field]), gold_fn(row), [], {}))
        return out

    return rows


def grade_math(text: str, problem: Problem, sizes: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    """math-verify equivalence of the completion's answer with the gold (:func:`gpgrl.rewards.grade_answer`)."""
    from gpgrl.rewards.math_grader import grade_answer

    return {"correct": bool(grade_answer(text, problem.gold))}


def grade_number(text: str, problem: Problem, sizes: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    r"""As :func:`grade_math`, and the answer must be a number written out: on an arithmetic question
    math-verify counts the question itself (``\boxed{23+48}``) equal to its sum.

    >>> p = Problem("arithmetic", "0", "23+48", "71")
    >>> grade_number("\\boxed{71}", p), grade_number("\\boxed{23+48}", p), grade_math("\\boxed{23+48}", p)
    ({'correct': True}, {'correct': False}, {'correct': True})
    """
    from gpgrl.rewards.math_grader import grade_answer

    return {"correct": bool(grade_answer(text, problem.gold, number=True))}


#: Where an answer to a plain-text (no chat template) maths prompt ends, as the Qwen2.5-Math evaluation
#: harness stops a base model: an end-of-text marker written out as text, or the start of a next problem.
#: A chat-template prompt gets none: its turn ends with the model's EOS (``<|im_end|>``), which always stops.
PLAIN_TEXT_STOP = ("</s>", "<|im_end|>", "<|endoftext|>", "\n\nQuestion:", "\n\nProblem:")


# --- the registry ----------------------------------------------------------------------------------------

Grade = Callable[[str, Problem, Sequence[tuple[int, int]]], dict[str, Any]]


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where it lives, how a record becomes a problem, its prompt and grading, its budget.

    Where: ``hub_id`` is the default source (``datasets.load_dataset(hub_id, hub_config, split=hub_split)``;
    ``"builtin:NAME"``: a generated task, always used; None: there is none, the data must be given);
    ``local_files`` are tried in order under ``--data-dir`` (a ``*`` pattern takes the first match);
    ``classes``: a class-list file next to the local data file (line i = label i).
    How: ``rows(records, RowContext)`` gives ``(id, question, gold, image refs, meta)`` per record;
    ``preset`` is the prompt (a :data:`gpgrl.data.prompts.PRESETS` name or a PromptPreset);
    ``grade(text, problem, image sizes)`` returns at least ``correct`` (and ``score``), ``script_grade``
    the same as the original evaluation script (``grading="original"``); ``extract`` gives the answer
    that votes in maj@K. ``max_new_tokens`` is the benchmark's own generation budget, ``stop`` strings
    that end an answer (see ``docs/eval.md``, "Stop strings").
    """

    name: str
    description: str
    rows: Callable[[list[dict[str, Any]], RowContext], list[Row]]
    hub_id: str | None = None
    hub_split: str = "test"
    hub_config: str | None = None
    local_files: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    preset: PromptPreset | str = "qwen_math_cot"
    grade: Grade = grade_math
    script_grade: Grade | None = None
    extract: Callable[[str], str | None] = extract_final_answer
    max_new_tokens: int = 3072
    stop: tuple[str, ...] = ()
    vision: bool = False
    classes: str | None = None
    image_subdirs: tuple[str, ...] = ()
    grader: str = "math-verify equivalence (gpgrl.rewards.grade_answer)"  # in words, for docs and results.json
    script_grader: str = ""
    original: str = ""  # the evaluation script this follows

    @property
    def builtin(self) -> bool:
        """A generated ``builtin:`` dataset: read with ``load_records`` whatever ``data_dir`` says."""
        return bool(self.hub_id) and str(self.hub_id).startswith("builtin:")

    def prompt(self) -> PromptPreset:
        """The benchmark's own prompt preset."""
        return self.preset if isinstance(self.preset, PromptPreset) else resolve_prompt(self.preset)

    @property
    def kind(self) -> str:
        """The data folder's subfolder this benchmark's local files are in: ``math`` or ``vision``."""
        return "vision" if self.vision else "math"

    def find_local(self, where: DataDir) -> Path | None:
        """The first of :attr:`local_files` under ``where`` (directly, or in its ``math/`` or ``vision/``
        folder), or None."""
        for pattern in self.local_files:
            found = where.find(self.kind, pattern)
            if found is not None:
                return found
        return None

    def local_path(self, data_dir: str | Path | DataDir) -> Path:
        """The file read under ``data_dir`` (raises FileNotFoundError naming what was expected).

        ``data_dir`` may be the folder holding ``math/`` and ``vision/``, or that subfolder itself."""
        where = data_dir if isinstance(data_dir, DataDir) else DataDir(Path(data_dir).expanduser(), "--data-dir")
        found = self.find_local(where)
        if found is not None:
            return found
        hub = (f", or leave --data-dir out to load {self.hub_id} from the Hugging Face Hub"
               if self.hub_id and not self.builtin and where.origin == "--data-dir" else "")
        first, inside = where.candidates(self.kind, self.local_files[0])
        raise FileNotFoundError(
            f"{self.name}: no data file at {first} or {inside} ({where.origin}). Pass --data-dir DIR with "
            f"{' or '.join(self.local_files)} inside (or DIR/{self.kind}/...), or --source {self.name}=FILE{hub}.")


def _math(name: str, description: str, hub_id: str, question: str, gold: Gold, local_dir: str, *,
          local_question: str | None = None, local_gold: Gold | None = None, id_field: str | None = None,
          any_jsonl: bool = False, **fields: Any) -> Benchmark:
    """A math benchmark: ``DIR/<local_dir>/test.jsonl`` locally (or any ``*.jsonl`` there, ``any_jsonl``)."""
    files = (f"{local_dir}/test.jsonl", f"{local_dir}/*.jsonl") if any_jsonl else (f"{local_dir}/test.jsonl",)
    fields.setdefault("stop", PLAIN_TEXT_STOP)
    rows = math_rows(question, gold, id_field=id_field, local_question=local_question, local_gold=local_gold)
    return Benchmark(name, description, rows, hub_id=hub_id, local_files=files, **fields)


_CLASSIFICATION = dict(
    rows=v.classification_rows, preset=v.CLASSIFICATION_PRESET, vision=True, grade=v.text_grade("classification"),
    script_grade=v.script_classification, extract=v.answer_or_none, max_new_tokens=1024,
    grader="classification reward (default: empty answer scores 0, no math-verify)",
    script_grader="Visual-RFT's script: <answer> on one line required; containment; empty answer right",
    original="Visual-RFT classification/Qwen2_VL_classification_infere.py")


def _classification(name: str, title: str, aliases: tuple[str, ...]) -> Benchmark:
    stem, _, _, subdir = v.CLASSIFICATION_SETS[name]
    return Benchmark(name, f"{title}: Visual-RFT's validation set, {{image, label, class_name}} + class list",
                     local_files=(f"visual_rft_classification/{stem}_val.jsonl",), classes=f"{stem}.txt",
                     image_subdirs=(subdir,), aliases=aliases, **_CLASSIFICATION)  # type: ignore[arg-type]


#: Every benchmark by canonical name: the math ones, then the vision ones. One entry per benchmark.
BENCHMARKS: dict[str, Benchmark] = {spec.name: spec for spec in [
    _math("math500", "MATH-500: the 500-problem MATH test subset of 'Let's Verify Step by Step'",
          "HuggingFaceH4/MATH-500", "problem", _field("answer"), "math500", id_field="unique_id",
          aliases=("math_500", "math-500")),
    _math("aime24", "AIME 2024 I and II (30 problems, integer answers 0-999)", "HuggingFaceH4/aime_2024",
          "problem", _number("answer"), "aime24", id_field="id", hub_split="train", aliases=("aime",)),
    _math("amc23", "AMC 2023 (40 problems, as in the Qwen2.5-Math / simpleRL harness)", "math-ai/amc23",
          "question", _number("answer"), "amc23", local_question="problem", id_field="id", aliases=("amc",)),
    _math("minerva", "Minerva Math (272 MIT OCW science problems)", "math-ai/minervamath", "question",
          _field("answer"), "minerva_math", local_question="problem", local_gold=_minerva_local_gold,
          id_field="idx", any_jsonl=True, aliases=("minerva_math",)),
    _math("olympiadbench", "OlympiadBench, English open-ended text-only maths (675 problems, Qwen2.5-Math split)",
          "math-ai/olympiadbench", "question", lambda row: olympiad_gold(row["final_answer"]), "olympiadbench",
          id_field="id", any_jsonl=True, aliases=("olympiad_bench", "olympiad")),
    _math("gsm8k", "GSM8K test (1319 grade-school word problems)", "openai/gsm8k", "question",
          lambda row: gsm8k_gold(row["answer"]), "gsm8k", id_field="idx", hub_config="main", max_new_tokens=512),
    _math("arithmetic", "2-digit addition, the held-out test split of builtin:arithmetic (200 questions)",
          "builtin:arithmetic", "question", _field("answer"), "arithmetic", max_new_tokens=256,
          aliases=("addition",), grade=grade_number,
          grader="math-verify equivalence, the answer written as a number (gpgrl.rewards.grade_answer, number=True)"),
    Benchmark(
        "geoqa", "GEOQA test (754 geometry questions), R1-V's prompts file", v.geoqa_rows, vision=True,
        preset=v.GEOQA_PRESET, local_files=("geoqa/geoqa_test_prompts.jsonl",), aliases=("geo_qa", "geoqa_test"),
        grade=v.text_grade("r1v_accuracy"), script_grade=v.script_geoqa, extract=v.answer_or_math,
        max_new_tokens=1024, grader="r1v_accuracy reward (math-verify on the whole text, else exact <answer> match)",
        script_grader="R1-V's script: math-verify on the whole text only", original="R1-V src/eval/test_qwen2vl_geoqa.py",
    ),
    _classification("flowers102", "Oxford Flowers-102", ("flowers", "oxford_flowers", "oxford_flowers102")),
    _classification("pets37", "Oxford-IIIT Pets-37", ("pets", "oxford_pets")),
    _classification("fgvc_aircraft", "FGVC-Aircraft (100 variants)", ("aircraft", "fgvc-aircraft", "aircraft100")),
    _classification("cars196", "Stanford Cars-196", ("cars", "stanford_cars")),
    Benchmark(
        "cvbench", "CV-Bench (2638 multiple-choice questions: Count, Relation, Depth, Distance)", v.cvbench_rows,
        vision=True, preset=v.CVBENCH_PRESET, local_files=("cvbench/test.parquet", "cvbench/test.jsonl"),
        hub_id="nyu-visionx/CV-Bench", aliases=("cv-bench", "cv_bench"), grade=v.grade_cvbench,
        script_grade=v.script_cvbench, extract=v.answer_or_math, max_new_tokens=1024,
        grader="choice_accuracy reward (math-verify, exact answer, or the last standalone letter A-H), or the "
        "answer is the gold option's text",
        script_grader="VisualThinker's script: math-verify string extraction vs the letter and option text",
        original="VisualThinker-R1-Zero src/eval/evaluate_Qwen2_VL_CVBench.py",
    ),
    Benchmark(
        "lisa", "LISA ReasonSeg grounding: box from the answer vs the gold box (gIoU, cIoU)", v.lisa_rows,
        vision=True, preset=v.LISA_PRESET, local_files=("lisa/test.jsonl", "lisa/test.json", "lisa/test.parquet"),
        aliases=("lisa_grounding", "reasonseg"), grade=v.grade_lisa, script_grade=v.script_lisa,
        extract=v.answer_or_none, max_new_tokens=128,
        grader="box IoU; correct = IoU > 0.5; gIoU = mean IoU, cIoU = sum intersections / sum unions",
        script_grader="as the default, with the first box anywhere in the output (Visual-RFT's script)",
        original="Visual-RFT lisa_evaluation/Qwen2_VL_lisa_infere.py (box IoU; the paper's masks come from SAM)",
    ),
]}

#: The vision benchmarks of :data:`BENCHMARKS` (a read-only view).
VISION_BENCHMARKS = MappingProxyType({name: spec for name, spec in BENCHMARKS.items() if spec.vision})

# The five benchmarks of the paper's text results (GSM8K is extra).
PAPER_BENCHMARKS = ("math500", "aime24", "amc23", "minerva", "olympiadbench")


def _lookup() -> dict[str, str]:
    """Every accepted spelling (canonical names and aliases, lower case) -> canonical name."""
    return {key: spec.name for spec in BENCHMARKS.values() for key in (spec.name, *spec.aliases)}


def all_benchmark_names() -> list[str]:
    """Every benchmark ``gpgrl eval`` knows: the math ones, then the vision ones."""
    return list(BENCHMARKS)


def get_benchmark(name: str) -> Benchmark:
    """The spec of benchmark ``name`` (case-insensitive, aliases such as ``minerva_math`` or ``cv-bench``);
    raises :class:`UnknownBenchmarkError` listing the valid names."""
    key = _lookup().get(name.strip().lower())
    if key is None:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}; choose from {', '.join(all_benchmark_names())} (comma-separated)"
        )
    return BENCHMARKS[key]


def canonical_name(name: str) -> str:
    """The canonical name of a benchmark (case-insensitive, aliases)."""
    return get_benchmark(name).name


def is_vision_benchmark(name: str) -> bool:
    """Whether ``name`` is a known vision benchmark (False for any other name)."""
    key = _lookup().get(name.strip().lower())
    return key is not None and BENCHMARKS[key].vision


def vision_spec(name: str) -> Benchmark | None:
    """The spec of a vision benchmark name (canonical or alias), or None for any other name."""
    return get_benchmark(name) if is_vision_benchmark(name) else None


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


# --- loading ---------------------------------------------------------------------------------------------


def _no_local(spec: Benchmark, where: DataDir | None) -> str:
    """Where a local copy of ``spec`` was looked for, in words."""
    if where is None:
        return f"no --data-dir, {ENV} unset"
    first, inside = where.candidates(spec.kind, spec.local_files[0])
    return f"{where.describe()} holds neither {first.relative_to(where.path)} nor {inside.relative_to(where.path)}"


def _local_fix(spec: Benchmark) -> str:
    return (f"set {ENV} to the folder holding math/ and vision/, or pass --data-dir DIR with "
            f"{' or '.join(spec.local_files)} inside, or --source {spec.name}=FILE (.jsonl/.json/.parquet)")


def _read(spec: Benchmark, where: str, subset: str | None = None) -> list[dict[str, Any]]:
    """The records of ``where`` (a file, a ``builtin:`` task or a Hub id); a Hub failure means "use a local
    copy", and the message says how."""
    from gpgrl.data.datasets import DatasetError, load_records

    try:
        return load_records(where, split=spec.hub_split, subset=subset)
    except DatasetError as e:  # network, auth, renamed dataset
        if Path(where).expanduser().exists():
            raise ValueError(f"{spec.name}: {e}") from None
        fix = _local_fix(spec) if spec.local_files else f"pass --source {spec.name}=FILE (.jsonl/.json/.parquet)"
        raise BenchmarkDownloadError(
            f"{spec.name}: could not load {where} (split {spec.hub_split}) from the Hugging Face Hub "
            f"({str(e).split(': ', 1)[-1].split('. Pass')[0]}). Offline, {fix}."
        ) from e


def _records(spec: Benchmark, data_dir: str | Path | None,
             source: str | None) -> tuple[list[dict[str, Any]], RowContext]:
    """The benchmark's raw records and where they came from: ``source``, a builtin task, the data folder
    (:func:`gpgrl.paths.find_data_dir`: ``data_dir``, else ``$GPGRL_DATA``, else the checkout's
    ``../shared/data``), the Hub."""
    if source is not None:
        local = Path(source).expanduser().exists()
        return _read(spec, source), RowContext(spec.name, source, local=local)
    if spec.builtin:
        return _read(spec, str(spec.hub_id)), RowContext(spec.name, str(spec.hub_id))
    where = find_data_dir(data_dir)
    if where is not None and where.origin == ENV and not where.path.is_dir():
        raise FileNotFoundError(f"{ENV}={where.path} is not a folder: set it to the folder holding math/ and "
                                f"vision/, or unset it (then the benchmarks are read from the Hugging Face Hub)")
    path = None
    if where is not None and spec.local_files:
        # a folder the user named must hold the file; GPGRL_DATA or the checkout's copy may lack a benchmark
        # (cvbench: then the Hub)
        path = spec.local_path(where) if where.origin == "--data-dir" else spec.find_local(where)
    if path is not None:
        classes = None
        if spec.classes:
            class_file = path.parent / spec.classes
            if not class_file.is_file():
                raise FileNotFoundError(f"{spec.name}: no class list at {class_file} (one class name per line, "
                                        "line i = label i)")
            classes = tuple(line.strip() for line in class_file.read_text(encoding="utf-8").splitlines()
                            if line.strip())
        return _read(spec, str(path)), RowContext(spec.name, str(path), local=True, classes=classes)
    if spec.hub_id is None:
        raise FileNotFoundError(
            f"{spec.name} has no Hugging Face copy to fall back on ({_no_local(spec, where)}): {_local_fix(spec)} "
            "(schema in docs/eval.md)")
    problem = hub_unreachable()
    if problem:
        raise BenchmarkDownloadError(
            f"{spec.name}: no local copy ({_no_local(spec, where)}) and the Hugging Face Hub is out of reach "
            f"({problem}): {_local_fix(spec)}; or, with {spec.hub_id} in the Hugging Face cache, set "
            "HF_DATASETS_OFFLINE=1")
    return _read(spec, spec.hub_id, spec.hub_config), RowContext(spec.name, spec.hub_id)


def load_benchmark(
    name: str,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    image_dir: str | Path | None = None,
    source: str | None = None,
) -> list[Problem]:
    """The problems of one benchmark, first ``limit`` only, from ``source`` (a file or Hub id) if given, else
    from the benchmark data folder (:func:`gpgrl.paths.find_data_dir`: ``data_dir`` if given, else
    ``$GPGRL_DATA``, else ``../shared/data`` beside a source checkout; the folder holding ``math/`` and
    ``vision/``, or that subfolder itself), else from its default source (the Hub, or a builtin task).

    A vision benchmark's images are resolved (looked up, not opened) under ``image_dir``. Raises
    FileNotFoundError / MissingImagesError / ValueError / BenchmarkDownloadError saying what to change.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    spec = get_benchmark(name)
    records, ctx = _records(spec, data_dir, source)
    rows = spec.rows(records[:limit] if limit is not None else records, ctx)
    images = v.resolve_images(spec.name, [r[3] for r in rows], image_dir, spec.image_subdirs) if spec.vision \
        else [[] for _ in rows]
    return [Problem(spec.name, pid, question, gold, images=tuple(refs), meta=meta)
            for (pid, question, gold, _, meta), refs in zip(rows, images, strict=True)]


def load_vision_benchmark(name: str, **kwargs: Any) -> list[Problem]:
    """:func:`load_benchmark` for a vision benchmark (ValueError for any other name)."""
    if not is_vision_benchmark(name):
        raise ValueError(f"{name!r} is not a vision benchmark")
    return load_benchmark(name, **kwargs)


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
