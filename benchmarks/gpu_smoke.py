"""GPU smoke test of the vLLM engines: the one command to run the day a GPU is lent.

    python benchmarks/gpu_smoke.py                     # colocated engine, vision prompts, a `vllm serve` server
    python benchmarks/gpu_smoke.py --only colocated    # one part (colocated | vision | server)
    python benchmarks/gpu_smoke.py --model DIR --vision-model DIR --out runs/gpu-smoke
    python benchmarks/gpu_smoke.py --plan              # print what would run and exit (no GPU needed)

Needs one CUDA GPU, vLLM (``pip install -e ".[vllm]"``) and the models (Hub ids or local folders;
defaults Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen2-VL-2B-Instruct). Everything runs in bf16. What it
checks, each printed as one PASS / FAIL line with its numbers (and written to ``OUT/gpu_smoke.json``):

* colocated (``rollout.engine: vllm``): a few GPG steps through the trainer with the engine colocated;
  the sampled log-probs agree with the trainer's recomputed ones (mean |diff| and the spread of the
  importance ratio); greedy outputs change after a sync of altered weights and come back after a sync
  of the originals; a prompt served before a sync is served with the new weights after it (the prefix
  cache was reset); sleep frees the engine's memory and wake-up takes it back.
* vision: Qwen2-VL prompts with one and two images reach vLLM with one placeholder per image, and the
  sampled log-probs agree with the trainer's (images included), before and after a sync of changed
  weights (the parameter names map onto vLLM's model; the encoder cache is reset).
* server (``rollout.engine: vllm_server``): starts ``vllm serve`` on this machine, generates, checks the
  log-probs and that every sampling field is sent. The weight sync over NCCL needs the server and the
  trainer on different GPUs (NCCL refuses two ranks on one device): with one GPU it is reported as
  skipped, with two the server gets GPU 1 and a sync is checked like the colocated one.

The decisions (tolerances, memory, placeholders, the server command) are plain functions, tested on a
CPU in tests/test_gpu_smoke.py; only the parts that drive a GPU are not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PARTS = ("colocated", "vision", "server")
LOGP_MEAN_TOL = 0.05  # bf16 kernels differ: mean |log p_vllm - log p_trainer| per token
RATIO_STD_TOL = 0.10  # spread of exp(log p_trainer - log p_vllm) over tokens


@dataclass
class Check:
    name: str
    status: str  # PASS | FAIL | SKIP
    detail: str


def logprob_agreement(engine_logps: torch.Tensor, trainer_logps: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean |diff| of per-token log-probs and the importance ratio's mean, spread and maximum, over ``mask``.

    >>> stats = logprob_agreement(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.1, -2.0]]), torch.tensor([[1, 1]]))
    >>> round(stats["mean_abs_diff"], 3), round(stats["ratio_max"], 3)
    (0.05, 1.0)
    """
    m = mask.bool()
    diff = (trainer_logps.float() - engine_logps.float())[m]
    ratio = diff.exp()
    return {"tokens": int(m.sum()), "mean_abs_diff": float(diff.abs().mean()), "ratio_mean": float(ratio.mean()),
            "ratio_std": float(ratio.std()) if ratio.numel() > 1 else 0.0, "ratio_max": float(ratio.max())}


def agreement_check(name: str, stats: dict[str, float]) -> Check:
    ok = stats["tokens"] > 0 and stats["mean_abs_diff"] < LOGP_MEAN_TOL and stats["ratio_std"] < RATIO_STD_TOL
    detail = (f"{stats['tokens']} tokens: mean |diff| {stats['mean_abs_diff']:.4f} (< {LOGP_MEAN_TOL}), ratio mean "
              f"{stats['ratio_mean']:.4f} std {stats['ratio_std']:.4f} (< {RATIO_STD_TOL}) max {stats['ratio_max']:.3f}")
    return Check(name, "PASS" if ok else "FAIL", detail)


