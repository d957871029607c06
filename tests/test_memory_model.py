"""benchmarks/memory_model.py: its doctests, and the numbers docs/engines.md quotes."""

import doctest

from conftest import REPO, load_script


def test_memory_model_doctests_and_the_documented_table():
    memory = load_script("memory_model")
    assert doctest.testmod(memory).failed == 0
    table = memory.markdown(memory.RUNS)
    docs = (REPO / "docs" / "engines.md").read_text()
    assert table in docs  # the table in the docs is this script's output
    gb = memory.GB
    for run in memory.RUNS:
        p = memory.phases(run)
        assert p["sync"] < p["sync_all_awake"]  # weights first: the KV cache is not allocated during the sync
        assert p["kv_needed"] < p["kv"]  # a step's answers fit the KV cache left at utilization 0.3
    fsdp_7b = memory.phases(memory.RUNS[3])
    assert round((fsdp_7b["sync_whole_gather"] - fsdp_7b["sync"]) / gb, 1) == 33.4  # one unit at a time + weights first
    # the R1-Distill context (131,072 tokens) at 28,672 bytes a token: 3.76 GB of KV for one sequence
    assert memory.R1_DISTILL_QWEN_1_5B.kv_bytes_per_token() * 131072 == 3_758_096_384
