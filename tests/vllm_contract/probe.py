"""Runs gpgrl's vLLM requests through one real vLLM release's own code and writes what it found as JSON.

Started by ``test_vllm_contract.py`` in a subprocess whose ``PYTHONPATH`` puts one vLLM copy (installed by
``install.sh``, never into the project's environment) and its pure-Python dependencies first:

    PYTHONPATH=VLLM_DIR:DEPS_DIR python tests/vllm_contract/probe.py CASES.json OUT.json

Each ``check_*`` function returns facts, not verdicts: what vLLM's classes accepted, parsed or declared,
and what gpgrl sent. The assertions live in the test, so a reader sees them next to each other. Where a
module cannot import on a CPU, the check reads vLLM's source with ``ast`` (routes, methods, environment
variables), never a copy of it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import traceback
from pathlib import Path

import vllm  # the copy on PYTHONPATH

from gpgrl.rollout.engine import SamplingParams as GpgrlSampling
from gpgrl.rollout.vllm import (
    EngineError,
    VLLMColocatedEngine,
    VLLMServerEngine,
    completion_request,
    launcher_env,
    trainer_endpoint,
    transfer_init_info,
    transfer_update_info,
    vllm_sampling_kwargs,
)

SOURCE = Path(vllm.__file__).parent


def _parse(relative: str) -> ast.Module:
    return ast.parse((SOURCE / relative).read_text())


def check_sampling(cases: list[dict]) -> list[dict]:
    """For each (temperature, top_p, top_k, n): gpgrl's decision, and what vLLM's SamplingParams does with it."""
    from vllm import SamplingParams

    out = []
    for case in cases:
        ours = GpgrlSampling(max_new_tokens=16, temperature=case["temperature"], top_p=case["top_p"], top_k=case["top_k"])
        record = dict(case)
        try:
            kwargs = vllm_sampling_kwargs(ours, n=case["n"], max_tokens=16)
            record["gpgrl"] = "ok"
        except EngineError as e:
            record["gpgrl"] = f"refused: {e}"
            kwargs = {"n": case["n"], "max_tokens": 16, "temperature": case["temperature"], "top_p": case["top_p"],
                      "top_k": case["top_k"] or -1, "logprobs": 0}
        try:
            made = SamplingParams(**kwargs)
        except Exception as e:  # vLLM's own validation
            record["vllm"] = f"raises: {type(e).__name__}: {e}"
        else:
            seen = {k: getattr(made, k) for k in kwargs}
            changed = {k: (kwargs[k], seen[k]) for k in kwargs if seen[k] != kwargs[k]
                       and not (k == "top_k" and {seen[k], kwargs[k]} <= {0, -1})}  # both mean "off"
            record["vllm"] = f"alters: {changed}" if changed else "ok"
        out.append(record)
    return out


def check_completion_request() -> dict:
    """gpgrl's /v1/completions body through vLLM's CompletionRequest, with hostile server defaults."""
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    sampling = vllm_sampling_kwargs(GpgrlSampling(max_new_tokens=32, temperature=0.7, top_p=0.95, top_k=20,
                                                  stop=("\n\nQuestion:",)), n=4, max_tokens=32)
    body = completion_request("served-model", [[1, 2, 3], [4, 5]], sampling)
    request = CompletionRequest.model_validate(body)
    # what a Qwen2.5 instruct checkpoint's generation_config would fill in, and worse
    hostile = {"repetition_penalty": 1.05, "temperature": 0.3, "top_p": 0.5, "top_k": 3, "min_p": 0.2,
               "presence_penalty": 0.5, "frequency_penalty": 0.5, "skip_special_tokens": True}
    defaults = dict(request._DEFAULT_SAMPLING_PARAMS)  # what the route fills from the server when omitted
    hostile.update({k: hostile.get(k, 0.123) for k in defaults})
    made = request.to_sampling_params(32, hostile)
    fields = ["n", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
              "frequency_penalty", "logprobs", "max_tokens", "skip_special_tokens", "stop"]
    return {"body_keys": sorted(body), "declared_fields": sorted(CompletionRequest.model_fields),
            "server_default_keys": sorted(defaults), "sent": {k: body.get(k) for k in fields},
            "sampled_with": {k: getattr(made, k) for k in fields}, "prompt": request.prompt}


def check_weight_transfer() -> dict:
    """init_info / update_info through vLLM's own NCCL weight-transfer parsers (the server's side)."""
    import torch
    from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferEngine

    engine = object.__new__(NCCLWeightTransferEngine)  # the parsers read only class attributes
    init = transfer_init_info("10.0.0.1", 51216, server_world_size=2)
    meta = [("model.embed_tokens.weight", torch.bfloat16, (8, 4)), ("lm_head.weight", torch.float32, (8, 4))]
    update = transfer_update_info(meta)
    facts: dict = {"init_sent": init, "update_sent": update}
    parsed_init = engine.parse_init_info(init)
    parsed_update = engine.parse_update_info(update)
    facts["init_parsed"] = {f.name: getattr(parsed_init, f.name) for f in dataclasses.fields(parsed_init)
                            if f.name in ("master_address", "master_port", "rank_offset", "world_size", "packed")}
    facts["update_parsed"] = {k: getattr(parsed_update, k) for k in ("names", "dtype_names", "shapes")}
    facts["packed_on_worker"] = bool(getattr(parsed_init, "packed", False) or getattr(parsed_update, "packed", False))
    facts["dtypes_resolve"] = all(isinstance(getattr(torch, d, None), torch.dtype) for d in update["dtype_names"])
    try:  # the payload the engine sent before: "packed" in update_info
        engine.parse_update_info({**update, "packed": False})
        facts["old_update_info"] = "accepted"
    except ValueError as e:
        facts["old_update_info"] = f"refused: {e}"
    endpoint = trainer_endpoint()
    facts["endpoint"] = f"{endpoint.__module__}.{endpoint.__qualname__}"
    facts["endpoint_params"] = list(inspect.signature(endpoint).parameters)
    from vllm.distributed.device_communicators.pynccl import PyNcclCommunicator

    facts["broadcast_params"] = list(inspect.signature(PyNcclCommunicator.broadcast).parameters)
    return facts


def _routes() -> list[list[str]]:
    """Every (METHOD, path) that a ``@router.<method>("/path")`` decorator declares under vllm/entrypoints."""
    found = set()
    for path in (SOURCE / "entrypoints").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr in ("get", "post")
                        and dec.args and isinstance(dec.args[0], ast.Constant) and isinstance(dec.args[0].value, str)):
                    found.add((dec.func.attr.upper(), dec.args[0].value))
    return sorted(found)


def _methods(relative: str, cls: str) -> dict[str, list[str]]:
    """Method name -> parameter names of class ``cls`` in ``relative`` (from the source)."""
    for node in ast.walk(_parse(relative)):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {f.name: [a.arg for a in f.args.args + f.args.kwonlyargs] for f in node.body
                    if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
    return {}


def _environ_reads(relative: str, cls: str) -> list[str]:
    """Keys ``cls`` reads as ``os.environ["KEY"]``."""
    keys = set()
    for node in ast.walk(_parse(relative)):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Attribute) and sub.value.attr == "environ"
                        and isinstance(sub.slice, ast.Constant)):
                    keys.add(sub.slice.value)
    return sorted(keys)


def _tiny_model_folder() -> str:
    """A local model folder (a config only), so that EngineArgs resolves the model without a hub."""
    import tempfile

    from transformers import Qwen2Config

    folder = tempfile.mkdtemp(prefix="vllm-contract-model-")
    Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                intermediate_size=32, vocab_size=128, max_position_embeddings=128,
                architectures=["Qwen2ForCausalLM"]).save_pretrained(folder)
    return folder


def check_colocated() -> dict:
    """The ``LLM(...)`` arguments through vLLM's ``EngineArgs``; the LLM methods and prompt keys the engine uses."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.inputs import TokensPrompt

    folder = _tiny_model_folder()
    kwargs = VLLMColocatedEngine.llm_kwargs(folder, gpu_memory_utilization=0.3, sleep=True, seed=7, max_model_len=64,
                                            dtype="bfloat16", trust_remote_code=False, tokenizer=folder,
                                            mm_processor_kwargs={"min_pixels": 3136, "max_pixels": 401408})
    facts: dict = {"llm_kwargs": sorted(kwargs), "engine_args_fields": sorted(f.name for f in dataclasses.fields(EngineArgs))}
    args = EngineArgs(**kwargs)  # what LLM(**kwargs) builds first (model checks that need a GPU come later)
    facts["engine_args"] = {k: getattr(args, k) for k in kwargs if k not in ("model", "tokenizer")}
    facts["tokenizer_kept"] = args.tokenizer == folder
    facts["sampling_fields"] = sorted(vllm.SamplingParams.__struct_fields__)
    # the mm_processor_kwargs keys vLLM's Qwen2-VL processing reads: mm_kwargs.get("min_pixels") and the like
    facts["qwen2_vl_pixel_keys"] = sorted({node.args[0].value for node in ast.walk(_parse("model_executor/models/qwen2_vl.py"))
                                           if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                                           and node.func.attr == "get" and node.args
                                           and isinstance(node.args[0], ast.Constant)
                                           and node.args[0].value in ("min_pixels", "max_pixels")})
    try:
        EngineArgs(**kwargs, logprob_mode="processed_logprobs")  # a misspelt keyword: the check can fail
        facts["misspelt_keyword"] = "accepted"
    except TypeError as e:
        facts["misspelt_keyword"] = f"refused: {e}"
    from vllm.config import model as model_config

    facts["logprobs_modes"] = list(getattr(model_config.LogprobsMode, "__args__", ()))
    facts["llm_methods"] = _methods("entrypoints/llm.py", "LLM")
    facts["llm_engine_methods"] = _methods("v1/engine/llm_engine.py", "LLMEngine")
    facts["worker_methods"] = _methods("v1/worker/worker_base.py", "WorkerBase")  # where apply_model lands
    facts["tokens_prompt_keys"] = sorted(TokensPrompt.__required_keys__ | TokensPrompt.__optional_keys__)
    facts["launcher_reads"] = _environ_reads("v1/executor/uniproc_executor.py", "ExecutorWithExternalLauncher")
    facts["launcher_env"] = sorted(launcher_env({}, rank=0, local_rank=0, world_size=1))
    from vllm.logprobs import Logprob

    facts["logprob_fields"] = [f.name for f in dataclasses.fields(Logprob)]
    return facts


