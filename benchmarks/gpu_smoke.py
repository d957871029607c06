"""GPU smoke test of the vLLM engines: the one command to run the day a GPU is lent.

    python benchmarks/gpu_smoke.py                     # every part, each in its own process
    python benchmarks/gpu_smoke.py --only colocated    # one part (colocated | resume | vision | server), repeatable
    python benchmarks/gpu_smoke.py --model DIR --vision-model DIR --out runs/gpu-smoke
    python benchmarks/gpu_smoke.py --plan              # print what would run and exit
    python benchmarks/gpu_smoke.py --dry-run           # the whole run on this CPU, through the stand-ins

Needs one CUDA GPU (two for the server's weight sync), vLLM (``pip install -e ".[vllm]"``) and the models
(Hub ids or local folders; defaults Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen2-VL-2B-Instruct), in bf16.
Each part runs in a child process of its own (this script again, ``--only PART``), so that every part
starts with a clean GPU (vLLM allows one sleep-mode engine per process, and an engine that only sleeps
still holds its memory pool); the child writes its checks to ``OUT/PART.json`` as it goes and its output
to ``OUT/PART.log``; a child that crashes or hangs (``--part-timeout``) is a FAIL line with the last lines
of its log, never a lost report. Every check prints one PASS / FAIL / SKIP line with its numbers; all
go to ``OUT/gpu_smoke.json``.

* colocated (``rollout.engine: vllm``, built by the trainer): a few GPG steps; the ``is/`` metrics on
  every step (mean |log-prob gap| and ratio spread within the tolerances, capped/masked shares small; a
  missing one is a FAIL naming it); sampled vs recomputed log-probs; a sync of changed weights reaches
  prompts several KV blocks long that were cached before it (the prefix cache was reset: their
  log-probs are the new weights', not the old ones'); greedy answers follow each sync; every sleep
  (level 2) is followed by ``wake_up(tags=["weights"])``, the loads, then ``wake_up(tags=["kv_cache"])``;
  level-2 sleep frees the weights and the KV cache, waking the weights takes back about the weights
  only, and no copy of the weights stays in host memory. It ends by saving a checkpoint whose weights
  differ from the base model's on purpose (input embeddings negated), for:
* resume: a new trainer with ``train.resume`` on that checkpoint (a fresh engine, started from the base
  model's folder); its first rollout's log-probs agree with the checkpoint's weights and not with the
  base model's, and the resumed step has its ``is/`` metrics.
* vision: Qwen2-VL prompts with one and two images larger than ``model.max_pixels`` (the engine gets it
  as ``mm_processor_kwargs``, the trainer's processor the same, as ``gpgrl train`` does): one
  placeholder per image reaches vLLM, vLLM's image-token count equals the trainer's (and is below the
  unresized one), log-probs agree before and after a sleep + sync of changed weights.
* server (``rollout.engine: vllm_server``, built from the config with the rendezvous and the two
  timeouts): starts ``vllm serve``, waits for ``/health``, generates with agreeing log-probs. The weight
  sync over NCCL needs the trainer and the server on different GPUs (NCCL refuses two ranks on one
  device): with one GPU it is SKIP; with two the server gets GPU 1 and the sync is checked: the
  rendezvous on the routed address and a free port, ``/pause`` ... ``/resume`` around it, and the
  prefix-cache check as in the colocated part.

``--dry-run`` runs all of it on this machine's CPU: the same functions, with tiny models built and saved
to ``OUT/models``, ``tests/standins`` first on the children's ``PYTHONPATH`` (``import vllm`` is the
strict stand-in), the CPU instead of CUDA (float32, no mixed precision), memory read from the stand-in's
accounting (a fake GPU of ``$VLLM_STANDIN_GPU_MEMORY`` bytes), and ``tests/standins/vllm_server.py`` in
``vllm serve``'s place, with a TCP socket in NCCL's place for the sync. It takes about a minute.

The decisions (tolerances, memory, wake order, placeholders, image tokens, the child's report, the
server command) are plain functions, tested in tests/test_gpu_smoke.py, which also runs ``--dry-run``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is a folder of scripts, not a package
from _machine import rss_mb

REPO = Path(__file__).resolve().parents[1]
STANDINS = REPO / "tests" / "standins"
PARTS = ("colocated", "resume", "vision", "server")
TEXT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
VISION_MODEL = "Qwen/Qwen2-VL-2B-Instruct"
LOGP_MEAN_TOL = 0.05  # bf16 kernels differ: mean |log p_vllm - log p_trainer| per token
RATIO_STD_TOL = 0.10  # spread of exp(log p_trainer - log p_vllm) over tokens
OFF_FRAC_TOL = 0.01  # share of tokens whose importance weight was capped or masked
#: Mean |log-prob diff| the old weights must show against the engine's answers after a sync, so that a
#: stale cache (KV of the old weights) would have been seen: a check that cannot fail proves nothing.
STALE_DIFF_MIN = 10 * LOGP_MEAN_TOL
#: The ``is/`` metrics the trainer records on every step (gpgrl.algorithms.importance.importance_metrics).
IS_KEYS = ("is/logp_diff_abs", "is/logp_gap_max", "is/ratio_mean", "is/ratio_std", "is/capped_frac",
           "is/masked_frac")
#: The KV block size when the engine does not say: vLLM 0.34's default (``CacheConfig.DEFAULT_BLOCK_SIZE``),
#: the largest of the supported releases' (0.17 - 0.28: 16 on CUDA).
DEFAULT_BLOCK_SIZE = 64
#: Full KV blocks every prefix-cache prompt must fill: a prompt shorter than one block is never cached,
#: and a check on it passes whatever the engine does.
PREFIX_BLOCKS = 4
#: ``model.max_pixels`` of the vision part: 256 image tokens (Qwen2-VL: one per 28 x 28 pixels); tiny under --dry-run.
VISION_MAX_PIXELS = {"gpu": 256 * 28 * 28, "dry": 4 * 28 * 28}
#: The dry run's tiny text model: embeddings x 10 give entropies of ~3.4 nats (of 4.7), and negating them
#: moves the log-probs of the same tokens by ~2 nats (x 1: 0.1, below :data:`STALE_DIFF_MIN`).
DRY_RUN_EMBEDDING_SCALE = 10.0
CHECKPOINT_NOTE = "smoke_checkpoint.json"  # the colocated part's checkpoint, for the resume part
GIB = 2**30


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str


# ----------------------------------------------------------------------------------- verdicts (pure)
def logprob_agreement(engine_logps: torch.Tensor, trainer_logps: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean |diff| of per-token log-probs and the importance ratio's mean, spread and maximum, over ``mask``.

    >>> stats = logprob_agreement(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.1, -2.0]]), torch.tensor([[1, 1]]))
    >>> round(stats["mean_abs_diff"], 3), round(stats["ratio_max"], 3)
    (0.05, 1.0)
    """
    m = mask.bool()
    diff = (trainer_logps.float() - engine_logps.float())[m]
    if diff.numel() == 0:
        return {"tokens": 0, "mean_abs_diff": math.nan, "ratio_mean": math.nan, "ratio_std": math.nan,
                "ratio_max": math.nan}
    ratio = diff.exp()
    return {"tokens": int(m.sum()), "mean_abs_diff": float(diff.abs().mean()), "ratio_mean": float(ratio.mean()),
            "ratio_std": float(ratio.std()) if ratio.numel() > 1 else 0.0, "ratio_max": float(ratio.max())}


