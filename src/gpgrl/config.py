"""Typed run configuration: one dataclass per concern, YAML in and out, ``--section.key value`` overrides.

A recipe is a YAML file with the sections below; every key is optional except ``model.name_or_path``
and ``data.dataset``. The ``algorithm`` section names a preset and overrides any of its settings::

    model: {name_or_path: Qwen/Qwen2.5-Math-7B}
    data: {dataset: ../shared/data/math/simplelr_level3to5/train.jsonl, prompt_column: question}
    rewards: [{name: accuracy, weight: 1.0}, {name: format, weight: 1.0}]
    algorithm: {preset: gpg}            # gpg | grpo | dr_grpo | dapo, plus any AlgorithmConfig field
    train: {steps: 200, prompts_per_step: 32}

open-r1 / GPG recipes' ``reward_funcs: [format, cosine]`` with ``reward_weights: [1.0, 2.0]`` are
accepted as a shorthand for ``rewards``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from gpgrl.algorithms.importance import DEFAULT_CAP, Correction, resolve_correction
from gpgrl.algorithms.objective import OBJECTIVES, make_objective
from gpgrl.algorithms.presets import PRESETS, AlgorithmConfig, get_preset
from gpgrl.data.prompts import PromptPreset, resolve_prompt
from gpgrl.data.samplers import Strategy


def _f(default: Any, help: str, *, math: bool = False) -> Any:
    """A config field with its ``--help`` line. ``math=True`` marks a setting that changes what a run computes:
    a resumed run must match its checkpoint on every such setting (:func:`math_keys`); the others (steps,
    micro-batching, engine, logging, evaluation, output) may change between sessions."""
    metadata = {"help": help, "math": math}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _math(default: Any, help: str) -> Any:
    """``_f(default, help, math=True)``: a setting that changes what a run computes."""
    return _f(default, help, math=True)


# The choices of the settings that name one of a fixed set; each tuple is read off its Literal.
LrScheduler = Literal["constant", "constant_with_warmup", "cosine", "cosine_with_min_lr", "linear"]
LR_SCHEDULERS: tuple[str, ...] = get_args(LrScheduler)
ReportSink = Literal["jsonl", "tensorboard", "wandb"]
REPORT_SINKS: tuple[str, ...] = get_args(ReportSink)


@dataclass
class ModelConfig:
    """The policy to train (which model, dtype, memory savers, LoRA, image sizes)."""

    name_or_path: str = _math("", "the policy: a Hugging Face model id, a local folder (save_pretrained), a .gguf "
                              "file, or smollm2 (SmolLM2-135M-Instruct: gpgrl models fetch smollm2)")
    tokenizer: str | None = _math(None, "tokenizer id or folder; default: the model's")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _math("auto", "weights' dtype when loading")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    trust_remote_code: bool = _f(False, "allow model code from the Hub (only for models you trust)")
    attn_implementation: str | None = _f(None, "eager, sdpa or flash_attention_2; default: transformers' choice")
    lora_r: int = _math(0, "LoRA rank; 0 = full fine-tuning (needs pip install 'gpgrl[peft]')")
    lora_alpha: int = _math(32, "LoRA alpha")
    lora_dropout: float = _math(0.0, "LoRA dropout")
    lora_target_modules: str = _math("all-linear", "LoRA target modules: 'all-linear' or comma-separated names")
    min_pixels: int | None = _math(None, "vision models: smallest image size in pixels the processor resizes to")
    max_pixels: int | None = _math(None, "vision models: largest image size in pixels (the forks use 401408 = "
                                         "512 x 28 x 28)")


@dataclass
class DataConfig:
    """The prompts (dataset, columns, prompt template, sampler)."""

    dataset: str = _math("", "HF dataset id, local .jsonl/.json/.parquet/.csv file or folder, or builtin:arithmetic")
    dataset_kwargs: dict[str, Any] = _math({}, "settings of a builtin: dataset (e.g. {digits: 3}), else "
                                               "load_dataset kwargs")
    split: str = _math("train", "dataset split")
    subset: str | None = _math(None, "dataset configuration name (e.g. 'main' for openai/gsm8k)")
    prompt_column: str = _math("question", "column with the question (a string, or a list of chat messages)")
    image_column: str | None = _math(None, "column with the record's image(s) (a path, a list of paths or images); "
                                           "set for vision-language models")
    image_dir: str | None = _math(None, "folder that relative image paths are read from")
    answer_column: str = _math("answer", "column with the gold answer, passed to rewards as 'answer' (dotted "
                                         "paths ok)")
    prompt: str = _math("plain", "prompt preset: plain, qwen_math_cot, qwen_boxed, simplelr_qwen, r1_distill, "
                                 "r1_think, open_r1")
    system_prompt: str | None = _math(None, "system prompt; default: the preset's ('' = none)")
    template: str | None = _math(None, "text around the question, e.g. '{question} Answer in \\boxed{{}}.'; "
                                       "default: the preset's")
    chat_template: bool | None = _math(None, "use the tokenizer's chat template (false = plain text); default: "
                                             "the preset's")
    max_prompt_length: int | None = _math(None, "prompt tokens kept (longer prompts lose their beginning; counted "
                                                "in metrics); default: the model's context minus "
                                                "rollout.max_completion_length")
    max_samples: int | None = _math(None, "use only the first N records")
    sample_strategy: Strategy = _math(
        "uniform", "prompt sampler: uniform epochs, or a curriculum weighted by each prompt's past rewards"
    )

    def prompt_preset(self) -> PromptPreset:
        """The prompt preset named by ``prompt`` with this section's overrides applied."""
        return resolve_prompt(self.prompt, system_prompt=self.system_prompt, template=self.template,
                              chat_template=self.chat_template)


