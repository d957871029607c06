"""SmolLM2-135M-Instruct with a calculator on GSM8K problems, on a laptop CPU: held-out before and after GPG.

Usage::

    gpgrl models fetch smollm2                              # the model file (see docs/real_model.md)
    python benchmarks/real_model_tools.py --quick           # a check that everything runs (minutes), not a result
    python benchmarks/real_model_tools.py                   # the measurement: base evaluations, then seed 0
    python benchmarks/real_model_tools.py --seeds 0,1 --steps 8 --heldout 50
    python benchmarks/real_model_tools.py --part base       # only the two base evaluations
    python benchmarks/real_model_tools.py --part train --seeds 1   # only the training of seed 1 (needs base)
    python benchmarks/real_model_tools.py --part nudge      # a probe: told to use the calculator, does it?
    python benchmarks/real_model_tools.py --report          # rewrite results/real_model_tools.{md,json,png}

Data: ``gsm8k/test.jsonl`` of the benchmark data folder (1319 problems, the gold answer after ``####``).
Held-out: its first ``--heldout`` problems (default 50), greedy, never trained on; training prompts: every
other problem of the file (index ``--heldout`` to 1318) whose question text is not also a held-out question
(:func:`split`).

The prompt is the same in every evaluation and in training: SmolLM2's own default system prompt (the one its
chat template adds when there is none, given explicitly here), the question, then ``r1_distill``'s *Please
reason step by step, and put your final answer within \\boxed{}.* With the calculator, gpgrl appends the
Hermes tool instructions (the calculator's JSON schema, how to write ``<tool_call>...</tool_call>``) to that
system prompt, because SmolLM2's template does not list tools; so the tool runs differ from the plain
baseline by the tool instructions and by the tool being there, nothing else.

Steps:

1. ``base``: held-out greedy accuracy of the model without tools (the plain baseline, single answers) and
   with the calculator (multi-turn episodes: ``--max-turns`` policy turns, ``--max-length`` tokens for the
   whole episode, policy's and tool's); tool calls per episode, share of episodes that called the tool.
2. ``train`` (per seed): GPG (preset ``gpg``: AGE, threshold resampling, at most ``MAX_DRAWS`` batches a
   step) with ``rollout.tools: [calculator]`` through the real :class:`~gpgrl.train.trainer.Trainer`,
   ``--steps`` steps of ``--prompts`` prompts x ``--group`` episodes, reward ``accuracy`` only (the last
   ``\\boxed{}``, else the last number, as the held-out grading reads); then held-out with the calculator
   AFTER. Per step: the training episodes' reward, tool calls, turns, errors, endings, seconds.
3. ``nudge`` (only when asked for): the base model with the calculator on the first ``--nudge-size``
   held-out problems, the user turn asking for the calculator by name (:data:`NUDGE`): whether the model
   calls the tool at all when told to. Reported next to the table, never trained on.
4. ``report``: ``benchmarks/results/real_model_tools.{md,json,png}`` with the machine line and its load, and
   example episodes (with a tool call where there is one).

Every part runs on ``--threads`` torch threads (default 1) and is resumable: a part with a ``summary.json``
under ``--output`` (default ``runs/real_model_tools``) is not run again. The default run (no ``--part``)
runs the base evaluations and the seeds one after another in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine, peak_rss_since_reset_mb, reset_peak_rss
from seed_stats import spread

RESULTS = Path(__file__).parent / "results"
#: SmolLM2's default system prompt, as its chat template writes it when a conversation has none.
SMOL_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
#: The measurement's sizes (the machine: 2 shared cores; see docs/real_model.md for what a step costs).
SETTINGS = {"heldout": 100, "steps": 8, "prompts": 2, "group": 4, "max_length": 200, "max_turns": 3,
            "temperature": 0.8, "lr": 1e-5, "tool_timeout": 5.0, "eval_batch": 25,
            "nudge_size": 20}
QUICK = {"heldout": 4, "steps": 1, "prompts": 1, "group": 2, "max_length": 48, "max_turns": 2}
#: ``--part nudge``: the user turn asks for the calculator by name (a probe of whether the model follows tool
#: instructions at all when told to; not used in training or in the main table).
NUDGE = ("{question}\nUse the calculator tool for every computation, and put your final answer within "
         "\\boxed{{}}.")
MAX_DRAWS = 2  # most rollout batches per step (the gpg preset's default is 20: far past this machine)
# The accuracy reward's reading, as the gsm8k grading reads: the last box, else the last number; a number.
READING = {"boxes": "last", "fallback": True, "number": True}


# --- data -------------------------------------------------------------------------------------------------


def split(rows: list[dict[str, Any]], heldout: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(held-out, training)``: the first ``heldout`` rows, and the others whose question is not also one of
    the held-out questions (a repeated question would leak); each row as ``{"index", "question", "answer"}``
    with the gold number (``####``'s) as the answer.

    >>> rows = [{"question": q, "answer": f"... #### {a}"} for q, a in [("a", 1), ("b", "1,200"), ("a", 1), ("c", 3)]]
    >>> held, train = split(rows, 2)
    >>> [r["index"] for r in held], [(r["index"], r["answer"]) for r in train]
    ([0, 1], [(3, '3')])
    """
    from gpgrl.eval.benchmarks import gsm8k_gold

    if not 1 <= heldout < len(rows):
        raise ValueError(f"--heldout {heldout}: the file has {len(rows)} problems; hold out 1 to {len(rows) - 1}")
    out = [{"index": i, "question": r["question"], "answer": gsm8k_gold(r["answer"])} for i, r in enumerate(rows)]
    held = out[:heldout]
    seen = {r["question"].strip() for r in held}
    return held, [r for r in out[heldout:] if r["question"].strip() not in seen]