def agrees(stats: dict[str, float]) -> bool:
    """Whether sampled and recomputed log-probs agree within the tolerances (NaN never agrees)."""
    return (stats.get("tokens", 0) > 0 and stats.get("mean_abs_diff", math.inf) < LOGP_MEAN_TOL
            and stats.get("ratio_std", math.inf) < RATIO_STD_TOL)


def agreement_check(name: str, stats: dict[str, float]) -> Check:
    detail = (f"{stats['tokens']} tokens: mean |diff| {stats['mean_abs_diff']:.4f} (< {LOGP_MEAN_TOL}), ratio mean "
              f"{stats['ratio_mean']:.4f} std {stats['ratio_std']:.4f} (< {RATIO_STD_TOL}) max {stats['ratio_max']:.3f}")
    return Check(name, "PASS" if agrees(stats) else "FAIL", detail)


def is_metrics_check(name: str, history: Sequence[dict[str, float]], steps: int) -> Check:
    """Every one of ``steps`` steps logged the ``is/`` metrics (:data:`IS_KEYS`), within the tolerances.

    A step without them (before the trainer logged them on every step: one skipped for lack of signal)
    is a FAIL naming the step and the missing metrics, never a ``KeyError``.

    >>> full = {"is/logp_diff_abs": 0.01, "is/logp_gap_max": 0.3, "is/ratio_mean": 1.0, "is/ratio_std": 0.02,
    ...         "is/capped_frac": 0.0, "is/masked_frac": 0.0}
    >>> is_metrics_check("c", [full, full], 2).status
    'PASS'
    >>> print(is_metrics_check("c", [full, {"optim/skipped": 1.0}], 2).detail)
    step 2 (skipped for lack of signal) has no is/logp_diff_abs, is/logp_gap_max, is/ratio_mean, is/ratio_std, is/capped_frac, is/masked_frac
    """
    problems, rows = [], []
    if len(history) != steps:
        problems.append(f"{len(history)} steps ran, {steps} were asked for")
    for step, metrics in enumerate(history, start=1):
        missing = [k for k in IS_KEYS if k not in metrics or not math.isfinite(float(metrics[k]))]
        if missing:
            why = " (skipped for lack of signal)" if metrics.get("optim/skipped") else ""
            problems.append(f"step {step}{why} has no {', '.join(missing)}")
            continue
        m = {k: float(metrics[k]) for k in IS_KEYS}
        rows.append(f"{m['is/logp_diff_abs']:.4f}/{m['is/logp_gap_max']:.3f}/{m['is/ratio_std']:.4f}")
        off = m["is/capped_frac"] + m["is/masked_frac"]
        if m["is/logp_diff_abs"] >= LOGP_MEAN_TOL or m["is/ratio_std"] >= RATIO_STD_TOL or off > OFF_FRAC_TOL:
            problems.append(f"step {step}: is/logp_diff_abs {m['is/logp_diff_abs']:.4f} (< {LOGP_MEAN_TOL}), "
                            f"is/ratio_std {m['is/ratio_std']:.4f} (< {RATIO_STD_TOL}), capped + masked {off:.3f} "
                            f"(<= {OFF_FRAC_TOL})")
    if problems:
        return Check(f"{name}: is/ metrics on every step", "FAIL", "; ".join(problems))
    return Check(f"{name}: is/ metrics on every step", "PASS",
                 f"{steps} steps, is/logp_diff_abs / is/logp_gap_max / is/ratio_std per step: " + ", ".join(rows))


def prefix_tokens(block_size: int) -> int:
    """Tokens in each prefix-cache prompt: one block more than :data:`PREFIX_BLOCKS` full blocks.

    >>> prefix_tokens(16), prefix_tokens(64)
    (80, 320)
    """
    return (PREFIX_BLOCKS + 1) * block_size


def long_prompts(tokenizer: Any, n_tokens: int, count: int = 2) -> list[list[int]]:
    """``count`` different prompts of exactly ``n_tokens`` token ids each: numbered arithmetic problems."""
    prompts = []
    for k in range(count):
        text, i = "", 0
        while len(tokenizer(text)["input_ids"]) < n_tokens:
            text += f"Problem {k}.{i}: what is {17 * i + k} plus {29 * i + 3 * k}? "
            i += 1
        prompts.append(list(tokenizer(text)["input_ids"][:n_tokens]))
    return prompts


def room_for(tokens: int, max_model_len: int | None, answer: int) -> int:
    """``tokens``, or fewer where a prompt of that length and an ``answer`` would not fit the engine's
    context (the prefix-cache check then reports too few blocks instead of the engine refusing the prompt).

    >>> room_for(320, 1088, 16), room_for(640, 576, 16), room_for(320, None, 16)
    (320, 559, 320)
    """
    return tokens if max_model_len is None else min(tokens, max_model_len - answer - 1)


def prefix_cache_check(name: str, prompt_lens: Sequence[int], block_size: int, block_source: str,
                       new: dict[str, float], old: dict[str, float]) -> Check:
    """Prompts served before a sync are served with the new weights after it: the answers' log-probs agree
    with the new weights' (``new``) and clearly not with the old ones' (``old``, so that a stale prefix
    cache would have shown), on prompts of at least :data:`PREFIX_BLOCKS` full KV blocks (a prompt
    shorter than one block is never cached: the check would pass whatever happened).

    >>> good, stale = {"tokens": 40, "mean_abs_diff": 0.01, "ratio_std": 0.02}, {"tokens": 40, "mean_abs_diff": 3.0}
    >>> prefix_cache_check("c", [320, 320], 64, "vLLM's", good, stale).status
    'PASS'
    >>> print(prefix_cache_check("c", [12, 12], 64, "vLLM's", good, stale).detail.split(";")[0])
    prompts of 12 tokens hold 0 full KV blocks of 64 (vLLM's): fewer than 4, nothing of them is cached
    """
    blocks = min(prompt_lens) // block_size if prompt_lens else 0
    problems = []
    if blocks < PREFIX_BLOCKS:
        problems.append(f"prompts of {min(prompt_lens, default=0)} tokens hold {blocks} full KV blocks of "
                        f"{block_size} ({block_source}): fewer than {PREFIX_BLOCKS}, nothing of them is cached")
    if not agrees(new) and agrees(old):
        problems.append(f"after the sync the answers' log-probs are the old weights' (mean |diff| "
                        f"{old['mean_abs_diff']:.4f} vs the old, {new['mean_abs_diff']:.4f} vs the new): served from "
                        "a stale prefix cache")
    elif not agrees(new):
        problems.append(f"after the sync the answers disagree with the new weights (mean |diff| "
                        f"{new['mean_abs_diff']:.4f}, ratio std {new.get('ratio_std', math.nan):.4f}) and with the "
                        f"old ({old['mean_abs_diff']:.4f}): a cache of the old weights' KV with the new weights?")
    elif not old["mean_abs_diff"] >= STALE_DIFF_MIN:
        problems.append(f"the old weights differ from the new by a mean |diff| of only {old['mean_abs_diff']:.4f} "
                        f"(< {STALE_DIFF_MIN}): a stale cache could not be told apart")
    if problems:
        return Check(f"{name}: prompts cached before a sync are served with the new weights", "FAIL", "; ".join(problems))
    return Check(f"{name}: prompts cached before a sync are served with the new weights", "PASS",
                 f"{len(prompt_lens)} prompts of {min(prompt_lens)} tokens ({blocks} KV blocks of {block_size}, "
                 f"{block_source}); after the sync: mean |diff| {new['mean_abs_diff']:.4f} vs the new weights "
                 f"(< {LOGP_MEAN_TOL}), {old['mean_abs_diff']:.2f} vs the old (>= {STALE_DIFF_MIN})")


