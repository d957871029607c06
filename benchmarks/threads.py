"""How many torch threads make a CPU training step fastest? (The measurement behind ``train.num_threads``.)

Usage::

    python benchmarks/threads.py                       # -> benchmarks/results/threads.md
    python benchmarks/threads.py --steps 6 --threads 1 2 --results /tmp/threads.md

For each model size and thread count, one process runs GPG steps of the real trainer on the built-in
2-digit addition task (32 prompts x G = 8 answers of up to 32 tokens, the quickstart's step) and
reports the median seconds per step after the first (warm-up) step. Every configuration runs twice:
on an otherwise idle machine, and beside one busy-looping process per core (a "busy" machine, as a
laptop running other work or a CI runner sharing its cores). Models: the quickstart's (hidden 64, 2
layers, ~0.1M parameters) and a larger one (hidden 512, 8 layers, ~25M parameters).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"quickstart": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2},
          "larger": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "num_kv_heads": 4}}


def one_run(model: str, threads: int, steps: int, out: str) -> None:
    """Child process: time ``steps`` GPG steps with ``threads`` torch threads; print JSON seconds."""
    import tempfile

    from gpgrl.config import from_dict
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.train.trainer import Trainer

    cfg = from_dict({
        "model": {"name_or_path": "tiny"}, "data": {"dataset": "builtin:arithmetic"},
        "rewards": [{"name": "accuracy"}], "rollout": {"group_size": 8, "max_completion_length": 32},
        "algorithm": {"preset": "gpg", "resample_threshold": 0.0}, "optim": {"lr": 1e-4},
        "train": {"steps": steps, "prompts_per_step": 32, "micro_batch_size": 128, "num_threads": threads,
                  "output_dir": tempfile.mkdtemp(dir=out), "save_every": 10**6},
        "log": {"progress": False, "report_to": [], "sample_every": 0},
    })
    tok = build_char_tokenizer()
    trainer = Trainer.from_config(cfg, model=build_tiny_model(tok, **MODELS[model]), tokenizer=tok)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "threads": threads}))


def _burn() -> None:
    while True:
        pass


def measure(model: str, threads: int, steps: int, busy: bool, out: Path) -> float:
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(os.cpu_count() or 1)] if busy else []
    for b in burners:
        b.start()
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", model, str(threads), str(steps), str(out)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    finally:
        for b in burners:
            b.terminate()
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    times = json.loads(proc.stdout.strip().splitlines()[-1])["times"]
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "threads.md"))
    parser.add_argument("--output", default="runs/threads")
    args = parser.parse_args()
    if args.child:
        model, threads, steps, out = args.child
        return one_run(model, int(threads), int(steps), out)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for model in MODELS:
        for busy in (False, True):
            for threads in args.threads:
                sec = measure(model, threads, args.steps, busy, out)
                rows.append((model, "busy" if busy else "idle", threads, sec))
                print(f"{model:<11} {'busy' if busy else 'idle':<5} threads={threads}: {sec:.2f} s/step", flush=True)
    lines = [
        "# Torch threads per process on a CPU: seconds per GPG step",
        "",
        f"Command: `python benchmarks/threads.py --steps {args.steps} --threads {' '.join(map(str, args.threads))}`",
        f"Machine: {machine()}. Median seconds per step (after one warm-up step) of the real",
        "trainer: 32 prompts x 8 answers of up to 32 tokens, 2-digit addition, GPG. 'busy' = one busy-looping",
        "process per core beside the run.",
        "",
        "| model | machine | threads | s/step |",
        "|---|---|---|---|",
        *[f"| {m} | {b} | {t} | {s:.2f} |" for m, b, t, s in rows],
        "",
    ]
    Path(args.results).write_text("\n".join(lines))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
