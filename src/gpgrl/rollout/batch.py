"""The one batch type of a training step: prompts, completions, rewards and per-row metadata.

Shapes: N rows (answers), P prompt tokens (left-padded), T completion tokens (right-padded). Rows are
ordered group by group: rows ``g*G .. g*G+G-1`` are the G answers to one prompt. Every stage of a step
fills in and reads the same object::

    engine.generate  -> ids, masks, texts, truncated, sampling log-probs, model inputs   (rows of a draw)
    score_batch      -> rewards [N], rewards_per_fn [N, F]                               (same object)
    select / cat     -> the groups kept by threshold resampling                          (one batch)
    the update       -> micro-batches: select(rows) + model_inputs_for(rows)

A row may be a multi-turn *episode* (:mod:`gpgrl.rollout.episodes`): its completion then holds, in the order
they came, the tokens the policy sampled in each turn and the tool or environment tokens between turns.
``completion_mask`` marks every token the model attends to (policy and environment alike); ``loss_mask``
marks the policy's own tokens, the only ones the loss, its token count, the entropy and the importance
metrics cover (:attr:`RolloutBatch.action_mask`). A single-turn answer is an episode of one turn, whose
``loss_mask`` is None: the same as its ``completion_mask``. ``episodes`` holds per row what happened in it
(turns, tool calls, errors by kind, how it ended; :class:`gpgrl.rollout.episodes.EpisodeInfo`).

``model_inputs`` holds extra model inputs *per row* (e.g. a vision model's ``pixel_values`` and
``image_grid_thw``), as a dict of tensors whose first dimension is the row's own (images, patches):
the G rows of one prompt share the same tensors (an image is processed once per prompt), and a
micro-batch's inputs are their concatenation along dimension 0, which is how image-text models take
several images in one batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch


@dataclass
class RolloutBatch:
    """N answers, group by group, padded for the model, with what the update and the logs need."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P] 1 on prompt tokens
    completion_ids: torch.Tensor  # [N, T] right-padded; pad after the first EOS
    completion_mask: torch.Tensor  # [N, T] 1 up to and including the first EOS
    truncated: torch.Tensor  # [N] bool: no EOS within the token budget
    texts: list[str]  # decoded completions (special tokens dropped)
    sampling_logprobs: torch.Tensor | None = None  # [N, T] float32, log-probs the engine sampled with
    rewards: torch.Tensor | None = None  # [N] float64 total reward; NaN = could not be computed
    rewards_per_fn: torch.Tensor | None = None  # [N, F] float64, one column per reward function
    prompt_index: torch.Tensor | None = None  # [N] long: the dataset record each row answers
    prompts: list[str] = field(default_factory=list)  # [N] prompt text, for logs and rewards
    records: list[dict[str, Any]] = field(default_factory=list)  # [N] dataset columns (shared per group)
    model_inputs: list[dict[str, torch.Tensor]] | None = None  # [N] extra model inputs (see module doc)
    loss_mask: torch.Tensor | None = None  # [N, T] 1 on the policy's own tokens; None = completion_mask
    episodes: list[Any] | None = None  # [N] EpisodeInfo of multi-turn rows (see module doc); None = single turn

    def __post_init__(self) -> None:
        n = self.completion_ids.shape[0]
        for name in ("prompt_ids", "prompt_mask", "completion_mask", "truncated", "sampling_logprobs", "rewards",
                     "rewards_per_fn", "prompt_index", "loss_mask"):
            value = getattr(self, name)
            if value is not None and value.shape[0] != n:
                raise ValueError(f"RolloutBatch.{name} has {value.shape[0]} rows, completion_ids has {n}")
        for name in ("texts", "prompts", "records", "model_inputs", "episodes"):
            value = getattr(self, name)
            if value and len(value) != n:
                raise ValueError(f"RolloutBatch.{name} has {len(value)} rows, completion_ids has {n}")

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    @property
    def action_mask(self) -> torch.Tensor:
        """[N, T] 1 on the tokens the policy wrote (what the loss and its metrics count): ``loss_mask`` in an
        episode with tool or environment tokens, else ``completion_mask``."""
        return self.completion_mask if self.loss_mask is None else self.loss_mask

    @property
    def lengths(self) -> torch.Tensor:
        """[N] completion tokens per row (up to and including the first EOS)."""
        return self.completion_mask.sum(dim=1)

    def num_groups(self, group_size: int) -> int:
        if len(self) % group_size:
            raise ValueError(f"{len(self)} rows are not whole groups of {group_size}")
        return len(self) // group_size

    def select(self, rows: Sequence[int] | torch.Tensor) -> RolloutBatch:
        """The given rows, in that order, with padding columns that no kept row uses dropped.

        >>> b = RolloutBatch(torch.tensor([[0, 5], [6, 7]]), torch.tensor([[0, 1], [1, 1]]),
        ...                  torch.tensor([[1, 0], [2, 3]]), torch.tensor([[1, 0], [1, 1]]),
        ...                  torch.tensor([False, True]), ["a", "bc"])
        >>> s = b.select([0]); s.prompt_ids.tolist(), s.completion_ids.tolist(), s.texts
        ([[5]], [[1]], ['a'])
        """
        idx = torch.as_tensor(rows, dtype=torch.long)
        pick = idx.tolist()
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                out[f.name] = value.index_select(0, idx.to(value.device))
            elif isinstance(value, list) and value:
                out[f.name] = [value[i] for i in pick]
            else:
                out[f.name] = value
        return RolloutBatch(**out).trim()

    def trim(self) -> RolloutBatch:
        """Drop left prompt columns and right completion columns that are padding in every row."""
        if len(self) == 0:
            return self
        used_p = self.prompt_mask.any(dim=0).nonzero()
        p0 = int(used_p[0]) if used_p.numel() else self.prompt_mask.shape[1]
        used_t = self.completion_mask.any(dim=0).nonzero()
        t1 = max(int(used_t[-1]) + 1 if used_t.numel() else 0, 1)  # keep one column: [N, 0] breaks models
        if p0 == 0 and t1 == self.completion_ids.shape[1]:
            return self
        changes: dict[str, Any] = {"prompt_ids": self.prompt_ids[:, p0:], "prompt_mask": self.prompt_mask[:, p0:],
                                   "completion_ids": self.completion_ids[:, :t1],
                                   "completion_mask": self.completion_mask[:, :t1]}
        for name in ("sampling_logprobs", "loss_mask"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)[:, :t1]
        return replace(self, **changes)

    @staticmethod
    def cat(batches: Sequence[RolloutBatch], pad_id: int) -> RolloutBatch:
        """Rows of several batches, one after the other (prompts re-padded left, completions right).

        >>> a = RolloutBatch(torch.tensor([[5]]), torch.tensor([[1]]), torch.tensor([[1]]), torch.tensor([[1]]),
        ...                  torch.tensor([False]), ["a"])
        >>> b = RolloutBatch(torch.tensor([[6, 7]]), torch.tensor([[1, 1]]), torch.tensor([[2, 3]]),
        ...                  torch.tensor([[1, 1]]), torch.tensor([True]), ["bc"])
        >>> c = RolloutBatch.cat([a, b], pad_id=0)
        >>> c.prompt_ids.tolist(), c.completion_ids.tolist(), c.completion_mask.tolist(), c.texts
        ([[0, 5], [6, 7]], [[1, 0], [2, 3]], [[1, 0], [1, 1]], ['a', 'bc'])
        """
        if not batches:
            raise ValueError("RolloutBatch.cat needs at least one batch")
        if len(batches) == 1:
            return batches[0]
        P = max(b.prompt_ids.shape[1] for b in batches)
        T = max(b.completion_ids.shape[1] for b in batches)

        def pad(t: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
            extra = width - t.shape[1]
            return torch.nn.functional.pad(t, (extra, 0) if left else (0, extra), value=value) if extra else t

        out: dict[str, Any] = {
            "prompt_ids": torch.cat([pad(b.prompt_ids, P, pad_id, True) for b in batches]),
            "prompt_mask": torch.cat([pad(b.prompt_mask, P, 0, True) for b in batches]),
            "completion_ids": torch.cat([pad(b.completion_ids, T, pad_id, False) for b in batches]),
            "completion_mask": torch.cat([pad(b.completion_mask, T, 0, False) for b in batches]),
            "truncated": torch.cat([b.truncated for b in batches]),
            "texts": [t for b in batches for t in b.texts],
        }
        optional = [b.sampling_logprobs for b in batches]
        out["sampling_logprobs"] = (torch.cat([pad(x, T, 0.0, False) for x in optional])  # type: ignore[arg-type]
                                    if all(x is not None for x in optional) else None)
        if any(b.loss_mask is not None for b in batches):  # a single-turn part: its loss mask is its completion's
            out["loss_mask"] = torch.cat([pad(b.action_mask, T, 0, False) for b in batches])
        for name in ("rewards", "rewards_per_fn", "prompt_index"):  # loss_mask is padded above
            parts = [getattr(b, name) for b in batches]
            out[name] = torch.cat(parts) if all(p is not None for p in parts) else None
        for name in ("prompts", "records", "episodes"):
            parts = [getattr(b, name) or [] for b in batches]
            whole = all(len(p) == len(b) for p, b in zip(parts, batches))
            out[name] = [x for p in parts for x in p] if whole else ([] if name != "episodes" else None)
        extra = [b.model_inputs for b in batches]
        out["model_inputs"] = [x for e in extra for x in e] if all(e is not None for e in extra) else None  # type: ignore[union-attr]
        return RolloutBatch(**out)

    def model_inputs_for(self, rows: Sequence[int] | slice | None = None) -> dict[str, torch.Tensor]:
        """The extra model inputs of ``rows`` (all by default), concatenated along dimension 0."""
        if not self.model_inputs:
            return {}
        chosen = self.model_inputs[rows] if isinstance(rows, slice) else (
            self.model_inputs if rows is None else [self.model_inputs[i] for i in rows])
        keys = chosen[0].keys()
        return {k: torch.cat([m[k] for m in chosen]) for k in keys}

    def to(self, device: torch.device | str) -> RolloutBatch:
        """Tensors moved to ``device`` (model inputs included); lists are shared, not copied."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                changes[f.name] = value.to(device)
        if self.model_inputs:
            moved: dict[int, dict[str, torch.Tensor]] = {}  # rows of a group share one dict: move it once
            for m in self.model_inputs:
                if id(m) not in moved:
                    moved[id(m)] = {k: v.to(device) for k, v in m.items()}
            changes["model_inputs"] = [moved[id(m)] for m in self.model_inputs]
        return replace(self, **changes)