def wake_order_check(events: Sequence[tuple[str, Any]], level: int, in_training: int = 0) -> Check:
    """Every ``sleep`` (at ``level``) is followed by ``wake_up(tags=["weights"])``, at least one load
    (``apply_model``), then ``wake_up(tags=["kv_cache"])``, and nothing generates in between.
    ``events``: ``(call, argument)`` in order (sleep: its level; wake_up: its tags); ``in_training``: how
    many of the sleeps happened inside ``trainer.train()``, for the report.

    >>> ok = [("generate", None), ("sleep", 2), ("wake_up", ["weights"]), ("apply_model", None),
    ...       ("wake_up", ["kv_cache"]), ("reset_prefix_cache", None), ("generate", None)]
    >>> wake_order_check(ok, 2).status
    'PASS'
    >>> print(wake_order_check([("sleep", 2), ("wake_up", None), ("apply_model", None)], 2).detail)
    sleep 1: woke None first (not ['weights'])
    """
    sleeps = [k for k, (call, _) in enumerate(events) if call == "sleep"]
    if not sleeps:
        return Check("colocated: every sync after a sleep wakes the weights first", "FAIL",
                     "no sleep was recorded: the cycle was never exercised")
    problems, loads = [], []
    for n, start in enumerate(sleeps, start=1):
        cycle = list(events[start : sleeps[n] if n < len(sleeps) else len(events)])
        if cycle[0][1] != level:
            problems.append(f"sleep {n}: level {cycle[0][1]} (expected {level})")
        wakes = [k for k, (call, _) in enumerate(cycle) if call == "wake_up"]
        first = cycle[wakes[0]][1] if wakes else "nothing"
        if first != ["weights"]:
            problems.append(f"sleep {n}: woke {first} first (not ['weights'])")
        second = cycle[wakes[1]][1] if len(wakes) > 1 else None
        if first == ["weights"] and second != ["kv_cache"]:
            problems.append(f"sleep {n}: then woke {second} (not ['kv_cache'])")
        between = cycle[wakes[0] + 1 : wakes[1]] if len(wakes) > 1 else cycle[wakes[0] + 1 :] if wakes else []
        n_loads = sum(call == "apply_model" for call, _ in between)
        loads.append(n_loads)
        if n_loads == 0:
            problems.append(f"sleep {n}: loaded 0 weights between the two wake-ups")
        awake_at = next((k for k in wakes if cycle[k][1] is None or "kv_cache" in cycle[k][1]), len(cycle))
        if any(call in ("generate", "apply_model") for call, _ in cycle[1 : wakes[0] if wakes else awake_at]):
            problems.append(f"sleep {n}: generated or loaded before the weights woke")
        if any(call == "generate" for call, _ in cycle[1:awake_at]):
            problems.append(f"sleep {n}: generated before the KV cache woke")
    name = "colocated: every sync after a sleep wakes the weights first"
    if problems:
        return Check(name, "FAIL", "; ".join(problems))
    return Check(name, "PASS", f"{len(sleeps)} sleeps ({in_training} in training), each: sleep(level={level}), "
                               f"wake_up(['weights']), {min(loads)}-{max(loads)} loads, wake_up(['kv_cache'])")


def size(n: float) -> str:
    """Bytes as GiB, or MiB below a tenth of a GiB.

    >>> size(3 * GIB), size(5 * 2**20), size(-GIB / 2)
    ('3.00 GiB', '5.0 MiB', '-0.50 GiB')
    """
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def sleep_memory_check(free: dict[str, int], host_growth: int, weights_bytes: int, level: int) -> Check:
    """Device memory around a sleep and the weights-first wake-up: ``free`` bytes when ``awake``,
    ``asleep``, after ``wake_up(["weights"])`` (``weights``) and after ``wake_up(["kv_cache"])``
    (``woken``); ``host_growth``: host memory the sleep added. Sleep must free at least the weights;
    waking the weights takes back at least 90 % of them and leaves the KV cache for its own wake-up (the
    lower peak of the sync); level 2 keeps no copy of the weights in host memory (under half their size).

    >>> g = GIB
    >>> sleep_memory_check({"awake": 10 * g, "asleep": 30 * g, "weights": 29 * g, "woken": 10 * g}, 0, g, 2).status
    'PASS'
    >>> print(sleep_memory_check({"awake": 10 * g, "asleep": 30 * g, "weights": 10 * g, "woken": 10 * g}, g, g, 2).detail)
    the KV cache woke with the weights (nothing left for wake_up(['kv_cache'])); sleep(level=2) kept 1.00 GiB in host memory (a level-1 copy of the weights?)
    """
    freed = free["asleep"] - free["awake"]
    weights_taken = free["asleep"] - free["weights"]
    kv_taken = free["weights"] - free["woken"]
    problems = []
    if freed < weights_bytes:
        problems.append(f"sleep freed {size(freed)}, less than the weights' {size(weights_bytes)}")
    if kv_taken <= 0:
        problems.append("the KV cache woke with the weights (nothing left for wake_up(['kv_cache']))")
    elif weights_taken < 0.9 * weights_bytes:
        problems.append(f"wake_up(['weights']) took {size(weights_taken)}, under 90 % of the weights' "
                        f"{size(weights_bytes)}")
    if level == 2 and host_growth >= weights_bytes / 2:
        problems.append(f"sleep(level=2) kept {size(host_growth)} in host memory (a level-1 copy of the "
                        "weights?)")
    name = f"colocated: sleep(level={level}) frees the weights and the KV cache, the weights wake first"
    detail = (f"sleep freed {size(freed)} (weights {size(weights_bytes)}), wake_up(['weights']) took "
              f"{size(weights_taken)}, wake_up(['kv_cache']) {size(kv_taken)}, host memory grew {size(host_growth)}")
    return Check(name, "FAIL" if problems else "PASS", "; ".join(problems) if problems else detail)


def placeholder_check(sent_ids: list[int], expanded_ids: list[int], image_token_id: int, n_images: int) -> Check:
    """The prompt vLLM got has one placeholder per image; the trainer's keeps the processor's expansion.

    >>> placeholder_check([1, 9, 2], [1, 9, 9, 9, 9, 2], 9, 1).status
    'PASS'
    """
    sent, expanded = sent_ids.count(image_token_id), expanded_ids.count(image_token_id)
    ok = sent == n_images and expanded > n_images
    return Check(f"vision: {n_images} image(s), one placeholder each", "PASS" if ok else "FAIL",
                 f"{sent} placeholder(s) sent to vLLM, {expanded} in the trainer's prompt")


