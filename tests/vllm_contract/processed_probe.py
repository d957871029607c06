"""Run by ``test_processed_logprobs.py`` in a subprocess with one vLLM release on ``PYTHONPATH``.

``python processed_probe.py CASES.json OUT.json``: for each case (float32 logits [n, V], temperature,
top_k, top_p), the log-softmax vLLM returns as ``processed_logprobs``, computed by vLLM's own code on a
CPU: ``apply_top_k_top_p_pytorch`` of the tempered logits (the masking every supported release applies
before its log-softmax), and, where the release has it, ``TopKTopPSampler(logprobs_mode=
"processed_logprobs").forward_native`` (the v1 sampler's own path, 0.17-0.28).
"""

from __future__ import annotations

import json
import sys


def main(cases_path: str, out_path: str) -> None:
    import torch
    import vllm
    from vllm.v1.sample.ops import topk_topp_sampler as ops

    cases = json.loads(open(cases_path).read())
    results = []
    for case in cases:
        logits = torch.tensor(case["logits"], dtype=torch.float32) / case["temperature"]  # vLLM: temperature first
        n = logits.shape[0]
        k = torch.full((n,), case["top_k"], dtype=torch.long) if case["top_k"] else None
        p = torch.full((n,), case["top_p"], dtype=torch.float32) if case["top_p"] < 1 else None
        out = {"pytorch": ops.apply_top_k_top_p_pytorch(logits.clone(), k, p).log_softmax(-1).tolist()}
        if hasattr(ops, "TopKTopPSampler"):
            try:
                sampler = ops.TopKTopPSampler(logprobs_mode="processed_logprobs")
                out["sampler"] = sampler.forward_native(logits.clone(), {}, k, p)[1].tolist()
            except Exception as e:  # reported: the test names the release that could not run it
                out["sampler_error"] = f"{type(e).__name__}: {e}"
        results.append(out)
    with open(out_path, "w") as f:
        json.dump({"version": vllm.__version__, "results": results}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
