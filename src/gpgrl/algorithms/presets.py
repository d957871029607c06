"""Algorithm presets: GPG, GRPO, Dr. GRPO and DAPO as explicit, printable settings.

One dataclass holds every setting that distinguishes the algorithms; a preset is just a named instance.
The trainer has no ``if algorithm == ...`` branches: it reads these fields.

>>> cfg = get_preset("gpg")
>>> cfg.scale, cfg.age, cfg.ratio, cfg.beta, cfg.loss_agg, cfg.resample_threshold
('none', True, False, 0.0, 'token_mean', 0.5)
>>> get_preset("grpo", beta=0.0).beta
0.0
>>> get_preset("ppo")
Traceback (most recent call last):
...
ValueError: unknown preset 'ppo'; valid presets: gpg, grpo, dr_grpo, dapo, cispo, gspo, reinforce_pp, rloo
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from gpgrl.algorithms.advantages import SCALES, Scale
from gpgrl.algorithms.aggregation import LOSS_AGGS, LossAgg

ResampleCount = Literal["kept", "gathered"]
RESAMPLE_COUNTS: tuple[str, ...] = get_args(ResampleCount)
#: The settings that name one of a fixed set of choices, with those choices (one list each, where the maths is).
CHOICES = {"scale": SCALES, "loss_agg": LOSS_AGGS, "resample_count": RESAMPLE_COUNTS}


@dataclass(frozen=True)
class AlgorithmConfig:
    """Every setting that tells GPG, GRPO, Dr. GRPO and DAPO apart (`gpgrl presets` lists the presets)."""

    name: str = field(default="custom", metadata={"help": "preset this config started from"})
    # -- advantages ---------------------------------------------------------------------------
    scale: Scale = field(
        default="none", metadata={"help": "advantage normaliser F_norm: none (GPG), group std (GRPO), batch std"}
    )
    age: bool = field(
        default=True, metadata={"help": "Accurate Gradient Estimation: scale by alpha = B / (B - M) (GPG eq. 9)"}
    )
    # -- loss -------------------------------------------------------------------------------------
    ratio: bool = field(
        default=False,
        metadata={"help": "use the PPO ratio and clipped surrogate (GRPO, DAPO); False = plain -A*logp (GPG)"},
    )
    epsilon_low: float = field(default=0.2, metadata={"help": "PPO clip: ratio >= 1 - epsilon_low"})
    epsilon_high: float = field(default=0.2, metadata={"help": "PPO clip: ratio <= 1 + epsilon_high (DAPO: 0.28)"})
    beta: float = field(default=0.0, metadata={"help": "coefficient of the k3 KL to a reference model (GRPO: 0.04)"})
    loss_agg: LossAgg = field(
        default="token_mean",
        metadata={
            "help": "token_mean: sum over all tokens / global token count (GPG, DAPO); "
            "seq_mean_token_mean: per-answer token mean, then batch mean (GRPO); "
            "seq_sum_constant: token sum / (num answers * loss_constant) (Dr. GRPO)"
        },
    )
    loss_constant: int | None = field(
        default=None,
        metadata={"help": "seq_sum_constant's constant; None = max_completion_length (Dr. GRPO's choice)"},
    )
    # -- sampling ---------------------------------------------------------------------------------
    resample_threshold: float = field(
        default=0.5,
        metadata={
            "help": "threshold resampling: draw more prompts until this fraction of groups carries a signal "
            "(the original's min_inverse_alpha; 0 = off, 1 = DAPO dynamic sampling)"
        },
    )
    max_resample_draws: int = field(
        default=20, metadata={"help": "most rollout draws per step; when spent, train on what there is"}
    )
    num_iterations: int = field(
        default=1, metadata={"help": "optimizer updates per rollout batch; > 1 needs ratio=True (off-policy)"}
    )
    resample_count: ResampleCount = field(
        default="kept",
        metadata={
            "help": "threshold resampling's count: kept = groups with a signal among those trained on, per "
            "process at most its share; gathered = every group with a signal drawn on any process, uncapped, "
            "with alpha = 1 / min(1, that / prompts_per_step) (the original open-r1 gpg_trainer's)"
        },
    )
    age_scales_kl: bool = field(
        default=False,
        metadata={"help": "with age and beta > 0, scale the KL term by alpha too (the original open-r1 gpg.py "
                  "divides its whole loss, KL included, by inverse_alpha); False: alpha scales the advantages only"},
    )
    skip_no_signal: bool = field(
        default=True,
        metadata={"help": "skip the optimizer step when no group carries a signal (advantages all 0); False: step "
                  "anyway, as the original's trainers do (TRL's; the vision forks' when 20 draws found no signal): "
                  "Adam's momentum still moves the weights, a KL term applies"},
    )
    tempered_logprobs: bool = field(
        default=True,
        metadata={"help": "loss log-probs of softmax(logits / temperature), the sampled distribution (TRL >= 0.16, "
                  "which the open-rs and open-r1 runs used); False: of softmax(logits) (TRL before 0.16)"},
    )
    objective: str | None = field(
        default=None,
        metadata={"help": "the registered objective computing advantages and loss (gpgrl presets); null = the "
                  "preset's own (else gpg); your own as 'file.py:Class' or 'module:Class'"},
    )

    def __post_init__(self) -> None:
        for name, valid in CHOICES.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(valid)}")
        if self.epsilon_low < 0 or self.epsilon_high < 0:
            raise ValueError("epsilon_low and epsilon_high must be >= 0")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0.0 <= self.resample_threshold <= 1.0:
            raise ValueError(f"resample_threshold must be in [0, 1], got {self.resample_threshold}")
        if self.max_resample_draws < 1:
            raise ValueError(f"max_resample_draws must be >= 1, got {self.max_resample_draws}")
        if self.loss_constant is not None and self.loss_constant < 1:
            raise ValueError(f"loss_constant must be a positive integer, got {self.loss_constant}")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.num_iterations > 1 and not self.ratio:
            # GPG's -A*logp is only an unbiased gradient on-policy. A second update on the same batch
            # samples from an older policy and needs the importance ratio (and clipping) to stay sane.
            raise ValueError(
                f"num_iterations={self.num_iterations} reuses each rollout batch off-policy, which needs the "
                "PPO ratio: set ratio=True (and epsilon_low/epsilon_high), or keep num_iterations=1"
            )

    def replace(self, **overrides: object) -> AlgorithmConfig:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown algorithm setting(s) {unknown}; valid: {valid}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


GPG = AlgorithmConfig(name="gpg")
GRPO = AlgorithmConfig(
    name="grpo", scale="group", age=False, ratio=True, epsilon_low=0.2, epsilon_high=0.2, beta=0.04,
    loss_agg="seq_mean_token_mean", resample_threshold=0.0,
)
DR_GRPO = AlgorithmConfig(
    name="dr_grpo", scale="none", age=False, ratio=True, epsilon_low=0.2, epsilon_high=0.2, beta=0.0,
    loss_agg="seq_sum_constant", resample_threshold=0.0,
)
DAPO = AlgorithmConfig(
    name="dapo", scale="group", age=False, ratio=True, epsilon_low=0.2, epsilon_high=0.28, beta=0.0,
    loss_agg="token_mean", resample_threshold=1.0,
)

PRESETS: dict[str, AlgorithmConfig] = {c.name: c for c in (GPG, GRPO, DR_GRPO, DAPO)}

#: One sentence per preset: the method, its paper, and what sets it apart (``gpgrl presets`` prints them).
DESCRIPTIONS: dict[str, str] = {
    "gpg": "GPG (Chu et al. 2025, arXiv 2504.02546): A = alpha (r - mean), plain -A*logp, token mean over the "
           "global batch, no KL, no ratio, no clip; threshold resampling at 0.5 (the original's min_inverse_alpha)",
    "grpo": "GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300): A = (r - mean) / (std + 1e-4), clipped "
            "surrogate with epsilon 0.2, k3 KL to a reference with beta 0.04, per-answer token mean then batch mean",
    "dr_grpo": "Dr. GRPO (Liu et al. 2025, arXiv 2503.20783): GRPO without the std normaliser and without the "
               "per-answer length normaliser (token sum / a constant), beta 0",
    "dapo": "DAPO (Yu et al. 2025, arXiv 2503.14476): clip-higher (0.2 / 0.28), token mean over the batch, no KL, "
            "dynamic sampling (draw until every group carries a signal, up to max_resample_draws)",
}


def register_preset(settings: AlgorithmConfig, description: str) -> AlgorithmConfig:
    """Add ``settings`` as the preset ``settings.name`` (``gpgrl presets`` lists it with ``description``)."""
    PRESETS[settings.name] = settings
    DESCRIPTIONS[settings.name] = description
    return settings


def changes_from_gpg(name: str) -> dict[str, object]:
    """The settings preset ``name`` changes relative to ``gpg``, with its values, computed from the presets.

    >>> changes_from_gpg("grpo")
    {'scale': 'group', 'age': False, 'ratio': True, 'beta': 0.04, 'loss_agg': 'seq_mean_token_mean', 'resample_threshold': 0.0}
    >>> changes_from_gpg("gpg")
    {}
    """
    preset, base = get_preset(name).to_dict(), GPG.to_dict()
    return {k: v for k, v in preset.items() if k != "name" and v != base[k]}


def get_preset(name: str | AlgorithmConfig, **overrides: object) -> AlgorithmConfig:
    """The preset called ``name`` (or ``name`` itself if it is a config), with ``overrides`` applied."""
    if isinstance(name, AlgorithmConfig):
        cfg = name
    else:
        key = re.sub(r"[\s.\-]+", "_", str(name).strip().lower())  # "Dr. GRPO", "dr-grpo" -> "dr_grpo"
        if key not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
        cfg = PRESETS[key]
    return cfg.replace(**overrides) if overrides else cfg
