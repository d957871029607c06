"""Whole parameters from a sharded model: for sampling in the training process and for weight sync.

Under FSDP and DeepSpeed ZeRO-3 each process holds a shard of every parameter outside the forward
pass. Sampling with transformers ``generate`` needs the whole model (:func:`gathered_for_generation`),
and pushing weights to an external engine needs each full tensor, one at a time so that the whole
model never has to fit twice (:func:`iter_full_parameters`). Under DDP, ZeRO-1/2 or one process the
parameters are whole already and both are free.
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


def iter_full_parameters(accelerator, model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor)`` for every parameter of the unwrapped model, gathered one at a time.

    Names are the unwrapped model's (``model.layers.0.self_attn.q_proj.weight``). Every process must
    iterate (gathering is collective); the tensors are valid only inside the loop body.
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
        # FSDP's flat parameters cannot be gathered one by one cheaply; gather module by module instead.
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(model, recurse=True, writeback=False):
            for name, param in unwrapped.named_parameters():
                yield clean_parameter_name(name), param.data
        return
    for name, param in unwrapped.named_parameters():
        yield name, param.data


def clean_parameter_name(name: str) -> str:
    """Parameter names without FSDP's and activation checkpointing's wrapper prefixes.

    >>> clean_parameter_name("model._fsdp_wrapped_module.layers.0._checkpoint_wrapped_module.mlp.weight")
    'model.layers.0.mlp.weight'
    """
    for prefix in ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(prefix, "")
    return name
