"""The vLLM engines against stand-ins of exactly the vLLM surface they use (no GPU here).

* the server engine against a stand-in HTTP server on 127.0.0.1 with the routes it calls (``/v1/models``,
  ``/v1/completions``, ``/get_world_size`` and the weight-transfer routes), backed by a tiny transformers
  model, with a loopback in place of NCCL for the tensors;
* the colocated engine against a stand-in ``vllm.LLM`` (``generate``, ``sleep``, ``wake_up``,
  ``reset_prefix_cache`` and ``llm_engine.model_executor.driver_worker.model_runner.model.load_weights``).

Tests against real vLLM are marked ``gpu`` and skipped without one.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import torch

from gpgrl.models.logprobs import completion_logprobs
from gpgrl.models.tiny import build_char_tokenizer, build_tiny_model
from gpgrl.rollout.engine import SamplingParams, left_pad
from gpgrl.rollout.vllm import EngineError, VLLMColocatedEngine, VLLMServerEngine, vllm_named_parameters

TOK = build_char_tokenizer()
EOS = TOK.eos_token_id


def sample(model, ids: list[int], n: int, max_tokens: int, temperature: float, seed: int):
    """n samples of up to max_tokens from ``model`` after ``ids``, with each token's sampling log-prob."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        seq, logps = list(ids), []
        for _ in range(max_tokens):
            with torch.no_grad():
                logits = model(torch.tensor([seq])).logits[0, -1].float() / temperature
            lp = torch.log_softmax(logits, -1)
            token = int(torch.multinomial(lp.exp(), 1, generator=gen))
            seq.append(token)
            logps.append(float(lp[token]))
            if token == EOS:
                break
        out.append((seq[len(ids):], logps))
    return out


class Loopback:
    """The weight data plane in the tests: tensors handed over in order (NCCL's place on GPUs)."""

    def __init__(self):
        self.inits, self.box = [], []
        self.ready = threading.Event()

    def init(self, master_address, master_port, world_size):
        self.inits.append((master_address, master_port, world_size))

    def send(self, tensors):
        self.box = [(n, t.detach().clone()) for n, t in tensors]
        self.ready.set()


