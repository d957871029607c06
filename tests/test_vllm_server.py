"""The server engine (``rollout.engine: vllm_server``) against a strict stand-in of ``vllm serve`` (no GPU here).

The stand-in is an HTTP server on 127.0.0.1 backed by a tiny transformers model, with a loopback in place
of NCCL for the tensors (it listens on the rendezvous port, as vLLM's TCP store does). Like ``vllm serve``
it fills sampling fields a request omits from the model's generation config, refuses sampling settings and
``update_info`` keys vLLM refuses, serves prompts it has seen from a prefix cache until
``/reset_prefix_cache`` (which, as in vLLM 0.28+, answers ``{"success": false}`` while a request is
running; as in 0.17, an unchecked empty 200), and has vLLM's pause protocol: ``/pause?mode=wait`` lets
running requests finish, then new completions get HTTP 503 (0.34) or wait (0.17 - 0.28) until
``/resume``; ``pause=None`` is a server without those routes (404). It can hold a weight update half way
until a completion arrives, so that a completion served from half-updated weights is caught, and answer
any route with an HTTP error at once. Processes are threads sharing a stand-in accelerator whose
``reduce`` is a real rendezvous of the threads. The payloads themselves are checked against real vLLM
releases' code in ``tests/vllm_contract`` (``pytest -m vllm_contract``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gpgrl.models.logprobs import completion_logprobs
from gpgrl.models.tiny import build_tiny_model
from gpgrl.rollout.engine import SamplingParams
from gpgrl.rollout.vllm import EngineError, VLLMServerEngine
from test_vllm_engines import EOS, TOK, _step, check_sampling, sample

SERVER_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                        "frequency_penalty")
UPDATE_INFO_KEYS = {"names", "dtype_names", "shapes"}  # vLLM 0.28+: anything else is "Invalid update_info"
PAUSE_MODES = ("abort", "wait", "keep")  # vllm.v1.engine.PauseMode, 0.17 - 0.34


def fingerprint(model) -> str:
    """The exact weights of ``model`` as a short hash: equal weights, equal fingerprints."""
    h = hashlib.sha1()
    for _, p in model.named_parameters():
        h.update(p.detach().float().numpy().tobytes())
    return h.hexdigest()[:12]


class Loopback:
    """The weight data plane in the tests: tensors handed over in order (NCCL's place on GPUs). Its
    rendezvous listens on ``address:port`` for the rest of the run, as vLLM's TCP store does on rank 0."""

    def __init__(self):
        self.inits, self.box = [], []
        self.ready = threading.Event()
        self.listening: list[socket.socket] = []

    def init(self, master_address, master_port, world_size):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((master_address, master_port))  # OSError if the port is taken or the address is not this machine's
        s.listen()
        self.listening.append(s)
        self.inits.append((master_address, master_port, world_size))

    def send(self, tensors):
        self.box = [(n, t.detach().clone()) for n, t in tensors]
        self.ready.set()

    def close(self):
        for s in self.listening:
            s.close()


class StuckTransport(Loopback):
    """A data plane whose peer never comes: the rendezvous or the broadcast blocks for good."""

    def __init__(self, where):
        super().__init__()
        self.where = where

    def init(self, *args):
        if self.where == "init":
            threading.Event().wait()
        super().init(*args)

    def send(self, tensors):
        if self.where == "send":
            threading.Event().wait()
        super().send(tensors)


class StandInServer:
    """`vllm serve` as far as the engine can tell: its routes, a tiny model behind them.

    Args:
        pause: "reject" (vLLM 0.34: completions get 503 while paused), "hold" (0.17 - 0.28: they wait
            until /resume) or None (no /pause, /resume: 404).
        reset_reply: "success" (0.28+: ``{"success": bool}``) or "empty" (0.17: an unchecked empty 200).
        hold_update_s: hold /update_weights half way (half the tensors copied) until a completion starts
            sampling or this many seconds pass.
        fail: route -> HTTP code, answered at once.
    """

    def __init__(self, model, transport: Loopback, max_model_len=64, four_phase=True, generation_config=None,
                 pause="reject", reset_reply="success", hold_update_s=0.0, fail=None):
        self.model, self.transport, self.max_model_len = model.eval(), transport, max_model_len
        self.four_phase, self.pause_mode, self.reset_reply = four_phase, pause, reset_reply
        self.hold_update_s, self.fail = hold_update_s, dict(fail or {})
        # a Qwen2.5 instruct checkpoint's generation_config: what the server fills into omitted fields
        self.generation_config = generation_config or {"repetition_penalty": 1.05, "temperature": 0.7,
                                                       "top_p": 0.8, "top_k": 20}
        self.calls: list[tuple[str, dict]] = []
        self.queries: list[tuple[str, dict]] = []
        self.sampled_with: list[dict] = []
        self.served: list[str] = []  # the fingerprint of the weights each completion was sampled with
        self.turned_away = 0  # completions answered 503 while paused
        self.prefix_cache: dict[tuple, torch.nn.Module] = {}  # prompt -> the weights its cached KV came from
        self.hang = False
        self.paused = False
        self.running = 0  # completions being sampled
        self.state = threading.Condition()
        self.sampling_started = threading.Event()  # a completion began sampling (ends a held update)
        self.updating = threading.Event()  # /update_weights is under way
        self.release = threading.Event()  # completions wait for it when block_completions is set
        self.release.set()
        self.reset_failed = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, payload, code=200):
                data = b"" if payload is None else json.dumps(payload).encode()
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
                url = urllib.parse.urlsplit(self.path)
                path, query = url.path, dict(urllib.parse.parse_qsl(url.query))
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.calls.append((path, body))
                server.queries.append((path, query))
                if server.hang:
                    time.sleep(60)
                if path in server.fail:
                    return self._reply({"detail": f"{path} failed on purpose"}, server.fail[path])
                try:
                    return self._reply(*server.route(path, query, body))
                except LookupError:
                    return self._reply({"detail": "Not Found"}, 404)
                except ValueError as e:
                    return self._reply({"detail": str(e)}, 400)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def route(self, path, query, body):
        """(reply, HTTP code) for a POST."""
        if path == "/v1/completions":
            return self.complete(body)
        if path == "/update_weights":
            return self.update(body["update_info"]), 200
        if path == "/init_weight_transfer_engine":
            if set(body["init_info"]) != {"master_address", "master_port", "rank_offset", "world_size"}:
                raise ValueError(f"Invalid init_info: {sorted(body['init_info'])}")
            return {"message": "Weight transfer initialized"}, 200
        if path in ("/start_weight_update", "/finish_weight_update") and self.four_phase:
            return {"message": "ok"}, 200
        if path == "/pause" and self.pause_mode:
            mode = query.get("mode", "abort")
            if mode not in PAUSE_MODES:  # FastAPI's validation of the Literal query parameter
                return {"detail": [{"loc": ["query", "mode"], "msg": f"Input should be {PAUSE_MODES}"}]}, 422
            assert mode == "wait", "the engine asks running requests to finish, not to be cut off"
            with self.state:
                self.paused = True  # new completions are turned away (or held) from now on
                self.state.wait_for(lambda: self.running == 0, timeout=30)  # "wait": running ones finish
            return {"status": "paused"}, 200
        if path == "/resume" and self.pause_mode:
            with self.state:
                self.paused = False
                self.state.notify_all()
            return {"status": "resumed"}, 200
        if path == "/reset_prefix_cache":
            with self.state:
                ok = self.running == 0  # running requests hold blocks: the reset fails
                if ok:
                    self.prefix_cache.clear()
                else:
                    self.reset_failed.set()
            return ({"success": ok} if self.reset_reply == "success" else None), 200
        raise LookupError(path)

    def update(self, info):
        if set(info) - UPDATE_INFO_KEYS:
            raise ValueError(f"Invalid update_info: unexpected {sorted(set(info) - UPDATE_INFO_KEYS)}")
        self.updating.set()
        self.transport.ready.wait(30)  # the workers receive while this call is open
        assert [n for n, _ in self.transport.box] == info["names"], "tensors not in the announced order"
        state = dict(self.model.named_parameters())
        box = self.transport.box
        with torch.no_grad():
            for i, (name, tensor) in enumerate(box):
                if self.hold_update_s and i == len(box) // 2:
                    self.sampling_started.wait(self.hold_update_s)  # half the weights are new now
                state[name].copy_(tensor)
        self.transport.ready.clear()
        self.updating.clear()
        return {"message": "Weights updated"}

    def complete(self, body):
        with self.state:
            if self.paused and self.pause_mode == "reject":
                self.turned_away += 1
                return {"error": {"message": "Generation is paused. Please retry after it resumes.",
                                  "type": "ServiceUnavailableError", "code": 503}}, 503
            self.state.wait_for(lambda: not self.paused, timeout=30)  # "hold": queued until /resume
            self.running += 1
        try:
            self.release.wait(30)
            settings = {k: body.get(k, self.generation_config.get(k)) for k in SERVER_SAMPLING_KEYS}
            check_sampling(body["n"], settings["temperature"], settings["top_p"], settings["top_k"])
            self.sampled_with.append(settings)
            choices = []
            for p, ids in enumerate(body["prompt"]):
                weights = self.prefix_cache.setdefault(tuple(ids), copy.deepcopy(self.model))  # KV of these weights
                self.served.append(fingerprint(weights))
                self.sampling_started.set()  # (after the snapshot: a held update goes on from here)
                for j, (tokens, logps) in enumerate(sample(weights, ids, body["n"], body["max_tokens"],
                                                           settings["temperature"], seed=17 * p)):
                    choices.append({"index": p * body["n"] + j, "token_ids": tokens,
                                    "logprobs": {"token_logprobs": logps},
                                    "finish_reason": "stop" if tokens[-1] == EOS else "length"})
            return {"choices": choices[::-1]}, 200  # any order: the engine sorts by index
        finally:
            with self.state:
                self.running -= 1
                self.state.notify_all()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.transport.close()


