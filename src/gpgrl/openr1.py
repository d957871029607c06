"""The original GPG code's recipes, unchanged: open-r1 / TRL ``GRPOConfig``-style flat YAML -> gpgrl config.

The GPG repository trains with open-r1 scripts (its ``open-r1/`` and ``open-rs/`` forks) whose recipes
are flat YAML files of TRL / open-r1 arguments (``model_name_or_path``, ``learning_rate``,
``num_generations``, ...). ``gpgrl train --config`` accepts such a file as it is: :func:`translate` maps
every key to its meaning here (:data:`MAPPING`, shown in ``docs/recipes.md``), applies the original's
defaults for the keys a recipe leaves out where they change the maths (TRL's and the fork's, e.g. reward
scaling by the group std is on unless ``scale_rewards: false``), warns once about keys that have no
meaning here (hub pushing, vLLM device placement, logging strategy), and refuses a near-miss of a known
key with the right spelling.

Batch arithmetic, as TRL counts it: ``per_device_train_batch_size`` answers per process and
accumulation step, so answers per optimizer step = per-device batch x processes x accumulation steps,
and ``train.prompts_per_step`` = that / ``num_generations``. The number of processes is read from
``WORLD_SIZE`` (set by ``accelerate launch`` / ``torchrun``) unless given. ``max_steps: -1`` with
``num_train_epochs`` becomes ``train.epochs`` (steps follow from the dataset's size once it is loaded).

Which algorithm: a flat recipe does not say (the original picks it by the script it is launched with,
``gpg.py`` or ``grpo.py``); it trains with ``algorithm.preset`` (``gpg`` unless the command line sets
``--preset``), with the recipe's keys (``beta``, ``scale_rewards``, ``adjust_gd``, ``min_inverse_alpha``)
and the original's defaults for those it leaves out.

>>> raw, report = translate({"model_name_or_path": "m", "dataset_name": "d", "num_generations": 8,
...                          "per_device_train_batch_size": 16, "gradient_accumulation_steps": 4,
...                          "learning_rate": 2e-6, "push_to_hub": False}, num_processes=8)
>>> raw["train"]["prompts_per_step"], raw["train"]["micro_batch_size"], raw["optim"]["lr"]   # 16*8*4/8
(64, 16, 2e-06)
>>> report.ignored
['push_to_hub']
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class TranslationError(ValueError):
    """A flat recipe that cannot be translated; the message names the key and the fix."""


@dataclass(frozen=True)
class Key:
    """How one original key maps: onto ``target`` (a dotted gpgrl key) through ``convert``, with a note."""

    target: str
    note: str = ""
    convert: Callable[[Any], Any] | None = None


def _scheduler(value: Any) -> str:
    allowed = ("constant", "constant_with_warmup", "cosine", "cosine_with_min_lr", "linear")
    if value not in allowed:
        raise TranslationError(f"lr_scheduler_type {value!r} is not supported here; use one of {', '.join(allowed)}")
    return value


def _report_to(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else list(value or [])
    sinks = [v for v in values if v in ("tensorboard", "wandb")]
    return ["jsonl", *sinks]  # metrics.jsonl is always written


#: Original key -> its meaning here.
MAPPING: dict[str, Key] = {
    "model_name_or_path": Key("model.name_or_path"),
    "torch_dtype": Key("model.dtype", "null means auto", lambda v: "auto" if v in (None, "auto") else v),
    "attn_implementation": Key("model.attn_implementation"),
    "trust_remote_code": Key("model.trust_remote_code"),
    "gradient_checkpointing": Key("model.gradient_checkpointing", "always non-reentrant here"),
    "dataset_name": Key("data.dataset"),
    "dataset_config": Key("data.subset", "'default' means none", lambda v: None if v in (None, "default") else v),
    "dataset_train_split": Key("data.split"),
    "system_prompt": Key("data.system_prompt", "the user turn is the `problem` column, as in open-r1"),
    "max_prompt_length": Key("data.max_prompt_length"),
    "num_generations": Key("rollout.group_size"),
    "max_completion_length": Key("rollout.max_completion_length"),
    "temperature": Key("rollout.temperature"),
    "top_p": Key("rollout.top_p"),
    "top_k": Key("rollout.top_k", "null means off", lambda v: 0 if v in (None, -1) else v),
    "use_vllm": Key("rollout.engine", "true -> vllm (colocated)", lambda v: "vllm" if v else "hf"),
    "vllm_gpu_memory_utilization": Key("rollout.vllm_gpu_memory_utilization"),
    "vllm_importance_sampling_cap": Key("rollout.importance_cap"),
    "beta": Key("algorithm.beta", "the KL coefficient; > 0 loads a reference model"),
    "scale_rewards": Key("algorithm.scale", "true -> group std, false -> none; 'batch' -> batch std",
                         lambda v: {True: "group", False: "none", "group": "group", "batch": "batch",
                                    "none": "none"}[v]),
    "adjust_gd": Key("algorithm.age", "the original's name for AGE (loss / inverse_alpha)"),
    "min_inverse_alpha": Key("algorithm.resample_threshold", "threshold resampling"),
    "num_iterations": Key("algorithm.num_iterations"),
    "epsilon": Key("algorithm.epsilon_low", "also epsilon_high unless that is given"),
    "epsilon_high": Key("algorithm.epsilon_high"),
    "learning_rate": Key("optim.lr"),
    "lr_scheduler_type": Key("optim.lr_scheduler", "", _scheduler),
    "warmup_ratio": Key("optim.warmup_ratio"),
    "warmup_steps": Key("optim.warmup_steps"),
    "weight_decay": Key("optim.weight_decay"),
    "max_grad_norm": Key("optim.max_grad_norm"),
    "adam_beta1": Key("optim.adam_beta1"),
    "adam_beta2": Key("optim.adam_beta2"),
    "adam_epsilon": Key("optim.adam_eps"),
    "seed": Key("train.seed"),
    "output_dir": Key("train.output_dir"),
    "overwrite_output_dir": Key("train.overwrite"),
    "save_total_limit": Key("train.save_total_limit", "null means keep 2", lambda v: 2 if v is None else v),
    "bf16": Key("train.mixed_precision", "true -> bf16", lambda v: "bf16" if v else "no"),
    "logging_steps": Key("log.log_every", "", lambda v: max(1, int(v))),
    "report_to": Key("log.report_to", "metrics.jsonl is always written", _report_to),
    "run_name": Key("log.run_name"),
}

#: Keys handled together (they need each other): batch sizes, steps, saving, rewards.
COMBINED = {
    "per_device_train_batch_size": "train.micro_batch_size; with gradient_accumulation_steps and the processes: "
                                   "train.prompts_per_step = per-device x processes x accumulation / num_generations",
    "gradient_accumulation_steps": "see per_device_train_batch_size",
    "max_steps": "train.steps (-1: train.epochs = num_train_epochs)",
    "num_train_epochs": "train.epochs when max_steps is -1 or absent",
    "save_strategy": "'steps' -> train.save_every = save_steps; 'no' / 'epoch' -> a checkpoint at the end",
    "save_steps": "train.save_every (with save_strategy: steps)",
    "reward_funcs": "rewards (open-r1's names; `format` is open-r1's strict format, see docs/recipes.md)",
    "reward_weights": "the rewards' weights",
    "lr_scheduler_kwargs": "min_lr_rate -> optim.min_lr_rate",
    "cosine_min_value_wrong": "cosine reward's min_value_wrong", "cosine_max_value_wrong": "cosine's max_value_wrong",
    "cosine_min_value_correct": "cosine's min_value_correct", "cosine_max_value_correct": "cosine's max_value_correct",
    "cosine_max_len": "cosine's max_len", "repetition_n_grams": "repetition_penalty's ngram_size",
    "repetition_max_penalty": "repetition_penalty's max_penalty",
    "weighted_sample": "true -> data.sample_strategy = sample_strategy", "sample_strategy": "see weighted_sample",
}

#: Keys with no meaning here: one warning lists those a recipe has.
IGNORED = {
    "model_revision", "hub_model_id", "hub_strategy", "push_to_hub", "hub_always_push", "logging_strategy",
    "logging_first_step", "log_level", "log_completions", "vllm_device", "vllm_enforce_eager",
    "vllm_max_model_len", "do_eval", "eval_strategy", "eval_steps", "per_device_eval_batch_size",
    "gradient_checkpointing_kwargs", "save_only_model", "dataset_num_proc", "preprocessing_num_workers",
    "remove_unused_columns", "use_liger", "use_liger_kernel", "optim", "ddp_timeout", "callbacks",
    "benchmarks", "wandb_entity", "wandb_project", "report_to_wandb", "code_language",
    "code_eval_test_batch_size", "scale_batch", "adjust_lr", "max_gen", "packing", "max_length",
    "sampling_params", "model_kwargs", "chat_template", "dataloader_num_workers", "bf16_full_eval",
}

#: The original's defaults (TRL GRPOConfig / TrainingArguments and the GPG fork's arguments) for keys
#: that change the maths, applied when a recipe leaves them out.
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-6, "lr_scheduler_type": "linear", "warmup_ratio": 0.0, "max_grad_norm": 1.0,
    "weight_decay": 0.0, "temperature": 0.9, "max_prompt_length": 512, "max_completion_length": 256,
    "num_generations": 8, "beta": 0.04, "scale_rewards": True, "adjust_gd": False, "min_inverse_alpha": 0.5,
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "num_train_epochs": 3.0,
    "max_steps": -1, "seed": 42, "bf16": False,
}

#: open-r1's reward names -> ours (the ones that differ in name only are absent).
REWARD_NAMES = {"accuracy_lv35": "accuracy"}
UNSUPPORTED_REWARDS = {"code", "code_format", "ioi_code"}

_KNOWN = set(MAPPING) | set(COMBINED) | IGNORED
# Keys that a native recipe may have too: open-r1's reward shorthand, and TRL's `optim` (the optimizer's
# name, a string) which shares its name with gpgrl's `optim:` section (a mapping).
_SHARED = ("reward_funcs", "reward_weights", "optim")


@dataclass
class Report:
    """What :func:`translate` did: ``mapped`` (original key -> "gpgrl.key = value"), ``defaults`` (the
    original's defaults it applied), ``ignored`` keys, ``notes``."""

    mapped: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"  {k:<32} -> {v}" for k, v in self.mapped.items()]
        if self.defaults:
            lines.append("  the original's defaults applied: " + ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()))
        if self.ignored:
            lines.append("  ignored (no meaning here): " + ", ".join(self.ignored))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def is_flat_recipe(raw: dict[str, Any]) -> bool:
    """Whether ``raw`` is an open-r1 / TRL style recipe: a top-level key of that style (``reward_funcs`` /
    ``reward_weights`` alone are also a native recipe's shorthand for ``rewards``)."""
    return any(k in _KNOWN and k not in _SHARED for k in raw)


