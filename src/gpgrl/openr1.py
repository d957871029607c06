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

Which algorithm: a flat recipe does not say; the original picks it by the script it is launched with, and
their semantics differ (:data:`SCRIPTS`). The recipe names it with ``original_script: NAME`` (or the
command line with ``--original_script NAME``); the translation then sets every algorithm setting as that
script computes it. A recipe that does not name it is refused, unless it has keys that only open-r1's
``gpg.py`` accepts (``adjust_gd``, ``min_inverse_alpha``, ...). Supervised fine-tuning configs (no
``reward_funcs``, ``packing``, ...) are refused.

The same names typed on ``gpgrl train``'s command line with a gpgrl recipe (``--num_generations 8``) go
through the same tables one by one (:func:`translate_command_line`), without the original's defaults for
the names not given; a name whose meaning needs others is refused with the gpgrl flags to use.

>>> raw, report = translate({"model_name_or_path": "m", "dataset_name": "d", "num_generations": 8,
...                          "per_device_train_batch_size": 16, "gradient_accumulation_steps": 4,
...                          "learning_rate": 2e-6, "push_to_hub": False, "reward_funcs": ["accuracy"]},
...                         num_processes=8, script="openr1_grpo")
>>> raw["train"]["prompts_per_step"], raw["train"]["micro_batch_size"], raw["optim"]["lr"]   # 16*8*4/8
(64, 16, 2e-06)
>>> report.ignored
['push_to_hub']
>>> raw["algorithm"]["preset"], raw["algorithm"]["beta"], raw["rollout"]["top_k"]   # TRL's defaults
('grpo', 0.04, 50)
"""

from __future__ import annotations

import difflib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from gpgrl.algorithms.advantages import SCALES
from gpgrl.config import LR_SCHEDULERS, REPORT_SINKS, ConfigError, reward_shorthand


class TranslationError(ValueError):
    """A flat recipe that cannot be translated; the message names the key and the fix."""


@dataclass(frozen=True)
class Key:
    """How one original key maps: onto ``target`` (a dotted gpgrl key) through ``convert``, with a note."""

    target: str
    note: str = ""
    convert: Callable[[Any], Any] | None = None


def _scheduler(value: Any) -> str:
    if value not in LR_SCHEDULERS:
        raise TranslationError(f"lr_scheduler_type {value!r} is not supported here; use one of {', '.join(LR_SCHEDULERS)}")
    return value


def _report_to(value: Any) -> list[str]:
    values = [value] if isinstance(value, str) else list(value or [])
    sinks = [v for v in values if v in REPORT_SINKS and v != "jsonl"]
    return ["jsonl", *sinks]  # metrics.jsonl is always written


#: Original key -> its meaning here.
MAPPING: dict[str, Key] = {
    "model_name_or_path": Key("model.name_or_path"),
    "torch_dtype": Key("model.dtype", "null means auto", lambda v: "auto" if v in (None, "auto") else v),
    "attn_implementation": Key("model.attn_implementation"),
    "trust_remote_code": Key("model.trust_remote_code"),
    "gradient_checkpointing": Key("model.gradient_checkpointing", "always non-reentrant here"),
    "dataset_name": Key("data.dataset"),
    "dataset_config": Key("data.subset", "'default' means none; see the simpleRL data below",
                          lambda v: None if v in (None, "default") else v),
    "dataset_train_split": Key("data.split"),
    "system_prompt": Key("data.system_prompt", "the user turn is the `problem` column, as in open-r1"),
    "max_prompt_length": Key("data.max_prompt_length"),
    "num_generations": Key("rollout.group_size"),
    "max_completion_length": Key("rollout.max_completion_length"),
    "temperature": Key("rollout.temperature"),
    "top_p": Key("rollout.top_p"),
    "top_k": Key("rollout.top_k", "null / -1 mean off; default 50 (TRL's, and transformers' generate's)",
                 lambda v: 0 if v in (None, -1) else v),
    "use_vllm": Key("rollout.engine", "true -> vllm (colocated)", lambda v: "vllm" if v else "hf"),
    "vllm_gpu_memory_utilization": Key("rollout.vllm_gpu_memory_utilization"),
    "vllm_importance_sampling_cap": Key("rollout.importance_cap"),
    "vllm_max_model_len": Key("rollout.vllm_max_model_len", "vllm: the engine's context (prompt + answer)"),
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
    "overwrite_output_dir": Key("train.overwrite", "on the command line only; a recipe file's is ignored with "
                                "a warning (the original's scripts never read it: they resume from the last "
                                "checkpoint)"),
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
    "vllm_importance_sampling_correction": "newer TRL than the original's: false -> rollout.importance_correction: "
                                           "off (the cap dropped); true -> the mode below",
    "vllm_importance_sampling_mode": "rollout.importance_correction (the same mode names); with the correction on and "
                                     "no mode or cap given, TRL's defaults: sequence_mask, cap 3",
    "cosine_min_value_wrong": "cosine reward's min_value_wrong", "cosine_max_value_wrong": "cosine's max_value_wrong",
    "cosine_min_value_correct": "cosine's min_value_correct", "cosine_max_value_correct": "cosine's max_value_correct",
    "cosine_max_len": "cosine's max_len", "repetition_n_grams": "repetition_penalty's ngram_size",
    "repetition_max_penalty": "repetition_penalty's max_penalty",
    "weighted_sample": "true -> data.sample_strategy = sample_strategy (open-r1 gpg.py only)",
    "sample_strategy": "see weighted_sample",
    "original_script": "which of the original's scripts ran the recipe: sets the algorithm (see SCRIPTS)",
}

# scale_rewards: TRL's booleans, or (later TRL) the scale's own name
_SCALE = {True: "group", False: "none", **{name: name for name in SCALES}}


def _scale(value: Any) -> str:
    if not isinstance(value, (bool, str)) or value not in _SCALE:
        raise TranslationError(f"scale_rewards {value!r} is not one of true, false, {', '.join(SCALES)}")
    return _SCALE[value]


#: The algorithm's keys, each naming one setting. Which of them a script's loss uses, and the settings a
#: flat recipe leaves out, are the script's (:func:`_algorithm`, which converts each value through its Key).
ALGORITHM_KEYS: dict[str, Key] = {
    "beta": Key("algorithm.beta", "the KL coefficient", float),
    "scale_rewards": Key("algorithm.scale", "true -> group std, false -> none", _scale),
    "epsilon": Key("algorithm.epsilon_low", "and epsilon_high unless that is given", float),
    "epsilon_high": Key("algorithm.epsilon_high", "", float),
    "num_iterations": Key("algorithm.num_iterations", "", int),
    "adjust_gd": Key("algorithm.age", "AGE: open-r1 gpg.py divides its loss by inverse_alpha", bool),
    "min_inverse_alpha": Key("algorithm.resample_threshold", "threshold resampling", float),
}

#: Keys with no meaning here: one warning lists those a recipe has.
IGNORED = {
    "model_revision", "hub_model_id", "hub_strategy", "push_to_hub", "hub_always_push", "logging_strategy",
    "logging_first_step", "log_level", "log_completions", "vllm_device", "vllm_enforce_eager",
    "do_eval", "eval_strategy", "eval_steps", "per_device_eval_batch_size",
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
    "weight_decay": 0.0, "temperature": 0.9, "top_k": 50, "max_prompt_length": 512, "max_completion_length": 256,
    "num_generations": 8, "beta": 0.04, "scale_rewards": True,
    "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "num_train_epochs": 3.0,
    "max_steps": -1, "seed": 42, "bf16": False,
}
#: open-r1 gpg.py's own arguments (its GPGConfig) and their defaults; the other scripts reject these keys.
GPG_CONFIG_DEFAULTS: dict[str, Any] = {"adjust_gd": False, "min_inverse_alpha": 0.5, "weighted_sample": False,
                                       "sample_strategy": "uniform", "scale_batch": False, "adjust_lr": False}
#: Both forks' default reward_funcs (their GRPOScriptArguments), for a recipe that names none.
DEFAULT_REWARDS = ["accuracy", "format", "tag_count"]


#: The TRL each fork ran. open-rs's setup.py pins TRL at commit 69ad852 (2025-02-25), but its
#: ``open_r1/trainer/__init__.py`` imports ``gpg_std_trainer``, which imports ``profiling_context`` (TRL
#: commit ac327d5, 2025-02-27) and reads ``vllm_client``, ``top_k``, ``temperature`` and
#: ``_total_train_tokens`` of TRL's GRPOTrainer: attributes 69ad852 does not have and TRL 0.16.0
#: (2025-03-22) does. The first release with ``profiling_context``, 0.16.0, also divides the logits by the
#: sampling temperature before the log-softmax (commit 04f6597, 2025-03-12): so open-rs ran as open-r1 did,
#: on TRL >= 0.16 (docs/recipes.md, "Which TRL the open-rs runs used").
TRL_OF_FORK = {"open-rs": "TRL >= 0.16 (setup.py pins 69ad852, which cannot import its trainers)",
               "open-r1": "TRL 0.16.0"}


@dataclass(frozen=True)
class Script:
    """One of the original's entry scripts that reads a flat recipe, and what its training computes."""

    path: str
    preset: str              # gpg: -A * logp, token mean over the micro-batch; grpo: TRL's GRPO loss
    fork: str                # open-rs or open-r1 (:data:`TRL_OF_FORK`: both ran on TRL >= 0.16)
    kl_in_loss: bool         # whether beta's KL term is in the loss (else only logged)
    gpg_config: bool         # accepts GPGConfig's keys: adjust_gd, min_inverse_alpha (resampling), ...
    tempered_logprobs: bool  # whether the loss's log-probs divide the logits by the temperature
    what: str


