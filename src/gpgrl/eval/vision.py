r"""Vision-language benchmarks for ``gpgrl eval``: GEOQA, the four Visual-RFT classification sets, CV-Bench
and LISA grounding, with the prompts and grading of the forks the GPG paper trains them in.

=================  ===========================================  =====================  ==========================
name               data (``--data-dir DIR``)                    images                 graded with
=================  ===========================================  =====================  ==========================
``geoqa``          ``DIR/geoqa/geoqa_test_prompts.jsonl``       ``--image-dir``        ``r1v_accuracy``
``flowers102``     ``DIR/visual_rft_classification/``           ``--image-dir``        ``classification``
``pets37``         ``{oxford_flowers,pets,fgvc_aircraft,``      ``--image-dir``        ``classification``
``fgvc_aircraft``  ``stanford_cars}{.txt,_val.jsonl}``          ``--image-dir``        ``classification``
``cars196``                                                     ``--image-dir``        ``classification``
``cvbench``        ``nyu-visionx/CV-Bench`` (Hub) or a file     in the data, or paths  ``choice_accuracy``
``lisa``           a file (``--source lisa=FILE``)              ``--image-dir``        box IoU: gIoU, cIoU
=================  ===========================================  =====================  ==========================

``--source NAME=PATH_OR_ID`` reads a benchmark from a given ``.jsonl``/``.json``/``.parquet`` file or
Hugging Face dataset id instead (the schemas are in ``docs/eval.md``). Image references are resolved and
checked (a ``stat``, no decoding) when the benchmark is loaded, so a missing image fails before a model is
loaded, naming the folder and the first missing file; the images themselves are opened only when their
prompt is built, one generation batch at a time.

LISA's two metrics, per sample, with the predicted box (the first ``(x1,y1),(x2,y2)`` of the answer, on
Qwen2-VL's 0-1000 scale of the image) and the gold box, both in pixels:

* ``gIoU`` = the mean over samples of IoU (no box = 0): LISA's "gIoU" (a mean of per-image IoUs, not
  the generalized IoU of the ``grounding_giou`` reward);
* ``cIoU`` = sum of intersections / sum of unions over the whole benchmark (no box: intersection 0,
  union = the gold box's area), so large objects weigh more.

Both are computed by :func:`gpgrl.eval.metrics.grounding_ious`. The registry entries of these
benchmarks are in :data:`gpgrl.eval.benchmarks.BENCHMARKS`; this module holds their prompts, image
look-up, grading and record readers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from gpgrl.data.prompts import R1_ZERO_SYSTEM_PROMPT, PromptPreset
from gpgrl.eval.metrics import extract_final_answer
from gpgrl.eval.problem import MissingImagesError, Problem, Row, RowContext

# --- prompts (the forks' evaluation scripts) ------------------------------------------------------------

ANSWER_TAGS = "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."

#: R1-V ``src/eval/test_qwen2vl_geoqa.py``: no system prompt, image then text.
GEOQA_PRESET = PromptPreset(
    "r1v_geoqa", None,
    "{question} Output the thinking process in <think> </think> and final answer (number) in <answer> </answer> tags.",
    description="R1-V GEOQA: the question, then '<think>'/'<answer>' instructions (final answer: a number)",
)

#: Visual-RFT ``classification/Qwen2_VL_classification_infere.py``: the whole text is fixed per data set
#: (the question below), sent as ``"<image>\n" + text`` after the image (the literal ``<image>`` is theirs).
CLASSIFICATION_PRESET = PromptPreset(
    "visual_rft_classification", None, "<image>\n{question}",
    description="Visual-RFT classification: '<image>\\n' + the data set's fixed question",
)

#: VisualThinker-R1-Zero ``src/eval/evaluate_Qwen2_VL_CVBench.py`` (instruct models, reasoning prompt).
CVBENCH_PRESET = PromptPreset(
    "visualthinker_cvbench", None, "{question}\n" + ANSWER_TAGS,
    description="VisualThinker CV-Bench: CV-Bench's prompt, then the <think>/<answer> instruction",
)

#: Visual-RFT ``lisa_evaluation/Qwen2_VL_lisa_infere.py`` (its typos kept: the model was trained on them).
LISA_PRESET = PromptPreset(
    "visual_rft_lisa", R1_ZERO_SYSTEM_PROMPT,
    "Output the bounding box in the image corresponding to the instruction: {question}. Output the thinking "
    "process in <think> </think> and your grouding box. Following \"<think> thinking process </think>\\n"
    "<answer>(x1,y1),(x2,y2)</answer>)\" format.",
    description="Visual-RFT LISA grounding: R1-Zero system prompt, the box instruction",
)

# name -> (file stem in visual_rft_classification, object, what to identify, the original's image folder)
CLASSIFICATION_SETS: dict[str, tuple[str, str, str, str]] = {
    "flowers102": ("oxford_flowers", "a plant", "species of the plant", "oxford_flowers/jpg"),
    "pets37": ("pets", "a pet", "species of the pet", "pets/images"),
    "fgvc_aircraft": ("fgvc_aircraft", "an aircraft", "model of the aircraft", "fgvc-aircraft-2013b/data/images"),
    "cars196": ("stanford_cars", "a car", "model of the car", "cars_test"),
}


def classification_question(name: str) -> str:
    """The fixed question of a Visual-RFT classification set (sent after ``<image>\\n``).

    >>> print(classification_question("pets37"))  # doctest: +NORMALIZE_WHITESPACE
    This is an image containing a pet. Please identify the species of the pet based on the image.
    Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.The output
    answer format should be as follows:
    <think> ... </think> <answer>species name</answer>
    Please strictly follow the format.
    """
    _, thing, what, _ = CLASSIFICATION_SETS[name]
    # "tags.The": the original concatenates the two sentences without a space.
    return (f"This is an image containing {thing}. Please identify the {what} based on the image.\n"
            f"{ANSWER_TAGS}The output answer format should be as follows:\n"
            "<think> ... </think> <answer>species name</answer>\nPlease strictly follow the format.")


# --- images ----------------------------------------------------------------------------------------------


def _candidates(ref: str, image_dir: Path, subdirs: Sequence[str]) -> Iterable[Path]:
    """Where a relative image path may be under ``image_dir``: as given, in one of the original layout's
    folders, then with its leading folders dropped one at a time (``./Geo170K/images/test/0.png`` is also
    looked for as ``images/test/0.png``, ``test/0.png`` and ``0.png``)."""
    parts = [p for p in Path(ref).parts if p not in (".", "")]
    yield image_dir.joinpath(*parts)
    for sub in subdirs:
        yield image_dir / sub / parts[-1]
    for i in range(1, len(parts)):
        yield image_dir.joinpath(*parts[i:])


def resolve_images(name: str, refs: list[list[Any]], image_dir: str | Path | None,
                   subdirs: Sequence[str] = ()) -> list[list[Any]]:
    """Every image reference resolved to an existing file path (``str``), or kept (image bytes, PIL images).

    Nothing is decoded: this only looks files up. Raises :class:`MissingImagesError` naming the folder, the
    number missing and the first missing file.
    """
    folder = Path(image_dir).expanduser() if image_dir is not None else None
    out: list[list[Any]] = []
    missing: list[tuple[str, str]] = []  # (reference, where it was first looked for)
    for row in refs:
        resolved = []
        for ref in row:
            if isinstance(ref, dict) and ref.get("bytes"):
                resolved.append(ref)
                continue
            if isinstance(ref, dict):
                ref = ref.get("path")
            if not isinstance(ref, (str, Path)):
                if hasattr(ref, "size") and hasattr(ref, "convert"):  # a PIL image
                    resolved.append(ref)
                    continue
                raise ValueError(f"{name}: cannot read an image from {ref!r}; give a file path or image bytes")
            path = Path(ref).expanduser()
            if path.is_absolute():
                found = path if path.is_file() else None
                looked = path
            elif folder is None:
                raise MissingImagesError(
                    f"{name}: its images are files ({str(ref)!r}, ...) relative to an image folder: pass "
                    "--image-dir DIR (see docs/eval.md, 'Vision benchmarks')")
            else:
                tried = list(_candidates(str(ref), folder, subdirs))
                found = next((p for p in tried if p.is_file()), None)
                looked = tried[0]
            if found is None:
                missing.append((str(ref), str(looked)))
                resolved.append(None)
            else:
                resolved.append(str(found))
        out.append(resolved)
    if missing:
        total = sum(len(r) for r in refs)
        where = f"under --image-dir {str(folder)!r}" if folder is not None else "(absolute paths)"
        ref, path = missing[0]
        raise MissingImagesError(
            f"{name}: {len(missing)} of {total} images not found {where}; first missing: {ref!r} "
            f"(looked for {path!r}). Point --image-dir at the folder that holds the benchmark's images "
            "(see docs/eval.md, 'Vision benchmarks')")
    return out


# --- grading ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _reward(name: str) -> Callable[..., list[float | None]]:
    from gpgrl.rewards import get_reward

    return get_reward(name)


def text_grade(reward: str) -> Callable[[str, Problem, Sequence[tuple[int, int]]], dict[str, Any]]:
    def grade(text: str, problem: Problem, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
        score = _reward(reward)([text], answer=[problem.gold])[0]
        score = 0.0 if score is None else float(score)
        return {"correct": score >= 1.0, "score": score}

    grade.__name__ = f"grade_{reward}"
    return grade


def grade_cvbench(text: str, problem: Problem, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """``choice_accuracy``; also right when the answer is the gold option's text (``<answer>2</answer>`` for
    ``(B) 2``), which VisualThinker's CV-Bench script accepts too."""
    from gpgrl.rewards.vision import answer_content

    out = text_grade("choice_accuracy")(text, problem, sizes)
    option = problem.meta.get("option")
    if not out["correct"] and option and answer_content(text).lower() == str(option).strip().lower():
        out.update(correct=True, score=1.0)
    return out


