"""Contract: gpgrl's :func:`processed_logprobs` equals vLLM's ``processed_logprobs``, judged by vLLM's code.

The importance correction compares the engine's log-prob of each sampled token with the trainer's of the
same distribution; that is only "like with like" if the trainer's temperature / top-k / top-p / renormalisation
is vLLM's. ``processed_probe.py`` runs each release's own masking (and its v1 sampler's
``forward_native`` where the release has one) on a CPU; log-probs are compared for every vocabulary entry,
``-inf`` (outside the kept set) included. Skips like ``test_vllm_contract.py`` when a release is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpgrl.models.logprobs import processed_logprobs

pytestmark = pytest.mark.vllm_contract

HERE = Path(__file__).parent
ROOT = Path(os.environ.get("GPGRL_VLLM_CONTRACT_DIR", Path.home() / ".cache" / "gpgrl" / "vllm-contract"))
VERSIONS = [v.strip() for v in (HERE / "versions.txt").read_text().splitlines() if v.strip() and not v.startswith("#")]


def cases() -> list[dict]:
    """Random logits at the RS recipes' settings and around them, plus exact ties at the k-th logit."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for temperature, top_k, top_p in [(0.7, 50, 1.0), (0.7, 5, 1.0), (1.0, 0, 0.9), (0.6, 0, 0.95), (1.3, 20, 0.8),
                                      (0.7, 0, 1.0), (1.0, 1, 1.0)]:
        out.append({"logits": (torch.randn(16, 257, generator=gen) * 3).tolist(), "temperature": temperature,
                    "top_k": top_k, "top_p": top_p})
    tied = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]])
    out.append({"logits": tied.tolist(), "temperature": 1.0, "top_k": 2, "top_p": 1.0})  # ties with the 2nd stay
    return out


@pytest.fixture(scope="module", params=VERSIONS)
def vllm_results(request, tmp_path_factory):
    version = request.param
    folder = ROOT / f"vllm-{version}"
    if not (folder / ".complete").exists() or not (ROOT / "deps" / ".complete").exists():
        message = f"vLLM {version} is not prepared: run `bash tests/vllm_contract/install.sh`"
        if os.environ.get("GPGRL_REQUIRE_VLLM_CONTRACT") == "1" or os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tmp = tmp_path_factory.mktemp(f"processed-{version}")
    (tmp / "cases.json").write_text(json.dumps(cases()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "deps")]),
           "VLLM_LOGGING_LEVEL": "ERROR", "TORCHDYNAMO_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-W", "ignore", str(HERE / "processed_probe.py"), str(tmp / "cases.json"),
                           str(tmp / "out.json")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads((tmp / "out.json").read_text())
    assert facts["version"] == version
    return version, facts["results"]


def test_processed_logprobs_are_vllms_for_every_token(vllm_results):
    version, results = vllm_results
    paths = 0
    for case, got in zip(cases(), results, strict=True):
        logits = torch.tensor(case["logits"])
        n, V = logits.shape
        # gpgrl's log-prob of every vocabulary entry as the sampled token: [n, V]
        mine = torch.stack([processed_logprobs(logits, torch.full((n,), v), case["temperature"], case["top_k"],
                                               case["top_p"]) for v in range(V)], dim=1)
        for path in ("pytorch", "sampler"):
            if path not in got:
                continue
            paths += 1
            theirs = torch.tensor(got[path])
            assert torch.equal(torch.isinf(mine), torch.isinf(theirs)), (version, path, case["top_k"], case["top_p"])
            finite = torch.isfinite(theirs)
            torch.testing.assert_close(mine[finite], theirs[finite], atol=2e-5, rtol=0)
        if case["top_k"] == 2 and V == 6:  # the tie case: vLLM keeps every logit equal to the k-th
            assert torch.isfinite(mine).sum(-1).tolist() == [4, 4]
    assert paths >= len(results)
    if version != "0.34.0":  # the v1 TopKTopPSampler ran too (0.34 moved sampling into the model runner)
        assert all("sampler" in r for r in results), [r.get("sampler_error") for r in results]
