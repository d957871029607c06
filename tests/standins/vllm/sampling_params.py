"""``vllm.SamplingParams``, as strict as vLLM 0.34's own validation (the strictest of 0.17-0.34).

Only real field names are accepted; vLLM's checks are reproduced (temperature in [0, 2], greedy with n > 1
refused, top_p in (0, 1], top_k >= -1, ...), and a temperature in (0, 0.01) is raised to 0.01 as vLLM does
(``clamped_from`` records it). Settings vLLM honours but this stand-in does not sample (penalties, min_p,
logit bias, ...) raise ``NotImplementedError`` rather than being ignored.
"""

from __future__ import annotations

import math
from typing import Any

from ._fields import SAMPLING_FIELDS

_SAMPLING_EPS = 1e-5
_MAX_TEMP = 1e-2

_DEFAULTS: dict[str, Any] = {
    "n": 1, "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0, "temperature": 1.0,
    "top_p": 1.0, "top_k": 0, "min_p": 0.0, "seed": None, "stop": None, "stop_token_ids": None,
    "ignore_eos": False, "max_tokens": 16, "min_tokens": 0, "logprobs": None, "prompt_logprobs": None,
    "detokenize": True, "skip_special_tokens": True, "spaces_between_special_tokens": True,
    "include_stop_str_in_output": False, "logit_bias": None, "allowed_token_ids": None, "bad_words": None,
    "structured_outputs": None, "extra_args": None,
}

#: Fields whose non-neutral values the stand-in does not sample with (vLLM would): refused, never ignored.
_UNSAMPLED = {"presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0, "min_p": 0.0,
              "min_tokens": 0, "prompt_logprobs": None, "logit_bias": None, "allowed_token_ids": None,
              "bad_words": None, "structured_outputs": None, "ignore_eos": False,
              "include_stop_str_in_output": False}


class SamplingParams:
    """``vllm.SamplingParams(**fields)``; unknown fields raise ``TypeError`` as vLLM's msgspec struct does."""

    def __init__(self, **kwargs: Any):
        unknown = sorted(set(kwargs) - SAMPLING_FIELDS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument {unknown[0]!r}")
        self.given = dict(kwargs)  # what the caller passed, for the call log
        fields = {**_DEFAULTS, **kwargs}
        self.__dict__.update(fields)
        self.clamped_from = None
        if 0 < self.temperature < _MAX_TEMP:  # vLLM warns and raises it
            self.clamped_from, self.temperature = self.temperature, _MAX_TEMP
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop_token_ids = list(self.stop_token_ids or [])
        if self.logprobs is True:
            self.logprobs = 1
        self._verify()
        if self.temperature < _SAMPLING_EPS:  # greedy: vLLM resets the filters
            self.top_p, self.top_k, self.min_p = 1.0, 0, 0.0
            if self.n > 1:
                raise ValueError(f"n must be 1 when using greedy sampling, got {self.n}.")
        for name, neutral in _UNSAMPLED.items():
            if getattr(self, name) != neutral:
                raise NotImplementedError(f"the vllm stand-in does not sample with {name}={getattr(self, name)!r} "
                                          "(real vLLM does); leave it at its default")

    def _verify(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        if not -2.0 <= self.presence_penalty <= 2.0:
            raise ValueError(f"presence_penalty must be in [-2, 2], got {self.presence_penalty}.")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise ValueError(f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}.")
        if not math.isfinite(self.repetition_penalty) or self.repetition_penalty <= 0.0:
            raise ValueError(f"repetition_penalty must be greater than zero, got {self.repetition_penalty}.")
        if not math.isfinite(self.temperature) or self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if self.temperature > 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not isinstance(self.top_k, int):
            raise ValueError(f"top_k must be an integer, got {type(self.top_k).__name__}")
        if self.top_k < -1:
            raise ValueError(f"top_k must be 0 (disable), or at least 1, got {self.top_k}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.logprobs is not None and self.logprobs != -1 and self.logprobs < 0:
            raise ValueError(f"logprobs must be non-negative or -1, got {self.logprobs}.")
        if any(not s for s in self.stop):
            raise ValueError("stop cannot contain an empty string.")

    def __repr__(self) -> str:
        return f"SamplingParams({', '.join(f'{k}={v!r}' for k, v in self.given.items())})"
