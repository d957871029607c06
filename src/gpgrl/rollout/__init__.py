"""Rollouts: the one batch type of a step (:class:`RolloutBatch`) and the engines that fill it.

Engines share one interface (:class:`RolloutEngine`): ``hf`` samples with transformers ``generate`` in
the training process; ``vllm`` and ``vllm_server`` sample with vLLM (see :mod:`gpgrl.rollout.vllm`).
"""

from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import (
    HFGenerateEngine,
    Prompt,
    RolloutEngine,
    SamplingParams,
    left_pad,
    mask_after_eos,
    right_pad,
)

__all__ = [
    "HFGenerateEngine",
    "Prompt",
    "RolloutBatch",
    "RolloutEngine",
    "SamplingParams",
    "left_pad",
    "mask_after_eos",
    "right_pad",
]