def _handlers(paths: tuple[str, ...]) -> dict[str, dict]:
    """For each POST route in ``paths``: its handler's parameters (the query / body fields it reads) and the
    keys of the dicts it answers with (an empty list: it answers a bare ``Response``), from the source."""
    found: dict[str, dict] = {}
    for path in (SOURCE / "entrypoints").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "post"
                        and dec.args and isinstance(dec.args[0], ast.Constant) and dec.args[0].value in paths):
                    keys = sorted({k.value for sub in ast.walk(node) if isinstance(sub, ast.Dict)
                                   for k in sub.keys if isinstance(k, ast.Constant)})
                    found[dec.args[0].value] = {"params": [a.arg for a in node.args.args + node.args.kwonlyargs
                                                           if a.arg != "raw_request"], "reply_keys": keys}
    return found


def _literal_args(relative: str, name: str) -> list[str]:
    """The strings of ``NAME = Literal["a", "b"]`` in ``relative``."""
    for node in ast.walk(_parse(relative)):
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, ast.Subscript)):
            return [e.value for e in ast.walk(node.value.slice) if isinstance(e, ast.Constant)]
    return []


def _frontend_fields() -> list[str]:
    """The ``vllm serve`` flags of the API server itself (``FrontendArgs`` and its base), from the source."""
    for relative in ("entrypoints/common/cli_args.py", "entrypoints/openai/cli_args.py"):
        if (SOURCE / relative).exists():
            fields = set()
            for node in ast.walk(_parse(relative)):
                if isinstance(node, ast.ClassDef) and node.name in ("FrontendArgs", "BaseFrontendArgs"):
                    fields |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)
                               and isinstance(n.target, ast.Name)}
            if fields:
                return sorted(fields)
    return []


