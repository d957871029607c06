"""``vllm.LLM`` on a CPU: a real transformers model (float32) behind vLLM's offline API, as strict as vLLM.

What it checks, as vLLM 0.17-0.34 does (each with vLLM's own message where it has one):

* ``LLM(**kwargs)`` takes only ``EngineArgs`` field names (:data:`vllm._fields.ENGINE_ARGS`); ``model`` must be
  a local folder here (no hub); ``external_launcher`` needs the torchrun variables;
* ``max_model_len`` above the model's ``max_position_embeddings`` is refused; ``None`` means the model's whole
  context; then the KV cache for one ``max_model_len`` sequence must fit what ``gpu_memory_utilization`` of a
  fake GPU (``$VLLM_STANDIN_GPU_MEMORY`` bytes, 80 GiB by default) leaves after the weights, in the dtype vLLM
  would run (``dtype="auto"`` turns a float32 model into bfloat16, as vLLM does on a GPU);
* one engine with sleep mode per process (vLLM's allocator asserts it);
* ``sleep(level=1)`` offloads the weights (restored on waking), ``sleep(level=2)`` DISCARDS them: the
  parameters become NaN until loaded again, the buffers (rotary tables) are saved and restored on the next
  ``wake_up`` as vLLM 0.17 does, which also requires the weights to wake first; ``wake_up(tags)`` takes
  only ``weights`` / ``kv_cache`` / ``scheduling`` and refuses a tag that is not asleep (vLLM 0.17 would
  skip the whole call); ``generate`` and ``apply_model`` refuse to run on memory that is asleep, and
  ``generate`` refuses weights that are not finite (a discarded weight that was never reloaded);
* a prompt of ``max_model_len`` tokens or more is refused; answers stop at ``max_model_len``.

Sampling uses the model it holds, as vLLM v1's sampler does (``vllm/v1/worker/gpu/sample/sampler.py``):
logits / temperature, then top-k, then top-p (vLLM's sorted-cumsum rule), one token drawn from the
renormalised distribution; ``logprobs_mode="processed_logprobs"`` reports the sampled token's log-prob under
that processed distribution, ``raw_logprobs`` (vLLM's default) under the untempered, unfiltered softmax.
Image prompts (``multi_modal_data``) go through the model folder's image processor with
``mm_processor_kwargs``'s ``min_pixels`` / ``max_pixels`` applied as vLLM's Qwen2-VL processing applies them;
each single placeholder token is expanded to the image's token count.

Every call is logged (``vllm._record.log``) with its arguments, and each ``generate`` with a fingerprint of
the weights it samples with (``vllm._record.weights_hash``).
"""

from __future__ import annotations

import gc
import math
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .._fields import ENGINE_ARGS
from .._record import log, weights_hash
from ..logprobs import Logprob
from ..outputs import CompletionOutput, RequestOutput
from ..sampling_params import _SAMPLING_EPS, SamplingParams

GIB = 1 << 30
GPU_MEMORY_ENV = "VLLM_STANDIN_GPU_MEMORY"
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
DTYPES = {"half": torch.float16, "float16": torch.float16, "bfloat16": torch.bfloat16, "float": torch.float32,
          "float32": torch.float32}
LOGPROBS_MODES = ("raw_logprobs", "raw_logits", "processed_logprobs", "processed_logits")
WAKE_TAGS = ("weights", "kv_cache", "scheduling")
BLOCK_SIZE = 16

_SLEEP_MODE_ENGINES: weakref.WeakSet = weakref.WeakSet()


