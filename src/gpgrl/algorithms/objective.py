"""The objective seam: one object per algorithm, which the trainer runs without knowing which one it is.

An :class:`Objective` declares what it needs from a step (:class:`Needs`: the policy's log-probs before the
update, the reference model's, per-token advantages, the importance correction for an engine's sampling
numerics), turns the step's grouped rewards into advantages (:meth:`Objective.advantages`) and a micro-batch
into its loss and metrics (:meth:`Objective.loss`). The trainer orders the phases -- collect, advantages,
the log-probs declared, micro-batched loss, optimizer step -- and names no algorithm.

Objectives are registered by name (:func:`register_objective`), like rewards; a preset
(:mod:`gpgrl.algorithms.presets`) selects one with its settings (``algorithm.objective``; by default the
objective registered under the preset's name, else ``gpg``). Your own, from a file outside the package::

    # my_objective.py                        recipe:  algorithm: {preset: gpg, objective: "my_objective.py:Half"}
    from gpgrl.algorithms.objective import register_objective
    from gpgrl.algorithms.objectives.gpg import PolicyGradient

    @register_objective("half")              # then also usable as algorithm: {objective: half}
    class Half(PolicyGradient):
        def loss(self, inputs):
            loss, metrics = super().loss(inputs)
            return loss / 2, metrics

>>> {"gpg", "grpo", "dr_grpo", "dapo"} <= set(OBJECTIVES)
True
>>> make_objective(get_preset("grpo")).needs
Needs(old_logprobs=False, ref_logprobs=True, token_advantages=False, importance=True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from gpgrl.algorithms.advantages import group_advantages
from gpgrl.algorithms.aggregation import AGGREGATIONS, masked_mean
from gpgrl.algorithms.importance import importance_weights
from gpgrl.algorithms.presets import AlgorithmConfig, get_preset
from gpgrl.algorithms.resampling import gathered_alpha

__all__ = ["OBJECTIVES", "AdvantageInputs", "LossInputs", "Needs", "Objective", "StepLogprobs", "get_objective",
           "make_objective", "register_objective"]


@dataclass(frozen=True)
class Needs:
    """What an objective needs the trainer to compute for a step, beyond the loss's own log-probs."""

    old_logprobs: bool = False  # the policy's log-probs before the update (no grad), e.g. num_iterations > 1
    ref_logprobs: bool = False  # the reference model's log-probs (a KL term; the run builds a reference model)
    token_advantages: bool = False  # advantages [N, T] per token rather than [N] per answer
    importance: bool = True  # correct for the engine's sampling numerics (rollout.importance_correction)


@dataclass
class StepLogprobs:
    """This process's no-grad log-probs of the step's answers, per micro-batch, as the objective declared."""

    old: list[torch.Tensor | None]  # [n, T] each, or None when not needed
    ref: list[torch.Tensor | None]
    mask: list[torch.Tensor]  # [n, T] completion masks


@dataclass
class AdvantageInputs:
    """What :meth:`Objective.advantages` gets: the global batch's rewards and this process's place in it."""

    rewards: torch.Tensor  # [B] every process's rewards, group by group (NaN: could not be computed)
    group_size: int  # G
    rows: slice  # this process's rows of the global batch
    prompts_per_step: int  # P
    valid_groups_counted: float  # threshold resampling's count of groups with a signal (resample_count)
    logprobs: Callable[[], StepLogprobs]  # the declared log-probs (computed on the first call, then kept)
    reduce_sum: Callable[[torch.Tensor], torch.Tensor]  # a sum over processes (identity with one)


@dataclass
class LossInputs:
    """One micro-batch, for :meth:`Objective.loss`; counts are the whole global batch's."""

    logp: torch.Tensor  # [n, T] the policy's log-probs (with grad)
    mask: torch.Tensor  # [n, T] 1 on completion tokens
    advantages: torch.Tensor  # [n] or [n, T], as :meth:`Objective.advantages` returned them
    num_tokens: int  # completion tokens in the global batch
    num_sequences: int  # answers in the global batch
    max_completion_length: int
    old_logp: torch.Tensor | None = None  # [n, T] when needs.old_logprobs
    ref_logp: torch.Tensor | None = None  # [n, T] when needs.ref_logprobs
    weights: torch.Tensor | None = None  # [n, T] importance weights, when the correction is on


