"""Where a GPG step on the real model spends its time and memory: the profile behind step_speed's model r.

    python benchmarks/step_profile.py                  # model r (SmolLM2-135M-Instruct), writes results/step_profile.md
    python benchmarks/step_profile.py --model a        # the 108-token model (seconds)

It builds the same model folder and the same gpgrl GPG trainer as ``step_speed.py`` (``gpgrl_trainer``: 4
prompts x G=8, 32 new tokens, temperature 1, whole batch in one micro-batch, 1 torch thread), runs one
warm-up step, then one step under ``torch.profiler`` and reports:

- the step's phases (generation, update) from the trainer's own clock;
- the operators' self CPU time, grouped (matrix multiplies, attention, elementwise, copies, ...), and the
  inclusive time of the optimizer step;
- memory: the bytes autograd saves for the backward pass (``saved_tensors_hooks``, each storage counted
  once), the parameters' gradients and AdamW's two states (from the parameter count), and the step's peak
  resident memory above the RSS before the first step (as step_speed's "step's own peak");
- the same step's peak with the update in micro-batches of 8 rows (gradients accumulated: the same update),
  which a user can set (``train.micro_batch_size``) where memory matters more than a few percent of time
  (measured in a fresh process).

Profiled times run ~10% above unprofiled ones; the shares are what this is for. A loaded machine stretches
every operator alike, so the shares hold under load too; the load is written next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
import step_speed
from _machine import peak_rss_since_reset_mb, reset_peak_rss, rss_mb

RESULTS = Path(__file__).parent / "results"
# aten operator name -> group; anything else is "other"
GROUPS = {
    "matrix multiplies": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                  "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
    "copies": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat", "aten::index_select", "aten::to",
               "aten::_to_copy", "aten::index", "aten::gather", "aten::scatter_add_", "aten::embedding_dense_backward"),
    "softmax / log-softmax": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::_softmax",
                              "aten::logsumexp", "aten::exp"),
    "fills / new memory": ("aten::fill_", "aten::zero_", "aten::empty", "aten::empty_strided", "aten::ones_like",
                           "aten::zeros_like", "aten::resize_"),
}


def group_of(name: str) -> str:
    """The group of an aten operator (see ``GROUPS``).

    >>> group_of("aten::mm"), group_of("aten::copy_"), group_of("aten::mul")
    ('matrix multiplies', 'copies', 'other')
    """
    return next((g for g, names in GROUPS.items() if name in names), "other")


class SavedBytes:
    """Bytes autograd saves for backward while active, each storage counted once (views share a storage)."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        self.storages[s.data_ptr()] = max(self.storages.get(s.data_ptr(), 0), s.nbytes())
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def mb(self) -> float:
        return sum(self.storages.values()) / 2**20