@dataclass
class RolloutConfig:
    """Sampling the answers (group size, length, temperature, the engine that generates them)."""

    group_size: int = _math(8, "G: answers sampled per prompt")
    max_completion_length: int = _math(256, "most new tokens per answer (answers cut there are 'truncated')")
    temperature: float = _math(1.0, "sampling temperature")
    top_p: float = _math(1.0, "nucleus sampling")
    top_k: int = _math(0, "top-k sampling; 0 = off")
    engine: Literal["hf", "vllm", "vllm_server"] = _f(
        "hf", "rollout engine: hf (transformers generate), vllm (colocated, one per GPU), vllm_server (vllm serve)"
    )
    generation_batch_size: int | None = _f(None, "hf engine: most rows per generate call; default: all of a process's rows")
    vllm_server_url: str = _f("http://127.0.0.1:8000", "vllm_server: base URL of the `vllm serve` process")
    vllm_timeout: float = _f(600.0, "vllm_server: seconds one generation request may take before it is an error")
    vllm_sync_timeout: float = _f(300.0, "vllm_server: seconds the NCCL rendezvous, each weight sync and each other "
                                         "control call may take before it is an error")
    vllm_master_address: str | None = _f(None, "vllm_server: address of the trainer's main process that the server's "
                                               "workers connect to for the weight transfer; default: this machine's "
                                               "interface that routes to the server")
    vllm_master_port: int = _f(0, "vllm_server: port of that rendezvous on the main process; 0 = a free port")
    vllm_gpu_memory_utilization: float = _f(0.3, "vllm: share of each GPU's memory the colocated engine may take")
    vllm_sleep: bool = _f(True, "vllm: free the engine's memory (sleep mode) while the trainer updates the model")
    vllm_sleep_level: int = _f(2, "vllm: sleep level; 2 discards the weights (the sync reloads every one), 1 keeps "
                                  "a copy in host RAM (for models whose vLLM weights the sync does not all rewrite)")
    vllm_max_model_len: int | None = _f(None, "vllm: longest prompt + answer the engine holds KV for; null = "
                                              "data.max_prompt_length + rollout.max_completion_length")
    tools: list[str] = _f([], "multi-turn episodes with tools (docs/agents.md): built-in calculator, python, or your "
                             "own 'module:function' / 'path/file.py:function' (schemas from type hints + docstring); "
                             "CLI: --tools calculator,python")
    tool_timeout: float = _f(10.0, "tools: seconds one call may take; past it the call is killed and the policy reads "
                                   "a timeout message (counted in episode/tool_errors/timeout)")
    tool_call_format: str = _f("hermes", "tools: how the model writes a call; hermes = Qwen2.5/Qwen3/Hermes "
                                         "<tool_call>{json}</tool_call>")
    environment: str | None = _f(None, "multi-turn episodes with an environment (docs/agents.md): a registered name "
                                       "(guess_number, multiply_steps) or 'module:Class'; null = none")
    environment_params: dict[str, Any] = _f({}, "keyword arguments of the environment's constructor")
    max_turns: int = _f(4, "tools / environment: most policy turns per episode (max_completion_length is the "
                           "episode's token budget, tool and environment tokens included)")
    importance_correction: Correction = _math(
        "auto", "weight tokens by pi_train/pi_engine, both of the distribution sampled from (docs/engines.md): "
                "auto = token_truncate for vllm / vllm_server, off for hf; off = the paper's loss exactly"
    )
    importance_cap: float | None = _math(
        None, "the importance correction's cap C (ratios truncated at C, or masked above it); null = 2.0"
    )

    @property
    def multi_turn(self) -> bool:
        """Rollouts are episodes with an environment (``tools`` or ``environment`` set), not single answers."""
        return bool(self.tools) or self.environment is not None

    def importance(self) -> tuple[str, float]:
        """``(mode, cap)`` of the importance correction this rollout runs with (``auto`` resolved by the
        engine; :func:`gpgrl.algorithms.importance.resolve_correction`).

        >>> RolloutConfig(engine="vllm").importance(), RolloutConfig().importance()
        (('token_truncate', 2.0), ('off', 2.0))
        """
        return resolve_correction(self.importance_correction, self.engine, self.importance_cap)


