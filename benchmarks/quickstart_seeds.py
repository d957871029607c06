"""Run ``gpgrl quickstart`` for several seeds and write a results table.

Usage::

    python benchmarks/quickstart_seeds.py                       # seeds 0 1 2 -> benchmarks/results/quickstart_seeds.md
    python benchmarks/quickstart_seeds.py --seeds 0 1 2 3 4 --output runs/quickstart_seeds
    python benchmarks/quickstart_seeds.py --results /tmp/table.md     # also writes /tmp/table.png

Each seed runs in its own process (``python -m gpgrl.cli quickstart --seed N --quiet``), one after the
other, so that the reported seconds are those of a user's run, imports included. The table lists
held-out accuracy before and after GPG (greedy pass@1 on the task's 200 test questions), the change,
the quickstart's own wall-clock seconds, the process's seconds and the GPG steps, and the file records
the exact command and the machine. A plot of held-out accuracy per GPG step for every seed is written
next to it (same name, ``.png``). Exits with status 1 if any seed improves by less than
``--min-delta`` (default 0.20) or takes longer than ``--max-seconds`` (default 300).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine  # noqa: E402


def run_seed(seed: int, output: Path, vision: bool = False, extra: tuple[str, ...] = ()) -> dict:
    """One ``gpgrl quickstart`` process (``extra``: more flags, e.g. ``--tools``); its summary.json, with the
    process's wall time in ``process_seconds``."""
    cmd = [sys.executable, "-m", "gpgrl.cli", "quickstart", "--output", str(output), "--seed", str(seed), "--quiet",
           "--overwrite", *extra]  # a re-run of the benchmark replaces its own seed's folder
    cmd += ["--vision"] if vision else []
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    summary = json.loads((output / "summary.json").read_text())
    summary["process_seconds"] = wall
    print(next(line for line in reversed(proc.stdout.splitlines()) if "before GPG" in line), flush=True)
    return summary


TASKS = {
    False: ("`gpgrl quickstart`", "the built-in 2-digit addition task", "tiny model, 2-digit addition"),
    True: ("`gpgrl quickstart --vision`", "the built-in coloured-shapes task (a tiny Qwen2-VL names the shape's "
           "colour, A-D; the answer must be exactly one `<answer>` block)", "tiny Qwen2-VL, colour of a shape"),
}


def write_table(path: Path, rows: list[dict], command: str, notes: str, vision: bool = False) -> None:
    name, task, _ = TASKS[vision]
    lines = [
        f"# {name} across seeds",
        "",
        f"Held-out accuracy = greedy pass@1 on the 200 test questions of {task} (never",
        "trained on), graded by the `accuracy` reward, before and after GPG. \"seconds\" is the quickstart's own",
        "wall-clock time (SFT warm-start + evaluations + GPG); \"process s\" adds Python and library imports.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}. {notes}",
        "",
        f"![held-out accuracy per GPG step]({path.with_suffix('.png').name})",
        "",
        "| seed | accuracy before | accuracy after | delta (points) | seconds | process s | SFT steps | GPG steps |",
        "|-----:|----------------:|---------------:|---------------:|--------:|----------:|----------:|----------:|",
    ]
    for r in rows:
        delta = 100 * (r["accuracy_after"] - r["accuracy_before"])
        lines.append(f"| {r['seed']} | {r['accuracy_before']:.1%} | {r['accuracy_after']:.1%} | {delta:+.1f} | "
                     f"{r['seconds']:.0f} | {r['process_seconds']:.0f} | {r['sft_steps']} | {r['steps']} |")
    cfg = rows[0]["config"]
    lines += [
        "",
        f"Settings (defaults of {name}" + ("" if vision else ", RL stage = `recipes/quickstart_cpu.yaml`")
        + f"): model {rows[0]['model']}; "
        f"SFT {rows[0]['sft']}; GPG: preset {cfg['algorithm']['preset']}, rewards "
        f"{[r['name'] for r in cfg['rewards']]}, G={cfg['rollout']['group_size']}, "
        f"{cfg['train']['prompts_per_step']} prompts/step, temperature {cfg['rollout']['temperature']}, "
        f"max {cfg['rollout']['max_completion_length']} new tokens, lr {cfg['optim']['lr']} "
        f"({cfg['optim']['lr_scheduler']}, {cfg['optim']['warmup_steps']} warm-up steps), {cfg['train']['steps']} steps.",
        "",
        f"Measured on {datetime.date.today().isoformat()}.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def write_plot(path: Path, rows: list[dict], vision: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        evals = r["evals"]
        line = ax.plot([e["step"] for e in evals], [e["heldout_accuracy"] for e in evals], "o-", ms=3,
                       label=f"seed {r['seed']}: {r['accuracy_before']:.0%} -> {r['accuracy_after']:.0%}")
        ax.scatter([0, r["steps"]], [r["accuracy_before"], r["accuracy_after"]], marker="s", s=40,
                   color=line[0].get_color(), zorder=3)
    ax.set_xlabel("GPG step")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title="lines: first 100 test questions; squares: all 200", title_fontsize=8)
    ax.set_title(f"gpgrl quickstart across seeds ({TASKS[vision][2]})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run gpgrl quickstart for several seeds and write a results table.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--vision", action="store_true",
                        help="the vision quickstart (default results file: benchmarks/results/quickstart_vision_seeds.md)")
    parser.add_argument("--output", default="runs/quickstart_seeds", help="folder for the runs (one per seed)")
    parser.add_argument("--results", default=None,
                        help="markdown file to write (default: benchmarks/results/quickstart_seeds.md)")
    parser.add_argument("--notes", default="", help="free text added after the machine line (e.g. the load)")
    parser.add_argument("--min-delta", type=float, default=0.20, help="least accepted accuracy gain (default 0.20)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="most accepted seconds per run (default 300)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    rows = [run_seed(seed, Path(args.output) / f"seed{seed}", args.vision) for seed in args.seeds]
    shown = list(argv)  # --notes only adds text to the file, so the command shown leaves it out
    if "--notes" in shown:
        i = shown.index("--notes")
        del shown[i : i + 2]
    shown = [a for a in shown if not a.startswith("--notes=")]
    command = shlex.join(["python", "benchmarks/quickstart_seeds.py", *shown])
    default = "quickstart_vision_seeds.md" if args.vision else "quickstart_seeds.md"
    results = Path(args.results or ROOT / "benchmarks" / "results" / default)
    write_table(results, rows, command, args.notes, args.vision)
    write_plot(results.with_suffix(".png"), rows, args.vision)
    print(f"wrote {results} and {results.with_suffix('.png')}")
    bad = [r["seed"] for r in rows
           if r["accuracy_after"] - r["accuracy_before"] < args.min_delta or r["seconds"] > args.max_seconds]
    if bad:
        print(f"seeds below {args.min_delta:.0%} gain or over {args.max_seconds:.0f}s: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
