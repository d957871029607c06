"""Multi-turn episodes on the vLLM engines: each turn's prompt is the token ids sampled and observed so far,
sent as ids (never re-tokenised text), and the engines' log-probs line up with the policy's tokens only.

The colocated engine runs as a user runs it (``gpgrl train --rollout.engine vllm`` in a subprocess whose
``import vllm`` finds the CPU stand-in, every call logged); the server engine talks to the stand-in server
of tests/test_vllm_server.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vllm_standin
from gpgrl.models.logprobs import completion_logprobs
from gpgrl.models.tiny import build_tiny_model
from gpgrl.rollout.engine import SamplingParams
from gpgrl.rollout.episodes import TurnRenderer, run_episodes
from gpgrl.rollout.vllm import VLLMServerEngine
from test_vllm_engines import TOK
from test_vllm_server import Loopback, StandInServer

REPO = Path(__file__).resolve().parents[1]
#: Token ids that end a turn besides EOS: every digit, so that a random tiny model's turns end in a few tokens.
TURN_ENDS = [TOK.convert_tokens_to_ids(c) for c in "0123456789"]


def test_the_colocated_engine_runs_episodes_from_the_ids_sampled(tmp_path):
    from gpgrl.models.tiny import save_tiny_model

    model = save_tiny_model(tmp_path / "base", seed=3)
    config = json.loads((model / "generation_config.json").read_text())
    config["eos_token_id"] = [TOK.eos_token_id, *TURN_ENDS]  # what the engines stop at: the model's own list
    (model / "generation_config.json").write_text(json.dumps(config))
    out, log = tmp_path / "run", tmp_path / "calls.jsonl"
    args = ["train", "--model", str(model), "--dataset", "builtin:arithmetic", "--rewards",
            "vllm_standin:distinct_characters", "--rollout.engine", "vllm", "--rollout.group_size", "2",
            "--rollout.max_completion_length", "80", "--rollout.environment", "vllm_standin:TwoTurns",
            "--rollout.temperature", "1.0", "--data.max_prompt_length", "48", "--train.prompts_per_step", "2",
            "--train.steps", "2", "--algorithm.resample_threshold", "0", "--optim.lr", "0.01",
            "--output_dir", str(out), "--log.progress", "false", "--log.sample_every", "0", "--log.report_to", "jsonl"]
    done = subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=vllm_standin.subprocess_env(log), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    generates = [c for c in vllm_standin.record().read_log(log) if c["call"] == "generate"]
    assert len(generates) == 4  # two steps, one call per turn: G per prompt, then every live episode at once
    observation = TurnRenderer(TOK).ids([{"role": "user", "content": "again"}], TURN_ENDS[0])
    for step in (1, 2):
        first, second = generates[2 * step - 2], generates[2 * step - 1]
        mine = [r for r in rows if r["step"] == step]
        assert first["n_requests"] == 2 and first["sampling"][0]["n"] == 2
        two_turns = [r for r in mine if r["episode"]["turns"] == 2]
        assert second["n_requests"] == len(two_turns) > 0
        for r, prompt_len in zip(two_turns, second["prompt_lens"]):
            _, end = r["episode"]["turn_spans"][0]
            # the second turn's prompt: the prompt, the first turn as sampled, the observation's tokens
            assert prompt_len == len(r["prompt_ids"]) + end + len(observation)
            assert r["completion_ids"][end : end + len(observation)] == observation
            assert r["loss_mask"] == [1] * end + [0] * len(observation) + [1] * (len(r["loss_mask"]) - end
                                                                                 - len(observation))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for m, step in zip(metrics, (1, 2)):
        # one float32 model on both sides: the engine's log-probs are the trainer's on every policy token, and
        # the observation's tokens (log-prob 0 from the engine) are left out of the comparison
        assert m["is/logp_diff_abs"] < 1e-4 and m["is/capped_frac"] == 0.0, m
        assert m["rollout/num_tokens"] == sum(sum(r["loss_mask"]) for r in rows if r["step"] == step)


def test_the_server_engine_sends_every_turn_as_token_ids():
    server = StandInServer(build_tiny_model(TOK, seed=5), Loopback(), max_model_len=200)
    try:
        engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
        engine.eos_ids = [TOK.eos_token_id, *TURN_ENDS]
        prompts = [TOK("12+3=")["input_ids"], TOK("4+5=")["input_ids"]]
        batch = run_episodes(engine, prompts, [{}, {}], SamplingParams(60, 1.0), 2, vllm_standin.TwoTurns,
                             tokenizer=TOK, max_turns=3, pad_id=TOK.pad_token_id)
    finally:
        server.close()
    bodies = [body for path, body in server.calls if path == "/v1/completions"]
    assert [len(b["prompt"]) for b in bodies][:1] == [2] and bodies[0]["n"] == 2
    two_turns = [row for row, info in enumerate(batch.episodes) if info.turns == 2]
    assert len(bodies) == 2 and bodies[1]["n"] == 1 and len(bodies[1]["prompt"]) == len(two_turns) > 0
    for row, sent in zip(two_turns, bodies[1]["prompt"]):
        n = int(batch.completion_mask[row].sum())
        _, end = batch.episodes[row].turn_spans[0]
        obs = n - end - (batch.episodes[row].turn_spans[1][1] - batch.episodes[row].turn_spans[1][0])
        assert sent == prompts[row // 2] + batch.completion_ids[row, : end + obs].tolist()
    with torch.no_grad():  # the server's log-probs are the model's own, on the policy's tokens
        mine, _ = completion_logprobs(server.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    policy = batch.loss_mask.bool()
    torch.testing.assert_close(batch.sampling_logprobs[policy], mine[policy], atol=1e-4, rtol=1e-4)
    assert (batch.sampling_logprobs[~policy & batch.completion_mask.bool()] == 0).all()


@pytest.mark.slow
def test_a_warm_started_model_calls_the_calculator_through_the_vllm_standin(tmp_path):
    """The tools quickstart's warm-started model, trained as a user would with the colocated engine (the CPU
    stand-in of vLLM) and the calculator: its calls are run, their results masked, and the second turn's
    prompt is the first turn's ids plus the tool message's."""
    from gpgrl.tasks.quickstart import run

    run(tmp_path / "qs", steps=1, eval_size=8, quiet=True, tools=True,
        rl_overrides={"train": {"prompts_per_step": 4}})
    out, log = tmp_path / "run", tmp_path / "calls.jsonl"
    args = ["train", "--config", str(REPO / "recipes" / "quickstart_tools_cpu.yaml"), "--model", str(tmp_path / "qs" / "sft"),
            "--rollout.engine", "vllm", "--train.steps", "2", "--train.prompts_per_step", "4", "--output_dir", str(out),
            "--log.progress", "false", "--log.report_to", "jsonl"]
    done = subprocess.run([sys.executable, "-m", "gpgrl.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=vllm_standin.subprocess_env(log), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    called = [r for r in rows if r["episode"]["env_tokens"]]  # a call answered (not cut by the episode's budget)
    assert called, "the warm-started model never called the calculator"
    generates = [c for c in vllm_standin.record().read_log(log) if c["call"] == "generate"]
    for r in called:
        _, end = r["episode"]["turn_spans"][0]
        observed = r["episode"]["env_tokens"]
        assert r["loss_mask"][end : end + observed] == [0] * observed and "<tool_response>" in r["text"]
        assert len(r["prompt_ids"]) + end + observed in {n for g in generates for n in g["prompt_lens"]}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(m["episode/tool_calls"] > 0 for m in metrics) and all(m["is/logp_diff_abs"] < 1e-4 for m in metrics)
