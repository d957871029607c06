"""Building a run's parts from a config: accelerator, threads, dataset, rewards, models, schedule, engine.

:func:`build_parts` is what :meth:`gpgrl.train.trainer.Trainer.from_config` calls; the trainer itself
takes ready objects, so a Python user can pass their own dataset, reward callables or model instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import Accelerator

from gpgrl.algorithms.objective import Objective
from gpgrl.config import Config


def _has_accelerator() -> bool:
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or bool(xpu and xpu.is_available())


def make_accelerator(cfg: Config) -> Accelerator:
    """An Accelerator for this machine and ``train.mixed_precision``."""
    mp = cfg.train.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # cpu=True on a machine without an accelerator lets `accelerate launch --multi_gpu` (torchrun) start
    # several CPU processes that talk over gloo; Accelerate only picks MULTI_CPU when asked for the CPU.
    return Accelerator(mixed_precision=mp, cpu=not _has_accelerator())


def set_num_threads(num_threads: int | None) -> None:
    """``train.num_threads``, or the default: one thread per process on a CPU-only machine.

    On a CPU, torch's default (one thread per core) is slower for the small matrices of RL rollouts
    and collapses when several processes or other programs share the cores; see
    ``benchmarks/results/threads.md`` for the measurements behind the default.
    """
    if num_threads is None:
        if _has_accelerator():
            return
        num_threads = 1
    torch.set_num_threads(num_threads)


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (all of them, or LoRA's), with ``optim``'s settings."""
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return torch.optim.AdamW(params, lr=o.lr, betas=(o.adam_beta1, o.adam_beta2), eps=o.adam_eps,
                             weight_decay=o.weight_decay)


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, total_steps: int):
    """transformers' learning-rate schedule named by ``optim.lr_scheduler`` over the run's ``total_steps``
    (:func:`gpgrl.config.total_steps`: ``train.steps``, or the steps of ``train.epochs``)."""
    from transformers import get_scheduler

    warmup = cfg.optim.warmup_steps or math.ceil(cfg.optim.warmup_ratio * total_steps)
    extra = {"min_lr_rate": cfg.optim.min_lr_rate} if cfg.optim.lr_scheduler == "cosine_with_min_lr" else None
    return get_scheduler(cfg.optim.lr_scheduler, optimizer, num_warmup_steps=warmup,
                         num_training_steps=total_steps, scheduler_specific_kwargs=extra)


def build_parts(cfg: Config, **parts: Any) -> dict[str, Any]:
    """The trainer's parts that ``cfg`` names and ``parts`` does not give: ``accelerator``, ``dataset``
    (records, ``data.max_samples`` applied), ``rewards``, ``tokenizer``, ``model`` (activation
    checkpointing and LoRA applied as configured) and ``ref_model`` (only when the preset has a KL term).
    """
    from gpgrl.data.datasets import load_records
    from gpgrl.models.loading import apply_lora, check_model_path, enable_activation_checkpointing
    from gpgrl.models.progress import model_loading
    from gpgrl.models.source import ModelSource
    from gpgrl.models.vision import is_vision_model, require_vision
    from gpgrl.rewards.scoring import as_reward_functions

    set_num_threads(cfg.train.num_threads)
    out = dict(parts)
    if out.get("accelerator") is None:
        out["accelerator"] = make_accelerator(cfg)  # before loading: ZeRO-3 shards the model as it loads
    m, d = cfg.model, cfg.data
    if out.get("dataset") is None:  # data first: a bad dataset should fail before a large model is loaded
        records = load_records(d.dataset, split=d.split, subset=d.subset, **d.dataset_kwargs)
        out["dataset"] = records[: d.max_samples] if d.max_samples else records
    if out.get("rewards") is None:
        out["rewards"] = as_reward_functions(cfg.rewards)
    if out.get("model") is None:
        check_model_path(m.name_or_path)  # the folder the user named, before its tokenizer is looked for there
    vision = d.image_column is not None  # this recipe feeds images
    if vision:
        require_vision()  # a vision recipe without the extra fails now, with the install line
        given = out.get("model")
        if not is_vision_model(given if given is not None else m.name_or_path, trust_remote_code=m.trust_remote_code):
            raise ValueError(f"data.image_column is set (this recipe feeds images), but model {m.name_or_path!r} is "
                             "not an image-text-to-text model (or its config could not be read): use a vision-"
                             "language model such as Qwen/Qwen2-VL-2B-Instruct, or drop data.image_column")
    source = ModelSource(m.name_or_path, vision=vision, tokenizer=m.tokenizer, dtype=m.dtype,
                         trust_remote_code=m.trust_remote_code, attn_implementation=m.attn_implementation,
                         min_pixels=m.min_pixels, max_pixels=m.max_pixels)
    if out.get("tokenizer") is None:
        out["tokenizer"] = source.load_processor()
    main = out["accelerator"].is_main_process and cfg.log.progress is not False  # log.progress false: quiet
    if out.get("model") is None:
        with model_loading("gpgrl train", m.name_or_path, enabled=main) as loaded:
            out["model"] = loaded["model"] = source.load_model()
    if m.gradient_checkpointing:
        enable_activation_checkpointing(out["model"])
    if m.lora_r > 0:
        targets = m.lora_target_modules
        out["model"] = apply_lora(out["model"], m.lora_r, m.lora_alpha, m.lora_dropout,
                                  targets if targets == "all-linear" else [t.strip() for t in targets.split(",")])
    if out.get("ref_model") is None and build_objective(cfg).needs.ref_logprobs:  # only when a KL term needs one
        with model_loading("gpgrl train", f"{m.name_or_path} (the reference model of the KL term)",
                           enabled=main) as loaded:
            out["ref_model"] = loaded["model"] = source.load_model()
    return out


def build_objective(cfg: Config) -> Objective:
    """The run's objective (``algorithm``: the preset's, or ``algorithm.objective``; your own loaded from its
    ``file.py:Class`` / ``module:Class`` as a user reward is), with the run's importance correction."""
    from gpgrl.algorithms.objective import make_objective
    from gpgrl.user_code import UserCodeError, load_user_object

    def load(path: str) -> object:
        try:
            return load_user_object(path, "objective")
        except UserCodeError as e:
            raise ValueError(f"algorithm.objective: {e}") from None

    return make_objective(cfg.algo, importance=cfg.rollout.importance(), loader=load)