def profiled_step(trainer) -> tuple[dict, dict]:
    """One training step under the profiler; returns the trainer's metrics and ``{key: (self, total) ms}``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        metrics = trainer.train(stop_at_step=trainer.step + 1)[-1]
    times = {e.key: (e.self_cpu_time_total / 1e3, e.cpu_time_total / 1e3, e.count) for e in prof.key_averages()}
    return metrics, times


def measure(model: str, workdir: Path, micro_batch: int | None = None, profiled: bool = True) -> dict:
    """One warm-up step, one measured step (time, peak RSS, autograd's saved bytes) and, if ``profiled``,
    one step under the profiler, of step_speed's gpgrl GPG configuration on ``model``."""
    folder = step_speed.build_models(workdir, [model])[model]
    spec = {"config": "gpgrl_gpg", "folder": folder, "prompts": 4, "G": 8, "length": 32,
            "output_dir": str(workdir / f"run_mb{micro_batch}")}
    out: dict = {"load_start": os.getloadavg()[0]}
    trainer, model_mb = step_speed.gpgrl_trainer(spec, micro_batch_size=micro_batch)
    params = sum(p.numel() for p in trainer.model.parameters())
    out.update(model_mb=model_mb, params=params, ready_mb=rss_mb())
    trainer.train(stop_at_step=1)  # warm-up: the optimizer's states exist from here on
    saved = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        reset_peak_rss()
        t = time.perf_counter()
        metrics = trainer.train(stop_at_step=trainer.step + 1)[-1]
        out["step_wall"] = time.perf_counter() - t
    out.update(peak_mb=peak_rss_since_reset_mb(), saved_mb=saved.mb, generation=metrics["perf/generation_seconds"],
               step=metrics["perf/step_seconds"], tokens=metrics["rollout/num_tokens"])
    if profiled:
        metrics, times = profiled_step(trainer)
        out.update(times=times, profiled_step=metrics["perf/step_seconds"],
                   profiled_generation=metrics["perf/generation_seconds"])
    out["load_end"] = os.getloadavg()[0]
    trainer.close()
    return out


def measure_in_child(model: str, workdir: Path, micro_batch: int) -> dict:
    """:func:`measure` (no profile) in a fresh process: a process that already ran a step reuses its freed
    memory, which would hide the peak."""
    path = workdir / f"mb{micro_batch}.json"
    subprocess.run([sys.executable, __file__, "--model", model, "--workdir", str(workdir), "--micro-batch",
                    str(micro_batch), "--json", str(path)], check=True)
    return json.loads(path.read_text())


def render(model: str, m: dict, command: str) -> str:
    ops = {k: v for k, v in m["times"].items() if k.startswith("aten::")}
    total = sum(v[0] for v in m["times"].values()) or 1.0
    groups: dict[str, float] = {}
    for k, (self_ms, _, _) in ops.items():
        groups[group_of(k)] = groups.get(group_of(k), 0.0) + self_ms
    optim = next((v[1] for k, v in m["times"].items() if k.startswith("Optimizer.step#")), float("nan"))
    grads_mb = m["params"] * 4 / 2**20
    lines = [f"# Profile of one gpgrl GPG step, model {model}", "",
             f"Written by `{command}` (see its docstring). 4 prompts x G=8, 32 new tokens, 1 torch thread, the whole "
             f"batch in one micro-batch (as in step_speed). 1-minute load: {m['load_start']:.1f} at the start, "
             f"{m['load_end']:.1f} at the end.", "",
             "## Time", "",
             f"Unprofiled step: {m['step']:.2f} s, of which generation {m['generation']:.2f} s and the update "
             f"{m['step'] - m['generation']:.2f} s. Profiled step: {m['profiled_step']:.2f} s "
             f"(generation {m['profiled_generation']:.2f} s). Operators' self CPU time, grouped, share of all "
             "profiled self time:", "",
             "| group | self CPU s | share |", "|---|---|---|"]
    for g, ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {g} | {ms / 1e3:.2f} | {ms / total:.0%} |")
    lines += ["", f"AdamW step (inclusive): {optim / 1e3:.2f} s.", "",
              "Top operators by self CPU time:", "", "| operator | calls | self CPU s | share |", "|---|---|---|---|"]
    for k, (self_ms, _, n) in sorted(ops.items(), key=lambda kv: -kv[1][0])[:15]:
        lines.append(f"| `{k}` | {n} | {self_ms / 1e3:.2f} | {self_ms / total:.1%} |")
    own, mb8 = m["peak_mb"] - m["ready_mb"], m["mb8"]
    own8 = mb8["peak_mb"] - mb8["ready_mb"]
    lines += ["", "## Memory", "",
              f"Parameters: {m['params'] / 1e6:.1f} M ({m['model_mb']:.0f} MB float32). RSS before the first step "
              f"{m['ready_mb']:.0f} MB; the measured step's peak {m['peak_mb']:.0f} MB: **{own:.0f} MB** above it, "
              "of which:", "",
              "| part | MB |", "|---|---|",
              f"| gradients (one per parameter) | {grads_mb:.0f} |",
              f"| AdamW states (two per parameter) | {2 * grads_mb:.0f} |",
              f"| tensors autograd saved for the backward pass (each storage once) | {m['saved_mb']:.0f} |",
              f"| the rest: logits and their gradients in flight, sampling, allocator slack | "
              f"{own - 3 * grads_mb - m['saved_mb']:.0f} |", "",
              f"The same step with the update in micro-batches of 8 rows (`train.micro_batch_size: 8`, gradients "
              f"accumulated, the same update), in a fresh process: step {mb8['step_wall']:.2f} s (one micro-batch: "
              f"{m['step_wall']:.2f} s), peak **{own8:.0f} MB** above the RSS before its first step.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="r", choices=list(step_speed.MODELS))
    p.add_argument("--workdir", default=None, help="where the model folder is built (default: a temporary folder)")
    p.add_argument("--out", default=str(RESULTS / "step_profile.md"))
    p.add_argument("--micro-batch", type=int, default=None, help=argparse.SUPPRESS)  # the child's run
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)  # where the child writes its measurement
    args = p.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpgrl_profile_"))
    if args.json:
        Path(args.json).write_text(json.dumps(measure(args.model, workdir, args.micro_batch, profiled=False)))
        return
    m = measure(args.model, workdir)
    m["mb8"] = measure_in_child(args.model, workdir, 8)
    text = render(args.model, m, " ".join(["python", "benchmarks/step_profile.py", *sys.argv[1:]]))
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
