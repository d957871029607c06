"""The evaluation loop: prompts -> K samples per problem -> grading -> metrics, records and files.

:func:`evaluate` works on an in-memory model, so the trainer can call it every N steps on all processes:
with an ``accelerator`` the problems are sharded over processes (problem i goes to process
``i % num_processes``), each process samples and grades its share, the per-sample records are gathered
with ``accelerate.utils.gather_object``, and every process computes the same metrics from all of them.
Progress, files and the console table come from the main process only (:mod:`gpgrl.eval.report`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

from gpgrl.data.prompts import PromptBuilder
from gpgrl.eval.benchmarks import Benchmark, get_benchmark, load_benchmarks, math_rows, parse_sources
from gpgrl.eval.metrics import compute_metrics
from gpgrl.eval.problem import Problem, UnknownBenchmarkError
from gpgrl.eval.report import PARTIAL_FILE, PartialFile, Progress, render_table, report, write_outputs
from gpgrl.eval.settings import EvalSettings, check_settings
from gpgrl.eval.vision import image_labels, open_images
from gpgrl.paths import data_dir
from gpgrl.rollout.engine import (
    HFGenerateEngine,
    Prompt,
    RolloutEngine,
    SamplingParams,
    pad_token_id,
    text_tokenizer,
)
from gpgrl.rollout.episodes import run_episodes

__all__ = ["PARTIAL_FILE", "EvalSettings", "default_budget", "evaluate", "long_prompts", "prompt_lengths",
           "render_table", "write_outputs"]

Item = tuple[str, int, Problem]  # benchmark, problem index, problem


def evaluate(
    model: torch.nn.Module | None,
    tokenizer: Any,
    benchmarks: str | Sequence[str] | Mapping[str, Sequence[Problem]],
    settings: EvalSettings | None = None,
    *,
    engine: RolloutEngine | None = None,
    accelerator: Any = None,
    sampling: SamplingParams | None = None,
    **options: Any,
) -> dict[str, float]:
    """Sample ``samples`` completions per problem, grade them, and return ``{prefix}/<bench>/<metric>``.

    Args:
        model: the policy (DDP-wrapped is fine with ``accelerator``); may be None when ``engine`` is given.
        tokenizer: its tokenizer; for a vision-language model, its processor (needed by vision benchmarks).
        benchmarks: names (``"math500,aime24"`` or a list) loaded from ``data_dir`` or the Hub, or
            ``{name: problems}`` already loaded with :func:`gpgrl.eval.load_benchmarks` (a trainer that
            evaluates every N steps loads once).
        settings: an :class:`~gpgrl.eval.settings.EvalSettings` (samples, budget, prompt, data, grading,
            output, progress); ``options`` replace its fields by name (``samples=4, temperature=0.6``), and
            ``sampling`` (a :class:`~gpgrl.rollout.SamplingParams`) sets the four sampling fields at once.
        engine: a :class:`~gpgrl.rollout.RolloutEngine` to sample with (default: transformers generate).
        accelerator: an ``accelerate.Accelerator`` to shard problems over processes (all must call this).

    Returns:
        Flat metrics, e.g. ``eval/math500/pass@1``, ``eval/math500/maj@4``, ``eval/math500/pass@4``,
        ``eval/math500/mean_length``, ``eval/math500/truncation_rate``, and ``eval/avg/...`` (mean over
        benchmarks), identical on every process. LISA adds ``eval/lisa/gIoU`` and ``eval/lisa/cIoU``;
        CV-Bench adds ``eval/cvbench/pass@1/<task>``.
    """
    s = EvalSettings.of(settings, sampling, **options)
    check_settings(s)
    problems = _problems(benchmarks, s)
    specs = {name: _spec(name) for name in problems}
    check_settings(s, [name for name, spec in specs.items() if spec.vision])
    _check_vision(specs, model, tokenizer)
    tools, how = (s.episodes.tools, s.episodes.tool_instructions) if s.episodes is not None else ((), None)
    builders = {name: PromptBuilder(tokenizer, s.preset(spec.prompt()), tools=tools, tool_instructions=how)
                for name, spec in specs.items()}  # the prompt lists an episode's tools
    rank, world, is_main = _processes(accelerator)
    engine = engine if engine is not None else _hf_engine(model, tokenizer, accelerator, s.batch_size)
    context = getattr(engine, "max_model_len", None)
    lengths = prompt_lengths(specs, builders, problems) if context is not None else {}
    skipped = long_prompts(problems, lengths, context, skip=s.skip_long_prompts)
    budget, why = default_budget(s, specs, builders, {b: _drop(ps, skipped.get(b)) for b, ps in problems.items()},
                                 context, lengths={b: _drop(ns, skipped.get(b)) for b, ns in lengths.items()})
    config = _config(s, model, problems, builders, specs, budget, world, skipped)

    items = [(bench, i, p) for bench, ps in problems.items() for i, p in enumerate(ps)
             if i not in skipped.get(bench, {})]  # indices stay those of the benchmark's file
    mine = items[rank::world]
    partial = PartialFile(s.output_dir) if s.output_dir is not None and world == 1 else None
    done = partial.resume(config, s.samples) if partial is not None else []
    if done:
        finished = {(r["benchmark"], r["problem_index"]) for r in done}
        mine = [item for item in mine if (item[0], item[1]) not in finished]
        print(f"gpgrl eval: continuing in {s.output_dir}: {len(finished)} of {len(items)} problems were evaluated "
              f"before ({PARTIAL_FILE})", file=sys.stderr, flush=True)
    show = s.show_progress and is_main
    if show:
        print(_headline(config, items, s.samples, budget, why), file=sys.stderr, flush=True)
    progress = Progress(len(mine), s.samples, enabled=show, bar=s.progress_bar, label=s.prefix)
    with progress, _seeded(s.seed, rank), _watching(engine, progress):
        records = done + _sample_and_grade(engine, mine, specs, builders, s, budget, partial, progress)
    if world > 1:
        from accelerate.utils import gather_object

        records = gather_object(records)
    order = {bench: n for n, bench in enumerate(problems)}
    records.sort(key=lambda r: (order[r["benchmark"]], r["problem_index"], r["sample_index"]))
    metrics = compute_metrics(records, prefix=s.prefix)
    if is_main:
        report(records, metrics, config, s.output_dir,
               s.show_table if s.show_table is not None else s.output_dir is not None)
    return metrics


# --- what is evaluated, and how --------------------------------------------------------------------------


def _problems(benchmarks: Any, s: EvalSettings) -> dict[str, list[Problem]]:
    if isinstance(benchmarks, Mapping):
        return {name: list(ps)[: s.limit] if s.limit else list(ps) for name, ps in benchmarks.items()}
    return load_benchmarks(benchmarks, data_dir=s.data_dir, limit=s.limit, image_dir=s.image_dir, sources=s.sources)


def _spec(name: str) -> Benchmark:
    """The registry entry of ``name``; problems passed in under another name are graded as maths."""
    try:
        return get_benchmark(name)
    except UnknownBenchmarkError:
        return Benchmark(name, "problems passed to evaluate", math_rows("question", lambda row: str(row["answer"])))


def _check_vision(specs: dict[str, Benchmark], model: Any, tokenizer: Any) -> None:
    from gpgrl.models.vision import is_vision_model

    visions = [name for name, spec in specs.items() if spec.vision]
    if visions and not is_vision_model(tokenizer):
        raise ValueError(f"{', '.join(visions)}: a vision benchmark needs a vision-language model and its processor "
                         "(pass the processor as the tokenizer)")


def _processes(accelerator: Any) -> tuple[int, int, bool]:
    if accelerator is None:
        return 0, 1, True
    return accelerator.process_index, accelerator.num_processes, accelerator.is_main_process


def _hf_engine(model: Any, tokenizer: Any, accelerator: Any, batch_size: int) -> HFGenerateEngine:
    if model is None:
        raise ValueError("evaluate needs a model or an engine")
    policy = accelerator.unwrap_model(model) if accelerator is not None else model
    return HFGenerateEngine(policy, text_tokenizer(tokenizer), batch_size=batch_size)


def prompt_lengths(specs: dict[str, Benchmark], builders: dict[str, PromptBuilder],
                   problems: dict[str, list[Problem]]) -> dict[str, list[int]]:
    """Tokens of each text benchmark's prompts, in problem order (vision prompts are not measured: that
    would open every image; the engine checks each of their rows)."""
    return {b: [len(builders[b].build(p.question)[0].ids) for p in ps]
            for b, ps in problems.items() if not specs[b].vision}


def long_prompts(problems: dict[str, list[Problem]], lengths: dict[str, list[int]], context: int | None, *,
                 skip: bool) -> dict[str, dict[int, int]]:
    """``{benchmark: {problem index: prompt tokens}}`` of the prompts that leave no room for an answer in
    the model's ``context`` (a prompt of ``context`` tokens or more), found before anything is generated.

    Without ``skip`` (``--skip-long-prompts``) any such prompt is a ValueError saying which, how long, and
    what to do; with it they are left out (and counted in the first line and ``results.json``). A
    benchmark left with no problem is an error either way.

    >>> from gpgrl.eval.problem import Problem
    >>> ps = {"math500": [Problem("math500", str(i), "q", "1") for i in range(3)]}
    >>> long_prompts(ps, {"math500": [100, 600, 512]}, 512, skip=True)
    {'math500': {1: 600, 2: 512}}
    >>> long_prompts(ps, {"math500": [100, 600, 512]}, 512, skip=False)
    Traceback (most recent call last):
    ...
    ValueError: math500: 2 of 3 prompts do not fit the model's 512-token context (the first, id '1', has 600 tokens with the prompt template); pass --skip-long-prompts to evaluate the other 1, or use a model with a longer context
    """
    if context is None:
        return {}
    out: dict[str, dict[int, int]] = {}
    for bench, ns in lengths.items():
        long = {i: n for i, n in enumerate(ns) if n >= context}
        if not long:
            continue
        first = min(long)
        which = f"the first, id {problems[bench][first].id!r}, has {long[first]} tokens with the prompt template"
        if len(long) == len(ns):
            raise ValueError(f"{bench}: every prompt ({len(ns)}) is longer than the model's {context}-token context "
                             f"(the shortest has {min(ns)} tokens with the prompt template); use a model with a longer "
                             "context, a shorter --template, or a benchmark with shorter problems")
        if not skip:
            raise ValueError(f"{bench}: {len(long)} of {len(ns)} prompts do not fit the model's {context}-token "
                             f"context ({which}); pass --skip-long-prompts to evaluate the other "
                             f"{len(ns) - len(long)}, or use a model with a longer context")
        out[bench] = long
    return out


def _drop(values: list[Any], indices: Mapping[int, Any] | None) -> list[Any]:
    """``values`` without those at ``indices``.

    >>> _drop(["a", "b", "c"], {1: 600}), _drop(["a"], None)
    (['a', 'c'], ['a'])
    """
    return [v for i, v in enumerate(values) if not indices or i not in indices]


def default_budget(s: EvalSettings, specs: dict[str, Benchmark], builders: dict[str, PromptBuilder],
                   problems: dict[str, list[Problem]], context: int | None,
                   lengths: dict[str, list[int]] | None = None) -> tuple[int, str]:
    """New tokens per answer and why: ``max_new_tokens`` if given (set by ``budget_from``), else the largest
    of the benchmarks' own budgets, capped by the model's context minus the longest (text) prompt
    (``lengths``: the prompts' tokens, as :func:`prompt_lengths` gives them, if already measured)."""
    if s.max_new_tokens is not None:
        return s.max_new_tokens, s.budget_from
    own = max(spec.max_new_tokens for spec in specs.values()) if specs else 1024
    whose = next(name for name, spec in specs.items() if spec.max_new_tokens == own) if specs else "default"
    why = f"{whose}'s own budget" if len(specs) == 1 else f"the largest of the benchmarks' own budgets, {whose}'s"
    if context is None:  # nothing to cap by: no prompt needs tokenizing
        return own, f"{why}; --max-new-tokens to change"
    if lengths is None:
        lengths = prompt_lengths(specs, builders, problems)
    measured = [n for ns in lengths.values() for n in ns]
    if not measured:  # vision prompts are not measured (that would open every image); the engine caps each row
        return own, f"{why}; --max-new-tokens to change"
    longest = max(measured)
    if context - longest >= own:
        return own, f"{why}; --max-new-tokens to change"
    if context - longest < 1:
        raise ValueError(f"the longest prompt has {longest} tokens, the model's whole context is {context}: no room "
                         "to answer; use --limit, a shorter --template, or a model with a longer context")
    return context - longest, (f"the model's {context}-token context minus the longest prompt, {longest} tokens; "
                               "--max-new-tokens to change")


def _headline(config: dict[str, Any], items: list[Item], samples: int, budget: int, why: str) -> str:
    """``gpgrl eval: smollm2 on gsm8k (8 problems x 1 sample), up to 1024 new tokens per answer (...)``."""
    names = ", ".join(config["benchmarks"])
    skipped = sum(len(ids) for ids in config.get("skipped_long_prompts", {}).values())
    left_out = f"; {skipped} left out, their prompt longer than the model's context" if skipped else ""
    return (f"gpgrl eval: {config['model'] or 'the model'} on {names} ({len(items)} problems x {samples} "
            f"sample{'s' if samples > 1 else ''}{left_out}), up to {budget} new tokens per answer ({why})")


def _config(s: EvalSettings, model: Any, problems: dict[str, list[Problem]], builders: dict[str, PromptBuilder],
            specs: dict[str, Benchmark], budget: int, world: int,
            skipped: dict[str, dict[int, int]] | None = None) -> dict[str, Any]:
    """What ``results.json`` records of the evaluation (and what a continued run must match)."""
    def describe(b: PromptBuilder) -> dict[str, Any]:
        p = b.preset
        return {"preset": p.name, "system_prompt": p.system_prompt, "template": p.template,
                "chat_template": p.chat_template}

    visions = {bench: spec for bench, spec in specs.items() if spec.vision}
    first = describe(next(iter(builders.values()))) if builders else None
    return {
        "model": s.model_name or _name_of(model),
        "benchmarks": list(problems),
        "problems": {bench: len(ps) - len((skipped or {}).get(bench, {})) for bench, ps in problems.items()},
        "samples": s.samples,
        "sampling": {"max_new_tokens": budget, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k},
        "prompt": first,  # the first benchmark's; every benchmark's is in "prompts"
        "prompts": {bench: describe(b) for bench, b in builders.items()},
        "grading": s.grading if visions else None,
        "graders": {bench: spec.script_grader if s.grading == "original" else spec.grader
                    for bench, spec in visions.items()},
        "data_dir": str(found) if (found := data_dir(s.data_dir)) is not None else None,
        "image_dir": str(s.image_dir) if s.image_dir is not None else None,
        "sources": parse_sources(s.sources),
        "limit": s.limit,
        "seed": s.seed,
        "batch_size": s.batch_size,
        "num_processes": world,
        **({"skipped_long_prompts": {bench: [problems[bench][i].id for i in sorted(long)]
                                     for bench, long in skipped.items()}} if skipped else {}),
    }


# --- the loop -------------------------------------------------------------------------------------------


def _by_bench(items: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for item in items:
        out.setdefault(item[0], []).append(item)
    return out


def _sample_and_grade(engine: Any, items: list[Item], specs: dict[str, Benchmark],
                      builders: dict[str, PromptBuilder], s: EvalSettings, budget: int,
                      partial: PartialFile | None, progress: Progress) -> list[dict[str, Any]]:
    """Every item's ``samples`` completions, graded, a batch of ``batch_size`` rows at a time per benchmark
    (each benchmark with its own stop strings); a finished batch's rows go to the partial file."""
    per_call = max(1, s.batch_size // s.samples)
    records: list[dict[str, Any]] = []
    for bench, mine in _by_bench(items).items():
        spec, builder = specs[bench], builders[bench]
        params = s.sampling(budget, () if builder.preset.chat_template else spec.stop)
        for start in range(0, len(mine), per_call):
            batch = mine[start : start + per_call]
            built = [_build(builder, problem) for _, _, problem in batch]  # images opened per batch only
            progress.begin_batch(len(batch))
            if s.episodes is None:
                rollout = engine.generate([p for p, _ in built], params, s.samples)
            else:  # the same episodes as in training: the same tools, limits and turns
                rollout = run_episodes(engine, [p for p, _ in built], [_episode_record(p) for _, _, p in batch],
                                       params, s.samples, s.episodes.make_env, tokenizer=builder.tokenizer,
                                       max_turns=s.episodes.max_turns, pad_id=pad_token_id(builder.tokenizer))
            lengths, truncated = rollout.lengths.tolist(), rollout.truncated.tolist()
            rows = [_record(spec, s, batch[row // s.samples], row % s.samples, built[row // s.samples], text,
                            int(lengths[row]), bool(truncated[row])) for row, text in enumerate(rollout.texts)]
            for row, info in zip(rows, rollout.episodes or []):
                row.update(turns=info.turns, tool_calls=info.tool_calls, tool_errors=sum(info.errors.values()),
                           ended=info.ended)
            records.extend(rows)
            if partial is not None:
                partial.append(rows)
            del built  # the batch's images and pixel values
            progress.batch_done(len(batch), tokens=sum(lengths))
    return records


def _episode_record(problem: Problem) -> dict[str, Any]:
    """What an episode's environment is reset with: the problem as a dataset row."""
    return {**problem.meta, "question": problem.question, "answer": problem.gold, "id": problem.id}


def _build(builder: PromptBuilder, problem: Problem) -> tuple[Prompt, list[tuple[int, int]]]:
    """A problem's prompt and its images' sizes; images are opened here, never all up front."""
    images = open_images(problem) if problem.images else []
    return builder.build(problem.question, images)[0], [im.size for im in images]


def _record(spec: Benchmark, s: EvalSettings, item: Item, sample: int, built: tuple[Prompt, list[tuple[int, int]]],
            text: str, length: int, truncated: bool) -> dict[str, Any]:
    """One ``samples.jsonl`` row: the sample, its gold, and its grade."""
    bench, index, problem = item
    record: dict[str, Any] = {
        "benchmark": bench, "problem_id": problem.id, "problem_index": index, "sample_index": sample,
        "prompt": built[0].text, "completion": text, "extracted_answer": None, "gold": problem.gold,
        "correct": False, "length": length, "truncated": truncated,
    }
    if problem.images:
        record["images"] = image_labels(problem)
    if not spec.vision and (s.grade_fn is not None or s.extract_fn is not None):
        extract = s.extract_fn or spec.extract
        grade = {"correct": s.grade_fn(text, problem.gold)} if s.grade_fn else spec.grade(text, problem, [])
        record.update(extracted_answer=extract(text), correct=bool(grade["correct"]))
        return record
    grader = spec.script_grade if s.grading == "original" and spec.script_grade else spec.grade
    record.update({"extracted_answer": spec.extract(text), **grader(text, problem, built[1])})
    record["correct"] = bool(record["correct"])
    if problem.meta.get("category") is not None:
        record["category"] = problem.meta["category"]
    return record


@contextlib.contextmanager
def _watching(engine: Any, progress: Progress) -> Iterator[None]:
    """Let the engine report each decoding step to ``progress`` (where it can), as long as this lasts."""
    if not progress.enabled:
        yield
        return
    before = getattr(engine, "on_step", None), getattr(engine, "on_done", None)
    engine.on_step, engine.on_done = progress.step, progress.answers_ended
    try:
        yield
    finally:
        engine.on_step, engine.on_done = before


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


def _name_of(model: Any) -> str | None:
    if model is None:
        return None
    name = getattr(model, "name_or_path", None) or getattr(
        getattr(model, "config", None), "_name_or_path", None
    )
    return str(name) if name else None
