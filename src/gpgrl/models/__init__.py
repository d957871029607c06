"""Loading policies and tokenizers; tiny offline models for tests and the quickstart; log-probs and their kernels."""

from gpgrl.models.kernels import head_logprobs, token_entropy, token_logprobs
from gpgrl.models.loading import apply_lora, load_policy, load_tokenizer
from gpgrl.models.logprobs import (
    Sampling,
    completion_logprobs,
    fusable_head,
    position_ids_from_mask,
    processed_logprobs,
)

__all__ = [
    "Sampling",
    "apply_lora",
    "completion_logprobs",
    "fusable_head",
    "head_logprobs",
    "load_policy",
    "load_tokenizer",
    "position_ids_from_mask",
    "processed_logprobs",
    "token_entropy",
    "token_logprobs",
]