def memory_check(free_awake: int, free_asleep: int, free_woken: int, weights_bytes: int) -> Check:
    """Sleep must free at least the weights' size; wake-up must take back at least that much again.

    >>> memory_check(10 * 2**30, 14 * 2**30, 10 * 2**30, 2**30).status
    'PASS'
    >>> memory_check(10 * 2**30, 10 * 2**30 + 2**20, 10 * 2**30, 2**30).status
    'FAIL'
    """
    freed, taken = free_asleep - free_awake, free_asleep - free_woken
    ok = freed >= weights_bytes and taken >= weights_bytes
    gib = 2**30
    return Check("colocated: sleep frees, wake-up restores", "PASS" if ok else "FAIL",
                 f"sleep freed {freed / gib:.2f} GiB, wake-up took {taken / gib:.2f} GiB (weights {weights_bytes / gib:.2f} GiB)")


def placeholder_check(sent_ids: list[int], expanded_ids: list[int], image_token_id: int, n_images: int) -> Check:
    """The prompt vLLM got has one placeholder per image; the trainer's keeps the processor's expansion.

    >>> placeholder_check([1, 9, 2], [1, 9, 9, 9, 9, 2], 9, 1).status
    'PASS'
    """
    sent, expanded = sent_ids.count(image_token_id), expanded_ids.count(image_token_id)
    ok = sent == n_images and expanded > n_images
    return Check(f"vision: {n_images} image(s), one placeholder each", "PASS" if ok else "FAIL",
                 f"{sent} placeholder(s) sent to vLLM, {expanded} in the trainer's prompt")


def changed_check(before: list[list[int]], altered: list[list[int]], restored: list[list[int]]) -> Check:
    """Greedy outputs differ under altered weights and come back with the originals.

    >>> changed_check([[1, 2]], [[3, 3]], [[1, 2]]).status
    'PASS'
    """
    ok = altered != before and restored == before
    return Check("colocated: outputs follow each sync", "PASS" if ok else "FAIL",
                 f"altered weights changed {sum(a != b for a, b in zip(altered, before))}/{len(before)} greedy answers; "
                 f"original weights restored {sum(r == b for r, b in zip(restored, before))}/{len(before)}")


def serve_command(model: str, port: int, max_model_len: int, gpu_memory_utilization: float) -> list[str]:
    """The ``vllm serve`` command the server part starts (docs/engines.md gives the same)."""
    return ["vllm", "serve", model, "--port", str(port), "--max-model-len", str(max_model_len), "--dtype", "bfloat16",
            "--gpu-memory-utilization", str(gpu_memory_utilization), "--weight-transfer-config", '{"backend": "nccl"}',
            "--logprobs-mode", "processed_logprobs"]


def wait_for_server(url: str, timeout: float, poll: float = 2.0, process: subprocess.Popen | None = None) -> float:
    """Seconds until ``url``/health answers 200; TimeoutError naming the URL after ``timeout`` s."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"vllm serve exited with code {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url + "/health", timeout=poll) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(poll)
    raise TimeoutError(f"{url}/health did not answer within {timeout:g} s")


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{c.status:4}  {c.name:<{width}}  {c.detail}" for c in checks)


# ------------------------------------------------------------------------------------- the GPU parts
def _smoke_config(model: str, out: Path, engine: str, steps: int, **rollout):
    from gpgrl.config import from_dict

    return from_dict({
        "model": {"name_or_path": model}, "data": {"dataset": "builtin:arithmetic", "max_samples": 64},
        "rewards": [{"name": "accuracy"}, {"name": "format"}],
        "rollout": {"engine": engine, "group_size": 8, "max_completion_length": 64, "temperature": 1.0,
                    "importance_cap": 2.0, "vllm_gpu_memory_utilization": 0.3, **rollout},
        "optim": {"lr": 1e-6}, "train": {"steps": steps, "prompts_per_step": 4, "micro_batch_size": 8,
                                        "output_dir": str(out), "overwrite": True, "mixed_precision": "bf16"},
        "log": {"progress": False, "sample_every": 0, "report_to": ["jsonl"]}})


def _recomputed(model, batch, vision: bool = False) -> torch.Tensor:
    """The trainer's log-probs of the batch's completions (at temperature 1, the smoke test's sampling one)."""
    from gpgrl.models.logprobs import completion_logprobs

    batch = batch.to("cuda")
    with torch.no_grad():
        logps, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                       batch.completion_mask, model_inputs=batch.model_inputs_for(),
                                       use_position_ids=not vision)  # Qwen2-VL computes its own 3-D positions
    return logps.cpu()