@dataclass
class RewardSpec:
    """The reward functions, one entry each, whose weighted sum scores each answer (`gpgrl rewards` lists them)."""

    name: str = _f("", "registered reward name, or your own: 'module:function' (module.py beside the recipe, "
                       "or installed) or 'path/to/file.py:function'")
    weight: float = _f(1.0, "weight in the total reward (sum of weight * reward)")
    params: dict[str, Any] = _f({}, "keyword arguments of the reward's factory")
    timeout: float | None = _f(None, "your own rewards ('module:function'): seconds a call may take; past it the "
                                     "call is stopped and its answers get no reward (counted in reward/failures)")


@dataclass
class OptimConfig:
    """The optimizer (AdamW) and its learning-rate schedule."""

    lr: float = _math(1e-6, "peak learning rate (AdamW)")
    weight_decay: float = _math(0.0, "AdamW weight decay")
    adam_beta1: float = _math(0.9, "AdamW beta1")
    adam_beta2: float = _math(0.999, "AdamW beta2")
    adam_eps: float = _math(1e-8, "AdamW epsilon")
    lr_scheduler: LrScheduler = _math(
        "constant_with_warmup", "learning-rate schedule"
    )
    warmup_ratio: float = _math(0.0, "warm-up steps as a fraction of train.steps (used when warmup_steps is 0)")
    warmup_steps: int = _math(0, "warm-up steps")
    min_lr_rate: float = _math(0.1, "cosine_with_min_lr: final lr as a fraction of the peak")
    max_grad_norm: float | None = _math(1.0, "clip the global gradient norm; null = no clipping")