def oversized_image_sizes(max_pixels: int, factor: int = 28) -> list[tuple[int, int]]:
    """Two image sizes (width, height), square and 4:1, each at least twice ``max_pixels`` (multiples of
    ``factor``): images the processors must shrink.

    >>> oversized_image_sizes(256 * 28 * 28), oversized_image_sizes(4 * 28 * 28)
    ([(672, 672), (1344, 336)], [(112, 112), (224, 56)])
    """
    side = math.ceil(math.sqrt(2 * max_pixels) / (2 * factor)) * 2 * factor
    return [(side, side), (2 * side, side // 2)]


def image_tokens_check(n_images: int, pixels: Sequence[int], max_pixels: int, vllm_tokens: int, trainer_tokens: int,
                       unresized_tokens: int) -> Check:
    """vLLM saw as many image tokens as the trainer (the same resizing), fewer than the images would give
    unresized (resizing happened), for images larger than ``max_pixels``.

    >>> image_tokens_check(1, [414736], 200704, 256, 256, 529).status
    'PASS'
    >>> print(image_tokens_check(1, [414736], 200704, 529, 256, 529).detail)
    vLLM counted 529 image tokens, the trainer 256; unresized 529; images of 414736 pixels (max_pixels 200704)
    """
    ok = (vllm_tokens == trainer_tokens and trainer_tokens < unresized_tokens
          and all(p > max_pixels for p in pixels))
    return Check(f"vision: {n_images} image(s) resized alike by vLLM and the trainer", "PASS" if ok else "FAIL",
                 f"vLLM counted {vllm_tokens} image tokens, the trainer {trainer_tokens}; unresized "
                 f"{unresized_tokens}; images of {', '.join(map(str, pixels))} pixels (max_pixels {max_pixels})")


def changed_check(before: list[list[int]], altered: list[list[int]], restored: list[list[int]]) -> Check:
    """Greedy outputs differ under altered weights and come back with the originals.

    >>> changed_check([[1, 2]], [[3, 3]], [[1, 2]]).status
    'PASS'
    """
    ok = altered != before and restored == before
    return Check("colocated: outputs follow each sync", "PASS" if ok else "FAIL",
                 f"altered weights changed {sum(a != b for a, b in zip(altered, before))}/{len(before)} greedy answers; "
                 f"original weights restored {sum(r == b for r, b in zip(restored, before))}/{len(before)}")


def resume_check(checkpoint: dict[str, float] | None, base: dict[str, float] | None) -> Check:
    """The first rollout after ``--resume`` was sampled from the checkpoint's weights: its log-probs agree
    with the checkpoint's and not with the base model's (the engine started from the base model's folder;
    the smoke's checkpoint differs from it on purpose, so an engine that was not re-synced shows).

    >>> resume_check({"tokens": 9, "mean_abs_diff": 0.01, "ratio_std": 0.01}, {"tokens": 9, "mean_abs_diff": 4.0}).status
    'PASS'
    >>> resume_check({"tokens": 9, "mean_abs_diff": 4.0, "ratio_std": 9.0}, {"tokens": 9, "mean_abs_diff": 0.01}).status
    'FAIL'
    """
    name = "resume: the first rollout after --resume samples from the checkpoint's weights"
    if checkpoint is None or base is None:
        return Check(name, "FAIL", "the resumed trainer generated nothing")
    ok = agrees(checkpoint) and base["mean_abs_diff"] >= STALE_DIFF_MIN
    return Check(name, "PASS" if ok else "FAIL",
                 f"{checkpoint['tokens']} tokens: mean |diff| {checkpoint['mean_abs_diff']:.4f} vs the checkpoint's "
                 f"weights (< {LOGP_MEAN_TOL}), {base['mean_abs_diff']:.2f} vs the base model's (>= {STALE_DIFF_MIN})")


#: A weight sync's routes in order (vLLM 0.17 has no start/finish: 404, then left out).
SYNC_ROUTES = ("pause", "start", "update", "finish", "reset_prefix_cache", "resume")


def sync_routes_check(calls: Sequence[tuple[str, bool]]) -> Check:
    """A server sync paused the server, updated, reset the prefix cache and resumed, in that order.
    ``calls``: ``(route, answered)`` as the engine made them (``answered`` False for a 404).

    >>> sync_routes_check([("pause", True), ("start", True), ("update", True), ("finish", True),
    ...                    ("reset_prefix_cache", True), ("resume", True)]).status
    'PASS'
    >>> print(sync_routes_check([("pause", False), ("update", True), ("reset_prefix_cache", True)]).detail)
    /pause answered 404 (is VLLM_SERVER_DEV_MODE=1 set?): other requests could be served from half-updated weights; then: pause(404), update, reset_prefix_cache
    """
    answered = [route for route, ok in calls if ok and route in SYNC_ROUTES]
    order = [r for k, r in enumerate(answered) if k == 0 or answered[k - 1] != r]  # a retried reset counts once
    needed = {"pause", "update", "reset_prefix_cache", "resume"} | ({"start", "finish"} if "start" in order else set())
    expected = [r for r in SYNC_ROUTES if r in needed]
    shown = ", ".join(r if ok else f"{r}(404)" for r, ok in calls)
    name = "server: the sync pauses the server, updates, resets the prefix cache, resumes"
    if ("pause", False) in calls:
        return Check(name, "FAIL", "/pause answered 404 (is VLLM_SERVER_DEV_MODE=1 set?): other requests could be "
                                   f"served from half-updated weights; then: {shown}")
    return Check(name, "PASS" if order == expected else "FAIL", shown)


def rendezvous_check(rendezvous: tuple[str, int] | None, routed: str) -> Check:
    """The NCCL rendezvous listened on the address that routes to the server and on a port the OS gave.

    >>> rendezvous_check(("127.0.0.1", 40123), "127.0.0.1").status, rendezvous_check(None, "127.0.0.1").status
    ('PASS', 'FAIL')
    """
    ok = rendezvous is not None and rendezvous[0] == routed and 0 < rendezvous[1] < 65536
    where = f"{rendezvous[0]}:{rendezvous[1]}" if rendezvous else "none"
    return Check("server: rendezvous on the routed address and a free port", "PASS" if ok else "FAIL",
                 f"{where} (routed address {routed}; rollout.vllm_master_address / vllm_master_port unset)")


def sync_plan(dry_run: bool, gpus: int) -> tuple[str, str]:
    """How the server part syncs weights: ``("socket" | "nccl" | "skip", why)``.

    >>> sync_plan(True, 0)[0], sync_plan(False, 2)[0], sync_plan(False, 1)
    ('socket', 'nccl', ('skip', 'needs 2 GPUs (NCCL refuses two ranks on one device)'))
    """
    if dry_run:
        return "socket", "the stand-in server's TCP socket in NCCL's place"
    if gpus > 1:
        return "nccl", "the server on GPU 1, the trainer on GPU 0"
    return "skip", "needs 2 GPUs (NCCL refuses two ranks on one device)"


def serve_command(model: str, port: int, max_model_len: int, gpu_memory_utilization: float) -> list[str]:
    """The ``vllm serve`` command the server part starts (docs/engines.md gives the same)."""
    return ["vllm", "serve", model, "--port", str(port), "--max-model-len", str(max_model_len), "--dtype", "bfloat16",
            "--gpu-memory-utilization", str(gpu_memory_utilization), "--weight-transfer-config", '{"backend": "nccl"}',
            "--logprobs-mode", "processed_logprobs"]


def standin_serve_command(model: str, port: int, max_model_len: int) -> list[str]:
    """What ``--dry-run`` starts in ``vllm serve``'s place (``tests/standins/vllm_server.py``)."""
    return [sys.executable, str(STANDINS / "vllm_server.py"), model, "--port", str(port), "--max-model-len",
            str(max_model_len)]


def wait_for_server(url: str, timeout: float, poll: float = 2.0, process: subprocess.Popen | None = None) -> float:
    """Seconds until ``url``/health answers 200; TimeoutError naming the URL after ``timeout`` s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"vllm serve exited with code {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url + "/health", timeout=poll) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll)
    raise TimeoutError(f"{url}/health did not answer within {timeout:g} s")


def report(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    return "\n".join(f"{c.status:4}  {c.name:<{width}}  {c.detail}" for c in checks)


# --------------------------------------------------------------------------- the children (pure parts)
def dry_run_env(environ: dict[str, str]) -> dict[str, str]:
    """The children's environment under ``--dry-run``: ``import vllm`` finds the stand-in (``tests/standins``
    first on ``PYTHONPATH``, then this checkout's ``src`` and ``tests``), no GPU is visible, and no
    launcher variables are inherited (the colocated engine sets its own, as in a plain ``gpgrl train``).

    >>> env = dry_run_env({"PYTHONPATH": "/x", "RANK": "3", "HOME": "/h"})
    >>> env["PYTHONPATH"].split(os.pathsep)[0] == str(STANDINS), env["PYTHONPATH"].endswith("/x"), "RANK" in env
    (True, True, False)
    >>> env["CUDA_VISIBLE_DEVICES"], env["HOME"]
    ('', '/h')
    """
    path = [str(STANDINS), str(REPO / "src"), str(REPO / "tests")]
    if environ.get("PYTHONPATH"):
        path.append(environ["PYTHONPATH"])
    env = {k: v for k, v in environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                          "MASTER_PORT")}
    env.update({"PYTHONPATH": os.pathsep.join(path), "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1"})
    return env


def child_command(args: argparse.Namespace, part: str, json_path: Path) -> list[str]:
    """This script again, for one part, reporting to ``json_path``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--only", part, "--child-json", str(json_path),
           "--model", args.model, "--vision-model", args.vision_model, "--steps", str(args.steps),
           "--port", str(args.port), "--server-timeout", str(args.server_timeout), "--out", str(args.out)]
    return cmd + (["--dry-run"] if args.dry_run else [])


def child_checks(part: str, returncode: int | None, report_text: str | None, log_tail: str,
                 timeout: float | None = None) -> list[Check]:
    """The checks a child reported (``OUT/PART.json``), and a FAIL line where it crashed, hung or exited
    oddly, with the end of its log: a part that dies never takes the report with it.
    ``returncode`` None: killed after ``timeout`` s.

    >>> [c.status for c in child_checks("vision", 0, '{"checks": [{"name": "a", "status": "PASS", "detail": ""}], '
    ...                                  '"complete": true}', "")]
    ['PASS']
    >>> print(child_checks("vision", -11, None, "Segmentation fault")[0].detail)
    the child process exited with code -11 before it reported anything; its log ends: Segmentation fault
    """
    try:
        data = json.loads(report_text) if report_text else None
    except json.JSONDecodeError:
        data = None
    checks = [Check(**c) for c in (data or {}).get("checks", [])]
    how = (f"was killed after {timeout:g} s (--part-timeout)" if returncode is None
           else f"exited with code {returncode}")
    tail = f"; its log ends: {log_tail.strip()[-1500:]}" if log_tail.strip() else ""
    if data is None:
        return [Check(f"{part}: ran", "FAIL", f"the child process {how} before it reported anything{tail}")]
    if not data.get("complete"):
        return [*checks, Check(f"{part}: ran", "FAIL", f"the child process {how} after {len(checks)} check(s){tail}")]
    if returncode not in (0, 1):
        return [*checks, Check(f"{part}: ran", "FAIL", f"the child process {how} after its report{tail}")]
    return checks


class PartReport:
    """A child's checks, written to its JSON file after each one (``complete`` once the part ended)."""

    def __init__(self, path: Path, part: str):
        self.path, self.part, self.checks = path, part, []
        self._write(False)

    def add(self, check: Check) -> None:
        self.checks.append(check)
        print(report([check]), flush=True)
        self._write(False)

    def finish(self) -> None:
        self._write(True)

    def _write(self, complete: bool) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"part": self.part, "checks": [asdict(c) for c in self.checks],
                                   "complete": complete}, indent=1))
        os.replace(tmp, self.path)


