"""vLLM rollout engines: a ``vllm serve`` process (``rollout.engine: vllm_server``) or an engine colocated in
every training process (``rollout.engine: vllm``). See ``docs/engines.md`` for when each pays off.

Supported vLLM: 0.17 to 0.34 (:data:`SUPPORTED_VLLM`). vLLM pins its own torch and transformers, so it is
never a dependency of gpgrl:

* :class:`VLLMServerEngine` talks HTTP to a server that runs in its own environment. Generation goes
  through the OpenAI-compatible ``/v1/completions`` route with token ids in and token ids plus per-token
  log-probs out. Every sampling field the route would otherwise fill from the model's
  ``generation_config`` is sent explicitly (:func:`completion_request`). Weights go through vLLM's
  weight-transfer routes (``/init_weight_transfer_engine`` once, then per sync ``/pause``,
  ``/start_weight_update``, ``/update_weights``, ``/finish_weight_update``, ``/reset_prefix_cache``,
  ``/resume``): the HTTP calls carry the names, dtypes and shapes, and the tensors travel over NCCL from
  the trainer's main process (:class:`NCCLTransport`, which joins the group with vLLM's own trainer-side
  rendezvous code, so vLLM must be importable in the training environment, at the same version as the
  server's). The other processes wait for the sync's outcome in a collective before they sample again.
* :class:`VLLMColocatedEngine` holds a ``vllm.LLM`` in each training process (``external_launcher``),
  started with what the trainer loaded (folder, tokenizer, dtype, image sizes) and a ``max_model_len`` of
  the run's prompt + answer budget; it sleeps (frees its memory; level 2 by default) while the trainer
  updates the model, then wakes its weights, loads them parameter by parameter (gathered one FSDP unit or
  one ZeRO-3 parameter at a time; a LoRA adapter merged into each base weight out of place), wakes its KV
  cache and resets the prefix and encoder caches.

The payloads are the intersection of what every supported version accepts (checked against vLLM's own
classes and routes by ``pytest -m vllm_contract``): the weight-transfer init info carries only the
rendezvous (``master_address``, ``master_port``, ``rank_offset``, ``world_size``) and the update info only
``names``, ``dtype_names``, ``shapes``, so both sides use the plain, unpacked broadcast in every version.

Nothing here waits forever: a generation request runs under ``rollout.vllm_timeout``; the NCCL
rendezvous, each weight sync (HTTP calls and tensors together) and the other control calls under
``rollout.vllm_sync_timeout``; past them, or as soon as one side of a transfer fails, the run gets an
:class:`EngineError` that names the server, what was asked and the setting to raise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from gpgrl.rollout.batch import RolloutBatch
from gpgrl.rollout.engine import (
    Prompt,
    RolloutEngine,
    SamplingParams,
    as_prompts,
    assemble,
    budget_for,
    eos_token_ids,
    pad_token_id,
    text_tokenizer,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

    from gpgrl.config import Config, RolloutConfig  # types only: the config layer sits above the engines

#: The vLLM releases these engines are written and contract-tested against (pyproject's ``vllm`` extra).
SUPPORTED_VLLM = ">=0.17,<0.35"
VLLM_INSTALL = (f"the vllm engines need vLLM {SUPPORTED_VLLM}: pip install 'vllm{SUPPORTED_VLLM}' (in an environment "
                "with the torch it pins; see docs/engines.md)")

#: vLLM raises temperatures in (0, 0.01) to 0.01 (SamplingParams.__post_init__), which would sample from
#: another distribution than the one the loss differentiates; such temperatures are refused instead.
VLLM_MIN_TEMPERATURE = 1e-2
VLLM_MAX_TEMPERATURE = 2.0


class EngineError(RuntimeError):
    """The rollout engine failed; the message names the server or engine and what was asked."""


# ------------------------------------------------------------------------------------------ sampling
def vllm_sampling_kwargs(params: SamplingParams, n: int, max_tokens: int) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` keyword arguments for ``params``, refusing what vLLM would reject or alter.

    Every field that vLLM (or the server's ``generation_config`` defaults) could otherwise set is explicit
    and neutral, so the answers are drawn from exactly ``softmax(logits / T)`` restricted by top-k/top-p.

    >>> kw = vllm_sampling_kwargs(SamplingParams(temperature=1.0, top_k=50), n=4, max_tokens=16)
    >>> kw["n"], kw["temperature"], kw["top_k"], kw["top_p"], kw["repetition_penalty"], kw["min_p"]
    (4, 1.0, 50, 1.0, 1.0, 0.0)
    >>> vllm_sampling_kwargs(SamplingParams(temperature=0.0), n=2, max_tokens=16)
    Traceback (most recent call last):
    ...
    gpgrl.rollout.vllm.EngineError: vLLM refuses n=2 answers per prompt with greedy decoding (temperature 0): they would all be the same; use a temperature > 0 or one sample
    """
    t = float(params.temperature)
    if not math.isfinite(t) or t < 0 or t > VLLM_MAX_TEMPERATURE:
        raise EngineError(f"vLLM samples at temperatures in [0, {VLLM_MAX_TEMPERATURE:g}]; got {t:g} "
                          "(rollout.temperature / --temperature)")
    if 0 < t < VLLM_MIN_TEMPERATURE:
        raise EngineError(f"vLLM raises a temperature of {t:g} to {VLLM_MIN_TEMPERATURE:g}, which would sample from "
                          "another distribution than the loss's; use 0 (greedy) or at least 0.01")
    if t == 0 and n > 1:
        raise EngineError(f"vLLM refuses n={n} answers per prompt with greedy decoding (temperature 0): they would "
                          "all be the same; use a temperature > 0 or one sample")
    if n < 1 or max_tokens < 1:
        raise EngineError(f"vLLM needs n >= 1 and max_tokens >= 1; got n={n}, max_tokens={max_tokens}")
    greedy = t == 0  # the argmax lies inside any top-k / top-p set: vLLM resets both, and so do we
    return {"n": n, "max_tokens": max_tokens, "temperature": t, "top_p": 1.0 if greedy else float(params.top_p),
            "top_k": int(params.top_k) if params.top_k and not greedy else -1,  # -1 = off in every supported version
            "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "logprobs": 0, **({"stop": list(params.stop)} if params.stop else {})}


def completion_request(model: str, prompts: list[list[int]], sampling: dict[str, Any]) -> dict[str, Any]:
    """The ``/v1/completions`` body: token ids in; token ids and each sampled token's log-prob out.

    The sampling fields are all explicit (:func:`vllm_sampling_kwargs`): a field the request leaves out is
    filled from the served model's ``generation_config`` (Qwen2.5 instruct checkpoints set
    ``repetition_penalty: 1.05``), which would reshape every sampled distribution away from the loss's.
    """
    return {"model": model, "prompt": prompts, **sampling, "return_token_ids": True, "skip_special_tokens": False}


# ------------------------------------------------------------------------------------------- weights
def vllm_named_parameters(model: torch.nn.Module | None,
                          params: Iterator[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` under the names vLLM's ``load_weights`` expects: the base model's.

    A LoRA adapter is merged into each base weight on the way, out of place (the trainer's weights are
    never modified, so no merge/unmerge round-off accumulates in bf16): peft's ``base_model.model.``
    prefix and ``.base_layer`` are dropped, the ``lora_`` tensors consumed. ``params`` may be gathered
    one at a time (ZeRO-3): only one layer's base weight and adapter are held at once.

    >>> list(vllm_named_parameters(None, iter([("base_model.model.model.q.base_layer.weight", 1),
    ...                                         ("model.norm.weight", 2)])))
    [('model.q.weight', 1), ('model.norm.weight', 2)]
    """
    layers = _lora_layers(model)
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in params:
        prefix, part = _lora_part(name, layers)
        if prefix is None:
            yield _base_name(name), tensor
            continue
        if part == "skip":  # an inactive adapter's tensor
            continue
        parts = pending.setdefault(prefix, {})
        parts[part] = tensor.detach().clone()  # gathered tensors are valid only until the next one
        layer = layers[prefix]
        if {"base", *(f"{k}:{a}" for a in _active(layer) for k in "AB")} <= parts.keys():
            yield _base_name(f"{prefix}.base_layer.weight"), _merged(layer, pending.pop(prefix))
    if pending:
        raise EngineError(f"LoRA layers {', '.join(sorted(pending))}: the base weight or an adapter matrix never "
                          "came; cannot merge them for vLLM")


def _base_name(name: str) -> str:
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def _lora_layers(model: torch.nn.Module | None) -> dict[str, torch.nn.Module]:
    """peft LoRA layers by their parameter-name prefix, wrapper prefixes removed (empty for a plain model)."""
    if model is None:
        return {}
    from gpgrl.parallel import clean_parameter_name

    return {clean_parameter_name(name): m for name, m in model.named_modules()
            if hasattr(m, "base_layer") and isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict)}


def _active(layer: torch.nn.Module) -> list[str]:
    return [a for a in layer.active_adapters if a in layer.lora_A]


def _lora_part(name: str, layers: dict[str, torch.nn.Module]) -> tuple[str | None, str]:
    """(layer prefix, "base" | "A:<adapter>" | "B:<adapter>" | "skip") for a LoRA layer's tensor, else (None, "")."""
    for marker, kind in ((".base_layer.weight", "base"), (".lora_A.", "A"), (".lora_B.", "B")):
        if marker not in name:
            continue
        prefix, rest = name.split(marker, 1)
        if prefix not in layers:
            if kind == "base":
                return None, ""  # a wrapped layer that is not a LoRA layer: renamed only
            raise EngineError(f"{name}: a LoRA matrix of a layer this model does not have; cannot merge it for vLLM")
        if kind == "base":
            return prefix, "base"
        adapter = rest.split(".")[0]
        return prefix, f"{kind}:{adapter}" if adapter in _active(layers[prefix]) else "skip"
    if ".lora_" in name:  # embedding / magnitude tensors of other LoRA variants
        raise EngineError(f"{name}: only linear LoRA adapters (peft's lora_A / lora_B) can be merged for vLLM")
    return None, ""


def _merged(layer: torch.nn.Module, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """``W + scale * B @ A`` for every active adapter, computed in float32 and cast back to W's dtype."""
    base = parts["base"]
    weight = base.float()
    for adapter in _active(layer):
        delta = parts[f"B:{adapter}"].float() @ parts[f"A:{adapter}"].float() * float(layer.scaling[adapter])
        weight = weight + (delta.T if getattr(layer, "fan_in_fan_out", False) else delta)
    return weight.to(base.dtype)


def _unwrapped(accelerator: Any, model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP / DeepSpeed / FSDP wrappers: the accelerator's, or for an engine built without
    one (and handed the trainer's prepared model) accelerate's own unwrapping."""
    if accelerator is not None:
        return accelerator.unwrap_model(model)
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model)


def _full_parameters(accelerator: Any, model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    if accelerator is None:  # nothing sharded: DDP's replica (or a bare module) holds whole parameters
        for name, p in _unwrapped(None, model).named_parameters():
            yield name, p.data
        return
    from gpgrl.parallel import iter_full_parameters

    yield from iter_full_parameters(accelerator, model)


def weight_metadata(accelerator: Any, model: torch.nn.Module) -> list[tuple[str, torch.dtype, tuple[int, ...]]]:
    """``(vLLM name, dtype, full shape)`` of every tensor :func:`vllm_weights` will send, in its order.

    The same renaming and LoRA merging run over empty ``meta`` tensors of the full shapes (ZeRO-3's
    ``ds_shape``), so the order is the stream's by construction (a merged LoRA weight comes after its
    layer's bias). Under FSDP the names and shapes are read inside ``summon_full_params`` (a shard's own
    are flattened and carry wrapper prefixes). Every process must call it (FSDP's summon is collective).
    """
    from gpgrl.parallel import sharding

    if accelerator is not None and sharding(accelerator) == "fsdp":
        return [(name, t.dtype, tuple(t.shape)) for name, t in vllm_weights(accelerator, model)]
    unwrapped = _unwrapped(accelerator, model)
    shells = ((n, torch.empty(tuple(getattr(p, "ds_shape", p.shape)), dtype=p.dtype, device="meta"))
              for n, p in unwrapped.named_parameters())
    return [(name, t.dtype, tuple(t.shape)) for name, t in vllm_named_parameters(unwrapped, shells)]


def vllm_weights(accelerator: Any, model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The full weights under vLLM's names, LoRA merged, gathered one at a time (every process iterates)."""
    yield from vllm_named_parameters(_unwrapped(accelerator, model), _full_parameters(accelerator, model))


def checked(weights: Iterator[tuple[str, torch.Tensor]],
            meta: list[tuple[str, torch.dtype, tuple[int, ...]]]) -> Iterator[tuple[str, torch.Tensor]]:
    """``weights``, checked one by one against the metadata announced to the server.

    The server sizes its receive buffers from the metadata; a tensor that disagrees would make the two
    sides of the broadcast disagree (a hang or garbage), so it is an error naming the parameter instead.
    """
    sent = 0
    for name, tensor in weights:
        if sent >= len(meta) or (name, tensor.dtype, tuple(tensor.shape)) != meta[sent]:
            want = meta[sent] if sent < len(meta) else "nothing more"
            raise EngineError(f"weight sync: parameter {sent} is {name} {tensor.dtype} {tuple(tensor.shape)}, but the "
                              f"server was told {want}")
        sent += 1
        yield name, tensor
    if sent != len(meta):
        raise EngineError(f"weight sync: sent {sent} parameters, but the server was told {len(meta)}")


#: The setting that bounds a generation request, and the one that bounds the rendezvous, each weight sync
#: and the server's other control calls (named in every timeout error, so the message says what to raise).
GENERATION_SETTING = "rollout.vllm_timeout"
SYNC_SETTING = "rollout.vllm_sync_timeout"
#: Waits between tries of ``POST /reset_prefix_cache`` while the server answers ``{"success": false}``
#: (vLLM 0.28+ does while running requests still hold cache blocks); after the last try the sync fails.
RESET_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0)
#: Waits between tries of a generation request that a paused server turned away (HTTP 503, vLLM 0.34).
PAUSED_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
#: Seconds more that an HTTP request raced against a transfer may take than the race's deadline.
RACE_SLACK_S = 5.0
#: What the other training processes wait for the main process beyond its own bounds (the rendezvous and
#: the sync, each ``rollout.vllm_sync_timeout``): the metadata, the gathers and the status collective.
FOLLOWER_GRACE_S = 60.0


class Deadline:
    """One time budget shared by several waits: each gets what is left, and an error names the whole budget
    and the setting that sets it.

    >>> d = Deadline(300, "rollout.vllm_sync_timeout")
    >>> 299 < d.left() <= 300, d.limit
    (True, 'within 300 s (rollout.vllm_sync_timeout)')
    """

    def __init__(self, seconds: float, setting: str):
        self.seconds, self.setting = float(seconds), setting
        self._end = time.monotonic() + self.seconds

    def left(self) -> float:
        return max(self._end - time.monotonic(), 0.0)

    @property
    def limit(self) -> str:
        return f"within {self.seconds:g} s ({self.setting})"


class Background:
    """``fn()`` started in a daemon thread, named ``what``; :meth:`result` waits for it within a deadline.

    For calls that can block forever (an HTTP request the server holds open during a broadcast, an NCCL
    rendezvous or broadcast whose peer never comes, a collective of the training processes): past the
    deadline the thread is abandoned and the run gets an :class:`EngineError` naming what was waited for.
    :func:`first_failure` waits for several at once and raises the first failure as soon as it happens.
    """

    _changed = threading.Condition()  # notified whenever any Background finishes

    def __init__(self, fn: Callable[[], Any], what: str):
        self.what = what
        self._out: list[Any] = []
        self._err: list[BaseException] = []
        self._done = threading.Event()

        def target() -> None:
            try:
                self._out.append(fn())
            except BaseException as e:  # re-raised in the caller's thread by result() / first_failure()
                self._err.append(e)
            finally:
                with Background._changed:
                    self._done.set()
                    Background._changed.notify_all()

        self._thread = threading.Thread(target=target, name="gpgrl-vllm", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def error(self) -> BaseException | None:
        return self._err[0] if self._err else None

    def result(self, deadline: Deadline) -> Any:
        if not self._done.wait(deadline.left()):
            raise EngineError(f"{self.what} did not finish {deadline.limit}")
        if self._err:
            raise self._err[0]
        return self._out[0] if self._out else None


def first_failure(tasks: Sequence[Background], deadline: Deadline, hint: str = "") -> list[Any]:
    """Every task's result, waiting within ``deadline``; the first task that fails raises its error at once,
    without waiting for the others (an HTTP error while the tensors wait in a broadcast for a receiver
    that will never come is reported when it happens, not when the broadcast times out).

    >>> slow = Background(lambda: threading.Event().wait(), "a broadcast")
    >>> first_failure([Background(lambda: 1 / 0, "a request"), slow], Deadline(60, "x"))
    Traceback (most recent call last):
    ...
    ZeroDivisionError: division by zero
    >>> first_failure([slow], Deadline(0.01, "x.timeout"), hint="; is the peer there?")
    Traceback (most recent call last):
    ...
    gpgrl.rollout.vllm.EngineError: a broadcast did not finish within 0.01 s (x.timeout); is the peer there?
    """
    with Background._changed:
        while True:
            failed = next((t for t in tasks if t.error is not None), None)
            if failed is not None:
                raise failed.error
            pending = [t for t in tasks if not t.done]
            if not pending:
                break
            left = deadline.left()
            if left <= 0:
                raise EngineError(f"{' and '.join(t.what for t in pending)} did not finish {deadline.limit}{hint}")
            Background._changed.wait(left)
    return [t.result(deadline) for t in tasks]


class ServerHTTPError(EngineError):
    """The server answered with an HTTP error (``code``)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def routed_address(url: str) -> str:
    """The address of this machine's network interface that routes to ``url``'s host: where a server
    there reaches this machine (``127.0.0.1`` for a server on this machine). A UDP socket's ``connect``
    picks the route; no packet is sent.

    >>> routed_address("http://127.0.0.1:8000")
    '127.0.0.1'
    """
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((parts.hostname or "", port))
            return s.getsockname()[0]
    except OSError as e:
        raise EngineError(f"cannot tell which address of this machine vllm_server {url} would reach ({e}); set "
                          "rollout.vllm_master_address to this machine's address as the server's node sees it") from None


def free_port(address: str) -> int:
    """A TCP port free on ``address`` now (the OS's pick; the rendezvous binds it moments later)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((address, 0))
            return int(s.getsockname()[1])
    except OSError as e:
        raise EngineError(f"cannot open a port on {address} for the NCCL rendezvous ({e}); is it an address of this "
                          "machine? (rollout.vllm_master_address)") from None


def prefix_cache_was_reset(reply: Any) -> bool:
    """Whether ``POST /reset_prefix_cache``'s reply says the cache was reset.

    vLLM 0.28+ answers ``{"success": false}`` while running requests hold blocks; 0.17 answers an empty
    200 without checking (taken as done).

    >>> prefix_cache_was_reset({}), prefix_cache_was_reset({"success": True}), prefix_cache_was_reset({"success": False})
    (True, True, False)
    """
    return not (isinstance(reply, dict) and reply.get("success", True) is False)


# ----------------------------------------------------------------------------------------------- server
class NCCLTransport:
    """The data plane of a weight sync: an NCCL group of the trainer's main process (rank 0) and the
    server's workers, opened with vLLM's own trainer-side rendezvous (``nccl_common.
    stateless_init_process_group`` from 0.28, ``NCCLWeightTransferEngine._stateless_init_process_group``
    before), so vLLM must be importable in the training environment, at the server's version. Rank 0
    listens on ``master_address:master_port`` (vLLM's TCP store; the workers connect to it), then NCCL
    opens its own connections. Tensors go one by one with ``PyNcclCommunicator.broadcast``, which is what
    the worker's unpacked receive loop expects in every supported version."""

    def init(self, master_address: str, master_port: int, world_size: int) -> None:
        self._group = trainer_endpoint()(master_address, master_port, 0, world_size, torch.cuda.current_device())

    def send(self, tensors: Iterator[tuple[str, torch.Tensor]]) -> None:
        stream = torch.cuda.current_stream()
        for _, tensor in tensors:
            self._group.broadcast(tensor.contiguous(), src=0, stream=stream)
        stream.synchronize()


def trainer_endpoint() -> Callable[..., Any]:
    """vLLM's function that opens the trainer's end of the weight-transfer group (by version)."""
    try:
        from vllm.distributed.weight_transfer.nccl_common import (
            stateless_init_process_group,  # 0.28 and later
        )
        return stateless_init_process_group
    except ImportError:
        pass
    try:
        from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine  # 0.17 - 0.27
    except ImportError as e:
        raise ImportError(f"{VLLM_INSTALL} ({e})") from None
    return NCCLWeightTransferEngine._stateless_init_process_group


def transfer_init_info(master_address: str, master_port: int, server_world_size: int) -> dict[str, Any]:
    """``init_info`` of ``/init_weight_transfer_engine``: the trainer is rank 0, the server's workers follow.

    Only the rendezvous fields: every supported version accepts them, and without ``packed`` the workers
    use the plain broadcast that :class:`NCCLTransport` sends.
    """
    return {"master_address": master_address, "master_port": int(master_port), "rank_offset": 1,
            "world_size": 1 + int(server_world_size)}


def transfer_update_info(meta: list[tuple[str, torch.dtype, tuple[int, ...]]]) -> dict[str, Any]:
    """``update_info`` of ``/update_weights``: names, dtypes, shapes (nothing else: 0.28 refuses ``packed`` here)."""
    return {"names": [n for n, _, _ in meta], "dtype_names": [str(d).removeprefix("torch.") for _, d, _ in meta],
            "shapes": [list(s) for _, _, s in meta]}


class VLLMServerEngine(RolloutEngine):
    """Generates with a ``vllm serve`` process over HTTP and pushes weights to it after each step.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``.
        tokenizer: the policy's tokenizer (EOS, padding, decoding).
        timeout: seconds one generation request may take (``rollout.vllm_timeout``).
        sync_timeout: seconds the NCCL rendezvous, each weight sync and each other control call may take
            (``rollout.vllm_sync_timeout``).
        accelerator: the trainer's (gathering parameters; only the main process talks to the server for
            weights, and every process waits for its outcome). None: a single process.
        transport: the weight data plane (default :class:`NCCLTransport`); ``None`` with ``sync_weights=False``
            for a server whose weights are never updated (evaluation).
        master_address, master_port: the NCCL rendezvous the server's workers join, on the trainer's main
            process; None / 0: the address of the interface that routes to the server, a free port.
    """

    ROUTES = {"models": ("GET", "/v1/models"), "completions": ("POST", "/v1/completions"),
              "world_size": ("GET", "/get_world_size"), "init": ("POST", "/init_weight_transfer_engine"),
              "pause": ("POST", "/pause"), "resume": ("POST", "/resume"),
              "start": ("POST", "/start_weight_update"), "update": ("POST", "/update_weights"),
              "finish": ("POST", "/finish_weight_update"), "reset_prefix_cache": ("POST", "/reset_prefix_cache")}
    #: ``/pause``'s mode: in-flight requests (another client's) finish with the old weights; new ones wait
    #: (0.17 - 0.28 hold them, 0.34 answers 503) until ``/resume``. ("abort" would cut them off.)
    PAUSE_QUERY = {"mode": "wait"}

    def __init__(self, base_url: str, tokenizer: Any, *, timeout: float = 600.0, sync_timeout: float = 300.0,
                 accelerator: Any = None, transport: Any = None, sync_weights: bool = True,
                 master_address: str | None = None, master_port: int = 0, model: torch.nn.Module | None = None):
        self.base_url = base_url.rstrip("/")
        self.tokenizer = tokenizer
        self.timeout, self.sync_timeout = timeout, sync_timeout
        self.accelerator = accelerator
        self.pad_id = pad_token_id(tokenizer)
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.sync_weights = sync_weights
        self.transport = transport if transport is not None else (NCCLTransport() if sync_weights else None)
        self.master_address, self.master_port = master_address, int(master_port)
        #: (address, port) the rendezvous used, once it happened (the main process only)
        self.rendezvous: tuple[str, int] | None = None
        self._meta: list[tuple[str, torch.dtype, tuple[int, ...]]] | None = None
        self._stream: Iterator[Any] | None = None  # the weights being sent (set once a sync starts sending)
        self._initialised = False
        self._synced = False
        self._four_phase = True
        self._can_pause = True
        models = self._call("models", deadline=Deadline(sync_timeout, SYNC_SETTING))
        try:
            card = models["data"][0]
        except (KeyError, IndexError, TypeError):
            raise EngineError(f"vllm_server {self.base_url} returned no model from /v1/models: {models!r:.200}") from None
        self.model_name = card["id"]
        self.max_model_len = card.get("max_model_len")

    # -- HTTP ------------------------------------------------------------------------------------------
    def _call(self, route: str, body: dict[str, Any] | None = None, *, deadline: Deadline,
              query: dict[str, str] | None = None, allow_404: bool = False, slack: float = 0.0) -> Any:
        """One request, answered within ``deadline``: its JSON reply (``{}`` for an empty one), None for a
        404 where ``allow_404``, else an :class:`EngineError` naming the server, the route and the reason.
        ``slack``: seconds more for a request raced against a transfer, so that the race's own deadline,
        which names both sides, is what ends a stuck pair."""
        method, path = self.ROUTES[route]
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=max(deadline.left(), 1e-3) + slack) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            if allow_404 and e.code == 404:
                return None
            detail = e.read().decode(errors="replace")[:300]
            raise ServerHTTPError(f"vllm_server {self.base_url} answered {method} {path} with HTTP {e.code}: {detail}",
                                  e.code) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, TimeoutError) or isinstance(e, TimeoutError):
                raise EngineError(f"vllm_server {self.base_url} did not answer {method} {path} {deadline.limit}; is "
                                  "the server stuck?") from None
            raise EngineError(f"vllm_server {self.base_url} failed on {method} {path} ({reason}); is `vllm serve` "
                              "running there, with VLLM_SERVER_DEV_MODE=1 for the weight routes?") from None
        return json.loads(text) if text.strip() else {}

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
        sampling = vllm_sampling_kwargs(params, num_samples, budget_for(longest, params.max_new_tokens,
                                                                        self.max_model_len))
        out = self._complete(completion_request(self.model_name, [p.ids for p in prompts], sampling))
        choices = sorted(out.get("choices", []), key=lambda c: c["index"])
        if len(choices) != len(prompts) * num_samples:
            raise EngineError(f"vllm_server {self.base_url} returned {len(choices)} completions for "
                              f"{len(prompts)} prompts x {num_samples}")
        tokens = [list(c.get("token_ids") or []) for c in choices]
        logps = [list((c.get("logprobs") or {}).get("token_logprobs") or []) for c in choices]
        return assemble([p for p in prompts for _ in range(num_samples)], tokens, self.tokenizer, self.pad_id,
                        self.eos_ids, logps, stop=params.stop)

    def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/completions`` within ``rollout.vllm_timeout``; a 503 (vLLM 0.34 turns requests away while
        paused for a weight sync) is tried again after a wait, within the same budget."""
        deadline = Deadline(self.timeout, GENERATION_SETTING)
        for wait in (*PAUSED_BACKOFF_S, None):
            try:
                return self._call("completions", body, deadline=deadline)
            except ServerHTTPError as e:
                if e.code != 503 or wait is None or deadline.left() <= wait:
                    if e.code == 503:
                        raise EngineError(f"{e}; the server is paused (a weight sync in progress, or one that failed "
                                          "and left it paused: restart `vllm serve`)") from None
                    raise
                time.sleep(wait)
        raise AssertionError("unreachable")

    # -- weights -----------------------------------------------------------------------------------------
    def update_weights(self, model: torch.nn.Module) -> None:
        """Push the trainer's weights to the server; every process returns only once the server serves them.

        The main process sends (pausing the server around the sync where it can, so that no request, of
        this run or another client, is served by half-updated weights); every process takes part in
        gathering the parameters, then in one collective that carries the main process's outcome: the
        others neither sample before the sync is over nor hang when it failed.
        """
        if not self.sync_weights:
            return
        if self._meta is None:  # names, dtypes and shapes never change during a run (FSDP: one more gather)
            self._meta = weight_metadata(self.accelerator, model)
        several = self.accelerator is not None and self.accelerator.num_processes > 1
        if several and not self.accelerator.is_main_process:
            self._follow(model)
        else:
            self._lead(model, several)
        self._synced = True

    def _gathers_are_collective(self) -> bool:
        if self.accelerator is None:
            return False
        from gpgrl.parallel import sharding

        return sharding(self.accelerator) != "none"

    def _lead(self, model: torch.nn.Module, several: bool) -> None:
        """The main process: sync, then tell the others how it went (also when it failed)."""
        self._stream = None
        try:
            self._push(model)
        except Exception:
            if several:
                if self._stream is None and self._gathers_are_collective():
                    for _ in vllm_weights(self.accelerator, model):  # the others' gathers wait for ours
                        pass
                if self._stream is None or not self._gathers_are_collective():
                    # (a broadcast stuck mid-stream holds the gathers: the others then time out on their own)
                    with contextlib.suppress(EngineError):
                        self._agree(failed=True)
            raise
        if several:
            self._agree(failed=False)

    def _follow(self, model: torch.nn.Module) -> None:
        """Another process: take part in the gathers, then wait for the main process's outcome."""
        collective = self._gathers_are_collective()

        def follow() -> bool:
            if collective:
                for _ in vllm_weights(self.accelerator, model):
                    pass
            return self._agree(failed=False, wait=False)

        rounds = 1 if self._synced else 2  # the first sync also opens the NCCL group
        deadline = Deadline(rounds * self.sync_timeout + FOLLOWER_GRACE_S, SYNC_SETTING)
        failed = Background(follow, f"waiting for the main process's weight sync with vllm_server {self.base_url}"
                            ).result(deadline)
        if failed:
            raise EngineError(f"the main process's weight sync with vllm_server {self.base_url} failed (its own error "
                              "says why); this process stops too rather than sample from half-updated weights")

    def _agree(self, failed: bool, wait: bool = True) -> bool:
        """Whether the main process's sync failed, on every process: one sum over the processes of a flag
        that only the main process can set. The main process waits at most ``rollout.vllm_sync_timeout``."""
        acc = self.accelerator
        flag = torch.tensor([1 if failed else 0], device=acc.device)
        if not wait:  # a follower: already bounded by its caller
            return bool(int(acc.reduce(flag, reduction="sum").item()))
        total = Background(lambda: int(acc.reduce(flag, reduction="sum").item()),
                           "the other training processes' end of the weight sync").result(
            Deadline(self.sync_timeout, SYNC_SETTING))
        return bool(total)

    def _push(self, model: torch.nn.Module) -> None:
        """The main process's sync: pause, start, names + tensors, finish, reset the prefix cache, resume."""
        meta = self._meta
        if not self._initialised:
            self._init_transfer()
        deadline = Deadline(self.sync_timeout, SYNC_SETTING)
        paused = self._pause(deadline)
        touched = False  # whether the server's weights may have changed
        try:
            if self._four_phase and self._call("start", {}, deadline=deadline, allow_404=True) is None:
                self._four_phase = False  # a server without the start/finish routes: init + update_weights only
            touched = True
            self._stream = stream = checked(vllm_weights(self.accelerator, model), meta)
            # the server's workers receive inside /update_weights while the tensors are broadcast: whichever
            # fails first is the error, at once (an HTTP error leaves the broadcast without a receiver)
            first_failure([
                Background(lambda: self._call("update", {"update_info": transfer_update_info(meta)},
                                              deadline=deadline, slack=RACE_SLACK_S),
                           f"vllm_server {self.base_url}: POST /update_weights"),
                Background(lambda: self.transport.send(stream),
                           f"vllm_server {self.base_url}: weight transfer of {len(meta)} tensors"),
            ], deadline, hint="; is the server's weight transfer stuck? (a timed-out NCCL group is unusable: restart "
                              "`vllm serve`, then the run with --resume)")
            if self._four_phase:
                self._call("finish", {}, deadline=deadline)
            self._reset_prefix_cache(deadline)  # cached prefixes hold KV computed with the old weights
        except Exception as e:
            if paused and not touched:
                with contextlib.suppress(EngineError):
                    self._call("resume", {}, deadline=Deadline(self.sync_timeout, SYNC_SETTING))
            elif paused:
                raise EngineError(f"{e} (vllm_server {self.base_url} is left paused: its weights may be half-updated; "
                                  "restart `vllm serve`, then the run with --resume)") from e
            raise
        if paused:
            self._call("resume", {}, deadline=deadline)

    def _pause(self, deadline: Deadline) -> bool:
        """``POST /pause?mode=wait`` where the server has it (True); a 404: the route is absent (False)."""
        if not self._can_pause:
            return False
        if self._call("pause", {}, deadline=deadline, query=self.PAUSE_QUERY, allow_404=True) is None:
            self._can_pause = False
            return False
        return True

    def _reset_prefix_cache(self, deadline: Deadline) -> None:
        """``POST /reset_prefix_cache``, tried again while the server answers that blocks are still held."""
        for tries, wait in enumerate((*RESET_BACKOFF_S, None), start=1):
            if prefix_cache_was_reset(self._call("reset_prefix_cache", deadline=deadline)):
                return
            if wait is None or deadline.left() <= wait:
                raise EngineError(f"vllm_server {self.base_url} did not reset its prefix cache after {tries} tries "
                                  "(it answers success: false while running requests hold cache blocks: another "
                                  "client's?); its cache would serve KV of the old weights")
            time.sleep(wait)

    def _init_transfer(self) -> None:
        """Open the NCCL group: the server's workers join the rendezvous on this process."""
        deadline = Deadline(self.sync_timeout, SYNC_SETTING)
        world = self._call("world_size", deadline=deadline, allow_404=True)
        server_world = int((world or {}).get("world_size", 1))
        address = self.master_address or routed_address(self.base_url)
        port = self.master_port or free_port(address)
        init = transfer_init_info(address, port, server_world)
        first_failure([
            Background(lambda: self._call("init", {"init_info": init}, deadline=deadline, slack=RACE_SLACK_S),
                       f"vllm_server {self.base_url}: POST /init_weight_transfer_engine"),
            Background(lambda: self.transport.init(address, port, init["world_size"]),
                       f"NCCL rendezvous with vllm_server {self.base_url}'s {server_world} worker(s) at {address}:{port}"),
        ], deadline, hint=f"; can the server's node connect to {address}:{port} (rollout.vllm_master_address, "
                          "rollout.vllm_master_port), and do both sides run the same vLLM release?")
        self.rendezvous = (address, port)
        self._initialised = True


# ------------------------------------------------------------------------------------------- colocated
def launcher_env(environ: dict[str, str], *, rank: int, local_rank: int, world_size: int) -> dict[str, str]:
    """The torchrun variables vLLM's ``external_launcher`` reads that ``environ`` lacks (nothing when launched).

    vLLM initialises ``env://`` from ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
    ``MASTER_PORT``; ``accelerate launch`` and ``torchrun`` set them, a plain ``gpgrl train`` does not.

    >>> launcher_env({}, rank=0, local_rank=0, world_size=1)["RANK"]
    '0'
    >>> launcher_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
    ...              rank=3, local_rank=1, world_size=8)
    {}
    """
    wanted = {"RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
              "MASTER_ADDR": "127.0.0.1"}
    missing = {k: v for k, v in wanted.items() if k not in environ}
    if "MASTER_PORT" not in environ:
        if world_size > 1:
            raise EngineError("rollout.engine vllm with several processes needs MASTER_PORT; start the run with "
                              "`accelerate launch` or `torchrun`")
        missing["MASTER_PORT"] = str(free_port("127.0.0.1"))  # for the one-process group
    return missing


def one_placeholder_per_image(ids: list[int], image_token_id: int, n_images: int) -> list[int]:
    """``ids`` with each image's run of placeholder tokens cut to one (vLLM expands it again itself).

    The HF processor expands ``<|image_pad|>`` to one token per image patch; vLLM's Qwen2-VL processing
    replaces each single placeholder by that many, so sending the expanded ids would expand them twice.

    >>> one_placeholder_per_image([1, 7, 9, 9, 9, 8, 2, 7, 9, 9, 8], image_token_id=9, n_images=2)
    [1, 7, 9, 8, 2, 7, 9, 8]
    """
    out: list[int] = []
    runs = 0
    for i, t in enumerate(ids):
        if t == image_token_id and i > 0 and ids[i - 1] == image_token_id:
            continue
        runs += t == image_token_id
        out.append(t)
    if runs != n_images:
        raise EngineError(f"a prompt with {n_images} image(s) has {runs} run(s) of image placeholder "
                          f"tokens (id {image_token_id}); the prompt builder and the images disagree")
    return out


def image_token_id(model: torch.nn.Module | None, tokenizer: Any) -> int | None:
    """The id of a vision model's image placeholder token (``config.image_token_id``, else ``<|image_pad|>``)."""
    config = getattr(model, "config", None)
    value = getattr(config, "image_token_id", None)
    if isinstance(value, int):
        return value
    token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
    found = tokenizer.convert_tokens_to_ids(token) if hasattr(tokenizer, "convert_tokens_to_ids") else None
    return found if isinstance(found, int) and found != getattr(tokenizer, "unk_token_id", None) else None


class VLLMColocatedEngine(RolloutEngine):
    """A ``vllm.LLM`` in this training process, sharing its GPU; weights loaded in place after each step.

    The update cycle with sleep mode (``sleep=True``), driven by the trainer: :meth:`sleep` before the
    optimizer update frees the engine's GPU memory (level 2 discards the weights and the KV cache; level 1
    copies the weights to host RAM first), then :meth:`update_weights` wakes the **weights only**
    (``wake_up(tags=["weights"])``), loads every parameter, and only then wakes the KV cache
    (``wake_up(tags=["kv_cache"])``) and resets the prefix and encoder caches. So the sync's peak holds the
    trainer's state, one gathered tensor and vLLM's weights, never the KV cache as well; and level 2 is
    safe because the sync rewrites every weight vLLM holds before anything is generated (a generation
    after a level-2 sleep without a sync is refused).

    Args:
        model_name: what vLLM loads at start (the policy's folder or hub id; its weights are replaced at
            the first sync).
        tokenizer: the policy's tokenizer.
        accelerator: the trainer's (gathering parameters one module at a time under FSDP, one at a time
            under ZeRO-3; its process index and count fill the launcher variables a plain run lacks).
        gpu_memory_utilization, seed, max_model_len, dtype, trust_remote_code: vLLM settings
            (``EngineArgs`` fields); ``max_model_len`` None lets vLLM take the model's whole context.
        sleep: use sleep mode around the trainer's update; sleep_level: 1 or 2 (see above).
        tokenizer_name: a tokenizer folder or id other than the model's (``model.tokenizer``).
        mm_processor_kwargs: vLLM's image-processor overrides (``{"min_pixels": ..., "max_pixels": ...}``),
            so that vLLM resizes images as the trainer's processor does.
        llm_factory: builds the engine (default ``vllm.LLM``; the tests pass a stand-in).
        sampling_factory: builds sampling settings (default ``vllm.SamplingParams``).
        model: the policy (EOS ids, the image placeholder id).
    """

    def __init__(self, model_name: str, tokenizer: Any, *, accelerator: Any = None, gpu_memory_utilization: float = 0.3,
                 sleep: bool = True, sleep_level: int = 2, seed: int = 0, max_model_len: int | None = None,
                 dtype: str = "auto", trust_remote_code: bool = False, tokenizer_name: str | None = None,
                 mm_processor_kwargs: dict[str, Any] | None = None, llm_factory: Callable[..., Any] | None = None,
                 sampling_factory: Callable[..., Any] | None = None, model: torch.nn.Module | None = None):
        if sleep_level not in (1, 2):
            raise EngineError(f"rollout.vllm_sleep_level must be 1 (weights kept in host RAM) or 2 (weights "
                              f"discarded, reloaded by the sync); got {sleep_level}")
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
        self.image_token_id = image_token_id(model, tokenizer)
        self.sleep_between = sleep
        self.sleep_level = sleep_level
        self.sampling_factory = sampling_factory
        self.max_model_len = max_model_len
        acc = accelerator
        os.environ.update(launcher_env(os.environ, rank=acc.process_index if acc else 0,
                                       local_rank=acc.local_process_index if acc else 0,
                                       world_size=acc.num_processes if acc else 1))
        self.llm = llm_factory(**self.llm_kwargs(
            model_name, gpu_memory_utilization=gpu_memory_utilization, sleep=sleep, seed=seed,
            max_model_len=max_model_len, dtype=dtype, trust_remote_code=trust_remote_code, tokenizer=tokenizer_name,
            mm_processor_kwargs=mm_processor_kwargs))
        self._asleep = False
        self._weights_discarded = False  # after a level-2 sleep, until the next sync

    @staticmethod
    def llm_kwargs(model_name: str, *, gpu_memory_utilization: float, sleep: bool, seed: int, max_model_len: int | None,
                   dtype: str = "auto", trust_remote_code: bool = False, tokenizer: str | None = None,
                   mm_processor_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        """``vllm.LLM`` keyword arguments (each an ``EngineArgs`` field in every supported version).

        >>> kw = VLLMColocatedEngine.llm_kwargs("M", gpu_memory_utilization=0.3, sleep=True, seed=1, max_model_len=4096,
        ...                                     dtype="bfloat16", mm_processor_kwargs={"max_pixels": 401408})
        >>> kw["max_model_len"], kw["dtype"], kw["mm_processor_kwargs"], "tokenizer" in kw
        (4096, 'bfloat16', {'max_pixels': 401408}, False)
        """
        kwargs = {"model": model_name, "tensor_parallel_size": 1, "distributed_executor_backend": "external_launcher",
                  "gpu_memory_utilization": gpu_memory_utilization, "enable_sleep_mode": sleep, "seed": seed,
                  "max_model_len": max_model_len, "dtype": dtype, "trust_remote_code": trust_remote_code,
                  # sampling log-probs of the distribution sampled from (temperature, top-k/top-p applied)
                  "logprobs_mode": "processed_logprobs"}
        if tokenizer:
            kwargs["tokenizer"] = tokenizer
        if mm_processor_kwargs:
            kwargs["mm_processor_kwargs"] = dict(mm_processor_kwargs)
        return kwargs

    def request(self, prompt: Prompt) -> dict[str, Any]:
        """One prompt as vLLM takes it: token ids with one placeholder per image, and the images."""
        if not prompt.images:
            return {"prompt_token_ids": list(prompt.ids)}
        if self.image_token_id is None:
            raise EngineError("an image prompt, but the model names no image placeholder token (config.image_token_id)")
        return {"prompt_token_ids": one_placeholder_per_image(list(prompt.ids), self.image_token_id, len(prompt.images)),
                "multi_modal_data": {"image": list(prompt.images)}}

    def generate(self, prompts: Sequence[Prompt | Sequence[int]], params: SamplingParams,
                 num_samples: int) -> RolloutBatch:
        prompts = as_prompts(prompts)
        if self._weights_discarded:
            raise EngineError("the vllm engine slept at level 2, which discards its weights; update_weights(model) "
                              "reloads them before the next generation")
        self.wake_up()  # after a level-1 sleep without a sync: the offloaded weights are still good
        longest = max(len(p.ids) for p in prompts)
        sampling = self.sampling_factory(**vllm_sampling_kwargs(
            params, num_samples, budget_for(longest, params.max_new_tokens, self.max_model_len)))
        outputs = self.llm.generate([self.request(p) for p in prompts], sampling_params=sampling, use_tqdm=False)
        tokens, logps = [], []
        for out in outputs:  # in prompt order; its n samples in order
            for sample in out.outputs:
                ids = list(sample.token_ids)
                tokens.append(ids)
                steps = sample.logprobs or []
                logps.append([float(step[t].logprob) if t in step else 0.0 for t, step in zip(ids, steps)])
        rows = [p for p in prompts for _ in range(num_samples)]  # the expanded ids: what the loss needs
        if len(tokens) != len(rows):
            raise EngineError(f"vLLM returned {len(tokens)} completions for {len(prompts)} prompts x {num_samples}")
        return assemble(rows, tokens, self.tokenizer, self.pad_id, self.eos_ids, logps, stop=params.stop)

    def update_weights(self, model: torch.nn.Module) -> None:
        """Load the trainer's weights into the engine, weights first when it sleeps, then fresh caches.

        Asleep: ``wake_up(tags=["weights"])``, every parameter loaded (gathered one FSDP unit or ZeRO-3
        parameter at a time, LoRA merged), ``wake_up(tags=["kv_cache"])``. Then the prefix cache (KV of the
        old weights) and the encoder cache (image embeddings of the old vision tower) are reset. Every
        process calls it (the gathers are collective).
        """
        asleep = self._asleep
        if asleep:
            self.llm.wake_up(tags=["weights"])  # the KV cache stays freed while the weights load
        for name, tensor in vllm_weights(self.accelerator, model):
            self.llm.apply_model(lambda m, w=(name, tensor): m.load_weights([w]))
        self._weights_discarded = False
        if asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._asleep = False
        self.llm.reset_prefix_cache()  # cached prefixes hold KV computed with the old weights
        self.llm.llm_engine.reset_encoder_cache()  # and image embeddings of the old vision tower

    def sleep(self) -> None:
        """Free the engine's GPU memory (sleep mode, ``sleep_level``) until :meth:`update_weights`."""
        if self.sleep_between and not self._asleep:
            self.llm.sleep(level=self.sleep_level)
            self._asleep = True
            self._weights_discarded = self.sleep_level == 2

    def wake_up(self) -> None:
        """Take all the engine's memory back (after a level-2 sleep the weights still need a sync)."""
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False


def colocated_max_model_len(cfg: Config, context: int | None) -> int | None:
    """The colocated engine's ``max_model_len``: ``rollout.vllm_max_model_len``, or the run's prompt budget
    (``data.max_prompt_length`` as the run resolved it: the trainer builds its engine from that config) plus
    ``rollout.max_completion_length``, never above the model's context (vLLM refuses that). Left to vLLM
    (None), it takes the model's whole context (131,072 tokens for the R1-Distill models) and refuses to
    start when one such sequence's KV cache does not fit.

    >>> from types import SimpleNamespace as S
    >>> cfg = S(data=S(max_prompt_length=512), rollout=S(max_completion_length=3584, vllm_max_model_len=None))
    >>> colocated_max_model_len(cfg, 131072), colocated_max_model_len(cfg, None), colocated_max_model_len(cfg, 2048)
    (4096, 4096, 2048)
    >>> cfg.rollout.vllm_max_model_len = 6000; colocated_max_model_len(cfg, 131072)
    6000
    >>> colocated_max_model_len(cfg, 4096)
    Traceback (most recent call last):
    ...
    gpgrl.rollout.vllm.EngineError: rollout.vllm_max_model_len=6000 is above the model's context of 4096 tokens (max_position_embeddings), which vLLM refuses; lower it, or leave it null for prompt + answer budget (4096)
    """
    r, prompt = cfg.rollout, cfg.data.max_prompt_length
    needed = prompt + r.max_completion_length if prompt is not None else context  # unresolved: the context
    if context is not None and needed is not None:
        needed = min(needed, context)
    if r.vllm_max_model_len is None:
        return needed
    if r.vllm_max_model_len < 2:
        raise EngineError(f"rollout.vllm_max_model_len must be at least 2 tokens, got {r.vllm_max_model_len}")
    if context is not None and r.vllm_max_model_len > context:
        raise EngineError(f"rollout.vllm_max_model_len={r.vllm_max_model_len} is above the model's context of "
                          f"{context} tokens (max_position_embeddings), which vLLM refuses; lower it, or leave it "
                          f"null for prompt + answer budget ({needed})")
    return r.vllm_max_model_len


def engine_dtype(setting: str, model: torch.nn.Module | None, mixed_precision: str = "no") -> str:
    """vLLM's ``dtype``: the precision the trainer computes in. Under bf16 / fp16 mixed precision that is
    the autocast dtype (the forward runs in it, whatever the stored weights' dtype; a float32 master copy
    must not make vLLM run in float32); else ``model.dtype`` when set, else the dtype of the trainer's
    loaded weights. vLLM's own ``auto`` would run a float32 checkpoint in bfloat16, i.e. sample from
    another model than the loss's.

    >>> engine_dtype("bfloat16", None), engine_dtype("auto", torch.nn.Linear(2, 2))
    ('bfloat16', 'float32')
    >>> engine_dtype("float32", torch.nn.Linear(2, 2), mixed_precision="bf16")
    'bfloat16'
    """
    if mixed_precision in ("bf16", "fp16"):
        return {"bf16": "bfloat16", "fp16": "float16"}[mixed_precision]
    if setting != "auto":
        return setting
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32) if model else None
    return str(dtype or torch.float32).removeprefix("torch.")


def pixel_kwargs(min_pixels: int | None, max_pixels: int | None) -> dict[str, int] | None:
    """``mm_processor_kwargs`` that make vLLM's Qwen2-VL image processing resize as the trainer's processor
    (``model.min_pixels`` / ``model.max_pixels``); None when neither is set (both use the model's own).

    >>> pixel_kwargs(None, 401408), pixel_kwargs(None, None)
    ({'max_pixels': 401408}, None)
    """
    kwargs = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    return kwargs or None


def _check_rollout_sampling(r: RolloutConfig) -> None:
    """A rollout vLLM cannot sample as configured fails when the engine is built, before the first step."""
    vllm_sampling_kwargs(SamplingParams(max_new_tokens=r.max_completion_length, temperature=r.temperature,
                                        top_p=r.top_p, top_k=r.top_k), n=r.group_size, max_tokens=1)


def build_server_engine(cfg: Config, accelerator: Accelerator, model: torch.nn.Module,
                        tokenizer: Any) -> VLLMServerEngine:
    """``rollout.engine: vllm_server``: a ``vllm serve`` process at ``rollout.vllm_server_url``."""
    r = cfg.rollout
    _check_rollout_sampling(r)
    return VLLMServerEngine(r.vllm_server_url, text_tokenizer(tokenizer), timeout=r.vllm_timeout,
                            sync_timeout=r.vllm_sync_timeout, master_address=r.vllm_master_address,
                            master_port=r.vllm_master_port, accelerator=accelerator,
                            model=accelerator.unwrap_model(model))


def build_colocated_engine(cfg: Config, accelerator: Accelerator, model: torch.nn.Module,
                           tokenizer: Any) -> VLLMColocatedEngine:
    """``rollout.engine: vllm``: a ``vllm.LLM`` in this process, on its GPU, loading what the trainer loaded:
    the same folder, tokenizer, dtype and image sizes, with room for the run's longest prompt + answer
    (``cfg`` as the run resolved it: ``data.max_prompt_length`` set, see :meth:`gpgrl.config.Config.with_resolved`)."""
    from gpgrl.models.loading import gguf_path
    from gpgrl.models.vision import is_vision_model
    from gpgrl.rollout.engine import model_context_length

    r, m = cfg.rollout, cfg.model
    _check_rollout_sampling(r)
    if gguf_path(m.name_or_path) is not None:
        raise EngineError(f"rollout.engine vllm cannot start from the GGUF file {m.name_or_path!r}: vLLM 0.28+ has no "
                          "GGUF loader, and 0.17's keeps the weights quantized, where the trainer's float weights "
                          "cannot be loaded. Save the model once as a folder (load it with transformers, then "
                          "save_pretrained) and pass that folder as model.name_or_path")
    unwrapped = accelerator.unwrap_model(model)
    return VLLMColocatedEngine(m.name_or_path, text_tokenizer(tokenizer), accelerator=accelerator,
                               gpu_memory_utilization=r.vllm_gpu_memory_utilization, sleep=r.vllm_sleep,
                               sleep_level=r.vllm_sleep_level, seed=cfg.train.seed + accelerator.process_index,
                               max_model_len=colocated_max_model_len(cfg, model_context_length(unwrapped)),
                               dtype=engine_dtype(m.dtype, unwrapped, str(getattr(accelerator, "mixed_precision", "no"))),
                               trust_remote_code=m.trust_remote_code,
                               tokenizer_name=m.tokenizer,
                               mm_processor_kwargs=pixel_kwargs(m.min_pixels, m.max_pixels)
                               if is_vision_model(unwrapped) else None,
                               model=unwrapped)
