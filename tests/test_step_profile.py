"""The pure parts of benchmarks/step_profile.py: operator groups, autograd's saved bytes, the report's sums."""

import doctest

import pytest
import torch

from conftest import load_script


@pytest.fixture(scope="module")
def prof():
    return load_script("step_profile")


def test_doctests(prof):
    result = doctest.testmod(prof)
    assert result.attempted >= 1 and result.failed == 0


def test_saved_bytes_count_each_storage_once(prof):
    x = torch.ones(256, requires_grad=True)  # 1 KB
    saved = prof.SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        y = x * x  # saves x twice: one storage
        z = y.view(16, 16).exp()  # saves its result: a new 1 KB storage
    (z.sum()).backward()
    assert sum(saved.storages.values()) == 2 * 256 * 4
    assert torch.allclose(x.grad, 2 * torch.exp(torch.ones(256)))  # the hooks hand back what they were given


def test_report_splits_the_step_memory(prof):
    m = {"load_start": 1.0, "load_end": 1.2, "step": 3.0, "generation": 1.0, "profiled_step": 3.3,
         "profiled_generation": 1.1, "params": 2**18, "model_mb": 1.0, "ready_mb": 100.0, "peak_mb": 110.0,
         "saved_mb": 5.0, "step_wall": 3.0, "mb8": {"step_wall": 3.1, "ready_mb": 100.0, "peak_mb": 106.0, "saved_mb": 2.0},
         "times": {"aten::mm": (600.0, 600.0, 10), "aten::copy_": (300.0, 300.0, 5), "aten::mul": (100.0, 100.0, 3),
                   "Optimizer.step#AdamW.step": (0.0, 250.0, 1)}}
    text = prof.render("r", m, "python benchmarks/step_profile.py")
    assert "| matrix multiplies | 0.60 | 60% |" in text and "| copies | 0.30 | 30% |" in text
    assert "| other | 0.10 | 10% |" in text and "AdamW step (inclusive): 0.25 s" in text
    assert "**10 MB** above it" in text and "| gradients (one per parameter) | 1 |" in text
    assert "| AdamW states (two per parameter) | 2 |" in text and "allocator slack | 2 |" in text  # 10 - 3 - 5
    assert "peak **6 MB**" in text and "the update 2.00 s" in text
