"""vLLM rollout engines: a ``vllm serve`` process (``rollout.engine: vllm_server``) or an engine colocated in
every training process (``rollout.engine: vllm``). See ``docs/engines.md`` for when each pays off.

vLLM pins its own torch and transformers, so it is never a dependency of gpgrl:

* :class:`VLLMServerEngine` talks HTTP to a server that runs in its own environment. Generation goes
  through the OpenAI-compatible ``/v1/completions`` route with token ids in and token ids plus per-token
  log-probs out (``return_token_ids``, ``logprobs: 0``). Weights go through vLLM's weight-transfer routes
  (``/init_weight_transfer_engine`` once, then ``/start_weight_update``, ``/update_weights``,
  ``/finish_weight_update`` per sync; ``vllm serve ... --weight-transfer-config '{"backend": "nccl"}'``
  with ``VLLM_SERVER_DEV_MODE=1``): the HTTP calls carry the names, dtypes and shapes, and the tensors
  themselves travel over NCCL from the trainer's main process (:class:`NCCLTransport`, which uses vLLM's
  trainer-side helpers and so needs vLLM importable in the training environment; any object with the
  same two methods can replace it). Every HTTP call and every collective has a timeout: a dead or stuck
  server is an error naming the server and what was asked, never a hang. Prompts longer than the
  server's context are refused before sending.
* :class:`VLLMColocatedEngine` holds a ``vllm.LLM`` in each training process (``external_launcher``),
  loads the new weights parameter by parameter after each optimizer step (gathered one at a time under
  ZeRO-3 / FSDP; a LoRA adapter merged first, sent under the base model's names, then unmerged), and
  sleeps (frees its memory) while the trainer updates the model.

Both report the sampling log-probs, so ``rollout.importance_cap`` can correct the small mismatch between
vLLM's kernels and the trainer's (:mod:`gpgrl.algorithms.importance`). Written against vLLM's APIs as of
its 0.17-0.2x releases (weight-transfer routes, ``return_token_ids``); the tests here use stand-ins of
exactly these APIs, as no GPU is available to run vLLM itself.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import (
    Prompt,
    RolloutEngine,
    SamplingParams,
    as_prompts,
    budget_for,
    eos_token_ids,
    left_pad,
    mask_after_eos,
    pad_token_id,
    right_pad,
)

VLLM_INSTALL = "the vllm engine needs vLLM: pip install vllm (in an environment with a matching torch; see docs/engines.md)"


class EngineError(RuntimeError):
    """The rollout engine failed; the message names the server or engine and what was asked."""


# ----------------------------------------------------------------------------------------------- weights
def vllm_named_parameters(model: torch.nn.Module, params: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` as vLLM's ``load_weights`` expects them: the base model's names.

    For a peft (LoRA) model the adapter must already be merged into the base weights (see
    :func:`merged_lora`): peft's ``base_model.model.`` prefix and ``.base_layer`` are dropped and the
    ``lora_`` tensors skipped.

    >>> list(vllm_named_parameters(None, iter([("base_model.model.model.q.base_layer.weight", 1),
    ...                                         ("base_model.model.model.q.lora_A.default.weight", 2)])))
    [('model.q.weight', 1)]
    """
    for name, tensor in params:
        if "lora_" in name:
            continue
        name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        yield name, tensor


class merged_lora:
    """Context: a peft model's adapter merged into its base weights, unmerged on exit (nothing otherwise)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.peft = hasattr(model, "merge_adapter") and hasattr(model, "unmerge_adapter")

    def __enter__(self) -> torch.nn.Module:
        if self.peft:
            self.model.merge_adapter()
        return self.model

    def __exit__(self, *exc: object) -> None:
        if self.peft:
            self.model.unmerge_adapter()


def _full_parameters(accelerator: Any, model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    if accelerator is None:
        yield from model.named_parameters()
        return
    from gpgrl.train.distributed import iter_full_parameters

    yield from iter_full_parameters(accelerator, model)


def assemble(rows: list[Prompt], tokens: list[list[int]], logps: list[list[float]], tokenizer: Any, pad_id: int,
             eos_ids: list[int]) -> RolloutBatch:
    """A :class:`RolloutBatch` from an engine's raw output: completion token ids and their sampling log-probs."""
    completion_ids, _ = right_pad(tokens, pad_id)
    completion_ids, completion_mask, truncated = mask_after_eos(completion_ids, eos_ids, pad_id)
    sampling = torch.zeros(completion_ids.shape, dtype=torch.float32)
    for i, row in enumerate(logps):
        n = min(len(row), sampling.shape[1])
        sampling[i, :n] = torch.tensor([x if x is not None else 0.0 for x in row[:n]], dtype=torch.float32)
    sampling = sampling * completion_mask
    prompt_ids, prompt_mask = left_pad([p.ids for p in rows], pad_id)
    texts = tokenizer.batch_decode([r[m.bool()] for r, m in zip(completion_ids, completion_mask)],
                                   skip_special_tokens=True)
    return RolloutBatch(prompt_ids, prompt_mask, completion_ids, completion_mask, truncated, texts,
                        sampling_logprobs=sampling, prompts=[p.text for p in rows] if rows[0].text else []).trim()