@dataclass
class TrainConfig:
    """The run (steps, batch sizes, seed, output folder, checkpoints, evaluation during training)."""

    steps: int = _f(100, "optimizer steps (one rollout batch each)")
    epochs: float | None = _f(None, "passes over the dataset; set, it decides train.steps once the data is loaded")
    prompts_per_step: int = _math(16, "prompts per step over all processes; answers per step = this x group_size")
    micro_batch_size: int = _f(8, "answers per forward/backward on each process (gradient accumulation)")
    seed: int = _math(42, "random seed (sampling, prompts, model init of tiny models)")
    output_dir: str = _f("runs/gpgrl", "folder for checkpoints, metrics.jsonl, samples, TensorBoard")
    overwrite: bool = _f(False, "start afresh in an output_dir holding a run, deleting its files once the "
                               "settings, model, data and rewards are checked; command line only (--overwrite): "
                               "a recipe's is ignored")
    save_every: int = _f(0, "save a checkpoint every N steps (0 = only at the end)")
    save_total_limit: int = _f(2, "checkpoints kept (oldest deleted first)")
    resume: bool = _f(False, "continue from the newest checkpoint in output_dir (its settings must match)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = _math("auto", "auto = bf16 on a GPU that has it, else no")
    num_threads: int | None = _f(None, "CPU threads for torch; default: 1 on a CPU-only machine, torch's choice on GPUs")
    max_nan_steps: int = _f(5, "stop after this many non-finite losses in a row (each such step is skipped)")
    max_reward_failure_steps: int = _f(
        3, "stop when a reward function fails for every answer this many steps in a row (a bug, not bad luck)"
    )
    eval_every: int = _f(0, "run gpgrl eval every N steps (0 = never)")
    eval_benchmarks: list[str] = _f([], "benchmarks for eval_every, e.g. [math500, aime24]")
    eval_data_dir: str | None = _f(None, "benchmark data folder (holding math/, vision/); default: $GPGRL_DATA, else "
                                         "../shared/data beside the checkout, else HF ids")
    eval_image_dir: str | None = _f(None, "vision benchmarks: folder of their images; default: data.image_dir")
    eval_limit: int | None = _f(None, "problems per benchmark during training evals")
    eval_samples: int = _f(1, "samples per problem during training evals")


@dataclass
class LogConfig:
    """Metrics, sample tables and the progress display."""

    log_every: int = _f(1, "write metrics every N steps")
    sample_every: int = _f(10, "print a table of sample completions every N steps (0 = never)")
    num_samples_to_show: int = _f(3, "rows in that table")
    report_to: list[str] = _f(["jsonl", "tensorboard"], f"metric sinks: {', '.join(REPORT_SINKS)}")
    wandb_project: str = _f("gpgrl", "wandb project")
    run_name: str | None = _f(None, "run name for wandb / TensorBoard")
    progress: bool | None = _f(None, "progress bar; default: in a terminal, else one plain line per log_every steps")
    save_rollouts: bool | None = _f(None, "append every trained answer (token ids, loss mask, reward, advantage, "
                                          "turns, tool calls) to rollouts.jsonl; default: on for multi-turn runs")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rewards: list[RewardSpec] = field(default_factory=lambda: [RewardSpec(name="accuracy")], metadata={"math": True})
    algorithm: dict[str, Any] = field(default_factory=lambda: {"preset": "gpg"}, metadata={"math": True})
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    @property
    def saves_rollouts(self) -> bool:
        """``log.save_rollouts``, its default resolved: on for multi-turn runs (tools or an environment).

        >>> Config().saves_rollouts, Config(rollout=RolloutConfig(tools=["calculator"])).saves_rollouts
        (False, True)
        """
        return self.rollout.multi_turn if self.log.save_rollouts is None else self.log.save_rollouts

    @property
    def algo(self) -> AlgorithmConfig:
        """The algorithm's full settings: the preset named in ``algorithm.preset`` (gpg) with the section's
        other keys applied. This is the one place they are resolved (by :meth:`validate`, so when the config
        is built); the result is kept, and resolved again only when the ``algorithm`` section has changed.

        >>> cfg = Config(algorithm={"preset": "grpo", "beta": 0.0})
        >>> cfg.algo.name, cfg.algo.beta, cfg.algo is cfg.algo
        ('grpo', 0.0, True)
        >>> cfg.algorithm["beta"] = 0.01; cfg.algo.beta
        0.01
        """
        source, resolved = self.__dict__.get("_algo", (None, None))
        if resolved is None or source != self.algorithm:
            settings = dict(self.algorithm)
            preset = settings.pop("preset", "gpg")
            if isinstance(preset, str) and preset not in PRESETS and (":" in preset or preset in OBJECTIVES):
                settings.setdefault("objective", preset)  # an objective with no preset of its own: GPG's settings
                preset = "gpg"
            resolved = get_preset(preset, **settings)
            self.__dict__["_algo"] = (dict(self.algorithm), resolved)
        return resolved

    def with_resolved(self, *, steps: int, max_prompt_length: int) -> Config:
        """A copy holding the numbers a run resolves once its data and model are loaded: ``train.steps``
        (:func:`total_steps`) and ``data.max_prompt_length`` (:func:`prompt_budget`). It is what the run's
        config.yaml and checkpoints record, and what a resumed run is compared on; the config itself is
        never changed. Its ``train.overwrite`` is false: deleting an earlier run is what the command that
        started this one did, not a setting of this run (running its config.yaml again must not delete it)."""
        out = copy.deepcopy(self)
        out.train.steps, out.data.max_prompt_length = steps, max_prompt_length
        out.train.overwrite = False
        return out

    def validate(self) -> Config:
        if not self.model.name_or_path:
            raise ValueError("model.name_or_path is required: a Hugging Face id or a local model folder")
        if not self.data.dataset:
            raise ValueError("data.dataset is required: a HF dataset id, a local file or folder, or builtin:arithmetic")
        if not self.rewards:
            raise ValueError("at least one reward is needed, e.g. rewards: [{name: accuracy}]")
        for spec in self.rewards:
            if not spec.name:
                raise ValueError("every entry of rewards needs a name")
        positive = {
            "rollout.group_size": self.rollout.group_size, "rollout.max_completion_length": self.rollout.max_completion_length,
            "train.steps": self.train.steps, "train.prompts_per_step": self.train.prompts_per_step,
            "train.micro_batch_size": self.train.micro_batch_size, "train.max_nan_steps": self.train.max_nan_steps,
            **({"data.max_prompt_length": self.data.max_prompt_length} if self.data.max_prompt_length is not None else {}),
            "train.max_reward_failure_steps": self.train.max_reward_failure_steps,
        }
        if self.rollout.group_size < 2:
            raise ValueError(f"rollout.group_size must be >= 2, got {self.rollout.group_size}: a group of one "
                             "answer has no group-relative advantage")
        for key, value in positive.items():
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self._check_ranges()
        bad_sinks = set(self.log.report_to) - set(REPORT_SINKS)
        if bad_sinks:
            raise ValueError(f"log.report_to has unknown sink(s) {sorted(bad_sinks)}; valid: {', '.join(REPORT_SINKS)}")
        if self.train.num_threads is not None and self.train.num_threads < 1:
            raise ValueError(f"train.num_threads must be >= 1 (or null for the default), got {self.train.num_threads}")
        r = self.rollout
        if r.importance_cap is not None and not (r.importance_cap > 0 and math.isfinite(r.importance_cap)):
            raise ValueError(f"rollout.importance_cap must be > 0 (or null = {DEFAULT_CAP}), got {r.importance_cap}; "
                             "rollout.importance_correction: off turns the correction off")
        if r.importance_correction == "off" and r.importance_cap is not None:
            raise ValueError(f"rollout.importance_cap={r.importance_cap} has no effect with "
                             "rollout.importance_correction: off; remove one of them")
        if r.tools and r.environment not in (None, "tools"):
            raise ValueError(f"rollout.tools and rollout.environment={r.environment!r} are both set; an episode has one "
                             "environment: give the tools to it, or drop one of the two")
        if r.multi_turn and r.max_turns < 1:
            raise ValueError(f"rollout.max_turns must be >= 1, got {r.max_turns}")
        if r.tool_timeout <= 0:
            raise ValueError(f"rollout.tool_timeout must be > 0 seconds, got {r.tool_timeout}")
        self.data.prompt_preset()  # raises on an unknown preset or a bad template
        objective = self.algo.objective  # resolves the algorithm; raises on an unknown preset or a bad setting
        if not (objective and ":" in objective):  # your own ('file.py:Class') is loaded when the run is built
            make_objective(self.algo)  # raises on an unknown name (listing the registered ones) or a refused setting
        return self

    def _check_ranges(self) -> None:
        """Every numeric setting within the range where it means something, so that a bad value stops the
        run before its output folder is touched (``train.overwrite`` deletes an old run there)."""
        r, o, t, log = self.rollout, self.optim, self.train, self.log
        if not (math.isfinite(r.temperature) and r.temperature > 0):
            raise ValueError(f"rollout.temperature must be > 0 for training, got {r.temperature}: at 0 (greedy) every "
                             "answer of a group is the same, so no group carries a signal and nothing is learned")
        if not 0 < r.top_p <= 1:
            raise ValueError(f"rollout.top_p must be in (0, 1], got {r.top_p}")
        checks = [  # (key, value, ok, the allowed range)
            ("rollout.top_k", r.top_k, r.top_k >= 0, ">= 0 (0 = off)"),
            ("rollout.vllm_timeout", r.vllm_timeout, r.vllm_timeout > 0, "> 0 seconds"),
            ("rollout.vllm_sync_timeout", r.vllm_sync_timeout, r.vllm_sync_timeout > 0, "> 0 seconds"),
            ("rollout.vllm_master_port", r.vllm_master_port, 0 <= r.vllm_master_port <= 65535,
             "in [0, 65535] (0 = a free port)"),
            ("optim.lr", o.lr, o.lr >= 0, ">= 0"),
            ("optim.weight_decay", o.weight_decay, o.weight_decay >= 0, ">= 0"),
            ("optim.adam_beta1", o.adam_beta1, 0 <= o.adam_beta1 < 1, "in [0, 1)"),
            ("optim.adam_beta2", o.adam_beta2, 0 <= o.adam_beta2 < 1, "in [0, 1)"),
            ("optim.adam_eps", o.adam_eps, o.adam_eps >= 0, ">= 0"),
            ("optim.warmup_ratio", o.warmup_ratio, 0 <= o.warmup_ratio <= 1, "in [0, 1]"),
            ("optim.warmup_steps", o.warmup_steps, o.warmup_steps >= 0, ">= 0"),
            ("optim.min_lr_rate", o.min_lr_rate, 0 <= o.min_lr_rate <= 1, "in [0, 1]"),
            ("train.save_every", t.save_every, t.save_every >= 0, ">= 0 (0 = only at the end)"),
            ("train.save_total_limit", t.save_total_limit, t.save_total_limit >= 1, ">= 1"),
            ("train.eval_every", t.eval_every, t.eval_every >= 0, ">= 0 (0 = never)"),
            ("train.eval_samples", t.eval_samples, t.eval_samples >= 1, ">= 1"),
            ("log.log_every", log.log_every, log.log_every >= 1, ">= 1"),
            ("log.sample_every", log.sample_every, log.sample_every >= 0, ">= 0 (0 = never)"),
        ]
        if o.max_grad_norm is not None:
            checks.append(("optim.max_grad_norm", o.max_grad_norm, o.max_grad_norm > 0, "> 0 (or null = no clipping)"))
        if t.epochs is not None:
            checks.append(("train.epochs", t.epochs, t.epochs > 0, "> 0"))
        for key, value, ok, allowed in checks:
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"{key} must be {allowed}, got {value}")
        _check_master_address(r.vllm_master_address)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = {
    "model": ModelConfig, "data": DataConfig, "rollout": RolloutConfig, "optim": OptimConfig,
    "train": TrainConfig, "log": LogConfig,
}
#: The sections a ``--section.key`` override may name, and every top-level key of a recipe.
DOTTED_SECTIONS = (*SECTIONS, "algorithm")
TOP_LEVEL_KEYS = (*SECTIONS, "rewards", "algorithm")