#: The original's scripts a flat recipe can be written for (``original_script``), by name. Every one
#: trains on TRL >= 0.16's GRPOTrainer: log-probs of softmax(logits / temperature) (its
#: ``_get_per_token_logps``, which the GPG trainers inherit), and the loss's token mean
#: ``(per_token_loss * mask).sum() / mask.sum()`` over the micro-batch, GRPO's included.
SCRIPTS: dict[str, Script] = {
    "openrs_gpg": Script(
        "open-rs/src/open_r1/gpg.py", "gpg", "open-rs", False, False, True,
        "GPGTrainer: -A*logp, A = (r - mean) / (std + 1e-4) unless scale_rewards: false; no KL in the loss "
        "(beta only loads a reference model), no AGE, no resampling; token mean; tempered log-probs (TRL 0.16)"),
    "openrs_gpg_std": Script(
        "open-rs/src/open_r1/gpg_std.py", "gpg", "open-rs", True, False, True,
        "GPGSTDTrainer: openrs_gpg plus beta x KL in the loss"),
    "openrs_grpo": Script(
        "open-rs/src/open_r1/grpo.py", "grpo", "open-rs", True, False, True,
        "TRL 0.16's GRPOTrainer: ratio, clip, beta x KL, token mean over the micro-batch; tempered log-probs"),
    "openr1_gpg": Script(
        "open-r1/src/open_r1/gpg.py", "gpg", "open-r1", True, True, True,
        "GPGTrainer: -A*logp + beta x KL, divided by inverse_alpha with adjust_gd; threshold resampling "
        "(min_inverse_alpha) counting every valid group gathered over the processes"),
    "openr1_grpo": Script(
        "open-r1/src/open_r1/grpo.py", "grpo", "open-r1", True, False, True,
        "TRL 0.16's GRPOTrainer: ratio, clip, beta x KL, token mean over the micro-batch; tempered log-probs"),
}

