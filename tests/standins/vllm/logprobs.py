"""``vllm.logprobs.Logprob``: one token's log-prob in a sample's ``logprobs`` list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None
