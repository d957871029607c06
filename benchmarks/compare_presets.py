"""Compare GPG, its ablations, GRPO, Dr. GRPO, DAPO, GSPO, CISPO, RLOO and REINFORCE++ from one warm start per
seed, on a built-in task.

Two tasks (``--task``):

- ``quickstart`` (default, the original comparison): the quickstart's 2-digit addition, the 4 presets,
  2 seeds x 150 steps. Every method ends near 90%; most groups carry a signal.
- ``hard``: 3-digit addition (``data.dataset_kwargs: {digits: 3}``), warm start stopped at 10% validation
  accuracy, so many groups are all wrong. 11 methods (GPG; GPG without AGE; GPG without resampling; GPG with
  group-std scaling; GRPO; Dr. GRPO; DAPO; GSPO; CISPO; RLOO; REINFORCE++), 5 seeds, per-method mean and seed spread, accuracy per step and
  per sampled answer, wall time and peak memory -> ``benchmarks/results/compare_presets_hard.{md,json,png}``.

Usage::

    python benchmarks/compare_presets.py --task hard            # 5 seeds x 11 methods (see compare_presets_hard.md)
    python benchmarks/compare_presets.py --task hard --quick    # 1 seed, 2 methods, 10 steps: a check, < 3 min
    python benchmarks/compare_presets.py --task hard --render-only --reading "..."

    python benchmarks/compare_presets.py                        # seeds 0 1, all 4 presets, 150 steps
                                                                # -> benchmarks/results/compare_presets.{md,png}
    python benchmarks/compare_presets.py --seeds 0 --steps 30 --presets gpg dapo --results /tmp/cmp.md
    python benchmarks/compare_presets.py --max-resample-draws 5 # cap the rollout draws per step (all presets)
    python benchmarks/compare_presets.py --render-only --reading "..."   # rewrite .md/.png from results.json

For each seed the tiny model is built and warm-started ONCE, exactly as ``gpgrl quickstart`` does it
(character tokenizer, ~130k-parameter OLMo-2 style model, supervised warm-start stopped at 30% validation
accuracy), and saved to ``OUTPUT/seedN/sft``. Every preset then runs the RL stage of the quickstart
(``recipes/quickstart_cpu.yaml``: G=8, 32 prompts/step, temperature 0.7, lr 5e-4 cosine, same seed) from
that same checkpoint with :class:`~gpgrl.train.trainer.Trainer`; only ``algorithm.preset`` changes (and
``algorithm.max_resample_draws`` when ``--max-resample-draws`` is given, for every preset alike). GRPO's
KL term (beta 0.04) uses a reference model that the trainer loads from the same checkpoint.

With ``--task hard`` the same happens on 3-digit addition (``data.dataset_kwargs: {digits: 3}``, at most 48
new tokens), the warm start checked every 5 steps on 200 validation questions and stopped at 10%, each
method given as a preset plus ``algorithm`` overrides (:data:`METHODS`), and ``max_resample_draws`` 4 for
every method (the same cap on a step's rollouts). Peak memory per run: the kernel's peak mark (``VmHWM``,
``_machine.peak_rss_since_reset_mb``) reset at the start of the run (see the report).

Measured per run: held-out greedy accuracy (``gpgrl.tasks.quickstart.heldout_accuracy``: pass@1 on the
200 test questions, never trained on) before and after RL, held-out accuracy on the first 100 test
questions every ``--eval-every`` steps (for the plot), the training reward (mean over the last 10 steps),
the mean alpha (GPG's AGE factor B / (B - M); 1 by construction for presets without AGE), the share of
answers in groups with a signal, the mean rollout draws per step (threshold resampling: GPG draws until
half the groups carry a signal, DAPO until all of them do, up to ``max_resample_draws``), and wall-clock
seconds of the RL stage (evaluations excluded). Runs go one after the other on one thread (as the
quickstart does), so the seconds are comparable. Raw results are kept in ``OUTPUT/results.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine, peak_rss_since_reset_mb, reset_peak_rss, rss_mb  # noqa: E402
from seed_stats import average, paired_difference, spread, value_at_budget  # noqa: E402

PRESETS = ["gpg", "grpo", "dr_grpo", "dapo"]
# A method = a preset plus algorithm overrides (what `algorithm:` in a recipe would say).
METHODS: dict[str, dict[str, Any]] = {
    "gpg": {"preset": "gpg"},
    "gpg_no_age": {"preset": "gpg", "age": False},
    "gpg_no_resample": {"preset": "gpg", "resample_threshold": 0.0},
    "gpg_group_std": {"preset": "gpg", "scale": "group"},
    "grpo": {"preset": "grpo"},
    "dr_grpo": {"preset": "dr_grpo"},
    "dapo": {"preset": "dapo"},
    # the objectives added on the seam (gpgrl.algorithms.objectives), each as its preset
    "gspo": {"preset": "gspo"},
    "cispo": {"preset": "cispo"},
    "rloo": {"preset": "rloo"},
    "reinforce_pp": {"preset": "reinforce_pp"},
}
LABELS = {"gpg": "GPG", "grpo": "GRPO", "dr_grpo": "Dr. GRPO", "dapo": "DAPO", "gpg_no_age": "GPG w/o AGE",
          "gpg_no_resample": "GPG w/o resampling", "gpg_group_std": "GPG + group std", "gspo": "GSPO",
          "cispo": "CISPO", "rloo": "RLOO", "reinforce_pp": "REINFORCE++"}
COLORS = {"gpg": "tab:orange", "grpo": "tab:blue", "dr_grpo": "tab:green", "dapo": "tab:purple",
          "gpg_no_age": "tab:red", "gpg_no_resample": "tab:brown", "gpg_group_std": "tab:olive", "gspo": "tab:cyan",
          "cispo": "tab:pink", "rloo": "tab:gray", "reinforce_pp": "black"}
# The tasks. "quickstart" is exactly the quickstart's (gpgrl.tasks.quickstart: SFT, MAX_NEW_TOKENS).
# "hard": 3-digit addition; its longest reference completion is 33 tokens with EOS (max 48 new tokens);
# the warm-start is checked every 5 steps on 200 validation questions (accuracy jumps by 5-15 points
# between checks at that stage) and stopped at 10%, which leaves the model at roughly 10-20% on the test set.
TASKS: dict[str, dict[str, Any]] = {
    "quickstart": {"dataset_kwargs": {}, "max_new_tokens": 32, "num_validation": 100,
                   "sft": {"max_steps": 400, "batch_size": 32, "lr": 3e-3, "target_accuracy": 0.3, "check_every": 10},
                   "seeds": [0, 1], "steps": 150, "eval_every": 10, "methods": PRESETS,
                   "title": "2-digit addition"},
    "hard": {"dataset_kwargs": {"digits": 3}, "max_new_tokens": 48, "num_validation": 200,
             "sft": {"max_steps": 800, "batch_size": 32, "lr": 3e-3, "target_accuracy": 0.1, "check_every": 5},
             "seeds": [0, 1, 2, 3, 4], "steps": 40, "eval_every": 5, "methods": list(METHODS),
             "title": "3-digit addition"},
}
FINAL_WINDOW = 10  # "final training reward" = mean reward/accuracy over the last this many steps




def warm_start(seed: int, out: Path, task_name: str = "quickstart") -> dict[str, Any]:
    """Build and warm-start the quickstart's tiny model for ``seed`` (as ``gpgrl quickstart`` does, with the
    task's questions and stopping point), save it to ``out/sft`` and measure its held-out accuracy."""
    import torch

    from gpgrl.data.arithmetic import ArithmeticTask
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.tasks import quickstart as qs
    from gpgrl.tasks.sft import SFTConfig, supervised_warm_start

    spec = TASKS[task_name]
    sft, max_new = spec["sft"], spec["max_new_tokens"]
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    task = ArithmeticTask(**spec["dataset_kwargs"])
    train_records, test_records = task.records("train"), task.records("test")
    n_val = spec["num_validation"]  # training questions left out of the warm start, to decide when to stop it
    sft_records, val_records = train_records[:-n_val], train_records[-n_val:]
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=seed, **qs.MODEL)
    sft_cfg = SFTConfig(steps=sft["max_steps"], batch_size=sft["batch_size"], lr=sft["lr"], seed=seed,
                        check_every=sft["check_every"], target_accuracy=sft["target_accuracy"])
    hist = supervised_warm_start(
        model, tok, [r["question"] for r in sft_records], [task.solution(r["question"]) for r in sft_records],
        sft_cfg, check=lambda: qs.heldout_accuracy(model, tok, val_records, max_new_tokens=max_new), log=None,
    )
    sft_dir = out / "sft"
    model.save_pretrained(str(sft_dir))
    tok.save_pretrained(str(sft_dir))
    before = qs.heldout_accuracy(model, tok, test_records, max_new_tokens=max_new)
    return {"tokenizer": tok, "sft_dir": sft_dir, "test_records": test_records, "before": before,
            "sft_steps": len(hist), "sft_seconds": time.perf_counter() - t0,
            "sft_val": hist[-1].get("sft/check", float("nan")), "task": task_name}


