"""Full parameters out of a sharded model, on two CPU processes (gloo): the weights a vLLM engine is sent.

``gpgrl.parallel.iter_full_parameters`` must give every parameter of the unwrapped model, whole and equal
to the unsharded model's, while never unsharding the whole model at once: under FSDP1 one FSDP unit (here a
decoder layer, or the root's embeddings, final norm and tied head) at a time, under FSDP2 one DTensor at a
time. Each process records, at every tensor it is handed, how many FSDP units hold their full (unsharded)
parameters at that moment; before this was fixed, the whole model was summoned at once (all four units).
"""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unsharded_units(units) -> int:
    """How many FSDP1 units hold their full flat parameter right now (its padded buffer has storage)."""
    count = 0
    for unit in units:
        handle = unit._handle
        full = getattr(handle.flat_param, "_full_param_padded", None) if handle is not None else None
        count += full is not None and full.untyped_storage().size() > 0
    return count


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from accelerate.utils import DistributedType, extract_model_from_parallel
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.olmo2.modeling_olmo2 import Olmo2DecoderLayer

    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
    from gpgrl.parallel import iter_full_parameters

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    accelerator = SimpleNamespace(distributed_type=DistributedType.FSDP, unwrap_model=extract_model_from_parallel,
                                  state=SimpleNamespace(deepspeed_plugin=None))
    tok = build_char_tokenizer()
    results = {}
    for kind in ("fsdp1", "fsdp1_orig_params", "fsdp2"):
        model = build_tiny_model(tok, seed=0, num_layers=3)  # the same weights on both processes
        if kind == "fsdp2":
            for layer in model.model.layers:
                fully_shard(layer)
            wrapped = fully_shard(model)
            units = []
        else:
            wrapped = FSDP(model, device_id=torch.device("cpu"), auto_wrap_policy=ModuleWrapPolicy({Olmo2DecoderLayer}),
                           use_orig_params=kind == "fsdp1_orig_params")
            units = FSDP.fsdp_modules(wrapped)
        seen, peak = {}, 0
        for name, tensor in iter_full_parameters(accelerator, wrapped):
            peak = max(peak, _unsharded_units(units))
            seen[name] = tensor.detach().clone()
        results[kind] = {"tensors": seen, "peak_units": peak, "units": len(units)}
    if rank == 0:
        torch.save(results, Path(out) / "result.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.distributed
def test_fsdp_weights_are_gathered_one_unit_at_a_time_and_whole(tmp_path):
    from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model

    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = torch.load(tmp_path / "result.pt", weights_only=False)
    want = dict(build_tiny_model(build_char_tokenizer(), seed=0, num_layers=3).named_parameters())
    for kind in ("fsdp1", "fsdp1_orig_params"):
        assert results[kind]["units"] == 4  # the root (embeddings, norm, head) and three decoder layers
        assert results[kind]["peak_units"] == 1, kind  # the whole model summoned at once: 4
    for kind, result in results.items():
        got = result["tensors"]
        assert sorted(got) == sorted(want), kind  # every parameter once (the tied head as the embeddings)
        for name, tensor in got.items():  # whole, not a shard or a DTensor
            assert type(tensor) is torch.Tensor and torch.equal(tensor, want[name].detach()), (kind, name)
