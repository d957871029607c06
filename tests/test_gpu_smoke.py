"""The CPU-side logic of benchmarks/gpu_smoke.py: its verdicts from numbers, the server command, the wait for
``vllm serve``, the plan and the refusal without a GPU. (The parts that drive a GPU run where one is lent.)"""

from __future__ import annotations

import doctest
import importlib.util
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_smoke.py"


@pytest.fixture(scope="module")
def smoke():
    spec = importlib.util.spec_from_file_location("gpu_smoke", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_smoke"]


def test_doctests(smoke):
    result = doctest.testmod(smoke)
    assert result.attempted >= 6 and result.failed == 0


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


def test_checks_fail_where_they_should(smoke):
    gib = 2**30
    assert smoke.memory_check(4 * gib, 9 * gib, 4 * gib, 3 * gib).status == "PASS"
    assert smoke.memory_check(4 * gib, 9 * gib, 8 * gib, 3 * gib).status == "FAIL"  # wake-up did not take it back
    assert smoke.placeholder_check([1, 9, 9, 9, 2], [1, 9, 9, 9, 2], 9, 1).status == "FAIL"  # expanded twice
    assert smoke.changed_check([[1]], [[1]], [[1]]).status == "FAIL"  # the sync changed nothing
    assert smoke.changed_check([[1]], [[2]], [[2]]).status == "FAIL"  # the originals did not come back
    lines = smoke.report([smoke.Check("a", "PASS", "1"), smoke.Check("longer name", "SKIP", "2")]).splitlines()
    assert lines == ["PASS  a            1", "SKIP  longer name  2"]


def test_serve_command_is_the_documented_one(smoke):
    cmd = smoke.serve_command("M", 8000, 4096, 0.3)
    assert cmd[:3] == ["vllm", "serve", "M"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags == {"--port": "8000", "--max-model-len": "4096", "--dtype": "bfloat16",
                     "--gpu-memory-utilization": "0.3", "--weight-transfer-config": '{"backend": "nccl"}',
                     "--logprobs-mode": "processed_logprobs"}
    docs = (PATH.parents[1] / "docs" / "engines.md").read_text()
    assert "--weight-transfer-config '{\"backend\": \"nccl\"}'" in docs and "--logprobs-mode processed_logprobs" in docs


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


def test_plan_and_no_gpu(smoke, capsys):
    assert smoke.main(["--plan", "--only", "server", "--model", "M"]) == 0
    out = capsys.readouterr().out
    assert "parts: server; text model M" in out and "vllm serve M --port 8765" in out
    if not torch.cuda.is_available():
        assert smoke.main(["--only", "colocated"]) == 2
        assert "no CUDA GPU here" in capsys.readouterr().err
