"""Whole parameters from a sharded model: for sampling in the training process and for weight sync.

Under FSDP and DeepSpeed ZeRO-3 each process holds a shard of every parameter outside the forward
pass. Sampling with transformers ``generate`` needs the whole model (:func:`gathered_for_generation`;
only engines that run the trainer's module ask for it), and pushing weights to an external engine needs
each full tensor, a little at a time so that the whole model never has to fit twice
(:func:`iter_full_parameters`: one parameter at a time under ZeRO-3 and FSDP2, one FSDP unit at a time
under FSDP1). Under DDP, ZeRO-1/2 or one process the parameters are whole already and both are free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def sharding(accelerator) -> str:
    """``"fsdp"``, ``"zero3"`` or ``"none"`` for the accelerator's setup."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return "fsdp"
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        plugin = accelerator.state.deepspeed_plugin
        if plugin is not None and plugin.zero_stage == 3:
            return "zero3"
    return "none"


def gathered_for_generation(accelerator, model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """A context in which ``accelerator.unwrap_model(model)`` holds whole parameters (read-only)."""
    kind = sharding(accelerator)
    if kind == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel.summon_full_params(model, recurse=True, writeback=False)
    if kind == "zero3":
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    return contextlib.nullcontext()


def gathered_for_engine(accelerator, model: torch.nn.Module, engine) -> contextlib.AbstractContextManager:
    """:func:`gathered_for_generation` around an engine that samples with the trainer's own module
    (``engine.samples_with_trainer_module``: the ``hf`` engine); nothing for one with its own weights (vLLM)."""
    if getattr(engine, "samples_with_trainer_module", False):
        return gathered_for_generation(accelerator, model)
    return contextlib.nullcontext()


def iter_full_parameters(accelerator, model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` for every parameter of the unwrapped model, never the whole model at once.

    ZeRO-3 gathers one parameter at a time; FSDP1 one FSDP unit (a wrapped module, e.g. a decoder layer)
    at a time (:func:`fsdp_full_parameters`); FSDP2's DTensors one parameter at a time. Names are the
    unwrapped model's (``model.layers.0.self_attn.q_proj.weight``), each once (tied weights too). Every
    process must iterate (gathering is collective); the tensors are valid only inside the loop body.
    """
    kind = sharding(accelerator)
    unwrapped = accelerator.unwrap_model(model)
    if kind == "zero3":
        import deepspeed

        for name, param in unwrapped.named_parameters():
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                yield name, param.data
        return
    if kind == "fsdp":
        yield from fsdp_full_parameters(model)
        return
    for name, param in unwrapped.named_parameters():
        yield name, param.data


def fsdp_full_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Full parameters of an FSDP-wrapped ``model``, one FSDP unit unsharded at a time.

    FSDP1: for each ``FullyShardedDataParallel`` unit, root first then the nested ones in module order,
    ``summon_full_params(unit, recurse=False)`` unshards that unit's flat parameter only, and the
    parameters it owns (those of its modules not inside a nested unit) are yielded; the unit is resharded
    before the next one. The peak is one unit's full size (a decoder layer; the root's embeddings and
    head), not the model's. FSDP2 (``fully_shard``): each DTensor parameter is gathered on its own.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    units = FSDP.fsdp_modules(model)  # pre-order: the root first
    if not units:  # FSDP2 or a model with nothing wrapped
        from torch.distributed.tensor import DTensor

        for name, param in model.named_parameters():
            full = param.full_tensor() if isinstance(param, DTensor) else param
            yield clean_parameter_name(name), full.data
        return
    paths = {id(module): name for name, module in model.named_modules()}
    for unit in units:
        with FSDP.summon_full_params(unit, recurse=False, writeback=False):
            seen: set[int] = set()  # tied weights (embeddings and head) share one parameter in a unit
            prefix = paths[id(unit)]
            for name, param in _unit_parameters(unit, f"{prefix}." if prefix else "", FSDP):
                if id(param) not in seen:
                    seen.add(id(param))
                    yield clean_parameter_name(name), param.data


def _unit_parameters(module: torch.nn.Module, path: str,
                     fsdp_type: type) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """``module``'s parameters by qualified name, depth first, not descending into nested FSDP units."""
    for name, param in module.named_parameters(recurse=False):
        yield f"{path}{name}", param
    for name, child in module.named_children():
        if not isinstance(child, fsdp_type):
            yield from _unit_parameters(child, f"{path}{name}.", fsdp_type)


def clean_parameter_name(name: str) -> str:
    """Parameter names without FSDP's and activation checkpointing's wrapper prefixes.

    >>> clean_parameter_name("model._fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.mlp.weight")
    'model.layers.0.mlp.weight'
    """
    for prefix in ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(prefix, "")
    return name