def math_keys() -> tuple[str, ...]:
    """The settings that change what a run computes: the fields marked ``math`` (see :func:`_f`), as dotted
    keys (a whole section for ``rewards`` and ``algorithm``). A resumed run must match its checkpoint on
    all of them (:func:`gpgrl.train.checkpoint.check_resumable`).

    >>> keys = math_keys()
    >>> "data.image_dir" in keys, "model.max_pixels" in keys, "algorithm" in keys, "train.steps" in keys
    (True, True, True, False)
    """
    keys = []
    for f in dataclasses.fields(Config):
        if f.metadata.get("math"):
            keys.append(f.name)
        elif f.name in SECTIONS:
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(SECTIONS[f.name]) if g.metadata.get("math")]
    return tuple(keys)


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


def total_steps(cfg: Config, num_records: int) -> int:
    """The run's optimizer steps: ``train.steps``, or with ``train.epochs`` set, the steps of that many passes
    over the ``num_records`` prompts (:func:`steps_for_epochs`). The schedule's length and the progress
    total are this number; ``cfg`` is not changed.

    >>> cfg = Config(); cfg.train.prompts_per_step = 4
    >>> total_steps(cfg, 10)
    100
    >>> cfg.train.epochs = 1.5
    >>> total_steps(cfg, 10), cfg.train.steps     # 10 // 4 = 2 steps per epoch, x 1.5
    (3, 100)
    """
    t = cfg.train
    return t.steps if t.epochs is None else steps_for_epochs(num_records, t.prompts_per_step, t.epochs)