def run_colocated(args) -> list[Check]:
    from gpgrl.rollout.engine import SamplingParams
    from gpgrl.train.trainer import Trainer

    checks = []
    trainer = Trainer.from_config(_smoke_config(args.model, args.out / "colocated", "vllm", args.steps))
    history = trainer.train()
    diffs = [m["is/logp_diff_abs"] for m in history]
    ok = len(history) == args.steps and all(d < LOGP_MEAN_TOL for d in diffs)
    checks.append(Check(f"colocated: {args.steps} GPG steps", "PASS" if ok else "FAIL",
                        "is/logp_diff_abs per step " + ", ".join(f"{d:.4f}" for d in diffs)))
    engine, model = trainer.engine, trainer.acc.unwrap_model(trainer.model)
    prompts = [trainer.tokenizer(f"What is {a}+{b}? Answer:")["input_ids"] for a, b in ((12, 30), (7, 8), (45, 21))]
    batch = engine.generate(prompts, SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
    checks.append(agreement_check("colocated: sampled vs recomputed log-probs",
                                  logprob_agreement(batch.sampling_logprobs, _recomputed(model, batch), batch.completion_mask)))
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0)

    def answers():
        b = engine.generate(prompts, greedy, num_samples=1)
        return [row[m.bool()].tolist() for row, m in zip(b.completion_ids, b.completion_mask)]

    before = answers()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(-1.0)  # every greedy choice changes
    engine.update_weights(model)
    altered = answers()
    stale = engine.generate(prompts[:1], SamplingParams(max_new_tokens=16, temperature=1.0), num_samples=4)
    checks.append(agreement_check("colocated: a prompt seen before a sync uses the new weights (prefix cache reset)",
                                  logprob_agreement(stale.sampling_logprobs, _recomputed(model, stale),
                                                    stale.completion_mask)))
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(original[n])
    engine.update_weights(model)
    checks.append(changed_check(before, altered, answers()))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    torch.cuda.synchronize()
    free_awake = torch.cuda.mem_get_info()[0]
    engine.sleep()
    free_asleep = torch.cuda.mem_get_info()[0]
    engine.wake_up()
    free_woken = torch.cuda.mem_get_info()[0]
    checks.append(memory_check(free_awake, free_asleep, free_woken, weights))
    engine.sleep()
    return checks