# --- the original scripts' grading (``grading="original"``) -----------------------------------------------

_SCRIPT_TIMEOUT = 5.0  # seconds for one math-verify check, as the rewards' default


def script_geoqa(text: str, problem: Problem, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """R1-V's script: math-verify on the whole output against the ground truth, nothing else."""
    from gpgrl.rewards.vision import mv_equal

    ok = mv_equal(problem.gold, text, _SCRIPT_TIMEOUT)
    return {"correct": ok, "score": float(ok)}


def script_classification(text: str, problem: Problem, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Visual-RFT's script: an ``<answer>...</answer>`` on one line is required (else wrong); then the
    squashed class name and answer are right if either contains the other (an empty answer is right)."""
    import re

    match = re.search(r"<answer>(.*?)</answer>", text)  # no DOTALL, as the script
    if match is None:
        return {"correct": False, "score": 0.0}
    answer = match.group(1).replace(" ", "").replace("_", "").lower()
    gold = problem.gold.replace(" ", "").replace("_", "").lower()
    ok = gold in answer or answer in gold
    return {"correct": ok, "score": float(ok)}


_LETTERS = ("A", "B", "C", "D", "E", "F", "a", "b", "c", "d", "e", "f", "(a)", "(b)", "(c)", "(d)", "(e)", "(f)",
            "(A)", "(B)", "(C)", "(D)", "(E)", "(F)")


def _cvbench_script_match(answer: str, choices: list[str], gold: str) -> bool:
    """VisualThinker's CV-Bench check (run in a grading worker under a time limit): math-verify parses the
    answer with LaTeX, expression and string extraction (the option letters and texts), and compares it
    with the gold option's text (and lower-cased), its letter, and ``(B)`` in both cases."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

    try:
        config = [LatexExtractionConfig(), ExprExtractionConfig(),
                  StringExtractionConfig(strings=_LETTERS + tuple(str(c) for c in choices))]
        parsed = parse(answer, extraction_config=config, parsing_timeout=None)  # type: ignore[arg-type]
        golds = [gold[1], gold[1].lower(), gold.lower(), gold]
        index = ord(gold[1]) - 65
        if 0 <= index < len(choices):
            golds = [str(choices[index]).lower(), str(choices[index]), *golds]
        return bool(verify(target=parsed, gold=golds, timeout_seconds=None))  # type: ignore[arg-type]
    except Exception:  # math-verify/sympy errors on odd input: not a match
        return False


def script_cvbench(text: str, problem: Problem, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """VisualThinker's script: the ``<answer>`` content (one line), else the whole output, matched by
    :func:`_cvbench_script_match`."""
    import re

    from gpgrl.rewards._deadline import limited_call

    match = re.search(r"<answer>\s*(.*?)\s*</answer>", text)
    answer = match.group(1) if match and match.group(1) else text
    gold = problem.gold if len(problem.gold) == 3 else f"({problem.gold[:1]})"
    ok = bool(limited_call("gpgrl.eval.vision:_cvbench_script_match",
                           (answer, list(problem.meta.get("choices", [])), gold), _SCRIPT_TIMEOUT, False))
    return {"correct": ok, "score": float(ok)}


def script_lisa(text: str, problem: Problem, sizes: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Visual-RFT's script: the first ``(x1,y1),(x2,y2)`` anywhere in the output, inside ``<answer>`` or not."""
    return grade_lisa(text, problem, sizes, anywhere=True)


def grade_lisa(text: str, problem: Problem, sizes: Sequence[tuple[int, int]], anywhere: bool = False
                ) -> dict[str, Any]:
    """IoU of the answer's first box (0-1000 scale of the image) with the gold box (pixels); ``anywhere``:
    the first box in the whole text instead of in the ``<answer>`` block."""
    from gpgrl.rewards.boxes import box_overlap, first_grounding_box
    from gpgrl.rewards.vision import answer_content

    width, height = sizes[0]
    box = first_grounding_box(text if anywhere else answer_content(text))
    pred = None if box is None else [box[0] * width / 1000, box[1] * height / 1000,
                                     box[2] * width / 1000, box[3] * height / 1000]
    inter, union = box_overlap(pred, problem.meta["box"])
    iou = inter / union if union > 0 else 0.0
    return {"correct": iou > 0.5, "score": iou, "iou": iou, "intersection": inter, "union": union,
            "pred_box": None if pred is None else [round(v, 2) for v in pred]}


def answer_or_none(text: str) -> str | None:
    import re

    match = re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    return match.group(1).strip() if match else None


def answer_or_math(text: str) -> str | None:
    return answer_or_none(text) or extract_final_answer(text)


# --- loaders: rows -> problems --------------------------------------------------------------------------


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) and value else value


def _get(row: dict[str, Any], names: Sequence[str], source: str, i: int) -> Any:
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise ValueError(f"{source}: record {i} has no {' or '.join(repr(n) for n in names)} field "
                     f"(fields: {', '.join(row)})")


def geoqa_rows(rows: list[dict[str, Any]], ctx: RowContext) -> list[Row]:
    """R1-V's GEOQA prompts file: image path, question, ground truth."""
    source, out = ctx.source, []
    for i, r in enumerate(rows):
        image = _get(r, ("image_path", "image"), source, i)
        out.append((str(r.get("id", i)), str(_get(r, ("question", "problem"), source, i)),
                    str(_get(r, ("ground_truth", "answer", "solution"), source, i)).strip(),
                    list(image) if isinstance(image, list) else [image], {}))
    return out


def classification_rows(rows: list[dict[str, Any]], ctx: RowContext) -> list[Row]:
    """A Visual-RFT classification set: the gold is ``classes[label]`` when the class list is known (the
    original's ``categories[label]``), else the record's ``class_name``."""
    source, classes, question, out = ctx.source, ctx.classes, classification_question(ctx.name), []
    for i, r in enumerate(rows):
        image = _get(r, ("image", "image_path"), source, i)
        if classes is not None and "label" in r:
            label = int(r["label"])
            if not 0 <= label < len(classes):
                raise ValueError(f"{source}: record {i} has label {label}, outside the {len(classes)} classes")
            gold = classes[label]  # as the original: categories[label]
        else:
            gold = str(_get(r, ("class_name", "answer"), source, i))
        out.append((str(r.get("id", i)), question, gold, [image], {"label": r.get("label")}))
    return out


def cvbench_rows(rows: list[dict[str, Any]], ctx: RowContext) -> list[Row]:
    """CV-Bench: its prompt (else the question and lettered choices), the gold letter as ``(B)``."""
    source, out = ctx.source, []
    for i, r in enumerate(rows):
        if r.get("prompt"):
            question = str(r["prompt"])
        else:  # no CV-Bench prompt column: the question and its lettered choices
            choices = _get(r, ("choices",), source, i)
            question = str(_get(r, ("question",), source, i)) + "".join(
                f"\n({chr(65 + k)}) {c}" for k, c in enumerate(choices))
        gold = str(_get(r, ("answer",), source, i)).strip()
        if len(gold) == 1 and gold.isalpha():
            gold = f"({gold.upper()})"
        image = _get(r, ("image", "image_path"), source, i)
        meta: dict[str, Any] = {"category": str(r["task"])} if r.get("task") else {}
        choices = r.get("choices")
        letter = ord(gold[1]) - 65 if len(gold) == 3 and gold[0] == "(" and gold[2] == ")" else -1
        if isinstance(choices, (list, tuple)):
            meta["choices"] = [str(c) for c in choices]
            if 0 <= letter < len(choices):
                meta["option"] = str(choices[letter])  # the gold option's text
        out.append((str(r.get("idx", i)), question, gold, [image], meta))
    return out


def _box(value: Any, source: str, i: int) -> list[float]:
    box = value[0] if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)) else value
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box):
        raise ValueError(f"{source}: record {i}: the gold box must be [x1, y1, x2, y2] in pixels (or a list of "
                         f"such boxes, the first is used), got {value!r}")
    return [float(v) for v in box]


def lisa_rows(rows: list[dict[str, Any]], ctx: RowContext) -> list[Row]:
    """LISA grounding: the instruction and the gold box in pixels."""
    source, out = ctx.source, []
    for i, r in enumerate(rows):
        box = _box(_get(r, ("boxes", "box", "bbox"), source, i), source, i)
        instruction = str(_first(_get(r, ("instruction", "text", "question"), source, i)))
        image = _get(r, ("image", "image_path"), source, i)
        gold = f"({box[0]:g},{box[1]:g}),({box[2]:g},{box[3]:g})"  # for reading samples.jsonl (pixels)
        out.append((str(r.get("id", i)), instruction, gold, [image], {"box": box}))
    return out


def open_images(problem: Problem) -> list[Any]:
    """The problem's images as RGB PIL images, opened now (one generation batch at a time)."""
    from gpgrl.data.images import load_image

    return [load_image(ref) for ref in problem.images]


def image_labels(problem: Problem) -> list[str]:
    """The problem's images as text for ``samples.jsonl``: the file path, or ``<bytes>``."""
    return [ref if isinstance(ref, str) else "<bytes>" for ref in problem.images]
