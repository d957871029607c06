"""The rollout engines by name (``rollout.engine``): adding one is one entry here and its builder.

A builder takes ``(cfg, accelerator, model, tokenizer)`` (the run's resolved :class:`~gpgrl.config.Config`,
the prepared, possibly wrapped, policy and its tokenizer or processor) and returns a
:class:`~gpgrl.rollout.engine.RolloutEngine`. The vLLM builders import vLLM only when called. The names
here are the choices of ``rollout.engine`` in the config (its ``Literal``); tests/test_structure.py checks
that the two lists agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from gpgrl.rollout.engine import RolloutEngine, build_hf_engine
from gpgrl.rollout.vllm import build_colocated_engine, build_server_engine

if TYPE_CHECKING:
    from accelerate import Accelerator

    from gpgrl.config import Config  # types only: the config layer sits above the engines

#: ``(cfg, accelerator, model, tokenizer) -> engine``; ``tokenizer`` is a tokenizer or a processor.
EngineBuilder = Callable[["Config", "Accelerator", torch.nn.Module, Any], RolloutEngine]

ENGINES: dict[str, EngineBuilder] = {
    "hf": build_hf_engine,
    "vllm": build_colocated_engine,
    "vllm_server": build_server_engine,
}


def make_engine(cfg: Config, accelerator: Accelerator, model: torch.nn.Module, tokenizer: Any) -> RolloutEngine:
    """The engine ``cfg.rollout.engine`` names.

    >>> make_engine(type("C", (), {"rollout": type("R", (), {"engine": "sglang"})})(), None, None, None)
    Traceback (most recent call last):
    ...
    ValueError: unknown rollout.engine 'sglang'; valid: hf, vllm, vllm_server
    """
    name = cfg.rollout.engine
    if name not in ENGINES:
        raise ValueError(f"unknown rollout.engine {name!r}; valid: {', '.join(ENGINES)}")
    return ENGINES[name](cfg, accelerator, model, tokenizer)