def prompt_budget(cfg: Config, context: int | None) -> int:
    """``data.max_prompt_length``, or its default: the model's context minus ``rollout.max_completion_length``
    (512 when the model does not say its context). Raises ValueError, with the fix, when prompt and answer
    cannot both fit; ``cfg`` is not changed.

    >>> cfg = Config(); cfg.rollout.max_completion_length = 64
    >>> prompt_budget(cfg, 512), prompt_budget(cfg, None)
    (448, 512)
    """
    limit, answer = cfg.data.max_prompt_length, cfg.rollout.max_completion_length
    if context is None:
        return 512 if limit is None else limit
    if limit is None:
        if answer >= context:
            raise ValueError(f"rollout.max_completion_length={answer} fills the model's whole context of {context} "
                             f"tokens, leaving none for the prompt; lower it (e.g. to {context // 2})")
        return context - answer
    if limit >= context:
        raise ValueError(f"data.max_prompt_length={limit} leaves no room for an answer in the model's context of "
                         f"{context} tokens; lower it to at most {max(context - answer, 1)} (the context minus "
                         "rollout.max_completion_length), or leave it unset for that default")
    return limit


# Short flags for the options people change most; each maps to one dotted key.
ALIASES = {
    "model": "model.name_or_path", "dataset": "data.dataset", "preset": "algorithm.preset",
    "output_dir": "train.output_dir", "steps": "train.steps", "lr": "optim.lr", "seed": "train.seed",
    "resume": "train.resume", "overwrite": "train.overwrite", "group_size": "rollout.group_size",
    "tools": "rollout.tools", "environment": "rollout.environment",
}