# ------------------------------------------------------------------------------ runtime (GPU or CPU)
@dataclass
class Runtime:
    """What differs between the GPU run and ``--dry-run``: the device, the precision, the models' sizes."""

    dry_run: bool

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def mixed_precision(self) -> str:
        return "no" if self.dry_run else "bf16"

    @property
    def dtype(self) -> str:
        return "float32" if self.dry_run else "bfloat16"

    @property
    def max_pixels(self) -> int:
        return VISION_MAX_PIXELS["dry" if self.dry_run else "gpu"]


class CallLog:
    """Records the calls an engine makes on its ``vllm.LLM`` (the real one or the stand-in), in order:
    each method is wrapped on the instance. After each ``sleep`` / ``wake_up`` the memory ``probe``
    reports is recorded too; ``last_outputs`` keeps the last ``generate``'s outputs."""

    CALLS = ("sleep", "wake_up", "apply_model", "reset_prefix_cache", "generate")

    def __init__(self, llm: Any, probe: Any = None):
        self.events: list[tuple[str, Any]] = []
        self.memory: list[tuple[str, Any, int, int]] = []  # (call, argument, device free, host used)
        self.last_outputs: list[Any] = []
        self.probe = probe
        for call in self.CALLS:
            setattr(llm, call, self._wrap(call, getattr(llm, call)))

    def _wrap(self, call: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            arg = None
            if call == "sleep":
                arg = kwargs.get("level", args[0] if args else 1)
            elif call == "wake_up":
                arg = kwargs.get("tags", args[0] if args else None)
            self.events.append((call, arg))
            out = fn(*args, **kwargs)
            if call == "generate":
                self.last_outputs = list(out)
            if call in ("sleep", "wake_up") and self.probe is not None:
                self.memory.append((call, arg, self.probe.device_free(), self.probe.host_used()))
            return out

        return recorded


class CudaMemory:
    """The GPU's free bytes (``cudaMemGetInfo``) and this process's resident host memory."""

    def device_free(self) -> int:
        torch.cuda.synchronize()
        return int(torch.cuda.mem_get_info()[0])

    def host_used(self) -> int:
        return int(rss_mb() * 2**20)


class StandInMemory:
    """The vllm stand-in's accounting: a fake GPU (``$VLLM_STANDIN_GPU_MEMORY``, 80 GiB by default) holding
    the engine's weights (in its dtype) and its KV budget while awake; host memory holds level 1's copy."""

    def __init__(self, llm: Any):
        self.llm = llm
        self.total = int(float(os.environ.get("VLLM_STANDIN_GPU_MEMORY", 80 * GIB)))
        width = torch.empty((), dtype=llm.engine_dtype).element_size()
        self.weights = sum(p.numel() for p in llm.model.parameters()) * width

    def device_free(self) -> int:
        asleep = self.llm._asleep
        used = (0 if "weights" in asleep else self.weights) + (0 if "kv_cache" in asleep else self.llm.kv_budget_bytes)
        return self.total - used

    def host_used(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.llm._offloaded.values())


def memory_probe(llm: Any, rt: Runtime) -> tuple[Any, str]:
    """The probe for this run, or None and why memory cannot be checked."""
    if not rt.dry_run:
        return CudaMemory(), ""
    if all(hasattr(llm, a) for a in ("_asleep", "_offloaded", "kv_budget_bytes", "engine_dtype", "model")):
        return StandInMemory(llm), ""
    return None, "the stand-in keeps no memory accounting"


def kv_block_size(llm: Any) -> tuple[int, str]:
    """The engine's KV block size and where it came from (vLLM: its cache config)."""
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        return int(llm.llm_engine.vllm_config.cache_config.block_size), "the engine's"
    return DEFAULT_BLOCK_SIZE, "vLLM 0.34's default; the engine does not say"


def recomputed(model: torch.nn.Module, batch: Any, acc: Any, vision: bool = False) -> torch.Tensor:
    """The trainer's log-probs of the batch's completions at temperature 1 (the smoke test's sampling one),
    in the trainer's precision (the accelerator's autocast)."""
    from gpgrl.models.logprobs import completion_logprobs

    batch = batch.to(acc.device)
    with torch.no_grad(), acc.autocast():
        logps, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                       batch.completion_mask, model_inputs=batch.model_inputs_for(),
                                       use_position_ids=not vision)  # Qwen2-VL computes its own 3-D positions
    return logps.float().cpu()