def vllm_filtered(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """``logits`` [V] with vLLM's top-k then top-p masks (-inf outside), as ``apply_top_k_top_p_pytorch``.

    >>> vllm_filtered(torch.tensor([0.0, 1.0, 2.0, 3.0]), top_k=2, top_p=1.0).tolist()
    [-inf, -inf, 2.0, 3.0]
    """
    vocab = logits.shape[-1]
    k = top_k if 0 < top_k < vocab else None
    p = top_p if top_p < 1.0 else None
    if k is None and p is None:
        return logits
    values, order = logits.sort(dim=-1, descending=False)
    if k is not None:
        values = values.masked_fill(values < values[vocab - k], -math.inf)
    if p is not None:
        cumulative = values.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= 1 - p
        drop[-1] = False  # at least one
        values = values.masked_fill(drop, -math.inf)
    return torch.empty_like(logits).scatter_(-1, order, values)


class _Draw:
    """A ``generate`` logits processor that draws each token as vLLM does and records its log-prob."""

    def __init__(self, params: SamplingParams, mode: str, generator: torch.Generator):
        self.params, self.mode, self.generator = params, mode, generator
        self.steps: list[tuple[int, dict[int, Logprob]]] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores[0].float()
        p = self.params
        if p.temperature < _SAMPLING_EPS:  # greedy: the processed logits are the raw ones (no temperature)
            processed = logits
            token = int(logits.argmax())
        else:
            processed = vllm_filtered(logits / p.temperature, int(p.top_k), float(p.top_p))
            token = int(torch.multinomial(processed.softmax(-1), 1, generator=self.generator))
        scored = {"raw_logprobs": logits.log_softmax(-1), "raw_logits": logits,
                  "processed_logprobs": processed.log_softmax(-1), "processed_logits": processed}[self.mode]
        entry = {token: Logprob(float(scored[token]), rank=int((scored > scored[token]).sum()) + 1)}
        if p.logprobs:  # the top N besides the sampled token
            top = scored.topk(int(p.logprobs) if p.logprobs > 0 else scored.numel())
            for rank, (value, index) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
                entry.setdefault(int(index), Logprob(float(value), rank=rank))
        self.steps.append((token, entry))
        out = torch.full_like(scores, -math.inf)
        out[0, token] = 0.0
        return out


class _Stop:
    """Ends generation once the decoded answer holds a stop string."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str]):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, list(stop)
        self.hit = False

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :].tolist(), skip_special_tokens=True)
        self.hit = any(s in text for s in self.stop)
        return torch.tensor([self.hit])


class _Worker:
    """What ``apply_model(fn)`` hands to ``fn``: the model, with vLLM's ``load_weights``."""

    def __init__(self, llm: LLM):
        self._llm = weakref.ref(llm)

    @property
    def model(self) -> torch.nn.Module:
        return self._llm().model

    def named_parameters(self):
        return self._llm().model.named_parameters()

    def load_weights(self, weights) -> set[str]:
        llm = self._llm()
        params = dict(llm.model.named_parameters())
        loaded = []
        with torch.no_grad():
            for name, tensor in weights:
                if name not in params:  # vLLM's models index their params_dict: KeyError
                    raise KeyError(name)
                if tuple(tensor.shape) != tuple(params[name].shape):
                    raise ValueError(f"{name}: loaded weight of shape {tuple(tensor.shape)} into a parameter of "
                                     f"shape {tuple(params[name].shape)}")
                params[name].copy_(tensor)
                loaded.append(name)
        log("load_weights", names=loaded)
        return set(loaded)


class _LLMEngine:
    """``llm.llm_engine``: the resets and ``apply_model`` the colocated engine reaches through it."""

    def __init__(self, llm: LLM):
        self._llm = weakref.ref(llm)

    def reset_encoder_cache(self) -> None:
        log("reset_encoder_cache", asleep=sorted(self._llm()._asleep))

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        return self._llm().reset_prefix_cache(reset_running_requests, reset_connector)

    def apply_model(self, func: Callable[[Any], Any]) -> list[Any]:
        return self._llm().apply_model(func)


class LLM:
    """``vllm.LLM(model, **engine_args)`` on a CPU (see the module docstring for what it enforces)."""

    def __init__(self, model: str | None = None, **kwargs: Any):
        args = {"model": model, **kwargs}
        log("LLM", kwargs=args)
        unknown = sorted(set(kwargs) - ENGINE_ARGS)
        if unknown:  # vLLM passes **kwargs to EngineArgs, a dataclass
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument '{unknown[0]}'")
        self.args = args
        if kwargs.get("distributed_executor_backend") == "external_launcher":
            missing = [key for key in LAUNCHER_ENV if key not in os.environ]
            if missing:  # ExecutorWithExternalLauncher reads them with os.environ[...]
                raise KeyError(missing[0])
        if kwargs.get("tensor_parallel_size", 1) != 1:
            raise NotImplementedError("the vllm stand-in runs tensor_parallel_size=1 only")
        utilization = float(kwargs.get("gpu_memory_utilization", 0.9))
        if not 0 < utilization <= 1:
            raise ValueError(f"GPU memory utilization must be within (0, 1]. Got {utilization}.")
        self.logprobs_mode = kwargs.get("logprobs_mode", "raw_logprobs")
        if self.logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"Invalid logprobs_mode {self.logprobs_mode!r}; choose one of {LOGPROBS_MODES}")
        self.sleep_mode = bool(kwargs.get("enable_sleep_mode", False))
        if self.sleep_mode:
            gc.collect()  # engines nobody holds any more do not count
            if len(_SLEEP_MODE_ENGINES):
                raise AssertionError("Sleep mode can only be used for one instance per process.")
        self.mm_processor_kwargs = dict(kwargs.get("mm_processor_kwargs") or {})
        unsupported = sorted(set(self.mm_processor_kwargs) - {"min_pixels", "max_pixels"})
        if unsupported:
            raise NotImplementedError(f"the vllm stand-in applies mm_processor_kwargs min_pixels / max_pixels only, "
                                      f"not {unsupported}")
        self._load(str(model) if model is not None else "", kwargs)
        self._check_memory(utilization, kwargs.get("max_model_len"))
        self._generator = torch.Generator().manual_seed(int(kwargs.get("seed") or 0))
        self._asleep: set[str] = set()
        self._offloaded: dict[str, torch.Tensor] = {}
        self._saved_buffers: dict[str, torch.Tensor] = {}
        self.llm_engine = _LLMEngine(self)
        if self.sleep_mode:
            _SLEEP_MODE_ENGINES.add(self)
        log("ready", max_model_len=self.max_model_len, dtype=str(self.engine_dtype).removeprefix("torch."),
            kv_bytes_per_token=self.kv_bytes_per_token, kv_budget_bytes=self.kv_budget_bytes,
            vision=self.vision, weights=weights_hash(self.model.named_parameters()))

    # -- start-up --------------------------------------------------------------------------------------
    def _load(self, folder: str, kwargs: dict[str, Any]) -> None:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if folder.lower().endswith(".gguf"):
            raise ValueError(f"{folder}: vLLM 0.28+ has no GGUF loader (the stand-in follows the newest release); "
                             "pass a folder saved with save_pretrained")
        if not (Path(folder) / "config.json").is_file():
            raise OSError(f"the vllm stand-in loads local model folders only; {folder!r} holds no config.json")
        remote = bool(kwargs.get("trust_remote_code", False))
        self.config = AutoConfig.from_pretrained(folder, trust_remote_code=remote)
        self.vision = getattr(self.config, "vision_config", None) is not None
        self.text_config = getattr(self.config, "text_config", None) or self.config
        tokenizer_source = kwargs.get("tokenizer") or folder
        if self.vision:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(tokenizer_source, trust_remote_code=remote)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32,
                                                                     trust_remote_code=remote)
        else:
            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=remote)
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, trust_remote_code=remote)
        self.model.eval().requires_grad_(False)
        dtype = str(kwargs.get("dtype", "auto")).lower()
        if dtype == "auto":  # the config's dtype; vLLM runs a float32 checkpoint in bfloat16 on a GPU
            config_dtype = getattr(self.config, "dtype", None) or getattr(self.config, "torch_dtype", None)
            if isinstance(config_dtype, str):
                config_dtype = getattr(torch, config_dtype, torch.float32)
            self.engine_dtype = torch.bfloat16 if config_dtype in (None, torch.float32) else config_dtype
        elif dtype in DTYPES:
            self.engine_dtype = DTYPES[dtype]
        else:
            raise ValueError(f"Unknown dtype: {dtype!r}")

    def _check_memory(self, utilization: float, max_model_len: int | None) -> None:
        """vLLM's two start-up refusals: a max_model_len above the model's, and no room for one sequence."""
        t = self.text_config
        derived = int(t.max_position_embeddings)
        if max_model_len is None or max_model_len == -1:
            max_model_len = derived
        elif max_model_len > derived:
            raise ValueError(f"User-specified max_model_len ({max_model_len}) is greater than the derived "
                             f"max_model_len (max_position_embeddings={derived} or model_max_length=None in model's "
                             "config.json). To allow overriding this maximum, set the env var "
                             "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.")
        self.max_model_len = int(max_model_len)
        heads = t.num_attention_heads
        head_dim = getattr(t, "head_dim", None) or t.hidden_size // heads
        kv_heads = getattr(t, "num_key_value_heads", None) or heads
        width = torch.empty((), dtype=self.engine_dtype).element_size()
        self.kv_bytes_per_token = 2 * t.num_hidden_layers * kv_heads * head_dim * width  # K and V, every layer
        weights = sum(p.numel() for p in self.model.parameters()) * width
        gpu = int(float(os.environ.get(GPU_MEMORY_ENV, 80 * GIB)))
        self.kv_budget_bytes = int(gpu * utilization) - weights
        if self.kv_budget_bytes <= 0:
            raise ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                             "initializing the engine.")
        needed = math.ceil(self.max_model_len / BLOCK_SIZE) * BLOCK_SIZE * self.kv_bytes_per_token
        if needed > self.kv_budget_bytes:
            fits = self.kv_budget_bytes // self.kv_bytes_per_token // BLOCK_SIZE * BLOCK_SIZE
            raise ValueError(f"To serve at least one request with the model's max seq len ({self.max_model_len}), "
                             f"({needed / GIB:.2f} GiB KV cache is needed, which is larger than the available KV cache "
                             f"memory ({self.kv_budget_bytes / GIB:.2f} GiB). Based on the available memory, the "
                             f"estimated maximum model length is {fits}. Try increasing `gpu_memory_utilization` or "
                             "decreasing `max_model_len` when initializing the engine.")

    # -- generation ------------------------------------------------------------------------------------
    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: Any, sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
                 use_tqdm: bool = True, lora_request: Any = None, **kwargs: Any) -> list[RequestOutput]:
        requests = [prompts] if isinstance(prompts, (str, dict)) else list(prompts)
        if sampling_params is None:
            sampling_params = SamplingParams()
        per_request = (list(sampling_params) if isinstance(sampling_params, (list, tuple))
                       else [sampling_params] * len(requests))
        if any(not isinstance(p, SamplingParams) for p in per_request) or len(per_request) != len(requests):
            raise TypeError("sampling_params must be a SamplingParams or one per prompt")
        expanded = [self._expand(r) for r in requests]
        log("generate", n_requests=len(requests), sampling=[p.given for p in per_request],
            prompt_lens=[len(ids) for ids, _, _ in expanded], image_tokens=[counts for _, _, counts in expanded],
            asleep=sorted(self._asleep), weights=weights_hash(self.model.named_parameters()))
        if self._asleep:
            raise RuntimeError(f"generate() while {sorted(self._asleep)} sleep(s): call wake_up() for every tag "
                               "first (vLLM would run on freed memory)")
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise RuntimeError(f"generate() with discarded weights ({len(bad)} parameters, e.g. {bad[0]}, were never "
                               "loaded after sleep(level=2)); vLLM would sample garbage")
        outputs = []
        for index, ((ids, inputs, _), params) in enumerate(zip(expanded, per_request)):
            if len(ids) >= self.max_model_len:
                raise ValueError(f"The decoder prompt (length {len(ids)}) plus the number of requested output tokens "
                                 f"(at least 1) is longer than the maximum model length of {self.max_model_len}.")
            samples = [self._sample(ids, inputs, params, j) for j in range(params.n)]
            outputs.append(RequestOutput(str(index), None, list(ids), samples))
        return outputs

    def _expand(self, request: Any) -> tuple[list[int], dict[str, torch.Tensor], list[int]]:
        """(prompt ids with each image's placeholders expanded, the model's image inputs, tokens per image)."""
        if isinstance(request, str):
            return self.tokenizer(request)["input_ids"], {}, []
        unknown = sorted(set(request) - {"prompt_token_ids", "multi_modal_data", "mm_processor_kwargs",
                                         "cache_salt", "prompt"})
        if unknown:
            raise ValueError(f"TokensPrompt has no keys {unknown}")
        ids = list(request["prompt_token_ids"])
        images = list((request.get("multi_modal_data") or {}).get("image") or [])
        if not images:
            return ids, {}, []
        if not self.vision:
            raise ValueError(f"{type(self.model).__name__} does not support multimodal inputs")
        image_id = int(self.config.image_token_id)
        if ids.count(image_id) != len(images):
            raise ValueError(f"Failed to apply prompt replacement for mm items: {len(images)} image(s) but "
                             f"{ids.count(image_id)} placeholder token(s) (id {image_id}) in the prompt")
        processor = self.processor.image_processor
        size = dict(processor.size)  # vLLM's Qwen2-VL: min/max_pixels override the size's edges
        if self.mm_processor_kwargs.get("min_pixels") is not None:
            size["shortest_edge"] = int(self.mm_processor_kwargs["min_pixels"])
        if self.mm_processor_kwargs.get("max_pixels") is not None:
            size["longest_edge"] = int(self.mm_processor_kwargs["max_pixels"])
        inputs = dict(processor(images=images, size=size, return_tensors="pt"))
        merge = int(getattr(processor, "merge_size", 2))
        counts = [int(g.prod()) // (merge * merge) for g in inputs["image_grid_thw"]]
        out, k = [], 0
        for t in ids:
            if t == image_id:
                out.extend([image_id] * counts[k])
                k += 1
            else:
                out.append(t)
        return out, inputs, counts

    def _sample(self, ids: list[int], inputs: dict[str, torch.Tensor], params: SamplingParams,
                index: int) -> CompletionOutput:
        import inspect

        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        room = self.max_model_len - len(ids)
        budget = min(params.max_tokens, room) if params.max_tokens is not None else room
        eos = {int(self.tokenizer.eos_token_id)} if self.tokenizer.eos_token_id is not None else set()
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos.update([gen_eos] if isinstance(gen_eos, int) else list(gen_eos or []))
        eos.update(params.stop_token_ids)
        draw = _Draw(params, self.logprobs_mode, self._generator)
        stop = _Stop(self.tokenizer, len(ids), params.stop) if params.stop else None
        input_ids = torch.tensor([ids])
        extra = dict(inputs)
        if inputs and "mm_token_type_ids" in inspect.signature(self.model.forward).parameters:
            extra["mm_token_type_ids"] = (input_ids == int(self.config.image_token_id)).long()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(eos, default=0)
        config = GenerationConfig(do_sample=False, max_new_tokens=budget, eos_token_id=sorted(eos) or None,
                                  pad_token_id=pad, bos_token_id=None)
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                      generation_config=config, logits_processor=LogitsProcessorList([draw]),
                                      stopping_criteria=StoppingCriteriaList([stop] if stop else []), **extra)
        tokens = out[0, len(ids) :].tolist()
        tokens = tokens[: len(draw.steps)]  # generate pads nothing for one row, but be exact
        logprobs = [entry for _, entry in draw.steps][: len(tokens)]
        text = self.tokenizer.decode(tokens, skip_special_tokens=params.skip_special_tokens)
        finish = "length"
        if tokens and tokens[-1] in eos:
            finish = "stop"
        elif stop is not None and stop.hit:
            finish = "stop"
            text = text[: min(i for i in (text.find(s) for s in params.stop) if i >= 0)]
        cumulative = sum(entry[token].logprob for token, entry in draw.steps[: len(tokens)])
        return CompletionOutput(index=index, text=text, token_ids=tokens, cumulative_logprob=cumulative,
                                logprobs=logprobs if params.logprobs is not None else None, finish_reason=finish)

    # -- weights and memory ----------------------------------------------------------------------------
    def apply_model(self, func: Callable[[Any], Any]) -> list[Any]:
        log("apply_model", func=getattr(func, "__name__", repr(func)), asleep=sorted(self._asleep))
        if "weights" in self._asleep:
            raise RuntimeError("apply_model() while the weights sleep: their memory is unmapped; wake_up(tags="
                               "['weights']) first")
        return [func(_Worker(self))]

    def sleep(self, level: int = 1, mode: str = "abort", **kwargs: Any) -> None:
        log("sleep", level=level, mode=mode, **kwargs)
        if not self.sleep_mode:
            raise RuntimeError("Sleep mode is not enabled. Enable it with enable_sleep_mode=True")
        if level not in (0, 1, 2):
            raise ValueError(f"sleep level must be 0, 1 or 2, got {level}")
        if self._asleep:  # vLLM only warns ("Executor is already sleeping.") and keeps the first level's state
            raise RuntimeError(f"sleep() while already asleep ({sorted(self._asleep)}): the engine's caller lost track")
        if level == 0:
            self._asleep = {"scheduling"}
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            if level == 1:  # offloaded to host memory, restored on waking
                self._offloaded = {n: p.detach().clone() for n, p in params.items()}
            else:  # discarded; vLLM 0.17 saves the buffers and restores them on the next wake_up
                self._saved_buffers = {n: b.detach().clone() for n, b in self.model.named_buffers()}
                for _, b in self.model.named_buffers():
                    if b.is_floating_point():
                        b.fill_(float("nan"))
            for p in params.values():
                p.fill_(float("nan"))
        self._asleep = {"weights", "kv_cache"}

    def wake_up(self, tags: list[str] | None = None) -> bool:
        log("wake_up", tags=tags, asleep=sorted(self._asleep))
        if tags is not None:
            unknown = sorted(set(tags) - set(WAKE_TAGS))
            if unknown:
                raise ValueError(f"wake_up tags must be in {WAKE_TAGS}, got {unknown}")
            awake = sorted(set(tags) - self._asleep - {"scheduling"})
            if awake:  # vLLM 0.17 warns "Tag ... is not in sleeping tags" and wakes nothing at all
                raise ValueError(f"wake_up(tags={tags}): {awake} is not asleep (asleep: {sorted(self._asleep)})")
        waking = set(self._asleep) if tags is None else set(tags) & self._asleep
        if self._saved_buffers and "weights" not in waking and "weights" in self._asleep:
            raise RuntimeError("wake_up without the weights after sleep(level=2): vLLM 0.17 copies the saved buffers "
                               "back into the weights' memory, which is still unmapped; wake the weights first")
        with torch.no_grad():
            if "weights" in waking:
                if self._offloaded:
                    for name, p in self.model.named_parameters():
                        p.copy_(self._offloaded[name])
                    self._offloaded = {}
                if self._saved_buffers:
                    buffers = dict(self.model.named_buffers())
                    for name, saved in self._saved_buffers.items():
                        buffers[name].copy_(saved)
                    self._saved_buffers = {}
        self._asleep -= waking
        if not (self._asleep - {"scheduling"}):
            self._asleep.discard("scheduling")  # scheduling resumes once all memory is back (vLLM 0.34)
        return not self._asleep

    def reset_prefix_cache(self, reset_running_requests: bool = False, reset_connector: bool = False) -> bool:
        log("reset_prefix_cache", asleep=sorted(self._asleep))
        return True

    def shutdown(self) -> None:
        _SLEEP_MODE_ENGINES.discard(self)
