"""Compare the GPG, GRPO, Dr. GRPO and DAPO presets on the ``gpgrl quickstart`` task, from one warm start.

Usage::

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
import contextlib
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["gpg", "grpo", "dr_grpo", "dapo"]
LABELS = {"gpg": "GPG", "grpo": "GRPO", "dr_grpo": "Dr. GRPO", "dapo": "DAPO"}
COLORS = {"gpg": "tab:orange", "grpo": "tab:blue", "dr_grpo": "tab:green", "dapo": "tab:purple"}
FINAL_WINDOW = 10  # "final training reward" = mean reward/accuracy over the last this many steps




def warm_start(seed: int, out: Path) -> dict[str, Any]:
    """Build and warm-start the quickstart's tiny model for ``seed`` (as ``gpgrl quickstart`` does), save it
    to ``out/sft`` and measure its held-out accuracy; returns what the RL runs need."""
    import torch

    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.tasks import quickstart as qs
    from gpgrl.tasks.arithmetic import ArithmeticTask
    from gpgrl.tasks.sft import SFTConfig, supervised_warm_start

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    task = ArithmeticTask()
    train_records, test_records = task.records("train"), task.records("test")
    sft_records, val_records = train_records[: -qs.NUM_VALIDATION], train_records[-qs.NUM_VALIDATION :]
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=seed, **qs.MODEL)
    sft_cfg = SFTConfig(steps=qs.SFT["max_steps"], batch_size=qs.SFT["batch_size"], lr=qs.SFT["lr"], seed=seed,
                        check_every=qs.SFT["check_every"], target_accuracy=qs.SFT["target_accuracy"])
    hist = supervised_warm_start(
        model, tok, [r["question"] for r in sft_records], [task.solution(r["question"]) for r in sft_records],
        sft_cfg, check=lambda: qs.heldout_accuracy(model, tok, val_records), log=None,
    )
    sft_dir = out / "sft"
    model.save_pretrained(str(sft_dir))
    tok.save_pretrained(str(sft_dir))
    before = qs.heldout_accuracy(model, tok, test_records)
    return {"tokenizer": tok, "sft_dir": sft_dir, "test_records": test_records, "before": before,
            "sft_steps": len(hist), "sft_seconds": time.perf_counter() - t0}


def run_preset(seed: int, preset: str, ws: dict[str, Any], out: Path, *, steps: int, eval_every: int,
               max_draws: int | None) -> dict[str, Any]:
    """The quickstart's RL stage with ``preset``, from the warm-started checkpoint in ``ws['sft_dir']``."""
    from gpgrl.config import from_dict
    from gpgrl.models.loading import load_policy
    from gpgrl.tasks import quickstart as qs
    from gpgrl.train.trainer import Trainer

    raw = qs.rl_config(out.parent, seed=seed, steps=steps)  # model.name_or_path = OUTPUT/seedN/sft
    raw["model"]["name_or_path"] = str(ws["sft_dir"])
    raw["algorithm"] = {"preset": preset, **({"max_resample_draws": max_draws} if max_draws else {})}
    raw["train"]["output_dir"] = str(out)
    # The trainer closes its logger after each train() call and we call it in chunks: no sinks.
    raw["log"] = {"report_to": [], "sample_every": 0, "progress": False}
    cfg = from_dict(raw)
    tok, test_records = ws["tokenizer"], ws["test_records"]
    eval_records = test_records[: qs.EVAL_SIZE_DURING_RL]

    # A fresh copy of the same SFT weights for every preset (the reference model, if any, is loaded by
    # the trainer from the same folder).
    model = load_policy(str(ws["sft_dir"]), dtype="float32")
    trainer = Trainer.from_config(cfg, model=model, tokenizer=tok)
    # The logged `reward/accuracy` is that of the trained batch, from which threshold resampling (DAPO,
    # and GPG when it draws again) has dropped groups without a signal; `reward/sampled_mean` averages
    # every answer drawn in the step, which is the fair number to compare presets with.
    evals = [(0, qs.heldout_accuracy(trainer.acc.unwrap_model(trainer.model), tok, eval_records))]
    rows: list[dict[str, float]] = []
    train_seconds = 0.0
    while trainer.step < steps:
        t0 = time.perf_counter()
        rows += trainer.train(stop_at_step=min(trainer.step + eval_every, steps))
        train_seconds += time.perf_counter() - t0
        evals.append((trainer.step, qs.heldout_accuracy(trainer.acc.unwrap_model(trainer.model), tok, eval_records)))
        last = rows[-1]
        print(f"  seed {seed} {preset:8s} step {trainer.step:3d}/{steps}  reward {last['reward/accuracy']:.2f}  "
              f"draws {last.get('rollout/draws', 1):.0f}  held-out(100) {evals[-1][1]:.0%}  [{train_seconds:.0f}s]",
              flush=True)
    after = qs.heldout_accuracy(trainer.acc.unwrap_model(trainer.model), tok, test_records)
    algo = trainer.algo.to_dict()
    sampled = [r["reward/sampled_mean"] for r in rows]

    def mean(key: str, window: list[dict[str, float]] = rows) -> float:
        vals = [r[key] for r in window if key in r and r[key] == r[key]]
        return sum(vals) / len(vals) if vals else float("nan")

    return {
        "seed": seed, "preset": preset, "before": ws["before"], "after": after, "steps": trainer.step,
        "seconds": train_seconds, "mean_draws": mean("rollout/draws"),
        "max_draws_hit": int(trainer.counters["resample_budget_exhausted"]),
        "mean_alpha": mean("adv/alpha"),
        "signal_share": mean("adv/num_valid_samples") / mean("adv/num_samples"),
        "final_reward": _nanmean(sampled[-FINAL_WINDOW:]),
        "final_batch_reward": mean("reward/accuracy", rows[-FINAL_WINDOW:]),
        "clip_frac": mean("loss/clip_frac_low") + mean("loss/clip_frac_high"),
        "kl": mean("loss/kl"),
        "skipped_steps": int(sum(r.get("optim/skipped", 0.0) for r in rows)),
        "evals": evals,
        "train_reward": [(int(r["train/step"]), r["reward/accuracy"]) for r in rows],
        "sampled_reward": [(int(r["train/step"]), r["reward/sampled_mean"]) for r in rows],
        "algorithm": algo,
    }


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} CPU cores ({cpu}), no GPU, torch on 1 thread; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()}")


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

        def avg(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return sum(r[key] for r in rs) / len(rs)

        lines.append(f"| {LABELS[p]} | {avg('before'):.1%} | {avg('after'):.1%} | "
                     f"{100 * (avg('after') - avg('before')):+.1f} | {avg('final_reward'):.2f} | {avg('final_batch_reward'):.2f} | "
                     f"{avg('mean_alpha'):.2f} | {avg('signal_share'):.0%} | {avg('mean_draws'):.2f} | "
                     f"{avg('seconds'):.0f} |")
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
    if reading:
        lines += ["## Reading", "", reading, ""]
    lines += [f"Measured on {data['date']}.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare the gpg, grpo, dr_grpo and dapo presets on the quickstart "
                                                 "task, every preset from the same warm-started model per seed.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (default: 0 1)")
    parser.add_argument("--steps", type=int, default=150, help="RL steps per run (default: 150, the quickstart's)")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS, help="presets (default: all 4)")
    parser.add_argument("--eval-every", type=int, default=10, help="steps between held-out evaluations (default 10)")
    parser.add_argument("--max-resample-draws", type=int, default=None,
                        help="set algorithm.max_resample_draws for every preset (default: the presets' own, 20)")
    parser.add_argument("--output", default="runs/compare_presets", help="folder for checkpoints and results.json")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "compare_presets.md"),
                        help="markdown file to write; the plot goes next to it as .png")
    parser.add_argument("--notes", default="", help="free text added after the machine line (e.g. the load)")
    parser.add_argument("--reading", default="", help="a short interpretation, written under 'Reading'")
    parser.add_argument("--render-only", action="store_true",
                        help="do not train: rewrite the .md and .png from OUTPUT/results.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1 or (args.max_resample_draws is not None and args.max_resample_draws < 1):
        parser.error("--steps, --eval-every and --max-resample-draws must be >= 1")
    out, results = Path(args.output), Path(args.results)

    if args.render_only:
        data = json.loads((out / "results.json").read_text())
        if args.notes:
            data["notes"] = args.notes
    else:
        import torch

        from gpgrl.tasks import quickstart as qs

        torch.set_num_threads(1)  # the tiny model is fastest on one thread (see gpgrl.tasks.quickstart)
        t_start = time.perf_counter()
        runs: list[dict[str, Any]] = []
        warm: dict[str, Any] = {}
        with qs.quiet_libraries(True):
            for seed in args.seeds:
                ws = warm_start(seed, out / f"seed{seed}")
                warm[str(seed)] = {"sft_steps": ws["sft_steps"], "sft_seconds": ws["sft_seconds"], "before": ws["before"]}
                print(f"seed {seed}: warm start {ws['sft_steps']} SFT steps, held-out accuracy {ws['before']:.1%} "
                      f"[{ws['sft_seconds']:.0f}s]", flush=True)
                for preset in args.presets:
                    r = run_preset(seed, preset, ws, out / f"seed{seed}" / preset, steps=args.steps,
                                   eval_every=args.eval_every, max_draws=args.max_resample_draws)
                    runs.append(r)
                    print(f"seed {seed} {preset}: {r['before']:.1%} -> {r['after']:.1%}, {r['mean_draws']:.2f} "
                          f"draws/step, {r['seconds']:.0f}s", flush=True)
        cfg = qs.rl_config()
        data = {
            "command": shlex.join(["python", "benchmarks/compare_presets.py", *argv]),
            "machine": machine(), "notes": args.notes, "date": datetime.date.today().isoformat(),
            "presets": args.presets, "total_seconds": time.perf_counter() - t_start, "warm_starts": warm,
            "settings": {
                "steps": args.steps, "group_size": cfg["rollout"]["group_size"],
                "prompts_per_step": cfg["train"]["prompts_per_step"], "temperature": cfg["rollout"]["temperature"],
                "max_new_tokens": cfg["rollout"]["max_completion_length"], "lr": cfg["optim"]["lr"],
                "lr_scheduler": cfg["optim"]["lr_scheduler"], "warmup_steps": cfg["optim"]["warmup_steps"],
                "max_grad_norm": cfg["optim"]["max_grad_norm"], "max_resample_draws": args.max_resample_draws,
                "model": dict(qs.MODEL), "sft": dict(qs.SFT),
            },
            "runs": runs,
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(data, indent=1))
    reading = args.reading or data.get("reading", "")
    data["reading"] = reading
    (out / "results.json").write_text(json.dumps(data, indent=1))
    write_table(results, data, reading)
    write_plot(results.with_suffix(".png"), data)
    print(f"wrote {results} and {results.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