def run_preset(seed: int, preset: str, ws: dict[str, Any], out: Path, *, steps: int, eval_every: int,
               max_draws: int | None) -> dict[str, Any]:
    """The quickstart's RL stage with method ``preset`` (a key of :data:`METHODS`: a preset and overrides), on
    the warm start's task, from the warm-started checkpoint in ``ws['sft_dir']``."""
    from gpgrl.config import from_dict
    from gpgrl.models.loading import load_policy
    from gpgrl.tasks import quickstart as qs
    from gpgrl.train.trainer import Trainer

    spec = TASKS[ws.get("task", "quickstart")]
    max_new = spec["max_new_tokens"]
    memory = "per run" if reset_peak_rss(free_first=True) else "process peak so far"
    rss_start = rss_mb()
    t_run = time.perf_counter()
    raw = qs.rl_config(out.parent, seed=seed, steps=steps)  # model.name_or_path = OUTPUT/seedN/sft
    raw["model"]["name_or_path"] = str(ws["sft_dir"])
    if spec["dataset_kwargs"]:
        raw["data"]["dataset_kwargs"] = dict(spec["dataset_kwargs"])
    raw["rollout"]["max_completion_length"] = max_new
    raw["algorithm"] = {**METHODS[preset], **({"max_resample_draws": max_draws} if max_draws else {})}
    raw["train"]["output_dir"] = str(out)
    raw["train"]["overwrite"] = True  # a re-run of the benchmark replaces its own cell (the recipe never deletes)
    # The trainer closes its logger after each train() call and we call it in chunks: no sinks.
    raw["log"] = {"report_to": [], "sample_every": 0, "progress": False}
    cfg = from_dict(raw)
    tok, test_records = ws["tokenizer"], ws["test_records"]
    eval_records = test_records[: qs.EVAL_SIZE_DURING_RL]

    def accuracy(records: list[dict[str, Any]]) -> float:
        return qs.heldout_accuracy(trainer.acc.unwrap_model(trainer.model), tok, records, max_new_tokens=max_new)

    # A fresh copy of the same SFT weights for every preset (the reference model, if any, is loaded by
    # the trainer from the same folder).
    model = load_policy(str(ws["sft_dir"]), dtype="float32")
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tok)
    # The logged `reward/accuracy` is that of the trained batch, from which threshold resampling (DAPO,
    # and GPG when it draws again) has dropped groups without a signal; `reward/sampled_mean` averages
    # every answer drawn in the step, which is the fair number to compare presets with.
    evals = [(0, accuracy(eval_records))]
    rows: list[dict[str, float]] = []
    train_seconds = 0.0
    while trainer.step < steps:
        t0 = time.perf_counter()
        rows += trainer.train(stop_at_step=min(trainer.step + eval_every, steps))
        train_seconds += time.perf_counter() - t0
        evals.append((trainer.step, accuracy(eval_records)))
        last = rows[-1]
        print(f"  seed {seed} {preset:8s} step {trainer.step:3d}/{steps}  reward {last['reward/accuracy']:.2f}  "
              f"draws {last.get('rollout/draws', 1):.0f}  held-out(100) {evals[-1][1]:.0%}  [{train_seconds:.0f}s]",
              flush=True)
    after = accuracy(test_records)
    algo = trainer.algo.to_dict()
    sampled = [r["reward/sampled_mean"] for r in rows]
    # Answers sampled up to the end of each step: draws x prompts x G (every resampling draw counts).
    per_draw = cfg.train.prompts_per_step * cfg.rollout.group_size
    samples, total = [(0, 0)], 0
    for r in rows:
        total += int(r.get("rollout/draws", 1.0)) * per_draw
        samples.append((int(r["train/step"]), total))

    def mean(key: str, window: list[dict[str, float]] = rows) -> float:
        vals = [r[key] for r in window if key in r and r[key] == r[key]]
        return sum(vals) / len(vals) if vals else float("nan")

    run_seconds = time.perf_counter() - t_run
    exhausted, step = int(trainer.counters["resample_budget_exhausted"]), trainer.step
    return {
        "seed": seed, "preset": preset, "method": preset, "before": ws["before"], "after": after,
        "steps": step, "seconds": train_seconds, "run_seconds": run_seconds,
        "rss_start_mb": rss_start, "peak_rss_mb": peak_rss_since_reset_mb(), "memory_measure": memory,
        "mean_draws": mean("rollout/draws"),
        "max_draws_hit": exhausted,
        "mean_alpha": mean("adv/alpha"),
        "signal_share": mean("adv/num_valid_samples") / mean("adv/num_samples"),
        "final_reward": _nanmean(sampled[-FINAL_WINDOW:]),
        "final_batch_reward": mean("reward/accuracy", rows[-FINAL_WINDOW:]),
        "clip_frac": mean("loss/clip_frac_low") + mean("loss/clip_frac_high"),
        "kl": mean("loss/kl"),
        "skipped_steps": int(sum(r.get("optim/skipped", 0.0) for r in rows)),
        "evals": evals,
        "samples": samples,
        "train_reward": [(int(r["train/step"]), r["reward/accuracy"]) for r in rows],
        "sampled_reward": [(int(r["train/step"]), r["reward/sampled_mean"]) for r in rows],
        "algorithm": algo,
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


def write_table(path: Path, data: dict[str, Any], reading: str) -> None:
    runs, presets = data["runs"], data["presets"]
    s = data["settings"]
    lines = [
        "# GPG vs GRPO vs Dr. GRPO vs DAPO on the quickstart task",
        "",
        "Same tiny model, same supervised warm-start checkpoint per seed, same RL settings; only the algorithm",
        "preset changes. Held-out accuracy = greedy pass@1 on the 200 test questions of the built-in 2-digit",
        "addition task (never trained on), graded by the `accuracy` reward. \"final reward\" = training reward",
        f"(accuracy of ALL answers sampled at T={s['temperature']:g}, every resampling draw included) averaged over",
        f"the last {FINAL_WINDOW} steps; \"batch reward\" = the same for the trained batch only, which is biased up",
        "for presets that resample (DAPO drops all-wrong and all-right groups and draws more, GPG when < 50% carry",
        "a signal), so it is not comparable across presets;",
        "\"alpha\" = mean of GPG's AGE factor B/(B-M) (1 by construction for presets without AGE); \"signal\" =",
        "share of trained answers in groups with a signal (not all right / all wrong); \"draws/step\" = rollout",
        "draws per step (threshold resampling); \"seconds\" = wall-clock time of the RL stage (evaluations excluded).",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Machine: {data['machine']}.{' ' + data['notes'] if data['notes'] else ''}",
        "",
        f"Settings: RL stage of `recipes/quickstart_cpu.yaml` for every preset: G={s['group_size']}, "
        f"{s['prompts_per_step']} prompts/step, temperature {s['temperature']:g}, max {s['max_new_tokens']} new tokens, "
        f"lr {s['lr']:g} ({s['lr_scheduler']}, {s['warmup_steps']} warm-up steps), max grad norm {s['max_grad_norm']}, "
        f"{s['steps']} steps, RL seed = model seed; max_resample_draws "
        f"{s['max_resample_draws'] or 'at its default (20)'} for all presets. "
        f"Model {s['model']}; SFT warm-start {s['sft']}. Presets as defined in `src/gpgrl/algorithms/presets.py`:",
        "",
    ]
    for p in presets:
        a = next(r["algorithm"] for r in runs if r["preset"] == p)
        lines.append(f"- {LABELS[p]}: scale={a['scale']}, age={a['age']}, ratio={a['ratio']}, "
                     f"eps={a['epsilon_low']}/{a['epsilon_high']}, beta={a['beta']}, loss_agg={a['loss_agg']}, "
                     f"resample_threshold={a['resample_threshold']}, max_resample_draws={a['max_resample_draws']}")
    lines += [
        "",
        f"![held-out accuracy per step]({path.with_suffix('.png').name})",
        "",
        "| seed | preset | acc before | acc after | delta (points) | final reward | batch reward | alpha | signal "
        "| draws/step | seconds |",
        "|-----:|:-------|-----------:|----------:|---------------:|-------------:|-------------:|------:|-------:"
        "|-----------:|--------:|",
    ]
    for r in runs:
        lines.append(f"| {r['seed']} | {LABELS[r['preset']]} | {r['before']:.1%} | {r['after']:.1%} | "
                     f"{100 * (r['after'] - r['before']):+.1f} | {r['final_reward']:.2f} | {r['final_batch_reward']:.2f} | "
                     f"{r['mean_alpha']:.2f} | "
                     f"{r['signal_share']:.0%} | {r['mean_draws']:.2f} | {r['seconds']:.0f} |")
    seeds = sorted({r["seed"] for r in runs})
    lines += [
        "",
        f"Mean over seeds {', '.join(map(str, seeds))}:",
        "",
        "| preset | acc before | acc after | delta (points) | final reward | batch reward | alpha | signal | draws/step "
        "| seconds |",
        "|:-------|-----------:|----------:|---------------:|-------------:|-------------:|------:|-------:|-----------:"
        "|--------:|",
    ]
    for p in presets:
        rs = [r for r in runs if r["preset"] == p]

        lines.append(f"| {LABELS[p]} | {average(rs, 'before'):.1%} | {average(rs, 'after'):.1%} | "
                     f"{100 * (average(rs, 'after') - average(rs, 'before')):+.1f} | {average(rs, 'final_reward'):.2f} | {average(rs, 'final_batch_reward'):.2f} | "
                     f"{average(rs, 'mean_alpha'):.2f} | {average(rs, 'signal_share'):.0%} | {average(rs, 'mean_draws'):.2f} | "
                     f"{average(rs, 'seconds'):.0f} |")
    hit = [f"{LABELS[r['preset']]} seed {r['seed']}: {r['max_draws_hit']} steps" for r in runs if r["max_draws_hit"]]
    skipped = [f"{LABELS[r['preset']]} seed {r['seed']}: {r['skipped_steps']}" for r in runs if r["skipped_steps"]]
    sft = ", ".join(f"seed {k}: {v['sft_steps']} steps, {v['sft_seconds']:.0f}s" for k, v in data["warm_starts"].items())
    lines += [
        "",
        f"Warm-start (shared by the presets of a seed): {sft}. Steps that spent all their resampling draws: "
        f"{'; '.join(hit) or 'none'}. Skipped optimizer steps (no signal / non-finite): {'; '.join(skipped) or 'none'}.",
        "Mean share of clipped tokens (PPO clip, low + high) and mean k3 KL to the reference, per run: "
        + "; ".join(f"{LABELS[r['preset']]} seed {r['seed']}: {r['clip_frac']:.3f} / {r['kl']:.4f}" for r in runs) + ".",
        f"Total wall-clock time of the benchmark: {data['total_seconds'] / 60:.1f} minutes.",
        "",
    ]
    _write_report(path, lines, reading, data["date"])


def _write_report(path: Path, lines: list[str], reading: str | None, date: str) -> None:
    """Write a report's ``lines``, then the reading (if any) and the measurement date, to ``path``."""
    if reading:
        lines = [*lines, "## Reading", "", reading, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*lines, f"Measured on {date}.", ""]))


