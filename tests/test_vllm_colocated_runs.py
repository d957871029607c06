"""``gpgrl train --rollout.engine vllm`` as a user runs it, in a subprocess whose ``import vllm`` finds the CPU
stand-in of ``tests/standins`` (a real tiny model, every call logged; see tests/vllm_standin.py).

Resume is exact (finding 3): after ``--resume`` the engine samples its first rollout from the checkpoint's
weights, not from the base model it was started with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vllm_standin

REPO = Path(__file__).resolve().parents[1]


def gpgrl_train(model: Path, out: Path, log: Path, *extra: str) -> subprocess.CompletedProcess:
    args = ["train", "--model", str(model), "--dataset", "builtin:arithmetic", "--rewards",
            "vllm_standin:distinct_characters", "--rollout.engine", "vllm", "--rollout.group_size", "4",
            "--rollout.max_completion_length", "6",
            "--rollout.temperature", "1.0", "--data.max_prompt_length", "48", "--train.prompts_per_step", "2",
            "--algorithm.resample_threshold", "0", "--optim.lr", "0.01", "--optim.lr_scheduler", "constant",
            "--output_dir", str(out), "--log.progress", "false", "--log.sample_every", "0",
            "--log.report_to", "jsonl", *extra]
    return subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=vllm_standin.subprocess_env(log), timeout=600)


def load(folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def folder_hash(folder: Path) -> str:
    """The weights fingerprint of a saved model, computed as the stand-in computes its own."""
    return vllm_standin.record().weights_hash(load(folder).named_parameters())


def n_params(folder: Path) -> int:
    return len(list(load(folder).parameters()))


def test_resume_samples_the_first_rollout_from_the_checkpoints_weights(tmp_path):
    from gpgrl.models.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "base", seed=3)
    out = tmp_path / "run"
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    done = gpgrl_train(model, out, first, "--train.steps", "2", "--train.save_every", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = out / "checkpoints" / "step-000002" / "model"
    base, saved = folder_hash(model), folder_hash(ckpt)
    assert saved != base  # the two steps moved the weights
    log = vllm_standin.record().read_log(first)
    started = log[0]["kwargs"]
    assert started["max_model_len"] == 48 + 6 and started["dtype"] == "float32"  # bounded: prompt + answer
    assert next(c["weights"] for c in log if c["call"] == "generate") == base

    done = gpgrl_train(model, out, second, "--train.steps", "4", "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    log = vllm_standin.record().read_log(second)
    assert log[0]["kwargs"]["max_model_len"] == 54 and log[1]["weights"] == base  # vLLM starts from the base folder
    generates = [c for c in log if c["call"] == "generate"]
    assert generates[0]["weights"] == saved  # before the fix: the base model's, until the first sync
    calls = [c["call"] for c in log]
    before = calls[: calls.index("generate")]  # the sync right after the checkpoint is loaded (awake: no wake)
    assert before == ["LLM", "ready", *["apply_model", "load_weights"] * n_params(model), "reset_prefix_cache",
                      "reset_encoder_cache"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert len(metrics) == 4
    for m in metrics:  # one float32 model on both sides: the engine's log-probs are the trainer's
        assert m["is/logp_diff_abs"] < 1e-4 and m["is/logp_gap_max"] < 1e-4 and m["is/capped_frac"] == 0.0, m
    wakes = [c["tags"] for c in log if c["call"] == "wake_up"]
    sleeps = [c["level"] for c in log if c["call"] == "sleep"]
    # every update slept at level 2 and woke the weights, then (after the sync) the KV cache
    assert sleeps and set(sleeps) == {2} and wakes == [["weights"], ["kv_cache"]] * len(sleeps)


@pytest.mark.parametrize("budget", [None, "40"])
def test_the_engine_refuses_a_context_it_cannot_hold_and_starts_with_the_runs_budget(tmp_path, budget):
    """Finding 4 as vLLM sees it: a fake 'GPU' whose share holds the weights and 64 tokens of KV. Without a
    max_model_len vLLM takes the model's context (512 tokens) and refuses to start; the engine passes the
    run's prompt + answer budget (48 + 6), or rollout.vllm_max_model_len."""
    from gpgrl.models.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "base", seed=3)
    weights = sum(p.numel() for p in load(model).parameters()) * 4  # float32
    log = tmp_path / "calls.jsonl"
    extra = ["--rollout.vllm_max_model_len", budget] if budget else []
    env = vllm_standin.subprocess_env(log, gpu_memory=int((weights + 64 * 512) / 0.3) + 1)
    args = ["train", "--model", str(model), "--dataset", "builtin:arithmetic", "--rewards", "helpers:count_sevens",
            "--rollout.engine", "vllm", "--rollout.group_size", "2", "--rollout.max_completion_length", "6",
            "--data.max_prompt_length", "48", "--train.steps", "1", "--train.prompts_per_step", "2",
            "--output_dir", str(tmp_path / "run"), "--log.progress", "false", "--log.sample_every", "0",
            "--log.report_to", "jsonl", *extra]
    done = subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    started = vllm_standin.record().read_log(log)[0]["kwargs"]
    assert started["max_model_len"] == (int(budget) if budget else 54)
