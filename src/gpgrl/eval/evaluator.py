"""The evaluation loop: prompts -> K samples per problem -> grading -> metrics, records and files.

:func:`evaluate` works on an in-memory model, so the trainer can call it every N steps on all processes:
with an ``accelerator`` the problems are sharded over processes (problem i goes to process
``i % num_processes``), each process samples and grades its share, the per-sample records are gathered
with ``accelerate.utils.gather_object``, and every process computes the same metrics from all of them.
Files and the console table are written by the main process only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from gpgrl.data.prompts import PromptBuilder, PromptPreset, apply_overrides, resolve_prompt
from gpgrl.eval.benchmarks import Problem, load_benchmarks, parse_sources, vision_spec
from gpgrl.eval.metrics import compute_metrics, extract_final_answer, summarize
from gpgrl.eval.vision import image_labels, open_images
from gpgrl.rollout.engine import HFGenerateEngine, Prompt, RolloutEngine, SamplingParams, text_tokenizer

logger = logging.getLogger(__name__)

GradeFn = Callable[[str, str], bool]


def _default_grader() -> GradeFn:
    from gpgrl.rewards.math_grader import grade_answer

    return grade_answer


# --- files ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[Any]:
    """Write ``path`` through a temporary file in the same folder and ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_outputs(
    output_dir: str | Path, metrics: dict[str, float], records: list[dict[str, Any]], config: dict[str, Any]
) -> tuple[Path, Path]:
    """``results.json`` (metrics, per-benchmark summary, config) and ``samples.jsonl`` (one row per sample)."""
    out = Path(output_dir)
    results = {"metrics": metrics, "per_benchmark": summarize(records), "config": config}
    with atomic_open(out / "results.json") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with atomic_open(out / "samples.jsonl") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return out / "results.json", out / "samples.jsonl"


