"""Shared test utilities: reward functions importable as ``helpers:NAME``, configs, a scripted engine."""

from __future__ import annotations

import torch

from gpgrl.config import from_dict
from gpgrl.rollout import RolloutBatch
from gpgrl.rollout.engine import RolloutEngine, as_prompts, assemble, left_pad, mask_after_eos
from gpgrl.rollout.environments import Step


def count_sevens(completions, **_):
    """Share of '7' characters in the completion: a dense reward a tiny model can learn fast."""
    return [c.count("7") / max(len(c), 1) for c in completions]


def slow_sevens(completions, **_):
    """count_sevens after a pause (0.3 s, or $SLOW_REWARD_SECONDS): a signal can land in the middle of a step."""
    import os
    import time

    time.sleep(float(os.environ.get("SLOW_REWARD_SECONDS", "0.3")))
    return count_sevens(completions)


def has_one(completions, **_):
    return [float("1" in c) for c in completions]


def infinite(completions, **_):
    """A broken reward: +inf for every other answer (non-finite rewards count as failures)."""
    return [float("inf") if i % 2 else 0.0 for i in range(len(completions))]


def overflowing(completions, **_):
    """Finite rewards whose group sum overflows to inf in float64, so the loss is not finite."""
    return [1.7e308 if i % 2 else 0.0 for i in range(len(completions))]


def raises(completions, **_):
    raise RuntimeError("this reward is broken on purpose")


def tiny_config(tmp_path, **sections):
    """A small, fast config on the built-in arithmetic task; ``sections`` override whole keys."""
    raw = {
        "model": {"name_or_path": "tiny"},
        "data": {"dataset": "builtin:arithmetic"},
        "rewards": [{"name": "helpers:count_sevens"}],
        "rollout": {"group_size": 4, "max_completion_length": 6},
        "optim": {"lr": 3e-3, "lr_scheduler": "constant"},
        "train": {"steps": 2, "prompts_per_step": 4, "micro_batch_size": 8, "output_dir": str(tmp_path / "run")},
        "log": {"progress": False, "sample_every": 0, "report_to": ["jsonl"]},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return from_dict(raw)


class ScriptedEngine(RolloutEngine):
    """A deterministic stand-in for sampling: answer j to a prompt is chosen from the prompt's ids.

    Groups whose prompt-id sum is divisible by 3 get G identical answers (degenerate); the others
    alternate between an answer with a '1' and one without, with varied lengths.
    """

    def __init__(self, tokenizer):
        self.tok = tokenizer

    def generate(self, prompts, params, num_samples):
        prompts = [p.ids for p in as_prompts(prompts)]
        texts = []
        for p in prompts:
            for j in range(num_samples):
                if sum(p) % 3 == 0:
                    texts.append("<answer>22</answer>")
                else:
                    texts.append("<answer>1</answer>" if (j + sum(p)) % 2 else "<think>" + "2" * (j + 1) + "</think>")
        return scripted_batch(self.tok, prompts, texts, num_samples)


def scripted_batch(tok, prompts: list[list[int]], texts: list[str], num_samples: int) -> RolloutBatch:
    """The batch of ``texts`` (group by group, ``num_samples`` per prompt) as answers to ``prompts``, each
    ended by EOS."""
    rows = [p for p in prompts for _ in range(num_samples)]
    prompt_ids, prompt_mask = left_pad(rows, tok.pad_token_id)
    comp = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(len(c) for c in comp)
    ids = torch.tensor([c + [tok.pad_token_id] * (width - len(c)) for c in comp])
    ids, mask, truncated = mask_after_eos(ids, [tok.eos_token_id], tok.pad_token_id)
    return RolloutBatch(prompt_ids, prompt_mask, ids, mask, truncated, texts)


def save_result(trainer, metrics: dict, out) -> None:
    """A distributed test script's end: the main process saves the trained weights and the step's metrics
    to ``out/result.pt``; then the process group is destroyed before exit."""
    if trainer.acc.is_main_process:
        params = {k: v.detach().cpu() for k, v in trainer.acc.unwrap_model(trainer.model).state_dict().items()}
        torch.save({"params": params, "metrics": metrics, "world": trainer.acc.num_processes}, out / "result.pt")
    trainer.acc.end_training()


# --- multi-turn episodes -----------------------------------------------------------------------------

LOGP = -0.25  # the scripted engine's sampling log-prob of every token


class TurnEngine(RolloutEngine):
    """Writes ``script(turn, prompt_text)`` (then EOS) as each answer; records every call it gets."""

    def __init__(self, tok, script, max_model_len=None):
        self.tok, self.script, self.max_model_len = tok, script, max_model_len
        self.calls: list[tuple[list[list[int]], int, int]] = []  # (prompt ids, num_samples, max_new_tokens)

    def generate(self, prompts, params, num_samples):
        prompts = as_prompts(prompts)
        self.calls.append(([list(p.ids) for p in prompts], num_samples, params.max_new_tokens))
        rows, comps = [], []
        for p in prompts:
            text = self.tok.decode(p.ids)
            turn = text.count("<|assistant|>") - 1  # each observation opens another assistant turn
            for j in range(num_samples):
                ids = self.tok(self.script(turn, text, j), add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
                rows.append(p)
                comps.append(ids[: params.max_new_tokens])
        logps = [[LOGP] * len(c) for c in comps]
        return assemble(rows, comps, self.tok, self.tok.pad_token_id, [self.tok.eos_token_id], logps)


class Countdown:
    """An environment for the training test: ``ask`` gets an observation, anything else ends the episode;
    reward parts: 1.0 for an episode that asked once and then answered."""

    def reset(self, record):
        self.asked = 0

    def step(self, text):
        if "ask" in text and self.asked < 2:
            self.asked += 1
            return Step([{"role": "user", "content": f"left {2 - self.asked}"}])
        return Step(done=True, reward={"asked_once": float(self.asked == 1)})