#: Keys only supervised fine-tuning configs (TRL SFTConfig, open-r1 sft.py) have.
SFT_KEYS = {"packing", "max_seq_length", "max_length", "dataset_text_field", "dataset_configs"}
#: Keys only an RL (GRPO / GPG) config has.
RL_KEYS = {"reward_funcs", "num_generations", "max_completion_length", "beta", "scale_rewards", "use_vllm",
           "temperature", "epsilon", "num_iterations", *GPG_CONFIG_DEFAULTS}
#: Script arguments that are booleans, parsed from the command line as HfArgumentParser does.
BOOL_KEYS = {"adjust_gd", "weighted_sample", "scale_rewards", "scale_batch", "adjust_lr", "bf16", "use_vllm",
             "gradient_checkpointing", "overwrite_output_dir", "push_to_hub", "do_eval", "log_completions",
             "trust_remote_code", "logging_first_step", "save_only_model", "remove_unused_columns", "packing",
             "use_liger", "use_liger_kernel", "bf16_full_eval", "vllm_enforce_eager", "hub_always_push",
             "vllm_importance_sampling_correction"}
#: Script arguments that are lists (``nargs="+"`` in the original's parser): given with commas here.
LIST_KEYS = {"reward_funcs", "reward_weights", "report_to", "benchmarks", "callbacks"}
_TRUE, _FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def script_name(value: str) -> str:
    """The :data:`SCRIPTS` name of ``value``, which may also be the script's path.

    >>> script_name("open-rs/src/open_r1/gpg_std.py"), script_name("open-r1/gpg.py"), script_name("openr1_grpo")
    ('openrs_gpg_std', 'openr1_gpg', 'openr1_grpo')
    """
    key = str(value).strip().lower().replace("src/open_r1/", "").removesuffix(".py")
    key = key.replace("open-rs", "openrs").replace("open-r1", "openr1").replace("/", "_").replace("-", "_")
    if key not in SCRIPTS:
        raise TranslationError(f"unknown original_script {value!r}; valid: " + ", ".join(
            f"{n} ({sc.path})" for n, sc in SCRIPTS.items()))
    return key


def parse_cli_value(key: str, value: str) -> Any:
    """A command-line value for a flat key, parsed as the original's HfArgumentParser does: booleans from
    yes/no/true/false/1/0 (a bare ``--adjust_gd`` is true), numbers as numbers, the rest as strings.

    >>> parse_cli_value("scale_rewards", "False"), parse_cli_value("adjust_gd", "true"), parse_cli_value("min_inverse_alpha", "0.5")
    (False, True, 0.5)
    >>> parse_cli_value("save_strategy", "epoch"), parse_cli_value("num_train_epochs", "5")
    ('epoch', 5)
    >>> parse_cli_value("reward_funcs", "accuracy,format"), parse_cli_value("reward_weights", "1.0, 2")
    (['accuracy', 'format'], [1.0, 2])
    """
    if key == "scale_rewards" and value in SCALES:  # later TRL names the scale
        return value
    if key in BOOL_KEYS:
        if value.lower() in _TRUE or value.lower() in _FALSE:
            return value.lower() in _TRUE
        raise TranslationError(f"--{key} takes a boolean (true/false, yes/no, 1/0), got {value!r}")
    if key in LIST_KEYS:  # the original's `--reward_funcs a b` is `--reward_funcs a,b` here
        return [parse_cli_value("", v.strip()) for v in value.split(",") if v.strip()]
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (int, float, list)) and not isinstance(parsed, bool) else value