class StandInServer:
    """`vllm serve` as far as the engine can tell: its routes, a tiny model behind them."""

    def __init__(self, model, transport: Loopback, max_model_len=64):
        self.model, self.transport, self.max_model_len = model.eval(), transport, max_model_len
        self.calls: list[tuple[str, dict]] = []
        self.hang = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, payload, code=200):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                server.calls.append((self.path, {}))
                if self.path == "/v1/models":
                    return self._reply({"data": [{"id": "tiny", "max_model_len": server.max_model_len}]})
                if self.path == "/get_world_size":
                    return self._reply({"world_size": 1})
                self._reply({"detail": "Not Found"}, 404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                server.calls.append((self.path, body))
                if server.hang:
                    time.sleep(60)
                if self.path == "/v1/completions":
                    return self._reply(server.complete(body))
                if self.path == "/update_weights":
                    server.transport.ready.wait(30)  # the workers receive while this call is open
                    names = body["update_info"]["names"]
                    assert [n for n, _ in server.transport.box] == names, "tensors not in the announced order"
                    state = dict(server.model.named_parameters())
                    with torch.no_grad():
                        for name, tensor in server.transport.box:
                            state[name].copy_(tensor)
                    server.transport.ready.clear()
                    return self._reply({"message": "Weights updated"})
                if self.path in ("/init_weight_transfer_engine", "/start_weight_update", "/finish_weight_update"):
                    return self._reply({"message": "ok"})
                self._reply({"detail": "Not Found"}, 404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def complete(self, body):
        choices = []
        for p, ids in enumerate(body["prompt"]):
            for j, (tokens, logps) in enumerate(sample(self.model, ids, body["n"], body["max_tokens"],
                                                       body["temperature"], seed=17 * p)):
                choices.append({"index": p * body["n"] + j, "token_ids": tokens,
                                "logprobs": {"token_logprobs": logps},
                                "finish_reason": "stop" if tokens[-1] == EOS else "length"})
        return {"choices": choices[::-1]}  # any order: the engine sorts by index

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    transport = Loopback()
    s = StandInServer(build_tiny_model(TOK, seed=5), transport)
    yield s
    s.close()


def test_server_groups_logprobs_and_eos(server):
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    assert (engine.model_name, engine.max_model_len) == ("tiny", 64)
    prompts = [TOK("12+3=")["input_ids"], TOK("4+5=")["input_ids"]]
    batch = engine.generate(prompts, SamplingParams(max_new_tokens=6, temperature=1.0), num_samples=3)
    assert len(batch) == 6
    for g, ids in enumerate(prompts):  # rows g*3..g*3+2 are prompt g's
        for row in range(3 * g, 3 * g + 3):
            assert batch.prompt_ids[row][batch.prompt_mask[row].bool()].tolist() == ids
    # the server's log-probs are the model's own at temperature 1: what the trainer recomputes
    with torch.no_grad():
        mine, _ = completion_logprobs(server.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(batch.sampling_logprobs[mask], mine[mask], atol=1e-4, rtol=1e-4)
    for row in range(6):  # an answer ends at its first EOS or is truncated at the budget
        n = int(batch.completion_mask[row].sum())
        ended = batch.completion_ids[row, n - 1].item() == EOS
        assert ended != bool(batch.truncated[row]) and (ended or n == 6)
    body = next(b for path, b in server.calls if path == "/v1/completions")
    assert body["n"] == 3 and body["return_token_ids"] and body["logprobs"] == 0 and body["top_k"] == -1


def test_a_prompt_over_the_context_is_refused_before_sending(server):
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    with pytest.raises(EngineError, match=r"a prompt of 70 tokens does not fit vllm_server .* context of 64 tokens"):
        engine.generate([[5] * 70], SamplingParams(max_new_tokens=4), num_samples=2)
    assert not any(path == "/v1/completions" for path, _ in server.calls)


def test_a_server_that_stops_answering_is_an_error_within_the_timeout(server):
    engine = VLLMServerEngine(server.url, TOK, timeout=1.0, transport=server.transport)
    server.hang = True
    start = time.monotonic()
    with pytest.raises(EngineError, match=r"did not answer POST /v1/completions within 1 s"):
        engine.generate([TOK("1+1=")["input_ids"]], SamplingParams(max_new_tokens=4), num_samples=2)
    assert time.monotonic() - start < 30.0  # the timeout, not the server's 60 s


def _step(model):
    """An optimizer step's worth of change: every parameter moves."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))


def test_server_weights_equal_the_trainers_after_a_sync(server):
    trainer_model = build_tiny_model(TOK, seed=0)
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    _step(trainer_model)
    engine.update_weights(trainer_model)
    engine.update_weights(trainer_model)  # a second sync reuses the transfer group
    for (name, p), (_, q) in zip(trainer_model.named_parameters(), server.model.named_parameters()):
        assert torch.equal(p, q), name
    routes = [path for path, _ in server.calls if path != "/v1/models"]
    assert routes == ["/get_world_size", "/init_weight_transfer_engine", "/start_weight_update", "/update_weights",
                      "/finish_weight_update", "/start_weight_update", "/update_weights", "/finish_weight_update"]
    assert server.transport.inits == [("127.0.0.1", 51216, 2)]  # the trainer and the server's one worker
    init = next(b for path, b in server.calls if path == "/init_weight_transfer_engine")["init_info"]
    assert init["rank_offset"] == 1 and init["world_size"] == 2
    info = next(b for path, b in server.calls if path == "/update_weights")["update_info"]
    named = dict(trainer_model.named_parameters())
    assert info["dtype_names"][0] == "float32" and info["shapes"][0] == list(named[info["names"][0]].shape)


def test_lora_weights_are_merged_and_sent_under_the_base_names(server):
    peft = pytest.importorskip("peft")
    base = build_tiny_model(TOK, seed=0)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a trained adapter (B starts at 0, which would merge to no change)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    engine.update_weights(lora)
    merged = lora.merge_and_unload()
    for (name, p), (_, q) in zip(merged.named_parameters(), server.model.named_parameters()):
        torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)
    names = next(b for path, b in server.calls if path == "/update_weights")["update_info"]["names"]
    assert "model.layers.0.self_attn.q_proj.weight" in names and not any("lora" in n for n in names)


def test_training_through_the_server_engine_with_importance_weights(server, tmp_path):
    from gpgrl.train.trainer import Trainer
    from helpers import tiny_config

    cfg = tiny_config(tmp_path, rewards=[{"name": "helpers:count_sevens"}],
                      rollout={"group_size": 4, "max_completion_length": 6, "importance_cap": 2.0},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0}, train={"steps": 2, "prompts_per_step": 2})
    model = build_tiny_model(TOK, seed=5)  # the server starts from the same weights
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    history = Trainer.from_config(cfg, model=model, tokenizer=TOK, engine=engine).train()
    for m in history:
        assert m["optim/skipped"] == 0.0
        assert 0 < m["is/weight_mean"] <= 2.0 and m["is/logp_diff_abs"] < 1e-3  # one model: almost no mismatch
    for (name, p), (_, q) in zip(model.named_parameters(), server.model.named_parameters()):
        assert torch.equal(p, q), name  # synced after every step


# --- colocated -------------------------------------------------------------------------------------------


class StandInLLM:
    """`vllm.LLM` as far as the colocated engine can tell, backed by a tiny model."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.model = build_tiny_model(TOK, seed=5).eval()
        self.events: list[str] = []
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self._load))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(model_runner=runner)))

    def _load(self, weights):
        state = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights:
                state[name].copy_(tensor)
        self.events.append("load")

    def generate(self, requests, sampling_params, use_tqdm=True):
        self.events.append("generate")
        outs = []
        for p, req in enumerate(requests):
            samples = []
            for tokens, logps in sample(self.model, req["prompt_token_ids"], sampling_params.n,
                                        sampling_params.max_tokens, sampling_params.temperature, seed=31 * p):
                samples.append(SimpleNamespace(token_ids=tokens, logprobs=[
                    {t: SimpleNamespace(logprob=lp)} for t, lp in zip(tokens, logps)]))
            outs.append(SimpleNamespace(outputs=samples))
        return outs

    def sleep(self, level=1):
        self.events.append(f"sleep{level}")

    def wake_up(self):
        self.events.append("wake")

    def reset_prefix_cache(self):
        self.events.append("reset")


