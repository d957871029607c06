"""Contract tests: what the vLLM engines send, judged by real vLLM releases' own code (no GPU needed).

``bash tests/vllm_contract/install.sh`` puts each release of ``versions.txt`` in its own folder outside the
project's environment; each test module run starts ``probe.py`` once per release in a subprocess with that
folder on ``PYTHONPATH`` (so no other test can ``import vllm``), and asserts on what vLLM's classes did
with gpgrl's requests: ``SamplingParams`` validation, the ``/v1/completions`` request model, the NCCL
weight-transfer parsers, the routes the routers declare, ``EngineArgs``, the ``LLM`` methods and the
launcher's environment. Without the install the tests skip, except in CI (``CI=true``, or
``GPGRL_REQUIRE_VLLM_CONTRACT=1``), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpgrl.recipe import load_config

pytestmark = pytest.mark.vllm_contract

HERE = Path(__file__).parent
ROOT = Path(os.environ.get("GPGRL_VLLM_CONTRACT_DIR", Path.home() / ".cache" / "gpgrl" / "vllm-contract"))
VERSIONS = [v.strip() for v in (HERE / "versions.txt").read_text().splitlines() if v.strip() and not v.startswith("#")]
RECIPES = sorted((HERE.parent.parent / "recipes").glob("*.yaml"))


def sampling_cases() -> list[dict]:
    """Edge cases of each rule, plus every shipped recipe's rollout and the eval examples' settings."""
    cases = [{"temperature": t, "top_p": p, "top_k": k, "n": n}
             for t in (0.0, 0.005, 0.01, 0.6, 1.0, 2.0, 2.5) for n in (1, 8) for p in (0.95, 1.0) for k in (0, 50)]
    for recipe in RECIPES:
        r = load_config(recipe).rollout
        cases.append({"temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k, "n": r.group_size,
                      "recipe": recipe.name})
    cases.append({"temperature": 0.6, "top_p": 0.95, "top_k": 0, "n": 8, "recipe": "gpgrl eval --samples 8"})
    cases.append({"temperature": 0.0, "top_p": 1.0, "top_k": 0, "n": 1, "recipe": "gpgrl eval (greedy)"})
    return cases


def serve_commands(doc: Path = HERE.parents[1] / "docs" / "engines.md") -> list[dict]:
    """Every ``vllm serve`` command line in ``doc``'s code blocks: its environment and ``--flag value``s
    (flag names as vLLM's dataclass fields: ``--max-model-len`` -> ``max_model_len``)."""
    import re
    import shlex

    commands = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "vllm" not in words or words[words.index("vllm") + 1:words.index("vllm") + 2] != ["serve"]:
                continue
            at = words.index("vllm")
            env = dict(w.split("=", 1) for w in words[:at] if "=" in w)
            args = words[at + 3:]  # after `vllm serve MODEL`
            flags = {}
            for i, word in enumerate(args):
                if word.startswith("--"):
                    value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "true"
                    flags[word.removeprefix("--").replace("-", "_")] = value
            commands.append({"env": env, "flags": flags})
    return commands


def run_probe(version: str, tmp: Path) -> dict:
    folder = ROOT / f"vllm-{version}"
    if not (folder / ".complete").exists() or not (ROOT / "deps" / ".complete").exists():
        message = f"vLLM {version} is not prepared: run `bash tests/vllm_contract/install.sh`"
        if os.environ.get("GPGRL_REQUIRE_VLLM_CONTRACT") == "1" or os.environ.get("CI") == "true":  # CI sets CI=true
            pytest.fail(message)
        pytest.skip(message)
    cases, out = tmp / "cases.json", tmp / "facts.json"
    cases.write_text(json.dumps({"sampling": sampling_cases(), "serve_commands": serve_commands()}))
    import gpgrl  # the probe checks this checkout's gpgrl, whatever copy the environment has installed

    gpgrl_src = str(Path(gpgrl.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT / "deps"), gpgrl_src]),
           "VLLM_LOGGING_LEVEL": "ERROR", "TORCHDYNAMO_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-W", "ignore", str(HERE / "probe.py"), str(cases), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and out.exists(), done.stderr[-3000:]
    facts = json.loads(out.read_text())
    assert facts["version"] == version
    errors = {k: v["error"] for k, v in facts.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    return facts


@pytest.fixture(scope="module", params=VERSIONS)
def vllm_facts(request, tmp_path_factory) -> dict:
    return run_probe(request.param, tmp_path_factory.mktemp(f"vllm-{request.param}"))


def test_every_sampling_setting_gpgrl_sends_is_accepted_unchanged_and_every_refusal_is_gpgrls_too(vllm_facts):
    for case in vllm_facts["sampling"]:
        if case["gpgrl"] == "ok":  # vLLM's SamplingParams takes it as it is (no error, no silent clamp)
            assert case["vllm"] == "ok", case
        if case["vllm"] != "ok":  # whatever vLLM rejects or alters, gpgrl refuses first, with its own message
            assert case["gpgrl"].startswith("refused"), case
    refused = {(c["temperature"], c["n"]) for c in vllm_facts["sampling"] if c["gpgrl"].startswith("refused")}
    assert (0.0, 8) in refused and (0.005, 1) in refused and (2.5, 1) in refused  # greedy n > 1, clamp, range
    recipes = [c for c in vllm_facts["sampling"] if "recipe" in c]
    assert len(recipes) == len(RECIPES) + 2 and all(c["gpgrl"] == "ok" for c in recipes), recipes


def test_the_completions_body_is_vllms_request_model_and_overrides_every_server_default(vllm_facts):
    c = vllm_facts["completion"]
    assert set(c["body_keys"]) <= set(c["declared_fields"])  # nothing vLLM would ignore
    assert set(c["server_default_keys"]) <= set(c["body_keys"])  # nothing left for generation_config to fill
    assert c["sampled_with"] == c["sent"]  # with hostile server defaults, vLLM samples exactly what was sent
    assert c["sampled_with"]["repetition_penalty"] == 1.0 and c["sampled_with"]["logprobs"] == 0
    assert c["sampled_with"]["stop"] == ["\n\nQuestion:"]  # an evaluation's stop strings reach the server
    assert c["prompt"] == [[1, 2, 3], [4, 5]]


def test_weight_transfer_payloads_parse_in_vllms_own_parsers_and_stay_unpacked(vllm_facts):
    w = vllm_facts["weight_transfer"]
    assert w["init_parsed"] | {"packed": False} == {**w["init_sent"], "packed": False}
    assert w["update_parsed"] == w["update_sent"] and w["dtypes_resolve"]
    assert not w["packed_on_worker"]  # the workers receive tensor by tensor, as NCCLTransport sends
    assert w["endpoint_params"] == ["master_address", "master_port", "rank", "world_size", "device"]
    assert w["broadcast_params"][1:3] == ["tensor", "src"] and "stream" in w["broadcast_params"]
    if tuple(int(x) for x in vllm_facts["version"].split(".")[:2]) >= (0, 28):
        assert w["old_update_info"].startswith("refused")  # the payload before this fix: "packed" in update_info
        assert w["endpoint"].endswith("nccl_common.stateless_init_process_group")


def test_server_routes_exist_in_vllms_routers(vllm_facts):
    s = vllm_facts["server"]
    routes = {tuple(r) for r in s["routes"]}
    optional = {("POST", "/start_weight_update"), ("POST", "/finish_weight_update")}  # from 0.2x; 404 -> fallback
    required = {tuple(r) for r in s["engine_routes"]} - optional
    assert required <= routes, required - routes
    assert ("POST", "/reset_prefix_cache") in routes and "max_model_len" in s["model_card_fields"]
    if vllm_facts["version"].startswith("0.17"):
        assert not optional & routes  # the two-phase protocol the engine falls back to
    else:
        assert optional <= routes


def test_colocated_engine_arguments_and_methods_exist(vllm_facts):
    c = vllm_facts["colocated"]
    assert set(c["llm_kwargs"]) <= set(c["engine_args_fields"])
    assert c["engine_args"] == {"tensor_parallel_size": 1, "distributed_executor_backend": "external_launcher",
                                "gpu_memory_utilization": 0.3, "enable_sleep_mode": True, "seed": 7,
                                "max_model_len": 64, "dtype": "bfloat16", "trust_remote_code": False,
                                "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 401408},
                                "logprobs_mode": "processed_logprobs"}
    assert c["tokenizer_kept"]  # a separate tokenizer (model.tokenizer) reaches EngineArgs.tokenizer
    assert c["qwen2_vl_pixel_keys"] == ["max_pixels", "min_pixels"]  # what vLLM's Qwen2-VL resizes by
    assert c["misspelt_keyword"].startswith("refused")  # EngineArgs refuses what it does not know
    assert "processed_logprobs" in c["logprobs_modes"]
    methods = c["llm_methods"]
    assert {"sampling_params", "use_tqdm"} <= set(methods["generate"]) and "level" in methods["sleep"]
    assert "tags" in methods["wake_up"]  # wake_up(tags=["weights"]), then wake_up(tags=["kv_cache"])
    assert {"wake_up", "reset_prefix_cache", "apply_model"} <= set(methods)
    assert "reset_encoder_cache" in c["llm_engine_methods"]  # llm.llm_engine.reset_encoder_cache()
    # LLM.apply_model -> LLMEngine.apply_model -> the worker's apply_model(fn) = fn(its model): load_weights
    assert "apply_model" in c["llm_engine_methods"] and c["worker_methods"]["apply_model"] == ["self", "fn"]
    assert {"prompt_token_ids", "multi_modal_data"} <= set(c["tokens_prompt_keys"])
    assert set(c["launcher_reads"]) <= set(c["launcher_env"])  # finding 1: what external_launcher reads is set
    assert "logprob" in c["logprob_fields"]


def test_the_vllm_stand_in_accepts_only_what_every_release_accepts(vllm_facts):
    """tests/standins/vllm takes LLM(**kwargs) and SamplingParams(**fields) names from these lists: each must
    be a real EngineArgs / SamplingParams field of every contract-tested release."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("standin_fields", HERE.parent / "standins" / "vllm" / "_fields.py")
    fields = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fields)
    assert not fields.ENGINE_ARGS - set(vllm_facts["colocated"]["engine_args_fields"])
    assert not fields.SAMPLING_FIELDS - set(vllm_facts["colocated"]["sampling_fields"])
    assert {"max_model_len", "dtype", "mm_processor_kwargs", "enable_sleep_mode"} <= fields.ENGINE_ARGS


def test_the_documented_vllm_serve_flags_are_engine_arguments(vllm_facts):
    """``vllm serve`` takes its engine flags from EngineArgs' fields (--max-model-len -> max_model_len)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke_cmd", HERE.parents[1] / "benchmarks" / "gpu_smoke.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cmd = module.serve_command("M", 8000, 4096, 0.3)
    flags = {f.removeprefix("--").replace("-", "_") for f in cmd[3::2]} - {"port"}  # --port is the server's own
    assert flags == {"max_model_len", "dtype", "gpu_memory_utilization", "weight_transfer_config", "logprobs_mode"}
    assert flags <= set(vllm_facts["colocated"]["engine_args_fields"])


def test_the_pause_protocol_and_the_prefix_cache_reply_are_what_the_server_engine_expects(vllm_facts):
    """/pause takes the mode as a query parameter, "wait" among its modes; /resume takes nothing;
    /reset_prefix_cache answers {"success": bool} from 0.28 (checked and retried), an empty 200 in 0.17."""
    s = vllm_facts["server"]
    handlers, query = s["handlers"], s["pause_query"]
    assert set(query) <= set(handlers["/pause"]["params"]) and query["mode"] in s["pause_modes"]
    assert s["pause_modes"] == ["abort", "wait", "keep"] and handlers["/resume"]["params"] == []
    assert {("POST", "/pause"), ("POST", "/resume")} <= {tuple(r) for r in s["routes"]}
    old = vllm_facts["version"].startswith("0.17")
    assert ("success" in handlers["/reset_prefix_cache"]["reply_keys"]) == (not old)
    # 0.34 turns requests away while paused (HTTP 503, retried by the engine); before, they wait in the queue
    assert s["rejects_while_paused"] == vllm_facts["version"].startswith("0.34")


def test_the_vllm_serve_command_lines_in_the_docs_use_flags_and_settings_vllm_has(vllm_facts):
    """docs/engines.md's `vllm serve` lines: every flag is an engine argument or the API server's own, the
    weight-transfer config parses in vLLM's WeightTransferConfig, the environment variables are vLLM's."""
    facts = vllm_facts["serve_commands"]
    assert len(facts["commands"]) >= 2  # one node, several nodes
    known = set(facts["engine_args_fields"]) | set(facts["frontend_fields"])
    assert {"host", "port"} <= set(facts["frontend_fields"])
    for cmd in facts["commands"]:
        assert set(cmd["flags"]) <= known, set(cmd["flags"]) - known
        assert cmd["env"].get("VLLM_SERVER_DEV_MODE") == "1" and not cmd["unknown_env"], cmd
        # what the server engine needs: the weight routes, NCCL transfer, sampling log-probs, a bounded context
        assert cmd["weight_transfer_backend"] == "nccl"
        assert cmd["flags"]["logprobs_mode"] == "processed_logprobs" and int(cmd["flags"]["max_model_len"]) > 0