def write_plot(path: Path, data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, presets = data["runs"], data["presets"]
    seeds = sorted({r["seed"] for r in runs})
    fig, axes = plt.subplots(2, len(seeds), figsize=(5.5 * len(seeds), 7), squeeze=False, sharex=True)
    for col, seed in enumerate(seeds):
        top, bottom = axes[0][col], axes[1][col]
        for p in presets:
            r = next((r for r in runs if r["seed"] == seed and r["preset"] == p), None)
            if r is None:
                continue
            c = COLORS.get(p)
            top.plot([s for s, _ in r["evals"]], [a for _, a in r["evals"]], "o-", ms=3, color=c,
                     label=f"{LABELS[p]}: {r['before']:.0%} -> {r['after']:.0%}")
            top.scatter([r["steps"]], [r["after"]], marker="s", s=40, color=c, zorder=3)
            steps = [s for s, _ in r["sampled_reward"]]
            vals = [v for _, v in r["sampled_reward"]]
            k = 5  # moving average over 5 steps
            smooth = [sum(vals[max(0, i - k + 1) : i + 1]) / len(vals[max(0, i - k + 1) : i + 1]) for i in range(len(vals))]
            bottom.plot(steps, smooth, color=c, label=LABELS[p])
        before = next(r["before"] for r in runs if r["seed"] == seed)
        top.scatter([0], [before], marker="s", s=40, color="black", zorder=3)
        top.set_title(f"seed {seed}: held-out greedy accuracy", fontsize=10)
        top.set_ylim(0, 1)
        top.grid(alpha=0.3)
        top.legend(loc="lower right", fontsize=8, title="lines: first 100 test questions; squares: all 200",
                   title_fontsize=7)
        bottom.set_title(f"seed {seed}: reward of all sampled answers (T={data['settings']['temperature']:g}, "
                         "5-step mean)",
                         fontsize=10)
        bottom.set_ylim(0, 1)
        bottom.grid(alpha=0.3)
        bottom.set_xlabel("RL step")
        bottom.legend(loc="lower right", fontsize=8)
    axes[0][0].set_ylabel("accuracy")
    axes[1][0].set_ylabel("reward")
    fig.suptitle("Presets from the same warm start (tiny model, 2-digit addition)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(runs: list[dict[str, Any]], methods: list[str], reference: str = "gpg") -> dict[str, Any]:
    """Per-method figures over seeds (only seeds where every listed method finished, so that pairs match):
    final held-out accuracy (spread), paired difference to ``reference``, held-out accuracy at an equal
    sample budget (per seed: the fewest answers any method sampled), accuracy per eval step, time, memory."""
    by = {(r["seed"], r["method"] if "method" in r else r["preset"]): r for r in runs}
    seeds = sorted({s for s, _ in by if all((s, m) in by for m in methods)})
    budget = {s: min(by[s, m]["samples"][-1][1] for m in methods) for s in seeds}
    out: dict[str, Any] = {"seeds": seeds, "budget": budget, "methods": {}}
    for m in methods:
        rs = [by[s, m] for s in seeds]
        if not rs:
            continue
        at_budget = []
        for s, r in zip(seeds, rs):
            samples = dict(r["samples"])
            at_budget.append(value_at_budget([(samples.get(step, float("inf")), a) for step, a in r["evals"]], budget[s]))
        steps = sorted({step for r in rs for step, _ in r["evals"]})
        per_step = {step: spread([a for r in rs for st, a in r["evals"] if st == step]) for step in steps}
        out["methods"][m] = {
            "after": spread([r["after"] for r in rs]), "before": spread([r["before"] for r in rs]),
            "at_budget": spread(at_budget), "at_budget_values": at_budget,
            "final_reward": spread([r["final_reward"] for r in rs]),
            "per_step": per_step,
            "samples": spread([r["samples"][-1][1] for r in rs]),
            "seconds": spread([r["seconds"] for r in rs]), "run_seconds": spread([r.get("run_seconds", r["seconds"]) for r in rs]),
            "peak_rss_mb": spread([r.get("peak_rss_mb", float("nan")) for r in rs]),
            "rss_growth_mb": spread([r.get("peak_rss_mb", float("nan")) - r.get("rss_start_mb", float("nan")) for r in rs]),
            "mean_draws": spread([r["mean_draws"] for r in rs]), "mean_alpha": spread([r["mean_alpha"] for r in rs]),
            "signal_share": spread([r["signal_share"] for r in rs]),
            "max_draws_hit": sum(r["max_draws_hit"] for r in rs),
        }
        if reference in methods:
            out["methods"][m]["time_ratio"] = spread([r["seconds"] / by[s, reference]["seconds"]
                                                      for s, r in zip(seeds, rs) if by[s, reference]["seconds"] > 0])
        if reference in methods and m != reference:
            ref = [by[s, reference] for s in seeds]
            out["methods"][m]["vs_ref"] = paired_difference([r["after"] for r in rs], [r["after"] for r in ref])
            ref_budget = out["methods"].get(reference, {}).get("at_budget_values")
            if ref_budget is not None:
                out["methods"][m]["vs_ref_budget"] = paired_difference(at_budget, ref_budget)
    return out


def _pm(s: dict[str, float], pct: bool = True) -> str:
    if not s["n"]:
        return "-"
    if pct:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f} [{100 * s['min']:.1f}, {100 * s['max']:.1f}]"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def write_table_hard(path: Path, data: dict[str, Any], reading: str) -> None:
    """The report of ``--task hard`` (and ``--quick``): per-method summary, per-seed rows, accuracy per step."""
    runs, methods, s = data["runs"], data["presets"], data["settings"]
    summ = summarize(runs, methods)
    seeds = summ["seeds"]
    partial = not data.get("complete", True)
    lines = [
        f"# GPG, its ablations, GRPO, Dr. GRPO and DAPO on {TASKS[data['task']]['title']} (a sparse-reward task)",
        "",
    ]
    if partial:
        lines += [f"**PARTIAL RESULTS**: the run was stopped before it finished; {len(runs)} runs are here, and the "
                  f"summary uses only the seeds every method finished ({', '.join(map(str, seeds)) or 'none'}).", ""]
    lines += [
        "Same tiny model, same supervised warm start per seed (stopped at "
        f"{s['sft']['target_accuracy']:.0%} validation accuracy, so the model starts far below the quickstart's 30%) and",
        "the same RL settings; only the algorithm changes. Held-out accuracy = greedy pass@1 on the 200 test questions",
        "(never trained on), graded by the `accuracy` reward; during RL on the first 100 of them every "
        f"{s['eval_every']} steps.",
        "\"± \" is the standard deviation across seeds (n - 1), [min, max] the range. \"Δ vs GPG\" is the paired",
        "difference (same seed, same warm start) of final held-out accuracy, mean [min, max] over seeds, with how many",
        "seeds the method is above / below GPG; \"beyond spread\" = the difference of the means is larger than the",
        "larger of the two methods' seed standard deviations (`paired_difference` in this script). \"at equal samples\"",
        "= held-out(100) accuracy when the method had sampled as many answers as the method of that seed that sampled",
        "fewest (methods that resample spend more answers per step), linearly interpolated between the two",
        "evaluations around that budget.",
        "Time = wall clock of the RL stage (evaluations excluded); \"peak RSS\" = the kernel's peak mark (`VmHWM` in "
        "/proc/self/status) at the end of each run, after resetting the kernel's peak mark to the current RSS "
        "(`malloc_trim`, then `echo 5 > /proc/self/clear_refs`) at its start: the peak resident memory of the "
        f"whole Python process during that run (measured {data['runs'][0].get('memory_measure', '?') if runs else '?'}), "
        "torch, the libraries and what the allocator kept from earlier runs included; \"above start\" = that peak "
        "minus the RSS at the start of the run (what the run itself added: models, optimizer, reference model, "
        "activations). The RSS at the start of a run grows by roughly 50-100 MB per run within the one process; "
        "trainers and models are freed between runs (checked with weak references), so this is memory the allocator "
        "keeps, and \"above start\" is the figure to compare. Seconds depend on the load of the shared machine "
        "(other jobs ran beside this one); \"RL time / GPG's\" is the ratio to GPG's run of the same seed, run minutes "
        "apart, averaged over seeds.",
        "",
        f"Command: `{data['command']}`",
        "",
        f"Machine: {data['machine']}.{' ' + data['notes'] if data['notes'] else ''}",
        "",
        f"Settings: the quickstart's RL recipe (`recipes/quickstart_cpu.yaml`) with `data.dataset_kwargs: "
        f"{json.dumps(s['dataset_kwargs'])}` and max {s['max_new_tokens']} new tokens, for every method: G={s['group_size']}, "
        f"{s['prompts_per_step']} prompts per draw ({s['group_size'] * s['prompts_per_step']} answers), temperature "
        f"{s['temperature']:g}, lr {s['lr']:g} ({s['lr_scheduler']}, {s['warmup_steps']} warm-up steps), max grad norm "
        f"{s['max_grad_norm']}, {s['steps']} steps, RL seed = model seed; `max_resample_draws` "
        f"{s['max_resample_draws'] or 'at its default (20)'} for every method (the same cap on the rollout budget "
        "of a step; methods without resampling draw once). Model "
        f"{s['model']}; SFT warm start {s['sft']}. Methods (`algorithm:` settings):",
        "",
    ]
    for m in methods:
        a = next((r["algorithm"] for r in runs if r.get("method", r["preset"]) == m), None)
        if a is None:
            continue
        lines.append(f"- {LABELS[m]} (`{json.dumps(METHODS[m])}`): scale={a['scale']}, age={a['age']}, "
                     f"ratio={a['ratio']}, eps={a['epsilon_low']}/{a['epsilon_high']}, beta={a['beta']}, "
                     f"loss_agg={a['loss_agg']}, resample_threshold={a['resample_threshold']}, "
                     f"max_resample_draws={a['max_resample_draws']}")
    lines += [
        "",
        f"![held-out accuracy vs step and vs sampled answers]({path.with_suffix('.png').name})",
        "",
        f"## Summary over seeds {', '.join(map(str, seeds))} (n = {len(seeds)})",
        "",
        "| method | acc before (%) | final held-out acc (%): mean ± std [min, max] | Δ vs GPG (points): mean [min, max] "
        "(seeds above/below) | beyond spread? | held-out(100) at equal samples (%) | Δ vs GPG at equal samples | "
        "sampled reward (last 10 steps) | alpha | signal | draws/step | answers sampled | RL seconds | RL time / GPG's | "
        "peak RSS (MB): process / above start |",
        "|:--|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for m in methods:
        x = summ["methods"].get(m)
        if x is None:
            continue
        d, db = x.get("vs_ref"), x.get("vs_ref_budget")
        diff = (f"{100 * d['mean']:+.1f} [{100 * d['min']:+.1f}, {100 * d['max']:+.1f}] ({d['above']}/{d['below']})"
                if d else "(reference)")
        beyond = ("yes" if d["beyond_spread"] else "no") if d else "-"
        dbs = f"{100 * db['mean']:+.1f} ({'beyond' if db['beyond_spread'] else 'within'} spread)" if db else "-"
        lines.append(
            f"| {LABELS[m]} | {100 * x['before']['mean']:.1f} | {_pm(x['after'])} | {diff} | {beyond} | "
            f"{_pm(x['at_budget'])} | {dbs} | {x['final_reward']['mean']:.2f} | {x['mean_alpha']['mean']:.2f} | "
            f"{x['signal_share']['mean']:.0%} | {x['mean_draws']['mean']:.2f} | {x['samples']['mean']:.0f} | "
            f"{x['seconds']['mean']:.0f} ± {x['seconds']['std']:.0f} | "
            f"{x['time_ratio']['mean'] if 'time_ratio' in x else float('nan'):.2f} | {x['peak_rss_mb']['mean']:.0f} / "
            f"{x['rss_growth_mb']['mean']:.0f} |")
    budgets = ", ".join(f"seed {k}: {v}" for k, v in summ["budget"].items())
    lines += ["", f"Equal sample budget per seed (answers): {budgets}.", "",
              "## Held-out accuracy per step (first 100 test questions, mean over seeds, %)", ""]
    steps = sorted({st for x in summ["methods"].values() for st in x["per_step"]})
    lines += ["| method | " + " | ".join(f"step {st}" for st in steps) + " |",
              "|:--|" + "--:|" * len(steps)]
    for m in methods:
        x = summ["methods"].get(m)
        if x is None:
            continue
        lines.append(f"| {LABELS[m]} | " + " | ".join(
            f"{100 * x['per_step'][st]['mean']:.1f}" if st in x["per_step"] else "-" for st in steps) + " |")
    lines += ["", "## Per seed", "",
              "| seed | method | acc before | acc after | delta (points) | sampled reward | batch reward | alpha | signal "
              "| draws/step | answers | RL seconds | run seconds | RSS at start / peak (MB) |",
              "|--:|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in runs:
        m = r.get("method", r["preset"])
        lines.append(f"| {r['seed']} | {LABELS[m]} | {r['before']:.1%} | {r['after']:.1%} | "
                     f"{100 * (r['after'] - r['before']):+.1f} | {r['final_reward']:.2f} | {r['final_batch_reward']:.2f} | "
                     f"{r['mean_alpha']:.2f} | {r['signal_share']:.0%} | {r['mean_draws']:.2f} | {r['samples'][-1][1]} | "
                     f"{r['seconds']:.0f} | {r.get('run_seconds', float('nan')):.0f} | "
                     f"{r.get('rss_start_mb', float('nan')):.0f} / {r.get('peak_rss_mb', float('nan')):.0f} |")
    hit = [f"{LABELS[r.get('method', r['preset'])]} seed {r['seed']}: {r['max_draws_hit']}" for r in runs if r["max_draws_hit"]]
    skipped = [f"{LABELS[r.get('method', r['preset'])]} seed {r['seed']}: {r['skipped_steps']}" for r in runs
               if r["skipped_steps"]]
    sft = ", ".join(f"seed {k}: {v['sft_steps']} steps, {v['sft_seconds']:.0f}s, test {v['before']:.1%}"
                    for k, v in data["warm_starts"].items())
    lines += [
        "",
        f"Warm starts (shared by the methods of a seed): {sft}. Steps that spent all their resampling draws "
        f"(then trained on what there was): {'; '.join(hit) or 'none'}. Skipped optimizer steps (no signal / "
        f"non-finite): {'; '.join(skipped) or 'none'}.",
        f"Total wall-clock time of the benchmark: {data['total_seconds'] / 60:.1f} minutes.",
        "",
    ]
    _write_report(path, lines, reading, data["date"])


def write_plot_hard(path: Path, data: dict[str, Any]) -> None:
    """Held-out accuracy (first 100 test questions) vs RL step and vs answers sampled: mean over seeds, with the
    seeds' min-max band on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, methods = data["runs"], data["presets"]
    summ = summarize(runs, methods)
    seeds = summ["seeds"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for m in methods:
        x = summ["methods"].get(m)
        if x is None:
            continue
        c = COLORS.get(m)
        steps = sorted(x["per_step"])
        mean = [x["per_step"][st]["mean"] for st in steps]
        left.plot(steps, mean, "o-", ms=3, color=c,
                  label=f"{LABELS[m]}: final {100 * x['after']['mean']:.0f}% ± {100 * x['after']['std']:.0f}")
        left.fill_between(steps, [x["per_step"][st]["min"] for st in steps], [x["per_step"][st]["max"] for st in steps],
                          color=c, alpha=0.08)
        rs = [r for r in runs if r.get("method", r["preset"]) == m and r["seed"] in seeds]
        n = min(len(r["evals"]) for r in rs)
        xs, ys = [], []
        for i in range(n):
            xs.append(sum(dict(r["samples"]).get(r["evals"][i][0], 0) for r in rs) / len(rs))
            ys.append(sum(r["evals"][i][1] for r in rs) / len(rs))
        right.plot(xs, ys, "o-", ms=3, color=c, label=LABELS[m])
    left.set_xlabel("RL step")
    left.set_ylabel("held-out greedy accuracy (100 test questions)")
    left.set_title(f"vs step (mean over {len(seeds)} seeds; band: min-max)", fontsize=10)
    right.set_xlabel("answers sampled (every resampling draw counted)")
    right.set_title("vs answers sampled (mean over seeds of both coordinates)", fontsize=10)
    top = max([st["max"] for x in summ["methods"].values() for st in x["per_step"].values()] or [0.5])
    for ax in (left, right):
        ax.set_ylim(0, min(1.0, math.ceil(10 * top + 0.5) / 10))
        ax.grid(alpha=0.3)
    left.legend(loc="upper left", fontsize=8)
    right.legend(loc="upper left", fontsize=8)
    partial = "" if data.get("complete", True) else " [PARTIAL]"
    fig.suptitle(f"Same warm start per seed, tiny model, {TASKS[data['task']]['title']}{partial}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare GPG (and its ablations), GRPO, Dr. GRPO and DAPO on a built-in "
                                                 "task, every method from the same warm-started model per seed.")
    parser.add_argument("--task", choices=sorted(TASKS), default="quickstart",
                        help="quickstart: 2-digit addition, the 4 presets (the original comparison); hard: 3-digit "
                             "addition from a ~10%% warm start, 11 methods, 5 seeds")
    parser.add_argument("--quick", action="store_true",
                        help="a check: 1 seed, 10 steps, GPG and GRPO; report to OUTPUT/report.md unless --results")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (quickstart: 0 1; hard: 0-4)")
    parser.add_argument("--steps", type=int, default=None, help="RL steps per run (quickstart: 150; hard: 40)")
    parser.add_argument("--presets", "--methods", dest="presets", nargs="+", default=None, choices=list(METHODS),
                        help="methods (quickstart: the 4 presets; hard: all 11)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="steps between held-out evaluations (quickstart: 10; hard: 5)")
    parser.add_argument("--max-resample-draws", type=int, default=None,
                        help="set algorithm.max_resample_draws for every method (quickstart default: the presets' "
                             "own, 20; hard: 4)")
    parser.add_argument("--output", default=None, help="folder for checkpoints and results.json "
                                                       "(default: runs/compare_presets[_hard][_quick])")
    parser.add_argument("--results", default=None,
                        help="markdown file to write; the plot goes next to it as .png (hard: and the raw results "
                             "as .json). Default: benchmarks/results/compare_presets[_hard].md")
    parser.add_argument("--notes", default="", help="free text added after the machine line (e.g. the load)")
    parser.add_argument("--reading", default="", help="a short interpretation, written under 'Reading'")
    parser.add_argument("--render-only", action="store_true",
                        help="do not train: rewrite the .md and .png from OUTPUT/results.json (hard: or RESULTS.json)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    spec = TASKS[args.task]
    hard = args.task != "quickstart"
    quick = {"seeds": [0], "steps": 10, "presets": ["gpg", "grpo"]} if args.quick else {}
    for key, default in (("seeds", spec["seeds"]), ("steps", spec["steps"]), ("presets", spec["methods"]),
                         ("eval_every", spec["eval_every"])):
        if getattr(args, key) is None:
            setattr(args, key, quick.get(key, default))
    if args.max_resample_draws is None and hard:
        args.max_resample_draws = 4
    if args.steps < 1 or args.eval_every < 1 or (args.max_resample_draws is not None and args.max_resample_draws < 1):
        parser.error("--steps, --eval-every and --max-resample-draws must be >= 1")
    suffix = ("_hard" if hard else "") + ("_quick" if args.quick else "")
    out = Path(args.output or f"runs/compare_presets{suffix}")
    if args.results:
        results = Path(args.results)
    elif args.quick:
        results = out / "report.md"
    else:
        results = ROOT / "benchmarks" / "results" / f"compare_presets{'_hard' if hard else ''}.md"

    if args.render_only:
        source = out / "results.json"
        if not source.exists() and results.with_suffix(".json").exists():
            source = results.with_suffix(".json")
        data = json.loads(source.read_text())
        if args.notes:
            data["notes"] = args.notes
    else:
        import torch

        from gpgrl.tasks import quickstart as qs

        torch.set_num_threads(1)  # the tiny model is fastest on one thread (see gpgrl.tasks.quickstart)
        t_start = time.perf_counter()
        cfg = qs.rl_config()
        data = {
            "command": shlex.join(["python", "benchmarks/compare_presets.py", *argv]),
            "machine": machine("torch on 1 thread"), "notes": args.notes, "date": datetime.date.today().isoformat(),
            "task": args.task, "presets": args.presets, "complete": False, "total_seconds": 0.0, "warm_starts": {},
            "settings": {
                "steps": args.steps, "group_size": cfg["rollout"]["group_size"],
                "prompts_per_step": cfg["train"]["prompts_per_step"], "temperature": cfg["rollout"]["temperature"],
                "max_new_tokens": spec["max_new_tokens"], "lr": cfg["optim"]["lr"],
                "lr_scheduler": cfg["optim"]["lr_scheduler"], "warmup_steps": cfg["optim"]["warmup_steps"],
                "max_grad_norm": cfg["optim"]["max_grad_norm"], "max_resample_draws": args.max_resample_draws,
                "model": dict(qs.MODEL), "sft": dict(spec["sft"]), "dataset_kwargs": spec["dataset_kwargs"],
                "eval_every": args.eval_every,
            },
            "runs": [],
        }
        out.mkdir(parents=True, exist_ok=True)

        def save() -> None:  # after every run, so that a stopped benchmark can still be rendered
            data["total_seconds"] = time.perf_counter() - t_start
            (out / "results.json").write_text(json.dumps(data, indent=1))

        with qs.quiet_libraries(True):
            for seed in args.seeds:
                ws = warm_start(seed, out / f"seed{seed}", args.task)
                data["warm_starts"][str(seed)] = {"sft_steps": ws["sft_steps"], "sft_seconds": ws["sft_seconds"],
                                                  "before": ws["before"], "sft_val": ws["sft_val"]}
                print(f"seed {seed}: warm start {ws['sft_steps']} SFT steps, held-out accuracy {ws['before']:.1%} "
                      f"[{ws['sft_seconds']:.0f}s]", flush=True)
                for preset in args.presets:
                    r = run_preset(seed, preset, ws, out / f"seed{seed}" / preset, steps=args.steps,
                                   eval_every=args.eval_every, max_draws=args.max_resample_draws)
                    data["runs"].append(r)
                    save()
                    print(f"seed {seed} {preset}: {r['before']:.1%} -> {r['after']:.1%}, {r['mean_draws']:.2f} "
                          f"draws/step, {r['seconds']:.0f}s, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        data["complete"] = True
        save()
    reading = args.reading or data.get("reading", "")
    data["reading"] = reading
    if (out / "results.json").exists() or not args.render_only:
        (out / "results.json").write_text(json.dumps(data, indent=1))
    if hard or args.quick:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.with_suffix(".json").write_text(json.dumps(data, indent=1))
        write_table_hard(results, data, reading)
        write_plot_hard(results.with_suffix(".png"), data)
    else:
        write_table(results, data, reading)
        write_plot(results.with_suffix(".png"), data)
    print(f"wrote {results} and {results.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
