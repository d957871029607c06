"""Peak memory and time of per-token log-probs from the final hidden states, three ways.

    python benchmarks/logprob_memory.py                      # CPU, writes benchmarks/results/logprob_memory.md
    python benchmarks/logprob_memory.py --device cuda        # on a GPU (peak from torch.cuda.max_memory_allocated)

Each variant runs in a fresh subprocess: bf16 final hidden states [B, T, H] and a bf16 output head
[V, H] are allocated (they exist in training anyway), then the log-probs of sampled tokens are computed
and ``sum(w * logp)`` is backpropagated into both. The figure is the peak memory *beyond* those inputs.
On CPU the peak is the process's maximum resident set size (``_machine.peak_rss_process_mb``: ru_maxrss), so
it includes allocator slack;
on CUDA it is exact.

Variants:
  naive    logits = head(hidden); torch.log_softmax(logits.float()).gather(...)  (whole bf16 logits, a
           float32 copy kept for backward, and the logits' gradient)
  chunked  logits = head(hidden); gpgrl.models.token_logprobs(logits, ...)         (whole bf16 logits and
           their gradient; float32 a chunk at a time: gpgrl's path before the fused kernel, and its
           fall-back today for models whose logits cannot be fused)
  fused    gpgrl.models.head_logprobs(hidden, weight, ...)                       (hidden -> head ->
           log-softmax a chunk at a time, recomputed in backward: no whole logits or logits gradient)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import cpu_name

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[7])  # benchmarks/, for _machine
from _machine import peak_rss_process_mb
from gpgrl.models import head_logprobs, token_logprobs  # imported before the baseline, for every variant
variant, B, T, V, H, device = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
torch.manual_seed(0)
hidden = torch.empty(B, T, H, device=device, dtype=torch.bfloat16).normal_().requires_grad_()
weight = torch.empty(V, H, device=device, dtype=torch.bfloat16).normal_(std=H ** -0.5).requires_grad_()
tokens = torch.randint(0, V, (B, T), device=device)
weights = torch.randn(B, T, device=device)
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated() / 2**20
else:
    base = peak_rss_process_mb()
t0 = time.perf_counter()
if variant == "naive":
    logits = hidden @ weight.T
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
elif variant == "chunked":
    logp = token_logprobs(hidden @ weight.T, tokens)
else:
    logp, _ = head_logprobs(hidden, weight, None, tokens)
(logp * weights).sum().backward()
if device == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() / 2**20
else:
    peak = peak_rss_process_mb()
print(json.dumps({"extra_mb": peak - base, "seconds": time.perf_counter() - t0}))
"""

VARIANTS = ("naive", "chunked", "fused")


def run(variant: str, B: int, T: int, V: int, H: int, device: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, variant, str(B), str(T), str(V), str(H), device,
                          str(Path(__file__).parent)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="4x1024x32000,8x2048x32000,4x1024x151936",
                        help="comma-separated BxTxV shapes")
    parser.add_argument("--hidden", type=int, default=896, help="hidden size H (896: Qwen2.5-0.5B)")
    parser.add_argument("--output", default=None,
                        help="default: benchmarks/results/logprob_memory.md (logprob_memory_DEVICE.md off the CPU)")
    args = parser.parse_args()
    import torch

    suffix = "" if args.device == "cpu" else f"_{args.device}"
    output = Path(args.output or Path(__file__).parent / "results" / f"logprob_memory{suffix}.md")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    rows = []
    for shape in args.shapes.split(","):
        B, T, V = (int(x) for x in shape.split("x"))
        logits_mb = B * T * V * 2 / 2**20
        results = {v: run(v, B, T, V, args.hidden, args.device) for v in VARIANTS}
        rows.append((shape, logits_mb, results))
        print(f"{shape}: bf16 logits would be {logits_mb:.0f} MB | " + " | ".join(
            f"{v} +{r['extra_mb']:.0f} MB {r['seconds']:.2f}s" for v, r in results.items()))
    lines = [
        "# Per-token log-probs from the final hidden states: extra peak memory",
        "",
        f"`python benchmarks/logprob_memory.py --device {args.device} --hidden {args.hidden}` on {device_name}, "
        f"torch {torch.__version__}. bf16 hidden states [B, T, {args.hidden}] and head [V, {args.hidden}]; "
        "forward + backward of `sum(w * logp)` into both. Extra = peak beyond those inputs (their gradients "
        "included, which every variant needs).",
        "",
        "| B x T x V | bf16 logits (MB) | naive: extra MB | s | chunked (logits, then token_logprobs): extra MB | s "
        "| fused head_logprobs: extra MB | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, logits_mb, r in rows:
        lines.append(f"| {shape} | {logits_mb:.0f} | " + " | ".join(
            f"{r[v]['extra_mb']:.0f} | {r[v]['seconds']:.2f}" for v in VARIANTS) + " |")
    lines += ["", "naive = a float32 log-softmax of whole logits; chunked = gpgrl's kernel over whole bf16 logits "
              "(its fall-back path); fused = hidden -> head -> log-softmax a chunk of positions at a time, "
              "recomputed in backward (the trainer's default path). The first call of each variant in its "
              "process includes one-time kernel set-up in its seconds."]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