def agreement(model: torch.nn.Module, batch: Any, acc: Any, vision: bool = False) -> dict[str, float]:
    """:func:`logprob_agreement` of the engine's sampling log-probs with ``model``'s, over the rows whose
    answer holds no image placeholder (a sampled one would count as an image slot in the forward pass)."""
    rows = list(range(len(batch)))
    if vision:
        from gpgrl.models.vision import placeholder_token_ids

        banned = set(placeholder_token_ids(model))
        rows = [r for r in rows if not set(batch.completion_ids[r].tolist()) & banned]
    if not rows:
        return logprob_agreement(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1))
    sub = batch.select(rows)
    return logprob_agreement(sub.sampling_logprobs, recomputed(model, sub, acc, vision), sub.completion_mask)


def alter_(model: torch.nn.Module) -> None:
    """Negate the input embeddings (and the output ones where they are not tied): every layer's KV of a
    prompt changes, so a prefix cache that kept the old one would be seen, and greedy answers change."""
    with torch.no_grad():
        embed = model.get_input_embeddings().weight
        embed.mul_(-1.0)
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != embed.data_ptr():
            head.weight.mul_(-1.0)


@contextlib.contextmanager
def weights_of(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> Iterator[None]:
    """``model`` holds ``state``'s weights inside the block, its own again after it."""
    own = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state[n])
    try:
        yield
    finally:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(own[n])


def smoke_config(model: str, rt: Runtime, out: Path, steps: int, *, resume: bool = False, engine: str = "vllm",
                 rollout: dict[str, Any] | None = None, model_fields: dict[str, Any] | None = None):
    """The smoke test's run: a few GPG steps on arithmetic. Besides accuracy and format, a reward for the
    answer's length (``token_length``) leaves a signal in almost every group, so that the steps update
    and sync (a step without any is still measured: ``is/`` metrics) and no draws are spent resampling."""
    from gpgrl.config import from_dict

    return from_dict({
        "model": {"name_or_path": model, **(model_fields or {})},
        "data": {"dataset": "builtin:arithmetic", "max_samples": 64,
                 "max_prompt_length": 1024},  # room for the prefix-cache prompts and two images
        "rewards": [{"name": "accuracy"}, {"name": "format"},
                    {"name": "token_length", "params": {"tokenizer": model, "per_token": 0.01}}],
        "algorithm": {"preset": "gpg", "resample_threshold": 0.0},
        "rollout": {"engine": engine, "group_size": 8, "max_completion_length": 64, "temperature": 1.0,
                    "vllm_gpu_memory_utilization": 0.3, **(rollout or {})},
        "optim": {"lr": 1e-6}, "train": {"steps": steps, "prompts_per_step": 4, "micro_batch_size": 8,
                                        "output_dir": str(out), "overwrite": not resume, "resume": resume,
                                        "save_every": steps, "mixed_precision": rt.mixed_precision},
        "log": {"progress": False, "sample_every": 0, "report_to": ["jsonl"]}})


def engine_weight_bytes(model: torch.nn.Module, cfg: Any, acc: Any) -> int:
    """The bytes of the engine's weights: the trainer's parameters in the dtype the engine runs in."""
    from gpgrl.rollout.vllm import engine_dtype

    dtype = getattr(torch, engine_dtype(cfg.model.dtype, model, str(acc.mixed_precision)))
    return sum(p.numel() for p in model.parameters()) * torch.empty((), dtype=dtype).element_size()


# ------------------------------------------------------------------------------------------ the parts
def run_colocated(args: argparse.Namespace, rt: Runtime, out: PartReport) -> None:
    from gpgrl.rollout.engine import SamplingParams
    from gpgrl.train.trainer import Trainer

    cfg = smoke_config(args.model, rt, args.out / "colocated", args.steps)
    trainer = Trainer.from_config(cfg)
    engine, acc = trainer.engine, trainer.acc
    model = acc.unwrap_model(trainer.model)
    probe, no_probe = memory_probe(engine.llm, rt)
    calls = CallLog(engine.llm, probe)
    history = trainer.train()
    out.add(is_metrics_check("colocated", history, args.steps))
    in_training = sum(call == "sleep" for call, _ in calls.events)
    tokenizer = trainer.tokenizer
    prompts = [tokenizer(f"What is {a}+{b}? Answer:")["input_ids"] for a, b in ((12, 30), (7, 8), (45, 21))]
    batch = engine.generate(prompts, SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
    out.add(agreement_check("colocated: sampled vs recomputed log-probs", agreement(model, batch, acc)))
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)

    def answers() -> list[list[int]]:
        b = engine.generate(prompts, greedy, num_samples=1)
        return [row[m.bool()].tolist() for row, m in zip(b.completion_ids, b.completion_mask)]

    before = answers()
    block, source = kv_block_size(engine.llm)
    long = long_prompts(tokenizer, room_for(prefix_tokens(block), engine.max_model_len, 16))
    sampling = SamplingParams(max_new_tokens=16, temperature=1.0)
    engine.generate(long, sampling, num_samples=2)  # their KV blocks are in the prefix cache now
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    alter_(model)
    engine.update_weights(model)
    altered = answers()
    after = engine.generate(long, sampling, num_samples=4)
    new = agreement(model, after, acc)
    with weights_of(model, original):
        old = agreement(model, after, acc)
    out.add(prefix_cache_check("colocated", [len(p) for p in long], block, source, new, old))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(original[n])
    engine.update_weights(model)
    out.add(changed_check(before, altered, answers()))

    level = cfg.rollout.vllm_sleep_level
    mark = len(calls.memory)
    free_awake, host_awake = (probe.device_free(), probe.host_used()) if probe else (0, 0)
    engine.sleep()  # the trainer's cycle, by hand: sleep, then the sync wakes the weights, loads, wakes the KV cache
    engine.update_weights(model)
    out.add(wake_order_check(calls.events, level, in_training))
    if probe is None:
        out.add(Check(f"colocated: sleep(level={level}) frees the weights and the KV cache", "SKIP", no_probe))
    else:
        seen = calls.memory[mark:]
        free = {"awake": free_awake, "asleep": seen[0][2]}
        wakes = [m for m in seen if m[0] == "wake_up"]  # weights first, then the KV cache (or all at once)
        free["weights"] = wakes[0][2] if wakes else free["asleep"]
        free["woken"] = wakes[-1][2] if wakes else free["asleep"]
        out.add(sleep_memory_check(free, seen[0][3] - host_awake, engine_weight_bytes(model, cfg, acc), level))
    out.add(Check("colocated: generates after the cycle", "PASS" if answers() == before else "FAIL",
                  "greedy answers after sleep + sync equal those before"))

    alter_(model)  # the checkpoint the resume part starts from differs from the base model on purpose
    path = trainer.save_checkpoint()
    (args.out / "colocated" / CHECKPOINT_NOTE).write_text(json.dumps({"step": trainer.step, "path": str(path)}))
    out.add(Check("colocated: checkpoint for the resume part", "PASS",
                  f"{path} (step {trainer.step}, input embeddings negated)"))