class Processes:
    """Training processes played by threads: each gets a stand-in accelerator whose ``reduce`` is a real
    rendezvous of the threads (what ``accelerator.reduce`` is across processes)."""

    def __init__(self, n):
        self.n = n
        self.barrier = threading.Barrier(n)
        self.slots: list[torch.Tensor | None] = [None] * n

    def accelerator(self, rank):
        from accelerate.utils import DistributedType

        group = self

        def reduce(tensor, reduction="sum"):
            assert reduction == "sum"
            group.slots[rank] = tensor.clone()
            group.barrier.wait()
            total = sum(group.slots)
            group.barrier.wait()  # every process has read the slots before any reuses them
            return total

        return SimpleNamespace(is_main_process=rank == 0, process_index=rank, num_processes=self.n,
                               device=torch.device("cpu"), distributed_type=DistributedType.MULTI_CPU,
                               state=SimpleNamespace(deepspeed_plugin=None), unwrap_model=lambda m: m, reduce=reduce)


def run_threads(*fns, timeout=60):
    """Run each fn in its own thread; (results, errors) in order."""
    results, errors = [None] * len(fns), [None] * len(fns)

    def wrap(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:
            errors[i] = e

    threads = [threading.Thread(target=wrap, args=(i, fn), daemon=True) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a process hung"
    return results, errors


@pytest.fixture
def server():
    s = StandInServer(build_tiny_model(TOK, seed=5), Loopback())
    yield s
    s.close()


def routes(server):
    return [path for path, _ in server.calls if path not in ("/v1/models", "/v1/completions")]


SYNC = ["/pause", "/start_weight_update", "/update_weights", "/finish_weight_update", "/reset_prefix_cache", "/resume"]


# --- generation ------------------------------------------------------------------------------------------


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
    with pytest.raises(EngineError, match=r"did not answer POST /v1/completions within 1 s \(rollout.vllm_timeout\)"):
        engine.generate([TOK("1+1=")["input_ids"]], SamplingParams(max_new_tokens=4), num_samples=2)
    assert time.monotonic() - start < 30.0  # the timeout, not the server's 60 s


def test_every_sampling_field_is_sent_so_the_servers_generation_config_cannot_fill_it(server):
    """Omitted fields are filled from the model's generation_config (repetition_penalty 1.05)."""
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    engine.generate([TOK("1+2=")["input_ids"]], SamplingParams(max_new_tokens=4, temperature=0.9, top_k=50),
                    num_samples=2)
    assert server.sampled_with == [{"temperature": 0.9, "top_p": 1.0, "top_k": 50, "min_p": 0.0,
                                    "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}]
    with pytest.raises(EngineError, match="greedy decoding"):  # refused before the server would
        engine.generate([TOK("1+2=")["input_ids"]], SamplingParams(max_new_tokens=4, temperature=0.0), num_samples=2)


def test_a_completion_turned_away_by_a_paused_server_is_tried_again_until_it_resumes(server):
    """vLLM 0.34 answers 503 while paused (another client's sync): the request waits, within rollout.vllm_timeout."""
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    server.paused = True
    threading.Timer(1.0, lambda: server.route("/resume", {}, {})).start()
    batch = engine.generate([TOK("1+2=")["input_ids"]], SamplingParams(max_new_tokens=4), num_samples=2)
    assert len(batch) == 2 and server.turned_away >= 1 and len(server.served) == 1
    server.paused = True  # and never resumed: an error naming the pause, within the timeout
    short = VLLMServerEngine(server.url, TOK, timeout=2.0, transport=server.transport)
    with pytest.raises(EngineError, match=r"POST /v1/completions with HTTP 503.*the server is paused"):
        short.generate([TOK("1+2=")["input_ids"]], SamplingParams(max_new_tokens=4), num_samples=2)


# --- weight sync ---------------------------------------------------------------------------------------


def test_server_weights_equal_the_trainers_after_a_sync(server):
    trainer_model = build_tiny_model(TOK, seed=0)
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    _step(trainer_model)
    engine.update_weights(trainer_model)
    engine.update_weights(trainer_model)  # a second sync reuses the transfer group
    for (name, p), (_, q) in zip(trainer_model.named_parameters(), server.model.named_parameters()):
        assert torch.equal(p, q), name
    assert routes(server) == ["/get_world_size", "/init_weight_transfer_engine", *SYNC, *SYNC]
    assert dict(server.queries)["/pause"] == {"mode": "wait"}  # running requests finish with the old weights
    (address, port, world), = server.transport.inits  # the trainer and the server's one worker
    assert (address, world) == ("127.0.0.1", 2) and (address, port) == engine.rendezvous
    init = next(b for path, b in server.calls if path == "/init_weight_transfer_engine")["init_info"]
    assert init == {"master_address": "127.0.0.1", "master_port": port, "rank_offset": 1, "world_size": 2}
    info = next(b for path, b in server.calls if path == "/update_weights")["update_info"]
    assert set(info) == {"names", "dtype_names", "shapes"}  # "packed" is refused from vLLM 0.28 on
    named = dict(trainer_model.named_parameters())
    assert info["dtype_names"][0] == "float32" and info["shapes"][0] == list(named[info["names"][0]].shape)


def test_an_old_server_without_pause_start_and_finish_gets_the_short_sync():
    """/start_weight_update and /finish_weight_update are absent in vLLM 0.17 (404), and a server may lack
    /pause and /resume: each is asked once, then left out."""
    old = StandInServer(build_tiny_model(TOK, seed=5), Loopback(), four_phase=False, pause=None,
                        reset_reply="empty")
    try:
        trainer_model = build_tiny_model(TOK, seed=0)
        engine = VLLMServerEngine(old.url, TOK, timeout=60, transport=old.transport)
        engine.update_weights(trainer_model)
        engine.update_weights(trainer_model)
        for (name, p), (_, q) in zip(trainer_model.named_parameters(), old.model.named_parameters()):
            assert torch.equal(p, q), name
        assert routes(old) == ["/get_world_size", "/init_weight_transfer_engine", "/pause", "/start_weight_update",
                               "/update_weights", "/reset_prefix_cache", "/update_weights", "/reset_prefix_cache"]
    finally:
        old.close()


def test_after_a_sync_prompts_seen_before_are_served_with_the_new_weights(server):
    """Without /reset_prefix_cache the server reuses KV computed with the old weights."""
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    prompt = [TOK("12+3=")["input_ids"]]
    engine.generate(prompt, SamplingParams(max_new_tokens=4), num_samples=2)  # cached with the old weights
    trainer_model = build_tiny_model(TOK, seed=0)
    _step(trainer_model)
    engine.update_weights(trainer_model)
    batch = engine.generate(prompt, SamplingParams(max_new_tokens=4), num_samples=2)
    with torch.no_grad():
        mine, _ = completion_logprobs(trainer_model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                      batch.completion_mask)
    mask = batch.completion_mask.bool()
    torch.testing.assert_close(batch.sampling_logprobs[mask], mine[mask], atol=1e-4, rtol=1e-4)
    assert server.served == [fingerprint(build_tiny_model(TOK, seed=5)), fingerprint(trainer_model)]


def test_the_weight_metadata_is_computed_once_per_run(server, monkeypatch):
    """Under FSDP each computation gathers the whole model once more; names and shapes never change."""
    import gpgrl.rollout.vllm as vllm_module

    calls = []
    real = vllm_module.weight_metadata
    monkeypatch.setattr(vllm_module, "weight_metadata", lambda acc, model: calls.append(1) or real(acc, model))
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    trainer_model = build_tiny_model(TOK, seed=0)
    for _ in range(3):
        _step(trainer_model)
        engine.update_weights(trainer_model)
    assert len(calls) == 1 and fingerprint(server.model) == fingerprint(trainer_model)
    assert sum(path == "/update_weights" for path, _ in server.calls) == 3


# --- several processes, other clients ------------------------------------------------------------------------


@pytest.mark.parametrize("pause", ["reject", "hold"])
def test_no_process_samples_before_the_main_process_sync_is_over(pause):
    """Only the main process sends the weights: the other process used to sample at once, from the old or
    half-updated weights. The server holds the update half way until a completion arrives (or 2 s)."""
    server = StandInServer(build_tiny_model(TOK, seed=5), Loopback(), pause=pause, hold_update_s=2.0)
    try:
        procs = Processes(2)
        trained = build_tiny_model(TOK, seed=0)
        _step(trained)
        replicas = [trained, copy.deepcopy(trained)]  # DDP: every process holds the same weights
        engines = [VLLMServerEngine(server.url, TOK, timeout=60, accelerator=procs.accelerator(r),
                                    transport=server.transport if r == 0 else Loopback()) for r in range(2)]
        prompt = [TOK("12+3=")["input_ids"]]

        def process(rank):
            engines[rank].update_weights(replicas[rank])
            if rank == 1:  # the next step's rollout, at once
                return engines[rank].generate(prompt, SamplingParams(max_new_tokens=4), num_samples=2)

        (_, batch), errors = run_threads(lambda: process(0), lambda: process(1))
        assert errors == [None, None]
        assert server.served == [fingerprint(trained)]  # whole new weights, never half of them
        with torch.no_grad():
            mine, _ = completion_logprobs(trained, batch.prompt_ids, batch.prompt_mask, batch.completion_ids,
                                          batch.completion_mask)
        mask = batch.completion_mask.bool()
        torch.testing.assert_close(batch.sampling_logprobs[mask], mine[mask], atol=1e-4, rtol=1e-4)
    finally:
        server.close()


@pytest.mark.parametrize("pause", ["reject", "hold"])
def test_another_client_is_never_served_by_half_updated_weights(pause):
    """A completion sent by another client while the weights move: 0.34 turns it away (503) until /resume,
    0.17 - 0.28 hold it; either way it is answered with the whole new weights."""
    server = StandInServer(build_tiny_model(TOK, seed=5), Loopback(), pause=pause, hold_update_s=2.0)
    try:
        engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
        other = VLLMServerEngine(server.url, TOK, timeout=60, sync_weights=False)
        trained = build_tiny_model(TOK, seed=0)
        _step(trained)

        def other_client():
            assert server.updating.wait(30)  # sent while /update_weights is under way
            return other.generate([TOK("4+5=")["input_ids"]], SamplingParams(max_new_tokens=4), num_samples=2)

        _, errors = run_threads(lambda: engine.update_weights(trained), other_client)
        assert errors == [None, None]
        assert server.served == [fingerprint(trained)]
        assert (server.turned_away >= 1) == (pause == "reject")
    finally:
        server.close()


def test_a_failed_sync_on_the_main_process_is_an_error_on_every_process_not_a_hang():
    """The other process learns the main process's failure through the same collective."""
    server = StandInServer(build_tiny_model(TOK, seed=5), StuckTransport("send"), fail={"/update_weights": 500})
    try:
        procs = Processes(2)
        model = build_tiny_model(TOK, seed=0)
        engines = [VLLMServerEngine(server.url, TOK, timeout=60, sync_timeout=120, accelerator=procs.accelerator(r),
                                    transport=server.transport) for r in range(2)]
        start = time.monotonic()
        _, errors = run_threads(lambda: engines[0].update_weights(model), lambda: engines[1].update_weights(model))
        assert time.monotonic() - start < 30  # not the 120 s sync timeout
        assert isinstance(errors[0], EngineError) and "POST /update_weights with HTTP 500" in str(errors[0])
        assert isinstance(errors[1], EngineError)
        assert "the main process's weight sync with vllm_server" in str(errors[1]) and "failed" in str(errors[1])
    finally:
        server.close()


def test_a_prefix_cache_reset_refused_while_requests_run_is_tried_again():
    """vLLM 0.28+ answers /reset_prefix_cache with {"success": false} while running requests hold blocks
    (a server without /pause lets another client's request run through the sync)."""
    server = StandInServer(build_tiny_model(TOK, seed=5), Loopback(), pause=None)
    try:
        engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
        other = VLLMServerEngine(server.url, TOK, timeout=60, sync_weights=False)
        trained = build_tiny_model(TOK, seed=0)
        server.release.clear()  # another client's completion runs until released
        running = threading.Thread(target=lambda: other.generate([TOK("4+5=")["input_ids"]],
                                                                 SamplingParams(max_new_tokens=4), num_samples=2))
        running.start()
        threading.Thread(target=lambda: server.reset_failed.wait(30) and server.release.set()).start()
        engine.update_weights(trained)  # the first reset fails, the request ends, a later one succeeds
        running.join(30)
        assert [path for path, _ in server.calls].count("/reset_prefix_cache") >= 2
        assert server.prefix_cache == {}  # the request's prompt, cached with the old weights, is gone

        server.release.clear()  # now the request runs through every try
        running = threading.Thread(target=lambda: other.generate([TOK("6+7=")["input_ids"]],
                                                                 SamplingParams(max_new_tokens=4), num_samples=2))
        running.start()
        for _ in range(3000):
            if server.running:
                break
            time.sleep(0.01)
        with pytest.raises(EngineError, match=r"did not reset its prefix cache after 6 tries"):
            engine.update_weights(trained)
        server.release.set()
        running.join(30)
    finally:
        server.close()


# --- errors and timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route, where", [("/update_weights", "send"), ("/init_weight_transfer_engine", "init")])
def test_a_server_error_during_the_sync_is_reported_at_once_not_after_the_timeout(route, where):
    """The server answers at once with HTTP 500 while the tensors (or the rendezvous) wait for a peer that
    will never come: the run gets the server's error, naming the route and the code, within seconds."""
    server = StandInServer(build_tiny_model(TOK, seed=5), StuckTransport(where), fail={route: 500})
    try:
        engine = VLLMServerEngine(server.url, TOK, timeout=600, sync_timeout=120, transport=server.transport)
        start = time.monotonic()
        with pytest.raises(EngineError, match=rf"vllm_server {server.url} answered POST {route} with HTTP 500: .*on "
                                              "purpose"):
            engine.update_weights(build_tiny_model(TOK, seed=0))
        assert time.monotonic() - start < 30  # not the 120 s sync timeout
    finally:
        server.close()


@pytest.mark.parametrize("where, message", [
    ("init", r"NCCL rendezvous with vllm_server .* did not finish within 2 s \(rollout.vllm_sync_timeout\)"),
    ("send", r"weight transfer of .* tensors did not finish within 2 s \(rollout.vllm_sync_timeout\)")])
def test_a_weight_sync_that_never_completes_is_an_error_not_a_hang(server, where, message):
    """NCCL calls have no timeout of their own; the engine bounds them by rollout.vllm_sync_timeout, whatever
    the generation timeout."""
    transport = StuckTransport(where)
    server.transport = transport
    engine = VLLMServerEngine(server.url, TOK, timeout=600, sync_timeout=2.0, transport=transport)
    start = time.monotonic()
    with pytest.raises(EngineError, match=message) as info:
        engine.update_weights(build_tiny_model(TOK, seed=0))
    assert time.monotonic() - start < 45  # 2 s per wait (the server holds /update_weights open for 30 s)
    if where == "send":  # the weights may be half-written: the server stays paused, and the error says so
        assert server.paused and "is left paused: its weights may be half-updated" in str(info.value)


# --- the rendezvous --------------------------------------------------------------------------------------


def test_two_runs_on_one_machine_get_their_own_rendezvous_ports(server):
    """The rendezvous was fixed at 127.0.0.1:51216: a second run on the machine collided with the first."""
    second = StandInServer(build_tiny_model(TOK, seed=5), Loopback())
    try:
        a = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
        b = VLLMServerEngine(second.url, TOK, timeout=60, transport=second.transport)
        a.update_weights(build_tiny_model(TOK, seed=0))
        b.update_weights(build_tiny_model(TOK, seed=0))  # a's rendezvous still listens on its port
        assert a.rendezvous[0] == b.rendezvous[0] == "127.0.0.1"
        assert a.rendezvous[1] != b.rendezvous[1] and 51216 not in (a.rendezvous[1], b.rendezvous[1])
    finally:
        second.close()


def test_a_given_rendezvous_address_and_port_are_sent_to_the_server(server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport, master_address="127.0.0.1",
                              master_port=port)
    engine.update_weights(build_tiny_model(TOK, seed=0))
    init = next(b for path, b in server.calls if path == "/init_weight_transfer_engine")["init_info"]
    assert (init["master_address"], init["master_port"]) == ("127.0.0.1", port) == engine.rendezvous


def test_the_default_rendezvous_address_is_the_interface_that_routes_to_the_server():
    from gpgrl.rollout.vllm import routed_address

    assert routed_address("http://127.0.0.1:8000") == "127.0.0.1"
    assert routed_address("http://localhost:8000/") == "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # this machine's route to another node
        try:
            s.connect(("10.255.255.1", 80))
        except OSError:
            pytest.skip("no IPv4 route off this machine")
        want = s.getsockname()[0]
    assert routed_address("http://10.255.255.1:8000") == want and want != "127.0.0.1"


# --- settings ------------------------------------------------------------------------------------------


def test_the_server_settings_reach_the_engine(server, tmp_path):
    from gpgrl.rollout.vllm import build_server_engine
    from helpers import tiny_config

    cfg = tiny_config(tmp_path, rollout={"engine": "vllm_server", "vllm_server_url": server.url, "vllm_timeout": 900,
                                         "vllm_sync_timeout": 120, "vllm_master_address": "127.0.0.1",
                                         "vllm_master_port": 29555})
    acc = SimpleNamespace(unwrap_model=lambda m: m)
    engine = build_server_engine(cfg, acc, build_tiny_model(TOK, seed=0), TOK)
    assert (engine.timeout, engine.sync_timeout, engine.master_address, engine.master_port) == (900, 120, "127.0.0.1",
                                                                                                 29555)
    default = tiny_config(tmp_path).rollout
    assert (default.vllm_timeout, default.vllm_sync_timeout, default.vllm_master_address,
            default.vllm_master_port) == (600.0, 300.0, None, 0)


@pytest.mark.parametrize("key, value, message", [
    ("vllm_master_port", 70000, r"rollout.vllm_master_port must be in \[0, 65535\] \(0 = a free port\), got 70000"),
    ("vllm_master_port", -1, r"rollout.vllm_master_port must be in \[0, 65535\]"),
    ("vllm_sync_timeout", 0, r"rollout.vllm_sync_timeout must be > 0 seconds, got 0"),
    ("vllm_timeout", -5, r"rollout.vllm_timeout must be > 0 seconds"),
    ("vllm_master_address", "0.0.0.0", r"an address the server's workers can connect to.*listen-on-all"),
    ("vllm_master_address", "10.0.0.1:29500", r"IPv4 address or host name .* rollout.vllm_master_port"),
    ("vllm_master_address", "tcp://10.0.0.1", r"bare IPv4 address or host name \(no scheme"),
    ("vllm_master_address", "", r"bare IPv4 address or host name")])
def test_rendezvous_and_timeout_settings_are_checked(tmp_path, key, value, message):
    from gpgrl.config import ConfigError
    from helpers import tiny_config

    with pytest.raises((ConfigError, ValueError), match=message):
        tiny_config(tmp_path, rollout={key: value})


# --- end to end --------------------------------------------------------------------------------------------


def test_trainer_endpoint_follows_the_vllm_version(monkeypatch):
    """From vLLM 0.28 the trainer's rendezvous lives in nccl_common; before, in NCCLWeightTransferEngine."""
    import sys
    import types

    from gpgrl.rollout.vllm import trainer_endpoint

    def fake(modules):
        for name in ("vllm", "vllm.distributed", "vllm.distributed.weight_transfer",
                     "vllm.distributed.weight_transfer.nccl_common", "vllm.distributed.weight_transfer.nccl_engine"):
            monkeypatch.setitem(sys.modules, name, modules.get(name, None))

    new = types.SimpleNamespace(stateless_init_process_group=lambda *a: "0.28+")
    old_engine = types.SimpleNamespace(_stateless_init_process_group=lambda *a: "0.17-0.27")
    fake({"vllm.distributed.weight_transfer.nccl_common": new,
          "vllm.distributed.weight_transfer.nccl_engine": types.SimpleNamespace(NCCLWeightTransferEngine=object)})
    assert trainer_endpoint()() == "0.28+"
    fake({"vllm.distributed.weight_transfer.nccl_engine": types.SimpleNamespace(NCCLWeightTransferEngine=old_engine)})
    assert trainer_endpoint()() == "0.17-0.27"
    fake({})
    with pytest.raises(ImportError, match=r"vLLM >=0.17,<0.35"):
        trainer_endpoint()


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
                      rollout={"group_size": 4, "max_completion_length": 6, "importance_cap": 2.0,
                               "engine": "vllm_server"},
                      algorithm={"preset": "gpg", "resample_threshold": 0.0}, train={"steps": 2, "prompts_per_step": 2})
    model = build_tiny_model(TOK, seed=5)  # the server starts from the same weights
    engine = VLLMServerEngine(server.url, TOK, timeout=60, transport=server.transport)
    trainer = Trainer.from_config(cfg, model=model, tokenizer=TOK, engine=engine)
    assert (trainer.objective.importance_mode, trainer.objective.importance_cap) == ("token_truncate", 2.0)  # on for vllm_server
    history = trainer.train()
    for m in history:
        assert m["optim/skipped"] == 0.0
        # one model, synced after every step: almost no mismatch, nothing capped
        assert m["is/logp_diff_abs"] < 1e-3 and m["is/logp_gap_max"] < 1e-3 and m["is/capped_frac"] == 0.0
        assert m["is/weight_mean"] == pytest.approx(1.0, abs=1e-3)
    for (name, p), (_, q) in zip(model.named_parameters(), server.model.named_parameters()):
        assert torch.equal(p, q), name  # synced after every step


@pytest.mark.distributed
@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="accelerate launcher not installed")
def test_two_real_processes_wait_for_the_main_process_sync(tmp_path):
    """dist_vllm_server.py under `accelerate launch` (gloo): the status collective on a real Accelerator."""
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent / "src")]), "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "--main_process_port", "29523", str(here / "dist_vllm_server.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert main["world"] == 2 and main["new"] == other["new"]
    assert main["served"] == [main["new"]]  # process 1's completion: the whole new weights
    assert "answered POST /update_weights with HTTP 500" in main["error"]
    assert "the main process's weight sync with vllm_server" in other["error"]
