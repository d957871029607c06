"""Prompt samplers: which prompts each rollout draw uses.

Every process holds an identical sampler (same seed, same updates), draws the same global list of
prompt indices, and takes its own contiguous slice of whole prompts; each prompt is then sampled G times.
So groups never straddle processes and no communication is needed to agree on the prompts.

``uniform`` walks through a fresh permutation every epoch (no prompt repeats within an epoch).

The curriculum strategies are the original GPG code's ``weighted_sample`` (its open-r1 fork's
``sample_strategy``). Each prompt keeps a *history*: the mean total reward of its group every time it
was rolled out. At the start of each epoch every prompt gets a weight from the mean ``m`` of its history
(1.0 without history), an epoch's worth of prompts is drawn *with replacement* in proportion to the
weights, and the drawn prompts' histories are cleared (so a prompt's weight reflects the rewards since it
was last drawn):

==========  ===============================================  ======================================
strategy    weight                                           favours
==========  ===============================================  ======================================
hard        ``1 - m``                                        prompts the model still gets wrong
soft        ``1 - m``, but 0 when ``m`` is 0 or 1            the same, without always/never solved
medium      1, but 0 when ``m`` is 0 or 1                    prompts whose groups carry a signal
==========  ===============================================  ======================================

Deliberate differences from the original, each for robustness: a negative weight (``1 - m`` when rewards
exceed 1) counts as 0; when every weight is 0 the epoch is drawn uniformly instead of failing; the draw
uses the sampler's own seeded generator (saved in checkpoints, so a resumed run draws the same prompts);
``uniform`` does not drop an epoch's incomplete last batch (every prompt is used once per epoch).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

Strategy = Literal["uniform", "hard", "soft", "medium"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


def curriculum_weight(strategy: str, history: list[float]) -> float:
    """The original's weight of one prompt from its history of group mean rewards.

    >>> curriculum_weight("hard", []), curriculum_weight("hard", [0.25, 0.75]), curriculum_weight("soft", [1.0])
    (1.0, 0.5, 0.0)
    >>> curriculum_weight("medium", [0.0, 0.0]), curriculum_weight("medium", [0.5]), curriculum_weight("hard", [1.5])
    (0.0, 1.0, 0.0)
    """
    if strategy == "uniform" or not history:
        return 1.0
    m = sum(history) / len(history)
    if strategy == "hard":
        return max(0.0, 1.0 - m)
    if strategy == "soft":
        return 0.0 if m in (0.0, 1.0) else max(0.0, 1.0 - m)
    if strategy == "medium":
        return 0.0 if m in (0.0, 1.0) else 1.0
    raise ValueError(f"sample_strategy={strategy!r} is not valid; choose one of {', '.join(STRATEGIES)}")


class PromptSampler:
    """Draws prompt indices; its state (RNG, the epoch's order, position, histories) is saved in checkpoints.

    >>> s = PromptSampler(5, seed=0)
    >>> a = s.draw(3); b = s.draw(3)
    >>> sorted(a + b[:2]) == [0, 1, 2, 3, 4]     # one epoch covers every prompt once
    True
    >>> s = PromptSampler(3, seed=0, strategy="medium")
    >>> s.update([0, 1, 2], [1.0, 0.5, 0.0]); s.weights().tolist()   # always / sometimes / never solved
    [0.0, 1.0, 0.0]
    """

    def __init__(self, num_prompts: int, *, seed: int = 0, strategy: Strategy = "uniform"):
        if num_prompts < 1:
            raise ValueError("the dataset has no prompts")
        if strategy not in STRATEGIES:
            raise ValueError(f"sample_strategy={strategy!r} is not valid; choose one of {', '.join(STRATEGIES)}")
        self.num_prompts = num_prompts
        self.strategy = strategy
        self.generator = torch.Generator().manual_seed(seed)
        self.history: dict[int, list[float]] = {}
        self.epoch = -1
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0
        self._new_epoch()

    def weights(self) -> torch.Tensor:
        """Every prompt's weight from its history (:func:`curriculum_weight`)."""
        return torch.tensor([curriculum_weight(self.strategy, self.history.get(i, []))
                             for i in range(self.num_prompts)], dtype=torch.float64)

    def _new_epoch(self) -> None:
        self.epoch += 1
        self.position = 0
        if self.strategy == "uniform":
            self.order = torch.randperm(self.num_prompts, generator=self.generator)
            return
        w = self.weights()
        if float(w.sum()) <= 0:  # every prompt always or never solved: fall back to a uniform draw
            w = torch.ones_like(w)
        self.order = torch.multinomial(w, self.num_prompts, replacement=True, generator=self.generator)
        for i in set(self.order.tolist()):  # drawn prompts start a fresh history
            self.history.pop(i, None)

    def draw(self, n: int) -> list[int]:
        """``n`` prompt indices (global: every process gets the same list)."""
        if n < 1:
            raise ValueError(f"draw(n) needs n >= 1, got {n}")
        if self.strategy != "uniform":  # the original drops an epoch's incomplete last batch
            if self.position + n > self.num_prompts:
                self._new_epoch()
            if n > self.num_prompts:  # more prompts per step than the dataset has: one epoch per draw
                extra = torch.multinomial(torch.ones(self.num_prompts, dtype=torch.float64), n - self.num_prompts,
                                          replacement=True, generator=self.generator)
                out = torch.cat([self.order, extra]).tolist()
                self._new_epoch()
                return out
            out = self.order[self.position : self.position + n].tolist()
            self.position += n
            return out
        out: list[int] = []
        while len(out) < n:
            if self.position == self.num_prompts:
                self._new_epoch()
            take = min(n - len(out), self.num_prompts - self.position)
            out += self.order[self.position : self.position + take].tolist()
            self.position += take
        return out

    def update(self, indices: list[int], values: list[float]) -> None:
        """Record each drawn group's mean total reward in its prompt's history (NaN values are skipped)."""
        for i, value in zip(indices, values):
            if not math.isnan(value):
                self.history.setdefault(int(i), []).append(float(value))

    def state_dict(self) -> dict[str, object]:
        return {
            "generator": self.generator.get_state(),
            "history": {i: list(h) for i, h in self.history.items()},
            "order": self.order.clone(),
            "position": self.position,
            "epoch": self.epoch,
            "strategy": self.strategy,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.generator.set_state(state["generator"])  # type: ignore[arg-type]
        self.history = {int(i): list(h) for i, h in state.get("history", {}).items()}  # type: ignore[union-attr]
        self.order = state["order"].clone()  # type: ignore[union-attr]
        self.position = int(state["position"])  # type: ignore[arg-type]
        self.epoch = int(state["epoch"])  # type: ignore[arg-type]