def split_overrides(overrides: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Command-line overrides of a flat recipe: ``(the original's keys, parsed; gpgrl's dotted keys)``.

    Keys the original's argument parser knows (``--scale_rewards False --adjust_gd --output_dir D``, as in
    its ``train.sh``) set the flat recipe's keys before translation; ``--section.key`` keys set gpgrl's
    after it. ``--preset`` is refused: a flat recipe's algorithm is its script's.

    >>> split_overrides({"scale_rewards": "False", "adjust_gd": "true", "train.steps": "3"})
    ({'scale_rewards': False, 'adjust_gd': True}, {'train.steps': '3'})
    """
    flat, ours = {}, {}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name in ("preset", "algorithm.preset"):
            raise TranslationError("--preset does not apply to an open-r1 style recipe: its algorithm is that of the "
                                   "original script it was written for; pass --original_script NAME (one of "
                                   f"{', '.join(SCRIPTS)}), or change one setting with --algorithm.KEY VALUE")
        if name in _KNOWN:
            flat[name] = parse_cli_value(name, value) if isinstance(value, str) else value
        else:
            ours[key] = value
    return flat, ours

#: open-r1's reward names -> ours (the ones that differ in name only are absent).
REWARD_NAMES = {"accuracy_lv35": "accuracy"}
#: open-rs registers another function as ``format``: one ``\n</think>\n`` (``think_close`` here).
OPEN_RS_REWARD_NAMES = {"format": "think_close"}
UNSUPPORTED_REWARDS = {"code", "code_format", "ioi_code"}
#: Rewards that grade the answer: translated with the original's answer check (``semantics``: math-verify
#: 0.5.2's rules, see gpgrl.rewards.math_verify_compat); ``accuracy_lv35`` reads the gold as ``$\\boxed{gold}$``.
ANSWER_GRADED = ("accuracy", "cosine", "length")
ORIGINAL_SEMANTICS = "math_verify_0.5.2"

_KNOWN = set(MAPPING) | set(ALGORITHM_KEYS) | set(COMBINED) | IGNORED
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


def _set(out: dict[str, Any], dotted: str, value: Any) -> None:
    section, key = dotted.split(".", 1)
    out.setdefault(section, {})[key] = value


def translate(raw: dict[str, Any], *, num_processes: int | None = None, native_keys: tuple[str, ...] = (),
              script: str | None = None) -> tuple[dict[str, Any], Report]:
    """A native gpgrl recipe dict from a flat one, and a report of what each key became.

    ``script`` names the original script the recipe was written for (:data:`SCRIPTS`); without it the
    recipe's ``original_script`` key does. ``native_keys`` are the top-level keys of a native recipe:
    mixing them with flat keys is refused.
    """
    mixed = sorted(k for k in raw if k in native_keys and isinstance(raw[k], dict))
    if mixed:
        raise TranslationError(f"the recipe mixes open-r1 style keys with gpgrl sections ({', '.join(mixed)}); "
                               "write it in one style (docs/recipes.md shows both)")
    _refuse_sft(raw)
    unknown = [k for k in raw if k not in _KNOWN]
    for key in unknown:
        hint = difflib.get_close_matches(key, sorted(_KNOWN), n=1, cutoff=0.8)
        if hint:
            raise TranslationError(f"unknown key {key!r} in an open-r1 style recipe; did you mean {hint[0]!r}?")
    report = Report(ignored=sorted(k for k in raw if k in IGNORED or k in unknown))
    name = _resolve_script(raw, script, report)
    spec = SCRIPTS[name]
    values = dict(raw)
    values.pop("original_script", None)
    defaults = {**ORIGINAL_DEFAULTS, **(GPG_CONFIG_DEFAULTS if spec.gpg_config else {})}
    for key, default in defaults.items():
        if key not in values:
            values[key] = default
            report.defaults[key] = default
    out: dict[str, Any] = {"data": {"prompt_column": "problem", "answer_column": "solution", "prompt": "plain"},
                           "algorithm": {}}
    report.notes.append("prompts: `problem` is the user turn and `solution` the gold answer, as in open-r1")
    for key, value in values.items():
        mapping = MAPPING.get(key)
        if mapping is None:
            continue
        converted = mapping.convert(value) if mapping.convert else value
        _set(out, mapping.target, converted)
        report.mapped[key] = f"{mapping.target} = {converted!r}"
    out["algorithm"] = _algorithm(values, name, report)
    _simplelr_data(values, spec, out, report)
    _batch(values, out, report, num_processes)
    _steps(values, out, report)
    _saving(values, out, report)
    _rewards(values, spec, out, report)
    _importance(values, out, report)
    kwargs = values.get("lr_scheduler_kwargs") or {}
    if "min_lr_rate" in kwargs:
        _set(out, "optim.min_lr_rate", kwargs["min_lr_rate"])
        report.mapped["lr_scheduler_kwargs"] = f"optim.min_lr_rate = {kwargs['min_lr_rate']!r}"
    if values.get("weighted_sample"):
        strategy = values.get("sample_strategy", "uniform")
        _set(out, "data.sample_strategy", strategy)
        report.mapped["weighted_sample"] = f"data.sample_strategy = {strategy!r}"
    return out, report


def _refuse_sft(raw: dict[str, Any]) -> None:
    """Refuse a supervised fine-tuning config: it has no reward_funcs, and SFT-only keys or no RL key."""
    if "reward_funcs" in raw:
        return
    sft = sorted(k for k in raw if k in SFT_KEYS)
    if sft:
        raise TranslationError(f"this is a supervised fine-tuning (SFT) config of the original (it has "
                               f"{', '.join(sft)} and no reward_funcs): the original trains it with sft.py, not "
                               "GRPO / GPG; gpgrl trains with RL only")
    if not any(k in RL_KEYS for k in raw):
        raise TranslationError("this is not a GRPO / GPG config of the original (it has no reward_funcs and no RL "
                               "setting: a supervised fine-tuning or data config?); gpgrl trains with RL only")


def _resolve_script(raw: dict[str, Any], script: str | None, report: Report) -> str:
    """The script's name: given, or the recipe's original_script, or open-r1 gpg.py when only it fits."""
    given = script or raw.get("original_script")
    gpg_only = sorted(k for k in raw if k in GPG_CONFIG_DEFAULTS)
    if given:
        name = script_name(given)
        if gpg_only and not SCRIPTS[name].gpg_config:
            raise TranslationError(f"{', '.join(gpg_only)}: only open-r1's gpg.py accepts these keys; "
                                   f"{SCRIPTS[name].path}'s argument parser rejects them")
        report.notes.append(f"original script: {SCRIPTS[name].path} on {TRL_OF_FORK[SCRIPTS[name].fork]}: "
                            f"{SCRIPTS[name].what}")
        return name
    if gpg_only:
        report.notes.append(f"original script: {SCRIPTS['openr1_gpg'].path} (the only one that accepts "
                            f"{', '.join(gpg_only)}) on {TRL_OF_FORK['open-r1']}: {SCRIPTS['openr1_gpg'].what}")
        return "openr1_gpg"
    choices = "\n".join(f"  {n:<15} {sc.path}: {sc.what}" for n, sc in SCRIPTS.items())
    raise TranslationError("which of the original's scripts ran this recipe? Their training differs (KL in the loss, "
                           "resampling, log-probs). Add `original_script: NAME` to the recipe or pass "
                           f"--original_script NAME, NAME one of:\n{choices}")


def _algorithm(values: dict[str, Any], name: str, report: Report) -> dict[str, Any]:
    """Every algorithm setting as the script computes it (explicit, so no preset default leaks in)."""
    spec = SCRIPTS[name]

    def setting(key: str, default: Any = None) -> Any:
        convert = ALGORITHM_KEYS[key].convert
        return convert(values.get(key, default))  # type: ignore[misc]

    scale, beta = setting("scale_rewards"), setting("beta")
    # every script calls the optimizer on a step whose groups carry no signal
    algo: dict[str, Any] = {"preset": spec.preset, "scale": scale, "tempered_logprobs": spec.tempered_logprobs,
                            "skip_no_signal": False}
    if spec.preset == "gpg":
        algo.update(ratio=False, loss_agg="token_mean", beta=beta if spec.kl_in_loss else 0.0,
                    age=setting("adjust_gd", False), age_scales_kl=spec.gpg_config,
                    resample_threshold=setting("min_inverse_alpha", 0.0) if spec.gpg_config else 0.0,
                    resample_count="gathered" if spec.gpg_config else "kept")
        if not spec.kl_in_loss and beta:
            report.notes.append(f"beta {beta:g}: {spec.path} loads a reference model and logs the KL but leaves it "
                                "out of the loss: algorithm.beta = 0")
        if setting("num_iterations", 1) != 1:
            raise TranslationError(f"num_iterations {values['num_iterations']}: {spec.path}'s loss has no ratio; "
                                   "use a GRPO script for several updates per batch")
    else:  # TRL's GRPO loss: (per_token_loss * mask).sum() / mask.sum(), a token mean, not the GRPO paper's
        eps = setting("epsilon", 0.2)
        algo.update(beta=beta, epsilon_low=eps, epsilon_high=setting("epsilon_high", eps),
                    num_iterations=setting("num_iterations", 1), loss_agg="token_mean")
    report.mapped["original_script"] = "algorithm = " + ", ".join(f"{k}={v!r}" for k, v in algo.items())
    return algo


def _simplelr_data(values: dict[str, Any], spec: Script, out: dict[str, Any], report: Report) -> None:
    """open-r1's simpleRL-Zoo data: a dataset_name containing ``simplelr_qwen_level3to5`` is read from its
    ``train.parquet`` (dataset_config is not used), the prompt is the parquet's pre-templated
    ``prompt[0].content`` without system_prompt, and the gold is its ``target`` column. ``gpg.py`` uses the
    prompt as it is; ``grpo.py`` makes it a user turn, so the chat template wraps it once more."""
    name = str(values.get("dataset_name", ""))
    config = values.get("dataset_config")
    if spec.fork == "open-r1" and "simplelr_qwen_level3to5" in name:
        data = out["data"]
        chat = spec.preset == "grpo"
        data.update(dataset=posixpath.join(name, "train.parquet"), subset=None, prompt_column="prompt.0.content",
                    answer_column="target", system_prompt="", chat_template=chat)
        how = "in the chat template as a user turn (grpo.py)" if chat else "as it is, no chat template (gpg.py)"
        report.mapped["dataset_name"] = (f"data.dataset = {data['dataset']!r}, prompt_column 'prompt.0.content' "
                                         f"(pre-templated; {how}; no system prompt), answer_column 'target'")
        report.notes.append("simpleRL data: the original drops prompts longer than max_prompt_length tokens; gpgrl "
                            "keeps their end (counted in rollout/prompts_truncated)")
    elif isinstance(config, str) and config.endswith((".parquet", ".json", ".jsonl")):
        raise TranslationError(f"dataset_config {config!r} is a file name, not a dataset configuration; the original "
                               "reads it only for a simplelr_qwen_level3to5 folder with open-r1's scripts")


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


def _importance(values: dict[str, Any], out: dict[str, Any], report: Report) -> None:
    """TRL's vLLM importance-sampling keys -> ``rollout.importance_correction`` (the same mode names) and
    TRL's defaults where the recipe turns the correction on without them (``sequence_mask``, cap 3). The
    original's TRL 0.16 has none of these keys; without them gpgrl's default applies (docs/engines.md)."""
    from gpgrl.algorithms.importance import CORRECTIONS

    modes = [m for m in CORRECTIONS if m not in ("auto", "off")]

    on = values.get("vllm_importance_sampling_correction")
    mode = values.get("vllm_importance_sampling_mode")
    if on is None and mode is None:
        return
    if on is False:
        _set(out, "rollout.importance_correction", "off")
        out.get("rollout", {}).pop("importance_cap", None)  # no cap without a correction
        report.mapped["vllm_importance_sampling_correction"] = "rollout.importance_correction = 'off'"
        return
    mode = mode or "sequence_mask"  # TRL's default mode
    if mode not in modes:
        raise TranslationError(f"vllm_importance_sampling_mode {mode!r} is not one of {', '.join(modes)}")
    _set(out, "rollout.importance_correction", mode)
    if "vllm_importance_sampling_cap" not in values:
        _set(out, "rollout.importance_cap", 3.0)  # TRL's default cap
    report.mapped["vllm_importance_sampling_mode"] = f"rollout.importance_correction = {mode!r}"


def _steps(values: dict[str, Any], out: dict[str, Any], report: Report) -> None:
    """``max_steps`` > 0 -> ``train.steps``, else ``num_train_epochs`` -> ``train.epochs`` (both keys in ``values``)."""
    max_steps = int(values["max_steps"])
    if max_steps > 0:
        _set(out, "train.steps", max_steps)
        report.mapped["max_steps"] = f"train.steps = {max_steps}"
    else:
        _set(out, "train.epochs", float(values["num_train_epochs"]))
        report.mapped["num_train_epochs"] = f"train.epochs = {float(values['num_train_epochs'])!r} (steps from the dataset)"


def _saving(values: dict[str, Any], out: dict[str, Any], report: Report) -> None:
    """``save_strategy`` / ``save_steps`` -> ``train.save_every``."""
    strategy = values.get("save_strategy", "steps")
    if strategy == "steps" and values.get("save_steps"):
        _set(out, "train.save_every", int(values["save_steps"]))
        report.mapped["save_steps"] = f"train.save_every = {int(values['save_steps'])}"
    elif strategy in ("no", "epoch") or "save_strategy" in values:
        _set(out, "train.save_every", 0)
        report.mapped["save_strategy"] = f"train.save_every = 0 (save_strategy {strategy!r}: a checkpoint at the end)"


def _rewards(values: dict[str, Any], spec: Script, out: dict[str, Any], report: Report) -> None:
    names = values.get("reward_funcs")
    if not names:
        names = DEFAULT_REWARDS
        report.defaults["reward_funcs"] = names
    try:
        shorthand = reward_shorthand(names, values.get("reward_weights"))
    except ConfigError as e:
        raise TranslationError(str(e)) from None
    bad = [n for n in names if n in UNSUPPORTED_REWARDS]
    if bad:
        raise TranslationError(f"reward(s) {', '.join(bad)} (code execution) are not available in gpgrl")
    if spec.fork == "open-rs" and "tag_count" in names:
        raise TranslationError("open-rs's tag_count (0.5 for each of <think>\\n and \\n</think>\\n; in its default "
                               "reward_funcs too) is not open-r1's, the only tag_count here; name the rewards "
                               "with reward_funcs")
    params = {
        "cosine": {p: values[f"cosine_{p}"] for p in ("min_value_wrong", "max_value_wrong", "min_value_correct",
                                                        "max_value_correct", "max_len") if f"cosine_{p}" in values},
        "repetition_penalty": {k: values[o] for o, k in (("repetition_n_grams", "ngram_size"),
                                                         ("repetition_max_penalty", "max_penalty")) if o in values},
    }
    rewards = []
    for item in shorthand:
        ours = (OPEN_RS_REWARD_NAMES if spec.fork == "open-rs" else REWARD_NAMES).get(item["name"], item["name"])
        entry: dict[str, Any] = {"name": ours, "weight": float(item["weight"])}
        entry_params = dict(params.get(ours, {}))
        if ours in ANSWER_GRADED:  # the original's answer check, as its pinned math-verify 0.5.2 ran it
            entry_params["semantics"] = ORIGINAL_SEMANTICS
            if ours == "accuracy":  # accuracy_reward_lv35 wraps the gold in a box; accuracy_reward does not
                entry_params["boxed_gold"] = item["name"] == "accuracy_lv35"
        if entry_params:
            entry["params"] = entry_params
        rewards.append(entry)
    out["rewards"] = rewards
    report.mapped["reward_funcs"] = "rewards = " + ", ".join(
        f"{r['name']} x {r['weight']:g}" + (f" {r['params']}" if "params" in r else "") for r in rewards)


# ------------------------------------------------------------------------------------------ command line
# TRL / open-r1 names on `gpgrl train`'s command line with a gpgrl recipe (or none). They go through the
# tables and helpers above (MAPPING, ALGORITHM_KEYS, _batch, _steps, _saving, _importance), one name or one
# group of names at a time, without the original's defaults for the keys not given: only what was typed
# changes. (With an open-r1 style recipe they are that recipe's own keys: :func:`split_overrides`.)

_BATCH_FLAGS = ("--train.micro_batch_size M (answers per forward/backward on each process) and "
                "--train.prompts_per_step P (prompts per optimizer step over all processes)")
_COSINE = "the recipe's rewards: [{name: cosine, params: {%s: VALUE}}] (reward parameters have no flag)"
_REPETITION = "the recipe's rewards: [{name: repetition_penalty, params: {%s: VALUE}}] (reward parameters have no flag)"

#: Names the command line cannot map alone with the same meaning, and the gpgrl flags to use instead.
COMMAND_LINE_INSTEAD: dict[str, str] = {
    "gradient_accumulation_steps": f"TRL's answers per step are per-device x processes x accumulation; use "
                                   f"{_BATCH_FLAGS}, or give it with --per_device_train_batch_size and "
                                   "--num_generations",
    "original_script": "it names the script of an open-r1 style recipe (--config FILE.yaml); with a gpgrl recipe or "
                       "none pick the algorithm with --preset NAME (`gpgrl presets` lists them)",
    "lr_scheduler_kwargs": "use --optim.min_lr_rate R (its min_lr_rate)",
    "weighted_sample": "use --data.sample_strategy hard, soft or medium (uniform = not weighted)",
    "sample_strategy": "use --data.sample_strategy hard, soft or medium",
    "reward_weights": "give it with --reward_funcs, or use the recipe's rewards: [{name: accuracy, weight: 1.0}, ...]",
    "cosine_min_value_wrong": _COSINE % "min_value_wrong", "cosine_max_value_wrong": _COSINE % "max_value_wrong",
    "cosine_min_value_correct": _COSINE % "min_value_correct",
    "cosine_max_value_correct": _COSINE % "max_value_correct", "cosine_max_len": _COSINE % "max_len",
    "repetition_n_grams": _REPETITION % "ngram_size", "repetition_max_penalty": _REPETITION % "max_penalty",
}
#: The groups of COMBINED names the command line maps together (the batch's also needs num_generations).
_COMMAND_LINE_GROUPS: dict[str, str] = {
    "per_device_train_batch_size": "--train.micro_batch_size, and --train.prompts_per_step = per-device x processes "
                                   "x accumulation / num_generations (needs --num_generations with it)",
    "max_steps": "--train.steps (and --train.epochs null, as max_steps decides in TRL); -1: --train.epochs "
                 "num_train_epochs (TRL's 3 if not given)",
    "num_train_epochs": "--train.epochs (unless --max_steps > 0 is given)",
    "save_steps": "--train.save_every", "save_strategy": "no / epoch: --train.save_every 0 (a checkpoint at the end); "
                                                         "steps: give --save_steps",
    "reward_funcs": "--rewards, gpgrl's names (`gpgrl rewards`); weights from --reward_weights",
    "vllm_importance_sampling_correction": "false: --rollout.importance_correction off (no cap); true: the mode below",
    "vllm_importance_sampling_mode": "--rollout.importance_correction (the same mode names; TRL's defaults "
                                     "sequence_mask, cap 3)",
}


def command_line_rows() -> list[tuple[str, str]]:
    """``(name, what it becomes)`` for every TRL / open-r1 name ``gpgrl train`` accepts on its command line with
    a gpgrl recipe, then those it refuses with the flags to use; docs/recipes.md shows them (a test checks).

    >>> rows = dict(command_line_rows())
    >>> rows["num_generations"], rows["beta"]
    ('--rollout.group_size', '--algorithm.beta (the KL coefficient)')
    """
    def target(key: Key) -> str:
        return f"--{key.target}" + (f" ({key.note})" if key.note else "")

    rows = [(name, target(key)) for name, key in {**MAPPING, **ALGORITHM_KEYS}.items()]
    rows += list(_COMMAND_LINE_GROUPS.items())
    rows += [(name, f"refused: {why}") for name, why in COMMAND_LINE_INSTEAD.items()]
    missing = set(COMBINED) - {name for name, _ in rows}
    assert not missing, f"COMBINED names with no command-line treatment: {sorted(missing)}"
    return rows


def command_line_names() -> dict[str, str]:
    """Every TRL / open-r1 name the command line knows -> the gpgrl flag it becomes (or ``""`` when it is not
    one flag), for the suggestions given for a misspelt option."""
    names = {name: "" for name in _KNOWN}
    names.update({name: f"--{key.target}" for name, key in {**MAPPING, **ALGORITHM_KEYS}.items()})
    return names


def _flag_value(value: Any) -> str:
    """A value as it would be typed after a flag.

    >>> _flag_value(None), _flag_value(True), _flag_value(["jsonl", "wandb"]), _flag_value([{"name": "a"}])
    ('null', 'true', 'jsonl,wandb', '[{name: a}]')
    """
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value):
        return ",".join(map(_flag_value, value))
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    return str(value)


def _flat(nested: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": v for section, keys in nested.items() for key, v in keys.items()}


def translate_command_line(names: dict[str, Any], *, num_processes: int | None = None
                           ) -> tuple[dict[str, Any], list[str], list[str]]:
    """TRL / open-r1 names given on ``gpgrl train``'s command line with a gpgrl recipe (or none) ->
    ``(gpgrl's dotted overrides, one line per name or group saying what it became, the names ignored)``.

    Values are parsed as the original's argument parser does and converted as :func:`translate` converts
    them; dashes are read as underscores. Names with no meaning here (:data:`IGNORED`) come back in the third
    list, as the recipe reader's warning lists them; names whose meaning needs other keys raise
    :class:`TranslationError` naming the gpgrl flags to use (:data:`COMMAND_LINE_INSTEAD`).

    >>> overrides, lines, ignored = translate_command_line(
    ...     {"num_generations": "4", "learning_rate": "1e-5", "use_vllm": "true", "push_to_hub": "true"})
    >>> overrides
    {'rollout.group_size': 4, 'optim.lr': '1e-5', 'rollout.engine': 'vllm'}
    >>> print("\\n".join(lines)); ignored
    --num_generations 4 -> --rollout.group_size 4
    --learning_rate 1e-5 -> --optim.lr 1e-5
    --use_vllm true -> --rollout.engine vllm
    ['push_to_hub']
    >>> translate_command_line({"per_device_train_batch_size": "16", "num_generations": "8"}, num_processes=2)[1][1]
    '--per_device_train_batch_size 16 -> --train.prompts_per_step 4 --train.micro_batch_size 16 (16 x 2 processes x 1 accumulation / 8)'
    """
    values = {k.replace("-", "_"): parse_cli_value(k.replace("-", "_"), v) if isinstance(v, str) else v
              for k, v in names.items()}
    unknown = sorted(k for k in values if k not in _KNOWN)
    if unknown:
        raise TranslationError(f"not a TRL / open-r1 name: {', '.join(unknown)}")
    for key in values:
        if key in COMMAND_LINE_INSTEAD and not (key == "reward_weights" and "reward_funcs" in values) and \
                not (key == "gradient_accumulation_steps" and "per_device_train_batch_size" in values):
            raise TranslationError(f"--{key} has no single gpgrl flag: {COMMAND_LINE_INSTEAD[key]}")
    out: dict[str, Any] = {}
    lines: list[str] = []

    def emit(sources: list[str], settings: dict[str, Any], why: str = "") -> None:
        given = " ".join(f"--{k} {_flag_value(values[k])}" for k in sources if k in values)
        became = " ".join(f"--{k} {_flag_value(v)}" for k, v in settings.items())
        lines.append(f"{given} -> {became or '(nothing)'}" + (f" ({why})" if why else ""))
        out.update(settings)

    for key, value in values.items():
        spec = MAPPING.get(key) or ALGORITHM_KEYS.get(key)
        if spec is not None:
            converted = spec.convert(value) if spec.convert else value
            settings = {spec.target: converted}
            if key == "epsilon" and "epsilon_high" not in values:  # as _algorithm: epsilon sets both clip sides
                settings["algorithm.epsilon_high"] = converted
            emit([key], settings)
    _command_line_groups(values, emit, num_processes)
    return out, lines, sorted(k for k in values if k in IGNORED)


def _command_line_groups(values: dict[str, Any], emit: Callable[..., None], num_processes: int | None) -> None:
    """The COMBINED names of :func:`translate_command_line`, through the recipe translation's own helpers."""
    report = Report()
    if "per_device_train_batch_size" in values:
        if "num_generations" not in values:
            raise TranslationError(f"--per_device_train_batch_size needs --num_generations with it (TRL's prompts per "
                                   f"step = per-device x processes x accumulation / num_generations); or use "
                                   f"{_BATCH_FLAGS}")
        given = {k: values.get(k, ORIGINAL_DEFAULTS[k]) for k in
                 ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations")}
        nested: dict[str, Any] = {}
        _batch(given, nested, report, num_processes)
        why = report.mapped["per_device_train_batch_size"].split("train.prompts_per_step = ")[1].rsplit(" = ", 1)[0]
        emit(["per_device_train_batch_size", "gradient_accumulation_steps"], _flat(nested), why)
    if "max_steps" in values or "num_train_epochs" in values:
        given = {k: values.get(k, ORIGINAL_DEFAULTS[k]) for k in ("max_steps", "num_train_epochs")}
        nested = {}
        _steps(given, nested, report)
        settings = _flat(nested)
        why = ""
        if "train.steps" in settings:
            settings["train.epochs"] = None  # TRL: max_steps > 0 overrides num_train_epochs (a recipe's included)
            why = "max_steps decides; num_train_epochs has no effect, as in TRL" if "num_train_epochs" in values else ""
        elif "num_train_epochs" not in values:
            why = "TRL's default num_train_epochs"
        emit(["max_steps", "num_train_epochs"], settings, why)
    if "save_steps" in values or "save_strategy" in values:
        if values.get("save_strategy", "steps") == "steps" and "save_steps" not in values:
            raise TranslationError("--save_strategy steps needs --save_steps N with it; gpgrl's flag: "
                                   "--train.save_every N")
        nested = {}
        _saving(values, nested, report)
        emit(["save_strategy", "save_steps"], _flat(nested))
    if "reward_funcs" in values:
        try:
            rewards = reward_shorthand(values["reward_funcs"], values.get("reward_weights"))
        except ConfigError as e:
            raise TranslationError(str(e)) from None
        emit(["reward_funcs", "reward_weights"], {"rewards": rewards})
    if "vllm_importance_sampling_correction" in values or "vllm_importance_sampling_mode" in values:
        nested = {}
        _importance(values, nested, report)
        settings = _flat(nested)
        if settings["rollout.importance_correction"] == "off":
            settings["rollout.importance_cap"] = None  # no cap without a correction (a recipe's included)
        emit(["vllm_importance_sampling_correction", "vllm_importance_sampling_mode"], settings)