# ----------------------------------------------------------------------------------------------- server
class NCCLTransport:
    """The data plane of a weight sync: an NCCL group of the trainer's main process (rank 0) and the
    server's workers, built with vLLM's own trainer-side helpers (``NCCLWeightTransferEngine``), so vLLM
    must be importable in the training environment for this transport."""

    def init(self, master_address: str, master_port: int, world_size: int) -> None:
        try:
            from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine
        except ImportError as e:
            raise ImportError(f"{VLLM_INSTALL} ({e})") from None
        self._engine = NCCLWeightTransferEngine
        self._group = NCCLWeightTransferEngine.trainer_init(
            {"master_address": master_address, "master_port": master_port, "world_size": world_size})

    def send(self, tensors: Iterator[tuple[str, torch.Tensor]]) -> None:
        self._engine.trainer_send_weights(tensors, {"group": self._group, "packed": False})


class VLLMServerEngine(RolloutEngine):
    """Generates with a ``vllm serve`` process over HTTP and pushes weights to it after each step.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``.
        tokenizer: the policy's tokenizer (EOS, padding, decoding).
        timeout: seconds any HTTP call or weight transfer may take.
        accelerator: the trainer's (gathering parameters; only the main process talks to the server for
            weights). None: a single process.
        transport: the weight data plane (default :class:`NCCLTransport`); ``None`` with ``sync_weights=False``
            for a server whose weights are never updated (evaluation).
        master_address, master_port: the NCCL rendezvous the server's workers join.
    """

    def __init__(self, base_url: str, tokenizer: Any, *, timeout: float = 600.0, accelerator: Any = None,
                 transport: Any = None, sync_weights: bool = True, master_address: str = "127.0.0.1",
                 master_port: int = 51216, model: torch.nn.Module | None = None):
        self.base_url = base_url.rstrip("/")
        self.tokenizer = tokenizer
        self.timeout = timeout
        self.accelerator = accelerator
        self.pad_id = pad_token_id(tokenizer)
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.sync_weights = sync_weights
        self.transport = transport if transport is not None else (NCCLTransport() if sync_weights else None)
        self.master_address, self.master_port = master_address, master_port
        self._initialised = False
        self._four_phase = True
        models = self._call("GET", "/v1/models")
        try:
            card = models["data"][0]
        except (KeyError, IndexError, TypeError):
            raise EngineError(f"vllm_server {self.base_url} returned no model from /v1/models: {models!r:.200}") from None
        self.model_name = card["id"]
        self.max_model_len = card.get("max_model_len")

    # -- HTTP ------------------------------------------------------------------------------------------
    def _call(self, method: str, route: str, body: dict[str, Any] | None = None, *, allow_404: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + route, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            if allow_404 and e.code == 404:
                return None
            detail = e.read().decode(errors="replace")[:300]
            raise EngineError(f"vllm_server {self.base_url} answered {route} with HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
                raise EngineError(f"vllm_server {self.base_url} did not answer {method} {route} within "
                                  f"{self.timeout:g} s (rollout.vllm_timeout); is the server stuck?") from None
            raise EngineError(f"vllm_server {self.base_url} failed on {method} {route} ({reason}); is `vllm serve` "
                              "running there, with VLLM_SERVER_DEV_MODE=1 for the weight routes?") from None
        return json.loads(text) if text else {}

    # -- generation --------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Prompt | Sequence[int]], params: SamplingParams,
                 num_samples: int) -> RolloutBatch:
        prompts = as_prompts(prompts)
        if any(p.images for p in prompts):
            raise EngineError("vllm_server sends token ids only; image prompts need rollout.engine: vllm or hf")
        longest = max(len(p.ids) for p in prompts)
        if self.max_model_len is not None and longest >= self.max_model_len:
            raise EngineError(f"a prompt of {longest} tokens does not fit vllm_server {self.base_url}'s context of "
                              f"{self.max_model_len} tokens; lower data.max_prompt_length")
        body = {
            "model": self.model_name, "prompt": [p.ids for p in prompts], "n": num_samples,
            "max_tokens": budget_for(longest, params.max_new_tokens, self.max_model_len),
            "temperature": params.temperature, "top_p": params.top_p, "top_k": params.top_k or -1,
            "logprobs": 0, "return_token_ids": True, "skip_special_tokens": False,
        }
        out = self._call("POST", "/v1/completions", body)
        choices = sorted(out.get("choices", []), key=lambda c: c["index"])
        if len(choices) != len(prompts) * num_samples:
            raise EngineError(f"vllm_server {self.base_url} returned {len(choices)} completions for "
                              f"{len(prompts)} prompts x {num_samples}")
        tokens = [list(c.get("token_ids") or []) for c in choices]
        logps = [list((c.get("logprobs") or {}).get("token_logprobs") or []) for c in choices]
        return assemble([p for p in prompts for _ in range(num_samples)], tokens, logps, self.tokenizer, self.pad_id,
                        self.eos_ids)

    # -- weights -----------------------------------------------------------------------------------------
    def _in_thread(self, what: str, fn: Callable[[], Any]) -> threading.Thread:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # reported by _join
                errors.append(e)

        thread = threading.Thread(target=run, name=f"vllm-{what}", daemon=True)
        thread.errors = errors  # type: ignore[attr-defined]
        thread.start()
        return thread

    def _join(self, thread: threading.Thread, what: str) -> None:
        thread.join(self.timeout)
        if thread.is_alive():
            raise EngineError(f"vllm_server {self.base_url}: {what} did not finish within {self.timeout:g} s")
        if thread.errors:  # type: ignore[attr-defined]
            raise thread.errors[0]  # type: ignore[attr-defined]

    def update_weights(self, model: torch.nn.Module) -> None:
        """Push the trainer's weights: every process gathers (collective), the main process sends."""
        if not self.sync_weights:
            return
        main = self.accelerator is None or self.accelerator.is_main_process
        unwrapped = self.accelerator.unwrap_model(model) if self.accelerator is not None else model
        with merged_lora(unwrapped):
            meta = list(vllm_named_parameters(unwrapped, _meta(self.accelerator, model)))
            if main:
                self._push(meta, vllm_named_parameters(unwrapped, _full_parameters(self.accelerator, model)))
            else:
                for _ in _full_parameters(self.accelerator, model):  # take part in the gathers
                    pass

    def _push(self, meta: list[tuple[str, Any]], tensors: Iterator[tuple[str, torch.Tensor]]) -> None:
        if not self._initialised:
            world = self._call("GET", "/get_world_size", allow_404=True)
            server_world = int((world or {}).get("world_size", 1))
            init = {"master_address": self.master_address, "master_port": self.master_port, "rank_offset": 1,
                    "world_size": 1 + server_world}
            thread = self._in_thread("init", lambda: self._call("POST", "/init_weight_transfer_engine",
                                                                {"init_info": init}))
            self.transport.init(self.master_address, self.master_port, 1 + server_world)
            self._join(thread, "/init_weight_transfer_engine")
            self._initialised = True
        if self._four_phase and self._call("POST", "/start_weight_update", {}, allow_404=True) is None:
            self._four_phase = False  # an older server: init + update_weights only
        info = {"names": [n for n, _ in meta], "dtype_names": [str(s[1]).removeprefix("torch.") for _, s in meta],
                "shapes": [list(s[0]) for _, s in meta], "packed": False}
        thread = self._in_thread("update", lambda: self._call("POST", "/update_weights", {"update_info": info}))
        self.transport.send(tensors)  # the server's workers receive while /update_weights is open
        self._join(thread, "/update_weights")
        if self._four_phase:
            self._call("POST", "/finish_weight_update", {})


def _meta(accelerator: Any, model: torch.nn.Module) -> Iterator[tuple[str, Any]]:
    """``(name, (shape, dtype))`` of every parameter, full shapes even when sharded (ZeRO-3's ``ds_shape``)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    for name, p in unwrapped.named_parameters():
        yield name, (tuple(getattr(p, "ds_shape", p.shape)), p.dtype)


# ------------------------------------------------------------------------------------------- colocated
def _runner_model(llm: Any) -> Any:
    """The torch model inside a ``vllm.LLM`` (its path differs between vLLM versions)."""
    executor = llm.llm_engine.model_executor
    worker = executor.driver_worker
    for path in ("worker.model_runner.model", "model_runner.model"):
        obj: Any = worker
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise EngineError("cannot find the model inside this vLLM version's LLM (llm_engine.model_executor."
                      "driver_worker[.worker].model_runner.model); see docs/engines.md for the tested versions")


class VLLMColocatedEngine(RolloutEngine):
    """A ``vllm.LLM`` in this training process, sharing its GPU; weights loaded in place after each step.

    Args:
        model_name: what vLLM loads at start (the policy's name or folder; its weights are replaced at
            the first sync).
        tokenizer: the policy's tokenizer.
        accelerator: the trainer's (gathering parameters one at a time under ZeRO-3 / FSDP).
        gpu_memory_utilization, sleep, seed, max_model_len: vLLM settings.
        llm_factory: builds the engine (default ``vllm.LLM``; the tests pass a stand-in).
        sampling_factory: builds sampling settings (default ``vllm.SamplingParams``).
    """

    def __init__(self, model_name: str, tokenizer: Any, *, accelerator: Any = None, gpu_memory_utilization: float = 0.3,
                 sleep: bool = True, seed: int = 0, max_model_len: int | None = None,
                 llm_factory: Callable[..., Any] | None = None, sampling_factory: Callable[..., Any] | None = None,
                 model: torch.nn.Module | None = None):
        if llm_factory is None or sampling_factory is None:
            try:
                import vllm
            except ImportError as e:
                raise ImportError(f"{VLLM_INSTALL} ({e})") from None
            llm_factory = llm_factory or vllm.LLM
            sampling_factory = sampling_factory or vllm.SamplingParams
        self.tokenizer = tokenizer
        self.accelerator = accelerator
        self.pad_id = pad_token_id(tokenizer)
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.sleep_between = sleep
        self.sampling_factory = sampling_factory
        self.max_model_len = max_model_len
        self.llm = llm_factory(model=model_name, tensor_parallel_size=1, distributed_executor_backend="external_launcher",
                               gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=sleep, seed=seed,
                               max_model_len=max_model_len,
                               # sampling log-probs of softmax(logits / temperature), as the trainer computes them
                               logprobs_mode="processed_logprobs")
        self._asleep = False

    def generate(self, prompts: Sequence[Prompt | Sequence[int]], params: SamplingParams,
                 num_samples: int) -> RolloutBatch:
        prompts = as_prompts(prompts)
        self.wake_up()
        longest = max(len(p.ids) for p in prompts)
        sampling = self.sampling_factory(
            n=num_samples, max_tokens=budget_for(longest, params.max_new_tokens, self.max_model_len),
            temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1, logprobs=0)
        requests = []
        for p in prompts:
            request: dict[str, Any] = {"prompt_token_ids": p.ids}
            if p.images:
                request["multi_modal_data"] = {"image": list(p.images)}
            requests.append(request)
        outputs = self.llm.generate(requests, sampling_params=sampling, use_tqdm=False)
        tokens, logps = [], []
        for out in outputs:  # in prompt order; its n samples in order
            for sample in out.outputs:
                ids = list(sample.token_ids)
                tokens.append(ids)
                steps = sample.logprobs or []
                logps.append([float(step[t].logprob) if t in step else 0.0 for t, step in zip(ids, steps)])
        rows = [p for p in prompts for _ in range(num_samples)]
        if len(tokens) != len(rows):
            raise EngineError(f"vLLM returned {len(tokens)} completions for {len(prompts)} prompts x {num_samples}")
        batch = assemble(rows, tokens, logps, self.tokenizer, self.pad_id, self.eos_ids)
        if any(p.model_inputs for p in rows):
            batch.model_inputs = [p.model_inputs for p in rows]
        return batch

    def update_weights(self, model: torch.nn.Module) -> None:
        """Load the trainer's weights into the engine, one parameter at a time."""
        self.wake_up()
        unwrapped = self.accelerator.unwrap_model(model) if self.accelerator is not None else model
        target = _runner_model(self.llm)
        with merged_lora(unwrapped):
            for name, tensor in vllm_named_parameters(unwrapped, _full_parameters(self.accelerator, model)):
                target.load_weights([(name, tensor)])
        reset = getattr(self.llm, "reset_prefix_cache", None)
        if reset is not None:
            reset()  # cached prefixes were computed with the old weights

    def sleep(self) -> None:
        if self.sleep_between and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake_up(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False


def make_engine(cfg: Any, accelerator: Any, model: torch.nn.Module, tokenizer: Any) -> RolloutEngine:
    """The engine ``rollout.engine`` names (``vllm`` or ``vllm_server``)."""
    r = cfg.rollout
    tok = tokenizer.tokenizer if hasattr(tokenizer, "image_processor") else tokenizer
    unwrapped = accelerator.unwrap_model(model)
    if r.engine == "vllm_server":
        return VLLMServerEngine(r.vllm_server_url, tok, timeout=r.vllm_timeout, accelerator=accelerator, model=unwrapped)
    if r.engine == "vllm":
        return VLLMColocatedEngine(cfg.model.name_or_path, tok, accelerator=accelerator,
                                   gpu_memory_utilization=r.vllm_gpu_memory_utilization, sleep=r.vllm_sleep,
                                   seed=cfg.train.seed + accelerator.process_index, model=unwrapped)
    raise ValueError(f"unknown rollout.engine {r.engine!r}; valid: hf, vllm, vllm_server")
