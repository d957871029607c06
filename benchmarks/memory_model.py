"""GPU memory per process of a colocated vLLM run, phase by phase: the model behind docs/engines.md's table.

    python benchmarks/memory_model.py          # prints the markdown table of docs/engines.md

Bytes per training process (one per GPU) for the paper's two models on 8 GPUs of 80 GB, in each phase of
a step: **generate** (the trainer's resident state beside vLLM's whole reservation), **sync** (after the
update: the trainer's state, the tensor being gathered and sent, vLLM's weights; the KV cache too when
the engine wakes everything at once) and **update** (the trainer's state, gradients and activations; vLLM
asleep). Pure arithmetic on the models' configs; every term is a named formula below. Rough where it says
so (activations), exact for weights, optimizer state and KV cache. GB = 10^9 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9


@dataclass(frozen=True)
class Arch:
    """A Qwen2-style decoder's shape (config.json: num_hidden_layers, hidden_size, ...)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    context: int  # max_position_embeddings

    def layer_params(self) -> int:
        """q, k, v (with biases), o, gate/up/down, two norms."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * self.intermediate + 2 * h

    def params(self) -> int:
        """Every parameter: the layers, the embeddings (and an untied head), the final norm.

        >>> R1_DISTILL_QWEN_1_5B.params(), QWEN25_MATH_7B.params()
        (1777088000, 7615616512)
        """
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * self.layer_params() + embeddings + self.hidden

    def kv_bytes_per_token(self, width: int = 2) -> int:
        """layers x KV heads x head dim x (K, V) x bytes (bf16: 2).

        >>> R1_DISTILL_QWEN_1_5B.kv_bytes_per_token(), QWEN25_MATH_7B.kv_bytes_per_token()
        (28672, 57344)
        """
        return self.layers * self.kv_heads * self.head_dim * 2 * width


R1_DISTILL_QWEN_1_5B = Arch("R1-Distill-Qwen-1.5B", layers=28, hidden=1536, heads=12, kv_heads=2, head_dim=128,
                            intermediate=8960, vocab=151936, tied=False, context=131072)
QWEN25_MATH_7B = Arch("Qwen2.5-Math-7B", layers=28, hidden=3584, heads=28, kv_heads=4, head_dim=128,
                      intermediate=18944, vocab=152064, tied=False, context=4096)


@dataclass(frozen=True)
class Run:
    """One recipe on one machine: ``sharding`` ddp (bf16 weights, torch AdamW in bf16, replicated) or
    zero3 / fsdp (mixed precision: bf16 compute, fp32 master weights, gradients and AdamW, sharded)."""

    arch: Arch
    sharding: str
    prompt: int  # data.max_prompt_length
    completion: int  # rollout.max_completion_length
    micro_batch: int  # train.micro_batch_size
    rows: int  # answers per process per step: prompts_per_step x G / processes
    processes: int = 8
    gpu: float = 80 * GB
    utilization: float = 0.3  # rollout.vllm_gpu_memory_utilization
    vllm_runtime: float = 1.5 * GB  # vLLM's activation peak and CUDA graphs inside its share (rough)


def trainer_state(run: Run) -> dict[str, float]:
    """Resident between steps (``weights``, ``adam``) and during the update (``grads``), per process.

    DDP keeps everything whole in the weights' dtype (the recipes load bf16): 2 + 2 + (2 + 2) bytes a
    parameter. ZeRO-3 / FSDP keep 4 (fp32 master) + 4 (fp32 gradient) + 8 (AdamW m, v) bytes a parameter,
    divided over the processes.

    >>> {k: round(v / GB, 2) for k, v in trainer_state(RUNS[0]).items()}
    {'weights': 3.55, 'grads': 3.55, 'adam': 7.11}
    """
    p = run.arch.params()
    if run.sharding == "ddp":
        return {"weights": 2 * p, "grads": 2 * p, "adam": 4 * p}
    n = run.processes
    return {"weights": 4 * p / n, "grads": 4 * p / n, "adam": 8 * p / n}


def gathered(run: Run) -> float:
    """The largest full tensor held at once while the weights go to vLLM: one parameter (DDP: nothing
    gathered, the largest parameter is read in place; ZeRO-3: the embeddings, bf16) or one FSDP unit (a
    decoder layer, fp32; the root unit's embeddings + head are as large for these models)."""
    a = run.arch
    if run.sharding == "fsdp":
        return 4 * max(a.layer_params(), a.vocab * a.hidden * (1 if a.tied else 2) + a.hidden)
    return 0.0 if run.sharding == "ddp" else 2 * a.vocab * a.hidden


def activations(run: Run) -> float:
    """Rough peak of the update's activations with activation checkpointing, bf16: every layer's input
    kept (L x b x T x h), one layer recomputed in backward (b x T x (6h + 3i)), and under ZeRO-3 / FSDP
    the [b, T_answer, V] logits (the fused head needs whole parameters, so it runs only under DDP)."""
    a, b, t = run.arch, run.micro_batch, run.prompt + run.completion
    kept = a.layers * b * t * a.hidden * 2
    layer = b * t * (6 * a.hidden + 3 * a.intermediate) * 2
    logits = 0 if run.sharding == "ddp" else b * run.completion * a.vocab * 2
    return kept + layer + logits


def phases(run: Run) -> dict[str, float]:
    """Peak bytes per process in each phase (vLLM asleep keeps its runtime: CUDA graphs, allocator);
    ``sync_all_awake`` is the sync when the engine wakes its KV
    cache with its weights (before weights-first), ``sync_whole_gather`` when FSDP also summoned the whole
    model (before one unit at a time), ``host_level_1`` the pinned host RAM a level-1 sleep copies the
    weights to (per process; nothing at level 2), ``kv_tokens`` the tokens vLLM's KV cache holds.

    >>> p = phases(RUNS[3])  # Qwen2.5-Math-7B, FSDP
    >>> round(p["sync"] / GB, 1), round(p["sync_all_awake"] / GB, 1), round(p["sync_whole_gather"] / GB, 1)
    (32.5, 39.8, 65.9)
    """
    s, a = trainer_state(run), run.arch
    resident = s["weights"] + s["adam"]  # the gradients are freed after each optimizer step
    vllm_weights = 2 * a.params()
    reserved = run.utilization * run.gpu  # vLLM takes its whole share at start: weights, runtime, KV cache
    kv = reserved - vllm_weights - run.vllm_runtime
    whole = 4 * a.params() if run.sharding == "fsdp" else gathered(run)
    asleep = run.vllm_runtime  # sleep mode frees the weights' and the KV cache's pools, not the rest
    return {
        "generate": resident + reserved,
        "sync": resident + gathered(run) + vllm_weights + asleep,
        "sync_all_awake": resident + gathered(run) + reserved,
        "sync_whole_gather": resident + whole + reserved,
        "update": resident + s["grads"] + activations(run) + asleep,
        "kv": kv,
        "kv_tokens": kv / a.kv_bytes_per_token(),
        "kv_needed": run.rows * (run.prompt + run.completion) * a.kv_bytes_per_token(),
        "host_level_1": vllm_weights,
    }


#: The paper's runs on 8 x 80 GB: R1-Distill-Qwen-1.5B (512 + 3584 tokens, 64 prompts x 6 answers, micro-batch
#: 6) and Qwen2.5-Math-7B (768 + 2048 tokens, 32 prompts x 8 answers, micro-batch 8), each under DDP and FSDP.
RUNS = [Run(R1_DISTILL_QWEN_1_5B, "ddp", 512, 3584, 6, 48), Run(R1_DISTILL_QWEN_1_5B, "fsdp", 512, 3584, 6, 48),
        Run(QWEN25_MATH_7B, "ddp", 768, 2048, 8, 32), Run(QWEN25_MATH_7B, "fsdp", 768, 2048, 8, 32)]


def markdown(runs: list[Run]) -> str:
    """The table of docs/engines.md."""
    rows = ["| model, sharding | trainer resident | generate | sync (weights first) | sync, all awake | "
            "update | KV cache (tokens) | KV a step needs | level-1 host copy |", "|---" * 9 + "|"]
    for run in runs:
        p, s = phases(run), trainer_state(run)
        kind = "DDP (bf16)" if run.sharding == "ddp" else "ZeRO-3 / FSDP (fp32 master)"
        rows.append(f"| {run.arch.name}, {kind} | {(s['weights'] + s['adam']) / GB:.1f} | {p['generate'] / GB:.1f} | "
                    f"{p['sync'] / GB:.1f} | {p['sync_all_awake'] / GB:.1f} | {p['update'] / GB:.1f} | "
                    f"{p['kv'] / GB:.1f} GB ({p['kv_tokens'] / 1000:.0f}k) | {p['kv_needed'] / GB:.1f} GB | "
                    f"{p['host_level_1'] / GB:.1f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown(RUNS))
