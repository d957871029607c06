"""Peak memory and time of per-token log-probs: gpgrl's chunked kernel vs a full float32 log-softmax.

    python benchmarks/logprob_memory.py                      # CPU, writes benchmarks/results/logprob_memory.md
    python benchmarks/logprob_memory.py --device cuda        # on a GPU (peak from torch.cuda.max_memory_allocated)

Each variant runs in a fresh subprocess: bf16 logits [B, T, V] are allocated (they exist in training
anyway, as the model's output), then log-probs of the sampled tokens are computed and backpropagated.
The figure is the peak memory *beyond* the logits themselves. On CPU the peak is the process's
maximum resident set size (ru_maxrss), so it includes allocator slack; on CUDA it is exact.

Variants:
  naive    torch.log_softmax(logits.float()).gather(...)   (a float32 [B, T, V] copy, kept for backward)
  gpgrl    gpgrl.models.token_logprobs                      (float32 a chunk at a time; recomputed in backward)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, torch
variant, B, T, V, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
logits = torch.empty(B, T, V, device=device, dtype=torch.bfloat16).normal_().requires_grad_()  # no fp32 temporary
tokens = torch.randint(0, V, (B, T), device=device)
weights = torch.randn(B, T, device=device)
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated() / 2**20
else:
    base = rss_mb()
t0 = time.perf_counter()
if variant == "naive":
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
else:
    from gpgrl.models import token_logprobs
    logp = token_logprobs(logits, tokens)
(logp * weights).sum().backward()
if device == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() / 2**20
else:
    peak = rss_mb()
print(json.dumps({"extra_mb": peak - base, "seconds": time.perf_counter() - t0}))
"""


def run(variant: str, B: int, T: int, V: int, device: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, variant, str(B), str(T), str(V), device],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="4x1024x32000,8x2048x32000,4x1024x151936",
                        help="comma-separated BxTxV shapes")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "logprob_memory.md"))
    args = parser.parse_args()
    rows = []
    for shape in args.shapes.split(","):
        B, T, V = (int(x) for x in shape.split("x"))
        logits_mb = B * T * V * 2 / 2**20
        naive, ours = run("naive", B, T, V, args.device), run("gpgrl", B, T, V, args.device)
        rows.append((shape, logits_mb, naive, ours))
        print(f"{shape}: logits {logits_mb:.0f} MB | naive +{naive['extra_mb']:.0f} MB {naive['seconds']:.2f}s | "
              f"gpgrl +{ours['extra_mb']:.0f} MB {ours['seconds']:.2f}s")
    lines = [
        "# Per-token log-probs: extra peak memory beyond the bf16 logits",
        "",
        f"`python benchmarks/logprob_memory.py --device {args.device}` on {platform.processor() or platform.machine()}, "
        f"torch {__import__('torch').__version__}. Forward + backward of `sum(w * logp)`.",
        "",
        "| B x T x V | bf16 logits (MB) | naive fp32 log_softmax: extra MB | seconds | gpgrl token_logprobs: extra MB | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for shape, logits_mb, naive, ours in rows:
        lines.append(f"| {shape} | {logits_mb:.0f} | {naive['extra_mb']:.0f} | {naive['seconds']:.2f} | "
                     f"{ours['extra_mb']:.0f} | {ours['seconds']:.2f} |")
    lines += ["", "Extra memory includes the gradient of the logits (same size as the logits, needed by any method)."]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
