"""benchmarks/gpu_smoke.py: its verdicts from numbers, the server command, the wait for ``vllm serve``, the
plan and the refusal without a GPU, its child processes (a crash or a hang is a FAIL line, never a lost
report), and ``--dry-run``, which runs the whole script here through the stand-ins of tests/standins.

Issue 28, finding 10, each with a test that fails on the script as it was: a prefix-cache check on
prompts shorter than one KV block (it passed whatever happened), a KeyError on a step without ``is/``
metrics, vision images smaller than any limit and no ``max_pixels``, a second ``LLM`` in the process of
the first, no ``--dry-run``.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
PATH = REPO / "benchmarks" / "gpu_smoke.py"
GIB = 2**30
FULL_IS = {"is/logp_diff_abs": 0.012, "is/logp_gap_max": 0.31, "is/ratio_mean": 1.0, "is/ratio_std": 0.02,
           "is/capped_frac": 0.0, "is/masked_frac": 0.0, "optim/skipped": 0.0}


@pytest.fixture(scope="module")
def smoke():
    spec = importlib.util.spec_from_file_location("gpu_smoke", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_smoke"]


def script_env() -> dict[str, str]:
    """The environment to run the script in: this checkout's gpgrl, nothing launched."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = str(REPO / "src")
    return env


def test_doctests(smoke):
    result = doctest.testmod(smoke)
    assert result.attempted >= 30 and result.failed == 0