def run_resume(args: argparse.Namespace, rt: Runtime, out: PartReport) -> None:
    from gpgrl.models.source import ModelSource
    from gpgrl.train.trainer import Trainer

    note = args.out / "colocated" / CHECKPOINT_NOTE
    if not note.is_file():
        out.add(Check("resume: a checkpoint of the colocated part", "FAIL",
                      f"{note} is missing: run the colocated part first (--only colocated --only resume)"))
        return
    saved = json.loads(note.read_text())
    cfg = smoke_config(args.model, rt, args.out / "colocated", saved["step"] + 1, resume=True)
    trainer = Trainer.from_config(cfg)  # loads the checkpoint, then syncs the engine once
    acc, model = trainer.acc, trainer.acc.unwrap_model(trainer.model)
    base = ModelSource(args.model, dtype=cfg.model.dtype, quiet=True).load_model().to(acc.device).eval()
    first: dict[str, dict[str, float]] = {}
    generate = trainer.engine.generate

    def first_rollout(prompts, params, num_samples):
        batch = generate(prompts, params, num_samples)
        if not first:  # before the step's update changes the model
            first.update(checkpoint=agreement(model, batch, acc), base=agreement(base, batch, acc))
        return batch

    trainer.engine.generate = first_rollout
    history = trainer.train()
    out.add(resume_check(first.get("checkpoint"), first.get("base")))
    out.add(is_metrics_check("resume", history, 1))