def test_colocated_engine_generates_syncs_and_sleeps():
    engine = VLLMColocatedEngine("tiny", TOK, gpu_memory_utilization=0.25, llm_factory=StandInLLM,
                                 sampling_factory=lambda **kw: SimpleNamespace(**kw))
    llm = engine.llm
    assert llm.kwargs["distributed_executor_backend"] == "external_launcher" and llm.kwargs["enable_sleep_mode"]
    prompts = [TOK("12+3=")["input_ids"], TOK("4+5=")["input_ids"]]
    batch = engine.generate(prompts, SamplingParams(max_new_tokens=5, temperature=1.0), num_samples=2)
    assert [batch.prompt_ids[r][batch.prompt_mask[r].bool()].tolist() for r in range(4)] == [prompts[0]] * 2 + [prompts[1]] * 2
    with torch.no_grad():
        mine, _ = completion_logprobs(llm.model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(batch.sampling_logprobs[mask], mine[mask], atol=1e-4, rtol=1e-4)
    trainer_model = build_tiny_model(TOK, seed=0)
    _step(trainer_model)
    engine.sleep()  # the trainer's update
    engine.wake_up()
    engine.update_weights(trainer_model)
    for (name, p), (_, q) in zip(trainer_model.named_parameters(), llm.model.named_parameters()):
        assert torch.equal(p, q), name
    n_params = len(list(trainer_model.parameters()))
    assert llm.events[-n_params - 1 :] == ["load"] * n_params + ["reset"]  # one parameter at a time, then a fresh cache
    assert "sleep1" in llm.events and llm.events.index("sleep1") < llm.events.index("wake")


def test_peft_names_for_vllm():
    named = [("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight", 1),
             ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", 2),
             ("base_model.model.lm_head.weight", 3)]
    assert list(vllm_named_parameters(None, iter(named))) == [("model.layers.0.self_attn.q_proj.weight", 1),
                                                               ("lm_head.weight", 3)]


@pytest.mark.gpu
def test_real_vllm_colocated_engine_matches_the_trainer():  # pragma: no cover - needs a GPU and vLLM
    pytest.importorskip("vllm")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = "Qwen/Qwen2.5-0.5B-Instruct"
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.bfloat16).cuda()
    engine = VLLMColocatedEngine(name, tok, gpu_memory_utilization=0.3, model=model)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}], add_generation_prompt=True)
    batch = engine.generate([ids], SamplingParams(max_new_tokens=32, temperature=1.0), num_samples=4).to("cuda")
    with torch.no_grad():
        mine, _ = completion_logprobs(model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    assert (batch.sampling_logprobs[mask] - mine[mask]).abs().mean() < 0.05
    p_ids, _ = left_pad([ids], tok.pad_token_id)
    assert p_ids.shape[1] == len(ids)
