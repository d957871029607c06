"""Run ``gpgrl quickstart --tools --no-tools-baseline`` for several seeds and write a results table and plot.

Usage::

    python benchmarks/tools_quickstart.py              # seeds 0 1 2 -> benchmarks/results/tools_quickstart.{md,json,png}
    python benchmarks/tools_quickstart.py --seeds 0 --output runs/tools_quickstart --results /tmp/t.md

Each seed runs in its own process (``python -m gpgrl.cli quickstart --tools --no-tools-baseline --seed N``),
one after the other. A run warm-starts the tiny model (calculator episodes, then a mix of them and direct
answers), measures held-out accuracy and calculator calls per episode (greedy episodes on the 200 test
questions), runs GPG with ``rollout.tools: [calculator]``, measures again; then, as the comparison, the same
warm-started model gets the same GPG budget and settings without tools (single answers; a call it writes is
just a wrong answer). The table lists both, the seconds of the tools run (warm-start + evaluations + GPG)
and of the comparison; the JSON holds every run's evaluations and training rows; the plot shows held-out
accuracy and calls per episode against GPG steps (per seed and the mean). Exits with status 1 if a seed's
accuracy rises by less than ``--min-delta`` (default 0.30) or its tools run takes longer than
``--max-seconds`` (default 600).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine  # noqa: E402
from quickstart_seeds import run_seed as quickstart_seed  # noqa: E402


def run_seed(seed: int, output: Path) -> dict:
    return quickstart_seed(seed, output, extra=("--tools", "--no-tools-baseline"))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def write_table(path: Path, rows: list[dict], command: str, notes: str) -> None:
    n = rows[0]["accuracy_metric"]
    lines = [
        "# `gpgrl quickstart --tools`: a tiny model learns to call the calculator (3 seeds)",
        "",
        "Task: `builtin:multiplication`, 4-digit x 4-digit products, which the tiny model (130k parameters, "
        "character-level) cannot work out alone. Held-out accuracy = " + n + ": the episode runs with the "
        "calculator (greedy, at most 2 turns), and only the policy's last `<answer>` block is graded. "
        "\"calls\" = calculator calls per held-out episode. \"without tools\" = the same warm-started model, then "
        "the same GPG steps and settings with no tools (single answers, graded the same way). \"seconds\" = the "
        "tools run (warm-start + evaluations + GPG); \"no-tools s\" = the comparison's evaluations + GPG; "
        "\"process s\" = both, with Python and library imports.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}. {notes}",
        "",
        f"![held-out accuracy and calculator calls per GPG step]({path.with_suffix('.png').name})",
        "",
        "| seed | accuracy before | accuracy after | delta (points) | calls before | calls after | without tools: "
        "before | without tools: after | seconds | no-tools s | process s |",
        "|-----:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b = r["no_tools"]
        lines.append(
            f"| {r['seed']} | {r['accuracy_before']:.1%} | {r['accuracy_after']:.1%} | "
            f"{100 * (r['accuracy_after'] - r['accuracy_before']):+.1f} | {r['tool_calls_before']:.2f} | "
            f"{r['tool_calls_after']:.2f} | {b['accuracy_before']:.1%} | {b['accuracy_after']:.1%} | "
            f"{r['seconds']:.0f} | {b['seconds_rl']:.0f} | {r['process_seconds']:.0f} |")

    def m(key: str, base: bool = False) -> float:
        return _mean([(r["no_tools"] if base else r)[key] for r in rows])

    lines.append(
        f"| mean | {m('accuracy_before'):.1%} | {m('accuracy_after'):.1%} | "
        f"{100 * (m('accuracy_after') - m('accuracy_before')):+.1f} | {m('tool_calls_before'):.2f} | "
        f"{m('tool_calls_after'):.2f} | {m('accuracy_before', True):.1%} | {m('accuracy_after', True):.1%} | "
        f"{m('seconds'):.0f} | {m('seconds_rl', True):.0f} | {m('process_seconds'):.0f} |")
    cfg = rows[0]["config"]
    lines += [
        "",
        f"Settings (defaults of `gpgrl quickstart --tools`, RL stage = `recipes/quickstart_tools_cpu.yaml`): model "
        f"{rows[0]['model']}; SFT {rows[0]['sft']} ({rows[0]['sft_phases']['tools']} steps on calculator "
        f"episodes, then {rows[0]['sft_phases']['mix']} on the mix); GPG: preset {cfg['algorithm']['preset']}, "
        f"reward {cfg['rewards'][0]['name']} {cfg['rewards'][0]['params']}, tools {cfg['rollout']['tools']}, "
        f"max {cfg['rollout']['max_turns']} turns, G={cfg['rollout']['group_size']}, "
        f"{cfg['train']['prompts_per_step']} prompts/step, temperature {cfg['rollout']['temperature']}, "
        f"episode budget {cfg['rollout']['max_completion_length']} tokens, lr {cfg['optim']['lr']} "
        f"({cfg['optim']['lr_scheduler']}, {cfg['optim']['warmup_steps']} warm-up steps), "
        f"{cfg['train']['steps']} steps. During GPG the held-out curves use the first 100 test questions; "
        "before/after use all 200.",
        "",
        f"Measured on {datetime.date.today().isoformat()}.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def write_plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    steps = [e["step"] for e in rows[0]["evals"]]
    for r in rows:
        ax.plot(steps, [e["heldout_accuracy"] for e in r["evals"]], "-", color="tab:orange", alpha=0.35, lw=1)
        ax.plot(steps, [e["heldout_accuracy"] for e in r["no_tools"]["evals"]], "--", color="tab:gray", alpha=0.35,
                lw=1)
        bx.plot(steps, [e["tool_calls"] for e in r["evals"]], "-", color="tab:orange", alpha=0.35, lw=1)
        bx.plot([t["step"] for t in r["train"]], [t["tool_calls"] for t in r["train"]], "-", color="tab:blue",
                alpha=0.25, lw=1)
    mean = [_mean([r["evals"][i]["heldout_accuracy"] for r in rows]) for i in range(len(steps))]
    base = [_mean([r["no_tools"]["evals"][i]["heldout_accuracy"] for r in rows]) for i in range(len(steps))]
    ax.plot(steps, mean, "o-", color="tab:orange", lw=2, label=f"with the calculator (mean of {len(rows)} seeds)")
    ax.plot(steps, base, "s--", color="tab:gray", lw=2, label="same GPG budget, no tools (mean)")
    ax.set_xlabel("GPG step")
    ax.set_ylabel("held-out greedy accuracy (100 questions)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8, title="thin lines: each seed", title_fontsize=8)
    calls = [_mean([r["evals"][i]["tool_calls"] for r in rows]) for i in range(len(steps))]
    bx.plot(steps, calls, "o-", color="tab:orange", lw=2, label="held-out greedy episodes (mean)")
    train_steps = [t["step"] for t in rows[0]["train"]]
    sampled = [_mean([r["train"][i]["tool_calls"] for r in rows]) for i in range(len(train_steps))]
    bx.plot(train_steps, sampled, "-", color="tab:blue", lw=2, label="sampled training episodes, T=1 (mean)")
    bx.set_xlabel("GPG step")
    bx.set_ylabel("calculator calls per episode")
    bx.set_ylim(0, 1.05)
    bx.grid(alpha=0.3)
    bx.legend(loc="lower right", fontsize=8)
    fig.suptitle("gpgrl quickstart --tools: a tiny model learns to call the calculator for 4-digit products "
                 "(GPG after a short SFT warm-start)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", default="runs/tools_quickstart", help="folder of the runs (one per seed)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "tools_quickstart.md"),
                        help="the table; the plot and the raw results go beside it (.png, .json)")
    parser.add_argument("--notes", default="", help="a sentence about the conditions (e.g. the machine's load)")
    parser.add_argument("--min-delta", type=float, default=0.30)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    rows = [run_seed(seed, Path(args.output) / f"seed{seed}") for seed in args.seeds]
    results = Path(args.results)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/tools_quickstart.py", *(argv or sys.argv[1:])])
    write_table(results, rows, command, args.notes)
    write_plot(results.with_suffix(".png"), rows)
    results.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine(), "runs": rows},
                                                       indent=1))
    print(f"table: {results}  plot: {results.with_suffix('.png')}  raw: {results.with_suffix('.json')}")
    bad = [r["seed"] for r in rows if r["accuracy_after"] - r["accuracy_before"] < args.min_delta
           or r["seconds"] > args.max_seconds]
    if bad:
        print(f"seeds {bad} rose by less than {args.min_delta:.0%} or took longer than {args.max_seconds:.0f}s")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