def test_the_stand_in_servers_doctests():
    spec = importlib.util.spec_from_file_location("standin_vllm_server", REPO / "tests" / "standins" / "vllm_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0


def test_logprob_agreement_by_hand(smoke):
    engine = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    trainer = torch.tensor([[-1.0, -2.2, -3.0], [-0.5, -0.4, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # the last token is padding
    stats = smoke.logprob_agreement(engine, trainer, mask)
    assert stats["tokens"] == 5
    assert stats["mean_abs_diff"] == pytest.approx((0.2 + 0.1) / 5, abs=1e-6)
    ratios = torch.tensor([1.0, float(torch.tensor(-0.2).exp()), 1.0, 1.0, float(torch.tensor(0.1).exp())])
    assert stats["ratio_mean"] == pytest.approx(float(ratios.mean()), abs=1e-6)
    assert stats["ratio_max"] == pytest.approx(1.10517, abs=1e-4)
    assert smoke.agreement_check("x", stats).status == "FAIL"  # 0.06 mean |diff| is over the 0.05 tolerance
    close = smoke.logprob_agreement(engine, engine + 0.01, mask)
    assert smoke.agreement_check("x", close).status == "PASS"
    empty = smoke.logprob_agreement(engine, engine, torch.zeros_like(mask))  # no token compared: never agrees
    assert empty["tokens"] == 0 and smoke.agreement_check("x", empty).status == "FAIL"


def test_checks_fail_where_they_should(smoke):
    assert smoke.placeholder_check([1, 9, 9, 9, 2], [1, 9, 9, 9, 2], 9, 1).status == "FAIL"  # expanded twice
    assert smoke.changed_check([[1]], [[1]], [[1]]).status == "FAIL"  # the sync changed nothing
    assert smoke.changed_check([[1]], [[2]], [[2]]).status == "FAIL"  # the originals did not come back
    lines = smoke.report([smoke.Check("a", "PASS", "1"), smoke.Check("longer name", "SKIP", "2")]).splitlines()
    assert lines == ["PASS  a            1", "SKIP  longer name  2"]


# --- 1. the prefix cache: prompts several KV blocks long, and a check that can fail ------------------------------


def test_prefix_cache_prompts_span_several_kv_blocks_and_the_check_can_fail(smoke):
    from gpgrl.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    for block in (16, 64):  # vLLM 0.17's default on CUDA, 0.34's
        prompts = smoke.long_prompts(tok, smoke.prefix_tokens(block))
        assert [len(p) for p in prompts] == [5 * block, 5 * block] and prompts[0] != prompts[1]
        assert min(len(p) for p in prompts) // block == 5 > smoke.PREFIX_BLOCKS - 1
    agree = {"tokens": 64, "mean_abs_diff": 0.01, "ratio_mean": 1.0, "ratio_std": 0.02}
    stale = {"tokens": 64, "mean_abs_diff": 2.4}
    assert smoke.prefix_cache_check("c", [320, 320], 64, "x", agree, stale).status == "PASS"
    # the script's old prompt ("What is 12+30? Answer:", 22 characters here, ~10 tokens in Qwen's tokenizer): no
    # full 64-token block, nothing of it is cached, the old check passed whatever the engine did
    old_prompt = tok("What is 12+30? Answer:")["input_ids"]
    check = smoke.prefix_cache_check("c", [len(old_prompt)], 64, "x", agree, stale)
    assert check.status == "FAIL" and "prompts of 22 tokens hold 0 full KV blocks of 64" in check.detail
    assert smoke.prefix_cache_check("c", [255], 64, "x", agree, stale).status == "FAIL"  # 3 blocks are not enough
    served_stale = {"tokens": 64, "mean_abs_diff": 2.4, "ratio_std": 3.0}  # the answers follow the old weights
    check = smoke.prefix_cache_check("c", [320, 320], 64, "x", served_stale, agree)
    assert check.status == "FAIL" and check.detail == (
        "after the sync the answers' log-probs are the old weights' (mean |diff| 0.0100 vs the old, 2.4000 vs the "
        "new): served from a stale prefix cache")
    mixed = {"tokens": 64, "mean_abs_diff": 1.1, "ratio_std": 2.0}  # the old prompt KV, the new weights after it
    check = smoke.prefix_cache_check("c", [320, 320], 64, "x", mixed, served_stale)
    assert check.status == "FAIL" and "disagree with the new weights (mean |diff| 1.1000" in check.detail
    no_power = {"tokens": 64, "mean_abs_diff": 0.1}  # the weights barely changed: a stale cache would not show
    check = smoke.prefix_cache_check("c", [320, 320], 64, "x", agree, no_power)
    assert check.status == "FAIL" and "could not be told apart" in check.detail


def test_the_kv_block_size_is_read_from_the_engine_where_it_says(smoke):
    from types import SimpleNamespace as S

    llm = S(llm_engine=S(vllm_config=S(cache_config=S(block_size=16))))  # vllm.LLM, 0.17 - 0.34
    assert smoke.kv_block_size(llm) == (16, "the engine's")
    assert smoke.kv_block_size(S(llm_engine=S())) == (64, "vLLM 0.34's default; the engine does not say")


# --- 2. is/ metrics: a missing one is a FAIL line, never a KeyError ----------------------------------------------


def test_a_step_without_is_metrics_is_a_fail_line_not_a_key_error(smoke):
    from gpgrl.train.metrics import ImportanceMeter

    logged = set(ImportanceMeter().result(lambda t: t))  # what the trainer logs on every step
    assert set(smoke.IS_KEYS) <= logged
    assert smoke.is_metrics_check("colocated", [FULL_IS] * 3, 3).status == "PASS"
    skipped = {"optim/skipped": 1.0, "reward/mean": 0.0}  # a step skipped for lack of signal, before is/ on every step
    off = {**FULL_IS, "is/logp_diff_abs": 0.08, "is/capped_frac": 0.02}
    check = smoke.is_metrics_check("colocated", [FULL_IS, skipped, off], 3)
    assert check.status == "FAIL"
    assert check.detail == ("step 2 (skipped for lack of signal) has no is/logp_diff_abs, is/logp_gap_max, "
                            "is/ratio_mean, is/ratio_std, is/capped_frac, is/masked_frac; step 3: is/logp_diff_abs "
                            "0.0800 (< 0.05), is/ratio_std 0.0200 (< 0.1), capped + masked 0.020 (<= 0.01)")
    check = smoke.is_metrics_check("resume", [{**FULL_IS, "is/ratio_std": float("nan")}], 2)
    assert check.detail == "1 steps ran, 2 were asked for; step 1 has no is/ratio_std"


# --- 3. vision: images larger than max_pixels, the same token count on both sides --------------------------------


def test_vision_images_exceed_max_pixels_and_both_sides_must_count_the_same_tokens(smoke):
    for max_pixels in smoke.VISION_MAX_PIXELS.values():
        sizes = smoke.oversized_image_sizes(max_pixels)
        assert len(set(sizes)) == 2 and all(w * h > max_pixels and w % 28 == 0 and h % 28 == 0 for w, h in sizes)
    assert smoke.image_tokens_check(2, [12544, 12544], 3136, 8, 8, 32).status == "PASS"
    assert smoke.image_tokens_check(2, [12544, 12544], 3136, 32, 8, 32).status == "FAIL"  # vLLM did not resize
    assert smoke.image_tokens_check(1, [12544], 3136, 16, 16, 16).status == "FAIL"  # nobody resized
    assert smoke.image_tokens_check(1, [50176], 200704, 64, 64, 256).status == "FAIL"  # the old 224 x 224: too small


def test_the_processors_token_count_with_and_without_the_limit(smoke):
    pytest.importorskip("torchvision")
    from PIL import Image

    from gpgrl.models.tiny import build_vlm_processor

    image_processor = build_vlm_processor().image_processor
    image = Image.new("RGB", (84, 84), "red")  # 7056 pixels
    assert smoke.processor_tokens(image_processor, image, 3136) == 4  # resized to 56 x 56: 2 x 2 merged tokens
    assert smoke.processor_tokens(image_processor, image, 4 * 7056) == 9  # unresized: 84 / 28 = 3, 3 x 3


# --- 4. every part in its own process; a crash or a hang is a FAIL line -----------------------------------------


def test_a_childs_report_becomes_checks_and_a_crash_a_fail_line(smoke):
    one = {"name": "a", "status": "PASS", "detail": "1"}
    done = json.dumps({"part": "x", "checks": [one], "complete": True})
    assert smoke.child_checks("vision", 0, done, "") == [smoke.Check("a", "PASS", "1")]
    assert smoke.child_checks("vision", 1, done, "") == [smoke.Check("a", "PASS", "1")]  # 1: a check failed
    partial = json.dumps({"part": "x", "checks": [one], "complete": False})
    checks = smoke.child_checks("vision", -6, partial, "line 1\nAborted (core dumped)\n")
    assert [c.status for c in checks] == ["PASS", "FAIL"]
    assert checks[1] == smoke.Check("vision: ran", "FAIL", "the child process exited with code -6 after 1 check(s); "
                                                           "its log ends: line 1\nAborted (core dumped)")
    assert smoke.child_checks("server", None, None, "", 30)[0].detail == (
        "the child process was killed after 30 s (--part-timeout) before it reported anything")
    assert smoke.child_checks("server", 0, "{not json", "")[0].status == "FAIL"
    assert smoke.child_checks("server", 3, done, "")[-1].detail == "the child process exited with code 3 after its report"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_children_that_crash_or_hang_are_fail_lines_and_the_other_parts_still_report(smoke, tmp_path, monkeypatch):
    """Stand-in children: one reports a check then crashes, one hangs with a 'server' of its own, one dies
    without a word, one reports properly. The run goes on, the hung one and its server are killed."""
    pid_file = tmp_path / "server.pid"
    colocated_line = {"name": "colocated: is/ metrics on every step", "status": "PASS", "detail": "x"}
    server_line = {"name": "server: answers /health", "status": "PASS", "detail": "after 1 s"}
    programs = {
        "colocated": "import json, os, sys; json.dump({'checks': [" + repr(colocated_line) + "], 'complete': False}, "
                     "open(sys.argv[1], 'w')); print('CUDA error: an illegal memory access', flush=True); os._exit(134)",
        "resume": "import subprocess, sys, time; s = subprocess.Popen([sys.executable, '-c', 'import time; "
                  "time.sleep(600)']); open(" + repr(str(pid_file)) + ", 'w').write(str(s.pid)); time.sleep(600)",
        "vision": "print('Segmentation fault', flush=True); raise SystemExit(139)",
        "server": "import json, sys; json.dump({'checks': [" + repr(server_line) + "], 'complete': True}, "
                  "open(sys.argv[1], 'w'))",
    }
    monkeypatch.setattr(smoke, "child_command", lambda args, part, path: [sys.executable, "-c", programs[part],
                                                                          str(path)])
    start = time.monotonic()
    code = smoke.main(["--dry-run", "--model", "M", "--vision-model", "V", "--out", str(tmp_path / "out"),
                       "--part-timeout", "5"])
    assert code == 1 and time.monotonic() - start < 120
    report = json.loads((tmp_path / "out" / "gpu_smoke.json").read_text())
    assert [(c["name"], c["status"]) for c in report] == [
        ("colocated: is/ metrics on every step", "PASS"), ("colocated: ran", "FAIL"), ("resume: ran", "FAIL"),
        ("vision: ran", "FAIL"), ("server: answers /health", "PASS")]
    assert report[1]["detail"] == ("the child process exited with code 134 after 1 check(s); its log ends: CUDA "
                                   "error: an illegal memory access")
    assert report[2]["detail"] == "the child process was killed after 5 s (--part-timeout) before it reported anything"
    assert report[3]["detail"].endswith("exited with code 139 before it reported anything; its log ends: "
                                        "Segmentation fault")
    server = int(pid_file.read_text())  # the hung child's own child went with it
    for _ in range(100):
        if not _alive(server):
            break
        time.sleep(0.1)
    assert not _alive(server)


def test_the_child_command_runs_one_part_and_the_dry_run_env_finds_the_stand_ins(smoke, tmp_path):
    args = smoke.parse(["--dry-run", "--model", "M", "--vision-model", "V", "--out", str(tmp_path), "--steps", "2"])
    cmd = smoke.child_command(args, "vision", tmp_path / "vision.json")
    assert cmd[:2] == [sys.executable, str(PATH)] and cmd[-1] == "--dry-run"
    flags = dict(zip(cmd[2:-1:2], cmd[3:-1:2]))
    assert flags == {"--only": "vision", "--child-json": str(tmp_path / "vision.json"), "--model": "M",
                     "--vision-model": "V", "--steps": "2", "--port": "0", "--server-timeout": "600",
                     "--out": str(tmp_path)}
    env = smoke.dry_run_env({"PYTHONPATH": "elsewhere", "LOCAL_RANK": "1"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO / "tests" / "standins"), str(REPO / "src"),
                                                    str(REPO / "tests"), "elsewhere"]
    assert env["CUDA_VISIBLE_DEVICES"] == "" and "LOCAL_RANK" not in env
    with pytest.raises(SystemExit):  # a child runs exactly one part
        smoke.parse(["--child-json", "x.json"])


# --- 5. today's engines: the wake order, level-2 sleep's memory, the server's sync and rendezvous ---------------


def test_the_wake_order_verdict(smoke):
    sync = [("sleep", 2), ("wake_up", ["weights"]), ("apply_model", None), ("apply_model", None),
            ("wake_up", ["kv_cache"]), ("reset_prefix_cache", None)]
    check = smoke.wake_order_check([("generate", None), *sync, ("generate", None), *sync], 2, in_training=1)
    assert check.status == "PASS" and check.detail == ("2 sleeps (1 in training), each: sleep(level=2), "
                                                       "wake_up(['weights']), 2-2 loads, wake_up(['kv_cache'])")
    # the engine before weights-first wake: level 1, everything woken at once, then the loads
    old = [("sleep", 1), ("wake_up", None), ("apply_model", None), ("reset_prefix_cache", None)]
    check = smoke.wake_order_check(old, 2)
    assert check.status == "FAIL" and check.detail == "sleep 1: level 1 (expected 2); sleep 1: woke None first (not ['weights'])"
    early = [("sleep", 2), ("wake_up", ["weights"]), ("apply_model", None), ("generate", None), ("wake_up", ["kv_cache"])]
    assert smoke.wake_order_check(early, 2).detail == "sleep 1: generated before the KV cache woke"
    assert smoke.wake_order_check([("generate", None)], 2).status == "FAIL"  # never exercised


def test_the_level_2_memory_verdict(smoke):
    weights = 1 * GIB
    free = {"awake": 40 * GIB, "asleep": 61 * GIB, "weights": 60 * GIB, "woken": 40 * GIB}
    check = smoke.sleep_memory_check(free, 50 * 2**20, weights, 2)
    assert check.status == "PASS" and check.detail == (
        "sleep freed 21.00 GiB (weights 1.00 GiB), wake_up(['weights']) took 1.00 GiB, wake_up(['kv_cache']) 20.00 GiB, "
        "host memory grew 50.0 MiB")
    assert smoke.sleep_memory_check(free, weights, weights, 1).status == "PASS"  # level 1 keeps a host copy
    assert "kept 1.00 GiB in host memory" in smoke.sleep_memory_check(free, weights, weights, 2).detail
    all_at_once = {**free, "weights": 40 * GIB}
    assert "the KV cache woke with the weights" in smoke.sleep_memory_check(all_at_once, 0, weights, 2).detail
    kept = {**free, "asleep": 40 * GIB + weights // 2, "weights": 40 * GIB + weights // 4}
    assert "less than the weights' 1.00 GiB" in smoke.sleep_memory_check(kept, 0, weights, 2).detail


def test_the_server_sync_and_rendezvous_verdicts(smoke):
    full = [(r, True) for r in ("pause", "start", "update", "finish", "reset_prefix_cache", "reset_prefix_cache",
                                "resume")]  # a reset tried twice (running requests held blocks)
    assert smoke.sync_routes_check(full).status == "PASS"
    old = [("pause", True), ("start", False), ("update", True), ("reset_prefix_cache", True), ("resume", True)]
    assert smoke.sync_routes_check(old).status == "PASS"  # vLLM 0.17: no start/finish routes
    assert smoke.sync_routes_check(full[:-1]).status == "FAIL"  # left paused
    assert smoke.sync_routes_check([("pause", True), ("start", True), ("update", True), ("reset_prefix_cache", True),
                                    ("resume", True)]).status == "FAIL"  # started, never finished
    assert smoke.rendezvous_check(("10.0.0.1", 40000), "127.0.0.1").status == "FAIL"
    assert smoke.rendezvous_check(("127.0.0.1", 0), "127.0.0.1").status == "FAIL"
    assert smoke.resume_check(None, None).status == "FAIL"


def test_serve_command_is_the_documented_one(smoke):
    cmd = smoke.serve_command("M", 8000, 4096, 0.3)
    assert cmd[:3] == ["vllm", "serve", "M"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags == {"--port": "8000", "--max-model-len": "4096", "--dtype": "bfloat16",
                     "--gpu-memory-utilization": "0.3", "--weight-transfer-config": '{"backend": "nccl"}',
                     "--logprobs-mode": "processed_logprobs"}
    docs = (PATH.parents[1] / "docs" / "engines.md").read_text()
    assert "--weight-transfer-config '{\"backend\": \"nccl\"}'" in docs and "--logprobs-mode processed_logprobs" in docs
    assert smoke.standin_serve_command("M", 9, 1024) == [sys.executable, str(REPO / "tests" / "standins" /
                                                                             "vllm_server.py"), "M", "--port", "9",
                                                         "--max-model-len", "1024"]


def test_wait_for_server_answers_times_out_and_notices_a_dead_server(smoke):
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            calls.append(self.path)
            self.send_response(200 if len(calls) >= 3 else 503)  # ready at the third look
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert smoke.wait_for_server(url, timeout=60, poll=0.05) >= 0 and calls == ["/health"] * 3
    finally:
        httpd.shutdown()
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"http://127.0.0.1:9/health did not answer within 0.3 s"):
        smoke.wait_for_server("http://127.0.0.1:9", timeout=0.3, poll=0.05)
    assert time.monotonic() - start < 30
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    with pytest.raises(RuntimeError, match="vllm serve exited with code 3"):
        smoke.wait_for_server("http://127.0.0.1:9", timeout=60, poll=0.05, process=dead)


def test_plan_and_no_gpu(smoke, capsys, tmp_path):
    assert smoke.main(["--plan", "--only", "server", "--model", "M"]) == 0
    out = capsys.readouterr().out
    assert "parts: server; text model M; vision model Qwen/Qwen2-VL-2B-Instruct; GPU run" in out
    assert ("server command: VLLM_SERVER_DEV_MODE=1 vllm serve M --port 8000 --max-model-len 4096 --dtype bfloat16 "
            "--gpu-memory-utilization 0.25 --weight-transfer-config '{\"backend\": \"nccl\"}' --logprobs-mode "
            "processed_logprobs\n  (on a free port instead of 8000") in out
    assert "  server: vllm serve: /health" in out and "  colocated:" not in out
    assert smoke.main(["--plan", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "parts: colocated, resume, vision, server; text model " + str(tmp_path / "models" / "text") in out
    assert "tests/standins/vllm_server.py" in out and "--dry-run" in out
    if not torch.cuda.is_available():
        assert smoke.main(["--only", "colocated"]) == 2
        assert "no CUDA GPU here" in capsys.readouterr().err


# --- 6. --dry-run: the whole script on this CPU through the stand-ins -------------------------------------------


def run_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PATH), *args], capture_output=True, text=True, cwd=REPO,
                          env=script_env(), timeout=timeout)


def test_dry_run_of_the_server_part(tmp_path):
    """A part as the GPU run runs it: a child process, a server process (the stand-in of vllm serve) on a free
    port, the engine built from the config, a weight sync through the rendezvous (a socket in NCCL's place)."""
    done = run_script("--dry-run", "--only", "server", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert [(c["name"], c["status"]) for c in checks] == [
        ("server: answers /health", "PASS"), ("server: sampled vs recomputed log-probs", "PASS"),
        ("server: rendezvous on the routed address and a free port", "PASS"),
        ("server: the sync pauses the server, updates, resets the prefix cache, resumes", "PASS"),
        ("server: prompts cached before a sync are served with the new weights", "PASS")]
    assert checks[3]["detail"] == "pause, start, update, finish, reset_prefix_cache, resume"
    assert "2 prompts of 320 tokens (5 KV blocks of 64" in checks[4]["detail"]
    log = (tmp_path / "server.log").read_text()
    assert "vllm 0.34.0+cpu.standin from " + str(REPO / "tests" / "standins" / "vllm") in log


def test_dry_run_runs_the_whole_script_end_to_end(tmp_path):
    """``python benchmarks/gpu_smoke.py --dry-run``: every part PASSes, and the stand-in's call logs show the
    engines as the GPU run will drive them (one LLM per part process, bounded max_model_len, max_pixels as
    mm_processor_kwargs, weights-first wake, the resumed engine synced before its first rollout)."""
    done = run_script("--dry-run", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert {c["status"] for c in checks} == {"PASS"} and len(checks) == 21
    names = {c["name"] for c in checks}
    assert {"colocated: is/ metrics on every step", "colocated: every sync after a sleep wakes the weights first",
            "colocated: sleep(level=2) frees the weights and the KV cache, the weights wake first",
            "resume: the first rollout after --resume samples from the checkpoint's weights",
            "vision: 2 image(s) resized alike by vLLM and the trainer"} <= names
    assert "server: weight sync" not in names  # no SKIP: the dry run syncs through the stand-in's socket
    assert "PASS  colocated: prompts cached before a sync are served with the new weights" in done.stdout

    def read(part):
        return [json.loads(line) for line in (tmp_path / f"{part}.vllm-calls.jsonl").read_text().splitlines()]

    colocated, resume, vision = read("colocated"), read("resume"), read("vision")
    for log in (colocated, resume, vision):  # each part's process started exactly one engine
        assert [c["call"] for c in log].count("LLM") == 1 and len({c["pid"] for c in log}) == 1
    assert len({log[0]["pid"] for log in (colocated, resume, vision)}) == 3
    started = colocated[0]["kwargs"]
    assert started["max_model_len"] == 1024 + 64 and started["logprobs_mode"] == "processed_logprobs"
    assert started["dtype"] == "float32"
    assert started["enable_sleep_mode"] is True
    wakes = [c["tags"] for c in colocated if c["call"] == "wake_up"]
    assert wakes == [["weights"], ["kv_cache"]] * 4  # 3 training steps and the smoke's own cycle
    assert [c["level"] for c in colocated if c["call"] == "sleep"] == [2] * 4
    assert vision[0]["kwargs"]["mm_processor_kwargs"] == {"max_pixels": 3136}
    assert next(c["image_tokens"] for c in vision if c["call"] == "generate") == [[4], [4, 4]]  # 84 x 84 -> 56 x 56
    calls = [c["call"] for c in resume]
    first = calls.index("generate")
    assert "load_weights" in calls[:first]  # synced with the checkpoint before the first rollout
    assert resume[first]["weights"] != resume[1]["weights"]  # not the base folder's weights it started with