def run_vision(args: argparse.Namespace, rt: Runtime, out: PartReport) -> None:
    from PIL import Image

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.source import ModelSource
    from gpgrl.rollout.engine import SamplingParams
    from gpgrl.rollout.vllm import build_colocated_engine
    from gpgrl.train.build import make_accelerator

    max_pixels = rt.max_pixels
    cfg = smoke_config(args.vision_model, rt, args.out / "vision", 1,
                       model_fields={"dtype": rt.dtype, "max_pixels": max_pixels})
    acc = make_accelerator(cfg)
    source = ModelSource(args.vision_model, vision=True, dtype=cfg.model.dtype, max_pixels=max_pixels, quiet=True)
    processor = source.load_processor()  # the trainer's: max_pixels applied, as gpgrl train loads it
    model = source.load_model().to(acc.device).eval()
    engine = build_colocated_engine(cfg, acc, model, processor)  # mm_processor_kwargs from model.max_pixels
    calls = CallLog(engine.llm)
    builder = PromptBuilder(processor, "plain")
    sizes = oversized_image_sizes(max_pixels)
    red, blue = Image.new("RGB", sizes[0], "red"), Image.new("RGB", sizes[1], "blue")
    one, _ = builder.build("What colour is the square?", [red])
    two, _ = builder.build("Are the two shapes the same colour?", [red, blue])
    for p in (one, two):
        out.add(placeholder_check(engine.request(p)["prompt_token_ids"], p.ids, engine.image_token_id, len(p.images)))
    batch = engine.generate([one, two], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
    image_id = engine.image_token_id
    for p, served in zip((one, two), calls.last_outputs):
        unresized = sum(processor_tokens(processor.image_processor, im, 4 * im.width * im.height) for im in p.images)
        out.add(image_tokens_check(len(p.images), [im.width * im.height for im in p.images], max_pixels,
                                   list(served.prompt_token_ids).count(image_id), p.ids.count(image_id), unresized))
    out.add(agreement_check("vision: sampled vs recomputed log-probs (with images)",
                            agreement(model, batch, acc, vision=True)))
    engine.sleep()  # level 2: the sync reloads every weight, vision tower included
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)
    engine.update_weights(model)
    after = engine.generate([one, two], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
    out.add(agreement_check("vision: after a sleep + sync, log-probs are the new weights' (names map, caches reset)",
                            agreement(model, after, acc, vision=True)))


def processor_tokens(image_processor: Any, image: Any, max_pixels: int) -> int:
    """Image tokens ``image_processor`` gives ``image`` with its largest size set to ``max_pixels``."""
    size = dict(image_processor.size)
    size["longest_edge"] = int(max_pixels)
    grid = image_processor(images=[image], size=size, return_tensors="pt")["image_grid_thw"][0]
    return int(grid.prod()) // int(getattr(image_processor, "merge_size", 2)) ** 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server(args: argparse.Namespace, rt: Runtime, out: PartReport) -> None:
    from gpgrl.models.source import ModelSource
    from gpgrl.rollout.engine import SamplingParams, model_context_length
    from gpgrl.rollout.vllm import build_server_engine, routed_address
    from gpgrl.train.build import make_accelerator

    plan, why = sync_plan(rt.dry_run, torch.cuda.device_count() if not rt.dry_run else 0)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    cfg = smoke_config(args.model, rt, args.out / "server", 1, engine="vllm_server", model_fields={"dtype": rt.dtype},
                       rollout={"vllm_server_url": url, "vllm_timeout": 300.0, "vllm_sync_timeout": 120.0})
    acc = make_accelerator(cfg)
    source = ModelSource(args.model, dtype=cfg.model.dtype, quiet=True)
    tokenizer, model = source.load_processor(), source.load_model().to(acc.device).eval()
    max_model_len = min(4096, model_context_length(model) or 4096)
    if rt.dry_run:
        command = standin_serve_command(args.model, port, max_model_len)
    else:
        command = serve_command(args.model, port, max_model_len, 0.3 if plan == "nccl" else 0.25)
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    if not rt.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = "1" if plan == "nccl" else "0"
    log = open(args.out / "vllm_serve.log", "w")  # the server writes to it until the finally below
    print("starting: " + " ".join(command), flush=True)
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        seconds = wait_for_server(url, args.server_timeout, poll=0.5 if rt.dry_run else 2.0, process=server)
        what = "the stand-in tests/standins/vllm_server.py" if rt.dry_run else "vllm serve"
        out.add(Check("server: answers /health", "PASS", f"{what} after {seconds:.0f} s (its log: {log.name})"))
        engine = build_server_engine(cfg, acc, model, tokenizer)  # rollout.vllm_* timeouts and rendezvous
        if plan == "socket":
            from vllm_server import SocketTransport  # tests/standins, on the dry run's PYTHONPATH

            engine.transport = SocketTransport(accept_timeout=cfg.rollout.vllm_sync_timeout)
        routes: list[tuple[str, bool]] = []
        call = engine._call  # the engine's one HTTP function: record which routes a sync used

        def recorded(route, body=None, **kwargs):
            reply = call(route, body, **kwargs)
            routes.append((route, reply is not None))
            return reply

        engine._call = recorded
        prompts = [tokenizer(f"What is {a}+{b}? Answer:")["input_ids"] for a, b in ((12, 30), (7, 8))]
        batch = engine.generate(prompts, SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
        out.add(agreement_check("server: sampled vs recomputed log-probs", agreement(model, batch, acc)))
        if plan == "skip":
            out.add(Check("server: weight sync", "SKIP", why))
            return
        long = long_prompts(tokenizer, room_for(prefix_tokens(DEFAULT_BLOCK_SIZE), engine.max_model_len, 16))
        sampling = SamplingParams(max_new_tokens=16, temperature=1.0)
        engine.generate(long, sampling, num_samples=2)  # cached by the server now
        original = {n: p.detach().clone() for n, p in model.named_parameters()}
        alter_(model)
        mark = len(routes)
        engine.update_weights(model)
        out.add(rendezvous_check(engine.rendezvous, routed_address(url)))
        out.add(sync_routes_check([r for r in routes[mark:] if r[0] not in ("world_size", "init", "completions")]))
        after = engine.generate(long, sampling, num_samples=4)
        new = agreement(model, after, acc)
        with weights_of(model, original):
            old = agreement(model, after, acc)
        out.add(prefix_cache_check("server", [len(p) for p in long], DEFAULT_BLOCK_SIZE,
                                   "the largest default; a server does not say", new, old))
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


RUNNERS = {"colocated": run_colocated, "resume": run_resume, "vision": run_vision, "server": run_server}


def child_main(args: argparse.Namespace) -> int:
    """One part, in this process: its checks go to ``--child-json`` as they come."""
    part = args.only[0]
    rt = Runtime(args.dry_run)
    out = PartReport(args.child_json, part)
    try:
        import vllm

        version = str(getattr(vllm, "__version__", "?"))
        print(f"gpu_smoke {part}: vllm {version} from {Path(vllm.__file__).parent}, device {rt.device}", flush=True)
        if ("standin" in version) != rt.dry_run:
            wanted = "--dry-run needs the stand-in" if rt.dry_run else "a GPU run needs real vLLM"
            out.add(Check(f"{part}: vllm", "FAIL", f"{wanted}, but `import vllm` found {version} ({vllm.__file__})"))
        else:
            if rt.dry_run:
                torch.set_num_threads(1)
            RUNNERS[part](args, rt, out)
    except Exception as e:  # the report says what failed; the traceback goes to the part's log
        traceback.print_exc()
        out.add(Check(f"{part}: ran", "FAIL", f"{type(e).__name__}: {e}"))
    out.finish()
    return 1 if any(c.status == "FAIL" for c in out.checks) else 0


# ------------------------------------------------------------------------------------------ the parent
def prepare_dry_run(args: argparse.Namespace) -> None:
    """Tiny models saved to ``OUT/models`` (the default models under --dry-run). The text model's
    embeddings are scaled up (x :data:`DRY_RUN_EMBEDDING_SCALE`): a random model's near-uniform
    distributions hardly move when its weights change, a trained model's peaked ones do, and the
    prefix-cache and resume checks need that to be able to fail."""
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model, save_tiny_vlm

    root = args.out / "models"
    if args.model is None:
        args.model = str(root / "text")
        # built anew on every run (a second): a folder left by an older version could hold other models
        model = build_tiny_model(build_char_tokenizer(root / "text"), seed=3, max_positions=2048)  # room for
        with torch.no_grad():  # the prefix-cache prompts
            model.get_input_embeddings().weight.mul_(DRY_RUN_EMBEDDING_SCALE)
        model.save_pretrained(str(root / "text"))
    if args.vision_model is None:
        args.vision_model = str(root / "vision")
        save_tiny_vlm(root / "vision", seed=1)


def run_part(part: str, args: argparse.Namespace, env: dict[str, str]) -> list[Check]:
    """One part in a child process (its own session: a hung child and its server are killed together)."""
    json_path, log_path = args.out / f"{part}.json", args.out / f"{part}.log"
    json_path.unlink(missing_ok=True)
    part_env = {**env, "VLLM_STANDIN_LOG": str(args.out / f"{part}.vllm-calls.jsonl")} if args.dry_run else env
    with open(log_path, "w") as log:
        child = subprocess.Popen(child_command(args, part, json_path), stdout=log, stderr=subprocess.STDOUT,
                                 env=part_env, start_new_session=True)
        try:
            code: int | None = child.wait(args.part_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            code = None
    with contextlib.suppress(ProcessLookupError):  # a server the child left behind
        os.killpg(child.pid, signal.SIGKILL)
    text = json_path.read_text() if json_path.is_file() else None
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    return child_checks(part, code, text, tail, args.part_timeout)


#: What each part checks, for --plan (the module docstring says it in full).
PART_SUMMARY = {
    "colocated": "GPG steps with is/ metrics on every step; log-probs; prefix cache on prompts of 5 KV blocks; greedy "
                 "answers follow syncs; wake order and level-2 memory; a checkpoint for resume",
    "resume": "a resumed trainer's first rollout samples from the checkpoint's weights; is/ metrics",
    "vision": "images larger than max_pixels: placeholders, equal image-token counts, log-probs before/after a sync",
    "server": "vllm serve: /health, log-probs; with 2 GPUs (or --dry-run) the sync: rendezvous, pause...resume, "
              "prefix cache",
}


def plan_text(args: argparse.Namespace, parts: Sequence[str]) -> str:
    import shlex

    mode = "dry run on this CPU through tests/standins" if args.dry_run else "GPU run"
    lines = [f"parts: {', '.join(parts)}; text model {args.model}; vision model {args.vision_model}; {mode}"]
    lines += [f"  {part}: {PART_SUMMARY[part]}" for part in parts]
    lines.append(f"each part: {shlex.join(child_command(args, 'PART', args.out / 'PART.json'))}")
    port = args.port or 8000
    if args.dry_run:
        lines.append("server command: " + shlex.join(standin_serve_command(args.model, port, 1024)))
    else:
        lines.append("server command: VLLM_SERVER_DEV_MODE=1 " + shlex.join(serve_command(args.model, port, 4096, 0.25)))
    if not args.port:
        lines.append("  (on a free port instead of 8000; --port sets one)")
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, action="append", help="run this part only (repeatable)")
    parser.add_argument("--model", default=None, help=f"text model (Hub id or folder; default {TEXT_MODEL}, a tiny "
                                                      "one under --dry-run)")
    parser.add_argument("--vision-model", default=None, help=f"vision model (default {VISION_MODEL}, a tiny one under "
                                                             "--dry-run)")
    parser.add_argument("--steps", type=int, default=3, help="GPG steps of the colocated part (default 3)")
    parser.add_argument("--port", type=int, default=0, help="port of the server the server part starts (0: a free one)")
    parser.add_argument("--server-timeout", type=float, default=600, help="seconds to wait for `vllm serve` to start")
    parser.add_argument("--part-timeout", type=float, default=1800, help="seconds one part may take before it is "
                                                                         "killed and reported as FAIL")
    parser.add_argument("--out", type=Path, default=None, help="folder for the results and logs (default "
                                                               "runs/gpu-smoke, runs/gpu-smoke-dry under --dry-run)")
    parser.add_argument("--plan", action="store_true", help="print what would run and exit")
    parser.add_argument("--dry-run", action="store_true", help="run everything on this CPU through the stand-ins")
    parser.add_argument("--child-json", type=Path, default=None, help=argparse.SUPPRESS)  # a child: one part
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/gpu-smoke-dry" if args.dry_run else "runs/gpu-smoke")
    args.out = args.out.resolve()
    if not args.dry_run:
        args.model = args.model or TEXT_MODEL
        args.vision_model = args.vision_model or VISION_MODEL
    if args.child_json is not None and (not args.only or len(args.only) != 1):
        parser.error("--child-json runs exactly one part (--only PART)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child_json is not None:
        return child_main(args)
    parts = [p for p in PARTS if p in args.only] if args.only else list(PARTS)
    if args.plan:
        if args.dry_run:
            args.model = args.model or str(args.out / "models" / "text")
            args.vision_model = args.vision_model or str(args.out / "models" / "vision")
        print(plan_text(args, parts))
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA GPU here; run it on a GPU machine (--plan shows what it would do, --dry-run runs it "
              "on this CPU through the stand-ins)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.dry_run:
        prepare_dry_run(args)
        env = dry_run_env(env)
    checks: list[Check] = []
    for part in parts:
        print(f"gpu_smoke: {part} ... (log: {args.out / (part + '.log')})", flush=True)
        start = time.monotonic()
        found = run_part(part, args, env)
        checks += found
        print(f"{report(found)}\n({part}: {time.monotonic() - start:.0f} s)", flush=True)
    (args.out / "gpu_smoke.json").write_text(json.dumps([asdict(c) for c in checks], indent=1))
    print(f"\n{report(checks)}\nwrote {args.out / 'gpu_smoke.json'}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if "--child-json" in sys.argv:
        os._exit(code)  # a child: skip vLLM's interpreter-exit teardown, which can hang or crash after the report
    sys.exit(code)