def steps_for_epochs(num_records: int, prompts_per_step: int, epochs: float) -> int:
    """Optimizer steps for ``epochs`` passes over ``num_records`` prompts, ``prompts_per_step`` at a time.

    As TRL counts them: whole steps per epoch (an incomplete last batch is dropped, as the original's
    sampler does), times the epochs, rounded up; at least 1.

    >>> steps_for_epochs(8523, 128, 1), steps_for_epochs(8523, 128, 2.5), steps_for_epochs(10, 128, 1)
    (66, 165, 1)
    """
    if epochs <= 0:
        raise ValueError(f"train.epochs must be > 0, got {epochs}")
    per_epoch = max(1, num_records // prompts_per_step)
    return max(1, math.ceil(epochs * per_epoch))


def _set(out: dict[str, Any], dotted: str, value: Any) -> None:
    section, key = dotted.split(".", 1)
    out.setdefault(section, {})[key] = value


def translate(raw: dict[str, Any], *, num_processes: int | None = None,
              native_keys: tuple[str, ...] = ()) -> tuple[dict[str, Any], Report]:
    """A native gpgrl recipe dict from a flat one, and a report of what each key became.

    ``native_keys`` are the top-level keys of a native recipe: mixing them with flat keys is refused.
    """
    mixed = sorted(k for k in raw if k in native_keys and isinstance(raw[k], dict))
    if mixed:
        raise TranslationError(f"the recipe mixes open-r1 style keys with gpgrl sections ({', '.join(mixed)}); "
                               "write it in one style (docs/recipes.md shows both)")
    unknown = [k for k in raw if k not in _KNOWN]
    for key in unknown:
        hint = difflib.get_close_matches(key, sorted(_KNOWN), n=1, cutoff=0.8)
        if hint:
            raise TranslationError(f"unknown key {key!r} in an open-r1 style recipe; did you mean {hint[0]!r}?")
    report = Report(ignored=sorted(k for k in raw if k in IGNORED or k in unknown))
    values = dict(raw)
    for key, default in ORIGINAL_DEFAULTS.items():
        if key not in values:
            values[key] = default
            report.defaults[key] = default
    out: dict[str, Any] = {"data": {"prompt_column": "problem", "answer_column": "solution", "prompt": "plain"},
                           "algorithm": {}}
    report.notes.append("prompts: `problem` is the user turn and `solution` the gold answer, as in open-r1")
    for key, value in values.items():
        spec = MAPPING.get(key)
        if spec is None:
            continue
        converted = spec.convert(value) if spec.convert else value
        _set(out, spec.target, converted)
        report.mapped[key] = f"{spec.target} = {converted!r}"
    if "epsilon" in values and "epsilon_high" not in values:
        _set(out, "algorithm.epsilon_high", values["epsilon"])
    _batch(values, out, report, num_processes)
    _steps_and_saving(values, out, report)
    _rewards(values, out, report)
    kwargs = values.get("lr_scheduler_kwargs") or {}
    if "min_lr_rate" in kwargs:
        _set(out, "optim.min_lr_rate", kwargs["min_lr_rate"])
        report.mapped["lr_scheduler_kwargs"] = f"optim.min_lr_rate = {kwargs['min_lr_rate']!r}"
    if values.get("weighted_sample"):
        strategy = values.get("sample_strategy", "uniform")
        _set(out, "data.sample_strategy", strategy)
        report.mapped["weighted_sample"] = f"data.sample_strategy = {strategy!r}"
    return out, report


def _batch(values: dict[str, Any], out: dict[str, Any], report: Report, num_processes: int | None) -> None:
    world = num_processes or int(os.environ.get("WORLD_SIZE", "1"))
    per_device, accum = int(values["per_device_train_batch_size"]), int(values["gradient_accumulation_steps"])
    G = int(values["num_generations"])
    answers = per_device * world * accum
    if answers % G:
        raise TranslationError(
            f"per_device_train_batch_size {per_device} x {world} processes x gradient_accumulation_steps {accum} = "
            f"{answers} answers per step, not a multiple of num_generations {G}: no whole groups. Change one of them."
        )
    _set(out, "train.prompts_per_step", answers // G)
    _set(out, "train.micro_batch_size", per_device)
    report.mapped["per_device_train_batch_size"] = (
        f"train.micro_batch_size = {per_device}; train.prompts_per_step = {per_device} x {world} processes x "
        f"{accum} accumulation / {G} = {answers // G}")


def _steps_and_saving(values: dict[str, Any], out: dict[str, Any], report: Report) -> None:
    max_steps = int(values["max_steps"])
    if max_steps > 0:
        _set(out, "train.steps", max_steps)
        report.mapped["max_steps"] = f"train.steps = {max_steps}"
    else:
        _set(out, "train.epochs", float(values["num_train_epochs"]))
        report.mapped["num_train_epochs"] = f"train.epochs = {float(values['num_train_epochs'])!r} (steps from the dataset)"
    strategy = values.get("save_strategy", "steps")
    if strategy == "steps" and values.get("save_steps"):
        _set(out, "train.save_every", int(values["save_steps"]))
        report.mapped["save_steps"] = f"train.save_every = {int(values['save_steps'])}"
    elif strategy in ("no", "epoch") or "save_strategy" in values:
        _set(out, "train.save_every", 0)
        report.mapped["save_strategy"] = f"train.save_every = 0 (save_strategy {strategy!r}: a checkpoint at the end)"


def _rewards(values: dict[str, Any], out: dict[str, Any], report: Report) -> None:
    names = values.get("reward_funcs")
    if not names:
        return
    weights = values.get("reward_weights") or [1.0] * len(names)
    if len(weights) != len(names):
        raise TranslationError(f"reward_weights has {len(weights)} entries but reward_funcs has {len(names)}")
    bad = [n for n in names if n in UNSUPPORTED_REWARDS]
    if bad:
        raise TranslationError(f"reward(s) {', '.join(bad)} (code execution) are not available in gpgrl")
    params = {
        "cosine": {p: values[f"cosine_{p}"] for p in ("min_value_wrong", "max_value_wrong", "min_value_correct",
                                                        "max_value_correct", "max_len") if f"cosine_{p}" in values},
        "repetition_penalty": {k: values[o] for o, k in (("repetition_n_grams", "ngram_size"),
                                                         ("repetition_max_penalty", "max_penalty")) if o in values},
    }
    rewards = []
    for name, weight in zip(names, weights):
        ours = REWARD_NAMES.get(name, name)
        entry: dict[str, Any] = {"name": ours, "weight": float(weight)}
        if params.get(ours):
            entry["params"] = params[ours]
        rewards.append(entry)
    out["rewards"] = rewards
    report.mapped["reward_funcs"] = "rewards = " + ", ".join(
        f"{r['name']} x {r['weight']:g}" + (f" {r['params']}" if "params" in r else "") for r in rewards)