def run_vision(args) -> list[Check]:
    from PIL import Image

    from gpgrl.data.prompts import PromptBuilder
    from gpgrl.models.vision import load_processor, load_vision_policy
    from gpgrl.rollout.engine import SamplingParams
    from gpgrl.rollout.vllm import VLLMColocatedEngine

    processor = load_processor(args.vision_model)
    model = load_vision_policy(args.vision_model, dtype=torch.bfloat16).to("cuda").eval()
    builder = PromptBuilder(processor, "plain")
    one, _ = builder.build("What colour is the square?", [Image.new("RGB", (224, 224), "red")])
    two, _ = builder.build("Are the two shapes the same colour?", [Image.new("RGB", (224, 224), "blue"),
                                                                    Image.new("RGB", (112, 224), "blue")])
    engine = VLLMColocatedEngine(args.vision_model, processor.tokenizer, model=model, gpu_memory_utilization=0.3,
                                 max_model_len=4096)
    checks = [placeholder_check(engine.request(p)["prompt_token_ids"], p.ids, engine.image_token_id, len(p.images))
              for p in (one, two)]
    batch = engine.generate([one, two], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
    checks.append(agreement_check("vision: sampled vs recomputed log-probs (with images)",
                                  logprob_agreement(batch.sampling_logprobs, _recomputed(model, batch, vision=True),
                                                    batch.completion_mask)))
    with torch.no_grad():  # a sync of changed weights (vision tower and language model) must reach vLLM
        for p in model.parameters():
            p.mul_(1.01)
    engine.update_weights(model)
    after = engine.generate([one, two], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
    checks.append(agreement_check("vision: after a sync, log-probs are the new weights' (names map, caches reset)",
                                  logprob_agreement(after.sampling_logprobs, _recomputed(model, after, vision=True),
                                                    after.completion_mask)))
    engine.sleep()
    return checks


def run_server(args) -> list[Check]:
    from gpgrl.models.loading import load_policy, load_tokenizer
    from gpgrl.rollout.engine import SamplingParams
    from gpgrl.rollout.vllm import VLLMServerEngine

    two_gpus = torch.cuda.device_count() > 1
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "CUDA_VISIBLE_DEVICES": "1" if two_gpus else "0"}
    url = f"http://127.0.0.1:{args.port}"
    log = open(args.out / "vllm_serve.log", "w")  # the server writes to it until the finally below
    server = subprocess.Popen(serve_command(args.model, args.port, 4096, 0.3 if two_gpus else 0.25), env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    checks = []
    try:
        seconds = wait_for_server(url, args.server_timeout, process=server)
        checks.append(Check("server: vllm serve answers", "PASS", f"/health after {seconds:.0f} s"))
        tokenizer = load_tokenizer(args.model)
        model = load_policy(args.model, dtype="bfloat16").to("cuda").eval()
        engine = VLLMServerEngine(url, tokenizer, timeout=300, model=model, sync_weights=two_gpus)
        prompts = [tokenizer(f"What is {a}+{b}? Answer:")["input_ids"] for a, b in ((12, 30), (7, 8))]
        batch = engine.generate(prompts, SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4)
        checks.append(agreement_check("server: sampled vs recomputed log-probs",
                                      logprob_agreement(batch.sampling_logprobs, _recomputed(model, batch),
                                                        batch.completion_mask)))
        if not two_gpus:
            checks.append(Check("server: weight sync over NCCL", "SKIP", "needs 2 GPUs (NCCL refuses two ranks on one)"))
            return checks
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(-1.0)
        engine.update_weights(model)
        after = engine.generate(prompts, SamplingParams(max_new_tokens=16, temperature=1.0), num_samples=4)
        checks.append(agreement_check("server: after a sync, log-probs are the new weights' (prefix cache reset)",
                                      logprob_agreement(after.sampling_logprobs, _recomputed(model, after),
                                                        after.completion_mask)))
        return checks
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


RUNNERS = {"colocated": run_colocated, "vision": run_vision, "server": run_server}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, action="append", help="run this part only (repeatable)")
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct", help="text model (Hub id or folder)")
    parser.add_argument("--vision-model", default="Qwen/Qwen2-VL-2B-Instruct", help="vision model (Hub id or folder)")
    parser.add_argument("--steps", type=int, default=3, help="GPG steps of the colocated part (default 3)")
    parser.add_argument("--port", type=int, default=8765, help="port of the `vllm serve` the server part starts")
    parser.add_argument("--server-timeout", type=float, default=600, help="seconds to wait for `vllm serve` to start")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-smoke"), help="folder for the results and logs")
    parser.add_argument("--plan", action="store_true", help="print what would run and exit")
    args = parser.parse_args(argv)
    parts = args.only or list(PARTS)
    if args.plan:
        print(f"parts: {', '.join(parts)}; text model {args.model}; vision model {args.vision_model}")
        print("server command: " + " ".join(serve_command(args.model, args.port, 4096, 0.25)))
        return 0
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA GPU here; run it on a GPU machine (--plan shows what it would do)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    checks: list[Check] = []
    for part in parts:
        print(f"gpu_smoke: {part} ...", flush=True)
        try:
            checks += RUNNERS[part](args)
        except Exception as e:  # one part failing must not hide the others' results
            checks.append(Check(f"{part}: ran", "FAIL", f"{type(e).__name__}: {e}"))
        print(report(checks), flush=True)
    (args.out / "gpu_smoke.json").write_text(json.dumps([asdict(c) for c in checks], indent=1))
    print(f"\n{report(checks)}\nwrote {args.out / 'gpu_smoke.json'}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