class Objective:
    """An algorithm: its needs, its advantages and its loss, for the settings ``settings`` (a preset).

    Subclasses override :meth:`loss` (and, where they differ, :meth:`advantages`, :attr:`needs`); the
    defaults are GPG's: group advantages with AGE (``settings.scale``, ``settings.age``), the step skipped
    when no group carries a signal (``settings.skip_no_signal``), importance weights applied to the
    advantages. ``importance`` is the run's ``(mode, cap)`` (``rollout.importance()``).
    """

    name = "objective"
    kl_term = True  # False: the objective has no KL term, and a preset with beta > 0 is refused

    def __init__(self, settings: AlgorithmConfig, *, importance: tuple[str, float] = ("off", 2.0)):
        if not self.kl_term and settings.beta > 0:
            raise ValueError(f"{self.name} has no KL term (beta={settings.beta}); set algorithm.beta: 0")
        self.settings = settings
        self.importance_mode, self.importance_cap = importance
        if not self.needs.importance:
            self.importance_mode = "off"

    @property
    def needs(self) -> Needs:
        s = self.settings
        return Needs(old_logprobs=s.num_iterations > 1, ref_logprobs=s.beta > 0)

    # --------------------------------------------------------------------------------- advantages
    def advantages(self, inputs: AdvantageInputs) -> tuple[torch.Tensor, dict[str, float]]:
        """This process's advantages (``[n]``, or ``[n, T]`` with ``needs.token_advantages``) and the global
        batch's statistics, logged under ``adv/``: at least those of :func:`group_advantages` (``reward_mean``,
        ``reward_std``; ``no_signal`` decides :meth:`skip_step`), so start from them."""
        s, alpha = self.settings, None
        if s.resample_count == "gathered":
            alpha = gathered_alpha(int(inputs.valid_groups_counted), inputs.prompts_per_step)
        adv, stats = group_advantages(inputs.rewards.cpu(), inputs.group_size, scale=s.scale, age=s.age, alpha=alpha)
        return adv[inputs.rows], stats

    def skip_step(self, stats: dict[str, float]) -> bool:
        """Whether the step runs no update (the no-signal rule): no group carries a signal and
        ``skip_no_signal`` is set."""
        return bool(stats["no_signal"]) and self.settings.skip_no_signal

    def for_step(self, stats: dict[str, float]) -> Objective:
        """The objective of one step, given its statistics (default: itself)."""
        return self

    # --------------------------------------------------------------------------------- importance
    def importance_weights(self, proc_logp: torch.Tensor, sampling_logp: torch.Tensor,
                           mask: torch.Tensor) -> tuple[torch.Tensor | None, dict[str, float]]:
        """Importance weights (None when the correction is off: the statistics are measured anyway) of the
        trainer's log-probs of the engine's sampled distribution against the engine's own."""
        w, stats = importance_weights(proc_logp, sampling_logp, mask, mode=self.importance_mode,
                                      cap=self.importance_cap)
        return (None if self.importance_mode == "off" else w), stats

    # ---------------------------------------------------------------------------------------- loss
    def loss(self, inputs: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        """The micro-batch's share of the global batch's loss (the shares of every micro-batch and process add
        up to the loss), and its metrics, logged under ``loss/``: ``pg_loss`` (default: the loss) is summed like
        the loss; the others are averaged over the global batch's tokens, weighted by this piece's
        ``num_tokens`` (default: its completion tokens)."""
        raise NotImplementedError(f"{type(self).__name__} must define loss()")

    def weighted_advantages(self, inputs: LossInputs) -> torch.Tensor:
        """The advantages times the importance weights, where the correction is on ([n, T]), else as given."""
        if inputs.weights is None:
            return inputs.advantages
        a = inputs.advantages
        return (a.unsqueeze(1) if a.dim() == 1 else a) * inputs.weights

    # ------------------------------------------------------------------------ helpers for a ratio's loss
    def ratio_inputs(self, inputs: LossInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mask, old_logp, advantages)`` in the log-probs' dtype: the old log-probs ``logp.detach()`` when
        none were computed (on-policy: every ratio 1), the (weighted) advantages [n, 1] or [n, T]."""
        logp = inputs.logp
        old = logp.detach() if inputs.old_logp is None else inputs.old_logp
        adv = self.weighted_advantages(inputs).to(logp.dtype)
        return inputs.mask.to(logp.dtype), old, adv.unsqueeze(1) if adv.dim() == 1 else adv

    def aggregate(self, per_token: torch.Tensor, mask: torch.Tensor, inputs: LossInputs) -> torch.Tensor:
        """``per_token`` [n, T] reduced by the preset's ``loss_agg``, with the global batch's counts."""
        s = self.settings
        return AGGREGATIONS[s.loss_agg](per_token, mask, num_tokens=inputs.num_tokens,
                                        num_sequences=inputs.num_sequences,
                                        constant=s.loss_constant or inputs.max_completion_length)

    @staticmethod
    def ratio_metrics(loss: torch.Tensor, mask: torch.Tensor, ratio: torch.Tensor, low: torch.Tensor,
                      high: torch.Tensor) -> dict[str, float]:
        """The metrics of a ratio's loss: ``pg_loss``, ``clip_frac_low`` / ``clip_frac_high`` (the share of
        tokens where ``low`` / ``high``), ``ratio_mean``."""
        with torch.no_grad():
            return {"num_tokens": float(mask.sum()), "pg_loss": float(loss.detach()),
                    "clip_frac_low": float(masked_mean(low.to(mask.dtype), mask)),
                    "clip_frac_high": float(masked_mean(high.to(mask.dtype), mask)),
                    "ratio_mean": float(masked_mean(ratio.detach(), mask))}


ObjectiveClass = TypeVar("ObjectiveClass", bound=type)

#: The registered objectives by name (:func:`register_objective`).
OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str, objective: type[Objective] | None = None) -> Any:
    """Register ``objective`` (an :class:`Objective` subclass) as ``name``; as a decorator without it.

    Registering a name again replaces it (a module imported twice registers the same class again).
    """
    def add(cls: ObjectiveClass) -> ObjectiveClass:
        if not (isinstance(cls, type) and issubclass(cls, Objective)):
            raise TypeError(f"objective {name!r} must be a subclass of gpgrl.algorithms.objective.Objective, "
                            f"got {cls!r}")
        OBJECTIVES[name] = cls
        return cls
    return add if objective is None else add(objective)  # type: ignore[arg-type]


def objective_name(settings: AlgorithmConfig) -> str:
    """The objective ``settings`` select: ``objective``, else the one registered under the preset's name,
    else ``gpg``."""
    if settings.objective:
        return settings.objective
    return settings.name if settings.name in OBJECTIVES else "gpg"


def get_objective(name: str, loader: Callable[[str], Any] | None = None) -> type[Objective]:
    """The objective class registered as ``name``, or, for ``"module:Name"`` / ``"file.py:Name"``, the one
    ``loader`` loads (a class, or the name it was registered under)."""
    if ":" in name:
        if loader is None:
            raise ValueError(f"objective {name!r} is your own; it is loaded when a run is built (gpgrl train)")
        found = loader(name)
        if isinstance(found, str):
            return get_objective(found)
        if not (isinstance(found, type) and issubclass(found, Objective)):
            raise ValueError(f"objective {name!r} is {found!r}, not a subclass of "
                             "gpgrl.algorithms.objective.Objective; point at the class")
        return found
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; registered: {', '.join(sorted(OBJECTIVES))} "
                         "(or your own as 'file.py:Class' / 'module:Class')")
    return OBJECTIVES[name]


def make_objective(settings: AlgorithmConfig | str, *, importance: tuple[str, float] = ("off", 2.0),
                   loader: Callable[[str], Any] | None = None) -> Objective:
    """The objective ``settings`` (a preset or its name) select, built with them and the run's importance
    correction ``(mode, cap)``."""
    settings = get_preset(settings)
    return get_objective(objective_name(settings), loader)(settings, importance=importance)


def replace_settings(objective: Objective, **changes: object) -> Objective:
    """A copy of ``objective`` with some settings changed."""
    new = dataclasses.replace(objective.settings, **changes)  # type: ignore[arg-type]
    return type(objective)(new, importance=(objective.importance_mode, objective.importance_cap))