def check_serve_commands(commands: list[dict]) -> dict:
    """The documented ``vllm serve`` command lines: their flags and environment through vLLM's own definitions."""
    import vllm.envs as envs
    from vllm.config.weight_transfer import WeightTransferConfig
    from vllm.engine.arg_utils import EngineArgs

    out = []
    for cmd in commands:
        record: dict = {"flags": cmd["flags"], "env": cmd["env"]}
        record["unknown_env"] = sorted(k for k in cmd["env"]  # vLLM's own variables (NCCL_* are NCCL's)
                                       if k.startswith("VLLM_") and k not in envs.environment_variables)
        value = cmd["flags"].get("weight_transfer_config")
        if value is not None:
            try:
                record["weight_transfer_backend"] = WeightTransferConfig(**json.loads(value)).backend
            except Exception as e:
                record["weight_transfer_backend"] = f"refused: {type(e).__name__}: {e}"
        out.append(record)
    return {"commands": out, "engine_args_fields": sorted(f.name for f in dataclasses.fields(EngineArgs)),
            "frontend_fields": _frontend_fields()}


def check_server() -> dict:
    """The routes the server engine calls, against the routes vLLM declares; the model card's fields; the
    pause protocol and the prefix-cache reset's reply."""
    facts: dict = {"routes": _routes(), "engine_routes": sorted(VLLMServerEngine.ROUTES.values())}
    facts["handlers"] = _handlers(("/pause", "/resume", "/reset_prefix_cache"))
    facts["pause_modes"] = _literal_args("v1/engine/__init__.py", "PauseMode")
    facts["pause_query"] = VLLMServerEngine.PAUSE_QUERY
    # 0.34: a request added while paused is answered 503 (RetryableRequestError); before, it waits in the queue
    facts["rejects_while_paused"] = "_reject_add_while_paused" in (SOURCE / "v1/engine/core.py").read_text()

    card = None
    for module in ("vllm.entrypoints.serve.engine.protocol", "vllm.entrypoints.openai.engine.protocol",
                   "vllm.entrypoints.openai.protocol"):
        try:
            card = __import__(module, fromlist=["ModelCard"]).ModelCard
            break
        except (ImportError, AttributeError):
            continue
    facts["model_card_fields"] = sorted(card.model_fields) if card is not None else []
    return facts


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    facts: dict = {"version": vllm.__version__}
    for name, fn in [("sampling", lambda: check_sampling(cases["sampling"])),
                     ("completion", check_completion_request), ("weight_transfer", check_weight_transfer),
                     ("colocated", check_colocated), ("server", check_server),
                     ("serve_commands", lambda: check_serve_commands(cases.get("serve_commands", [])))]:
        try:
            facts[name] = fn()
        except Exception:
            facts[name] = {"error": traceback.format_exc()}
    Path(sys.argv[2]).write_text(json.dumps(facts, default=repr, indent=1))


if __name__ == "__main__":
    main()