def _check_master_address(address: str | None) -> None:
    """``rollout.vllm_master_address``: an IPv4 address or host name of this machine that the server can reach
    (vLLM's rendezvous listens on it over IPv4 and the server's workers connect to it).

    >>> _check_master_address("0.0.0.0")
    Traceback (most recent call last):
    ...
    ValueError: rollout.vllm_master_address must be an address the server's workers can connect to, got '0.0.0.0' (listen-on-all is not one); leave it unset for the address of the interface that routes to the server
    """
    if address is None:
        return
    hint = "; leave it unset for the address of the interface that routes to the server"
    if not address.strip() or any(c.isspace() or c in "/[]" for c in address) or "://" in address:
        raise ValueError(f"rollout.vllm_master_address must be a bare IPv4 address or host name (no scheme, port or "
                         f"path), got {address!r}{hint}")
    if address in ("0.0.0.0", "*"):
        raise ValueError(f"rollout.vllm_master_address must be an address the server's workers can connect to, got "
                         f"{address!r} (listen-on-all is not one){hint}")
    if ":" in address:
        raise ValueError(f"rollout.vllm_master_address must be an IPv4 address or host name (vLLM's rendezvous "
                         f"listens over IPv4; a port goes in rollout.vllm_master_port), got {address!r}{hint}")


class ConfigError(ValueError):
    """A bad recipe or command-line value; the message says what to change."""


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp``; strings from the command line are parsed.

    >>> coerce("3", int, "train.steps"), coerce("true", bool, "x"), coerce("a,b", list[str], "x")
    (3, True, ['a', 'b'])
    >>> coerce("ten", int, "train.steps")
    Traceback (most recent call last):
    ...
    gpgrl.config.ConfigError: train.steps must be int, got 'ten'
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key} cannot be {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() not in ("", "[]") else []
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [coerce(v, args[0], key) for v in value] if args else value
    if origin is dict or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp in (int, float):
        return _number(value, tp, key)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, got {value!r}")
    return value


def _number(value: Any, tp: type, key: str) -> Any:
    """``value`` as ``tp`` (int or float): a number or a numeric string; an int only from a whole number;
    never a bool."""
    parsed = value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = tp(value)
    if tp is int and isinstance(parsed, float) and parsed.is_integer():
        parsed = int(parsed)
    if isinstance(parsed, (int, float)) and not isinstance(parsed, bool) and (tp is float or isinstance(parsed, int)):
        return tp(parsed)
    raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}")


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    hint = difflib.get_close_matches(key.split(".")[-1], valid, n=1)
    did = f" Did you mean {hint[0]!r}?" if hint else ""
    return ConfigError(f"unknown config key {key!r}.{did} Valid keys in {where}: {', '.join(valid)}")


def _coerce_fields(cls: type, values: dict[str, Any], prefix: str, *, exclude: tuple[str, ...] = (),
                   also_valid: tuple[str, ...] = ()) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls`` and coerced to their types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in exclude]
    out = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(f"{prefix}.{key}", [*also_valid, *names], prefix)
        out[key] = coerce(value, hints[key], f"{prefix}.{key}")
    return out


def _build_section(cls: type, values: Any, prefix: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"section {prefix!r} must be a mapping of keys to values, got {values!r}")
    return cls(**_coerce_fields(cls, values, prefix))


def _build_rewards(raw: Any) -> list[RewardSpec]:
    if not isinstance(raw, list):
        raise ConfigError(f"rewards must be a list like [{{name: accuracy, weight: 1.0}}], got {raw!r}")
    specs = []
    for i, item in enumerate(raw):
        if isinstance(item, str):
            item = {"name": item}
        specs.append(_build_section(RewardSpec, item, f"rewards[{i}]"))
    return specs


def from_dict(raw: dict[str, Any]) -> Config:
    """A validated :class:`Config` from a (YAML) dict; unknown keys and wrong types raise ConfigError."""
    raw = dict(raw or {})
    if "reward_funcs" in raw:  # open-r1 / GPG recipe shorthand
        raw["rewards"] = reward_shorthand(raw.pop("reward_funcs"), raw.pop("reward_weights", None))
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            kwargs[key] = _build_section(SECTIONS[key], value, key)
        elif key == "rewards":
            kwargs[key] = _build_rewards(value)
        elif key == "algorithm":
            if not isinstance(value, dict):
                raise ConfigError(f"algorithm must be a mapping like {{preset: gpg}}, got {value!r}")
            kwargs[key] = _coerce_algorithm(value)
        else:
            raise _unknown(key, list(TOP_LEVEL_KEYS), "the recipe's top level")
    try:
        return Config(**kwargs).validate()
    except ValueError as e:
        raise ConfigError(str(e)) from None