def gsm8k_file(data_dir: str | None) -> Path:
    """``gsm8k/test.jsonl`` of the benchmark data folder (``--data-dir``, ``$GPGRL_DATA``, ``../shared/data``)."""
    from gpgrl.paths import data_dir as find

    root = find(data_dir)
    path = root / "math" / "gsm8k" / "test.jsonl" if root is not None else None
    if path is None or not path.is_file():
        raise SystemExit(f"no gsm8k/test.jsonl under {root}/math; give --data-dir FOLDER (holding math/gsm8k/) "
                         "or set GPGRL_DATA")
    return path


def load_split(data_dir: str | None, heldout: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    path = gsm8k_file(data_dir)
    return split([json.loads(line) for line in path.read_text().splitlines() if line.strip()], heldout)


def problems(rows: list[dict[str, Any]]) -> list:
    """Held-out rows as ``gsm8k`` problems (graded by the ``gsm8k`` benchmark's grading)."""
    from gpgrl.eval.problem import Problem

    return [Problem("gsm8k", f"gsm8k-{r['index']}", r["question"], r["answer"]) for r in rows]


# --- configs ----------------------------------------------------------------------------------------------


def rl_config(*, seed: int, output_dir: str | Path, dataset: str | Path, s: dict[str, Any], threads: int,
              tools: bool = True, template: str | None = None) -> dict[str, Any]:
    """The recipe of one training run as a raw dict (``gpgrl.config.from_dict`` reads it).

    >>> from gpgrl.config import from_dict
    >>> cfg = from_dict(rl_config(seed=0, output_dir="/tmp/x", dataset="t.jsonl", s=SETTINGS, threads=1))
    >>> cfg.rollout.tools, cfg.rollout.max_turns, cfg.rollout.max_completion_length, cfg.data.system_prompt[:21]
    (['calculator'], 3, 200, 'You are a helpful AI ')
    """
    return {
        "model": {"name_or_path": "smollm2", "dtype": "float32"},
        "data": {"dataset": str(dataset), "prompt_column": "question", "answer_column": "answer",
                 "prompt": "r1_distill", "system_prompt": SMOL_SYSTEM, "max_prompt_length": 768,
                 **({"template": template} if template else {})},
        "rollout": {"group_size": s["group"], "max_completion_length": s["max_length"],
                    "temperature": s["temperature"], **({"tools": ["calculator"]} if tools else {}),
                    "max_turns": s["max_turns"], "tool_timeout": s["tool_timeout"]},
        "rewards": [{"name": "accuracy", "weight": 1.0, "params": READING}],
        "algorithm": {"preset": "gpg", "max_resample_draws": MAX_DRAWS},
        "optim": {"lr": s["lr"], "lr_scheduler": "constant_with_warmup", "warmup_steps": 0, "max_grad_norm": 1.0},
        "train": {"steps": s["steps"], "prompts_per_step": s["prompts"], "micro_batch_size": s["group"],
                  "seed": seed, "output_dir": str(output_dir), "mixed_precision": "no", "overwrite": True,
                  "num_threads": threads, "save_every": 0},
        "log": {"report_to": ["jsonl"], "sample_every": 0, "progress": False},
    }


def heldout(model: Any, tokenizer: Any, rows: list[dict[str, Any]], cfg: Any, out_dir: Path, *, tools: bool,
            batch_size: int) -> dict[str, float]:
    """Greedy pass@1 on the held-out rows with the training prompt, as episodes with the calculator
    (``tools``) or as single answers; with tool calls, turns and tool errors per episode and the share of
    episodes that called the tool (``gpgrl.eval.evaluate``)."""
    from gpgrl.eval import evaluate
    from gpgrl.rollout.episodes import episode_setup

    r = cfg.rollout
    setup = episode_setup(tools=["calculator"], max_turns=r.max_turns, tool_timeout=r.tool_timeout) if tools else None
    try:
        m = evaluate(model, tokenizer, {"gsm8k": problems(rows)}, max_new_tokens=r.max_completion_length,
                     temperature=0.0, prompt=cfg.data.prompt_preset(), batch_size=batch_size, output_dir=out_dir,
                     show_progress=False, show_table=False, seed=0, model_name=cfg.model.name_or_path,
                     episodes=setup)
    finally:
        if setup is not None:
            setup.close()
    keys = ("pass@1", "mean_length", "truncation_rate", "tool_calls", "used_tools", "turns", "tool_errors")
    out = {k: m[f"eval/gsm8k/{k}"] for k in keys if f"eval/gsm8k/{k}" in m}
    return {**out, "finished_correct": finished_correct(out_dir / "samples.jsonl")}


def finished_correct(samples: Path) -> float:
    """Share of answers graded right that were not cut off at the token budget: the grading falls back to the
    last number of the text, and a cut-off answer's last number is often an operand that happens to match
    (docs/real_model.md, the audit of the GSM8K grader).

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "s.jsonl"
    >>> rows = [(True, False), (True, True), (False, False), (False, True)]
    >>> _ = f.write_text("\\n".join(json.dumps({"correct": c, "truncated": t}) for c, t in rows))
    >>> finished_correct(f)
    0.25
    """
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    return sum(r["correct"] and not r["truncated"] for r in rows) / len(rows) if rows else float("nan")


def _write_json(path: Path, data: Any) -> None:
    """Atomically: a stopped part never leaves half a summary (which would mark it done)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _load(threads: int) -> tuple[Any, Any, float]:
    import torch

    from gpgrl.models.loading import load_policy, load_tokenizer

    torch.set_num_threads(threads)
    t = time.perf_counter()
    return load_tokenizer("smollm2"), load_policy("smollm2", dtype="float32"), time.perf_counter() - t


def run_base(output: Path, s: dict[str, Any], *, threads: int, data_dir: str | None, say=print) -> dict[str, Any]:
    """The base model on the held-out problems, without tools and with the calculator."""
    from gpgrl.config import from_dict

    folder = output / "base"
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    held, _ = load_split(data_dir, s["heldout"])
    cfg = from_dict(rl_config(seed=0, output_dir=folder / "unused", dataset="unused.jsonl", s=s, threads=threads))
    tokenizer, model, seconds_load = _load(threads)
    out: dict[str, Any] = {"heldout": len(held), "seconds_load": seconds_load, "load": [os.getloadavg()[0]]}
    for name, tools in (("plain", False), ("tools", True)):
        t = time.perf_counter()
        out[name] = heldout(model, tokenizer, held, cfg, folder / f"eval_{name}", tools=tools, batch_size=s["eval_batch"])
        out[name]["seconds"] = time.perf_counter() - t
        out["load"].append(os.getloadavg()[0])
        say(f"[base {name}] held-out greedy accuracy {out[name]['pass@1']:.1%} on {len(held)} problems; "
            f"tool calls/episode {out[name].get('tool_calls', 0):.2f}; {out[name]['seconds']:.0f}s "
            f"(load {out['load'][-1]:.1f})")
    out["machine"] = machine(f"torch on {threads} thread(s)")
    _write_json(folder / "summary.json", out)
    return out


def run_nudge(output: Path, s: dict[str, Any], *, threads: int, data_dir: str | None, say=print) -> dict[str, Any]:
    """The base model with the calculator on the first ``nudge_size`` held-out problems, the user turn asking
    for the calculator (:data:`NUDGE`): does it call the tool when told to?"""
    from gpgrl.config import from_dict

    folder = output / "nudge"
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    held, _ = load_split(data_dir, s["heldout"])
    held = held[: s["nudge_size"]]
    cfg = from_dict(rl_config(seed=0, output_dir=folder / "unused", dataset="unused.jsonl", s=s, threads=threads,
                              template=NUDGE))
    tokenizer, model, _ = _load(threads)
    t = time.perf_counter()
    out = heldout(model, tokenizer, held, cfg, folder / "eval", tools=True, batch_size=s["eval_batch"])
    out.update(seconds=time.perf_counter() - t, heldout=len(held), template=NUDGE, load=[os.getloadavg()[0]])
    say(f"[nudge] held-out greedy accuracy {out['pass@1']:.1%} on {len(held)} problems; tool calls/episode "
        f"{out['tool_calls']:.2f}; episodes calling it {out['used_tools']:.0%}; {out['seconds']:.0f}s")
    _write_json(folder / "summary.json", out)
    return out


STEP_KEYS = ("reward/sampled_mean", "episode/tool_calls", "episode/turns", "episode/tool_errors",
             "episode/ended_done", "episode/ended_length", "episode/ended_max_turns", "episode/ended_context",
             "rollout/draws", "adv/alpha", "rollout/completion_length", "perf/step_seconds")


def run_seed(output: Path, s: dict[str, Any], seed: int, *, threads: int, data_dir: str | None,
             say=print) -> dict[str, Any]:
    """Train one seed with the calculator, then held-out with the calculator after."""
    from gpgrl.config import from_dict
    from gpgrl.train.trainer import Trainer

    folder = output / f"seed{seed}"
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    held, train = load_split(data_dir, s["heldout"])
    dataset = folder / "train_prompts.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in train))
    cfg = from_dict(rl_config(seed=seed, output_dir=folder / "train", dataset=dataset, s=s, threads=threads))
    tokenizer, model, seconds_load = _load(threads)
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tokenizer)
    rows, load, t0 = [], [], time.perf_counter()
    while trainer.step < s["steps"]:
        measured = reset_peak_rss()
        metrics = trainer.train(stop_at_step=trainer.step + 1)[-1]
        row = {"step": trainer.step, **{k: metrics.get(k, float("nan")) for k in STEP_KEYS},
               "peak_rss_mb": peak_rss_since_reset_mb() if measured else float("nan"), "load": os.getloadavg()[0]}
        rows.append(row)
        load.append(row["load"])
        say(f"[seed {seed}] step {row['step']}  reward {row['reward/sampled_mean']:.3f}  "
            f"tool calls/episode {row['episode/tool_calls']:.2f}  turns {row['episode/turns']:.2f}  "
            f"errors {row['episode/tool_errors']:.0f}  draws {row['rollout/draws']:.0f}  "
            f"{row['perf/step_seconds']:.0f}s  load {row['load']:.1f}")
    seconds_train = time.perf_counter() - t0
    trainer.close()
    policy = trainer.acc.unwrap_model(trainer.model)
    t = time.perf_counter()
    after = heldout(policy, tokenizer, held, cfg, folder / "eval_after", tools=True, batch_size=s["eval_batch"])
    after["seconds"] = time.perf_counter() - t
    load.append(os.getloadavg()[0])
    say(f"[seed {seed}] held-out greedy accuracy after {trainer.step} steps, with the calculator: "
        f"{after['pass@1']:.1%}; tool calls/episode {after.get('tool_calls', 0):.2f}; {after['seconds']:.0f}s")
    shutil.rmtree(folder / "train" / "checkpoints", ignore_errors=True)  # 0.5 GB each; not needed here
    summary = {"seed": seed, "steps": trainer.step, "after": after, "rows": rows, "seconds_train": seconds_train,
               "seconds_load": seconds_load, "load": load, "train_prompts": len(train),
               "episodes_trained": sum(int(r["rollout/draws"]) for r in rows) * s["prompts"] * s["group"],
               "machine": machine(f"torch on {threads} thread(s)"), "command": " ".join(sys.argv)}
    _write_json(folder / "summary.json", summary)
    return summary


# --- report -----------------------------------------------------------------------------------------------


def examples(samples: Path, n: int = 2, width: int = 1200) -> list[dict[str, Any]]:
    """Up to ``n`` episodes of an evaluation's ``samples.jsonl``: those with a tool call first, then those
    that name the calculator, then the others, in problem order; each with its problem, gold, extracted
    answer, verdict, calls and text."""
    if not samples.is_file():
        return []
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: (not r.get("tool_calls"), "calculator" not in r["completion"].lower(), r["problem_index"]))
    return [{"problem_index": r["problem_index"], "gold": r["gold"], "extracted": r["extracted_answer"],
             "correct": r["correct"], "tool_calls": r.get("tool_calls", 0), "turns": r.get("turns", 1),
             "completion": r["completion"][:width] + ("..." if len(r["completion"]) > width else "")}
            for r in rows[:n]]


def collect(output: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Everything the report shows, from the finished parts under ``output`` (the ``.json`` written)."""
    base_file = output / "base" / "summary.json"
    if not base_file.is_file():
        raise SystemExit(f"no {base_file}: run the base evaluations first (--part base)")
    base = json.loads(base_file.read_text())
    seeds = [json.loads(f.read_text()) for f in sorted(output.glob("seed*/summary.json"))]
    for r in seeds:  # the optimizer steps applied: a step whose groups carry no signal is skipped (no update)
        log = output / f"seed{r['seed']}" / "train" / "metrics.jsonl"
        if "updates" not in r and log.is_file():
            rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
            r["updates"] = sum(not m.get("optim/skipped", 0.0) for m in rows)
        after, before = (output / f"seed{r['seed']}" / "eval_after" / "samples.jsonl",
                         output / "base" / "eval_tools" / "samples.jsonl")
        if after.is_file() and before.is_file():  # greedy answers that did not change at all
            r["same_answers"] = sum(a == b for a, b in zip(*(
                [json.loads(line)["completion"] for line in f.read_text().splitlines() if line.strip()]
                for f in (after, before))))
    nudge = output / "nudge" / "summary.json"
    return {"settings": settings, "max_draws": MAX_DRAWS, "system_prompt": SMOL_SYSTEM, "base": base,
            "seeds": seeds, "nudge": json.loads(nudge.read_text()) if nudge.is_file() else None,
            "examples": {"base_tools": examples(output / "base" / "eval_tools" / "samples.jsonl"),
                         "nudge": examples(output / "nudge" / "eval" / "samples.jsonl"),
                         "base_plain": examples(output / "base" / "eval_plain" / "samples.jsonl", n=1),
                         **{f"after_seed{r['seed']}": examples(output / f"seed{r['seed']}" / "eval_after" / "samples.jsonl")
                            for r in seeds[:1]}}}


def _pct(values: list[float]) -> str:
    """Percent, ``mean +- std`` over seeds (one value: just it).

    >>> _pct([0.02]), _pct([0.02, 0.04])
    ('2.0', '3.0 +- 1.4')
    """
    s = spread(values)
    return f"{100 * s['mean']:.1f}" if s["n"] == 1 else f"{100 * s['mean']:.1f} +- {100 * s['std']:.1f}"


def _num(values: list[float]) -> str:
    """A per-episode count, ``mean +- std`` over seeds.

    >>> _num([0.5]), _num([0.5, 1.5])
    ('0.50', '1.00 +- 0.71')
    """
    s = spread(values)
    return f"{s['mean']:.2f}" if s["n"] == 1 else f"{s['mean']:.2f} +- {s['std']:.2f}"


def render(results: dict[str, Any]) -> str:
    """The markdown report of :func:`collect`'s dict (pure: the tests render a made-up one)."""
    s, base, seeds = results["settings"], results["base"], results["seeds"]
    n = base["heldout"]
    loads = [*base["load"], *(results.get("nudge") or {}).get("load", []), *(x for r in seeds for x in r["load"])]
    after = [r["after"] for r in seeds]
    lines = [
        "# SmolLM2-135M-Instruct with a calculator on GSM8K, on a 2-core CPU", "",
        "Written by `python benchmarks/real_model_tools.py` (see its docstring). Held-out: the first "
        f"{n} problems of GSM8K's test file, greedy, never trained on; training prompts: the other "
        f"{seeds[0]['train_prompts'] if seeds else 'n/a'} problems. Episodes: at most {s['max_turns']} policy "
        f"turns and {s['max_length']} tokens (the policy's and the tool's) per episode; the same budget for the "
        "single answers without tools.", "",
        f"Training: GPG (preset `gpg`, at most {results['max_draws']} rollout batches per step), reward `accuracy` "
        f"only, {s['steps']} steps of {s['prompts']} prompts x G = {s['group']} episodes, temperature "
        f"{s['temperature']}, lr {s['lr']}; seeds: {', '.join(str(r['seed']) for r in seeds) or 'none yet'}"
        + (" (one seed: no spread)" if len(seeds) == 1 else "") + ".", "",
        f"Machine: {base['machine']}; 1-minute load average during the runs: {min(loads):.1f}-{max(loads):.1f} "
        "(the machine was shared with other jobs).", "",
        "![held-out accuracy and tool calls before and after; training episodes by step](real_model_tools.png)", "",
        "| model | calculator | held-out accuracy (%) | right and not cut off (%) | tool calls / episode "
        "| episodes calling it (%) | tool errors / episode | turns | cut off (%) | mean length | eval s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| base | no (plain baseline) | {_pct([base['plain']['pass@1']])} "
        f"| {_pct([base['plain']['finished_correct']])} | | | | 1 "
        f"| {_pct([base['plain']['truncation_rate']])} | {base['plain']['mean_length']:.0f} | {base['plain']['seconds']:.0f} |",
        f"| base | yes | {_pct([base['tools']['pass@1']])} | {_pct([base['tools']['finished_correct']])} "
        f"| {_num([base['tools']['tool_calls']])} "
        f"| {_pct([base['tools']['used_tools']])} | {_num([base['tools']['tool_errors']])} "
        f"| {_num([base['tools']['turns']])} | {_pct([base['tools']['truncation_rate']])} "
        f"| {base['tools']['mean_length']:.0f} | {base['tools']['seconds']:.0f} |",
    ]
    if after:
        lines.append(
            f"| after {seeds[0]['steps']} GPG steps ({len(seeds)} seed{'s' * (len(seeds) > 1)}) | yes "
            f"| {_pct([a['pass@1'] for a in after])} | {_pct([a['finished_correct'] for a in after])} "
            f"| {_num([a['tool_calls'] for a in after])} "
            f"| {_pct([a['used_tools'] for a in after])} | {_num([a['tool_errors'] for a in after])} "
            f"| {_num([a['turns'] for a in after])} | {_pct([a['truncation_rate'] for a in after])} "
            f"| {sum(a['mean_length'] for a in after) / len(after):.0f} "
            f"| {sum(a['seconds'] for a in after) / len(after):.0f} |")
        delta = [a["pass@1"] - base["tools"]["pass@1"] for a in after]
        lines += ["", f"Change with the calculator, after minus before: **{'+' if sum(delta) >= 0 else ''}"
                  f"{_pct(delta)} points** ({round(sum(delta) / len(delta) * n):+d} of {n} problems"
                  + (", mean over seeds" if len(delta) > 1 else "") + ")."]
    nudge = results.get("nudge")
    if nudge:
        lines += ["", f"Probe (`--part nudge`, not trained on): the base model with the calculator, the user turn "
                  f"asking for it (`{nudge['template'].replace(chr(10), ' / ')}`), on the first {nudge['heldout']} held-out problems: "
                  f"accuracy {_pct([nudge['pass@1']])}% (right and not cut off {_pct([nudge['finished_correct']])}%), "
                  f"**{nudge['tool_calls']:.2f} tool calls per episode**, {_pct([nudge['used_tools']])}% of episodes "
                  f"called it, {nudge['tool_errors']:.2f} tool errors per episode ({nudge['seconds']:.0f}s)."]
    for r in seeds:
        reward = [x["reward/sampled_mean"] for x in r["rows"]]
        calls = [x["episode/tool_calls"] for x in r["rows"]]
        lines += ["", f"## Training, seed {r['seed']}", "",
                  f"{r['steps']} steps in {r['seconds_train'] / 60:.1f} min ({r['episodes_trained']} episodes sampled"
                  + (f"; {r['updates']} of the {r['steps']} steps carried a signal and updated the weights, the "
                     "others were skipped: every group all wrong" if "updates" in r else "")
                  + (f"; after it, {r['same_answers']} of the {n} held-out answers are the base model's, word for word"
                     if "same_answers" in r else "") + "); "
                  f"training reward by step (every episode sampled): {', '.join(f'{x:.2f}' for x in reward)}; tool calls "
                  f"per episode of the trained batch by step: {', '.join(f'{x:.2f}' for x in calls)}.", "",
                  "| step | reward (sampled) | trained batch: tool calls / ep. | turns | tool errors | ended: answer / length / max turns "
                  "| draws | alpha | s | load |", "|---|---|---|---|---|---|---|---|---|---|"]
        for x in r["rows"]:
            lines.append(f"| {x['step']} | {x['reward/sampled_mean']:.3f} | {x['episode/tool_calls']:.2f} "
                         f"| {x['episode/turns']:.2f} | {x['episode/tool_errors']:.0f} "
                         f"| {x['episode/ended_done']:.0f} / {x['episode/ended_length']:.0f} / "
                         f"{x['episode/ended_max_turns']:.0f} | {x['rollout/draws']:.0f} | {x['adv/alpha']:.2f} "
                         f"| {x['perf/step_seconds']:.0f} | {x['load']:.1f} |")
    lines += ["", "## Example episodes (greedy, held-out)", ""]
    for name, exs in results["examples"].items():
        for e in exs:
            lines += [f"**{name}, problem {e['problem_index']}** (gold {e['gold']}, extracted {e['extracted']}, "
                      f"{'right' if e['correct'] else 'wrong'}; {e['tool_calls']} tool call(s), {e['turns']} turn(s)):",
                      "", "```text", e["completion"].replace("```", "'''"), "```", ""]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Left: held-out accuracy and tool calls per episode, base without / with the tool and after training.
    Right: the training episodes' reward and tool calls per episode by step, per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base, seeds = results["base"], results["seeds"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    names = ["base, no tool", "base, calculator"] + (["after GPG, calculator"] if seeds else [])
    acc = [base["plain"]["pass@1"], base["tools"]["pass@1"]]
    calls = [0.0, base["tools"]["tool_calls"]]
    if seeds:
        acc.append(sum(r["after"]["pass@1"] for r in seeds) / len(seeds))
        calls.append(sum(r["after"]["tool_calls"] for r in seeds) / len(seeds))
    x = range(len(names))
    bars = ax1.bar([i - 0.2 for i in x], [100 * a for a in acc], width=0.4, color="tab:blue", label="accuracy (%)")
    ax1.bar_label(bars, [f"{100 * a:.1f}%" for a in acc], fontsize=7)
    twin = ax1.twinx()
    bars = twin.bar([i + 0.2 for i in x], calls, width=0.4, color="tab:orange", label="tool calls / episode")
    twin.bar_label(bars, ["(no tool)"] + [f"{c:.2f}" for c in calls[1:]], fontsize=7)
    ax1.set_xticks(list(x), names, fontsize=8)
    ax1.set(ylabel="held-out greedy accuracy (%)", title=f"held-out: first {base['heldout']} GSM8K test problems")
    twin.set_ylabel("tool calls per episode")
    ax1.set_ylim(0, max(10, 100 * max(acc) * 1.3))
    twin.set_ylim(0, max(1.0, max(calls) * 1.3))
    ax1.legend(loc="upper left", fontsize=7)
    twin.legend(loc="upper right", fontsize=7)
    for r in seeds:
        steps = [x["step"] for x in r["rows"]]
        ax2.plot(steps, [x["reward/sampled_mean"] for x in r["rows"]], marker="o", label=f"reward, seed {r['seed']}")
        ax2.plot(steps, [x["episode/tool_calls"] for x in r["rows"]], marker="s", ls="--",
                 label=f"tool calls / episode, seed {r['seed']}")
    ax2.set(xlabel="step", title="training episodes (sampled, temperature "
            f"{results['settings']['temperature']})")
    top = max([0.5] + [max(x["reward/sampled_mean"], x["episode/tool_calls"]) for r in seeds for x in r["rows"]])
    ax2.set_ylim(-0.02, top * 1.1)
    ax2.grid(alpha=0.3)
    if seeds:
        ax2.legend(fontsize=7)
    fig.suptitle("SmolLM2-135M-Instruct + calculator, GPG on a 2-core CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(output: Path, settings: dict[str, Any], results_dir: Path = RESULTS) -> str:
    """Write ``real_model_tools.{md,json,png}`` into ``results_dir`` from the finished parts; returns the md."""
    results = collect(output, settings)
    results_dir.mkdir(parents=True, exist_ok=True)
    text = render(results)
    _write_json(results_dir / "real_model_tools.json", results)
    plot(results, results_dir / "real_model_tools.png")
    (results_dir / "real_model_tools.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("base", "train", "nudge"),
                   help="only the base evaluations, only training, or only the nudged probe (not in the default run)")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (default: 0)")
    for key, kind in (("heldout", int), ("steps", int), ("prompts", int), ("group", int), ("max_length", int),
                      ("max_turns", int), ("lr", float), ("eval_batch", int), ("nudge_size", int)):
        p.add_argument("--" + key.replace("_", "-"), type=kind, default=None, help=f"default {SETTINGS[key]}")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    p.add_argument("--data-dir", default=None, help="benchmark data folder holding math/gsm8k/test.jsonl")
    p.add_argument("--output", default="runs/real_model_tools", help="folder for the runs")
    p.add_argument("--results", default=str(RESULTS), help="where the report goes (default benchmarks/results)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a check that everything runs")
    p.add_argument("--report", action="store_true", help="only write the report from --output")
    args = p.parse_args(argv)
    s = {**SETTINGS, **(QUICK if args.quick else {}),
         **{k: v for k, v in vars(args).items() if k in SETTINGS and v is not None}}
    output = Path(args.output) / ("quick" if args.quick else "")
    results = Path(args.results) if not args.quick or args.results != str(RESULTS) else output / "results"
    if not args.report:
        from gpgrl.model_files import ModelNotFetched, PackagedFileError, packaged_gguf

        try:
            packaged_gguf("smollm2")
        except (ModelNotFetched, PackagedFileError) as e:
            p.error(str(e))
        gsm8k_file(args.data_dir)
        say = lambda text: print(text, flush=True)  # noqa: E731
        if args.part in (None, "base"):
            run_base(output, s, threads=args.threads, data_dir=args.data_dir, say=say)
        if args.part == "nudge":
            run_nudge(output, s, threads=args.threads, data_dir=args.data_dir, say=say)
        if args.part in (None, "train"):
            for seed in (int(x) for x in args.seeds.split(",") if x):
                run_seed(output, s, seed, threads=args.threads, data_dir=args.data_dir, say=say)
        if args.part is not None:
            return 0
    print(report(output, s, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