#: The rows of an evaluation in progress, in its output folder (deleted once results.json is written).
PARTIAL_FILE = "samples.partial.jsonl"
#: Settings that may differ between an interrupted evaluation and the run that continues it.
_RUN_ONLY = ("batch_size", "num_processes", "timestamp")


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two evaluations the same one: their config, JSON-normalised, without run-only settings,
    and for a local model the names, sizes and times of its files (a folder saved over is another model)."""
    identity = {k: v for k, v in config.items() if k not in _RUN_ONLY}
    model = Path(str(config.get("model") or "")).expanduser()
    if config.get("model") and model.exists():
        files = sorted(model.iterdir()) if model.is_dir() else [model]
        identity["model_files"] = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]
    return json.loads(json.dumps(identity, default=str))


def _finished(partial: Path, config: dict[str, Any], samples: int) -> list[dict[str, Any]]:
    """The rows of problems that an earlier run of the same evaluation finished (all ``samples`` of them);
    none when the file is missing or belongs to another evaluation. A line cut by a kill is skipped."""
    if not partial.is_file():
        return []
    lines = partial.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("evaluation") != _identity(config):
        return []
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows.setdefault((row["benchmark"], row["problem_index"]), []).append(row)
    return [r for group in rows.values() if len(group) == samples for r in group]


def _start_partial(partial: Path, config: dict[str, Any], done: list[dict[str, Any]]) -> None:
    """Rewrite the partial file with its header and the rows kept (atomically)."""
    with atomic_open(partial) as f:
        f.write(json.dumps({"evaluation": _identity(config)}, ensure_ascii=False) + "\n")
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in done)


def render_table(records: list[dict[str, Any]], title: str = "gpgrl eval") -> Any:
    """A rich Table: one row per benchmark plus the average."""
    from rich.table import Table

    summary = summarize(records)
    k = max((int(row["samples"]) for row in summary.values()), default=1)
    table = Table(title=title)
    table.add_column("benchmark")
    grounding = [name for name in ("gIoU", "cIoU") if any(name in row for row in summary.values())]
    for name in (
        ["problems", "pass@1", f"maj@{k}"] + ([f"pass@{k}"] if k > 1 else []) + grounding + ["mean len", "truncated"]
    ):
        table.add_column(name, justify="right")

    def row_cells(row: dict[str, float]) -> list[str]:
        cells = [f"{int(row['problems'])}", f"{100 * row['pass@1']:.1f}", f"{100 * row[f'maj@{k}']:.1f}"]
        if k > 1:
            cells.append(f"{100 * row[f'pass@{k}']:.1f}")
        cells += [f"{100 * row[name]:.1f}" if name in row else "-" for name in grounding]
        return [*cells, f"{row['mean_length']:.0f}", f"{100 * row['truncation_rate']:.1f}%"]

    for bench, row in summary.items():
        table.add_row(bench, *row_cells(row))
    if len(summary) > 1:
        avg = {
            name: sum(r[name] for r in summary.values()) / len(summary)
            for name in next(iter(summary.values()))
            if all(name in r for r in summary.values())
        }
        avg["problems"] = sum(r["problems"] for r in summary.values())
        table.add_row("avg", *row_cells(avg), style="bold")
    return table


# --- the loop -------------------------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def _seeded(seed: int | None, rank: int) -> Iterator[None]:
    """Seed sampling without disturbing the caller's (the trainer's) RNG state, which is restored on exit."""
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + rank)
        yield


def evaluate(
    model: torch.nn.Module | None,
    tokenizer: Any,
    benchmarks: str | Sequence[str] | Mapping[str, Sequence[Problem]],
    *,
    samples: int = 1,
    max_new_tokens: int = 3072,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    batch_size: int = 32,
    prompt: str | PromptPreset | None = None,
    system_prompt: str | None = None,
    template: str | None = None,
    chat_template: bool | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    image_dir: str | Path | None = None,
    sources: Mapping[str, str] | Sequence[str] | None = None,
    grading: str = "reward",
    output_dir: str | Path | None = None,
    accelerator: Any = None,
    show_progress: bool = True,
    show_table: bool | None = None,
    engine: RolloutEngine | None = None,
    seed: int | None = None,
    model_name: str | None = None,
    grade_fn: GradeFn | None = None,
    extract_fn: Callable[[str], str | None] | None = None,
    prefix: str = "eval",
) -> dict[str, float]:
    """Sample ``samples`` completions per problem, grade them, and return ``{prefix}/<bench>/<metric>``.

    Args:
        model: the policy (DDP-wrapped is fine with ``accelerator``); may be None when ``engine`` is given.
        tokenizer: its tokenizer; for a vision-language model, its processor (needed by vision benchmarks).
        benchmarks: names (``"math500,aime24"`` or a list) loaded from ``data_dir`` or the Hub, or
            ``{name: problems}`` already loaded with :func:`gpgrl.eval.load_benchmarks` (a trainer that
            evaluates every N steps loads once).
        samples: K completions per problem; pass@1 is averaged over them, maj@K votes among them.
        max_new_tokens, temperature, top_p, top_k: sampling (temperature 0 = greedy; use > 0 with K > 1).
        batch_size: most rows (prompt x sample) per generate call; also the progress-bar step.
        prompt: a preset name (see :data:`gpgrl.eval.PRESETS`: ``qwen_math_cot``, ``qwen_boxed``,
            ``r1_distill``, ``r1_think``, ``open_r1``, ``plain``) or a PromptPreset, used for every
            benchmark; None (the default) = each benchmark's own: ``qwen_math_cot`` for math, the fork's
            prompt for a vision benchmark (:mod:`gpgrl.eval.vision`). ``system_prompt`` / ``template`` /
            ``chat_template`` override its fields ("" = no system prompt).
        data_dir: local benchmark folder (see :mod:`gpgrl.eval.benchmarks`); None = Hugging Face Hub.
        limit: first N problems of each benchmark.
        image_dir: the folder vision benchmarks' image paths are relative to.
        sources: ``{benchmark: file or Hub id}`` (or ``["lisa=FILE"]``) to read instead of ``data_dir``.
        grading: vision benchmarks: ``"reward"`` (the registered rewards, see ``docs/eval.md``) or
            ``"original"`` (what each fork's evaluation script counts as right, to compare with its numbers).
        output_dir: where ``results.json`` and ``samples.jsonl`` go (main process only); None = no files.
        accelerator: an ``accelerate.Accelerator`` to shard problems over processes (all must call this).
        show_progress: a rich progress bar over generation batches (main process).
        show_table: print the results table (main process); default: when ``output_dir`` is set.
        engine: a :class:`~gpgrl.rollout.RolloutEngine` to sample with (default: transformers generate).
        seed: seeds sampling (``seed + process_index``) inside a forked RNG, leaving the caller's RNG as it was.
        model_name: recorded in results.json (default: the model's ``name_or_path``).
        grade_fn: ``(completion, gold) -> bool`` for math benchmarks (default:
            :func:`gpgrl.rewards.grade_answer`, math-verify); vision benchmarks grade with their own reward.
        extract_fn: ``completion -> answer`` for the audit rows and majority voting (math benchmarks).
        prefix: metric namespace.

    Returns:
        Flat metrics, e.g. ``eval/math500/pass@1``, ``eval/math500/maj@4``, ``eval/math500/pass@4``,
        ``eval/math500/mean_length``, ``eval/math500/truncation_rate``, and ``eval/avg/...`` (mean over
        benchmarks), identical on every process. LISA adds ``eval/lisa/gIoU`` and ``eval/lisa/cIoU``;
        CV-Bench adds ``eval/cvbench/pass@1/<task>``.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
    if samples > 1 and temperature == 0:  # identical answers; vLLM refuses n > 1 with greedy decoding
        raise ValueError(f"samples={samples} with temperature 0 (greedy) would give {samples} identical answers per "
                         "problem; use a temperature > 0 (e.g. 0.6) or samples=1")
    if isinstance(benchmarks, Mapping):
        problems_by_bench = {name: list(ps)[:limit] if limit else list(ps) for name, ps in benchmarks.items()}
    else:
        problems_by_bench = load_benchmarks(benchmarks, data_dir=data_dir, limit=limit, image_dir=image_dir,
                                            sources=sources)
    if grading not in ("reward", "original"):
        raise ValueError(f"grading must be 'reward' or 'original', got {grading!r}")
    visions = {bench: spec for bench in problems_by_bench if (spec := vision_spec(bench)) is not None}
    if visions and not hasattr(tokenizer, "image_processor"):
        raise ValueError(f"{', '.join(visions)}: a vision benchmark needs a vision-language model and its processor "
                         "(pass the processor as the tokenizer)")

    def preset_of(bench: str) -> PromptPreset:
        if prompt is not None:
            chosen = prompt if isinstance(prompt, PromptPreset) else resolve_prompt(prompt)
        else:
            chosen = visions[bench].preset if bench in visions else resolve_prompt("qwen_math_cot")
        return apply_overrides(chosen, system_prompt=system_prompt, template=template, chat_template=chat_template)

    # the trainer's prompt builder: evaluated as trained
    builders = {bench: PromptBuilder(tokenizer, preset_of(bench)) for bench in problems_by_bench}

    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    is_main = accelerator.is_main_process if accelerator is not None else True
    if show_table is None:
        show_table = output_dir is not None

    presets = {bench: b.preset for bench, b in builders.items()}
    first = next(iter(presets.values()), resolve_prompt("qwen_math_cot"))

    def describe(p: PromptPreset) -> dict[str, Any]:
        return {"preset": p.name, "system_prompt": p.system_prompt, "template": p.template,
                "chat_template": p.chat_template}

    config = {
        "model": model_name or _name_of(model),
        "benchmarks": list(problems_by_bench),
        "problems": {bench: len(ps) for bench, ps in problems_by_bench.items()},
        "samples": samples,
        "sampling": {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "top_k": top_k,
        },
        "prompt": describe(first),  # the first benchmark's; every benchmark's is in "prompts"
        "prompts": {bench: describe(p) for bench, p in presets.items()},
        "grading": grading if visions else None,
        "graders": {bench: spec.script_grader if grading == "original" else spec.grader
                    for bench, spec in visions.items()},
        "data_dir": str(data_dir) if data_dir is not None else None,
        "image_dir": str(image_dir) if image_dir is not None else None,
        "sources": parse_sources(sources),
        "limit": limit,
        "seed": seed,
        "batch_size": batch_size,
        "num_processes": world,
    }

    # Every (benchmark, problem index, problem); process `rank` takes every world-th one.
    items = [(bench, i, p) for bench, ps in problems_by_bench.items() for i, p in enumerate(ps)]
    mine = items[rank::world]
    # One process writing files: each finished batch is appended to PARTIAL_FILE, so an interrupted
    # evaluation keeps what it finished, and the same command run again continues from there.
    partial = Path(output_dir) / PARTIAL_FILE if output_dir is not None and world == 1 else None
    done: list[dict[str, Any]] = []
    if partial is not None:
        done = _finished(partial, config, samples)
        finished = {(r["benchmark"], r["problem_index"]) for r in done}
        mine = [item for item in mine if (item[0], item[1]) not in finished]
        if done:
            print(f"gpgrl eval: continuing in {output_dir}: {len(finished)} of {len(items)} problems were evaluated "
                  f"before ({PARTIAL_FILE})", file=sys.stderr, flush=True)
        _start_partial(partial, config, done)

    if engine is None:
        if model is None:
            raise ValueError("evaluate needs a model or an engine")
        policy = accelerator.unwrap_model(model) if accelerator is not None else model
        engine = HFGenerateEngine(policy, text_tokenizer(tokenizer), batch_size=batch_size)
    grade = grade_fn or _default_grader()
    extract = extract_fn or extract_final_answer

    def build(j: int) -> tuple[Prompt, list[tuple[int, int]]]:
        """Prompt j and its images' sizes; images are opened here, one batch at a time, never all up front."""
        bench, _, problem = mine[j]
        images = open_images(problem) if problem.images else []
        return builders[bench].build(problem.question, images)[0], [im.size for im in images]

    def grade_row(bench: str, problem: Problem, text: str, sizes: list[tuple[int, int]]) -> dict[str, Any]:
        if bench in visions:
            spec = visions[bench]
            grader = spec.script_grade if grading == "original" and spec.script_grade else spec.grade
            out = {"extracted_answer": spec.extract(text), **grader(text, problem, sizes)}
            out["correct"] = bool(out["correct"])
            if problem.meta.get("category") is not None:
                out["category"] = problem.meta["category"]
            return out
        return {"extracted_answer": extract(text), "correct": bool(grade(text, problem.gold))}

    per_call = max(1, batch_size // samples)
    batches = _chunks(list(range(len(mine))), per_call)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    records: list[dict[str, Any]] = list(done)
    progress = Progress(
        TextColumn("[bold]eval[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not (show_progress and is_main),
    )
    with progress, _seeded(seed, rank):
        task = progress.add_task(f"{len(items)} problems x {samples} samples", total=len(batches))
        for batch in batches:
            built = [build(j) for j in batch]
            rollout = engine.generate([p for p, _ in built], params, samples)
            lengths = rollout.lengths.tolist()
            truncated = rollout.truncated.tolist()
            new_from = len(records)
            for row, text in enumerate(rollout.texts):
                j = batch[row // samples]
                bench, index, problem = mine[j]
                prompt_j, sizes = built[row // samples]
                record = {
                    "benchmark": bench,
                    "problem_id": problem.id,
                    "problem_index": index,
                    "sample_index": row % samples,
                    "prompt": prompt_j.text,
                    "completion": text,
                    "extracted_answer": None,
                    "gold": problem.gold,
                    "correct": False,
                    "length": int(lengths[row]),
                    "truncated": bool(truncated[row]),
                }
                if problem.images:
                    record["images"] = image_labels(problem)
                record.update(grade_row(bench, problem, text, sizes))
                records.append(record)
            if partial is not None:
                with partial.open("a", encoding="utf-8") as f:
                    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records[new_from:])
            del built  # the batch's images and pixel values
            progress.advance(task)

    if world > 1:
        from accelerate.utils import gather_object

        records = gather_object(records)
    order = {bench: n for n, bench in enumerate(problems_by_bench)}
    records.sort(key=lambda r: (order[r["benchmark"]], r["problem_index"], r["sample_index"]))
    metrics = compute_metrics(records, prefix=prefix)

    if is_main:
        config["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if output_dir is not None:
            write_outputs(output_dir, metrics, records, config)
            if partial is not None:
                partial.unlink(missing_ok=True)  # samples.jsonl now holds every row
        if show_table:
            from rich.console import Console

            Console().print(render_table(records, title=f"gpgrl eval: {config['model']}"))
    return metrics


def _name_of(model: Any) -> str | None:
    if model is None:
        return None
    name = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None
    )
    return str(name) if name else None