def reward_shorthand(names: list[Any], weights: list[Any] | None = None) -> list[dict[str, Any]]:
    """open-r1's ``reward_funcs`` / ``reward_weights`` (weights default to 1.0) as ``rewards`` entries.

    >>> reward_shorthand(["accuracy", "format"], [1.0, 0.5])
    [{'name': 'accuracy', 'weight': 1.0}, {'name': 'format', 'weight': 0.5}]
    """
    weights = weights or [1.0] * len(names)
    if len(weights) != len(names):
        raise ConfigError(f"reward_weights has {len(weights)} entries but reward_funcs has {len(names)}")
    return [{"name": n, "weight": w} for n, w in zip(names, weights)]


def _coerce_algorithm(values: dict[str, Any]) -> dict[str, Any]:
    """The ``algorithm`` section: ``preset`` plus typed overrides of any AlgorithmConfig field."""
    settings = dict(values)
    preset = settings.pop("preset", None)
    out = _coerce_fields(AlgorithmConfig, settings, "algorithm", exclude=("name",), also_valid=("preset",))
    return out if preset is None else {"preset": str(preset), **out}


def apply_overrides(raw: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """Set dotted keys (``train.steps``) in a raw recipe dict; values stay strings, typed later."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (raw or {}).items()}
    for dotted, value in overrides.items():
        dotted = ALIASES.get(dotted, dotted)
        if dotted == "rewards":
            raw["rewards"] = [{"name": n} for n in value.split(",")] if isinstance(value, str) else value
            continue
        section, _, key = dotted.partition(".")
        if not key or section not in DOTTED_SECTIONS:
            near = difflib.get_close_matches(section, DOTTED_SECTIONS, n=1) if key else []
            if near:  # a misspelt section: --rolout.temperature
                raise ConfigError(f"unknown config section {section!r} in --{dotted}. Did you mean "
                                  f"'{near[0]}.{key}'? Sections: {', '.join(DOTTED_SECTIONS)}")
            valid = list(dict.fromkeys([*DOTTED_SECTIONS, "rewards", *ALIASES]))  # 'model' is both
            raise _unknown(dotted, valid, "the command line (use --section.key)")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"section {section!r} must be a mapping")
        raw[section][key] = value
    return raw


def to_yaml(cfg: Config) -> str:
    """The config as a YAML recipe (``gpgrl.recipe.load_config`` reads it back to an equal config)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(to_yaml(cfg))


#: The ten settings people change first, in the order a run is set up: what to train, on which prompts, scored
#: how, with which algorithm, how many answers of what length, how many prompts per step and steps, how fast it
#: learns, and where it writes. ``gpgrl train --help`` shows them on top, with their short forms (ALIASES).
#: train.seed and train.resume keep their short forms but are changed later (a seed sweep, a second session).
MOST_CHANGED = ("model.name_or_path", "data.dataset", "rewards", "algorithm.preset", "rollout.group_size",
                "rollout.max_completion_length", "train.prompts_per_step", "train.steps", "optim.lr",
                "train.output_dir")


def help_sections() -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """``(section, what it sets, its rows of help_rows())`` in the order of the recipe's sections, for
    ``gpgrl train --help``; every row of :func:`help_rows` is in exactly one section.

    >>> [name for name, _, _ in help_sections()]
    ['model', 'data', 'rollout', 'rewards', 'algorithm', 'optim', 'train', 'log']
    """
    described = {**SECTIONS, "rewards": RewardSpec, "algorithm": AlgorithmConfig}
    rows = help_rows()
    out = []
    for f in dataclasses.fields(Config):
        doc = (described[f.name].__doc__ or "").strip().splitlines()[0].rstrip(".")
        out.append((f.name, doc[:1].lower() + doc[1:], [r for r in rows if r[0].partition(".")[0] == f.name]))
    return out


def help_rows() -> list[tuple[str, str, str]]:
    """(dotted key, default, help) for every option, for ``gpgrl train --help``."""
    rows = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            help_text = f.metadata.get("help", "")
            hint = typing.get_type_hints(cls)[f.name]
            if typing.get_origin(hint) is Literal and not all(str(c) in help_text for c in typing.get_args(hint)):
                help_text += f" [{' | '.join(map(str, typing.get_args(hint)))}]"
            rows.append((f"{section}.{f.name}", repr(default), help_text))
    rows.append(("rewards", "[{name: accuracy}]", "list of {name, weight, params, timeout}; CLI: --rewards accuracy,format"))
    rows.append(("algorithm.preset", "'gpg'", " | ".join(PRESETS)))
    for f in dataclasses.fields(AlgorithmConfig):
        if f.name != "name":
            rows.append((f"algorithm.{f.name}", "(preset)", f.metadata.get("help", "")))
    return rows
